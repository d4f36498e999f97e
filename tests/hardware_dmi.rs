//! SMBIOS decoding against dmidecode itself: the QEMU table dump in
//! tests/fixtures/hardware/qemu-smbios (DMI + smbios_entry_point as the kernel exports them),
//! and dmidecode 3.4's output for it (`dmidecode --from-dump dump.bin -t bios -t processor
//! -t memory`, dump.bin being the same table in dmidecode's dump format).

mod support;

use ironic_agent::hardware::dmi_decode::{dmi_decode, parse_dmi, render};
use ironic_agent::hardware::smbios::parse_entry_point;
use ironic_agent::hardware::HostRoot;
use serde_json::json;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hardware")
        .join(name)
}

/// dmidecode's blocks of the types IPA keeps.
fn kept_blocks(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(|b| b.trim_matches('\n').to_string())
        .filter(|b| {
            ["DMI type 0,", "DMI type 4,", "DMI type 16,", "DMI type 17,"]
                .iter()
                .any(|t| b.starts_with("Handle") && b.contains(t))
        })
        .collect()
}

#[test]
fn text_matches_dmidecode_on_a_qemu_table() {
    let table = std::fs::read(fixture("qemu-smbios/DMI")).unwrap();
    let ep = std::fs::read(fixture("qemu-smbios/smbios_entry_point")).unwrap();
    let ours = render(&table, parse_entry_point(&ep));
    let theirs = std::fs::read_to_string(fixture("qemu-smbios/dmidecode-3.4.txt")).unwrap();
    assert_eq!(kept_blocks(&ours), kept_blocks(&theirs));
}

#[test]
fn collector_value_has_ipas_shape() {
    let host = support::hardware::server();
    let v = dmi_decode(&host).unwrap();
    assert_eq!(v["bios"]["Vendor"], "Dell Inc.");
    assert_eq!(v["bios"]["Release Date"], "03/07/2023");
    assert_eq!(v["bios"]["Handle"], "Handle 0x0000, DMI type 0, 24 bytes");
    assert_eq!(
        v["bios"]["Characteristics"],
        json!([
            "BIOS characteristics not supported",
            "Targeted content distribution is supported",
            "UEFI is supported",
            "System is a virtual machine"
        ])
    );
    assert_eq!(v["cpu"].as_array().unwrap().len(), 2);
    assert_eq!(v["cpu"][1]["Socket Designation"], "CPU 1");
    assert_eq!(v["cpu"][0]["Max Speed"], "4000 MHz");
    assert_eq!(v["cpu"][0]["Characteristics"], "None");
    assert_eq!(v["memory"]["Number Of Devices"], 1);
    assert_eq!(v["memory"]["Maximum Capacity"], "2 GB");
    assert!(
        v["memory"].get("Handle").is_none(),
        "the array's Handle is dropped, as IPA does"
    );
    let dimm = &v["memory"]["devices"][0];
    assert_eq!(dimm["Size"], "2 GB");
    assert_eq!(dimm["Part Number"], "M393A4K40DB3-CWE");
    assert_eq!(dimm["Speed"], "3200 MT/s");
    assert_eq!(dimm["Handle"], "Handle 0x1100, DMI type 17, 40 bytes");
}

#[test]
fn ipa_parsing_rules() {
    let text = "Handle 0x0010, DMI type 16, 23 bytes\nPhysical Memory Array\n\tNumber Of Devices: 2\n\tLocation: System Board Or Motherboard\n\n\
                Handle 0x0011, DMI type 16, 23 bytes\nPhysical Memory Array\n\tNumber Of Devices: 4\n\n\
                Handle 0x0400, DMI type 4, 48 bytes\nProcessor Information\n\tFlags:\n\t\tFPU (Floating-point unit on-chip)\n\t\tVME (Virtual mode extension)\n\tVersion: X\n\n\
                Not a block\n";
    let v = parse_dmi(text);
    assert_eq!(
        v["memory"]["Number Of Devices"], 6,
        "devices of all arrays are summed"
    );
    assert_eq!(v["memory"]["Location"], "System Board Or Motherboard");
    assert_eq!(
        v["cpu"][0]["Flags"],
        json!([
            "FPU (Floating-point unit on-chip)",
            "VME (Virtual mode extension)"
        ])
    );
    assert_eq!(v["cpu"][0]["Version"], "X");
    assert_eq!(v["bios"], json!({}));
    assert_eq!(v["memory"]["devices"], json!([]));
}

#[test]
fn no_smbios_is_a_collector_failure() {
    let empty = tempfile::tempdir().unwrap();
    let err = dmi_decode(&HostRoot::new(empty.path())).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("failed to read the SMBIOS tables from "),
        "{err}"
    );
}

#[test]
fn text_matches_dmidecode_on_a_synthetic_server_table() {
    let table = std::fs::read(fixture("synthetic-smbios/DMI")).unwrap();
    let ep = std::fs::read(fixture("synthetic-smbios/smbios_entry_point")).unwrap();
    let ours = render(&table, parse_entry_point(&ep));
    let theirs = std::fs::read_to_string(fixture("synthetic-smbios/dmidecode-3.4.txt")).unwrap();
    let (ours, theirs) = (kept_blocks(&ours), kept_blocks(&theirs));
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
}
