//! The `cpu` object of the inventory: what IPA reads from `lscpu`, taken from the same
//! sources lscpu uses (`/proc/cpuinfo`, `/sys/devices/system/cpu`).

use super::sysfs::{dir_names, parse_cpu_list, read_trimmed, read_u64};
use super::{Cpu, HostRoot};
use std::collections::BTreeSet;

/// The first processor's block of `/proc/cpuinfo` as lower-cased keys and trimmed values.
fn first_cpuinfo_block(cpuinfo: &str) -> Vec<(String, String)> {
    cpuinfo
        .split("\n\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn lookup<'a>(block: &'a [(String, String)], key: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Collects the CPU summary.
pub fn get_cpu(host: &HostRoot) -> Cpu {
    let cpuinfo = std::fs::read_to_string(host.path("/proc/cpuinfo")).unwrap_or_default();
    let block = first_cpuinfo_block(&cpuinfo);
    let cpu_dir = host.path("/sys/devices/system/cpu");

    // lscpu "Model name": x86 `model name`; POWER calls it `cpu`.
    let model_name = lookup(&block, "model name")
        .or_else(|| lookup(&block, "cpu"))
        .unwrap_or("")
        .to_string();

    // lscpu "CPU(s)" counts present CPUs.
    let present = ["present", "online"].iter().find_map(|f| {
        read_trimmed(cpu_dir.join(f))
            .map(|l| parse_cpu_list(&l))
            .filter(|l| !l.is_empty())
    });
    let present = present.unwrap_or_else(|| {
        let n = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        (0..n as u32).collect()
    });

    // lscpu "Flags": the first processor's `flags` (x86) or `features` (ARM) line, verbatim.
    let flags = lookup(&block, "flags")
        .or_else(|| lookup(&block, "features"))
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();

    Cpu {
        model_name,
        frequency: frequency(host, &present, &block),
        count: present.len() as u32,
        architecture: architecture(host),
        flags,
        socket_count: socket_count(host, &present, &cpuinfo),
    }
}

/// lscpu's "CPU max MHz" (the highest cpufreq `cpuinfo_max_freq`, printed with four decimals),
/// else the "cpu MHz" line of /proc/cpuinfo as older lscpu printed it, else empty.
fn frequency(host: &HostRoot, present: &[u32], block: &[(String, String)]) -> String {
    let max_khz = present
        .iter()
        .filter_map(|c| {
            read_u64(host.path(&format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq"
            )))
        })
        .max();
    match max_khz {
        Some(khz) => format!("{:.4}", khz as f64 / 1000.0),
        None => lookup(block, "cpu mhz").unwrap_or("").to_string(),
    }
}

/// `uname -m` (lscpu "Architecture"); fixture trees may carry it in
/// /proc/sys/kernel/arch, which the kernel also provides.
fn architecture(host: &HostRoot) -> String {
    if let Some(arch) = read_trimmed(host.path("/proc/sys/kernel/arch")).filter(|a| !a.is_empty()) {
        return arch;
    }
    if host.is_live() {
        if let Ok(u) = nix::sys::utsname::uname() {
            return u.machine().to_string_lossy().into_owned();
        }
    }
    String::new()
}

/// lscpu "Socket(s)": distinct physical packages among the present CPUs, from sysfs topology,
/// else from /proc/cpuinfo "physical id", else one socket when there is any CPU at all.
fn socket_count(host: &HostRoot, present: &[u32], cpuinfo: &str) -> u32 {
    let from_topology: BTreeSet<i64> = present
        .iter()
        .filter_map(|c| {
            read_trimmed(host.path(&format!(
                "/sys/devices/system/cpu/cpu{c}/topology/physical_package_id"
            )))
            .and_then(|v| v.parse().ok())
        })
        .collect();
    if !from_topology.is_empty() {
        return from_topology.len() as u32;
    }
    let from_cpuinfo: BTreeSet<&str> = cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "physical id")
        .map(|(_, v)| v.trim())
        .collect();
    if !from_cpuinfo.is_empty() {
        return from_cpuinfo.len() as u32;
    }
    let any_cpu = !present.is_empty()
        || dir_names(host.path("/sys/devices/system/cpu"))
            .iter()
            .any(|n| n == "cpu0");
    u32::from(any_cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_block_only() {
        let info = "processor\t: 0\nmodel name\t: A\nflags\t\t: fpu vme\n\nprocessor\t: 1\nmodel name\t: B\n";
        let b = first_cpuinfo_block(info);
        assert_eq!(lookup(&b, "model name"), Some("A"));
        assert_eq!(lookup(&b, "flags"), Some("fpu vme"));
    }
}
