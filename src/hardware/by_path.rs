//! `/dev/disk/by-path` names.
//!
//! IPA reports the `/dev/disk/by-path/...` symlink pointing at each disk. Those symlinks are made
//! by udev, which our ramdisk does not run, so when the directory is absent (or has no link for a
//! disk) the name is derived from the disk's sysfs ancestry the way udev's `path_id` builtin
//! composes `ID_PATH`: walk up the device chain and prepend one element per bus (`pci-<addr>`,
//! `ata-<port>`, `nvme-<nsid>`, `sas-...`, `scsi-h:c:t:l`, `usb-0:<port>`), and give up when the
//! chain has no well-known parent (virtual devices such as md and dm have no by-path name).
//!
//! Where udev versions disagree this follows the long-standing names every version creates:
//! `ata-<port>` (newer udev also adds `ata-<port>.<n>`) and `pci-<addr>` for virtio disks.

use super::sysfs::{canonical, dir_names, link_basename, read_nonempty};
use super::HostRoot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const BY_PATH_DIR: &str = "/dev/disk/by-path";

/// The existing `/dev/disk/by-path` symlinks, keyed by the kernel name they point at.
/// Several links may point at one disk; they are kept sorted.
pub(crate) fn scan_links(host: &HostRoot) -> HashMap<String, Vec<String>> {
    let dir = host.path(BY_PATH_DIR);
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for name in dir_names(&dir) {
        let Ok(target) = std::fs::read_link(dir.join(&name)) else {
            continue;
        };
        let Some(kname) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        map.entry(kname)
            .or_default()
            .push(format!("{BY_PATH_DIR}/{name}"));
    }
    map
}

/// The by-path name of a disk: an existing symlink if udev made one (preferring the one whose
/// name `path_id` would compose), else the composed name.
pub(crate) fn by_path_for(
    host: &HostRoot,
    kname: &str,
    sys_dev: &Path,
    links: &HashMap<String, Vec<String>>,
) -> Option<String> {
    let derived = path_id(host, sys_dev).map(|id| format!("{BY_PATH_DIR}/{id}"));
    match links.get(kname) {
        Some(existing) if !existing.is_empty() => {
            if let Some(d) = &derived {
                if existing.contains(d) {
                    return derived;
                }
            }
            existing.first().cloned()
        }
        _ => derived,
    }
}

/// One device in the sysfs device tree.
struct Dev<'a> {
    host: &'a HostRoot,
    path: PathBuf,
}

impl<'a> Dev<'a> {
    fn sysname(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn subsystem(&self) -> Option<String> {
        link_basename(self.path.join("subsystem"))
    }

    fn devtype(&self) -> Option<String> {
        let uevent = std::fs::read_to_string(self.path.join("uevent")).ok()?;
        uevent
            .lines()
            .find_map(|l| l.strip_prefix("DEVTYPE="))
            .map(str::to_string)
    }

    fn attr(&self, name: &str) -> Option<String> {
        read_nonempty(self.path.join(name))
    }

    /// The nearest ancestor that is a device (has a `uevent` file), within /sys/devices.
    fn parent(&self) -> Option<Dev<'a>> {
        let top = canonical(self.host.path("/sys/devices"))?;
        let mut p = self.path.parent()?;
        while p.starts_with(&top) && p != top {
            if p.join("uevent").exists() {
                return Some(Dev {
                    host: self.host,
                    path: p.to_path_buf(),
                });
            }
            p = p.parent()?;
        }
        None
    }

    fn parent_with(&self, subsystem: &str, devtype: &str) -> Option<Dev<'a>> {
        let mut cur = self.parent();
        while let Some(d) = cur {
            if d.subsystem().as_deref() == Some(subsystem)
                && d.devtype().as_deref() == Some(devtype)
            {
                return Some(d);
            }
            cur = d.parent();
        }
        None
    }

    /// The last device of a run of ancestors that share `subsystem` (udev's `skip_subsystem`).
    fn skip_subsystem(self, subsystem: &str) -> Dev<'a> {
        let mut last = self;
        while let Some(p) = last.parent() {
            if p.subsystem().as_deref() != Some(subsystem) {
                break;
            }
            last = p;
        }
        last
    }

    /// The trailing decimal digits of the name (udev's `sysnum`).
    fn sysnum(&self) -> Option<String> {
        let name = self.sysname();
        let digits: String = name
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        (!digits.is_empty()).then(|| digits.chars().rev().collect())
    }
}

fn class_dev<'a>(host: &'a HostRoot, class: &str, name: &str) -> Option<Dev<'a>> {
    let p = host.path(&format!("/sys/class/{class}/{name}"));
    p.exists().then_some(Dev { host, path: p })
}

fn lun_element(dev: &Dev<'_>) -> Option<String> {
    let lun: u64 = dev.sysnum()?.parse().ok()?;
    Some(if lun < 256 {
        format!("lun-{lun}")
    } else {
        format!(
            "lun-0x{:04x}{:04x}00000000",
            lun & 0xffff,
            (lun >> 16) & 0xffff
        )
    })
}

/// Composes udev's `ID_PATH` for the block device at `sys_dev` (its canonical sysfs directory).
pub(crate) fn path_id(host: &HostRoot, sys_dev: &Path) -> Option<String> {
    let dev = Dev {
        host,
        path: canonical(sys_dev)?,
    };
    let mut parts: Vec<String> = Vec::new(); // innermost first; reversed at the end
    let mut supported_parent = false;
    let mut supported_transport = false;
    let nsid = dev.attr("nsid");

    let mut cur = Some(Dev {
        host,
        path: dev.path.clone(),
    });
    while let Some(d) = cur {
        let next = match d.subsystem().as_deref() {
            Some("scsi") => {
                supported_transport = true;
                handle_scsi(d, &mut parts, &mut supported_parent)
            }
            Some("usb") => {
                supported_transport = true;
                Some(handle_usb(d, &mut parts))
            }
            Some("pci") => {
                parts.push(format!("pci-{}", d.sysname()));
                supported_parent = true;
                Some(d.skip_subsystem("pci"))
            }
            Some("platform") => {
                parts.push(format!("platform-{}", d.sysname()));
                supported_parent = true;
                supported_transport = true;
                Some(d.skip_subsystem("platform"))
            }
            Some("acpi") => {
                parts.push(format!("acpi-{}", d.sysname()));
                supported_parent = true;
                Some(d.skip_subsystem("acpi"))
            }
            Some("xen") => {
                parts.push(format!("xen-{}", d.sysname()));
                supported_parent = true;
                Some(d.skip_subsystem("xen"))
            }
            Some("virtio") => {
                supported_transport = true;
                Some(d.skip_subsystem("virtio"))
            }
            Some("nvme") => match &nsid {
                Some(ns) => {
                    parts.push(format!("nvme-{ns}"));
                    supported_parent = true;
                    supported_transport = true;
                    Some(d.skip_subsystem("nvme"))
                }
                None => Some(d),
            },
            _ => Some(d),
        };
        cur = next.and_then(|n| n.parent());
    }

    if parts.is_empty() || !supported_parent || !supported_transport {
        return None;
    }
    parts.reverse();
    Some(parts.join("-"))
}

fn handle_scsi<'a>(
    d: Dev<'a>,
    parts: &mut Vec<String>,
    supported_parent: &mut bool,
) -> Option<Dev<'a>> {
    if d.devtype().as_deref() != Some("scsi_device") {
        return Some(d);
    }
    if let Some(id) = d.attr("ieee1394_id") {
        parts.push(format!("ieee1394-0x{id}"));
        *supported_parent = true;
        return Some(d.skip_subsystem("scsi"));
    }
    let path = d.path.to_string_lossy().into_owned();
    if path.contains("/rport-") {
        *supported_parent = true;
        return scsi_fibre_channel(d, parts);
    }
    if path.contains("/end_device-") {
        *supported_parent = true;
        return scsi_sas(d, parts);
    }
    if path.contains("/session") {
        *supported_parent = true;
        return scsi_iscsi(d, parts);
    }
    if path.contains("/ata") {
        return scsi_ata(d, parts);
    }
    scsi_default(d, parts)
}

fn scsi_fibre_channel<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Option<Dev<'a>> {
    let target = d.parent_with("scsi", "scsi_target")?;
    let fc = class_dev(d.host, "fc_transport", &target.sysname())?;
    let port = fc.attr("port_name")?;
    let lun = lun_element(&d)?;
    parts.push(format!("fc-{port}-{lun}"));
    Some(d)
}

fn scsi_sas<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Option<Dev<'a>> {
    let target = d.parent_with("scsi", "scsi_target")?;
    let end_device = target.parent()?;
    let target_sas = class_dev(d.host, "sas_device", &end_device.sysname())?;
    let port = end_device.parent()?;
    let port_sas = class_dev(d.host, "sas_port", &port.sysname())?;
    let lun = lun_element(&d)?;
    if port_sas.attr("num_phys").as_deref() != Some("1") {
        // A wide port: name the disk by its SAS address.
        let address = target_sas.attr("sas_address")?;
        parts.push(format!("sas-{address}-{lun}"));
        return Some(d);
    }
    let phy = target_sas.attr("phy_identifier")?;
    let expander = port.parent()?;
    match class_dev(d.host, "sas_device", &expander.sysname()) {
        Some(exp) => {
            let address = exp.attr("sas_address")?;
            parts.push(format!("sas-exp{address}-phy{phy}-{lun}"));
        }
        None => parts.push(format!("sas-phy{phy}-{lun}")),
    }
    Some(d)
}

fn scsi_iscsi<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Option<Dev<'a>> {
    let mut session = d.parent();
    while let Some(s) = &session {
        if s.sysname().starts_with("session") {
            break;
        }
        session = s.parent();
    }
    let session = session?;
    let sess = class_dev(d.host, "iscsi_session", &session.sysname())?;
    let target = sess.attr("targetname")?;
    let conn = class_dev(
        d.host,
        "iscsi_connection",
        &format!("connection{}:0", session.sysnum()?),
    )?;
    let addr = conn.attr("persistent_address")?;
    let port = conn.attr("persistent_port")?;
    let lun = lun_element(&d)?;
    parts.push(format!("ip-{addr}:{port}-iscsi-{target}-{lun}"));
    Some(d)
}

fn scsi_ata<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Option<Dev<'a>> {
    let host = d.parent_with("scsi", "scsi_host")?;
    let ata = host.parent()?;
    let port = class_dev(d.host, "ata_port", &ata.sysname())?.attr("port_no")?;
    parts.push(format!("ata-{port}"));
    Some(d)
}

fn scsi_default<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Option<Dev<'a>> {
    let hostdev = d.parent_with("scsi", "scsi_host")?;
    let name = d.sysname();
    let nums: Vec<u32> = name.split(':').filter_map(|n| n.parse().ok()).collect();
    let [host, bus, target, lun] = nums[..] else {
        return None;
    };
    // udev rebases the host number on the lowest host under the same parent device.
    let base_dir = hostdev.path.parent()?;
    let base = dir_names(base_dir)
        .iter()
        .filter_map(|n| n.strip_prefix("host").and_then(|h| h.parse::<u32>().ok()))
        .min();
    let Some(base) = base else {
        return Some(hostdev);
    };
    parts.push(format!(
        "scsi-{}:{bus}:{target}:{lun}",
        host.saturating_sub(base)
    ));
    Some(hostdev)
}

fn handle_usb<'a>(d: Dev<'a>, parts: &mut Vec<String>) -> Dev<'a> {
    match d.devtype().as_deref() {
        Some("usb_interface") | Some("usb_device") => {}
        _ => return d,
    }
    let name = d.sysname();
    let Some((_, port)) = name.split_once('-') else {
        return d;
    };
    parts.push(format!("usb-0:{port}"));
    d.skip_subsystem("usb")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture server, with the empty directories git does not keep re-created (see
    /// tests/support/hardware.rs).
    fn server() -> HostRoot {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware");
        let list = std::fs::read_to_string(fixtures.join("server.empty-dirs")).unwrap();
        for dir in list.lines().filter(|l| !l.trim().is_empty()) {
            std::fs::create_dir_all(fixtures.join("server").join(dir)).unwrap();
        }
        HostRoot::new(fixtures.join("server"))
    }

    fn id(kname: &str) -> Option<String> {
        let host = server();
        path_id(&host, &host.path(&format!("/sys/block/{kname}")))
    }

    #[test]
    fn composes_udev_path_ids() {
        assert_eq!(id("sda").as_deref(), Some("pci-0000:00:17.0-ata-1"));
        assert_eq!(
            id("sdb").as_deref(),
            Some("pci-0000:18:00.0-sas-phy0-lun-0")
        );
        assert_eq!(
            id("sdc").as_deref(),
            Some("pci-0000:18:00.0-sas-phy1-lun-0")
        );
        assert_eq!(id("nvme0n1").as_deref(), Some("pci-0000:3b:00.0-nvme-1"));
        assert_eq!(id("vda").as_deref(), Some("pci-0000:00:05.0"));
        // A plain SCSI host (no ATA port, no SAS end device): rebased h:c:t:l.
        assert_eq!(id("sde").as_deref(), Some("pci-0000:18:00.0-scsi-1:0:0:0"));
        // Virtual devices have no path.
        assert_eq!(id("md0"), None);
        assert_eq!(id("dm-0"), None);
        assert_eq!(id("nvme1n1"), None);
        // The floppy hangs off a platform device, which is a known parent and transport.
        assert_eq!(id("fd0").as_deref(), Some("platform-floppy.0"));
    }

    #[test]
    fn existing_links_are_read_and_preferred() {
        let host = server();
        let links = scan_links(&host);
        assert_eq!(
            links.get("sdb").map(Vec::as_slice),
            Some(
                &["/dev/disk/by-path/pci-0000:18:00.0-sas-0x5000c500a1b2c300-lun-0".to_string()][..]
            )
        );
        let sdb = host.path("/sys/block/sdb");
        assert_eq!(
            by_path_for(&host, "sdb", &sdb, &links).as_deref(),
            Some("/dev/disk/by-path/pci-0000:18:00.0-sas-0x5000c500a1b2c300-lun-0")
        );
        let sda = host.path("/sys/block/sda");
        assert_eq!(
            by_path_for(&host, "sda", &sda, &links).as_deref(),
            Some("/dev/disk/by-path/pci-0000:00:17.0-ata-1")
        );
    }

    #[test]
    fn luns_above_255_use_the_long_form() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostRoot::new(dir.path());
        let dev = dir.path().join("sys/devices/1:0:0:300");
        std::fs::create_dir_all(&dev).unwrap();
        assert_eq!(
            lun_element(&Dev {
                host: &host,
                path: dev
            })
            .as_deref(),
            Some("lun-0x012c000000000000")
        );
    }
}
