//! Making the kernel see a new partition table, and finding partition device nodes.
//!
//! BLKRRPART asks the kernel to re-read the whole table; it fails while any partition is in
//! use, and does nothing on kernels built without that table type's parser. So afterwards every
//! partition the kernel shows is compared with the table on disk, and the differences are fixed
//! one by one with BLKPG (what `partx` does), which works in both cases. Partition device nodes
//! are then found through sysfs (never by guessing `sda1` vs `nvme0n1p1`), waiting for devtmpfs.

use super::table::Table;
use super::DiskError;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a partition's device node may take to appear after the kernel added it.
const NODE_WAIT: Duration = Duration::from_secs(10);

const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

mod ioctl {
    nix::ioctl_none_bad!(blkrrpart, 0x125f);
    nix::ioctl_write_ptr_bad!(blkpg, 0x1269, super::BlkpgIoctlArg);
}

/// A partition as the kernel knows it (from sysfs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPartition {
    pub number: u32,
    pub start: u64,
    pub size: u64,
    /// The device node name (`sda1`, `nvme0n1p2`, `loop0p1`).
    pub name: String,
}

/// True when `path` is a block device (a regular file has no kernel partitions).
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false)
}

/// The sysfs directory of the block device at `path` (`/sys/dev/block/MAJ:MIN`, resolved).
fn sysfs_dir(path: &Path) -> Result<PathBuf, DiskError> {
    let meta = std::fs::metadata(path).map_err(|e| DiskError::io("reading", path, e))?;
    let rdev = meta.rdev();
    let link = format!(
        "/sys/dev/block/{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    std::fs::canonicalize(&link).map_err(|e| DiskError::io("finding the sysfs entry of", path, e))
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The partitions the kernel currently shows for the disk at `disk` (sysfs sizes are in
/// 512-byte units whatever the logical sector size).
pub fn kernel_partitions(disk: &Path) -> Result<Vec<KernelPartition>, DiskError> {
    let dir = sysfs_dir(disk)?;
    let entries = std::fs::read_dir(&dir).map_err(|e| DiskError::io("listing", &dir, e))?;
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        let Some(number) = read_u64(&p.join("partition")) else {
            continue;
        };
        let (Some(start), Some(size)) = (read_u64(&p.join("start")), read_u64(&p.join("size")))
        else {
            continue;
        };
        out.push(KernelPartition {
            number: number as u32,
            start: start * 512,
            size: size * 512,
            name: e.file_name().to_string_lossy().into_owned(),
        });
    }
    out.sort_by_key(|p| p.number);
    Ok(out)
}

/// Makes the kernel's view of `disk`'s partitions match `table`.
pub fn sync_partitions(file: &File, disk: &Path, table: &Table) -> Result<(), DiskError> {
    if !is_block_device(disk) {
        return Ok(());
    }
    // SAFETY: BLKRRPART takes no argument and acts on the open descriptor only.
    if let Err(e) = unsafe { ioctl::blkrrpart(file.as_raw_fd()) } {
        tracing::info!(
            "re-reading the partition table of {} failed ({e}); updating partitions one by one",
            disk.display()
        );
    }
    let current = kernel_partitions(disk)?;
    for k in &current {
        let same = table
            .get(k.number)
            .is_some_and(|p| p.start == k.start && p.size == k.size);
        if !same {
            blkpg(file, disk, BLKPG_DEL_PARTITION, k.number, 0, 0)?;
        }
    }
    for p in &table.partitions {
        let present = current
            .iter()
            .any(|k| k.number == p.number && k.start == p.start && k.size == p.size);
        if !present {
            blkpg(file, disk, BLKPG_ADD_PARTITION, p.number, p.start, p.size)?;
        }
    }
    Ok(())
}

fn blkpg(
    file: &File,
    disk: &Path,
    op: libc::c_int,
    number: u32,
    start: u64,
    size: u64,
) -> Result<(), DiskError> {
    let mut part = BlkpgPartition {
        start: start as libc::c_longlong,
        length: size as libc::c_longlong,
        pno: number as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` points at a valid blkpg_partition that outlives the call.
    unsafe { ioctl::blkpg(file.as_raw_fd(), &arg) }.map_err(|e| {
        let what = if op == BLKPG_ADD_PARTITION {
            "adding"
        } else {
            "removing"
        };
        DiskError::Invalid(format!(
            "{what} partition {number} of {} in the kernel (BLKPG) failed: {e}",
            disk.display()
        ))
    })?;
    Ok(())
}

/// The device node of partition `number` of the block device `disk`, once it exists.
pub fn partition_node(disk: &Path, number: u32) -> Result<PathBuf, DiskError> {
    let deadline = Instant::now() + NODE_WAIT;
    loop {
        let found = kernel_partitions(disk)?
            .into_iter()
            .find(|k| k.number == number)
            .map(|k| PathBuf::from("/dev").join(k.name));
        match found {
            Some(node) if is_block_device(&node) => return Ok(node),
            _ if Instant::now() >= deadline => {
                return Err(DiskError::Invalid(format!(
                    "partition {number} of {} has no device node after {} s",
                    disk.display(),
                    NODE_WAIT.as_secs()
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The logical sector size of a block device (512 for regular files).
pub fn logical_sector_size(file: &File, path: &Path) -> Result<u64, DiskError> {
    if !is_block_device(path) {
        return Ok(512);
    }
    nix::ioctl_read_bad!(blksszget, 0x1268, libc::c_int);
    let mut ssz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int.
    unsafe { blksszget(file.as_raw_fd(), &mut ssz) }.map_err(|e| {
        DiskError::Invalid(format!(
            "reading the sector size of {} failed: {e}",
            path.display()
        ))
    })?;
    Ok(u64::try_from(ssz).unwrap_or(512).max(512))
}
