//! Disk identity (model, serial, WWN) the way IPA sees it.
//!
//! IPA takes these from `lsblk`, which reads them from the udev database, and falls back on udev
//! properties itself. Our ramdisk has no udev, so this module derives the same values from what
//! the udev helpers would have read: the SCSI VPD pages the kernel exports in sysfs (`vpd_pg80`,
//! `vpd_pg83`, and for ATA disks `vpd_pg89`, which carries the ATA IDENTIFY data `ata_id` reads),
//! the NVMe `wwid`, the virtio `serial`, and the device-mapper UUID for multipath maps.
//!
//! The parsers work on byte slices and never index without a bounds check: VPD pages come from
//! devices and may be short or inconsistent.

use super::sysfs::normalize_whitespace;

/// What udev would have recorded about a disk's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
}

/// A WWN as udev's `scsi_id`/`ata_id` export it: `ID_WWN`, `ID_WWN_VENDOR_EXTENSION`,
/// `ID_WWN_WITH_EXTENSION` (all `0x` + lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wwn {
    pub wwn: String,
    pub vendor_extension: Option<String>,
}

impl Wwn {
    fn from_hex_id(hex: &str) -> Option<Self> {
        if hex.is_empty() {
            return None;
        }
        // scsi_id keeps the first 16 characters as the WWN and the next 16 as the vendor
        // extension (present only for NAA type 6 "registered extended" identifiers).
        let head: String = hex.chars().take(16).collect();
        let ext: String = hex.chars().skip(16).take(16).collect();
        Some(Self {
            wwn: format!("0x{head}"),
            vendor_extension: (!ext.is_empty()).then(|| format!("0x{ext}")),
        })
    }

    /// `ID_WWN_WITH_EXTENSION`: the WWN with the vendor extension appended when there is one.
    pub fn with_extension(&self) -> String {
        match &self.vendor_extension {
            Some(ext) => format!("{}{}", self.wwn, ext.trim_start_matches("0x")),
            None => self.wwn.clone(),
        }
    }
}

/// The unit serial number from VPD page 0x80 (what `scsi_id` exports as `ID_SCSI_SERIAL`, and
/// lsblk shows after normalising whitespace).
pub(crate) fn serial_from_vpd80(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let end = 4usize.saturating_add(len).min(page.len());
    let text = String::from_utf8_lossy(&page[4..end]);
    let serial = normalize_whitespace(text.trim_matches(char::from(0)));
    (!serial.is_empty()).then_some(serial)
}

/// The WWN from VPD page 0x83 (Device Identification), chosen exactly as udev's `scsi_id` does:
/// only logical-unit designators, NAA type 6 before type 5 before any other NAA, binary before
/// ASCII. A page whose byte 6 is non-zero is a pre-SPC-2 (SCSI-2) reply with no designators.
pub(crate) fn wwn_from_vpd83(page: &[u8]) -> Option<Wwn> {
    if page.len() < 4 || page[1] != 0x83 {
        return None;
    }
    if page.get(6).copied().unwrap_or(0) != 0 {
        return None;
    }
    let page_len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let end = 4usize.saturating_add(page_len).min(page.len());
    let descriptors = designators(&page[..end]);
    const NAA: u8 = 3;
    const BINARY: u8 = 1;
    const ASCII: u8 = 2;
    let preferences: [(Option<u8>, u8); 6] = [
        (Some(6), BINARY),
        (Some(6), ASCII),
        (Some(5), BINARY),
        (Some(5), ASCII),
        (None, BINARY),
        (None, ASCII),
    ];
    for (naa_type, code_set) in preferences {
        for d in &descriptors {
            if d.association != 0 || d.designator_type != NAA || d.code_set != code_set {
                continue;
            }
            let first = d.id.first().copied().unwrap_or(0);
            if let Some(t) = naa_type {
                if first >> 4 != t {
                    continue;
                }
            }
            let id = if code_set == BINARY {
                hex::encode(d.id)
            } else {
                String::from_utf8_lossy(d.id).into_owned()
            };
            return Wwn::from_hex_id(&id);
        }
    }
    None
}

struct Designator<'a> {
    code_set: u8,
    association: u8,
    designator_type: u8,
    id: &'a [u8],
}

/// Splits the descriptor list of a VPD 0x83 page (header included); stops at the first
/// descriptor that would run past the end.
fn designators(page: &[u8]) -> Vec<Designator<'_>> {
    let mut out = Vec::new();
    let mut off = 4usize;
    while off + 4 <= page.len() {
        let len = usize::from(page[off + 3]);
        let start = off + 4;
        let Some(id) = page.get(start..start + len) else {
            break;
        };
        out.push(Designator {
            code_set: page[off] & 0x0f,
            association: (page[off + 1] >> 4) & 0x03,
            designator_type: page[off + 1] & 0x0f,
            id,
        });
        off = start + len;
    }
    out
}

/// The ATA IDENTIFY DEVICE data inside VPD page 0x89 (ATA Information), which libata's SCSI
/// translation fills in; `ata_id` reads the same 512 bytes with an ATA pass-through command.
pub(crate) struct AtaIdentify<'a> {
    words: &'a [u8],
}

impl<'a> AtaIdentify<'a> {
    /// Offset of the IDENTIFY data within the page (SAT-2, ATA Information VPD page).
    const OFFSET: usize = 60;

    pub fn from_vpd89(page: &'a [u8]) -> Option<Self> {
        if page.len() < 4 || page[1] != 0x89 {
            return None;
        }
        let words = page.get(Self::OFFSET..Self::OFFSET + 512)?;
        Some(Self { words })
    }

    fn word(&self, n: usize) -> u16 {
        u16::from_le_bytes([self.words[2 * n], self.words[2 * n + 1]])
    }

    /// An ATA string: each 16-bit word holds two characters, high byte first.
    fn string(&self, first_word: usize, count: usize) -> String {
        let mut bytes = Vec::with_capacity(count * 2);
        for n in first_word..first_word + count {
            let w = self.word(n);
            bytes.push((w >> 8) as u8);
            bytes.push((w & 0xff) as u8);
        }
        String::from_utf8_lossy(&bytes)
            .trim_matches(|c: char| c.is_whitespace() || c == '\0')
            .to_string()
    }

    /// Words 27-46, the full model number (sysfs `model` only holds its first 16 characters).
    pub fn model(&self) -> Option<String> {
        let m = normalize_whitespace(&self.string(27, 20));
        (!m.is_empty()).then_some(m)
    }

    /// Words 10-19, formatted as udev's `ID_SERIAL_SHORT` (inner whitespace becomes `_`).
    pub fn serial(&self) -> Option<String> {
        let s = replace_whitespace(&self.string(10, 10));
        (!s.is_empty()).then_some(s)
    }

    /// Words 108-111 when word 87 says a world wide name is present.
    pub fn wwn(&self) -> Option<Wwn> {
        if self.word(87) & (1 << 8) == 0 {
            return None;
        }
        let value = (108..112).fold(0u64, |acc, n| (acc << 16) | u64::from(self.word(n)));
        if value == 0 {
            return None;
        }
        Some(Wwn {
            wwn: format!("0x{value:x}"),
            vendor_extension: None,
        })
    }
}

/// udev's `replace_whitespace`: trims, and turns every inner run of whitespace into one `_`.
pub(crate) fn replace_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("_")
}

/// The kernel's `wwid` attribute of a SCSI device (`naa.<hex>`, `eui.<hex>`, `t10.<text>`):
/// only NAA identifiers are WWNs for udev.
pub(crate) fn wwn_from_scsi_wwid(wwid: &str) -> Option<Wwn> {
    let hex = wwid.trim().strip_prefix("naa.")?;
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Wwn::from_hex_id(&hex.to_ascii_lowercase())
}

/// `DM_SERIAL` and `DM_WWN` of a multipath map, as multipath's `kpartx_id` derives them from
/// the map's UUID (`mpath-<wwid>`): the serial is the WWID, the WWN is `0x` + the WWID without
/// its leading designator-type digit.
pub(crate) fn multipath_ids(dm_uuid: &str) -> Option<(String, String)> {
    let wwid = dm_uuid.trim().strip_prefix("mpath-")?;
    let mut chars = wwid.chars();
    chars.next()?;
    let rest = chars.as_str();
    if rest.is_empty() {
        return None;
    }
    Some((wwid.to_string(), format!("0x{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpd83(descriptors: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = descriptors.concat();
        let mut page = vec![0x00, 0x83];
        page.extend_from_slice(&(body.len() as u16).to_be_bytes());
        page.extend(body);
        page
    }

    fn desc(code_set: u8, assoc: u8, dtype: u8, id: &[u8]) -> Vec<u8> {
        let mut d = vec![code_set, (assoc << 4) | dtype, 0, id.len() as u8];
        d.extend_from_slice(id);
        d
    }

    #[test]
    fn naa5_binary_gives_wwn_without_extension() {
        let naa = desc(1, 0, 3, &[0x50, 0x00, 0xc5, 0x00, 0xa1, 0xb2, 0xc3, 0xd4]);
        let t10 = desc(2, 0, 1, b"ATA     SomeDisk");
        let page = vpd83(&[&t10, &naa]);
        let w = wwn_from_vpd83(&page).unwrap();
        assert_eq!(w.wwn, "0x5000c500a1b2c3d4");
        assert_eq!(w.vendor_extension, None);
        assert_eq!(w.with_extension(), "0x5000c500a1b2c3d4");
    }

    #[test]
    fn naa6_is_preferred_and_split_into_extension() {
        let naa5 = desc(1, 0, 3, &[0x50, 0, 0, 0, 0, 0, 0, 1]);
        let naa6 = desc(
            1,
            0,
            3,
            &[
                0x60, 0x05, 0x08, 0xb1, 0x00, 0x1c, 0x4d, 0x1e, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
                0x77, 0x88,
            ],
        );
        let page = vpd83(&[&naa5, &naa6]);
        let w = wwn_from_vpd83(&page).unwrap();
        assert_eq!(w.wwn, "0x600508b1001c4d1e");
        assert_eq!(w.vendor_extension.as_deref(), Some("0x1122334455667788"));
        assert_eq!(w.with_extension(), "0x600508b1001c4d1e1122334455667788");
    }

    #[test]
    fn target_port_designators_are_ignored() {
        let port = desc(1, 1, 3, &[0x50, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(wwn_from_vpd83(&vpd83(&[&port])), None);
    }

    #[test]
    fn truncated_or_foreign_pages_give_nothing() {
        assert_eq!(wwn_from_vpd83(&[]), None);
        assert_eq!(wwn_from_vpd83(&[0, 0x80, 0, 4]), None);
        // Claims a 20-byte designator but carries 3 bytes.
        assert_eq!(
            wwn_from_vpd83(&[0, 0x83, 0, 8, 1, 3, 0, 20, 0x50, 1, 2]),
            None
        );
        // Byte 6 non-zero: a SCSI-2 style reply.
        assert_eq!(
            wwn_from_vpd83(&[0, 0x83, 0, 8, 1, 3, 7, 8, 0x50, 1, 2, 3]),
            None
        );
    }

    #[test]
    fn vpd80_serial() {
        let mut page = vec![0x00, 0x80, 0x00, 0x0c];
        page.extend_from_slice(b"  ZA1B2C3D  ");
        assert_eq!(serial_from_vpd80(&page).as_deref(), Some("ZA1B2C3D"));
        assert_eq!(serial_from_vpd80(&[0, 0x80, 0, 0]), None);
        // Length beyond the buffer is clamped.
        assert_eq!(
            serial_from_vpd80(&[0, 0x80, 0, 200, b'A', b'B']).as_deref(),
            Some("AB")
        );
    }

    fn ata_string(s: &str, words: usize) -> Vec<u8> {
        let mut padded: Vec<u8> = s.bytes().collect();
        padded.resize(words * 2, b' ');
        padded.chunks(2).flat_map(|c| [c[1], c[0]]).collect()
    }

    pub(crate) fn vpd89(model: &str, serial: &str, wwn: Option<u64>) -> Vec<u8> {
        let mut identify = vec![0u8; 512];
        identify[20..40].copy_from_slice(&ata_string(serial, 10));
        identify[54..94].copy_from_slice(&ata_string(model, 20));
        if let Some(w) = wwn {
            identify[174..176].copy_from_slice(&(1u16 << 8 | 0x4000).to_le_bytes());
            for (i, n) in (108..112).enumerate() {
                let word = (w >> (48 - 16 * i)) as u16;
                identify[2 * n..2 * n + 2].copy_from_slice(&word.to_le_bytes());
            }
        }
        let mut page = vec![0x00, 0x89, 0x02, 0x38];
        page.resize(60, 0);
        page.extend(identify);
        page
    }

    #[test]
    fn ata_identify_fields() {
        let page = vpd89(
            "Samsung SSD 860 EVO 500GB",
            "  S3Z1NB0K123456A",
            Some(0x5002538e4000abcd),
        );
        let id = AtaIdentify::from_vpd89(&page).unwrap();
        assert_eq!(id.model().as_deref(), Some("Samsung SSD 860 EVO 500GB"));
        assert_eq!(id.serial().as_deref(), Some("S3Z1NB0K123456A"));
        assert_eq!(id.wwn().unwrap().wwn, "0x5002538e4000abcd");
        let no_wwn = vpd89("X", "Y", None);
        assert_eq!(AtaIdentify::from_vpd89(&no_wwn).unwrap().wwn(), None);
        assert!(AtaIdentify::from_vpd89(&page[..300]).is_none());
    }

    #[test]
    fn scsi_wwid_text() {
        assert_eq!(
            wwn_from_scsi_wwid("naa.5000C500A1B2C3D4\n").unwrap().wwn,
            "0x5000c500a1b2c3d4"
        );
        assert_eq!(wwn_from_scsi_wwid("t10.ATA     QEMU HARDDISK"), None);
    }

    #[test]
    fn multipath_uuid() {
        assert_eq!(
            multipath_ids("mpath-3600508b1001c4d1e11223344556677").unwrap(),
            (
                "3600508b1001c4d1e11223344556677".to_string(),
                "0x600508b1001c4d1e11223344556677".to_string()
            )
        );
        assert_eq!(multipath_ids("LVM-abc"), None);
    }
}
