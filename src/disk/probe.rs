//! What libblkid sees in a byte range of a disk: file system type, UUID and label.

use super::DiskError;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A file system's identity as blkid reports it (`TYPE`, `UUID`, `LABEL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub fstype: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

/// Probes `[start, start+len)` of `disk` for a file system (no partition table probing).
pub fn filesystem(disk: &File, device: &Path, start: u64, len: u64) -> Result<FsInfo, DiskError> {
    let fail = |e: blkid::BlkIdError| {
        DiskError::Invalid(format!(
            "probing for a file system at byte {start} of {} failed: {e}",
            device.display()
        ))
    };
    let mut probe = blkid::prober::Prober::new().map_err(fail)?;
    let (off, size) = (
        i64::try_from(start).unwrap_or(i64::MAX),
        i64::try_from(len).unwrap_or(i64::MAX),
    );
    probe
        .set_device(disk.as_raw_fd(), off, Some(size))
        .map_err(fail)?;
    probe.enable_superblocks(true).map_err(fail)?;
    probe.enable_partitions(false).map_err(fail)?;
    probe.do_safe_probe().map_err(fail)?;
    let get = |k: &str| {
        probe
            .lookup_value(k)
            .ok()
            .filter(|v: &String| !v.is_empty())
    };
    Ok(FsInfo {
        fstype: get("TYPE"),
        uuid: get("UUID"),
        label: get("LABEL"),
    })
}
