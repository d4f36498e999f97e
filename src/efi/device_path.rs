//! UEFI device paths: building the `HD(...)/File(...)` path of a boot entry, and the text
//! form efibootmgr prints (`HD(1,GPT,<guid>,0x800,0x113800)/File(\EFI\BOOT\BOOTX64.EFI)`),
//! which `clean_uefi_nvram`'s patterns are matched against.

use std::fmt::Write;

const MEDIA: u8 = 4;
const HARD_DRIVE: u8 = 1;
const FILE_PATH: u8 = 4;
const END: u8 = 0x7f;
const END_ENTIRE: u8 = 0xff;

/// Which partition a boot entry points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardDrive {
    pub partition: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    pub signature: Signature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// GPT: the partition's unique GUID.
    Gpt(uuid::Uuid),
    /// MBR: the disk signature (bytes 440..444).
    Mbr(u32),
}

fn node(out: &mut Vec<u8>, ty: u8, sub: u8, body: &[u8]) {
    out.push(ty);
    out.push(sub);
    out.extend_from_slice(&((body.len() + 4) as u16).to_le_bytes());
    out.extend_from_slice(body);
}

/// UTF-16LE with a terminating NUL.
pub fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// `HD(...)/File(loader)/End`: what `efibootmgr -c -d DISK -p N -l LOADER` writes.
pub fn hd_file(hd: &HardDrive, loader: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(38);
    body.extend_from_slice(&hd.partition.to_le_bytes());
    body.extend_from_slice(&hd.start_lba.to_le_bytes());
    body.extend_from_slice(&hd.size_lba.to_le_bytes());
    let (sig, mbr_type, sig_type) = match hd.signature {
        Signature::Gpt(g) => (g.to_bytes_le(), 2u8, 2u8),
        Signature::Mbr(s) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&s.to_le_bytes());
            (b, 1, 1)
        }
    };
    body.extend_from_slice(&sig);
    body.push(mbr_type);
    body.push(sig_type);
    let mut out = Vec::new();
    node(&mut out, MEDIA, HARD_DRIVE, &body);
    node(&mut out, MEDIA, FILE_PATH, &ucs2(loader));
    node(&mut out, END, END_ENTIRE, &[]);
    out
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn guid_at(b: &[u8], o: usize) -> Option<String> {
    let bytes: [u8; 16] = b.get(o..o + 16)?.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(bytes).hyphenated().to_string())
}

fn utf16z(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The efibootmgr-style text of a device path list; unknown nodes print as
/// `Path(type,subtype,hex)`, the UEFI spec's generic form.
pub fn to_text(path: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    let mut sep = "";
    while pos + 4 <= path.len() {
        let (ty, sub) = (path[pos], path[pos + 1]);
        let len = u16_at(path, pos + 2).unwrap_or(0) as usize;
        if len < 4 || pos + len > path.len() {
            out.push_str(sep);
            out.push_str("<malformed device path>");
            break;
        }
        let body = &path[pos + 4..pos + len];
        pos += len;
        if ty == END {
            if sub == END_ENTIRE {
                break;
            }
            sep = ",";
            continue;
        }
        out.push_str(sep);
        out.push_str(&node_text(ty, sub, body));
        sep = "/";
    }
    out
}

fn node_text(ty: u8, sub: u8, b: &[u8]) -> String {
    known_node_text(ty, sub, b).unwrap_or_else(|| {
        let mut s = format!("Path({ty},{sub},");
        for x in b {
            let _ = write!(s, "{x:02x}");
        }
        s.push(')');
        s
    })
}

fn known_node_text(ty: u8, sub: u8, b: &[u8]) -> Option<String> {
    Some(match (ty, sub) {
        (1, 1) => format!("Pci(0x{:x},0x{:x})", b.get(1)?, b.first()?),
        (1, 4) => format!("VenHw({},{})", guid_at(b, 0)?, hex(&b[16..])),
        (2, 1) => {
            let (hid, uid) = (u32_at(b, 0)?, u32_at(b, 4)?);
            match hid {
                0x0a03_41d0 => format!("PciRoot(0x{uid:x})"),
                0x0a08_41d0 => format!("PcieRoot(0x{uid:x})"),
                _ => format!("Acpi(0x{hid:08x},0x{uid:x})"),
            }
        }
        (3, 2) => format!("SCSI({},{})", u16_at(b, 0)?, u16_at(b, 2)?),
        (3, 5) => format!("USB({},{})", b.first()?, b.get(1)?),
        (3, 10) => format!("VenMsg({},{})", guid_at(b, 0)?, hex(&b[16..])),
        (3, 11) => {
            let mac: Vec<String> = b.get(..6)?.iter().map(|x| format!("{x:02x}")).collect();
            format!("MAC({},{})", mac.join(""), b.get(32)?)
        }
        (3, 12) => {
            let ip = b.get(4..8)?;
            format!("IPv4({}.{}.{}.{})", ip[0], ip[1], ip[2], ip[3])
        }
        (3, 13) => "IPv6()".to_string(),
        (3, 18) => format!(
            "Sata({},{},{})",
            u16_at(b, 0)?,
            u16_at(b, 2)?,
            u16_at(b, 4)?
        ),
        (3, 23) => format!("NVMe(0x{:x},{})", u32_at(b, 0)?, hex(b.get(4..12)?)),
        (3, 24) => format!("Uri({})", String::from_utf8_lossy(b)),
        (4, 1) => {
            let part = u32_at(b, 0)?;
            let (start, size) = (u64_at(b, 4)?, u64_at(b, 12)?);
            let sig = match (b.get(36)?, b.get(37)?) {
                (2, 2) => format!("GPT,{}", guid_at(b, 20)?),
                (1, 1) => format!("MBR,0x{:08x}", u32_at(b, 20)?),
                _ => format!("{},{}", b.get(36)?, hex(b.get(20..36)?)),
            };
            format!("HD({part},{sig},0x{start:x},0x{size:x})")
        }
        (4, 2) => format!("CDROM({})", u32_at(b, 0)?),
        (4, 4) => format!("File({})", utf16z(b)),
        (4, 6) => format!("FvFile({})", guid_at(b, 0)?),
        (4, 7) => format!("FvVol({})", guid_at(b, 0)?),
        (5, 1) => format!("BBS({},{})", u16_at(b, 0)?, utf16z_ascii(b.get(4..)?)),
        _ => return None,
    })
}

fn utf16z_ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|x| *x == 0).next().unwrap_or_default()).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hd_file_round_trips_to_efibootmgr_text() {
        let g = uuid::Uuid::parse_str("c8f0e5a2-1234-4cde-9abc-0123456789ab").unwrap();
        let hd = HardDrive {
            partition: 1,
            start_lba: 2048,
            size_lba: 0x113800,
            signature: Signature::Gpt(g),
        };
        let p = hd_file(&hd, "\\EFI\\BOOT\\BOOTX64.EFI");
        // HD node is 42 bytes, as the spec says
        assert_eq!((p[0], p[1], u16::from_le_bytes([p[2], p[3]])), (4, 1, 42));
        assert_eq!(
            to_text(&p),
            "HD(1,GPT,c8f0e5a2-1234-4cde-9abc-0123456789ab,0x800,0x113800)/File(\\EFI\\BOOT\\BOOTX64.EFI)"
        );
        let mbr = HardDrive {
            signature: Signature::Mbr(0x1a2b3c4d),
            ..hd
        };
        assert!(to_text(&hd_file(&mbr, "\\x.efi")).starts_with("HD(1,MBR,0x1a2b3c4d,0x800,"));
    }

    #[test]
    fn firmware_paths_print_like_efibootmgr() {
        // PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,1) as OVMF creates for PXE entries
        let mut p = Vec::new();
        node(&mut p, 2, 1, &[0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0]);
        node(&mut p, 1, 1, &[0, 2]);
        let mut mac = vec![0u8; 33];
        mac[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        mac[32] = 1;
        node(&mut p, 3, 11, &mac);
        node(&mut p, 0x7f, 0xff, &[]);
        assert_eq!(to_text(&p), "PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,1)");
        let mut fv = Vec::new();
        let g = uuid::Uuid::parse_str("7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1").unwrap();
        node(&mut fv, 4, 7, &g.to_bytes_le());
        node(&mut fv, 9, 9, &[1, 2]);
        assert_eq!(
            to_text(&fv),
            "FvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/Path(9,9,0102)"
        );
        assert_eq!(to_text(&[4, 4, 2, 0]), "<malformed device path>");
    }
}
