//! Boot loaders on an EFI system partition, read without mounting it (the `fatfs` crate): the
//! files IPA's `_get_efi_bootloaders` looks for, a `BOOTX64.CSV`-style hint first.

use crate::disk::window::Window;
use std::fs::File;
use std::io::Read;

/// IPA's `BOOTLOADERS_EFI` (lower case): shim hints first in importance, then default loaders.
const LOADERS: &[&str] = &[
    "bootx64.csv",
    "bootaa64.csv",
    "boot.csv",
    "bootia32.efi",
    "bootx64.efi",
    "bootia64.efi",
    "bootarm.efi",
    "bootaa64.efi",
    "bootriscv32.efi",
    "bootriscv64.efi",
    "bootriscv128.efi",
    "grubaa64.efi",
    "winload.efi",
];
/// The deepest directory level searched (real ESPs are 2-3 deep).
const MAX_DEPTH: usize = 8;
/// Largest CSV hint read.
const MAX_CSV: u64 = 64 << 10;

/// A loader to register: the path firmware loads and the entry's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    /// `\EFI\BOOT\BOOTX64.EFI`.
    pub path: String,
    /// From the CSV hint; `None` means IPA's `ironic<N>`.
    pub label: Option<String>,
}

type Fs<'a> = fatfs::FileSystem<Window<'a>>;
type Dir<'a, 'b> = fatfs::Dir<'b, Window<'a>>;

/// The loaders on the FAT file system at `[start, start+len)` of `disk`. A CSV hint wins
/// alone; otherwise every known loader name, in directory order (top-down, as os.walk).
pub fn find_loaders(disk: &File, start: u64, len: u64) -> std::io::Result<Vec<Loader>> {
    let fs: Fs = fatfs::FileSystem::new(Window::new(disk, start, len), fatfs::FsOptions::new())?;
    let mut found = Vec::new();
    if let Some(csv) = walk(&fs.root_dir(), "", 0, &mut found)? {
        return Ok(vec![csv]);
    }
    Ok(found
        .into_iter()
        .map(|p| Loader {
            path: windows_path(&p),
            label: None,
        })
        .collect())
}

fn windows_path(rel: &str) -> String {
    format!("\\{}", rel.replace('/', "\\"))
}

/// Records matching files of `dir` in `found`, then descends; returns at the first CSV hint.
fn walk(
    dir: &Dir,
    prefix: &str,
    depth: usize,
    found: &mut Vec<String>,
) -> std::io::Result<Option<Loader>> {
    let mut subdirs = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name == "." || name == ".." {
            continue;
        }
        let rel = format!("{prefix}{name}");
        if entry.is_dir() {
            subdirs.push((entry.to_dir(), rel));
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if !LOADERS.contains(&lower.as_str()) {
            continue;
        }
        if lower.ends_with(".csv") {
            let mut raw = Vec::new();
            entry.to_file().take(MAX_CSV).read_to_end(&mut raw)?;
            return csv_loader(&rel, &raw).map(Some);
        }
        found.push(rel);
    }
    if depth < MAX_DEPTH {
        for (sub, rel) in subdirs {
            if let Some(csv) = walk(&sub, &format!("{rel}/"), depth + 1, found)? {
                return Ok(Some(csv));
            }
        }
    }
    Ok(None)
}

/// A shim CSV (UTF-16, with or without BOM): `loader.efi,Label,options,comment`; the loader
/// sits next to the CSV.
fn csv_loader(rel: &str, raw: &[u8]) -> std::io::Result<Loader> {
    let text = utf16(raw);
    let mut fields = text.splitn(4, ',');
    let (Some(file), Some(label)) = (fields.next(), fields.next()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the boot loader hint {rel} is not a CSV of loader,label"),
        ));
    };
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    let loader = if dir.is_empty() {
        file.trim_start_matches('\u{feff}').to_string()
    } else {
        format!("{dir}/{}", file.trim_start_matches('\u{feff}'))
    };
    Ok(Loader {
        path: windows_path(&loader),
        label: Some(label.to_string()),
    })
}

fn utf16(raw: &[u8]) -> String {
    let (body, big) = match raw {
        [0xff, 0xfe, rest @ ..] => (rest, false),
        [0xfe, 0xff, rest @ ..] => (rest, true),
        _ => (raw, false),
    };
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| {
            if big {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        })
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::Write;

    /// A FAT file system in a file with `files` (path, content) on it.
    pub fn esp_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, File, u64) {
        let len = 40 << 20;
        let (d, f, p) = crate::disk::scratch_disk(len);
        crate::disk::format::vfat(&f, &p, 0, len, "efi-part", true).unwrap();
        write_files(&f, 0, len, files);
        (d, f, len)
    }

    pub fn write_files(f: &File, start: u64, len: u64, files: &[(&str, &[u8])]) {
        let fs =
            fatfs::FileSystem::new(Window::new(f, start, len), fatfs::FsOptions::new()).unwrap();
        for (path, content) in files {
            let root = fs.root_dir();
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let mut d = root.clone();
            for part in dir.split('/').filter(|s| !s.is_empty()) {
                d = d.create_dir(part).unwrap();
            }
            let mut file = d.create_file(name).unwrap();
            file.write_all(content).unwrap();
        }
    }

    fn utf16le_bom(s: &str) -> Vec<u8> {
        let mut v = vec![0xff, 0xfe];
        v.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
        v
    }

    #[test]
    fn the_csv_hint_wins() {
        let csv = utf16le_bom("shimx64.efi,redhat,,This is the boot entry for Red Hat\n");
        let (_d, f, len) = esp_with(&[
            ("EFI/BOOT/BOOTX64.EFI", b"MZ"),
            ("EFI/redhat/shimx64.efi", b"MZ"),
            ("EFI/redhat/BOOTX64.CSV", &csv),
        ]);
        assert_eq!(
            find_loaders(&f, 0, len).unwrap(),
            vec![Loader {
                path: "\\EFI\\redhat\\shimx64.efi".into(),
                label: Some("redhat".into())
            }]
        );
    }

    #[test]
    fn default_loaders_without_a_hint() {
        let (_d, f, len) = esp_with(&[
            ("EFI/BOOT/BOOTX64.EFI", b"MZ"),
            ("EFI/debian/grubx64.efi", b"MZ"),
            ("EFI/debian/shimx64.efi", b"MZ"),
        ]);
        let found = find_loaders(&f, 0, len).unwrap();
        assert_eq!(
            found,
            vec![Loader {
                path: "\\EFI\\BOOT\\BOOTX64.EFI".into(),
                label: None
            }]
        );
        let (_d, f, len) = esp_with(&[]);
        assert!(find_loaders(&f, 0, len).unwrap().is_empty());
        let bad = utf16le_bom("justonefield");
        let (_d, f, len) = esp_with(&[("EFI/x/BOOTX64.CSV", &bad)]);
        assert!(find_loaders(&f, 0, len).is_err());
    }
}
