//! What libblkid sees on a device: every superblock signature (file systems, RAID and LVM
//! members) with its label, and the partition table with each entry's type and the signatures
//! inside it. The selection and guard rules read this instead of running lsblk.

use blkid::prober::{ProbeState, Prober};
use blkid::{PartitionsFlags, SuperblocksFlags};
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// At most this many signatures are collected from one area (a corrupt device must not loop).
const MAX_SIGNATURES: usize = 64;

/// A superblock libblkid recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// libblkid's TYPE (`ext4`, `xfs`, `LVM2_member`, `linux_raid_member`, `gfs2`, ...).
    pub fstype: String,
    pub label: Option<String>,
}

/// One partition table entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartEntry {
    /// The partition number (`N` of `sdaN`).
    pub number: i32,
    /// GPT type GUID (lower case) or MBR type as `0x..`.
    pub type_id: String,
    /// Superblocks found inside the partition.
    pub signatures: Vec<Signature>,
}

/// Everything found on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    pub signatures: Vec<Signature>,
    /// `gpt`, `dos`, ... when the device holds a partition table.
    pub pttype: Option<String>,
    pub partitions: Vec<PartEntry>,
}

impl Probe {
    /// Every file system type on the device or inside its partitions.
    pub fn all_fstypes(&self) -> impl Iterator<Item = &str> {
        self.signatures
            .iter()
            .chain(self.partitions.iter().flat_map(|p| p.signatures.iter()))
            .map(|s| s.fstype.as_str())
    }

    pub fn has_label(&self, label: &str) -> bool {
        self.signatures
            .iter()
            .any(|s| s.label.as_deref() == Some(label))
    }
}

/// Probes `path` read-only: its own signatures, its partition table, and each partition's.
pub fn probe(path: &Path) -> Result<Probe, String> {
    let file = File::open(path).map_err(|e| format!("cannot open it to probe it: {e}"))?;
    let size = super::blockdev::size_of(&file).unwrap_or(0);
    let signatures = superblocks(&file, 0, None)?;
    let (pttype, entries) = partition_table(&file)?;
    let mut partitions = Vec::new();
    for (number, type_id, start, len) in entries {
        // Probe inside the partition only when it lies within the device.
        let inside = start
            .checked_add(len)
            .is_some_and(|end| size == 0 || end <= size);
        let signatures = if inside && len > 0 {
            superblocks(&file, start, Some(len)).unwrap_or_default()
        } else {
            Vec::new()
        };
        partitions.push(PartEntry {
            number,
            type_id,
            signatures,
        });
    }
    Ok(Probe {
        signatures,
        pttype,
        partitions,
    })
}

fn blkid_err(what: &str, e: blkid::BlkIdError) -> String {
    format!("libblkid could not {what}: {e}")
}

/// Every superblock signature in `[offset, offset+len)` of `file`.
fn superblocks(file: &File, offset: u64, len: Option<u64>) -> Result<Vec<Signature>, String> {
    let mut pr = Prober::new().map_err(|e| blkid_err("start a probe", e))?;
    let off = i64::try_from(offset).map_err(|_| "offset out of range".to_string())?;
    let len = len.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    pr.set_device(file.as_raw_fd(), off, len)
        .map_err(|e| blkid_err("attach to the device", e))?;
    pr.enable_partitions(false)
        .and_then(|_| pr.enable_superblocks(true))
        .and_then(|_| {
            pr.set_superblocks_flags(
                SuperblocksFlags::TYPE | SuperblocksFlags::LABEL | SuperblocksFlags::USAGE,
            )
        })
        .map_err(|e| blkid_err("configure the probe", e))?;
    let mut found = Vec::new();
    while found.len() < MAX_SIGNATURES {
        match pr.do_probe() {
            Ok(ProbeState::Success) => {
                if let Ok(fstype) = pr.lookup_value("TYPE") {
                    found.push(Signature {
                        fstype,
                        label: pr.lookup_value("LABEL").ok(),
                    });
                }
            }
            Ok(_) => break,
            Err(e) => return Err(blkid_err("read the device", e)),
        }
    }
    Ok(found)
}

/// The partition table type and its entries as (number, type id, start byte, length).
type Entries = Vec<(i32, String, u64, u64)>;

fn partition_table(file: &File) -> Result<(Option<String>, Entries), String> {
    let mut pr = Prober::new().map_err(|e| blkid_err("start a probe", e))?;
    pr.set_device(file.as_raw_fd(), 0, None)
        .map_err(|e| blkid_err("attach to the device", e))?;
    pr.enable_superblocks(false)
        .and_then(|_| pr.enable_partitions(true))
        .and_then(|_| pr.set_partitions_flags(PartitionsFlags::FORCE_GPT))
        .map_err(|e| blkid_err("configure the probe", e))?;
    match pr.do_safe_probe() {
        Ok(ProbeState::Success) => {}
        Ok(_) => return Ok((None, Vec::new())),
        Err(e) => return Err(blkid_err("read the partition table", e)),
    }
    let pttype = pr.lookup_value("PTTYPE").ok();
    let Ok(list) = pr.part_list() else {
        return Ok((pttype, Vec::new()));
    };
    let parts = list
        .get_partitions()
        .map_err(|e| blkid_err("list the partitions", e))?;
    let mut entries = Vec::new();
    for p in parts {
        if p.is_extended() {
            // The container of logical partitions: its own entries follow.
            continue;
        }
        let type_id = p
            .typ_string()
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_else(|| format!("0x{:x}", p.typ()));
        // libblkid counts partition positions in 512-byte sectors.
        let start = p
            .start()
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0)
            * 512;
        let len = p
            .size()
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0)
            * 512;
        entries.push((p.partno().unwrap_or(0), type_id, start, len));
    }
    Ok((pttype, entries))
}
