//! UEFI boot entries through efivarfs (`/sys/firmware/efi/efivars`): reading, adding and
//! removing `Boot####` load options and keeping `BootOrder` in step, as efibootmgr does.
//!
//! A variable file holds 4 bytes of attributes then the data, and must be written in one
//! write(2). efivarfs marks most files immutable; the flag is cleared before a change.

use super::device_path;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// EFI_GLOBAL_VARIABLE.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const ATTRS: u32 = 0x7;
const LOAD_OPTION_ACTIVE: u32 = 0x1;
const EFIVARFS_MAGIC: i64 = 0xde5e_81e4;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

#[derive(Debug, thiserror::Error)]
pub enum NvramError {
    #[error("{op} UEFI variable {name} in {} failed: {source}", .dir.display())]
    Io {
        op: &'static str,
        name: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no UEFI variables at {}: the machine did not boot in UEFI mode or efivarfs is not mounted", .0.display())]
    Missing(PathBuf),
    #[error("all 65536 Boot#### entries are in use")]
    Full,
}

/// One `Boot####` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub number: u16,
    pub attributes: u32,
    pub label: String,
    /// The device path list, raw.
    pub path: Vec<u8>,
    pub optional: Vec<u8>,
}

impl BootEntry {
    /// The device path as efibootmgr prints it.
    pub fn path_text(&self) -> String {
        device_path::to_text(&self.path)
    }

    /// EFI_LOAD_OPTION: attributes, path list length, description, paths, optional data.
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&self.attributes.to_le_bytes());
        v.extend_from_slice(&(self.path.len() as u16).to_le_bytes());
        v.extend_from_slice(&device_path::ucs2(&self.label));
        v.extend_from_slice(&self.path);
        v.extend_from_slice(&self.optional);
        v
    }

    fn decode(number: u16, data: &[u8]) -> Option<Self> {
        let attributes = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
        let path_len = u16::from_le_bytes(data.get(4..6)?.try_into().ok()?) as usize;
        let mut end = 6;
        let mut units = Vec::new();
        loop {
            let u = u16::from_le_bytes(data.get(end..end + 2)?.try_into().ok()?);
            end += 2;
            if u == 0 {
                break;
            }
            units.push(u);
        }
        let path = data.get(end..end + path_len)?.to_vec();
        Some(Self {
            number,
            attributes,
            label: String::from_utf16_lossy(&units),
            path,
            optional: data.get(end + path_len..)?.to_vec(),
        })
    }
}

/// The variable store.
#[derive(Debug, Clone)]
pub struct Nvram {
    dir: PathBuf,
}

impl Nvram {
    /// The store at `dir` (`<root>/sys/firmware/efi/efivars`), if it is there.
    pub fn open(dir: &Path) -> Result<Self, NvramError> {
        if !dir.is_dir() {
            return Err(NvramError::Missing(dir.to_path_buf()));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL}"))
    }

    fn err(&self, op: &'static str, name: &str, source: std::io::Error) -> NvramError {
        NvramError::Io {
            op,
            name: name.to_string(),
            dir: self.dir.clone(),
            source,
        }
    }

    /// The data of a global variable (without the attributes), `None` when it does not exist.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, NvramError> {
        match std::fs::read(self.file(name)) {
            Ok(d) => Ok(Some(d.get(4..).unwrap_or_default().to_vec())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("reading", name, e)),
        }
    }

    pub fn set(&self, name: &str, data: &[u8]) -> Result<(), NvramError> {
        let path = self.file(name);
        make_mutable(&path);
        let mut buf = ATTRS.to_le_bytes().to_vec();
        buf.extend_from_slice(data);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.err("opening", name, e))?;
        f.write_all(&buf)
            .map_err(|e| self.err("writing", name, e))?;
        // efivarfs replaces the variable on write; a plain directory (tests) keeps old bytes.
        if !is_efivarfs(&f) {
            f.set_len(buf.len() as u64)
                .map_err(|e| self.err("writing", name, e))?;
        }
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), NvramError> {
        let path = self.file(name);
        make_mutable(&path);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.err("deleting", name, e))
            }
            _ => Ok(()),
        }
    }

    /// Every readable `Boot####` entry, by number.
    pub fn boot_entries(&self) -> Result<Vec<BootEntry>, NvramError> {
        let dir = std::fs::read_dir(&self.dir).map_err(|e| self.err("listing", "Boot*", e))?;
        let mut out = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(num) = boot_number(&name) else {
                continue;
            };
            let var = format!("Boot{num:04X}");
            if let Some(entry) = self.get(&var)?.and_then(|d| BootEntry::decode(num, &d)) {
                out.push(entry);
            }
        }
        out.sort_by_key(|e| e.number);
        Ok(out)
    }

    pub fn boot_order(&self) -> Result<Vec<u16>, NvramError> {
        Ok(self
            .get("BootOrder")?
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    fn set_boot_order(&self, order: &[u16]) -> Result<(), NvramError> {
        let data: Vec<u8> = order.iter().flat_map(|n| n.to_le_bytes()).collect();
        self.set("BootOrder", &data)
    }

    /// `efibootmgr -b N -B`: the entry and its place in BootOrder go.
    pub fn remove_entry(&self, number: u16) -> Result<(), NvramError> {
        self.delete(&format!("Boot{number:04X}"))?;
        let order = self.boot_order()?;
        if order.contains(&number) {
            let kept: Vec<u16> = order.into_iter().filter(|n| *n != number).collect();
            self.set_boot_order(&kept)?;
        }
        Ok(())
    }

    /// `efibootmgr -c`: an active entry at the first free number, first in BootOrder.
    pub fn add_entry(&self, label: &str, path: Vec<u8>) -> Result<u16, NvramError> {
        let used: Vec<u16> = self.boot_entries()?.iter().map(|e| e.number).collect();
        let number = (0..=u16::MAX)
            .find(|n| {
                !used.contains(n) && self.get(&format!("Boot{n:04X}")).ok().flatten().is_none()
            })
            .ok_or(NvramError::Full)?;
        let entry = BootEntry {
            number,
            attributes: LOAD_OPTION_ACTIVE,
            label: label.to_string(),
            path,
            optional: Vec::new(),
        };
        self.set(&format!("Boot{number:04X}"), &entry.encode())?;
        let mut order = vec![number];
        order.extend(self.boot_order()?.into_iter().filter(|n| *n != number));
        self.set_boot_order(&order)?;
        Ok(number)
    }
}

/// `Boot0001-8be4df61-...` -> 1 (four upper- or lower-case hex digits, nothing else).
fn boot_number(file: &str) -> Option<u16> {
    let rest = file.strip_prefix("Boot")?;
    let (hex, guid) = rest.split_once('-')?;
    if hex.len() != 4 || !guid.eq_ignore_ascii_case(GLOBAL) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

fn is_efivarfs(f: &File) -> bool {
    nix::sys::statfs::fstatfs(f)
        .map(|s| s.filesystem_type() == nix::sys::statfs::FsType(EFIVARFS_MAGIC))
        .unwrap_or(false)
}

/// Clears efivarfs's immutable flag (no-op elsewhere and when the file does not exist).
fn make_mutable(path: &Path) {
    nix::ioctl_read!(getflags, b'f', 1, libc::c_long);
    nix::ioctl_write_ptr!(setflags, b'f', 2, libc::c_long);
    let Ok(f) = File::open(path) else { return };
    if !is_efivarfs(&f) {
        return;
    }
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long through valid pointers.
    unsafe {
        if getflags(f.as_raw_fd(), &mut flags).is_ok() && flags & FS_IMMUTABLE_FL != 0 {
            let cleared = flags & !FS_IMMUTABLE_FL;
            if let Err(e) = setflags(f.as_raw_fd(), &cleared) {
                tracing::warn!(
                    "clearing the immutable flag of {} failed: {e}",
                    path.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Nvram) {
        let d = tempfile::tempdir().unwrap();
        let n = Nvram::open(d.path()).unwrap();
        (d, n)
    }

    #[test]
    fn entries_are_added_first_in_boot_order_and_removed_from_it() {
        let (d, n) = store();
        // a firmware entry already there, Boot0000, in BootOrder
        let fw = BootEntry {
            number: 0,
            attributes: 1,
            label: "UEFI PXEv4".into(),
            path: vec![0x7f, 0xff, 4, 0],
            optional: vec![1, 2, 3],
        };
        n.set("Boot0000", &fw.encode()).unwrap();
        n.set_boot_order(&[0]).unwrap();
        let g = uuid::Uuid::new_v4();
        let hd = device_path::HardDrive {
            partition: 1,
            start_lba: 2048,
            size_lba: 4096,
            signature: device_path::Signature::Gpt(g),
        };
        let num = n
            .add_entry(
                "ironic1",
                device_path::hd_file(&hd, "\\EFI\\BOOT\\BOOTX64.EFI"),
            )
            .unwrap();
        assert_eq!(num, 1);
        assert_eq!(n.boot_order().unwrap(), vec![1, 0]);
        let entries = n.boot_entries().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], fw);
        assert_eq!(entries[1].label, "ironic1");
        assert!(entries[1].path_text().starts_with("HD(1,GPT,"));
        // the raw file is attributes + EFI_LOAD_OPTION
        let raw = std::fs::read(d.path().join(format!("Boot0001-{GLOBAL}"))).unwrap();
        assert_eq!(&raw[..4], &[7, 0, 0, 0]);
        assert_eq!(&raw[4..8], &[1, 0, 0, 0]);
        n.remove_entry(0).unwrap();
        assert_eq!(n.boot_order().unwrap(), vec![1]);
        assert_eq!(n.boot_entries().unwrap().len(), 1);
        // shorter rewrites do not keep stale bytes
        n.set_boot_order(&[]).unwrap();
        assert_eq!(n.get("BootOrder").unwrap().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn names_and_malformed_entries() {
        assert_eq!(boot_number(&format!("Boot00aF-{GLOBAL}")), Some(0xaf));
        assert_eq!(boot_number(&format!("BootOrder-{GLOBAL}")), None);
        assert_eq!(
            boot_number("Boot0001-00000000-0000-0000-0000-000000000000"),
            None
        );
        assert!(BootEntry::decode(1, &[1, 0, 0, 0, 10, 0, b'a', 0]).is_none());
        let (_d, n) = store();
        n.set("Boot0003", &[1, 2]).unwrap();
        assert!(n.boot_entries().unwrap().is_empty());
        assert!(matches!(
            Nvram::open(Path::new("/nonexistent/efivars")),
            Err(NvramError::Missing(_))
        ));
    }
}
