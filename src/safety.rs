//! Who may be destroyed: the guard in front of every destructive operation.
//!
//! The agent erases and overwrites disks. That is its job inside the ramdisk, and a disaster
//! anywhere else (a developer's laptop, a CI machine, a container on a hypervisor). So every
//! destructive path asks a [`DiskGuard`] first. Block devices are writable only when the agent
//! runs as a ramdisk (its root filesystem lives in RAM: rootfs, ramfs or tmpfs) or when the
//! operator named the device explicitly (`--allow-device`). Regular files are never disks and are
//! always allowed: tests and `write-image` to a file use them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error(
        "refusing to modify block device {0}: the agent is not running from a ramdisk and the \
         device was not named with --allow-device"
    )]
    NotPermitted(PathBuf),
    #[error("cannot inspect {path} before modifying it: {reason}")]
    Inspect { path: PathBuf, reason: String },
}

/// Decides whether a destructive operation may touch a path.
#[derive(Debug, Clone, Default)]
pub struct DiskGuard {
    ramdisk: bool,
    allowed: Vec<PathBuf>,
}

impl DiskGuard {
    /// The guard for this process: ramdisk detection plus the explicitly allowed devices.
    pub fn detect(allowed: Vec<PathBuf>) -> Self {
        let ramdisk = std::fs::read_to_string("/proc/self/mountinfo")
            .map(|m| root_is_in_ram(&m))
            .unwrap_or(false);
        Self::new(ramdisk, allowed)
    }

    pub fn new(ramdisk: bool, allowed: Vec<PathBuf>) -> Self {
        let allowed = allowed.into_iter().map(|p| canonical(&p)).collect();
        Self { ramdisk, allowed }
    }

    /// True when the agent runs as a ramdisk's agent (may power off, reboot, erase any disk).
    pub fn is_ramdisk(&self) -> bool {
        self.ramdisk
    }

    /// Ok when `path` may be written, erased or reformatted.
    pub fn check(&self, path: &Path) -> Result<(), GuardError> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => return Ok(()),
            Ok(_) => {}
            // A file that does not exist yet is created by the writer, not a disk.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(GuardError::Inspect {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
        if self.ramdisk || self.allowed.contains(&canonical(path)) {
            Ok(())
        } else {
            Err(GuardError::NotPermitted(path.to_path_buf()))
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Reads /proc/self/mountinfo: is `/` a RAM-backed filesystem (an initramfs or a tmpfs root)?
fn root_is_in_ram(mountinfo: &str) -> bool {
    // Format: id parent major:minor root mountpoint opts [optional...] - fstype source superopts.
    // The last line for "/" wins: later mounts shadow earlier ones.
    let mut fstype = None;
    for line in mountinfo.lines() {
        let mut halves = line.splitn(2, " - ");
        let (left, right) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        if left.split_whitespace().nth(4) == Some("/") {
            fstype = right.split_whitespace().next().map(str::to_string);
        }
    }
    matches!(fstype.as_deref(), Some("rootfs" | "ramfs" | "tmpfs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_root_is_ram() {
        let m = "1 1 0:2 / / rw - rootfs rootfs rw\n22 1 0:20 / /proc rw - proc proc rw\n";
        assert!(root_is_in_ram(m));
    }

    #[test]
    fn disk_root_is_not_ram() {
        let m = "25 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n";
        assert!(!root_is_in_ram(m));
        let overlay = "1 1 0:2 / / rw - rootfs rootfs rw\n30 1 0:40 / / rw - overlay overlay rw\n";
        assert!(!root_is_in_ram(overlay));
    }

    #[test]
    fn files_are_always_allowed_and_devices_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("disk.img");
        std::fs::write(&f, b"x").unwrap();
        let g = DiskGuard::new(false, vec![]);
        assert!(g.check(&f).is_ok());
        assert!(g.check(&dir.path().join("new.img")).is_ok());
        let dev = Path::new("/dev/null");
        assert_eq!(
            g.check(dev),
            Err(GuardError::NotPermitted(dev.to_path_buf()))
        );
        assert!(DiskGuard::new(false, vec![dev.to_path_buf()])
            .check(dev)
            .is_ok());
        assert!(DiskGuard::new(true, vec![]).check(dev).is_ok());
    }
}
