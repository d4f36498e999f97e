//! File systems the agent creates itself: FAT (ESP, config drive, vfat ephemeral) with the
//! `fatfs` crate and Linux swap (`mkswap`'s one-page header). Anything else would need
//! mkfs tools the ramdisk does not carry, and is refused before the disk is touched.

use super::window::Window;
use super::DiskError;
use std::fs::File;
use std::path::Path;

/// The swap header's magic, at the end of the first page.
const SWAP_MAGIC: &[u8; 10] = b"SWAPSPACE2";
/// Byte offset of the version field (after the 1 KiB boot block).
const SWAP_HEADER: usize = 1024;

/// File system types `format` can create (Ironic's `ephemeral_format` names).
pub fn supported(fstype: &str) -> bool {
    matches!(fstype, "vfat" | "fat" | "fat32" | "swap")
}

/// Formats `[start, start+len)` of `disk` as `fstype` with `label`.
pub fn format(
    disk: &File,
    device: &Path,
    start: u64,
    len: u64,
    fstype: &str,
    label: &str,
) -> Result<(), DiskError> {
    match fstype {
        "vfat" | "fat" | "fat32" => vfat(disk, device, start, len, label, fstype == "fat32"),
        "swap" => swap(disk, device, start, len, label),
        other => Err(DiskError::Invalid(format!(
            "cannot create a {other} file system on {}: this agent formats only vfat and swap",
            device.display()
        ))),
    }
}

/// `mkfs.vfat -n LABEL`. FAT32 is forced when asked (the ESP); otherwise `fatfs` picks the
/// FAT type by size, as mkfs.fat does.
pub fn vfat(
    disk: &File,
    device: &Path,
    start: u64,
    len: u64,
    label: &str,
    fat32: bool,
) -> Result<(), DiskError> {
    let mut opts = fatfs::FormatVolumeOptions::new()
        .volume_label(fat_label(label))
        .volume_id(rand::random());
    if fat32 {
        opts = opts.fat_type(fatfs::FatType::Fat32);
    }
    fatfs::format_volume(Window::new(disk, start, len), opts).map_err(|e| {
        DiskError::io(
            &format!("creating a FAT file system labelled {label} at byte {start} of"),
            device,
            e,
        )
    })
}

/// A FAT label: 11 bytes, space padded (longer labels are cut, as mkfs.fat does).
fn fat_label(label: &str) -> [u8; 11] {
    let mut l = [b' '; 11];
    for (d, s) in l.iter_mut().zip(label.bytes()) {
        *d = s;
    }
    l
}

/// `mkswap -L LABEL`: the first page is zeroed, then version 1, the last usable page, a
/// random UUID, the label and the magic.
pub fn swap(
    disk: &File,
    device: &Path,
    start: u64,
    len: u64,
    label: &str,
) -> Result<(), DiskError> {
    use std::os::unix::fs::FileExt;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096);
    let pages = len / page as u64;
    if pages < 10 {
        return Err(DiskError::Invalid(format!(
            "the swap partition at byte {start} of {} is too small ({len} bytes)",
            device.display()
        )));
    }
    let mut hdr = vec![0u8; page];
    hdr[SWAP_HEADER..SWAP_HEADER + 4].copy_from_slice(&1u32.to_le_bytes());
    let last = u32::try_from(pages - 1).unwrap_or(u32::MAX);
    hdr[SWAP_HEADER + 4..SWAP_HEADER + 8].copy_from_slice(&last.to_le_bytes());
    // nr_badpages stays 0; then the UUID (16 bytes) and the label (16 bytes).
    hdr[SWAP_HEADER + 12..SWAP_HEADER + 28].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let name = label.as_bytes();
    let n = name.len().min(15);
    hdr[SWAP_HEADER + 28..SWAP_HEADER + 28 + n].copy_from_slice(&name[..n]);
    hdr[page - SWAP_MAGIC.len()..].copy_from_slice(SWAP_MAGIC);
    disk.write_all_at(&hdr, start).map_err(|e| {
        DiskError::io(
            &format!("writing the swap header at byte {start} of"),
            device,
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::probe;

    fn disk(size: u64) -> (tempfile::TempDir, File, std::path::PathBuf) {
        crate::disk::scratch_disk(size)
    }

    #[test]
    fn vfat_is_recognised_by_blkid_with_its_label() {
        let (_d, f, p) = disk(80 << 20);
        vfat(&f, &p, 1 << 20, 64 << 20, "efi-part", true).unwrap();
        let info = probe::filesystem(&f, &p, 1 << 20, 64 << 20).unwrap();
        assert_eq!(info.fstype.as_deref(), Some("vfat"));
        assert_eq!(info.label.as_deref(), Some("efi-part"));
        let uuid = info.uuid.unwrap();
        assert!(uuid.len() == 9 && uuid.as_bytes()[4] == b'-', "{uuid}");
        // nothing outside the window was touched
        let raw = std::fs::read(&p).unwrap();
        assert!(raw[..1 << 20].iter().all(|b| *b == 0));
        assert!(raw[65 << 20..].iter().all(|b| *b == 0));
    }

    #[test]
    fn swap_matches_what_mkswap_writes() {
        let (_d, f, p) = disk(16 << 20);
        swap(&f, &p, 0, 16 << 20, "swap1").unwrap();
        let info = probe::filesystem(&f, &p, 0, 16 << 20).unwrap();
        assert_eq!(info.fstype.as_deref(), Some("swap"));
        assert_eq!(info.label.as_deref(), Some("swap1"));
        assert!(info.uuid.is_some());
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(&raw[4096 - 10..4096], b"SWAPSPACE2");
        assert_eq!(
            u32::from_le_bytes(raw[1028..1032].try_into().unwrap()),
            4095
        );
    }

    #[test]
    fn unsupported_file_systems_are_refused() {
        let (_d, f, p) = disk(1 << 20);
        let e = format(&f, &p, 0, 1 << 20, "ext4", "ephemeral0").unwrap_err();
        assert!(e.to_string().contains("only vfat and swap"), "{e}");
        assert!(!supported("xfs") && supported("vfat") && supported("swap"));
    }
}
