//! Partition tables: writing IPA's partition-image layout (GPT or MBR) and reading or extending
//! an existing table (the config drive partition), with the `gpt` and `mbrman` crates.
//!
//! Layouts follow what IPA gets from `parted -a optimal ... unit MiB mkpart`: the first
//! partition starts at 1 MiB, each partition is exactly its size in MiB, and they follow each
//! other without gaps.

use super::DiskError;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

pub const MIB: u64 = 1 << 20;
/// MBR partition type bytes.
const MBR_LINUX: u8 = 0x83;
const MBR_SWAP: u8 = 0x82;
const MBR_ESP: u8 = 0xef;
const MBR_PREP: u8 = 0x41;
const MBR_FAT32_LBA: u8 = 0x0c;
const MBR_PROTECTIVE: u8 = 0xee;
/// MBR addresses are 32-bit sector numbers: 2 TiB with 512-byte sectors.
const MBR_LIMIT_SECTORS: u64 = 1 << 32;

/// The kind of partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Gpt,
    Msdos,
}

impl Label {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpt => "gpt",
            Self::Msdos => "msdos",
        }
    }
}

/// What a new partition is for; decides its type (GPT type GUID or MBR type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// EFI system partition.
    Esp,
    /// GRUB's core image on BIOS machines with GPT.
    BiosBoot,
    /// PowerPC PReP boot partition.
    Prep,
    /// Linux data: root, ephemeral, config drive of a partition image.
    Linux,
    Swap,
    /// The config drive added to a whole-disk image on MBR (`mkpart primary fat32`).
    Fat32,
}

impl Role {
    fn gpt_type(self) -> gpt::partition_types::Type {
        use gpt::partition_types as t;
        match self {
            Self::Esp => t::EFI,
            Self::BiosBoot => t::BIOS,
            Self::Prep => t::PPC_BOOT,
            Self::Swap => t::LINUX_SWAP,
            Self::Linux => t::LINUX_FS,
            Self::Fat32 => t::BASIC,
        }
    }

    fn mbr_type(self) -> u8 {
        match self {
            Self::Esp => MBR_ESP,
            Self::Prep => MBR_PREP,
            Self::Swap => MBR_SWAP,
            Self::Fat32 => MBR_FAT32_LBA,
            Self::Linux | Self::BiosBoot => MBR_LINUX,
        }
    }
}

/// A partition to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPartition {
    pub size_mib: u64,
    pub role: Role,
    /// The MBR "active" flag (IPA sets it on the root partition of BIOS msdos layouts).
    pub bootable: bool,
}

/// A partition as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel numbers it.
    pub number: u32,
    /// Offset and length in bytes.
    pub start: u64,
    pub size: u64,
    /// What blkid reports as PARTUUID: the GPT partition GUID, or `<disk signature>-<nn>`.
    pub part_uuid: String,
    /// GPT type GUID (lowercase) or MBR type byte as `0x83`.
    pub type_id: String,
}

impl Partition {
    pub fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// A partition table as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub label: Label,
    pub partitions: Vec<Partition>,
}

impl Table {
    pub fn get(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

/// The geometry of the disk behind `file`.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub size: u64,
    pub sector: u64,
}

impl Geometry {
    pub fn of(file: &File, sector: u64, device: &Path) -> Result<Self, DiskError> {
        let mut f = file;
        let size = f
            .seek(SeekFrom::End(0))
            .map_err(|e| DiskError::io("reading the size of", device, e))?;
        Ok(Self { size, sector })
    }

    fn sectors(&self) -> u64 {
        self.size / self.sector
    }

    fn lb_size(&self, device: &Path) -> Result<gpt::disk::LogicalBlockSize, DiskError> {
        match self.sector {
            512 => Ok(gpt::disk::LogicalBlockSize::Lb512),
            4096 => Ok(gpt::disk::LogicalBlockSize::Lb4096),
            s => Err(DiskError::Invalid(format!(
                "{} has {s}-byte logical sectors; only 512 and 4096 are supported for GPT",
                device.display()
            ))),
        }
    }
}

/// Writes a new table holding `parts` in order from 1 MiB, replacing whatever was there.
pub fn create(
    file: &File,
    device: &Path,
    geo: Geometry,
    label: Label,
    parts: &[NewPartition],
) -> Result<Table, DiskError> {
    let needed = MIB + parts.iter().map(|p| p.size_mib * MIB).sum::<u64>();
    // GPT keeps 33 sectors for its backup at the end; MBR addresses at most 2^32 sectors.
    let usable = match label {
        Label::Gpt => geo.size.saturating_sub(34 * geo.sector),
        Label::Msdos => geo.size.min(MBR_LIMIT_SECTORS * geo.sector),
    };
    if needed > usable {
        return Err(DiskError::Invalid(format!(
            "the requested partitions need {} MiB but {} has {} MiB usable with a {} label",
            needed.div_ceil(MIB),
            device.display(),
            usable / MIB,
            label.name()
        )));
    }
    match label {
        Label::Gpt => create_gpt(file, device, geo, parts),
        Label::Msdos => create_mbr(file, device, geo, parts),
    }
}

fn gpt_err(device: &Path, what: &str, e: impl std::fmt::Display) -> DiskError {
    DiskError::Invalid(format!("{what} on {} failed: {e}", device.display()))
}

fn create_gpt(
    file: &File,
    device: &Path,
    geo: Geometry,
    parts: &[NewPartition],
) -> Result<Table, DiskError> {
    let lb = geo.lb_size(device)?;
    let mut dev = file;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(&mut dev, None)
        .map_err(|e| gpt_err(device, "creating a GPT", e))?;
    let mut start = MIB / geo.sector;
    for (i, p) in parts.iter().enumerate() {
        let len = p.size_mib * MIB / geo.sector;
        // parted names GPT partitions after the type argument IPA passes ("primary").
        disk.add_partition_at("primary", i as u32 + 1, start, len, p.role.gpt_type(), 0)
            .map_err(|e| gpt_err(device, "adding a partition", e))?;
        start += len;
    }
    let table = gpt_table(disk.partitions(), geo);
    disk.write()
        .map_err(|e| gpt_err(device, "writing the GPT", e))?;
    write_protective_mbr(file, device, geo)?;
    Ok(table)
}

fn write_protective_mbr(file: &File, device: &Path, geo: Geometry) -> Result<(), DiskError> {
    let lbas = u32::try_from(geo.sectors().saturating_sub(1)).unwrap_or(u32::MAX);
    let mut dev = file;
    gpt::mbr::ProtectiveMBR::with_lb_size(lbas)
        .overwrite_lba0(&mut dev)
        .map_err(|e| gpt_err(device, "writing the protective MBR", e))?;
    Ok(())
}

fn gpt_table(
    parts: &std::collections::BTreeMap<u32, gpt::partition::Partition>,
    geo: Geometry,
) -> Table {
    let partitions = parts
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| Partition {
            number: *n,
            start: p.first_lba * geo.sector,
            size: (p.last_lba + 1 - p.first_lba) * geo.sector,
            part_uuid: p.part_guid.hyphenated().to_string(),
            type_id: p.part_type_guid.guid.hyphenated().to_string(),
        })
        .collect();
    Table {
        label: Label::Gpt,
        partitions,
    }
}

fn create_mbr(
    file: &File,
    device: &Path,
    geo: Geometry,
    parts: &[NewPartition],
) -> Result<Table, DiskError> {
    if parts.len() > 4 {
        return Err(DiskError::Invalid(format!(
            "the layout needs {} partitions but an msdos label on {} holds at most 4 primary \
             partitions; use a GPT disk_label",
            parts.len(),
            device.display()
        )));
    }
    let signature: [u8; 4] = rand::random::<u32>().max(1).to_le_bytes();
    let mut dev = file;
    let sector = geo.sector as u32;
    let mut mbr = mbrman::MBR::new_from(&mut dev, sector, signature)
        .map_err(|e| gpt_err(device, "creating an MBR", e))?;
    let mut start = (MIB / geo.sector) as u32;
    for (i, p) in parts.iter().enumerate() {
        let len = (p.size_mib * MIB / geo.sector) as u32;
        mbr[i + 1] = mbr_entry(start, len, p.role.mbr_type(), p.bootable);
        start += len;
    }
    mbr.write_into(&mut dev)
        .map_err(|e| gpt_err(device, "writing the MBR", e))?;
    Ok(mbr_table(&mbr, geo))
}

fn mbr_entry(start: u32, len: u32, sys: u8, bootable: bool) -> mbrman::MBRPartitionEntry {
    mbrman::MBRPartitionEntry {
        boot: if bootable {
            mbrman::BOOT_ACTIVE
        } else {
            mbrman::BOOT_INACTIVE
        },
        first_chs: mbrman::CHS::empty(),
        sys,
        last_chs: mbrman::CHS::empty(),
        starting_lba: start,
        sectors: len,
    }
}

fn mbr_table(mbr: &mbrman::MBR, geo: Geometry) -> Table {
    let sig = u32::from_le_bytes(mbr.header.disk_signature);
    let partitions = mbr
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| Partition {
            number: n as u32,
            start: u64::from(p.starting_lba) * geo.sector,
            size: u64::from(p.sectors) * geo.sector,
            part_uuid: format!("{sig:08x}-{n:02x}"),
            type_id: format!("0x{:02x}", p.sys),
        })
        .collect();
    Table {
        label: Label::Msdos,
        partitions,
    }
}

/// The table on the disk: GPT when a valid one is there, else MBR, else `None`.
pub fn read(file: &File, device: &Path, geo: Geometry) -> Result<Option<Table>, DiskError> {
    let mut dev = file;
    if let Ok(lb) = geo.lb_size(device) {
        if let Ok(disk) = gpt::GptConfig::new()
            .writable(false)
            .logical_block_size(lb)
            .open_from_device(&mut dev)
        {
            return Ok(Some(gpt_table(disk.partitions(), geo)));
        }
    }
    let Ok(mbr) = mbrman::MBR::read_from(&mut dev, geo.sector as u32) else {
        return Ok(None);
    };
    if mbr.iter().any(|(_, p)| p.sys == MBR_PROTECTIVE) {
        // A protective MBR whose GPT did not parse: a damaged GPT, not an MBR disk.
        return Err(DiskError::Invalid(format!(
            "{} has a protective MBR but no valid GPT",
            device.display()
        )));
    }
    Ok(Some(mbr_table(&mbr, geo)))
}

/// Adds the config drive partition IPA adds to whole-disk images, at the end of the disk:
/// GPT: a new partition over the last 64 MiB (`sgdisk -n 0:-64MB:0`, Linux type, new GUID);
/// MBR: a primary FAT32 partition over the last 64 MiB, or just below 2 TiB on larger disks,
/// refused when 4 primary partitions exist.
pub fn add_config_drive(
    file: &File,
    device: &Path,
    geo: Geometry,
    table: &Table,
    size_mib: u64,
) -> Result<Partition, DiskError> {
    let number = match table.label {
        Label::Gpt => add_gpt_at_end(file, device, geo, size_mib)?,
        Label::Msdos => add_mbr_at_end(file, device, geo, table, size_mib)?,
    };
    let after = read(file, device, geo)?.ok_or_else(|| {
        DiskError::Invalid(format!(
            "the partition table of {} cannot be read back after adding the config drive",
            device.display()
        ))
    })?;
    after.get(number).cloned().ok_or_else(|| {
        DiskError::Invalid(format!(
            "the config drive partition {number} is missing from {} after it was added",
            device.display()
        ))
    })
}

fn overlaps(table: &Table, start: u64, end: u64) -> Option<&Partition> {
    table
        .partitions
        .iter()
        .find(|p| p.start < end && start < p.end())
}

fn add_gpt_at_end(
    file: &File,
    device: &Path,
    geo: Geometry,
    size_mib: u64,
) -> Result<u32, DiskError> {
    let lb = geo.lb_size(device)?;
    let mut dev = file;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .open_from_device(&mut dev)
        .map_err(|e| gpt_err(device, "opening the GPT", e))?;
    let last_usable = disk.header().last_usable;
    let align = MIB / geo.sector;
    // sgdisk: the start is the last usable sector minus the size, rounded up to the alignment.
    let first = (last_usable + 1)
        .saturating_sub(size_mib * MIB / geo.sector)
        .div_ceil(align)
        * align;
    let table = gpt_table(disk.partitions(), geo);
    if let Some(p) = overlaps(&table, first * geo.sector, (last_usable + 1) * geo.sector) {
        return Err(DiskError::Invalid(format!(
            "no room for a {size_mib} MiB config drive at the end of {}: partition {} ends at \
             byte {}",
            device.display(),
            p.number,
            p.end()
        )));
    }
    let number = disk.find_next_partition_id().ok_or_else(|| {
        DiskError::Invalid(format!(
            "the GPT of {} has no free partition entry for the config drive",
            device.display()
        ))
    })?;
    disk.add_partition_at(
        "",
        number,
        first,
        last_usable + 1 - first,
        Role::Linux.gpt_type(),
        0,
    )
    .map_err(|e| gpt_err(device, "adding the config drive partition", e))?;
    disk.write()
        .map_err(|e| gpt_err(device, "writing the GPT", e))?;
    Ok(number)
}

fn add_mbr_at_end(
    file: &File,
    device: &Path,
    geo: Geometry,
    table: &Table,
    size_mib: u64,
) -> Result<u32, DiskError> {
    let mut dev = file;
    let mut mbr = mbrman::MBR::read_from(&mut dev, geo.sector as u32)
        .map_err(|e| gpt_err(device, "reading the MBR", e))?;
    let used: Vec<usize> = mbr
        .header
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(i, _)| i)
        .collect();
    if used.len() > 3 {
        return Err(DiskError::Invalid(format!(
            "Config drive cannot be created: disk {} uses MBR partitioning and already has {} \
             primary partitions",
            device.display(),
            used.len()
        )));
    }
    // parted: start 64 MiB before the end, end at the last sector; above 2 TiB (the MBR limit),
    // from 2097087 MiB to 2097151 MiB as IPA asks.
    if geo.size < (size_mib + 1) * MIB {
        return Err(DiskError::Invalid(format!(
            "no room for a {size_mib} MiB config drive on {}: the disk has {} MiB",
            device.display(),
            geo.size / MIB
        )));
    }
    let limit_mib = MBR_LIMIT_SECTORS * 512 / MIB;
    let disk_mib = geo.size / MIB;
    let (start, end) = if disk_mib > limit_mib {
        ((limit_mib - size_mib - 1) * MIB, (limit_mib - 1) * MIB)
    } else {
        ((geo.size - size_mib * MIB) / MIB * MIB, geo.size)
    };
    if let Some(p) = overlaps(table, start, end) {
        return Err(DiskError::Invalid(format!(
            "no room for a {size_mib} MiB config drive at the end of {}: partition {} ends at \
             byte {}",
            device.display(),
            p.number,
            p.end()
        )));
    }
    let slot = (1..=4).find(|i| !used.contains(i)).unwrap_or(4);
    let (start_s, len_s) = (start / geo.sector, (end - start) / geo.sector);
    mbr[slot] = mbr_entry(
        u32::try_from(start_s).unwrap_or(u32::MAX),
        u32::try_from(len_s).unwrap_or(u32::MAX),
        Role::Fat32.mbr_type(),
        false,
    );
    mbr.write_into(&mut dev)
        .map_err(|e| gpt_err(device, "writing the MBR", e))?;
    Ok(slot as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(size: u64) -> (tempfile::TempDir, File, std::path::PathBuf) {
        crate::disk::scratch_disk(size)
    }

    fn geo(f: &File, p: &Path) -> Geometry {
        Geometry::of(f, 512, p).unwrap()
    }

    #[test]
    fn gpt_layout_is_contiguous_from_one_mib() {
        let (_d, f, p) = disk(64 * MIB);
        let parts = [
            NewPartition {
                size_mib: 8,
                role: Role::Esp,
                bootable: false,
            },
            NewPartition {
                size_mib: 4,
                role: Role::Swap,
                bootable: false,
            },
            NewPartition {
                size_mib: 16,
                role: Role::Linux,
                bootable: false,
            },
        ];
        let t = create(&f, &p, geo(&f, &p), Label::Gpt, &parts).unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(
            (t.partitions[0].start, t.partitions[0].size),
            (MIB, 8 * MIB)
        );
        assert_eq!(t.partitions[1].start, 9 * MIB);
        assert_eq!(
            (t.partitions[2].start, t.partitions[2].size),
            (13 * MIB, 16 * MIB)
        );
        assert_eq!(
            t.partitions[0].type_id,
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        let back = read(&f, &p, geo(&f, &p)).unwrap().unwrap();
        assert_eq!(back, t);
        // blkid sees the same table and the same PARTUUIDs
        let probe = blkid::prober::Prober::new_from_filename(&p).unwrap();
        probe.enable_partitions(true).unwrap();
        probe.do_safe_probe().unwrap();
        assert_eq!(probe.lookup_value("PTTYPE").unwrap(), "gpt");
        let list = probe.part_list().unwrap();
        assert_eq!(list.numof_partitions().unwrap(), 3);
    }

    #[test]
    fn mbr_layout_marks_root_bootable_and_refuses_a_fifth_partition() {
        let (_d, f, p) = disk(64 * MIB);
        let parts = [
            NewPartition {
                size_mib: 4,
                role: Role::Swap,
                bootable: false,
            },
            NewPartition {
                size_mib: 16,
                role: Role::Linux,
                bootable: true,
            },
        ];
        let t = create(&f, &p, geo(&f, &p), Label::Msdos, &parts).unwrap();
        assert_eq!(t.partitions[1].type_id, "0x83");
        assert_eq!(t.partitions[0].type_id, "0x82");
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw[446 + 16], 0x80, "root partition active");
        assert_eq!(raw[446], 0);
        let sig = u32::from_le_bytes(raw[440..444].try_into().unwrap());
        assert_eq!(t.partitions[1].part_uuid, format!("{sig:08x}-02"));
        let five = [parts[0]; 5];
        let e = create(&f, &p, geo(&f, &p), Label::Msdos, &five).unwrap_err();
        assert!(e.to_string().contains("at most 4 primary"), "{e}");
        let e = create(
            &f,
            &p,
            geo(&f, &p),
            Label::Gpt,
            &[NewPartition {
                size_mib: 64,
                role: Role::Linux,
                bootable: false,
            }],
        )
        .unwrap_err();
        assert!(e.to_string().contains("need 65 MiB"), "{e}");
    }

    #[test]
    fn config_drive_goes_to_the_last_64_mib() {
        for label in [Label::Gpt, Label::Msdos] {
            let (_d, f, p) = disk(256 * MIB);
            let g = geo(&f, &p);
            let t = create(
                &f,
                &p,
                g,
                label,
                &[NewPartition {
                    size_mib: 100,
                    role: Role::Linux,
                    bootable: false,
                }],
            )
            .unwrap();
            let cd = add_config_drive(&f, &p, g, &t, 64).unwrap();
            assert_eq!(cd.number, 2);
            match label {
                Label::Gpt => {
                    // last usable LBA is size - 34 sectors; the start is aligned to 1 MiB
                    assert_eq!(cd.start, 192 * MIB);
                    assert_eq!(cd.end(), 256 * MIB - 33 * 512);
                }
                Label::Msdos => {
                    assert_eq!((cd.start, cd.end()), (192 * MIB, 256 * MIB));
                    assert_eq!(cd.type_id, "0x0c");
                }
            }
            let again = read(&f, &p, g).unwrap().unwrap();
            assert_eq!(again.partitions.len(), 2);
            // a second one does not fit
            let e = add_config_drive(&f, &p, g, &again, 64).unwrap_err();
            assert!(e.to_string().contains("no room"), "{e}");
        }
    }

    #[test]
    fn mbr_config_drive_is_refused_with_four_primaries() {
        let (_d, f, p) = disk(256 * MIB);
        let g = geo(&f, &p);
        let four = [NewPartition {
            size_mib: 10,
            role: Role::Linux,
            bootable: false,
        }; 4];
        let t = create(&f, &p, g, Label::Msdos, &four).unwrap();
        let e = add_config_drive(&f, &p, g, &t, 64).unwrap_err();
        assert!(e.to_string().contains("already has 4 primary"), "{e}");
    }

    #[test]
    fn blank_disks_have_no_table() {
        let (_d, f, p) = disk(8 * MIB);
        assert!(read(&f, &p, geo(&f, &p)).unwrap().is_none());
    }
}
