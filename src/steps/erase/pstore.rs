//! `erase_pstore`: empty the kernel's persistent store (crash dumps kept across reboots in
//! firmware or RAM), found as the mount of type `pstore` in /proc/mounts (IPA's
//! `_find_pstore_mount_point` and `erase_pstore`).

use crate::hardware::HostRoot;
use std::path::PathBuf;

/// The mount point of the pstore file system, if mounted.
pub fn mount_point(mounts: &str) -> Option<String> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("pstore"), Some(dir), Some("pstore")) => Some(dir.to_string()),
            _ => None,
        }
    })
}

/// Removes every entry of the pstore mount under `host`; returns the removed paths.
pub fn erase(host: &HostRoot) -> Result<Vec<PathBuf>, String> {
    let mounts = std::fs::read_to_string(host.path("/proc/mounts"))
        .map_err(|e| format!("reading /proc/mounts to find the pstore failed: {e}"))?;
    let Some(dir) = mount_point(&mounts) else {
        tracing::debug!("no pstore file system is mounted");
        return Ok(Vec::new());
    };
    let dir = host.path(&dir);
    tracing::info!("cleaning up pstore in {}", dir.display());
    let entries = std::fs::read_dir(&dir)
        .map_err(|e| format!("listing pstore {} failed: {e}", dir.display()))?;
    let mut removed = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("listing pstore {} failed: {e}", dir.display()))?
            .path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let r = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        r.map_err(|e| format!("removing pstore entry {} failed: {e}", path.display()))?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pstore_mount() {
        let m = "sysfs /sys sysfs rw 0 0\npstore /sys/fs/pstore pstore rw,nosuid 0 0\n";
        assert_eq!(mount_point(m).as_deref(), Some("/sys/fs/pstore"));
        assert_eq!(mount_point("proc /proc proc rw 0 0\n"), None);
        // Only the file system type counts, not a device called pstore.
        assert_eq!(mount_point("pstore /mnt ext4 rw 0 0\n"), None);
    }

    #[test]
    fn empties_the_mount_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/pstore/sub")).unwrap();
        std::fs::write(
            root.join("proc/mounts"),
            "pstore /sys/fs/pstore pstore rw 0 0\n",
        )
        .unwrap();
        std::fs::write(root.join("sys/fs/pstore/dmesg-efi-1"), "oops").unwrap();
        std::fs::write(root.join("sys/fs/pstore/sub/x"), "y").unwrap();
        std::fs::write(root.join("sys/fs/keep"), "z").unwrap();
        let host = HostRoot::new(root);
        let removed = erase(&host).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(
            std::fs::read_dir(root.join("sys/fs/pstore"))
                .unwrap()
                .count(),
            0
        );
        assert!(root.join("sys/fs/keep").exists());
        // No pstore mounted: nothing to do.
        std::fs::write(root.join("proc/mounts"), "").unwrap();
        assert_eq!(erase(&host).unwrap(), Vec::<PathBuf>::new());
        // No /proc/mounts: a clear error.
        let e = erase(&HostRoot::new("/nonexistent")).unwrap_err();
        assert!(
            e.starts_with("reading /proc/mounts to find the pstore failed"),
            "{e}"
        );
    }
}
