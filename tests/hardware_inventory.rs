//! The inventory of the fixture server (tests/fixtures/hardware/server, see
//! make_server_tree.py there): every field of every disk and interface, and each exclusion rule.

mod support;

use ironic_agent::hardware::{
    collect_inventory, get_boot_info, get_cpu, get_hostname, get_memory, get_system_vendor,
    list_disks, list_interfaces, BlockDevice, HostRoot, InventoryOptions, LinkProbe, NoLinkProbe,
};
use std::path::PathBuf;

fn server() -> HostRoot {
    support::hardware::server()
}

fn disk<'a>(disks: &'a [BlockDevice], name: &str) -> &'a BlockDevice {
    disks
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

#[test]
fn disks_are_listed_in_device_number_order_with_exclusions() {
    let names: Vec<String> = list_disks(&server()).into_iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "/dev/sda",
            "/dev/sdb",
            "/dev/md0",
            "/dev/vda",
            "/dev/dm-0",
            "/dev/nvme0n1",
            "/dev/nvme1n1"
        ],
        "sdc/sdd (multipath paths), sde (empty), sr0 (rom), dm-1 (lvm), md127 (inactive), \
         nvme1c1n1 (hidden), fd0, loop0, ram0 and zram0 must be left out"
    );
}

#[test]
fn sata_disk_behind_ahci() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/sda");
    let expected = BlockDevice {
        name: "/dev/sda".into(),
        // The full ATA model from IDENTIFY, not sysfs's 16-character INQUIRY product.
        model: Some("Samsung SSD 860 EVO 500GB".into()),
        size: 976773168 * 512,
        rotational: false,
        wwn: Some("0x5002538e4000abcd".into()),
        serial: Some("S3Z1NB0K123456A".into()),
        vendor: Some("ATA".into()),
        wwn_with_extension: Some("0x5002538e4000abcd".into()),
        wwn_vendor_extension: None,
        hctl: Some("0:0:0:0".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:17.0-ata-1".into()),
        logical_sectors: Some(512),
        physical_sectors: Some(512),
        tran: Some("sata".into()),
    };
    assert_eq!(d, &expected);
}

#[test]
fn sas_disk_keeps_the_existing_by_path_link() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/sdb");
    assert_eq!(d.model.as_deref(), Some("ST4000NM0025"));
    assert_eq!(d.vendor.as_deref(), Some("SEAGATE"));
    assert_eq!(d.serial.as_deref(), Some("ZC1A2B3C0000C1234567"));
    // The logical-unit NAA designator, not the target port's.
    assert_eq!(d.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
    assert_eq!(d.wwn_with_extension.as_deref(), Some("0x5000c500a1b2c3d4"));
    assert_eq!(d.wwn_vendor_extension, None);
    assert_eq!(d.hctl.as_deref(), Some("2:0:0:0"));
    assert_eq!(d.tran.as_deref(), Some("sas"));
    assert!(d.rotational);
    assert_eq!(d.size, 7814037168 * 512);
    assert_eq!(
        (d.logical_sectors, d.physical_sectors),
        (Some(512), Some(4096))
    );
    assert_eq!(
        d.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:18:00.0-sas-0x5000c500a1b2c300-lun-0")
    );
}

#[test]
fn multipath_map_is_listed_instead_of_its_paths() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/dm-0");
    let expected = BlockDevice {
        name: "/dev/dm-0".into(),
        model: None,
        size: 2147483648 * 512,
        rotational: true,
        wwn: Some("0x600508b1001c4d1e1122334455667788".into()),
        serial: Some("3600508b1001c4d1e1122334455667788".into()),
        vendor: None,
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl: None,
        by_path: None,
        logical_sectors: Some(512),
        physical_sectors: Some(512),
        tran: None,
    };
    assert_eq!(d, &expected);
}

#[test]
fn nvme_namespaces() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/nvme0n1");
    assert_eq!(d.model.as_deref(), Some("Samsung SSD 970 EVO Plus 1TB"));
    assert_eq!(d.serial.as_deref(), Some("S4EWNX0R123456"));
    assert_eq!(d.wwn.as_deref(), Some("eui.0025385b71b2c3d4"));
    assert_eq!(d.wwn_with_extension, None);
    assert_eq!(d.vendor, None);
    assert_eq!(d.hctl, None);
    assert_eq!(d.tran.as_deref(), Some("nvme"));
    assert_eq!(
        d.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:3b:00.0-nvme-1")
    );
    assert_eq!(d.size, 1953525168 * 512);

    // The native-multipath head: identity from the subsystem, no by-path (it is virtual).
    let head = disk(&disks, "/dev/nvme1n1");
    assert_eq!(head.model.as_deref(), Some("INTEL SSDPE2KX040T8"));
    assert_eq!(head.serial.as_deref(), Some("PHLJ912345674P0DGN"));
    assert_eq!(
        head.wwn.as_deref(),
        Some("eui.01000000000000005cd2e4c1d2e35051")
    );
    assert_eq!(head.by_path, None);
    assert_eq!(head.tran.as_deref(), Some("nvme"));
}

#[test]
fn virtio_disk() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/vda");
    assert_eq!(d.model, None);
    assert_eq!(d.serial.as_deref(), Some("vol-7f3a2c"));
    assert_eq!(d.vendor.as_deref(), Some("0x1af4"));
    assert_eq!(d.wwn, None);
    // lsblk before util-linux 2.39 reports no transport for virtio.
    assert_eq!(d.tran, None);
    assert_eq!(
        d.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:05.0")
    );
    assert!(d.rotational);
}

#[test]
fn software_raid_is_listed() {
    let disks = list_disks(&server());
    let d = disk(&disks, "/dev/md0");
    assert_eq!(
        (d.model.as_deref(), d.serial.as_deref(), d.wwn.as_deref()),
        (None, None, None)
    );
    assert_eq!(
        (d.vendor.as_deref(), d.tran.as_deref(), d.by_path.as_deref()),
        (None, None, None)
    );
    assert_eq!(d.size, 975591424 * 512);
}

#[test]
fn missing_sysfs_gives_no_disks_rather_than_an_error() {
    let empty = tempfile::tempdir().unwrap();
    assert!(list_disks(&HostRoot::new(empty.path())).is_empty());
}

struct FakeProbe;

impl LinkProbe for FakeProbe {
    fn permanent_mac(&self, ifname: &str) -> Option<String> {
        (ifname == "ens1f0").then(|| "3c:fd:fe:aa:bb:cc".to_string())
    }
    fn addresses(&self, ifname: &str) -> (Option<String>, Option<String>) {
        match ifname {
            "eno1" => (
                Some("192.0.2.10".into()),
                Some("fe80::b226:28ff:fe11:2201%eno1".into()),
            ),
            _ => (None, None),
        }
    }
}

#[test]
fn interfaces_physical_vlan_and_bond() {
    let ifaces = list_interfaces(&server(), &NoLinkProbe, None);
    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    // lo and veth0 have no device (and are neither VLAN nor bond); usb0's MAC starts with fa:.
    assert_eq!(names, ["bond0", "eno1", "eno1.100", "ens1f0"]);

    let eno1 = &ifaces[1];
    assert_eq!(eno1.mac_address, "b0:26:28:11:22:01");
    assert!(eno1.has_carrier);
    assert_eq!(eno1.vendor.as_deref(), Some("0x8086"));
    assert_eq!(eno1.product.as_deref(), Some("0x15bb"));
    assert_eq!(eno1.pci_address.as_deref(), Some("0000:00:1f.6"));
    assert_eq!(eno1.driver.as_deref(), Some("e1000e"));
    assert_eq!(eno1.speed_mbps, Some(1000));
    assert_eq!(
        (eno1.client_id.as_deref(), eno1.biosdevname.as_deref()),
        (None, None)
    );
    assert_eq!(eno1.lldp, None);

    let vlan = &ifaces[2];
    assert_eq!(vlan.mac_address, "b0:26:28:11:22:01");
    assert_eq!(
        (
            vlan.pci_address.as_deref(),
            vlan.driver.as_deref(),
            vlan.vendor.as_deref()
        ),
        (None, None, None)
    );

    let bond = &ifaces[0];
    assert_eq!(bond.mac_address, "b0:26:28:11:22:02");

    let ens = &ifaces[3];
    assert!(!ens.has_carrier);
    assert_eq!(ens.speed_mbps, None, "speed -1 means unknown");
    assert_eq!(ens.mac_address, "3c:fd:fe:00:00:10");
}

#[test]
fn permanent_mac_and_addresses_come_from_the_probe() {
    let lldp = [("eno1".to_string(), vec![(1u8, "04b0262811".to_string())])]
        .into_iter()
        .collect();
    let ifaces = list_interfaces(&server(), &FakeProbe, Some(&lldp));
    let ens = ifaces.iter().find(|i| i.name == "ens1f0").unwrap();
    assert_eq!(
        ens.mac_address, "3c:fd:fe:aa:bb:cc",
        "the permanent MAC wins over the current one"
    );
    let eno1 = ifaces.iter().find(|i| i.name == "eno1").unwrap();
    assert_eq!(eno1.ipv4_address.as_deref(), Some("192.0.2.10"));
    assert_eq!(
        eno1.ipv6_address.as_deref(),
        Some("fe80::b226:28ff:fe11:2201%eno1")
    );
    assert_eq!(
        eno1.lldp.as_deref(),
        Some(&[(1u8, "04b0262811".to_string())][..])
    );
    // With LLDP collected, interfaces that heard nothing report an empty list.
    assert_eq!(ens.lldp.as_deref(), Some(&[][..]));
}

#[test]
fn cpu_summary() {
    let cpu = get_cpu(&server());
    assert_eq!(cpu.model_name, "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz");
    assert_eq!(
        cpu.frequency, "3900.0000",
        "the highest cpuinfo_max_freq, as lscpu's CPU max MHz"
    );
    assert_eq!(cpu.count, 8);
    assert_eq!(cpu.architecture, "x86_64");
    assert_eq!(cpu.socket_count, 2);
    assert_eq!(cpu.flags.first().map(String::as_str), Some("fpu"));
    assert!(cpu.flags.iter().any(|f| f == "avx512_vnni"));
}

#[test]
fn memory_summary() {
    let mem = get_memory(&server());
    assert_eq!(mem.total, Some(263775200 * 1024));
    // The fixture's SMBIOS (QEMU, 2 GiB of DIMMs) and memory blocks (384 MiB online) are both
    // below MemTotal, so lshw's last fallback applies: the kernel's memory size.
    assert_eq!(mem.physical_mb, Some(263775200 / 1024));
}

#[test]
fn vendor_boot_and_hostname() {
    let v = get_system_vendor(&server());
    assert_eq!(
        v.product_name,
        "PowerEdge R640 (SKU=NotProvided;ModelName=PowerEdge R640)"
    );
    assert_eq!(v.serial_number, "ABC1234");
    assert_eq!(v.manufacturer, "Dell Inc.");
    assert_eq!(v.firmware.vendor, "Dell Inc.");
    assert_eq!(v.firmware.version, "2.17.1");
    assert_eq!(v.firmware.build_date, "03/07/2023");
    let boot = get_boot_info(&server(), Some("01-b0-26-28-11-22-01"));
    assert_eq!(boot.current_boot_mode, "uefi");
    assert_eq!(boot.pxe_interface.as_deref(), Some("01-b0-26-28-11-22-01"));
    assert_eq!(
        get_boot_info(&HostRoot::new("/nonexistent"), None).current_boot_mode,
        "bios"
    );
    assert_eq!(get_hostname(&server()), "compute-0-7");
}

#[test]
fn whole_inventory_serialises_with_the_contract_keys() {
    let opts = InventoryOptions {
        skip_bmc_detect: true,
        bootif: Some("01-b0-26-28-11-22-01".into()),
        ..Default::default()
    };
    let inv = collect_inventory(&server(), &opts);
    let v = serde_json::to_value(&inv).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "interfaces",
            "cpu",
            "disks",
            "memory",
            "bmc_address",
            "bmc_v6address",
            "system_vendor",
            "boot",
            "hostname"
        ]
    );
    assert_eq!(v["bmc_address"], serde_json::Value::Null);
    let disk_keys: Vec<&str> = v["disks"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        disk_keys,
        [
            "name",
            "model",
            "size",
            "rotational",
            "wwn",
            "serial",
            "vendor",
            "wwn_with_extension",
            "wwn_vendor_extension",
            "hctl",
            "by_path",
            "logical_sectors",
            "physical_sectors",
            "tran"
        ]
    );
    assert_eq!(inv.disks.len(), 7);
    assert_eq!(inv.interfaces.len(), 4);
}

#[test]
fn physical_memory_from_smbios_dimms() {
    // DIMMs: 32 GiB (extended size) + 512 kB (under a MiB, truncated away as IPA does) + an empty slot.
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("sys/firmware/dmi/tables");
    std::fs::create_dir_all(&tables).unwrap();
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware/synthetic-smbios");
    std::fs::copy(src.join("DMI"), tables.join("DMI")).unwrap();
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal:       32500000 kB\n",
    )
    .unwrap();
    let mem = get_memory(&HostRoot::new(dir.path()));
    assert_eq!(mem.total, Some(32500000 * 1024));
    assert_eq!(mem.physical_mb, Some(32768));
}
