//! What an image is, from its first bytes, and whether we may write it.
//!
//! Two layers are recognised by magic bytes: an optional compression wrapper (gzip, xz, zstd)
//! and the disk format inside it (qcow2, an MBR/GPT-partitioned disk, an ISO, or bytes we do
//! not recognise, which are "raw"). Formats we can recognise but do not convert (vmdk, vhd, ...)
//! are named in the error rather than written as garbage.
//!
//! The policy is IPA's since CVE-2024-44082 (`disk_utils.get_and_validate_image_format`):
//! * `disk_format == "raw"` means "never inspect, never convert": the bytes are written as they
//!   are, even if they look like qcow2 (a raw disk may legitimately contain anything, and
//!   interpreting a guest-controlled qcow2 header is exactly the attack).
//! * otherwise the detected format must pass its safety checks, be in `permitted_image_formats`,
//!   and equal `disk_format` when one is given.
//!
//! Compression is a transport encoding, not a disk format: a gzip/xz/zstd stream is always
//! decompressed (even when `disk_format` is raw — nobody means "write the gzip bytes to the
//! disk"), and the rules above then apply to the decompressed bytes. IPA itself has no
//! compressed-image support; a compressed stream there would be written as garbage or refused.

/// How many leading bytes sniffing needs (the ISO signature sits at 32769).
pub const SNIFF_LEN: usize = 32774;

/// A compression wrapper around the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Self::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Some(Self::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Self::Zstd)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
        }
    }
}

/// A disk format as IPA's format inspector names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Gpt,
    Iso,
    Qcow2,
    /// Recognised, never written: the name says which (vmdk, vhd, vhdx, vdi, qed, luks).
    Unsupported(&'static str),
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Gpt => "gpt",
            Self::Iso => "iso",
            Self::Qcow2 => "qcow2",
            Self::Unsupported(n) => n,
        }
    }

    /// Detects the format from the leading bytes (at least [`SNIFF_LEN`] unless the image is
    /// shorter). Fails when the content is ambiguous or an MBR is malformed.
    pub fn detect(head: &[u8]) -> Result<Self, String> {
        const OTHERS: [(&[u8], &str); 6] = [
            (b"QED\0", "qed"),
            (b"conectix", "vhd"),
            (b"vhdxfile", "vhdx"),
            (b"KDMV", "vmdk"),
            (b"LUKS\xba\xbe", "luks"),
            (b"# Disk DescriptorFile", "vmdk"),
        ];
        if head.starts_with(b"QFI\xfb") {
            return Ok(Self::Qcow2);
        }
        if let Some((_, name)) = OTHERS.iter().find(|(magic, _)| head.starts_with(magic)) {
            return Ok(Self::Unsupported(name));
        }
        if head.len() >= 68 && head[64..68] == [0x7f, 0x10, 0xda, 0xbe] {
            return Ok(Self::Unsupported("vdi"));
        }
        let iso = head.len() >= SNIFF_LEN && &head[0x8001..0x8006] == b"CD001";
        let mbr = head.len() >= 512 && head[510..512] == [0x55, 0xaa] && !looks_like_fat(head);
        match (iso, mbr) {
            // A hybrid ISO carries an MBR too; the inspector's own special case calls it iso.
            (true, _) => Ok(Self::Iso),
            (false, true) => check_mbr(head).map(|()| Self::Gpt),
            (false, false) => Ok(Self::Raw),
        }
    }
}

/// A FAT volume boot record also ends in 55 AA; it is a filesystem, not a partition table.
fn looks_like_fat(head: &[u8]) -> bool {
    head[0x10] == 2 && head[0x15] == 0xf8
}

/// The inspector's MBR safety check: sane boot flags, and a protective 0xEE entry only alone
/// and starting at LBA 1.
fn check_mbr(head: &[u8]) -> Result<(), String> {
    let mut used = Vec::new();
    let mut gpt = false;
    for i in 0..4 {
        let e = &head[446 + 16 * i..446 + 16 * (i + 1)];
        if e[0] != 0 && e[0] != 0x80 {
            return Err(format!("MBR partition entry {i} has an invalid boot flag"));
        }
        if e[4] != 0 {
            used.push(i);
        }
        if e[4] == 0xee {
            gpt = true;
            let start_lba = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            if e[1..4] != [0, 2, 0] || start_lba != 1 {
                return Err("the protective MBR of the GPT does not start at LBA 1".into());
            }
        }
    }
    if gpt && used != [0] {
        return Err("the protective MBR of the GPT defines extra partitions".into());
    }
    if used.is_empty() {
        return Err("the MBR defines no partitions".into());
    }
    Ok(())
}

/// What the operator asked for and allowed.
#[derive(Debug, Clone)]
pub struct FormatPolicy {
    /// Ironic's `disk_format`: `None` (or "unknown") to detect.
    pub disk_format: Option<String>,
    /// IPA's `permitted_image_formats`.
    pub permitted: Vec<String>,
}

impl Default for FormatPolicy {
    fn default() -> Self {
        Self {
            disk_format: None,
            permitted: ["raw", "gpt", "qcow2"].map(String::from).to_vec(),
        }
    }
}

/// How the (decompressed) bytes are to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Copy the bytes as they are (raw, gpt, iso).
    Copy(Format),
    /// Convert from qcow2.
    Qcow2,
}

impl FormatPolicy {
    /// True when `disk_format` says raw: no inspection at all.
    pub fn is_raw(&self) -> bool {
        self.disk_format.as_deref() == Some("raw")
    }

    /// Applies the policy to the leading (decompressed) bytes.
    pub fn decide(&self, head: &[u8]) -> Result<Decode, String> {
        if self.is_raw() {
            return Ok(Decode::Copy(Format::Raw));
        }
        let detected = Format::detect(head)
            .map_err(|e| format!("security: image failed the safety check: {e}"))?;
        if let Format::Unsupported(name) = detected {
            return Err(format!(
                "the image is in {name} format, which this agent does not convert"
            ));
        }
        let name = detected.name();
        if !self.permitted.iter().any(|p| p == name) {
            return Err(format!(
                "security: detected image format was {name}, but only {} are allowed",
                self.permitted.join(", ")
            ));
        }
        match self.disk_format.as_deref() {
            Some(want) if want != "unknown" && want != name => Err(format!(
                "security: expected format was {want}, but the image is actually {name}"
            )),
            _ if detected == Format::Qcow2 => Ok(Decode::Qcow2),
            _ => Ok(Decode::Copy(detected)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr(entries: &[[u8; 16]]) -> Vec<u8> {
        let mut d = vec![0u8; SNIFF_LEN];
        for (i, e) in entries.iter().enumerate() {
            d[446 + 16 * i..446 + 16 * (i + 1)].copy_from_slice(e);
        }
        d[510] = 0x55;
        d[511] = 0xaa;
        d
    }

    const PROTECTIVE: [u8; 16] = [
        0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
    ];

    #[test]
    fn detects_formats() {
        assert_eq!(Format::detect(b"QFI\xfb\0\0\0\x03").unwrap(), Format::Qcow2);
        assert_eq!(
            Format::detect(b"conectix....").unwrap(),
            Format::Unsupported("vhd")
        );
        assert_eq!(Format::detect(&[0u8; 100]).unwrap(), Format::Raw);
        assert_eq!(Format::detect(&mbr(&[PROTECTIVE])).unwrap(), Format::Gpt);
        let mut iso = vec![0u8; SNIFF_LEN];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(Format::detect(&iso).unwrap(), Format::Iso);
        let mut bad = PROTECTIVE;
        bad[8] = 2;
        assert!(Format::detect(&mbr(&[bad])).is_err());
        assert!(Format::detect(&mbr(&[
            PROTECTIVE,
            [0, 0, 0, 0, 0x83, 0, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0]
        ]))
        .is_err());
        assert!(Format::detect(&mbr(&[])).is_err());
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::detect(b"QFI"), None);
    }

    #[test]
    fn policy_follows_ipa() {
        let qcow = b"QFI\xfb\0\0\0\x03".to_vec();
        let mut p = FormatPolicy::default();
        assert_eq!(p.decide(&qcow).unwrap(), Decode::Qcow2);
        p.disk_format = Some("raw".into());
        assert_eq!(p.decide(&qcow).unwrap(), Decode::Copy(Format::Raw));
        p.disk_format = Some("qcow2".into());
        assert!(p
            .decide(&[0u8; 10])
            .unwrap_err()
            .contains("expected format was qcow2"));
        p.disk_format = None;
        p.permitted = vec!["raw".into()];
        assert!(p
            .decide(&qcow)
            .unwrap_err()
            .contains("only raw are allowed"));
        assert!(p.decide(b"vhdxfile").unwrap_err().contains("vhdx"));
    }
}
