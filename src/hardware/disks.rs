//! The disks of the inventory (contract §10.3), read from `/sys/block`.
//!
//! IPA runs `lsblk -bia --json` and keeps whole devices of type `disk`, `raid*` (software RAID)
//! and `mpath` (device-mapper multipath maps), dropping floppies, RAM disks, zram, loop devices,
//! CD/DVD drives, LVM and other device-mapper targets, empty devices and multipath member paths.
//! This module applies the same rules to `/sys/block` directly, classifying each entry the way
//! lsblk's `TYPE` column does, and also drops hidden NVMe multipath paths (`nvme0c0n1`), which
//! have no device node.
//!
//! Order: by device number (major, minor). That is the kernel's registration order for each
//! driver (sda before sdb before sdaa; nvme0n1 before nvme1n1 in probe order), deterministic
//! across runs, and independent of sysfs directory hashing (which is what lsblk's own order
//! follows). Root-device hints pick the first matching disk in this order.

use super::by_path;
use super::disk_ids::{self, AtaIdentify, Identity};
use super::sysfs::{
    dir_names, link_basename, normalize_whitespace, read_bytes, read_nonempty, read_trimmed,
    read_u64,
};
use super::{BlockDevice, HostRoot};
use std::collections::HashMap;
use std::path::Path;

/// Why a `/sys/block` entry is not one of the inventory's disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Skip {
    Floppy,
    RamDisk,
    Hidden,
    /// lsblk would call it something other than a disk (`loop`, `rom`, `lvm`, `crypt`, ...).
    NotADisk(String),
    Empty,
    /// A path of the named multipath map, which is listed instead.
    MultipathMember(String),
}

/// What lsblk's `TYPE` column would say for a whole device.
pub(crate) fn device_type(sys: &Path, name: &str) -> String {
    if name.starts_with("dm-") {
        // The DM UUID's prefix names the subsystem owning the map: LVM, CRYPT, mpath, part...
        let prefix = read_trimmed(sys.join("dm/uuid"))
            .and_then(|u| u.split('-').next().map(str::to_string))
            .filter(|p| !p.is_empty());
        return match prefix {
            Some(p) if p.to_ascii_lowercase().starts_with("part") => "part".to_string(),
            Some(p) => p.to_ascii_lowercase(),
            None => "dm".to_string(),
        };
    }
    if name.starts_with("loop") {
        return "loop".to_string();
    }
    if name.starts_with("md") {
        return read_nonempty(sys.join("md/level"))
            .map(|l| l.to_ascii_lowercase())
            .unwrap_or_else(|| "md".to_string());
    }
    match read_trimmed(sys.join("device/type")).and_then(|t| t.parse::<u32>().ok()) {
        Some(t) => scsi_type_name(t).to_string(),
        None => "disk".to_string(),
    }
}

/// SCSI peripheral device types as lsblk names them (util-linux `blkdev_scsi_type_to_name`).
fn scsi_type_name(t: u32) -> &'static str {
    match t {
        0x00 => "disk",
        0x01 => "tape",
        0x02 => "printer",
        0x03 => "processor",
        0x04 => "worm",
        0x05 => "rom",
        0x06 => "scanner",
        0x07 => "mo-disk",
        0x08 => "changer",
        0x09 => "comm",
        0x0c => "raid",
        0x0d => "enclosure",
        0x0e => "rbc",
        0x11 => "osd",
        0x7f => "no-lun",
        _ => "disk",
    }
}

/// Whether IPA's `list_all_block_devices(block_type='disk')` keeps a device of this type.
fn is_listed_type(t: &str) -> bool {
    t == "disk" || t == "mpath" || t.contains("raid")
}

/// The multipath map (`dm-N` whose type is mpath) that holds this device, if any.
fn multipath_holder(sys: &Path) -> Option<String> {
    dir_names(sys.join("holders")).into_iter().find(|h| {
        h.starts_with("dm-")
            && read_trimmed(sys.join("holders").join(h).join("dm/uuid"))
                .is_some_and(|u| u.starts_with("mpath-"))
    })
}

/// Decides whether a `/sys/block` entry is an inventory disk.
pub(crate) fn classify(sys: &Path, name: &str) -> Result<(), Skip> {
    if name.starts_with("fd") {
        return Err(Skip::Floppy);
    }
    if name.starts_with("ram") || name.starts_with("zram") {
        return Err(Skip::RamDisk);
    }
    if read_trimmed(sys.join("hidden")).as_deref() == Some("1") {
        return Err(Skip::Hidden);
    }
    let t = device_type(sys, name);
    if !is_listed_type(&t) {
        return Err(Skip::NotADisk(t));
    }
    if let Some(map) = multipath_holder(sys) {
        return Err(Skip::MultipathMember(map));
    }
    if read_u64(sys.join("size")).unwrap_or(0) == 0 {
        return Err(Skip::Empty);
    }
    Ok(())
}

/// The inventory's disks, in device-number order, with IPA's exclusions applied.
pub fn list_disks(host: &HostRoot) -> Vec<BlockDevice> {
    let links = by_path::scan_links(host);
    let block = host.path("/sys/block");
    let mut found: Vec<((u32, u32), BlockDevice)> = Vec::new();
    for name in dir_names(&block) {
        let sys = block.join(&name);
        match classify(&sys, &name) {
            Ok(()) => found.push((devnum(&sys), describe(host, &name, &sys, &links))),
            Err(why) => tracing::debug!(device = %name, reason = ?why, "not listing block device"),
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    found.into_iter().map(|(_, d)| d).collect()
}

/// `major:minor` from the `dev` attribute; unknown sorts last.
fn devnum(sys: &Path) -> (u32, u32) {
    read_trimmed(sys.join("dev"))
        .and_then(|d| {
            let (a, b) = d.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((u32::MAX, u32::MAX))
}

/// Builds the inventory record of one disk.
fn describe(
    host: &HostRoot,
    name: &str,
    sys: &Path,
    links: &HashMap<String, Vec<String>>,
) -> BlockDevice {
    let id = identity(sys, name);
    let hctl = dir_names(sys.join("device/scsi_device")).into_iter().next();
    BlockDevice {
        name: format!("/dev/{name}"),
        model: id.model,
        size: read_u64(sys.join("size")).unwrap_or(0).saturating_mul(512),
        rotational: read_trimmed(sys.join("queue/rotational")).as_deref() == Some("1"),
        wwn: id.wwn,
        serial: id.serial,
        vendor: read_trimmed(host.path(&format!("/sys/class/block/{name}/device/vendor"))),
        wwn_with_extension: id.wwn_with_extension,
        wwn_vendor_extension: id.wwn_vendor_extension,
        hctl,
        by_path: by_path::by_path_for(host, name, sys, links),
        logical_sectors: read_u64(sys.join("queue/logical_block_size"))
            .and_then(|v| u32::try_from(v).ok()),
        physical_sectors: read_u64(sys.join("queue/physical_block_size"))
            .and_then(|v| u32::try_from(v).ok()),
        tran: transport(host, sys, name).map(str::to_string),
    }
}

/// The SCSI address `h:c:t:l` of a disk, from the name of its `device` link.
fn scsi_address(sys: &Path) -> Option<[u32; 4]> {
    let name = link_basename(sys.join("device"))?;
    let nums: Vec<u32> = name
        .split(':')
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    nums.try_into().ok()
}

/// lsblk's `TRAN` column (util-linux before 2.39, the versions IPA ramdisks ship: virtio and
/// MMC disks have no transport there).
pub(crate) fn transport(host: &HostRoot, sys: &Path, name: &str) -> Option<&'static str> {
    let Some([h, c, t, l]) = scsi_address(sys) else {
        return name.starts_with("nvme").then_some("nvme");
    };
    let scsi_host = |class: &str| host.path(&format!("/sys/class/{class}_host/host{h}"));
    let scsi_dev_attr =
        |attr: &str| host.path(&format!("/sys/bus/scsi/devices/{h}:{c}:{t}:{l}/{attr}"));
    if scsi_host("spi").is_dir() {
        return Some("spi");
    }
    if scsi_host("fc").is_dir() {
        let symbolic = read_trimmed(scsi_host("fc").join("symbolic_name"))?;
        return Some(if symbolic.contains(" over ") {
            "fcoe"
        } else {
            "fc"
        });
    }
    if scsi_host("sas").is_dir() || scsi_dev_attr("sas_device").exists() {
        return Some("sas");
    }
    if scsi_dev_attr("ieee1394_id").exists() {
        return Some("sbp");
    }
    if scsi_host("iscsi").is_dir() {
        return Some("iscsi");
    }
    let dev_path =
        super::sysfs::canonical(host.path(&format!("/sys/bus/scsi/devices/{h}:{c}:{t}:{l}")));
    if dev_path.is_some_and(|p| p.to_string_lossy().contains("usb")) {
        return Some("usb");
    }
    if scsi_host("scsi").is_dir() {
        let proc_name = read_trimmed(scsi_host("scsi").join("proc_name"))?;
        if proc_name.starts_with("ahci") || proc_name.starts_with("sata") {
            return Some("sata");
        }
        if proc_name.contains("ata") {
            return Some("ata");
        }
    }
    None
}

/// Model, serial and WWN as lsblk-with-udev (and IPA's udev fallback) would report them.
pub(crate) fn identity(sys: &Path, name: &str) -> Identity {
    let dev = sys.join("device");
    // lsblk leaves MODEL and SERIAL empty for stacked devices (md, dm); IPA then asks udev,
    // which only knows something for multipath maps.
    if !dir_names(sys.join("slaves")).is_empty()
        || name.starts_with("dm-")
        || name.starts_with("md")
    {
        let mut id = Identity::default();
        if let Some((serial, wwn)) = read_trimmed(sys.join("dm/uuid"))
            .as_deref()
            .and_then(disk_ids::multipath_ids)
        {
            id.serial = Some(serial);
            id.wwn = Some(wwn);
        }
        return id;
    }
    if name.starts_with("nvme") {
        // udev: ID_MODEL and ID_SERIAL_SHORT from the controller (or subsystem), ID_WWN = wwid.
        return Identity {
            model: read_nonempty(dev.join("model"))
                .map(|m| normalize_whitespace(&m))
                .filter(|m| !m.is_empty()),
            serial: read_nonempty(dev.join("serial")).map(|s| normalize_whitespace(&s)),
            wwn: read_nonempty(sys.join("wwid")),
            ..Identity::default()
        };
    }
    if name.starts_with("vd") {
        // udev: ID_SERIAL from the virtio `serial` attribute; virtio disks have no model or WWN.
        return Identity {
            serial: read_nonempty(sys.join("serial")),
            ..Identity::default()
        };
    }
    if scsi_address(sys).is_some() {
        return scsi_identity(&dev);
    }
    Identity {
        model: read_nonempty(dev.join("model")).map(|m| normalize_whitespace(&m)),
        serial: read_nonempty(dev.join("serial")).map(|s| normalize_whitespace(&s)),
        ..Identity::default()
    }
}

fn scsi_identity(dev: &Path) -> Identity {
    let sysfs_model = read_nonempty(dev.join("model"))
        .map(|m| normalize_whitespace(&m))
        .filter(|m| !m.is_empty());
    let is_ata = read_trimmed(dev.join("vendor")).as_deref() == Some("ATA");
    let pg89 = if is_ata {
        read_bytes(dev.join("vpd_pg89"))
    } else {
        None
    };
    if let Some(ata) = pg89.as_deref().and_then(AtaIdentify::from_vpd89) {
        // udev runs ata_id for disks behind libata: full model, serial and WWN from IDENTIFY.
        let wwn = ata.wwn();
        return Identity {
            model: ata.model().or(sysfs_model),
            serial: ata.serial(),
            wwn: wwn.as_ref().map(|w| w.with_extension()),
            wwn_with_extension: wwn.as_ref().map(|w| w.with_extension()),
            wwn_vendor_extension: None,
        };
    }
    // udev runs scsi_id: serial from VPD 0x80, WWN from the NAA designator in VPD 0x83.
    let wwn = read_bytes(dev.join("vpd_pg83"))
        .as_deref()
        .and_then(disk_ids::wwn_from_vpd83)
        .or_else(|| {
            read_trimmed(dev.join("wwid"))
                .as_deref()
                .and_then(disk_ids::wwn_from_scsi_wwid)
        });
    // Without a unit serial number, udev's ID_SERIAL_SHORT is the designator scsi_id chose.
    let serial = read_bytes(dev.join("vpd_pg80"))
        .as_deref()
        .and_then(disk_ids::serial_from_vpd80)
        .or_else(|| {
            wwn.as_ref()
                .map(|w| w.with_extension().trim_start_matches("0x").to_string())
        });
    Identity {
        model: sysfs_model,
        serial,
        wwn: wwn.as_ref().map(|w| w.with_extension()),
        wwn_with_extension: wwn.as_ref().map(|w| w.with_extension()),
        wwn_vendor_extension: wwn.and_then(|w| w.vendor_extension),
    }
}
