//! Moving the backup GPT to the end of a disk larger than the image.
//!
//! A whole-disk image carries its backup GPT header at the end of the *image*. Written to a
//! larger disk, that header sits in the middle, firmware and kernels complain, and the space
//! after it cannot be partitioned. IPA runs `sgdisk -e`; we do the same edit directly: copy the
//! partition entries and a backup header to the last LBAs, and point the primary header's
//! alternate-LBA and last-usable-LBA at them, with fresh CRCs.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Largest partition-entry array we accept (128 entries of 128 bytes is the usual 16 KiB).
const MAX_ENTRIES_BYTES: u64 = 1 << 20;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn put_u64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the header CRC (field at 16, over `header_size` bytes with the field zeroed).
fn seal(header: &mut [u8]) {
    header[16..20].fill(0);
    let crc = crc32fast::hash(header);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// A valid primary GPT header read from LBA 1, trimmed to its declared size.
fn read_primary(dev: &File, sector: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; sector as usize];
    if dev.read_exact_at(&mut buf, sector).is_err() || &buf[..8] != SIGNATURE {
        return Ok(None);
    }
    let size = u32_at(&buf, 12) as usize;
    if !(92..=buf.len()).contains(&size) {
        return Ok(None);
    }
    buf.truncate(size);
    let stored = u32_at(&buf, 16);
    let mut check = buf.clone();
    check[16..20].fill(0);
    Ok((crc32fast::hash(&check) == stored).then_some(buf))
}

/// Moves the backup GPT of the disk behind `dev` to its last LBA when it is elsewhere.
/// Returns whether anything was changed. Disks without a valid primary GPT are left alone.
pub fn relocate_backup(dev: &File, sector: u64) -> io::Result<bool> {
    let mut handle = dev;
    let size = handle.seek(SeekFrom::End(0))?;
    if size < 3 * sector {
        return Ok(false);
    }
    let last = size / sector - 1;
    let Some(mut primary) = read_primary(dev, sector)? else {
        return Ok(false);
    };
    let alternate = u64_at(&primary, 32);
    if alternate == last {
        return Ok(false);
    }
    if alternate > last {
        tracing::warn!("the image's backup GPT lies beyond the end of the disk; not moving it");
        return Ok(false);
    }
    let entries_bytes = u64::from(u32_at(&primary, 80)) * u64::from(u32_at(&primary, 84));
    if entries_bytes == 0 || entries_bytes > MAX_ENTRIES_BYTES {
        return Ok(false);
    }
    let mut entries = vec![0u8; entries_bytes as usize];
    dev.read_exact_at(&mut entries, u64_at(&primary, 72) * sector)?;
    if crc32fast::hash(&entries) != u32_at(&primary, 88) {
        tracing::warn!(
            "the primary GPT's partition entries fail their CRC; not moving the backup GPT"
        );
        return Ok(false);
    }
    let entry_sectors = entries_bytes.div_ceil(sector);
    let backup_entries_lba = last - entry_sectors;
    let last_usable = backup_entries_lba - 1;
    if last_usable < u64_at(&primary, 48) {
        return Ok(false);
    }

    let mut backup = primary.clone();
    put_u64(&mut backup, 24, last);
    put_u64(&mut backup, 32, 1);
    put_u64(&mut backup, 48, last_usable);
    put_u64(&mut backup, 72, backup_entries_lba);
    seal(&mut backup);
    put_u64(&mut primary, 32, last);
    put_u64(&mut primary, 48, last_usable);
    seal(&mut primary);

    // Backup first: until the primary points at it, a crash leaves the old, valid layout.
    dev.write_all_at(&entries, backup_entries_lba * sector)?;
    dev.write_all_at(&sector_of(&backup, sector), last * sector)?;
    dev.sync_data()?;
    dev.write_all_at(&sector_of(&primary, sector), sector)?;
    Ok(true)
}

fn sector_of(header: &[u8], sector: u64) -> Vec<u8> {
    let mut s = vec![0u8; sector as usize];
    s[..header.len()].copy_from_slice(header);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal GPT disk of `lbas` sectors with one partition, backup at the end.
    fn gpt_disk(lbas: u64) -> Vec<u8> {
        let s = 512usize;
        let mut d = vec![0u8; lbas as usize * s];
        let mut entries = vec![0u8; 128 * 128];
        entries[0] = 1; // a non-zero type GUID
        put_u64(&mut entries, 32, 34);
        put_u64(&mut entries, 40, lbas - 34);
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&0x10000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        put_u64(&mut h, 24, 1);
        put_u64(&mut h, 32, lbas - 1);
        put_u64(&mut h, 40, 34);
        put_u64(&mut h, 48, lbas - 34);
        put_u64(&mut h, 72, 2);
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        seal(&mut h);
        d[s..s + 92].copy_from_slice(&h);
        d[2 * s..2 * s + entries.len()].copy_from_slice(&entries);
        d
    }

    #[test]
    fn moves_backup_to_the_end_of_a_larger_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        let mut img = gpt_disk(2048);
        img.resize(4096 * 512, 0);
        std::fs::write(&path, &img).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(relocate_backup(&f, 512).unwrap());
        let primary = read_primary(&f, 512).unwrap().unwrap();
        assert_eq!(u64_at(&primary, 32), 4095);
        assert_eq!(u64_at(&primary, 48), 4095 - 33);
        let mut backup = vec![0u8; 512];
        f.read_exact_at(&mut backup, 4095 * 512).unwrap();
        assert_eq!(&backup[..8], SIGNATURE);
        assert_eq!(u64_at(&backup, 24), 4095);
        assert_eq!(u64_at(&backup, 32), 1);
        assert_eq!(u64_at(&backup, 72), 4095 - 32);
        let mut check = backup[..92].to_vec();
        let crc = u32_at(&check, 16);
        check[16..20].fill(0);
        assert_eq!(crc32fast::hash(&check), crc);
        // Done once, nothing left to do.
        assert!(!relocate_backup(&f, 512).unwrap());
    }

    #[test]
    fn leaves_non_gpt_and_damaged_disks_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![0u8; 1 << 20]).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(!relocate_backup(&f, 512).unwrap());
        let mut img = gpt_disk(2048);
        img[512 + 40] ^= 1; // header CRC no longer matches
        img.resize(4096 * 512, 0);
        std::fs::write(&path, &img).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(!relocate_backup(&f, 512).unwrap());
    }
}
