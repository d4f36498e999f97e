//! The shared-storage guard (IPA's `safety_check_block_device`): cleaning must not destroy a
//! clustered file system that other machines have mounted over a SAN (GPFS, VMFS, GFS2).
//!
//! A device is protected when libblkid finds, on it or in one of its partitions, a GPFS or VMFS
//! partition type (GPT GUIDs, or MBR type 0xfb) or a GFS2 superblock. Operators turn the guard
//! off with `ipa-guard-special-filesystems=false` or `driver_internal_info`
//! `wipe_special_filesystems=false`.
//!
//! Two deliberate differences from IPA, both in the direction of not destroying a cluster:
//! GUIDs compare case-insensitively (IPA compares lsblk's lower-case GUIDs with upper-case
//! constants, so its GPT rule never matches), and a whole disk is checked through its
//! partitions too (IPA looks only at the device's own lsblk line, so `erase_devices`, which
//! lists whole disks, never saw a guarded partition).

use super::devices::Candidate;
use super::error::EraseError;
use super::probe::Probe;

/// Partition types that mark shared storage.
const GUARDED_TYPES: [(&str, &str); 3] = [
    ("37affc90-ef7d-4e96-91c3-2d7ae055b174", "IBM GPFS Partition"),
    (
        "aa31e02a-400f-11db-9590-000c2911d1b8",
        "VMware VMFS Partition (GPT)",
    ),
    ("0xfb", "VMware VMFS Partition (MBR)"),
];

/// File systems that mark shared storage.
const GUARDED_FSTYPES: [(&str, &str); 1] = [("gfs2", "Red Hat Global File System 2")];

/// Refuses a device that holds shared storage. `parent` is the probe of a partition's disk
/// (where the partition's own type is recorded).
pub fn check(c: &Candidate, probe: &Probe, parent: Option<&Probe>) -> Result<(), EraseError> {
    let mut types: Vec<&str> = Vec::new();
    let mut fstypes: Vec<&str> = probe.signatures.iter().map(|s| s.fstype.as_str()).collect();
    match (&c.parent, parent) {
        (Some((_, number)), Some(disk)) => {
            let own = disk
                .partitions
                .iter()
                .filter(|p| u32::try_from(p.number).ok() == Some(*number));
            types.extend(own.map(|p| p.type_id.as_str()));
        }
        _ => {
            types.extend(probe.partitions.iter().map(|p| p.type_id.as_str()));
            fstypes.extend(
                probe
                    .partitions
                    .iter()
                    .flat_map(|p| p.signatures.iter().map(|s| s.fstype.as_str())),
            );
        }
    }
    let protected = |what: &str| EraseError::Protected {
        device: c.name.clone(),
        what: what.to_string(),
    };
    for (id, what) in GUARDED_TYPES {
        if types.iter().any(|t| t.eq_ignore_ascii_case(id)) {
            return Err(protected(what));
        }
    }
    for (fs, what) in GUARDED_FSTYPES {
        if fstypes.contains(&fs) {
            return Err(protected(what));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::erase::probe::{PartEntry, Signature};
    use std::path::PathBuf;

    fn disk() -> Candidate {
        Candidate {
            name: "/dev/sdb".into(),
            kname: "sdb".into(),
            path: PathBuf::from("/dev/sdb"),
            sys: PathBuf::from("/sys/block/sdb"),
            parent: None,
            size: 1 << 30,
        }
    }

    fn part(n: i32, type_id: &str, fstype: Option<&str>) -> PartEntry {
        PartEntry {
            number: n,
            type_id: type_id.into(),
            signatures: fstype
                .map(|f| {
                    vec![Signature {
                        fstype: f.into(),
                        label: None,
                    }]
                })
                .unwrap_or_default(),
        }
    }

    #[test]
    fn gpt_guids_match_in_any_case_and_mbr_0xfb() {
        for (id, what) in [
            ("37AFFC90-EF7D-4E96-91C3-2D7AE055B174", "IBM GPFS Partition"),
            (
                "aa31e02a-400f-11db-9590-000c2911d1b8",
                "VMware VMFS Partition (GPT)",
            ),
            ("0xfb", "VMware VMFS Partition (MBR)"),
        ] {
            let p = Probe {
                partitions: vec![part(1, "0x83", None), part(2, id, None)],
                ..Probe::default()
            };
            let e = check(&disk(), &p, None).unwrap_err();
            assert_eq!(
                e,
                EraseError::Protected {
                    device: "/dev/sdb".into(),
                    what: what.into()
                }
            );
        }
    }

    #[test]
    fn gfs2_on_the_device_or_in_a_partition() {
        let whole = Probe {
            signatures: vec![Signature {
                fstype: "gfs2".into(),
                label: Some("cluster:fs".into()),
            }],
            ..Probe::default()
        };
        assert!(check(&disk(), &whole, None).is_err());
        let inside = Probe {
            partitions: vec![part(
                1,
                "0fc63daf-8483-4772-8e79-3d69d8477de4",
                Some("gfs2"),
            )],
            ..Probe::default()
        };
        assert!(check(&disk(), &inside, None).is_err());
    }

    #[test]
    fn ordinary_disks_pass() {
        let p = Probe {
            signatures: vec![],
            pttype: Some("gpt".into()),
            partitions: vec![
                part(1, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", Some("vfat")),
                part(2, "0fc63daf-8483-4772-8e79-3d69d8477de4", Some("ext4")),
            ],
        };
        assert!(check(&disk(), &p, None).is_ok());
    }

    #[test]
    fn a_partition_is_judged_by_its_own_entry_in_the_disk_table() {
        let table = Probe {
            partitions: vec![part(1, "0x83", None), part(2, "0xfb", None)],
            ..Probe::default()
        };
        let mut p1 = disk();
        p1.name = "/dev/sdb1".into();
        p1.parent = Some(("sdb".into(), 1));
        assert!(check(&p1, &Probe::default(), Some(&table)).is_ok());
        let mut p2 = p1.clone();
        p2.name = "/dev/sdb2".into();
        p2.parent = Some(("sdb".into(), 2));
        assert!(check(&p2, &Probe::default(), Some(&table)).is_err());
    }
}
