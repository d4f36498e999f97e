//! Booted from virtual media (`boot_method=vmedia`, contract §1.1): Ironic's Redfish virtual
//! media hands the agent its parameters in `parameters.txt` on a small image labelled
//! `ir-vfd-dev` (they override the kernel command line), and its API CA in
//! `etc/ironic-python-agent*/` on the `config-2`/`vmedia_boot_iso` image.

use crate::hardware::HostRoot;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const PARAMS_LABEL: &str = "ir-vfd-dev";
const CONFIG_LABELS: &[&str] = &["config-2", "vmedia_boot_iso"];
const VMEDIA_MODEL: &str = "virtual media";
/// A USB disk smaller than this can be a BMC's virtual floppy or stick.
const MAX_USB_VMEDIA: u64 = 4 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VmediaError {
    #[error("mounting virtual media {device} failed: {reason}")]
    Mount { device: String, reason: String },
    #[error("reading {path} from virtual media failed: {reason}")]
    Read { path: String, reason: String },
    #[error("copying configuration from virtual media to {dest} failed: {reason}")]
    Copy { dest: String, reason: String },
}

/// A block device as seen for virtual-media purposes.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    kname: String,
    label: Option<String>,
    fstype: Option<String>,
}

/// The parameters from `parameters.txt`, or an empty map when there is no virtual media.
pub fn read_parameters(
    host: &HostRoot,
    mount_dir: &Path,
) -> Result<HashMap<String, String>, VmediaError> {
    let devices = probe_devices(host);
    let chosen = by_label(&devices, &[PARAMS_LABEL])
        .into_iter()
        .find(|c| looks_like_vmedia(host, &c.kname))
        .or_else(|| {
            by_model(host).and_then(|k| {
                devices
                    .iter()
                    .find(|c| c.kname == k && looks_like_vmedia(host, &k))
            })
        });
    let Some(dev) = chosen else {
        tracing::info!("no virtual media device with parameters found");
        return Ok(HashMap::new());
    };
    with_mounted(dev, mount_dir, |root| {
        let path = root.join("parameters.txt");
        let text = std::fs::read_to_string(&path).map_err(|e| VmediaError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(crate::config::tokenize(&text))
    })
}

/// Copies `etc/ironic-python-agent{,.d}/*` from the configuration image into `etc_dir`.
pub fn copy_config(host: &HostRoot, mount_dir: &Path, etc_dir: &Path) -> Result<bool, VmediaError> {
    let devices = probe_devices(host);
    let Some(dev) = by_label(&devices, CONFIG_LABELS)
        .into_iter()
        .find(|c| looks_like_vmedia(host, &c.kname))
    else {
        return Ok(false);
    };
    with_mounted(dev, mount_dir, |root| {
        for sub in ["ironic-python-agent", "ironic-python-agent.d"] {
            copy_dir(&root.join("etc").join(sub), &etc_dir.join(sub))?;
        }
        Ok(true)
    })
}

fn copy_dir(src: &Path, dest: &Path) -> Result<(), VmediaError> {
    let Ok(entries) = std::fs::read_dir(src) else {
        return Ok(());
    };
    let fail = |reason: String| VmediaError::Copy {
        dest: dest.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dest).map_err(|e| fail(e.to_string()))?;
    for e in entries.flatten().filter(|e| e.path().is_file()) {
        std::fs::copy(e.path(), dest.join(e.file_name())).map_err(|e| fail(e.to_string()))?;
        tracing::info!(
            "copied {} from virtual media to {}",
            e.file_name().to_string_lossy(),
            dest.display()
        );
    }
    Ok(())
}

/// Every block device and partition with its filesystem label and type (libblkid).
fn probe_devices(host: &HostRoot) -> Vec<Candidate> {
    let Ok(dir) = std::fs::read_dir(host.path("/sys/class/block")) else {
        return Vec::new();
    };
    let mut out: Vec<Candidate> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|kname| {
            let (label, fstype) = probe_label(&host.path(&format!("/dev/{kname}")));
            Candidate {
                kname,
                label,
                fstype,
            }
        })
        .collect();
    out.sort_by(|a, b| a.kname.cmp(&b.kname));
    out
}

fn probe_label(dev: &Path) -> (Option<String>, Option<String>) {
    let Ok(p) = blkid::prober::Prober::new_from_filename(dev) else {
        return (None, None);
    };
    if p.enable_superblocks(true).is_err() || p.do_safe_probe().is_err() {
        return (None, None);
    }
    (p.lookup_value("LABEL").ok(), p.lookup_value("TYPE").ok())
}

fn by_label<'a>(devices: &'a [Candidate], labels: &[&str]) -> Vec<&'a Candidate> {
    devices
        .iter()
        .filter(|c| {
            c.label
                .as_deref()
                .is_some_and(|l| labels.iter().any(|w| w.eq_ignore_ascii_case(l)))
        })
        .collect()
}

/// A block device whose model says "virtual media" (BMCs name their devices so).
fn by_model(host: &HostRoot) -> Option<String> {
    std::fs::read_dir(host.path("/sys/class/block"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let model = std::fs::read_to_string(e.path().join("device/model")).ok()?;
            model
                .to_ascii_lowercase()
                .contains(VMEDIA_MODEL)
                .then(|| e.file_name().into_string().ok())
                .flatten()
        })
}

/// IPA's check: never a partition; a ROM drive, or a USB disk under 4 GiB.
fn looks_like_vmedia(host: &HostRoot, kname: &str) -> bool {
    let sys = host.path(&format!("/sys/class/block/{kname}"));
    if sys.join("partition").exists() {
        return false;
    }
    // SCSI peripheral type 5 is a CD/DVD drive (what lsblk calls "rom").
    let scsi_type = std::fs::read_to_string(sys.join("device/type")).unwrap_or_default();
    if scsi_type.trim() == "5" || kname.starts_with("sr") {
        return true;
    }
    let on_usb = std::fs::canonicalize(&sys)
        .map(|p| p.to_string_lossy().contains("/usb"))
        .unwrap_or(false);
    let size = std::fs::read_to_string(sys.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    on_usb && size.saturating_mul(512) < MAX_USB_VMEDIA
}

fn with_mounted<T>(
    dev: &Candidate,
    mount_dir: &Path,
    f: impl FnOnce(&Path) -> Result<T, VmediaError>,
) -> Result<T, VmediaError> {
    let device = PathBuf::from(format!("/dev/{}", dev.kname));
    let fail = |reason: String| VmediaError::Mount {
        device: device.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(mount_dir).map_err(|e| fail(e.to_string()))?;
    let fstypes: Vec<&str> = match dev.fstype.as_deref() {
        Some(t) => vec![t],
        None => vec!["vfat", "iso9660"],
    };
    let mounted = fstypes.iter().find_map(|t| {
        nix::mount::mount(
            Some(&device),
            mount_dir,
            Some(*t),
            nix::mount::MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .ok()
    });
    if mounted.is_none() {
        return Err(fail(format!(
            "no filesystem among {fstypes:?} could be mounted"
        )));
    }
    let result = f(mount_dir);
    if let Err(e) = nix::mount::umount(mount_dir) {
        tracing::warn!(
            "unmounting virtual media from {} failed: {e}",
            mount_dir.display()
        );
    }
    result
}

/// Merges virtual-media parameters over the kernel's: the virtual media wins (as IPA).
pub fn merge(
    cmdline: HashMap<String, String>,
    vmedia: HashMap<String, String>,
) -> HashMap<String, String> {
    let mut merged = cmdline;
    merged.extend(vmedia);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().unwrap();
        let host = HostRoot::new(dir.path());
        let block = dir.path().join("sys/class/block");
        for (name, files) in [
            ("sr0", vec![("device/type", "5"), ("size", "2048")]),
            ("sda", vec![("device/type", "0"), ("size", "20971520")]),
            ("sda1", vec![("partition", "1"), ("size", "2048")]),
        ] {
            for (f, v) in files {
                let p = block.join(name).join(f);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, v).unwrap();
            }
        }
        (dir, host)
    }

    #[test]
    fn only_roms_and_small_usb_disks_qualify() {
        let (_d, host) = fixture();
        assert!(looks_like_vmedia(&host, "sr0"));
        assert!(!looks_like_vmedia(&host, "sda"));
        assert!(!looks_like_vmedia(&host, "sda1"));
    }

    #[test]
    fn labels_match_case_insensitively() {
        let devs = vec![
            Candidate {
                kname: "sr0".into(),
                label: Some("IR-VFD-DEV".into()),
                fstype: Some("vfat".into()),
            },
            Candidate {
                kname: "sda1".into(),
                label: Some("root".into()),
                fstype: None,
            },
        ];
        assert_eq!(by_label(&devs, &[PARAMS_LABEL]).len(), 1);
        assert_eq!(by_label(&devs, CONFIG_LABELS).len(), 0);
    }

    #[test]
    fn vmedia_parameters_override_the_command_line() {
        let cmd = crate::config::tokenize("ipa-api-url=http://a BOOTIF=x");
        let vm = crate::config::tokenize("ipa-api-url=http://b\nipa-agent-token=tok");
        let m = merge(cmd, vm);
        assert_eq!(m["ipa-api-url"], "http://b");
        assert_eq!(m["BOOTIF"], "x");
        assert_eq!(m["ipa-agent-token"], "tok");
    }

    #[test]
    fn no_device_means_no_parameters() {
        let (dir, host) = fixture();
        assert!(read_parameters(&host, &dir.path().join("mnt"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn copies_configuration_files() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("etc/ironic-python-agent")).unwrap();
        std::fs::write(src.path().join("etc/ironic-python-agent/ironic.crt"), "PEM").unwrap();
        copy_dir(
            &src.path().join("etc/ironic-python-agent"),
            &dest.path().join("ironic-python-agent"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.path().join("ironic-python-agent/ironic.crt")).unwrap(),
            "PEM"
        );
    }
}
