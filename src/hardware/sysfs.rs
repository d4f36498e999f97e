//! Small, forgiving readers for sysfs/procfs attributes.
//!
//! Inventory is best effort, like IPA's: an attribute that is missing or unreadable is simply
//! unknown (`None`), never an error that would stop the whole inventory.

use std::fs;
use std::path::{Path, PathBuf};

/// The attribute's text with surrounding whitespace removed; `None` when it cannot be read.
pub(crate) fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Like [`read_trimmed`], but an empty attribute is also unknown.
pub(crate) fn read_nonempty(path: impl AsRef<Path>) -> Option<String> {
    read_trimmed(path).filter(|s| !s.is_empty())
}

/// The attribute parsed as a decimal number.
pub(crate) fn read_u64(path: impl AsRef<Path>) -> Option<u64> {
    read_trimmed(path)?.parse().ok()
}

/// The attribute parsed as a signed decimal number (sysfs uses -1 for "unknown" in places).
pub(crate) fn read_i64(path: impl AsRef<Path>) -> Option<i64> {
    read_trimmed(path)?.parse().ok()
}

/// The raw bytes of a binary attribute (VPD pages, SMBIOS tables).
pub(crate) fn read_bytes(path: impl AsRef<Path>) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

/// The last component of a symlink's target (`device/driver` -> `e1000e`).
pub(crate) fn link_basename(path: impl AsRef<Path>) -> Option<String> {
    let path = path.as_ref();
    let target = fs::read_link(path).ok()?;
    // The kernel's links always end with the target's name; resolve anything else (`..`).
    match target.file_name() {
        Some(n) => Some(n.to_string_lossy().into_owned()),
        None => fs::canonicalize(path)
            .ok()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    }
}

/// The names in a directory, sorted so that every listing is deterministic.
pub(crate) fn dir_names(path: impl AsRef<Path>) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(path) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The canonical path of a sysfs object (symlinks resolved), or `None` if it does not exist.
pub(crate) fn canonical(path: impl AsRef<Path>) -> Option<PathBuf> {
    fs::canonicalize(path).ok()
}

/// Parses a kernel CPU/node list such as `0-3,8,10-11` into the listed numbers.
/// Malformed pieces are skipped rather than failing the whole list.
pub(crate) fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for piece in list
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match piece.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if a <= b && b - a < 65536 {
                        out.extend(a..=b);
                    }
                }
            }
            None => {
                if let Ok(n) = piece.parse() {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Trims and collapses inner runs of whitespace into one space, as util-linux's
/// `normalize_whitespace` does for lsblk's MODEL and SERIAL columns.
pub(crate) fn normalize_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("5"), vec![5]);
        assert_eq!(parse_cpu_list("3-1,x,2"), vec![2]);
    }

    #[test]
    fn whitespace_is_normalized() {
        assert_eq!(
            normalize_whitespace("  INTEL   SSDSC2KB48  "),
            "INTEL SSDSC2KB48"
        );
        assert_eq!(normalize_whitespace("   "), "");
    }
}
