//! The `memory` object of the inventory.
//!
//! `total` is what psutil reports (MemTotal of /proc/meminfo, in bytes). `physical_mb` is what
//! IPA computes from lshw: the installed memory devices (SMBIOS type 17) summed in MiB; without
//! SMBIOS memory devices lshw falls back on the online memory blocks of
//! /sys/devices/system/memory, and then on the kernel's own memory size, and so does this.

use super::smbios;
use super::sysfs::{dir_names, read_trimmed};
use super::{HostRoot, Memory};

/// MemTotal in bytes.
fn mem_total(host: &HostRoot) -> Option<u64> {
    let meminfo = std::fs::read_to_string(host.path("/proc/meminfo")).ok()?;
    kib_field(&meminfo, "MemTotal")?.checked_mul(1024)
}

/// The value of a `Key:   1234 kB` line of a procfs file (/proc/meminfo, /proc/self/status).
pub fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sizes (bytes) of the installed SMBIOS memory devices.
fn dimm_sizes(host: &HostRoot) -> Vec<u64> {
    match smbios::read_dump(host) {
        Ok(dump) => smbios::parse_table(&dump.table)
            .iter()
            .filter(|s| s.kind == 17)
            .filter_map(smbios::memory_device_size)
            .collect(),
        Err(e) => {
            tracing::debug!("no SMBIOS tables for physical memory: {e}");
            Vec::new()
        }
    }
}

/// Online memory blocks times the block size (lshw's "hotplug" size).
fn hotplug_size(host: &HostRoot) -> u64 {
    let dir = host.path("/sys/devices/system/memory");
    let Some(block) =
        read_trimmed(dir.join("block_size_bytes")).and_then(|h| u64::from_str_radix(&h, 16).ok())
    else {
        return 0;
    };
    let online = dir_names(&dir)
        .iter()
        .filter(|n| n.starts_with("memory") && n[6..].chars().all(|c| c.is_ascii_digit()))
        .filter(|n| read_trimmed(dir.join(n).join("online")).as_deref() == Some("1"))
        .count() as u64;
    block.saturating_mul(online)
}

/// Collects the memory summary.
pub fn get_memory(host: &HostRoot) -> Memory {
    let total = mem_total(host);
    let logical = total.unwrap_or(0);
    let dimms = dimm_sizes(host);
    let dimm_total: u64 = dimms.iter().sum();
    let physical_mb = if dimm_total > logical {
        // IPA converts each bank to MiB (truncating) before summing.
        dimms.iter().map(|b| b >> 20).sum()
    } else {
        let hotplug = hotplug_size(host);
        (if hotplug > logical { hotplug } else { logical }) >> 20
    };
    Memory {
        total,
        physical_mb: Some(physical_mb),
    }
}

#[cfg(test)]
mod tests {
    use super::kib_field;

    #[test]
    fn kib_fields_of_procfs_files() {
        let status = "Name:\tironic-agent\nVmPeak:\t  40000 kB\nVmHWM:\t   26112 kB\n";
        assert_eq!(kib_field(status, "VmHWM"), Some(26112));
        assert_eq!(kib_field(status, "VmPea"), None, "the whole key must match");
        assert_eq!(
            kib_field("MemTotal:  262144 kB\n", "MemTotal"),
            Some(262144)
        );
        assert_eq!(kib_field("MemTotal: many kB\n", "MemTotal"), None);
    }
}
