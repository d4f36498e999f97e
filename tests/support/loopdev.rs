//! Loop devices over files the test created: the only block devices tests may write.

use super::erase::run;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A loop device over a file; partitions scanned with partx; detached on drop.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    /// `None` (with a SKIPPED note) when loop devices cannot be attached here. The kernel
    /// scans the partition table at attach time.
    pub fn attach(file: &Path, read_only: bool) -> Option<Self> {
        let mut args = vec!["-P"];
        if read_only {
            args.push("-r");
        }
        Self::losetup(file, &args)
    }

    /// Read-write, without the kernel's partition scan: for tests whose code under test makes
    /// the partitions known itself (BLKRRPART / BLKPG).
    pub fn attach_plain(file: &Path) -> Option<Self> {
        Self::losetup(file, &[])
    }

    fn losetup(file: &Path, flags: &[&str]) -> Option<Self> {
        let mut args = vec!["-f", "--show"];
        args.extend_from_slice(flags);
        let out = Command::new("losetup")
            .args(&args)
            .arg(file)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot attach a loop device here (needs root and /dev/loop-control): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Self {
            dev: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
        })
    }

    pub fn kname(&self) -> String {
        self.dev.file_name().unwrap().to_string_lossy().to_string()
    }

    /// Adds the partitions of its table as block devices (this kernel's BLKRRPART may lack
    /// the table parsers; partx parses in user space and adds them with BLKPG).
    pub fn add_partitions(&self) {
        run("partx", &["-a", self.dev.to_str().unwrap()]);
    }

    /// The partition devices the kernel currently has.
    pub fn partitions(&self) -> Vec<PathBuf> {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(format!("/sys/block/{}", self.kname()))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| PathBuf::from("/dev").join(e.file_name()))
            .collect();
        parts.sort();
        parts
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}
