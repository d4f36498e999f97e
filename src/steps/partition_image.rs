//! Partition images (contract §11.6, IPA's `partition_utils.work_on_disk`): the disk gets a
//! new table (GPT for UEFI, else the `disk_label` capability), an ESP (UEFI), a BIOS boot or
//! PReP partition where IPA makes one, ephemeral, swap and config drive partitions, and the root
//! partition last; the image is then streamed into the root partition by the caller.
//!
//! Everything that can be refused is refused before the disk is touched: a missing `root_mb`, a
//! layout that does not fit, an ephemeral file system this agent cannot create.

use super::node_caps::{self, BootMode};
use crate::disk::table::{self, Label, NewPartition, Partition, Role};
use crate::disk::{format, kernel, Disk, DiskError};
use crate::errors::{CommandError, ErrorKind};
use crate::hardware::HostRoot;
use crate::safety::DiskGuard;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// IPA's `[disk_utils]efi_system_partition_size`.
pub const ESP_MIB: u64 = 550;
/// IPA's `[disk_utils]bios_boot_partition_size`.
const BIOS_BOOT_MIB: u64 = 1;
const PREP_MIB: u64 = 8;
/// Labels IPA gives the file systems it creates.
const ESP_LABEL: &str = "efi-part";
const SWAP_LABEL: &str = "swap1";
const EPHEMERAL_LABEL: &str = "ephemeral0";

fn invalid(msg: impl Into<String>) -> CommandError {
    CommandError::new(ErrorKind::InvalidCommandParams, msg)
}

fn deploy_err(msg: impl Into<String>) -> CommandError {
    CommandError::new(ErrorKind::Deployment, msg)
}

/// True when `image_info` describes a partition image (only `image_type == "partition"`).
pub fn is_partition_image(image_info: &Value) -> bool {
    image_info["image_type"].as_str() == Some("partition")
}

/// What to lay out, from `image_info` and the cached node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root_mb: u64,
    pub swap_mb: u64,
    pub ephemeral_mb: u64,
    pub ephemeral_format: Option<String>,
    pub preserve_ephemeral: bool,
    pub boot_mode: BootMode,
    pub label: Label,
    pub ppc64: bool,
}

/// A size in MiB from `image_info` (Ironic sends integers; numeric strings are accepted).
fn mib(image_info: &Value, key: &str) -> Result<Option<u64>, CommandError> {
    match &image_info[key] {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
            invalid(format!(
                "image_info {key} must be a whole number of MiB, not {n}"
            ))
        }),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| {
            invalid(format!(
                "image_info {key} must be a whole number of MiB, not {s:?}"
            ))
        }),
        other => Err(invalid(format!(
            "image_info {key} must be a whole number of MiB, not {other}"
        ))),
    }
}

impl Layout {
    pub fn from_request(
        image_info: &Value,
        node: &Value,
        host: &HostRoot,
    ) -> Result<Self, CommandError> {
        let root_mb = mib(image_info, "root_mb")?
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                invalid(format!(
                    "image_info for partition image {} has no root_mb (the root partition size)",
                    image_info["id"]
                ))
            })?;
        let layout = Self {
            root_mb,
            swap_mb: mib(image_info, "swap_mb")?.unwrap_or(0),
            ephemeral_mb: mib(image_info, "ephemeral_mb")?.unwrap_or(0),
            ephemeral_format: image_info["ephemeral_format"].as_str().map(str::to_string),
            preserve_ephemeral: image_info["preserve_ephemeral"].as_bool().unwrap_or(false),
            boot_mode: node_caps::boot_mode(node, host),
            label: node_caps::disk_label(node, host),
            ppc64: std::env::consts::ARCH.starts_with("powerpc64"),
        };
        layout.check_ephemeral_format()?;
        Ok(layout)
    }

    fn check_ephemeral_format(&self) -> Result<(), CommandError> {
        if self.ephemeral_mb == 0 || self.preserve_ephemeral {
            return Ok(());
        }
        match self.ephemeral_format.as_deref() {
            Some(f) if format::supported(f) => Ok(()),
            Some(f) => Err(invalid(format!(
                "cannot create the {f} file system asked for the ephemeral partition \
                 (ephemeral_format): this agent formats only vfat and swap and its ramdisk has no \
                 mkfs.{f}; use ephemeral_format vfat or no ephemeral partition"
            ))),
            None => Err(invalid(
                "an ephemeral partition was requested without an ephemeral_format",
            )),
        }
    }

    /// The partitions in IPA's order, each with its key in the `partitions` reply.
    pub fn partitions(&self, configdrive_mib: u64) -> Vec<(&'static str, NewPartition)> {
        let part = |size_mib, role, bootable| NewPartition {
            size_mib,
            role,
            bootable,
        };
        let bios = self.boot_mode == BootMode::Bios;
        let msdos = self.label == Label::Msdos;
        let mut v = Vec::new();
        if !bios {
            v.push(("efi system partition", part(ESP_MIB, Role::Esp, false)));
        }
        if bios && self.label == Label::Gpt && !self.ppc64 {
            v.push((
                "BIOS Boot partition",
                part(BIOS_BOOT_MIB, Role::BiosBoot, false),
            ));
        }
        if self.ppc64 && bios {
            v.push(("PReP Boot partition", part(PREP_MIB, Role::Prep, msdos)));
        }
        if self.ephemeral_mb > 0 {
            v.push(("ephemeral", part(self.ephemeral_mb, Role::Linux, false)));
        }
        if self.swap_mb > 0 {
            v.push(("swap", part(self.swap_mb, Role::Swap, false)));
        }
        if configdrive_mib > 0 {
            v.push(("configdrive", part(configdrive_mib, Role::Linux, false)));
        }
        // root last, so cloud-init's growpart can grow it to the end of the disk
        v.push((
            "root",
            part(self.root_mb, Role::Linux, bios && msdos && !self.ppc64),
        ));
        v
    }
}

/// The laid-out disk, waiting for the image.
#[derive(Debug)]
pub struct Prepared {
    pub disk: PathBuf,
    /// Key in the `partitions` reply -> partition and its device node.
    pub parts: Vec<(&'static str, Partition, PathBuf)>,
}

impl Prepared {
    pub fn node(&self, key: &str) -> Option<&Path> {
        self.parts
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, n)| n.as_path())
    }

    fn part(&self, key: &str) -> Option<&Partition> {
        self.parts
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, p, _)| p)
    }
}

/// Partitions the disk and creates the file systems around the root partition (blocking).
pub fn prepare(
    path: &Path,
    guard: &DiskGuard,
    layout: &Layout,
    configdrive: Option<&[u8]>,
    node_uuid: &str,
) -> Result<Prepared, CommandError> {
    let disk = Disk::open(path, guard).map_err(|e| deploy_err(e.to_string()))?;
    if !disk.is_block_device() {
        return Err(deploy_err(format!(
            "partition images need a block device; {} is a regular file",
            path.display()
        )));
    }
    let wrap = |e: DiskError| {
        deploy_err(format!(
            "partitioning {} for node {node_uuid} failed: {e}",
            path.display()
        ))
    };
    let cd_mib = configdrive.map_or(0, |d| super::configdrive::size_mib(d.len()));
    let wanted = layout.partitions(cd_mib);
    let specs: Vec<NewPartition> = wanted.iter().map(|(_, p)| *p).collect();
    let table = if layout.preserve_ephemeral {
        existing_layout(&disk, layout, &specs).map_err(wrap)?
    } else {
        disk.wipe_tables().map_err(wrap)?;
        let t =
            table::create(&disk.file, &disk.path, disk.geo, layout.label, &specs).map_err(wrap)?;
        disk.sync().map_err(wrap)?;
        t
    };
    kernel::sync_partitions(&disk.file, &disk.path, &table).map_err(wrap)?;
    tracing::info!(
        "partitioned {} ({}, {} partitions) for node {node_uuid}",
        path.display(),
        layout.label.name(),
        table.partitions.len()
    );
    let mut parts = Vec::new();
    for (i, (key, _)) in wanted.iter().enumerate() {
        let p = table.get(i as u32 + 1).cloned().ok_or_else(|| {
            wrap(DiskError::Invalid(format!(
                "partition {} is missing",
                i + 1
            )))
        })?;
        let node = disk.partition_node(&p).map_err(wrap)?;
        parts.push((*key, p, node));
    }
    let prepared = Prepared {
        disk: path.to_path_buf(),
        parts,
    };
    make_file_systems(&disk, &prepared, layout, configdrive).map_err(wrap)?;
    Ok(prepared)
}

/// `preserve_ephemeral`: the table is kept, so it must be the layout Ironic asks for.
fn existing_layout(
    disk: &Disk,
    layout: &Layout,
    specs: &[NewPartition],
) -> Result<table::Table, DiskError> {
    let t = table::read(&disk.file, &disk.path, disk.geo)?;
    let mut start = table::MIB;
    let matches = t.as_ref().is_some_and(|t| {
        t.label == layout.label
            && t.partitions.len() == specs.len()
            && specs.iter().enumerate().all(|(i, s)| {
                let ok = t
                    .get(i as u32 + 1)
                    .is_some_and(|p| p.start == start && p.size == s.size_mib * table::MIB);
                start += s.size_mib * table::MIB;
                ok
            })
    });
    match t {
        Some(t) if matches => Ok(t),
        _ => Err(DiskError::Invalid(
            "preserve_ephemeral was requested but the partitions on the disk are not the \
             requested layout, so the ephemeral partition cannot be kept"
                .into(),
        )),
    }
}

fn make_file_systems(
    disk: &Disk,
    prepared: &Prepared,
    layout: &Layout,
    configdrive: Option<&[u8]>,
) -> Result<(), DiskError> {
    if let Some(esp) = prepared.part("efi system partition") {
        format::vfat(&disk.file, &disk.path, esp.start, esp.size, ESP_LABEL, true)?;
    }
    if let (Some(cd), Some(data)) = (prepared.part("configdrive"), configdrive) {
        super::configdrive::write_into(disk, cd, data)?;
    }
    if let Some(swap) = prepared.part("swap") {
        format::swap(&disk.file, &disk.path, swap.start, swap.size, SWAP_LABEL)?;
    }
    if let (Some(eph), false) = (prepared.part("ephemeral"), layout.preserve_ephemeral) {
        let fstype = layout.ephemeral_format.as_deref().unwrap_or_default();
        format::format(
            &disk.file,
            &disk.path,
            eph.start,
            eph.size,
            fstype,
            EPHEMERAL_LABEL,
        )?;
    }
    disk.sync()
}

/// `get_partition_uuids` for a partition image, once the root partition holds the image:
/// `{"partitions": {key: device}, "root uuid": .., "efi system partition uuid": ..}` with each
/// UUID the file system's, else the partition's (IPA's `block_uuid`).
pub fn partition_uuids(
    prepared: &Prepared,
    guard: &DiskGuard,
    layout: &Layout,
) -> Result<Map<String, Value>, CommandError> {
    let disk = Disk::open(&prepared.disk, guard).map_err(|e| deploy_err(e.to_string()))?;
    let uuid_of = |key: &str| -> Value {
        let Some(p) = prepared.part(key) else {
            return Value::Null;
        };
        match disk.probe(p) {
            Ok(info) if info.uuid.is_some() => json!(info.uuid),
            _ => json!(p.part_uuid),
        }
    };
    let partitions: Map<String, Value> = prepared
        .parts
        .iter()
        .map(|(k, _, n)| (k.to_string(), json!(n.display().to_string())))
        .collect();
    let mut out = Map::new();
    out.insert("partitions".into(), Value::Object(partitions));
    out.insert("root uuid".into(), uuid_of("root"));
    out.insert(
        "efi system partition uuid".into(),
        uuid_of("efi system partition"),
    );
    if layout.ppc64 {
        out.insert(
            "PReP Boot partition uuid".into(),
            uuid_of("PReP Boot partition"),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (tempfile::TempDir, HostRoot) {
        let d = tempfile::tempdir().unwrap();
        let h = HostRoot::new(d.path());
        (d, h)
    }

    fn keys(l: &Layout, cd: u64) -> Vec<(&'static str, u64, bool)> {
        l.partitions(cd)
            .into_iter()
            .map(|(k, p)| (k, p.size_mib, p.bootable))
            .collect()
    }

    #[test]
    fn layouts_follow_ipa_for_each_boot_mode_and_label() {
        let (_d, h) = host();
        let info = json!({"id": "img", "image_type": "partition", "root_mb": 2048,
                          "swap_mb": 512, "ephemeral_mb": 0, "ephemeral_format": "ext4",
                          "preserve_ephemeral": false});
        let uefi = Layout::from_request(
            &info,
            &json!({"instance_info": {"deploy_boot_mode": "uefi"}}),
            &h,
        )
        .unwrap();
        assert_eq!(uefi.label, Label::Gpt);
        assert_eq!(
            keys(&uefi, 1),
            vec![
                ("efi system partition", 550, false),
                ("swap", 512, false),
                ("configdrive", 1, false),
                ("root", 2048, false)
            ]
        );
        let bios = Layout::from_request(&info, &json!({}), &h).unwrap();
        assert_eq!(bios.label, Label::Msdos);
        assert_eq!(
            keys(&bios, 0),
            vec![("swap", 512, false), ("root", 2048, true)]
        );
        let bios_gpt = Layout::from_request(
            &info,
            &json!({"properties": {"capabilities": "disk_label:gpt"}}),
            &h,
        )
        .unwrap();
        assert_eq!(
            keys(&bios_gpt, 0),
            vec![
                ("BIOS Boot partition", 1, false),
                ("swap", 512, false),
                ("root", 2048, false)
            ]
        );
    }

    #[test]
    fn refusals_happen_before_any_disk_work() {
        let (_d, h) = host();
        let e = Layout::from_request(
            &json!({"id": "x", "image_type": "partition"}),
            &json!({}),
            &h,
        )
        .unwrap_err();
        assert!(e.details.contains("root_mb"), "{}", e.details);
        assert_eq!(e.kind, "InvalidCommandParamsError");
        let ext4 =
            json!({"id": "x", "root_mb": 10, "ephemeral_mb": 10, "ephemeral_format": "ext4"});
        let e = Layout::from_request(&ext4, &json!({}), &h).unwrap_err();
        assert!(e.details.contains("mkfs.ext4"), "{}", e.details);
        // preserved ephemeral partitions are not formatted, so any format is fine
        let keep = json!({"id": "x", "root_mb": 10, "ephemeral_mb": 10, "ephemeral_format": "ext4",
                          "preserve_ephemeral": true});
        assert!(Layout::from_request(&keep, &json!({}), &h).is_ok());
        let vfat =
            json!({"id": "x", "root_mb": "10", "ephemeral_mb": 10, "ephemeral_format": "vfat"});
        assert_eq!(
            Layout::from_request(&vfat, &json!({}), &h).unwrap().root_mb,
            10
        );
        let bad = json!({"id": "x", "root_mb": -3});
        assert!(Layout::from_request(&bad, &json!({}), &h).is_err());
    }

    #[test]
    fn regular_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, vec![0u8; 1 << 20]).unwrap();
        let (_d, h) = host();
        let l = Layout::from_request(&json!({"id": "x", "root_mb": 1}), &json!({}), &h).unwrap();
        let e = prepare(&p, &DiskGuard::new(false, vec![]), &l, None, "n").unwrap_err();
        assert!(e.details.contains("block device"), "{}", e.details);
    }
}
