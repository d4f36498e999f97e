//! The inspection collectors' data (contract §10.2) on the fixture server.

mod support;

use ironic_agent::hardware::{numa::numa_topology, pci::pci_devices, HostRoot};
use serde_json::json;

fn server() -> HostRoot {
    support::hardware::server()
}

#[test]
fn pci_devices_like_ipa() {
    let v = pci_devices(&server()).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 9);
    assert_eq!(
        list[0],
        json!({"vendor_id": "8086", "product_id": "2020", "class": "060000", "revision": "04",
               "bus": "0000:00:00.0", "numa_node_id": "0"})
    );
    let lpc = list.iter().find(|d| d["bus"] == "0000:00:1f.0").unwrap();
    assert_eq!(lpc["revision"], serde_json::Value::Null, "no revision file");
    assert_eq!(lpc["numa_node_id"], "-1");
    let nic = list.iter().find(|d| d["bus"] == "0000:5e:00.0").unwrap();
    assert_eq!(
        (nic["vendor_id"].as_str(), nic["product_id"].as_str()),
        (Some("8086"), Some("158b"))
    );
    assert_eq!(nic["class"], "020000");
    assert_eq!(nic["numa_node_id"], "1");
    let buses: Vec<&str> = list.iter().map(|d| d["bus"].as_str().unwrap()).collect();
    let mut sorted = buses.clone();
    sorted.sort();
    assert_eq!(buses, sorted);
}

#[test]
fn pci_devices_without_sysfs_is_a_failure() {
    let empty = tempfile::tempdir().unwrap();
    let err = pci_devices(&HostRoot::new(empty.path())).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Failed to get list of PCI devices: "),
        "{err}"
    );
}

#[test]
fn numa_topology_like_ipa() {
    let v = numa_topology(&server()).unwrap();
    assert_eq!(
        v,
        json!({
            "ram": [{"numa_node": 0, "size_kb": 131887600u64}, {"numa_node": 1, "size_kb": 131888600u64}],
            "cpus": [
                {"cpu": 0, "numa_node": 0, "thread_siblings": [0, 1]},
                {"cpu": 1, "numa_node": 0, "thread_siblings": [2, 3]},
                {"cpu": 0, "numa_node": 1, "thread_siblings": [4, 5]},
                {"cpu": 1, "numa_node": 1, "thread_siblings": [6, 7]},
            ],
            "nics": [{"name": "eno1", "numa_node": 0}, {"name": "ens1f0", "numa_node": 1}],
        })
    );
}

#[test]
fn numa_topology_without_nodes_or_with_bad_meminfo() {
    let empty = tempfile::tempdir().unwrap();
    let err = numa_topology(&HostRoot::new(empty.path())).unwrap_err();
    assert!(
        err.to_string().contains("NUMA node path does not exist"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("sys/devices/system/node/node0");
    std::fs::create_dir_all(&node).unwrap();
    std::fs::create_dir_all(dir.path().join("sys/class/net")).unwrap();
    std::fs::write(node.join("meminfo"), "Node 0 MemFree: 5 kB\n").unwrap();
    let err = numa_topology(&HostRoot::new(dir.path())).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Memory information is not available for"),
        "{err}"
    );
    std::fs::write(node.join("meminfo"), "Node 0 MemTotal: 2 GB\n").unwrap();
    let v = numa_topology(&HostRoot::new(dir.path())).unwrap();
    assert_eq!(v["ram"], json!([{"numa_node": 0, "size_kb": 2097152}]));
    std::fs::write(node.join("meminfo"), "Node 0 MemTotal: lots\n").unwrap();
    assert!(numa_topology(&HostRoot::new(dir.path())).is_err());
}
