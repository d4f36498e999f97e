//! The `numa-topology` inspection collector (IPA's `numa_inspector`):
//!
//! ```text
//! {"ram":  [{"numa_node": 0, "size_kb": 131887600}, ...],
//!  "cpus": [{"cpu": <core_id>, "numa_node": 0, "thread_siblings": [0, 1]}, ...],
//!  "nics": [{"name": "eno1", "numa_node": 0}, ...]}
//! ```
//!
//! from /sys/devices/system/node/node*/{meminfo,cpu*/topology/core_id} and
//! /sys/class/net/*/device/numa_node. Like IPA, any malformed piece makes the whole collector
//! fail with a [`NumaError`], which inspection logs and leaves out (it is not a collector
//! failure). Nodes, threads and NICs are listed in numeric/name order.

use super::sysfs::{dir_names, read_trimmed};
use super::HostRoot;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NumaError(String);

fn node_id(dir: &Path) -> Result<i64, NumaError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.get(4..).and_then(|n| n.parse().ok()).ok_or_else(|| {
        NumaError(format!(
            "Failed to get NUMA node id for {}: not a nodeN directory",
            dir.display()
        ))
    })
}

/// The size in kB of a `Node N MemTotal: <n> kB` line (kB, KB, MB and GB are understood).
fn mem_total_kb(dir: &Path) -> Result<u64, NumaError> {
    let path = dir.join("meminfo");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        NumaError(format!(
            "Failed to get memory information for {}: {e}",
            dir.display()
        ))
    })?;
    let line = text
        .lines()
        .find(|l| l.contains("MemTotal"))
        .ok_or_else(|| {
            NumaError(format!(
                "Memory information is not available for {}",
                dir.display()
            ))
        })?;
    let bad = || {
        NumaError(format!(
            "Failed to get memory information for {}: cannot parse {line:?}",
            dir.display()
        ))
    };
    let value = line.split(':').nth(1).ok_or_else(bad)?.trim();
    let mut parts = value.split_whitespace();
    let number: u64 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let factor = match parts.next() {
        Some("kB") | Some("KB") | None => 1,
        Some("MB") => 1024,
        Some("GB") => 1024 * 1024,
        Some(_) => return Err(bad()),
    };
    Ok(number * factor)
}

fn node_dirs(host: &HostRoot) -> Result<Vec<PathBuf>, NumaError> {
    let base = host.path("/sys/devices/system/node");
    if !base.is_dir() {
        return Err(NumaError(format!(
            "Failed to get list of NUMA nodes, NUMA node path does not exist: {}",
            base.display()
        )));
    }
    let mut dirs: Vec<(i64, PathBuf)> = Vec::new();
    for name in dir_names(&base) {
        let d = base.join(&name);
        if name.starts_with("node") && d.is_dir() {
            dirs.push((node_id(&d)?, d));
        }
    }
    dirs.sort();
    Ok(dirs.into_iter().map(|(_, d)| d).collect())
}

fn ram(dirs: &[PathBuf]) -> Result<Value, NumaError> {
    let mut out = Vec::new();
    for d in dirs {
        out.push(json!({"numa_node": node_id(d)?, "size_kb": mem_total_kb(d)?}));
    }
    Ok(Value::Array(out))
}

fn cpus(dirs: &[PathBuf]) -> Result<Value, NumaError> {
    // (node, core id) -> thread ids; a core id is only unique within its node.
    let mut cores: BTreeMap<(i64, i64), Vec<i64>> = BTreeMap::new();
    for d in dirs {
        let node = node_id(d)?;
        let mut threads: Vec<(i64, String)> = Vec::new();
        for name in dir_names(d) {
            if !name.starts_with("cpu") || !d.join(&name).is_dir() {
                continue;
            }
            let id = name[3..].parse().map_err(|_| {
                NumaError(format!(
                    "Failed to get cores information for {}: bad thread {name}",
                    d.display()
                ))
            })?;
            threads.push((id, name));
        }
        threads.sort();
        for (thread, name) in threads {
            let core: i64 = read_trimmed(d.join(&name).join("topology/core_id"))
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| {
                    NumaError(format!(
                        "Failed to gather cpu_id for thread {name} NUMA node {}",
                        d.display()
                    ))
                })?;
            let siblings = cores.entry((node, core)).or_default();
            if !siblings.contains(&thread) {
                siblings.push(thread);
            }
        }
    }
    // List cores in the order their first thread appears, as IPA's dict does.
    let mut list: Vec<((i64, i64), Vec<i64>)> = cores.into_iter().collect();
    list.sort_by_key(|((node, _), threads)| (*node, threads.first().copied().unwrap_or(i64::MAX)));
    Ok(Value::Array(
        list.into_iter()
            .map(|((node, core), threads)| json!({"cpu": core, "numa_node": node, "thread_siblings": threads}))
            .collect(),
    ))
}

fn nics(host: &HostRoot) -> Result<Value, NumaError> {
    let net = host.path("/sys/class/net");
    if !net.is_dir() {
        return Err(NumaError(format!(
            "Failed to get list of NIC's, NIC device path does not exist: {}",
            net.display()
        )));
    }
    let mut out = Vec::new();
    for name in dir_names(&net) {
        let f = net.join(&name).join("device/numa_node");
        if !f.is_file() {
            continue;
        }
        let node: i64 = read_trimmed(&f)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                NumaError(format!(
                    "Failed to gather NIC's for NUMA node {name}: unreadable numa_node"
                ))
            })?;
        out.push(json!({"name": name, "numa_node": node}));
    }
    Ok(Value::Array(out))
}

/// The `numa_topology` value.
pub fn numa_topology(host: &HostRoot) -> Result<Value, NumaError> {
    let dirs = node_dirs(host)?;
    Ok(json!({"ram": ram(&dirs)?, "cpus": cpus(&dirs)?, "nics": nics(host)?}))
}
