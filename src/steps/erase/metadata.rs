//! Destroying a device's metadata without zeroing all of it (IPA's `destroy_disk_metadata`:
//! `wipefs --force --all`, `dd` over the primary and backup GPT, `sgdisk -Z`).
//!
//! 1. Remember where the GPT headers and entry arrays are (the primary's alternate-LBA field
//!    finds a backup that is not at the end, e.g. after an image was written to a larger disk).
//! 2. Erase every signature libblkid finds, the way wipefs does: file systems, RAID and LVM
//!    members, swap, and partition tables (protective MBR, primary and backup GPT headers).
//! 3. Zero the first and the last `1 + 16 KiB / sector` sectors (33 with 512-byte sectors, 5
//!    with 4 KiB ones, exactly IPA's `dd` ranges) and the remembered GPT structures.
//! 4. Ask the kernel to re-read the partition table of a whole disk.

use super::blockdev::{AlignedBuf, Device};
use super::error::EraseError;
use blkid::prober::{ProbeState, Prober};
use blkid::{PartitionsFlags, SuperblocksFlags};
use std::os::unix::io::AsRawFd;
use std::time::Duration;

/// GPT entry arrays are 16 KiB by the UEFI minimum; sgdisk refuses arrays beyond this.
const GPT_ENTRIES_MIN: u64 = 16 * 1024;
const GPT_ENTRIES_MAX: u64 = 4 << 20;
/// wipefs gives up on a device that keeps reporting signatures after this many erasures.
const MAX_WIPES: usize = 256;
/// The kernel answers EBUSY while udev or a previous close still holds the disk.
const REREAD_ATTEMPTS: u32 = 5;
const REREAD_PAUSE: Duration = Duration::from_millis(200);

/// What was done to one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WipeReport {
    /// Signature types erased by libblkid, in order (`ext4`, `gpt`, `PMBR`, ...).
    pub signatures: Vec<String>,
    /// Byte ranges zeroed.
    pub zeroed: Vec<(u64, u64)>,
}

/// Wipes the metadata of the device at `dev` (opened by the caller after the guard allowed it).
/// `whole_disk` asks for a partition-table re-read afterwards.
pub fn wipe(dev: &Device, name: &str, whole_disk: bool) -> Result<WipeReport, EraseError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| EraseError::metadata(name, format!("{what}: {e}"));
    let sector = dev.sector();
    let gpt = gpt_ranges(dev);
    let signatures = wipe_signatures(dev).map_err(|e| fail("erasing signatures", &e))?;
    let mut ranges = edge_ranges(dev.size(), sector);
    ranges.extend(gpt);
    let ranges = merge(ranges);
    for &(off, len) in &ranges {
        zero(dev, off, len)
            .map_err(|e| fail(&format!("zeroing {len} bytes at offset {off}"), &e))?;
    }
    dev.sync().map_err(|e| fail("flushing the writes", &e))?;
    if whole_disk && dev.is_block_device() {
        reread_partitions(dev, name);
    }
    tracing::info!(
        "metadata of {name} destroyed: signatures {:?}, {} ranges zeroed",
        signatures,
        ranges.len()
    );
    Ok(WipeReport {
        signatures,
        zeroed: ranges,
    })
}

/// IPA's `dd` ranges: the first and last `gpt_sectors` sectors, clipped to the device.
pub fn edge_ranges(size: u64, sector: u64) -> Vec<(u64, u64)> {
    let span = gpt_sectors(sector) * sector;
    let head = span.min(size - size % sector);
    let mut r = vec![(0, head)];
    if size > span {
        let tail = (size / sector - gpt_sectors(sector)) * sector;
        r.push((tail, span));
    }
    r.retain(|&(_, len)| len > 0);
    r
}

/// The header sector plus a minimum-size entry array: 33 for 512-byte sectors, 5 for 4 KiB.
fn gpt_sectors(sector: u64) -> u64 {
    1 + GPT_ENTRIES_MIN.div_ceil(sector)
}

/// Sorted, overlapping and touching ranges joined.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (off, len) in ranges {
        match out.last_mut() {
            Some((o, l)) if off <= *o + *l => *l = (*l).max(off + len - *o),
            _ => out.push((off, len)),
        }
    }
    out
}

/// A GPT header as far as wiping needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GptHeader {
    alternate_lba: u64,
    entries_lba: u64,
    entries_bytes: u64,
}

fn parse_gpt_header(sector: &[u8]) -> Option<GptHeader> {
    if sector.len() < 92 || &sector[..8] != b"EFI PART" {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes(sector[o..o + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |o: usize| u64::from_le_bytes(sector[o..o + 8].try_into().unwrap_or([0; 8]));
    let entries_bytes = u64::from(u32_at(80)) * u64::from(u32_at(84));
    Some(GptHeader {
        alternate_lba: u64_at(32),
        entries_lba: u64_at(72),
        entries_bytes: entries_bytes.min(GPT_ENTRIES_MAX),
    })
}

/// The byte ranges of every GPT header (and its entries) reachable from the primary header
/// and from the last sector, as `sgdisk -Z` zaps them.
fn gpt_ranges(dev: &Device) -> Vec<(u64, u64)> {
    let (size, sector) = (dev.size(), dev.sector());
    let lbas = size / sector;
    if lbas < 3 {
        return Vec::new();
    }
    let read = |lba: u64| -> Option<GptHeader> {
        let mut buf = AlignedBuf::new(sector as usize);
        dev.read_exact_at(buf.as_mut_slice(), lba * sector).ok()?;
        parse_gpt_header(buf.as_slice())
    };
    let mut out = Vec::new();
    let visit = |lba: u64, h: GptHeader, out: &mut Vec<(u64, u64)>| {
        out.push((lba * sector, sector));
        let start = h.entries_lba.saturating_mul(sector);
        let len = h.entries_bytes.div_ceil(sector) * sector;
        if h.entries_lba > 0 && start.saturating_add(len) <= size {
            out.push((start, len));
        }
    };
    let mut backups = vec![lbas - 1];
    if let Some(primary) = read(1) {
        visit(1, primary, &mut out);
        if primary.alternate_lba > 1 && primary.alternate_lba < lbas {
            backups.push(primary.alternate_lba);
        }
    }
    backups.dedup();
    for lba in backups {
        if let Some(h) = read(lba) {
            visit(lba, h, &mut out);
        }
    }
    out
}

/// wipefs --all: erase each signature libblkid reports until it reports none.
fn wipe_signatures(dev: &Device) -> Result<Vec<String>, String> {
    let err = |what: &str, e: blkid::BlkIdError| format!("libblkid could not {what}: {e}");
    let mut pr = Prober::new().map_err(|e| err("start a probe", e))?;
    pr.set_device(dev.buffered().as_raw_fd(), 0, None)
        .map_err(|e| err("attach to the device", e))?;
    pr.enable_superblocks(true)
        .and_then(|_| {
            pr.set_superblocks_flags(
                SuperblocksFlags::MAGIC | SuperblocksFlags::TYPE | SuperblocksFlags::USAGE,
            )
        })
        .and_then(|_| pr.enable_partitions(true))
        .and_then(|_| pr.set_partitions_flags(PartitionsFlags::MAGIC | PartitionsFlags::FORCE_GPT))
        .map_err(|e| err("configure the probe", e))?;
    let mut wiped = Vec::new();
    loop {
        match pr.do_probe() {
            Ok(ProbeState::Success) => {}
            Ok(_) => break,
            Err(e) => return Err(err("read the device", e)),
        }
        if wiped.len() >= MAX_WIPES {
            return Err(format!(
                "libblkid still reports signatures after {MAX_WIPES} were erased"
            ));
        }
        let what = pr
            .lookup_value("TYPE")
            .or_else(|_| pr.lookup_value("PTTYPE"))
            .unwrap_or_else(|_| "unknown".to_string());
        pr.do_wipe(false)
            .map_err(|e| err(&format!("erase the {what} signature"), e))?;
        wiped.push(what);
    }
    Ok(wiped)
}

/// Writes zeros over `[off, off+len)` with direct I/O.
fn zero(dev: &Device, off: u64, len: u64) -> std::io::Result<()> {
    let buf = AlignedBuf::new(len.min(1 << 20) as usize);
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.as_slice().len() as u64) as usize;
        dev.write_all_at(&buf.as_slice()[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// BLKRRPART, retried while the disk is busy; a disk that stays busy keeps its old partition
/// devices until reboot, which does not undo the wipe, so that is logged rather than fatal.
fn reread_partitions(dev: &Device, name: &str) {
    for attempt in 1..=REREAD_ATTEMPTS {
        match dev.reread_partitions() {
            Ok(()) => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < REREAD_ATTEMPTS => {
                std::thread::sleep(REREAD_PAUSE)
            }
            // Loop devices without partition scanning answer EINVAL: nothing to re-read.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e) => {
                tracing::warn!("re-reading the partition table of {name} failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_ranges_are_ipas_dd_ranges() {
        // 512-byte sectors: 33 at each end.
        assert_eq!(
            edge_ranges(1 << 20, 512),
            vec![(0, 33 * 512), ((2048 - 33) * 512, 33 * 512)]
        );
        // 4 KiB sectors: 5 at each end.
        assert_eq!(
            edge_ranges(1 << 20, 4096),
            vec![(0, 5 * 4096), ((256 - 5) * 4096, 5 * 4096)]
        );
        // A device smaller than the span: all of it, once.
        assert_eq!(edge_ranges(10 * 512, 512), vec![(0, 10 * 512)]);
        assert_eq!(edge_ranges(100, 512), vec![]);
    }

    #[test]
    fn merge_joins_overlaps() {
        assert_eq!(
            merge(vec![(1024, 512), (0, 1024), (4096, 10), (2000, 100)]),
            vec![(0, 1536), (2000, 100), (4096, 10)]
        );
    }

    #[test]
    fn gpt_headers_parse_and_bound_the_entry_array() {
        let mut h = vec![0u8; 512];
        assert_eq!(parse_gpt_header(&h), None);
        h[..8].copy_from_slice(b"EFI PART");
        h[32..40].copy_from_slice(&1000u64.to_le_bytes());
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        assert_eq!(
            parse_gpt_header(&h),
            Some(GptHeader {
                alternate_lba: 1000,
                entries_lba: 2,
                entries_bytes: 16384
            })
        );
        h[80..84].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_gpt_header(&h).unwrap().entries_bytes, GPT_ENTRIES_MAX);
    }
}
