//! `erase_devices` and `erase_devices_express` on disks the test made (regular files standing
//! for disks in a fixture host root, and loop devices): what they leave on the device, and how
//! the node's `driver_internal_info` steers secure erase, fallback, discard and read-only
//! devices.

mod support;

use serde_json::json;
use support::erase::*;

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn overwrite_leaves_zeros_on_every_disk_and_reports_each() {
    let host = Host::new();
    let a = host.file_disk("sda", 24 * MIB, "8:0");
    let b = host.file_disk("sdb", 10 * MIB + 4096, "8:16");
    fill(&a, 24 * MIB, 0xab);
    fill(&b, 10 * MIB + 4096, 0xcd);
    let n = node(
        json!({"agent_erase_devices_iterations": 1, "agent_erase_devices_zeroize": true,
                        "disk_erasure_concurrency": 4}),
    );
    let r = clean_step(&host.ctx(""), "erase_devices", &n)
        .await
        .unwrap();
    assert_eq!(r, json!({"/dev/sda": null, "/dev/sdb": null}));
    assert!(all_zero(&a, 24 * MIB));
    assert!(all_zero(&b, 10 * MIB + 4096));
}

#[tokio::test]
async fn random_passes_without_zeroize_leave_neither_old_data_nor_zeros() {
    let host = Host::new();
    let a = host.file_disk("sda", 16 * MIB, "8:0");
    fill(&a, 16 * MIB, 0xab);
    let n =
        node(json!({"agent_erase_devices_iterations": 2, "agent_erase_devices_zeroize": false}));
    clean_step(&host.ctx(""), "erase_devices", &n)
        .await
        .unwrap();
    let data = std::fs::read(&a).unwrap();
    let old = data.iter().filter(|&&b| b == 0xab).count();
    let zeros = data.iter().filter(|&&b| b == 0).count();
    // Random data: each value about 1/256 of the bytes.
    assert!(
        old < data.len() / 100 && zeros < data.len() / 100,
        "{old} {zeros}"
    );
}

#[tokio::test]
async fn a_failed_nvme_secure_erase_fails_the_step_unless_fallback_is_allowed() {
    let host = Host::new();
    // A file is no NVMe namespace: NVME_IOCTL_ID fails, so the secure erase does.
    let d = host.file_disk("nvme0n1", 8 * MIB, "259:0");
    fill(&d, 8 * MIB, 0x11);
    let ctx = host.ctx("");
    let e = clean_step(&ctx, "erase_devices", &node(json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "BlockDeviceEraseError");
    assert!(
        e.details.starts_with(
            "Failed to invoke secure erase of /dev/nvme0n1, fallback to overwriting the device \
             is not enabled: it is not an NVMe namespace (NVME_IOCTL_ID failed"
        ),
        "{}",
        e.details
    );
    assert!(read_at(&d, 0, 4096).iter().all(|&b| b == 0x11), "untouched");

    let fallback = node(json!({"agent_continue_if_secure_erase_failed": true}));
    assert_eq!(
        clean_step(&ctx, "erase_devices", &fallback).await.unwrap(),
        json!({"/dev/nvme0n1": null})
    );
    assert!(all_zero(&d, 8 * MIB));

    // The deprecated key still counts when the new one is absent; NVMe erase can be disabled.
    fill(&d, 8 * MIB, 0x22);
    let old_key = node(json!({"agent_continue_if_ata_erase_failed": true}));
    clean_step(&ctx, "erase_devices", &old_key).await.unwrap();
    assert!(all_zero(&d, 8 * MIB));
    fill(&d, 8 * MIB, 0x33);
    let no_nvme = node(json!({"agent_enable_nvme_secure_erase": false}));
    clean_step(&ctx, "erase_devices", &no_nvme).await.unwrap();
    assert!(all_zero(&d, 8 * MIB));
}

#[tokio::test]
async fn express_formats_nvme_where_it_can_and_wipes_metadata_elsewhere() {
    if !have("mkfs.ext4", "e2fsprogs") || !have("blkid", "util-linux") {
        return;
    }
    let host = Host::new();
    let nvme = host.file_disk("nvme0n1", 32 * MIB, "259:0");
    let sata = host.file_disk("sda", 32 * MIB, "8:0");
    for d in [&nvme, &sata] {
        run("mkfs.ext4", &["-q", "-F", d.to_str().unwrap()]);
    }
    let r = clean_step(&host.ctx(""), "erase_devices_express", &node(json!({}))).await;
    // The NVMe format fails on a file; the metadata wipe is the fallback.
    assert_eq!(r, Ok(serde_json::Value::Null));
    assert_eq!(blkid(&nvme), "");
    assert_eq!(blkid(&sata), "");
}

#[tokio::test]
async fn loop_devices_are_zeroed_and_read_only_ones_fail_or_are_skipped() {
    let files = tempfile::tempdir().unwrap();
    let mk = |name: &str, byte: u8| {
        let p = files.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .set_len(48 * MIB)
            .unwrap();
        fill(&p, 48 * MIB, byte);
        p
    };
    let (rw_file, ro_file) = (mk("rw", 0x5a), mk("ro", 0xa5));
    let Some(rw) = Loop::attach(&rw_file, false) else {
        return;
    };
    let ro = Loop::attach(&ro_file, true).unwrap();
    let mut host = Host::new();
    host.loop_disk("sda", &rw);
    host.loop_disk("sdb", &ro);
    let ctx = host.ctx("");

    let e = clean_step(&ctx, "erase_devices", &node(json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, "BlockDeviceEraseError");
    assert_eq!(
        e.details,
        "Failed to invoke erase of device /dev/sdb as the device is flagged read-only, and the \
         conductor has not signaled this is a permitted case."
    );
    // The writable disk was still erased (IPA erases the others and then reports).
    assert!(all_zero(&rw_file, 48 * MIB));

    fill(&rw_file, 48 * MIB, 0x5a);
    let skip = node(json!({"agent_erase_skip_read_only": true}));
    let r = clean_step(&ctx, "erase_devices", &skip).await.unwrap();
    assert_eq!(r, json!({"/dev/sda": null, "/dev/sdb": null}));
    assert!(all_zero(&rw.dev, 48 * MIB));
    assert!(read_at(&ro_file, 0, 4096).iter().all(|&b| b == 0xa5));
}

#[tokio::test]
async fn a_verified_discard_replaces_a_failed_secure_erase_when_enabled() {
    let files = tempfile::tempdir().unwrap();
    let f = files.path().join("disk");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    fill(&f, 32 * MIB, 0x77);
    let Some(lp) = Loop::attach(&f, false) else {
        return;
    };
    let mut host = Host::new();
    // Named like an NVMe namespace, but a loop device: the format fails, discard works.
    let dev = host.loop_disk("nvme0n1", &lp);
    let ctx = host.ctx("");
    let e = clean_step(&ctx, "erase_devices", &node(json!({})))
        .await
        .unwrap_err();
    assert!(
        e.details
            .starts_with("Failed to invoke secure erase of /dev/nvme0n1"),
        "{}",
        e.details
    );

    let r = clean_step(
        &ctx,
        "erase_devices",
        &node(json!({"agent_enable_discard_erase": true})),
    )
    .await
    .unwrap();
    assert_eq!(r, json!({"/dev/nvme0n1": null}));
    assert!(all_zero(&dev, 32 * MIB));

    // The kernel option is the default when Ironic does not say.
    fill(&lp.dev, 32 * MIB, 0x77);
    let ctx = host.ctx("ipa-enable-discard-erase=1");
    clean_step(&ctx, "erase_devices", &node(json!({})))
        .await
        .unwrap();
    assert!(all_zero(&dev, 32 * MIB));
}

/// `ironic-agent erase-device ARGS`; panics when it cannot be started.
fn erase_device(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ironic-agent"))
        .arg("erase-device")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_erase_device_command_overwrites_or_wipes_one_named_device() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("disk");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(12 * MIB)
        .unwrap();
    fill(&f, 12 * MIB, 0x3c);
    let out = erase_device(&[f.to_str().unwrap(), "--iterations", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pass 1 (random) 12 MiB in"), "{text}");
    assert!(text.contains("pass 2 (zeros) 12 MiB in"), "{text}");
    assert!(all_zero(&f, 12 * MIB));

    if have("mkfs.ext4", "e2fsprogs") && have("blkid", "util-linux") {
        run("mkfs.ext4", &["-q", "-F", f.to_str().unwrap()]);
        let out = erase_device(&[f.to_str().unwrap(), "--method", "metadata"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"ext4\""));
        assert_eq!(blkid(&f), "");
    }

    let out = erase_device(&["/nonexistent/disk"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("ironic-agent: opening /nonexistent/disk"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
