//! The `pci-devices` inspection collector (IPA's `collect_pci_devices_info`):
//! `[{vendor_id, product_id, class, revision, bus, numa_node_id}]` from /sys/bus/pci/devices.
//! Identifiers are the hex digits after `0x` (`8086`, `020000`); `revision` is null when the
//! device has no revision file; `numa_node_id` is the `numa_node` text (`"0"`, `"-1"`) or null.
//! Devices whose ids cannot be read are skipped with a warning, as IPA does. Sorted by address.

use super::sysfs::{dir_names, read_trimmed};
use super::HostRoot;
use serde_json::{json, Value};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("Failed to get list of PCI devices: {0}")]
pub struct PciError(String);

/// The part after the `x` of `0x8086`; `None` if the attribute is missing or has no `x`.
fn hex_id(path: &Path) -> Option<String> {
    read_trimmed(path)?.split('x').nth(1).map(str::to_string)
}

/// The `pci_devices` value.
pub fn pci_devices(host: &HostRoot) -> Result<Value, PciError> {
    let dir = host.path("/sys/bus/pci/devices");
    std::fs::read_dir(&dir).map_err(|e| PciError(format!("{}: {e}", dir.display())))?;
    let mut out = Vec::new();
    for bus in dir_names(&dir) {
        let d = dir.join(&bus);
        if !d.is_dir() {
            continue;
        }
        let (Some(vendor), Some(product), Some(class)) = (
            hex_id(&d.join("vendor")),
            hex_id(&d.join("device")),
            hex_id(&d.join("class")),
        ) else {
            tracing::warn!(
                "skipping PCI device {bus}: cannot read its vendor id, product id or class"
            );
            continue;
        };
        let revision = hex_id(&d.join("revision"));
        let numa_node_id = read_trimmed(d.join("numa_node"));
        out.push(json!({
            "vendor_id": vendor,
            "product_id": product,
            "class": class,
            "revision": revision,
            "bus": bus,
            "numa_node_id": numa_node_id,
        }));
    }
    Ok(Value::Array(out))
}
