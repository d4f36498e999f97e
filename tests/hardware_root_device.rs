//! Root device selection (contract §11.7): every hint key, every operator, skip lists, the
//! no-hints rule and IPA's error texts.

mod support;

use ironic_agent::errors::IntoCommandError;
use ironic_agent::hardware::{
    guess_root_disk, list_disks, root_disk_for_inspection, select_root_device, BlockDevice,
    RootDeviceError,
};
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;

fn dev(name: &str, size_gib: u64) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        size: size_gib * GIB,
        ..Default::default()
    }
}

/// Three disks in the order list_disks would give them.
fn disks() -> Vec<BlockDevice> {
    vec![
        BlockDevice {
            name: "/dev/sda".into(),
            model: Some("Samsung SSD 860 EVO 500GB".into()),
            size: 500 * GIB,
            rotational: false,
            wwn: Some("0x5002538e4000abcd".into()),
            serial: Some("S3Z1NB0K123456A".into()),
            vendor: Some("ATA".into()),
            wwn_with_extension: Some("0x5002538e4000abcd".into()),
            hctl: Some("0:0:0:0".into()),
            by_path: Some("/dev/disk/by-path/pci-0000:00:17.0-ata-1".into()),
            logical_sectors: Some(512),
            physical_sectors: Some(512),
            tran: Some("sata".into()),
            ..Default::default()
        },
        BlockDevice {
            name: "/dev/sdb".into(),
            model: Some("MSA 2050 SAN".into()),
            size: 1024 * GIB,
            rotational: true,
            wwn: Some("0x600508b1001c4d1e1122334455667788".into()),
            serial: Some("00c0ff3b2a1e000012345678".into()),
            vendor: Some("HPE".into()),
            wwn_with_extension: Some("0x600508b1001c4d1e1122334455667788".into()),
            wwn_vendor_extension: Some("0x1122334455667788".into()),
            hctl: Some("2:0:1:0".into()),
            by_path: Some("/dev/disk/by-path/pci-0000:18:00.0-sas-phy1-lun-0".into()),
            tran: Some("sas".into()),
            ..Default::default()
        },
        BlockDevice {
            name: "/dev/nvme0n1".into(),
            model: Some("Samsung SSD 970 EVO Plus 1TB".into()),
            size: 931 * GIB,
            rotational: false,
            wwn: Some("eui.0025385b71b2c3d4".into()),
            serial: Some("S4EWNX0R123456".into()),
            tran: Some("nvme".into()),
            ..Default::default()
        },
    ]
}

fn pick(hints: Value) -> Result<String, RootDeviceError> {
    select_root_device(
        &disks(),
        &json!({"instance_info": {"root_device": hints}, "properties": {}}),
    )
    .map(|d| d.name)
}

fn picks(hints: Value, want: &str) {
    assert_eq!(
        pick(hints.clone()).unwrap_or_else(|e| panic!("{hints}: {e}")),
        want,
        "hints {hints}"
    );
}

fn no_match(hints: Value) {
    match pick(hints.clone()) {
        Err(RootDeviceError::NoMatch(_)) => {}
        other => panic!("{hints} should match nothing, got {other:?}"),
    }
}

#[test]
fn every_string_key() {
    picks(
        json!({"model": "samsung ssd 970 evo plus 1tb"}),
        "/dev/nvme0n1",
    );
    picks(json!({"model": "MSA 2050 SAN"}), "/dev/sdb");
    picks(json!({"vendor": "hpe"}), "/dev/sdb");
    picks(json!({"serial": "S4EWNX0R123456"}), "/dev/nvme0n1");
    picks(json!({"wwn": "0x5002538E4000ABCD"}), "/dev/sda");
    picks(
        json!({"wwn_with_extension": "0x600508b1001c4d1e1122334455667788"}),
        "/dev/sdb",
    );
    picks(
        json!({"wwn_vendor_extension": "0x1122334455667788"}),
        "/dev/sdb",
    );
    picks(json!({"name": "/dev/nvme0n1"}), "/dev/nvme0n1");
    picks(json!({"hctl": "2:0:1:0"}), "/dev/sdb");
    picks(
        json!({"by_path": "/dev/disk/by-path/pci-0000:00:17.0-ata-1"}),
        "/dev/sda",
    );
    picks(json!({"tran": "nvme"}), "/dev/nvme0n1");
    no_match(json!({"model": "no such model"}));
}

#[test]
fn name_without_dev_prefix() {
    picks(json!({"name": "sdb"}), "/dev/sdb");
    picks(json!({"name": "<or> nvme0n1 <or> sdx"}), "/dev/nvme0n1");
    picks(json!({"name": "s!= sda"}), "/dev/sdb");
}

#[test]
fn serial_and_wwn_try_every_udev_identifier() {
    // ID_SERIAL of an NVMe/ATA disk is <model>_<serial>.
    picks(
        json!({"serial": "Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456"}),
        "/dev/nvme0n1",
    );
    // ID_SERIAL_SHORT/ID_SERIAL of a SCSI disk are its NAA identifier.
    picks(
        json!({"serial": "3600508b1001c4d1e1122334455667788"}),
        "/dev/sdb",
    );
    // ID_WWN is the WWN without the vendor extension.
    picks(json!({"wwn": "0x600508b1001c4d1e"}), "/dev/sdb");
}

#[test]
fn size_is_in_gib() {
    picks(json!({"size": 931}), "/dev/nvme0n1");
    picks(json!({"size": "931"}), "/dev/nvme0n1");
    no_match(json!({"size": 930}));
    picks(json!({"size": ">= 600"}), "/dev/sdb");
    picks(json!({"size": "> 500"}), "/dev/sdb");
    picks(json!({"size": "<= 500"}), "/dev/sda");
    picks(json!({"size": "< 600"}), "/dev/sda");
    picks(json!({"size": "== 1024"}), "/dev/sdb");
    picks(json!({"size": "!= 500"}), "/dev/sdb");
    // A bare `=` means `>=` (oslo's legacy rule).
    picks(json!({"size": "= 900"}), "/dev/sdb");
}

#[test]
fn string_operators() {
    picks(json!({"model": "s== msa 2050 san"}), "/dev/sdb");
    picks(
        json!({"model": "s!= samsung ssd 860 evo 500gb"}),
        "/dev/sdb",
    );
    picks(json!({"model": "<in> 970"}), "/dev/nvme0n1");
    picks(
        json!({"model": "<or> nothing <or> msa 2050 san"}),
        "/dev/sdb",
    );
    picks(json!({"vendor": "s> ata"}), "/dev/sdb");
    picks(json!({"vendor": "s>= hpe"}), "/dev/sdb");
    picks(json!({"vendor": "s< hpe"}), "/dev/sda");
    picks(json!({"vendor": "s<= ata"}), "/dev/sda");
    picks(json!({"serial": "<in> 123456a"}), "/dev/sda");
}

#[test]
fn rotational_is_a_boolean() {
    picks(json!({"rotational": true}), "/dev/sdb");
    picks(json!({"rotational": "yes"}), "/dev/sdb");
    picks(json!({"rotational": "0"}), "/dev/sda");
    picks(json!({"rotational": false}), "/dev/sda");
}

#[test]
fn every_hint_must_match() {
    picks(
        json!({"rotational": false, "size": ">= 600"}),
        "/dev/nvme0n1",
    );
    no_match(json!({"rotational": true, "tran": "nvme"}));
}

#[test]
fn instance_info_wins_over_properties() {
    let node = json!({
        "instance_info": {"root_device": {"name": "/dev/sdb"}},
        "properties": {"root_device": {"name": "/dev/sda"}},
    });
    assert_eq!(
        select_root_device(&disks(), &node).unwrap().name,
        "/dev/sdb"
    );
    let node = json!({"instance_info": {"root_device": {}}, "properties": {"root_device": {"name": "/dev/sda"}}});
    assert_eq!(
        select_root_device(&disks(), &node).unwrap().name,
        "/dev/sda"
    );
}

#[test]
fn invalid_hints_are_device_not_found_with_ipa_text() {
    let err = pick(json!({"size": "large"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No devices could be found using the root device hints {'size': 'large'} because they failed to \
         validate. Error: Root device hint \"size\" is not an integer value. Current value: large"
    );
    let ce = err.into_command_error();
    assert_eq!((ce.kind.as_str(), ce.code), ("DeviceNotFound", 404));

    let err = pick(json!({"model": "nothing"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No suitable device was found for deployment using these hints {'model': 'nothing'}"
    );
    assert!(matches!(
        pick(json!({"colour": "red"})),
        Err(RootDeviceError::InvalidHints { .. })
    ));
    // `<is>` is not an oslo operator: it reads as a numeric `<`, which a model cannot satisfy.
    assert!(matches!(
        pick(json!({"model": "<is> true"})),
        Err(RootDeviceError::InvalidHints { .. })
    ));
}

#[test]
fn no_hints_smallest_disk_of_at_least_4_gib() {
    let node = json!({"instance_info": {}, "properties": {}});
    assert_eq!(
        select_root_device(&disks(), &node).unwrap().name,
        "/dev/sda"
    );
    // Ties in size are broken by name.
    let d = vec![
        dev("/dev/sdc", 3),
        dev("/dev/sdb", 10),
        dev("/dev/sda", 10),
        dev("/dev/sdd", 20),
    ];
    assert_eq!(guess_root_disk(&d).unwrap().name, "/dev/sda");
    let tiny = vec![dev("/dev/sda", 1), dev("/dev/sdb", 3)];
    let err = guess_root_disk(&tiny).unwrap_err();
    assert_eq!(
        err.to_string(),
        "No suitable device was found for deployment - root device hints were not provided and all found \
         block devices are smaller than 4294967296B."
    );
    assert_eq!(root_disk_for_inspection(&tiny), None);
    assert_eq!(
        root_disk_for_inspection(&d).map(|d| d.name).as_deref(),
        Some("/dev/sda")
    );
}

#[test]
fn skip_block_devices_removes_candidates() {
    let node = json!({
        "instance_info": {},
        "properties": {"skip_block_devices": [{"name": "/dev/sda"}, {"volume_name": "raid-keep"}]},
    });
    // Without hints the next-smallest disk is chosen.
    assert_eq!(
        select_root_device(&disks(), &node).unwrap().name,
        "/dev/nvme0n1"
    );
    let node = json!({
        "instance_info": {"root_device": {"rotational": false}},
        "properties": {"skip_block_devices": [{"tran": "sata"}]},
    });
    assert_eq!(
        select_root_device(&disks(), &node).unwrap().name,
        "/dev/nvme0n1"
    );
    let node = json!({"properties": {"skip_block_devices": [{"size": "huge"}]}});
    assert!(matches!(
        select_root_device(&disks(), &node),
        Err(RootDeviceError::InvalidSkipHint { .. })
    ));
}

#[test]
fn on_the_fixture_server() {
    let host = support::hardware::server();
    let disks = list_disks(&host);
    // The smallest disk of at least 4 GiB is the 40 GiB virtio disk.
    assert_eq!(root_disk_for_inspection(&disks).unwrap().name, "/dev/vda");
    let node =
        json!({"properties": {"root_device": {"wwn": "0x600508b1001c4d1e1122334455667788"}}});
    assert_eq!(select_root_device(&disks, &node).unwrap().name, "/dev/dm-0");
    let node = json!({"properties": {"root_device": {"by_path": "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1"}}});
    assert_eq!(
        select_root_device(&disks, &node).unwrap().name,
        "/dev/nvme0n1"
    );
}
