//! UEFI boot configuration without efibootmgr: the ESP is found in the partition table and
//! read with `fatfs` ([`esp`]), boot entries are EFI_LOAD_OPTIONs written through efivarfs
//! ([`nvram`]) with `HD()/File()` device paths ([`device_path`]). IPA's `efi_utils.manage_uefi`
//! and `clean_boot_records`, natively.
//!
//! Blocking I/O throughout: callers run it on blocking threads.

pub mod device_path;
pub mod esp;
pub mod nvram;

use crate::disk::table::{self, Label, Partition};
use crate::disk::Disk;
use crate::hardware::HostRoot;
use crate::safety::DiskGuard;
use device_path::{HardDrive, Signature};
use nvram::{Nvram, NvramError};
use std::path::{Path, PathBuf};

/// The EFI system partition's GPT type.
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const ESP_MBR_TYPE: &str = "0xef";

#[derive(Debug, thiserror::Error)]
pub enum EfiError {
    #[error(
        "No EFI partition could be detected on device {} and EFI partition UUID has not been \
         recorded during deployment (which is often the case for whole disk images). Are you \
         using a UEFI-compatible image?", .0.display()
    )]
    NoEsp(PathBuf),
    #[error("reading the EFI system partition (partition {number}) of {} failed: {reason}", .device.display())]
    Esp {
        device: PathBuf,
        number: u32,
        reason: String,
    },
    #[error("Could not configure UEFI boot on device {}: {reason}", .device.display())]
    Disk { device: PathBuf, reason: String },
    #[error(transparent)]
    Nvram(#[from] NvramError),
}

/// Where efivarfs is under `host`.
pub fn efivars_dir(host: &HostRoot) -> PathBuf {
    host.path("/sys/firmware/efi/efivars")
}

/// The ESP of `table`: by type (GPT ESP GUID, MBR 0xEF), else the partition whose file system
/// UUID, PARTUUID or label is `efi_uuid`.
fn find_esp(disk: &Disk, t: &table::Table, efi_uuid: Option<&str>) -> Option<Partition> {
    let by_type = t.partitions.iter().find(|p| match t.label {
        Label::Gpt => p.type_id == ESP_TYPE,
        Label::Msdos => p.type_id == ESP_MBR_TYPE,
    });
    if let Some(p) = by_type {
        return Some(p.clone());
    }
    let want = efi_uuid.filter(|u| !u.is_empty())?;
    t.partitions
        .iter()
        .find(|p| {
            p.part_uuid.eq_ignore_ascii_case(want)
                || disk.probe(p).is_ok_and(|i| {
                    i.uuid.as_deref() == Some(want) || i.label.as_deref() == Some(want)
                })
        })
        .cloned()
}

/// IPA's `manage_uefi`: registers the loaders found on the ESP of `device` as boot entries
/// (same-label entries replaced, new ones first in BootOrder). `Ok(false)` when the ESP holds
/// no loader.
pub fn manage_uefi(
    host: &HostRoot,
    device: &Path,
    guard: &DiskGuard,
    efi_uuid: Option<&str>,
) -> Result<bool, EfiError> {
    let disk_err = |reason: String| EfiError::Disk {
        device: device.to_path_buf(),
        reason,
    };
    let disk = Disk::open(device, guard).map_err(|e| disk_err(e.to_string()))?;
    let t = table::read(&disk.file, device, disk.geo)
        .map_err(|e| disk_err(e.to_string()))?
        .ok_or_else(|| EfiError::NoEsp(device.to_path_buf()))?;
    let esp = find_esp(&disk, &t, efi_uuid).ok_or_else(|| EfiError::NoEsp(device.to_path_buf()))?;
    let loaders =
        esp::find_loaders(&disk.file, esp.start, esp.size).map_err(|e| EfiError::Esp {
            device: device.to_path_buf(),
            number: esp.number,
            reason: e.to_string(),
        })?;
    if loaders.is_empty() {
        tracing::warn!(
            "Empty EFI partition detected: partition {} of {}",
            esp.number,
            device.display()
        );
        return Ok(false);
    }
    let signature = match t.label {
        Label::Gpt => Signature::Gpt(
            uuid::Uuid::parse_str(&esp.part_uuid).map_err(|e| disk_err(e.to_string()))?,
        ),
        Label::Msdos => Signature::Mbr(mbr_signature(&disk).map_err(disk_err)?),
    };
    let hd = HardDrive {
        partition: esp.number,
        start_lba: esp.start / disk.geo.sector,
        size_lba: esp.size / disk.geo.sector,
        signature,
    };
    let store = Nvram::open(&efivars_dir(host))?;
    for (i, loader) in loaders.iter().enumerate() {
        let label = loader
            .label
            .clone()
            .unwrap_or_else(|| format!("ironic{}", i + 1));
        for old in store.boot_entries()?.iter().filter(|e| e.label == label) {
            tracing::info!("removing UEFI boot entry Boot{:04X} ({label})", old.number);
            store.remove_entry(old.number)?;
        }
        let number = store.add_entry(&label, device_path::hd_file(&hd, &loader.path))?;
        tracing::info!(
            "added UEFI boot entry Boot{number:04X} {label}: {} on partition {} of {}",
            loader.path,
            esp.number,
            device.display()
        );
    }
    Ok(true)
}

/// The MBR disk signature; a disk without one gets a random one first (`efibootmgr -w`), as
/// firmware finds the partition by it.
fn mbr_signature(disk: &Disk) -> Result<u32, String> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    disk.file
        .read_exact_at(&mut b, 440)
        .map_err(|e| format!("reading the MBR disk signature failed: {e}"))?;
    let sig = u32::from_le_bytes(b);
    if sig != 0 {
        return Ok(sig);
    }
    let new = rand::random::<u32>().max(1);
    disk.file
        .write_all_at(&new.to_le_bytes(), 440)
        .map_err(|e| format!("writing an MBR disk signature failed: {e}"))?;
    Ok(new)
}

/// IPA's `clean_boot_records`: removes every boot entry whose device path (as efibootmgr prints
/// it) matches one of `patterns`. Only entries efibootmgr's output parser would list (paths
/// starting with BBS, HD, FvFile, FvVol, PciRoot, VenMsg, VenHw or UsbClass) are considered.
pub fn clean_boot_records(
    host: &HostRoot,
    patterns: &[regex_lite::Regex],
) -> Result<Vec<u16>, EfiError> {
    const LISTED: &[&str] = &[
        "BBS(",
        "HD(",
        "FvFile(",
        "FvVol(",
        "PciRoot(",
        "VenMsg(",
        "VenHw(",
        "UsbClass(",
    ];
    let store = Nvram::open(&efivars_dir(host))?;
    let mut removed = Vec::new();
    for entry in store.boot_entries()? {
        let text = entry.path_text();
        if !LISTED.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        if let Some(p) = patterns.iter().find(|p| p.is_match(&text)) {
            tracing::info!(
                "removing UEFI boot entry Boot{:04X} ({}): {text} matches {}",
                entry.number,
                entry.label,
                p.as_str()
            );
            store.remove_entry(entry.number)?;
            removed.push(entry.number);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::table::{NewPartition, Role, MIB};

    /// A fixture host with an (empty) efivars directory and a GPT disk file with an ESP.
    fn setup(files: &[(&str, &[u8])]) -> (tempfile::TempDir, HostRoot, PathBuf, Partition) {
        let d = tempfile::tempdir().unwrap();
        let host = HostRoot::new(d.path());
        std::fs::create_dir_all(efivars_dir(&host)).unwrap();
        let disk_path = d.path().join("vda");
        let f = std::fs::File::create(&disk_path).unwrap();
        f.set_len(128 * MIB).unwrap();
        drop(f);
        let disk = Disk::open(&disk_path, &DiskGuard::new(false, vec![])).unwrap();
        let t = table::create(
            &disk.file,
            &disk_path,
            disk.geo,
            Label::Gpt,
            &[
                NewPartition {
                    size_mib: 40,
                    role: Role::Esp,
                    bootable: false,
                },
                NewPartition {
                    size_mib: 20,
                    role: Role::Linux,
                    bootable: false,
                },
            ],
        )
        .unwrap();
        let esp = t.partitions[0].clone();
        crate::disk::format::vfat(
            &disk.file, &disk_path, esp.start, esp.size, "efi-part", true,
        )
        .unwrap();
        esp::tests::write_files(&disk.file, esp.start, esp.size, files);
        (d, host, disk_path, esp)
    }

    #[test]
    fn loaders_become_boot_entries_replacing_same_labels() {
        let (_d, host, disk, esp) = setup(&[("EFI/BOOT/BOOTX64.EFI", b"MZ")]);
        let guard = DiskGuard::new(false, vec![]);
        let store = Nvram::open(&efivars_dir(&host)).unwrap();
        // a stale ironic1 from an earlier deploy, and a firmware entry
        let stale = device_path::hd_file(
            &HardDrive {
                partition: 9,
                start_lba: 1,
                size_lba: 1,
                signature: Signature::Mbr(1),
            },
            "\\old.efi",
        );
        store.add_entry("ironic1", stale).unwrap();
        store
            .add_entry("UEFI Shell", vec![0x7f, 0xff, 4, 0])
            .unwrap();
        assert!(manage_uefi(&host, &disk, &guard, None).unwrap());
        let entries = store.boot_entries().unwrap();
        let ironic: Vec<_> = entries.iter().filter(|e| e.label == "ironic1").collect();
        assert_eq!(ironic.len(), 1);
        let text = ironic[0].path_text();
        assert_eq!(
            text,
            format!(
                "HD(1,GPT,{},0x800,0x14000)/File(\\EFI\\BOOT\\BOOTX64.EFI)",
                esp.part_uuid
            )
        );
        assert_eq!(store.boot_order().unwrap()[0], ironic[0].number);
        assert_eq!(store.boot_order().unwrap().len(), 2);
    }

    #[test]
    fn empty_esp_missing_esp_and_missing_efivars() {
        let (d, host, disk, _) = setup(&[]);
        let guard = DiskGuard::new(false, vec![]);
        assert!(!manage_uefi(&host, &disk, &guard, None).unwrap());
        // no ESP at all: IPA's "Are you using a UEFI-compatible image?"
        let plain = d.path().join("plain");
        let f = std::fs::File::create(&plain).unwrap();
        f.set_len(64 * MIB).unwrap();
        let pd = Disk::open(&plain, &guard).unwrap();
        table::create(
            &pd.file,
            &plain,
            pd.geo,
            Label::Msdos,
            &[NewPartition {
                size_mib: 10,
                role: Role::Linux,
                bootable: true,
            }],
        )
        .unwrap();
        let e = manage_uefi(&host, &plain, &guard, None).unwrap_err();
        assert!(e.to_string().contains("UEFI-compatible image"), "{e}");
        std::fs::remove_dir(efivars_dir(&host)).unwrap();
        let (_d2, host2, disk2, _) = setup(&[("EFI/BOOT/BOOTX64.EFI", b"MZ")]);
        std::fs::remove_dir(efivars_dir(&host2)).unwrap();
        let e = manage_uefi(&host2, &disk2, &guard, None).unwrap_err();
        assert!(e.to_string().contains("efivarfs"), "{e}");
    }

    #[test]
    fn clean_removes_matching_entries_only() {
        let (_d, host, _, _) = setup(&[]);
        let store = Nvram::open(&efivars_dir(&host)).unwrap();
        let hd = HardDrive {
            partition: 1,
            start_lba: 2048,
            size_lba: 4096,
            signature: Signature::Gpt(uuid::Uuid::new_v4()),
        };
        let a = store
            .add_entry(
                "ironic1",
                device_path::hd_file(&hd, "\\EFI\\BOOT\\BOOTX64.EFI"),
            )
            .unwrap();
        // PciRoot(0x0)/... PXE entry, not matching ^HD\(
        let mut pxe = vec![2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0];
        pxe.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let b = store.add_entry("UEFI PXEv4", pxe).unwrap();
        // a MAC()-first path is not in efibootmgr's listing: left alone
        let mut mac = vec![3, 11, 37, 0];
        mac.extend_from_slice(&[0u8; 33]);
        mac.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let c = store.add_entry("odd", mac).unwrap();
        let pats: Vec<regex_lite::Regex> = [r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"]
            .iter()
            .map(|p| {
                regex_lite::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .unwrap()
            })
            .collect();
        assert_eq!(clean_boot_records(&host, &pats).unwrap(), vec![a]);
        let left: Vec<u16> = store
            .boot_entries()
            .unwrap()
            .iter()
            .map(|e| e.number)
            .collect();
        assert_eq!(left, vec![b, c]);
        assert!(!store.boot_order().unwrap().contains(&a));
    }
}
