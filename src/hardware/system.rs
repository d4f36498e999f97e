//! `system_vendor`, `boot` and `hostname`.
//!
//! IPA takes the vendor data from lshw, which reads the SMBIOS system (type 1) and BIOS (type 0)
//! structures; the kernel exports the same strings in /sys/class/dmi/id. Like lshw, the product
//! name carries the SKU in parentheses when the firmware sets one.

use super::sysfs::read_trimmed;
use super::{BootInfo, Firmware, HostRoot, SystemVendor};

fn dmi_id(host: &HostRoot, field: &str) -> String {
    read_trimmed(host.path(&format!("/sys/class/dmi/id/{field}"))).unwrap_or_default()
}

/// Manufacturer, product, serial number and firmware of the machine ("" where unknown).
pub fn get_system_vendor(host: &HostRoot) -> SystemVendor {
    let mut product_name = dmi_id(host, "product_name");
    let sku = dmi_id(host, "product_sku");
    if !sku.is_empty() {
        product_name = format!("{product_name} ({sku})");
    }
    SystemVendor {
        product_name,
        serial_number: dmi_id(host, "product_serial"),
        manufacturer: dmi_id(host, "sys_vendor"),
        firmware: Firmware {
            vendor: dmi_id(host, "bios_vendor"),
            version: dmi_id(host, "bios_version"),
            build_date: dmi_id(host, "bios_date"),
        },
    }
}

/// UEFI when the kernel was booted by UEFI firmware (/sys/firmware/efi exists); `pxe_interface`
/// is the raw `BOOTIF` kernel parameter.
pub fn get_boot_info(host: &HostRoot, bootif: Option<&str>) -> BootInfo {
    let mode = if host.path("/sys/firmware/efi").is_dir() {
        "uefi"
    } else {
        "bios"
    };
    BootInfo {
        current_boot_mode: mode.to_string(),
        pxe_interface: bootif.map(str::to_string),
    }
}

/// The host name (the kernel's, as gethostname() returns it).
pub fn get_hostname(host: &HostRoot) -> String {
    if let Some(h) = read_trimmed(host.path("/proc/sys/kernel/hostname")) {
        return h;
    }
    if host.is_live() {
        if let Ok(h) = nix::unistd::gethostname() {
            return h.to_string_lossy().into_owned();
        }
    }
    String::new()
}
