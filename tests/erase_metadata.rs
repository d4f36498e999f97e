//! `erase_devices_metadata` (and the guard and selection rules it shares with the other erase
//! steps) on disks the test made: regular files standing for disks in a fixture host root,
//! and loop devices with real partitions. Afterwards blkid and wipefs must find nothing.

mod support;

use serde_json::json;
use std::path::Path;
use support::erase::*;

const MIB: u64 = 1 << 20;

fn mkfs(kind: &str, dev: &Path) {
    match kind {
        "ext4" => run("mkfs.ext4", &["-q", "-F", dev.to_str().unwrap()]),
        "xfs" => run("mkfs.xfs", &["-q", "-f", dev.to_str().unwrap()]),
        "vfat" => run("mkfs.vfat", &[dev.to_str().unwrap()]),
        other => panic!("no mkfs for {other}"),
    };
}

fn tools() -> bool {
    have("blkid", "util-linux")
        && have("wipefs", "util-linux")
        && have("mkfs.ext4", "e2fsprogs")
        && have("mkfs.xfs", "xfsprogs")
        && have("sgdisk", "gdisk")
}

/// A GPT with two partitions of `part_mib` on `dev` (sgdisk), optionally with partition 2's
/// type set.
fn gpt(dev: &Path, part_mib: u64, type2: Option<&str>) {
    let d = dev.to_str().unwrap();
    run(
        "sgdisk",
        &[
            &format!("-n1:2048:+{part_mib}M"),
            &format!("-n2:0:+{part_mib}M"),
            d,
        ],
    );
    if let Some(t) = type2 {
        run("sgdisk", &[&format!("-t2:{t}"), d]);
    }
}

#[tokio::test]
async fn metadata_wipe_leaves_no_signature_on_file_disks() {
    if !tools() {
        return;
    }
    let host = Host::new();
    let ext4 = host.file_disk("sda", 64 * MIB, "8:0");
    let xfs = host.file_disk("sdb", 320 * MIB, "8:16");
    let table = host.file_disk("sdc", 64 * MIB, "8:32");
    mkfs("ext4", &ext4);
    mkfs("xfs", &xfs);
    gpt(&table, 8, None);
    // A GPT written for a smaller disk: its backup header sits in the middle of this one.
    let grown = host.file_disk("sdd", 32 * MIB, "8:48");
    gpt(&grown, 8, None);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&grown)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    std::fs::write(
        host.root().join("sys/block/sdd/size"),
        format!("{}\n", 64 * MIB / 512),
    )
    .unwrap();
    let old_backup = 32 * MIB - 512;
    assert_eq!(&read_at(&grown, old_backup, 8), b"EFI PART");
    // Data in the middle of a disk is not metadata: it must survive.
    fill_at(&table, 40 * MIB, 4096, 0x5a);
    for d in [&ext4, &xfs, &table, &grown] {
        assert!(
            !wipefs_list(d).is_empty(),
            "fixture {} has no signature",
            d.display()
        );
    }

    let ctx = host.ctx("");
    let r = clean_step(&ctx, "erase_devices_metadata", &node(json!({}))).await;
    assert_eq!(r, Ok(serde_json::Value::Null));

    for d in [&ext4, &xfs, &table, &grown] {
        assert_eq!(
            blkid(d),
            "",
            "blkid still finds something on {}",
            d.display()
        );
        assert_eq!(
            wipefs_list(d),
            "",
            "wipefs still finds something on {}",
            d.display()
        );
        // IPA's dd ranges: the first and last 33 sectors are zero.
        let size = std::fs::metadata(d).unwrap().len();
        assert!(read_at(d, 0, 33 * 512).iter().all(|&b| b == 0));
        assert!(read_at(d, size - 33 * 512, 33 * 512)
            .iter()
            .all(|&b| b == 0));
    }
    // sgdisk -Z semantics: the backup GPT the primary pointed to is gone too.
    assert!(read_at(&grown, old_backup, 512).iter().all(|&b| b == 0));
    assert!(read_at(&table, 40 * MIB, 4096).iter().all(|&b| b == 0x5a));
}

fn fill_at(path: &Path, off: u64, len: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![byte; len], off).unwrap();
}

#[tokio::test]
async fn metadata_wipe_on_loop_devices_covers_partitions_lvm_and_rereads_the_table() {
    if !tools() || !have("pvcreate", "lvm2") || !have("partx", "util-linux") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let backing = |name: &str, size: u64| {
        let p = files.path().join(name);
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        p
    };
    // Disk A (sparse): GPT, ext4 in partition 1, xfs (at least 300 MB) in partition 2.
    let a_file = backing("a", 700 * MIB);
    gpt(&a_file, 320, None);
    let Some(a) = Loop::attach(&a_file, false) else {
        return;
    };
    a.add_partitions();
    let parts = a.partitions();
    assert_eq!(
        parts.len(),
        2,
        "partx did not add the partitions of {}",
        a.dev.display()
    );
    mkfs("ext4", &parts[0]);
    mkfs("xfs", &parts[1]);
    // Disk B: an LVM physical volume over the whole device.
    let b = Loop::attach(&backing("b", 64 * MIB), false).unwrap();
    run(
        "pvcreate",
        &["-ff", "-y", "--devicesfile", "", b.dev.to_str().unwrap()],
    );
    assert!(
        blkid(&b.dev).contains("TYPE=LVM2_member"),
        "{}",
        blkid(&b.dev)
    );

    let mut host = Host::new();
    let a_dev = host.loop_disk("sda", &a);
    let b_dev = host.loop_disk("sdb", &b);
    let ctx = host.ctx("");
    let r = clean_step(&ctx, "erase_devices_metadata", &node(json!({}))).await;
    assert_eq!(r, Ok(serde_json::Value::Null));

    assert_eq!(blkid(&a_dev), "");
    assert_eq!(wipefs_list(&a.dev), "");
    assert_eq!(blkid(&b_dev), "");
    assert_eq!(wipefs_list(&b.dev), "");
    // The partition table was re-read: the kernel dropped the partitions.
    assert!(a.partitions().is_empty(), "{:?}", a.partitions());
    // The file systems inside the partitions were wiped before the table went away.
    for (start, fs) in [(MIB, "ext4"), (MIB + 320 * MIB, "xfs")] {
        let inside = files.path().join(format!("probe-{fs}"));
        std::fs::write(&inside, read_at(&a_file, start, (4 * MIB) as usize)).unwrap();
        assert_eq!(
            blkid(&inside),
            "",
            "the {fs} signature inside the partition survived"
        );
    }
}

#[tokio::test]
async fn virtual_media_read_only_and_raid_style_exclusions_are_left_alone() {
    if !tools() || !have("mkfs.vfat", "dosfstools") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let ro_file = files.path().join("ro");
    std::fs::File::create(&ro_file)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();
    mkfs("ext4", &ro_file);
    let Some(ro) = Loop::attach(&ro_file, true) else {
        return;
    };
    let mut host = Host::new();
    let ro_dev = host.loop_disk("sda", &ro);
    let vmedia = host.file_disk("sdb", 16 * MIB, "8:16");
    run("mkfs.vfat", &["-n", "ir-vfd-dev", vmedia.to_str().unwrap()]);
    let plain = host.file_disk("sdc", 16 * MIB, "8:32");
    mkfs("ext4", &plain);

    let ctx = host.ctx("");
    let r = clean_step(&ctx, "erase_devices_metadata", &node(json!({}))).await;
    assert_eq!(r, Ok(serde_json::Value::Null));
    assert!(
        blkid(&ro_dev).contains("TYPE=ext4"),
        "read-only device was touched"
    );
    assert!(
        blkid(&vmedia).contains("LABEL=ir-vfd-dev"),
        "virtual media was touched"
    );
    assert_eq!(blkid(&plain), "");
}

#[tokio::test]
async fn protected_partitions_stop_cleaning_before_anything_is_touched() {
    if !tools() {
        return;
    }
    let host = Host::new();
    let ordinary = host.file_disk("sda", 32 * MIB, "8:0");
    mkfs("ext4", &ordinary);
    let vmfs = host.file_disk("sdb", 32 * MIB, "8:16");
    gpt(&vmfs, 8, Some("AA31E02A-400F-11DB-9590-000C2911D1B8"));

    let ctx = host.ctx("");
    for step in [
        "erase_devices_metadata",
        "erase_devices",
        "erase_devices_express",
    ] {
        let e = clean_step(&ctx, step, &node(json!({}))).await.unwrap_err();
        assert_eq!(e.kind, "ProtectedDeviceError", "{step}: {e:?}");
        assert!(
            e.details
                .starts_with("Protected VMware VMFS Partition (GPT) located on device /dev/sdb."),
            "{}",
            e.details
        );
        assert!(blkid(&ordinary).contains("ext4"), "{step} touched /dev/sda");
        assert!(
            blkid(&vmfs).contains("PTTYPE=gpt"),
            "{step} touched /dev/sdb"
        );
    }

    // The conductor's opt-out.
    let r = clean_step(
        &ctx,
        "erase_devices_metadata",
        &node(json!({"wipe_special_filesystems": false})),
    )
    .await;
    assert_eq!(r, Ok(serde_json::Value::Null));
    assert_eq!(blkid(&vmfs), "");
}

#[tokio::test]
async fn the_kernel_option_turns_the_guard_off() {
    if !tools() {
        return;
    }
    let host = Host::new();
    let vmfs = host.file_disk("sda", 32 * MIB, "8:0");
    gpt(&vmfs, 8, Some("37AFFC90-EF7D-4E96-91C3-2D7AE055B174"));
    let guarded = host.ctx("");
    let e = clean_step(&guarded, "erase_devices_metadata", &node(json!({})))
        .await
        .unwrap_err();
    assert!(e.details.contains("IBM GPFS Partition"), "{}", e.details);
    let off = host.ctx("ipa-guard-special-filesystems=0");
    assert_eq!(
        clean_step(&off, "erase_devices_metadata", &node(json!({}))).await,
        Ok(serde_json::Value::Null)
    );
    assert_eq!(blkid(&vmfs), "");
}

#[tokio::test]
async fn skip_block_devices_spares_a_disk() {
    if !tools() {
        return;
    }
    let host = Host::new();
    let keep = host.file_disk("sda", 32 * MIB, "8:0");
    let wipe = host.file_disk("sdb", 32 * MIB, "8:16");
    mkfs("ext4", &keep);
    mkfs("ext4", &wipe);
    let mut n = node(json!({}));
    n["properties"]["skip_block_devices"] = json!([{"name": "/dev/sda"}]);
    let r = clean_step(&host.ctx(""), "erase_devices_metadata", &n).await;
    assert_eq!(r, Ok(serde_json::Value::Null));
    assert!(blkid(&keep).contains("ext4"));
    assert_eq!(blkid(&wipe), "");
}

#[tokio::test]
async fn block_devices_the_guard_does_not_allow_are_refused_untouched() {
    if !tools() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let f = files.path().join("disk");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    mkfs("ext4", &f);
    let Some(lp) = Loop::attach(&f, false) else {
        return;
    };
    let mut host = Host::new();
    let dev = host.loop_disk("sda", &lp);
    host.allowed.clear();
    let e = clean_step(&host.ctx(""), "erase_devices_metadata", &node(json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "BlockDeviceEraseError");
    assert!(
        e.details
            .starts_with("Erasing /dev/sda was refused: refusing to modify block device"),
        "{}",
        e.details
    );
    assert!(blkid(&dev).contains("ext4"));
}

#[tokio::test]
async fn the_steps_are_listed_as_ipa_lists_them() {
    let host = Host::new();
    let ctx = host.ctx("");
    let clean = ctx.steps.list(ironic_agent::steps::StepKind::Clean);
    let steps = clean["clean_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    let find = |name: &str| steps.iter().find(|s| s["step"] == name).cloned().unwrap();
    for (name, priority) in [
        ("erase_devices", 10),
        ("erase_devices_metadata", 99),
        ("erase_devices_express", 0),
        ("erase_pstore", 0),
    ] {
        assert_eq!(
            find(name),
            json!({"step": name, "priority": priority, "interface": "deploy",
                   "reboot_requested": false, "abortable": true})
        );
    }
    let deploy = ctx.steps.list(ironic_agent::steps::StepKind::Deploy);
    let deploy = deploy["deploy_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    let meta: Vec<_> = deploy
        .iter()
        .filter(|s| s["step"] == "erase_devices_metadata")
        .collect();
    assert_eq!(
        meta,
        [
            &json!({"step": "erase_devices_metadata", "priority": 0, "interface": "deploy",
                 "reboot_requested": false})
        ]
    );
    assert!(!deploy.iter().any(|s| s["step"] == "erase_devices"));
    let service = ctx.steps.list(ironic_agent::steps::StepKind::Service);
    let service = service["service_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap();
    assert!(!service
        .iter()
        .any(|s| s["step"].as_str().unwrap().starts_with("erase")));
}

#[tokio::test]
async fn erase_pstore_empties_the_pstore_mount() {
    let host = Host::new();
    let store = host.root().join("sys/fs/pstore");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("dmesg-efi-170000000001"), "panic").unwrap();
    std::fs::write(
        host.root().join("proc/mounts"),
        "sysfs /sys sysfs rw 0 0\npstore /sys/fs/pstore pstore rw 0 0\n",
    )
    .unwrap();
    let r = clean_step(&host.ctx(""), "erase_pstore", &node(json!({}))).await;
    assert_eq!(r, Ok(serde_json::Value::Null));
    assert_eq!(std::fs::read_dir(&store).unwrap().count(), 0);
}
