//! Disks as the deploy steps need them: partition tables ([`table`]), the kernel's view of
//! partitions ([`kernel`]), file systems the agent creates ([`format`]) and what blkid sees
//! ([`probe`]), all on a byte range of the disk ([`window`]) so that tests can use files.
//!
//! Everything here is blocking I/O: callers run it on blocking threads.

pub mod format;
pub mod kernel;
pub mod probe;
pub mod table;
pub mod window;

use crate::safety::DiskGuard;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use table::{Geometry, Partition, MIB};

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{op} {} failed: {source}", .device.display())]
    Io {
        op: String,
        device: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl DiskError {
    pub fn io(op: &str, device: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op: op.to_string(),
            device: device.to_path_buf(),
            source,
        }
    }
}

/// An install disk opened for partitioning.
#[derive(Debug)]
pub struct Disk {
    pub path: PathBuf,
    pub file: File,
    pub geo: Geometry,
}

impl Disk {
    /// Opens `path` read-write after `guard` allowed it.
    pub fn open(path: &Path, guard: &DiskGuard) -> Result<Self, DiskError> {
        guard
            .check(path)
            .map_err(|e| DiskError::Invalid(e.to_string()))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| DiskError::io("opening", path, e))?;
        let sector = kernel::logical_sector_size(&file, path)?;
        let geo = Geometry::of(&file, sector, path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            geo,
        })
    }

    /// Zeroes the first and last MiB: every MBR, GPT (both copies) and boot code there was, so
    /// no stale table survives next to the new one (IPA's `destroy_disk_metadata`).
    pub fn wipe_tables(&self) -> Result<(), DiskError> {
        let zeros = vec![0u8; MIB as usize];
        let head = self.geo.size.min(MIB);
        self.file
            .write_all_at(&zeros[..head as usize], 0)
            .map_err(|e| DiskError::io("wiping the partition table of", &self.path, e))?;
        let tail_at = self.geo.size.saturating_sub(MIB).max(head);
        let tail = (self.geo.size - tail_at) as usize;
        self.file
            .write_all_at(&zeros[..tail], tail_at)
            .map_err(|e| DiskError::io("wiping the backup partition table of", &self.path, e))
    }

    pub fn sync(&self) -> Result<(), DiskError> {
        self.file
            .sync_all()
            .map_err(|e| DiskError::io("flushing", &self.path, e))
    }

    pub fn is_block_device(&self) -> bool {
        kernel::is_block_device(&self.path)
    }

    /// The device node of `part` (block devices only).
    pub fn partition_node(&self, part: &Partition) -> Result<PathBuf, DiskError> {
        if !self.is_block_device() {
            return Err(DiskError::Invalid(format!(
                "{} is a regular file: its partitions have no device nodes",
                self.path.display()
            )));
        }
        kernel::partition_node(&self.path, part.number)
    }

    /// What blkid finds inside `part`.
    pub fn probe(&self, part: &Partition) -> Result<probe::FsInfo, DiskError> {
        probe::filesystem(&self.file, &self.path, part.start, part.size)
    }
}

/// A sparse regular file of `size` bytes standing in for a disk in unit tests.
#[cfg(test)]
pub(crate) fn scratch_disk(size: u64) -> (tempfile::TempDir, File, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("disk");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("creating the scratch disk");
    f.set_len(size).expect("sizing the scratch disk");
    (dir, f, path)
}
