//! Which devices an erase step touches, and which it leaves alone (IPA's
//! `list_block_devices_check_skip_list`, `_list_erasable_devices`, `_is_virtual_media_device`,
//! `_is_linux_raid_member`, `_is_read_only_device`).
//!
//! * Disks are the inventory's ([`list_disks`]: loop devices, RAM disks, CD-ROMs and multipath
//!   members are never listed), minus those `properties.skip_block_devices` names. The
//!   partitions of a skipped disk are spared too (IPA would still wipe their signatures).
//! * Software RAID volumes whose name is on the skip list (`{"volume_name": ...}`) are spared.
//! * Virtual media (the BMC's config floppy, label `ir-vfd-dev`), RAID members (a
//!   `linux_raid_member` signature on the device or in one of its partitions) and read-only
//!   devices (sysfs `ro`, the partition's or its disk's) are recognised here; each step decides
//!   what that means for it.

use super::error::EraseError;
use super::probe::{self, Probe};
use crate::hardware::{list_disks, root_device, HostRoot};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// The label IPA's virtual-media floppy carries (`/dev/disk/by-label/ir-vfd-dev`).
pub const VMEDIA_LABEL: &str = "ir-vfd-dev";

/// A disk or partition an erase step may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The name Ironic sees and results are keyed by: `/dev/sda`, `/dev/sda1`.
    pub name: String,
    /// The kernel name: `sda1`.
    pub kname: String,
    /// Where the device node is (the host root joined with `name`).
    pub path: PathBuf,
    /// Its sysfs directory.
    pub sys: PathBuf,
    /// For a partition: the kernel name of its disk, and its partition number.
    pub parent: Option<(String, u32)>,
    /// Size in bytes from sysfs.
    pub size: u64,
}

impl Candidate {
    pub fn is_partition(&self) -> bool {
        self.parent.is_some()
    }

    /// NVMe namespaces and their partitions (IPA: the name starts with `/dev/nvme`).
    pub fn is_nvme(&self) -> bool {
        self.name.starts_with("/dev/nvme")
    }
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The disks to erase for `node`, in inventory order.
pub fn disks(host: &HostRoot, node: &Value) -> Result<Vec<Candidate>, EraseError> {
    let all = list_disks(host);
    let skipped =
        root_device::skipped_disks(&all, node).map_err(|e| EraseError::Listing(e.to_string()))?;
    let kept_volumes = raid_volumes_to_keep(node);
    let mut out = Vec::new();
    for d in all {
        if skipped.contains(&d.name) {
            tracing::info!(
                "not erasing {}: properties.skip_block_devices names it",
                d.name
            );
            continue;
        }
        let kname = d.name.trim_start_matches("/dev/").to_string();
        if !kept_volumes.is_empty() {
            if let Some(v) = raid_volume_name(host, &kname).filter(|v| kept_volumes.contains(v)) {
                tracing::info!(
                    "not erasing {}: it is RAID volume {v}, which properties.skip_block_devices keeps",
                    d.name
                );
                continue;
            }
        }
        out.push(Candidate {
            path: host.path(&d.name),
            sys: host.path(&format!("/sys/block/{kname}")),
            name: d.name,
            kname,
            parent: None,
            size: d.size,
        });
    }
    Ok(out)
}

/// `disks` and their partitions in IPA's order (names sorted in reverse), with every partition
/// before its disk: the partition still exists when its own metadata is wiped, and wiping the
/// disk's table makes the kernel drop it.
pub fn with_partitions(mut disks: Vec<Candidate>) -> Vec<Candidate> {
    disks.sort_by(|a, b| b.name.cmp(&a.name));
    let mut out = Vec::new();
    for d in disks {
        let mut parts = partitions_of(&d);
        parts.sort_by(|a, b| b.name.cmp(&a.name));
        out.extend(parts);
        out.push(d);
    }
    out
}

/// The partitions the kernel knows on a disk (sysfs subdirectories holding a `partition` file).
pub fn partitions_of(disk: &Candidate) -> Vec<Candidate> {
    let Ok(entries) = std::fs::read_dir(&disk.sys) else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    for e in entries.flatten() {
        let sys = e.path();
        let Some(number) = read_trimmed(&sys.join("partition")).and_then(|n| n.parse().ok()) else {
            continue;
        };
        let kname = e.file_name().to_string_lossy().to_string();
        let name = format!("/dev/{kname}");
        let size = read_trimmed(&sys.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(512);
        parts.push(Candidate {
            path: disk
                .path
                .parent()
                .map(|d| d.join(&kname))
                .unwrap_or_else(|| PathBuf::from(&name)),
            sys,
            name,
            kname,
            parent: Some((disk.kname.clone(), number)),
            size,
        });
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    parts
}

/// sysfs `ro` of the device, or of its disk for a partition.
pub fn is_read_only(c: &Candidate) -> bool {
    let ro = |p: &Path| read_trimmed(&p.join("ro")).as_deref() == Some("1");
    ro(&c.sys) || (c.is_partition() && c.sys.parent().is_some_and(ro))
}

/// IPA resolves `/dev/disk/by-label/ir-vfd-dev` (udev); the ramdisk may run without udev, so
/// the label itself is read too.
pub fn is_virtual_media(host: &HostRoot, c: &Candidate, probe: Option<&Probe>) -> bool {
    if probe.is_some_and(|p| p.has_label(VMEDIA_LABEL)) {
        return true;
    }
    let link = format!("/dev/disk/by-label/{VMEDIA_LABEL}");
    match std::fs::read_link(host.path(&link)) {
        Ok(target) => normalize(&Path::new("/dev/disk/by-label").join(target)) == c.name,
        Err(_) => false,
    }
}

/// A lexical `os.path.normpath` for absolute paths.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(s) => parts.push(s.to_string_lossy().to_string()),
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// True when the device, or one of its partitions, is a software RAID member; also when it
/// cannot be probed (IPA: "if we do not manage to verify").
pub fn is_raid_member(c: &Candidate, probe: Result<&Probe, &String>) -> bool {
    match probe {
        Ok(p) => p.all_fstypes().any(|t| t == "linux_raid_member"),
        Err(e) => {
            tracing::warn!(
                "could not determine whether {} is a RAID member: {e}",
                c.name
            );
            true
        }
    }
}

/// Probes a candidate (see [`probe::probe`]).
pub fn probe_candidate(c: &Candidate) -> Result<Probe, String> {
    probe::probe(&c.path)
}

/// A candidate and what libblkid found on it.
#[derive(Debug, Clone)]
pub struct Surveyed {
    pub cand: Candidate,
    pub probe: Result<Probe, String>,
}

/// Why a device is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    VirtualMedia,
    RaidMember,
    ReadOnly,
}

impl Exclusion {
    pub fn describe(self) -> &'static str {
        match self {
            Self::VirtualMedia => "it is the virtual media device",
            Self::RaidMember => "it is a software RAID member",
            Self::ReadOnly => "it is read-only",
        }
    }
}

impl Surveyed {
    /// IPA's order of checks: virtual media, RAID member, read-only.
    pub fn exclusion(&self, host: &HostRoot) -> Option<Exclusion> {
        if is_virtual_media(host, &self.cand, self.probe.as_ref().ok()) {
            Some(Exclusion::VirtualMedia)
        } else if is_raid_member(&self.cand, self.probe.as_ref()) {
            Some(Exclusion::RaidMember)
        } else if is_read_only(&self.cand) {
            Some(Exclusion::ReadOnly)
        } else {
            None
        }
    }
}

/// Probes every candidate (read-only).
pub fn survey(cands: Vec<Candidate>) -> Vec<Surveyed> {
    cands
        .into_iter()
        .map(|cand| Surveyed {
            probe: probe_candidate(&cand),
            cand,
        })
        .collect()
}

/// The shared-storage guard over every device about to be erased, before any is touched.
/// A partition is judged by its own entry in its disk's table.
pub fn check_protected(all: &[Surveyed], erasing: &[&Surveyed]) -> Result<(), EraseError> {
    for s in erasing {
        let Ok(probe) = &s.probe else { continue };
        let parent = s.cand.parent.as_ref().and_then(|(disk, _)| {
            all.iter()
                .find(|o| o.cand.parent.is_none() && &o.cand.kname == disk)
                .and_then(|o| o.probe.as_ref().ok())
        });
        super::protected::check(&s.cand, probe, parent)?;
    }
    Ok(())
}

/// `volume_name` entries of `properties.skip_block_devices`.
fn raid_volumes_to_keep(node: &Value) -> Vec<String> {
    node.pointer("/properties/skip_block_devices")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e["volume_name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The name of an md array (`mdadm --detail`'s `Name : host:NAME`), from the label libblkid
/// reads in a member's superblock.
fn raid_volume_name(host: &HostRoot, kname: &str) -> Option<String> {
    if !kname.starts_with("md") {
        return None;
    }
    let slaves = std::fs::read_dir(host.path(&format!("/sys/block/{kname}/slaves"))).ok()?;
    for s in slaves.flatten() {
        let member = host.path(&format!("/dev/{}", s.file_name().to_string_lossy()));
        let label = probe::probe(&member).ok().and_then(|p| {
            p.signatures
                .into_iter()
                .find(|s| s.fstype == "linux_raid_member")
                .and_then(|s| s.label)
        });
        if let Some(label) = label {
            let name = label.rsplit(':').next().unwrap_or(&label);
            return Some(name.split(' ').next().unwrap_or(name).to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fixture host with disks `sda` (2 partitions) and `vdb` in /sys/block.
    fn host() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mk = |rel: &str, content: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        for (name, dev) in [("sda", "8:0"), ("vdb", "252:16")] {
            mk(&format!("sys/block/{name}/size"), "2048\n");
            mk(&format!("sys/block/{name}/dev"), &format!("{dev}\n"));
            mk(&format!("sys/block/{name}/ro"), "0\n");
            mk(&format!("dev/{name}"), "");
        }
        for n in 1..=2 {
            mk(
                &format!("sys/block/sda/sda{n}/partition"),
                &format!("{n}\n"),
            );
            mk(&format!("sys/block/sda/sda{n}/size"), "512\n");
            mk(&format!("sys/block/sda/sda{n}/ro"), "0\n");
        }
        let host = HostRoot::new(root);
        (dir, host)
    }

    #[test]
    fn lists_disks_and_partitions_partitions_first() {
        let (_d, host) = host();
        let disks = disks(&host, &json!({})).unwrap();
        let names: Vec<&str> = disks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["/dev/sda", "/dev/vdb"]);
        assert_eq!(disks[0].size, 1 << 20);
        assert_eq!(disks[0].path, host.path("/dev/sda"));
        let all = with_partitions(disks);
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["/dev/vdb", "/dev/sda2", "/dev/sda1", "/dev/sda"]);
        let sda1 = &all[2];
        assert_eq!(sda1.parent, Some(("sda".to_string(), 1)));
        assert_eq!(sda1.path, host.path("/dev/sda1"));
        assert_eq!(sda1.size, 512 * 512);
    }

    #[test]
    fn skip_list_spares_disks_and_their_partitions() {
        let (_d, host) = host();
        let node = json!({"properties": {"skip_block_devices": [{"name": "/dev/sda"}]}});
        let all = with_partitions(disks(&host, &node).unwrap());
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["/dev/vdb"]);
        let bad = json!({"properties": {"skip_block_devices": [{"size": "big"}]}});
        let e = disks(&host, &bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Listing the devices to erase failed"),
            "{e}"
        );
    }

    #[test]
    fn read_only_comes_from_the_device_or_its_disk() {
        let (d, host) = host();
        let all = with_partitions(disks(&host, &json!({})).unwrap());
        assert!(all.iter().all(|c| !is_read_only(c)));
        std::fs::write(d.path().join("sys/block/sda/ro"), "1\n").unwrap();
        let ro: Vec<&str> = all
            .iter()
            .filter(|c| is_read_only(c))
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(ro, ["/dev/sda2", "/dev/sda1", "/dev/sda"]);
    }

    #[test]
    fn virtual_media_by_label_link_or_label() {
        let (d, host) = host();
        let all = disks(&host, &json!({})).unwrap();
        assert!(!is_virtual_media(&host, &all[1], None));
        std::fs::create_dir_all(d.path().join("dev/disk/by-label")).unwrap();
        std::os::unix::fs::symlink("../../vdb", d.path().join("dev/disk/by-label/ir-vfd-dev"))
            .unwrap();
        assert!(is_virtual_media(&host, &all[1], None));
        assert!(!is_virtual_media(&host, &all[0], None));
        let labelled = Probe {
            signatures: vec![probe::Signature {
                fstype: "vfat".into(),
                label: Some(VMEDIA_LABEL.into()),
            }],
            ..Probe::default()
        };
        assert!(is_virtual_media(&host, &all[0], Some(&labelled)));
    }

    #[test]
    fn raid_members_are_recognised_in_partitions_and_when_unprobeable() {
        let (_d, host) = host();
        let c = &disks(&host, &json!({})).unwrap()[0];
        let member = Probe {
            partitions: vec![probe::PartEntry {
                number: 1,
                type_id: "a19d880f-05fc-4d3b-a006-743f0f84911e".into(),
                signatures: vec![probe::Signature {
                    fstype: "linux_raid_member".into(),
                    label: Some("host:data".into()),
                }],
            }],
            ..Probe::default()
        };
        assert!(is_raid_member(c, Ok(&member)));
        assert!(!is_raid_member(c, Ok(&Probe::default())));
        assert!(is_raid_member(c, Err(&"cannot open it".to_string())));
    }

    #[test]
    fn nvme_names() {
        let (_d, host) = host();
        let mut c = disks(&host, &json!({})).unwrap().remove(0);
        assert!(!c.is_nvme());
        c.name = "/dev/nvme0n1p1".into();
        assert!(c.is_nvme());
    }
}
