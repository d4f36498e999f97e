//! Partition images and config drives on a loop device this test creates (never a host disk):
//! IPA's layout, the kernel's partitions (BLKPG, as the host kernel here has no partition-table
//! parsers), the ESP, swap and config drive, the image streamed into the root partition, and
//! the UUIDs `get_partition_uuids` reports.

mod support;

use ironic_agent::disk::{kernel, table, Disk};
use ironic_agent::image::write_image;
use ironic_agent::safety::DiskGuard;
use ironic_agent::steps::node_caps::BootMode;
use ironic_agent::steps::{configdrive, partition_image};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use support::loopdev::Loop;
use support::*;

const MIB: u64 = 1 << 20;

/// An ext4 file system image (the root partition image) and its UUID.
fn ext4_image(dir: &Path, mib: u64) -> Option<(Vec<u8>, String)> {
    let p = dir.join("root.ext4");
    std::fs::File::create(&p).ok()?.set_len(mib * MIB).ok()?;
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", p.to_str()?])
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let uuid = Command::new("blkid")
        .args(["-s", "UUID", "-o", "value", p.to_str()?])
        .output()
        .ok()?;
    Some((
        std::fs::read(&p).ok()?,
        String::from_utf8_lossy(&uuid.stdout).trim().to_string(),
    ))
}

fn layout(boot_mode: BootMode, label: table::Label) -> partition_image::Layout {
    partition_image::Layout {
        root_mb: 40,
        swap_mb: 16,
        ephemeral_mb: 8,
        ephemeral_format: Some("vfat".into()),
        preserve_ephemeral: false,
        boot_mode,
        label,
        ppc64: false,
    }
}

#[tokio::test]
async fn uefi_partition_image_on_a_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let Some((root_img, root_uuid)) = ext4_image(dir.path(), 32) else {
        eprintln!("SKIPPED: mkfs.ext4/blkid not available (e2fsprogs, util-linux)");
        return;
    };
    let backing = dir.path().join("disk.bin");
    std::fs::write(&backing, vec![0xEEu8; 700 << 20]).unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    let guard = DiskGuard::new(false, vec![dev.clone()]);
    let cd = b"config drive payload".repeat(1000);
    let l = layout(BootMode::Uefi, table::Label::Gpt);
    // The guard is asked first: an unlisted device is refused before anything is written.
    let refused = partition_image::prepare(dev, &DiskGuard::new(false, vec![]), &l, None, "n");
    assert!(refused.is_err());

    let prepared = partition_image::prepare(dev, &guard, &l, Some(&cd), "node-1").unwrap();
    let keys: Vec<&str> = prepared.parts.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "efi system partition",
            "ephemeral",
            "swap",
            "configdrive",
            "root"
        ]
    );
    // the kernel sees exactly the table (added with BLKPG where it has no GPT parser)
    let kparts = kernel::kernel_partitions(dev).unwrap();
    assert_eq!(kparts.len(), 5);
    for (_, p, node) in &prepared.parts {
        let k = kparts.iter().find(|k| k.number == p.number).unwrap();
        assert_eq!((k.start, k.size), (p.start, p.size));
        assert!(kernel::is_block_device(node), "{}", node.display());
    }
    let root = prepared.node("root").unwrap().to_path_buf();
    let srv = Server::start().await;
    srv.put("root.ext4", root_img.clone());
    let root_guard = DiskGuard::new(false, vec![root.clone()]);
    write_image(
        &request(&srv.url("root.ext4"), &root_img),
        &root,
        &root_guard,
        |_| {},
    )
    .await
    .unwrap();
    let uuids = partition_image::partition_uuids(&prepared, &guard, &l).unwrap();
    assert_eq!(uuids["root uuid"], root_uuid.as_str());
    let esp_uuid = uuids["efi system partition uuid"].as_str().unwrap();
    assert!(
        esp_uuid.len() == 9 && esp_uuid.as_bytes()[4] == b'-',
        "{esp_uuid}"
    );
    assert_eq!(
        uuids["partitions"]["root"],
        root.display().to_string().as_str()
    );
    assert!(uuids.get("PReP Boot partition uuid").is_none());
    drop(lp);

    // What a firmware and an OS would find on the disk.
    let disk = Disk::open(&backing, &DiskGuard::new(false, vec![])).unwrap();
    let t = table::read(&disk.file, &backing, disk.geo)
        .unwrap()
        .unwrap();
    assert_eq!(t.label, table::Label::Gpt);
    let sizes: Vec<u64> = t.partitions.iter().map(|p| p.size / MIB).collect();
    assert_eq!(sizes, [550, 8, 16, 1, 40]);
    assert_eq!(t.partitions[0].start, MIB);
    let info = |n: usize| disk.probe(&t.partitions[n]).unwrap();
    assert_eq!(info(0).label.as_deref(), Some("efi-part"));
    assert_eq!(info(1).label.as_deref(), Some("ephemeral0"));
    assert_eq!(info(1).fstype.as_deref(), Some("vfat"));
    assert_eq!(info(2).fstype.as_deref(), Some("swap"));
    assert_eq!(info(2).label.as_deref(), Some("swap1"));
    assert_eq!(info(4).uuid.as_deref(), Some(root_uuid.as_str()));
    let mut got = vec![0u8; cd.len()];
    disk.file
        .read_exact_at(&mut got, t.partitions[3].start)
        .unwrap();
    assert_eq!(got, cd);
    let mut root_back = vec![0u8; root_img.len()];
    disk.file
        .read_exact_at(&mut root_back, t.partitions[4].start)
        .unwrap();
    assert!(
        root_back == root_img,
        "root partition differs from the image"
    );
    // nothing after the root partition was touched but the backup GPT
    let mut after = vec![0u8; 1 << 20];
    disk.file
        .read_exact_at(&mut after, t.partitions[4].end())
        .unwrap();
    assert!(after.iter().all(|b| *b == 0xEE));
}

#[tokio::test]
async fn bios_msdos_layout_marks_root_active() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk.bin");
    std::fs::write(&backing, vec![0u8; 80 << 20]).unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    let guard = DiskGuard::new(false, vec![dev.clone()]);
    let mut l = layout(BootMode::Bios, table::Label::Msdos);
    l.ephemeral_mb = 0;
    let prepared = partition_image::prepare(dev, &guard, &l, None, "n").unwrap();
    let keys: Vec<&str> = prepared.parts.iter().map(|(k, _, _)| *k).collect();
    assert_eq!(keys, ["swap", "root"]);
    let uuids = partition_image::partition_uuids(&prepared, &guard, &l).unwrap();
    // no file system in root yet: the PARTUUID (<disk signature>-02) stands in
    let raw = std::fs::read(&backing).unwrap();
    let sig = u32::from_le_bytes(raw[440..444].try_into().unwrap());
    assert_eq!(uuids["root uuid"], format!("{sig:08x}-02").as_str());
    assert!(uuids["efi system partition uuid"].is_null());
    assert_eq!(raw[446 + 16], 0x80);
}

#[tokio::test]
async fn config_drive_partition_added_to_a_whole_disk_image() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk.bin");
    std::fs::write(&backing, vec![0u8; 200 << 20]).unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    let guard = DiskGuard::new(false, vec![dev.clone()]);
    {
        let disk = Disk::open(dev, &guard).unwrap();
        table::create(
            &disk.file,
            dev,
            disk.geo,
            table::Label::Msdos,
            &[table::NewPartition {
                size_mib: 64,
                role: table::Role::Linux,
                bootable: true,
            }],
        )
        .unwrap();
    }
    let data = b"iso-ish".repeat(4096);
    let part = configdrive::add_to_whole_disk_at(dev, &guard, &data, "node-2").unwrap();
    assert_eq!(part.number, 2);
    assert_eq!((part.start, part.end()), (136 * MIB, 200 * MIB));
    // the kernel knows the new partition and its node holds the data
    let node = kernel::partition_node(dev, 2).unwrap();
    let mut got = vec![0u8; data.len()];
    std::fs::File::open(&node)
        .unwrap()
        .read_exact_at(&mut got, 0)
        .unwrap();
    assert_eq!(got, data);
    // too big for the 64 MiB limit: refused while decoding, before any write
    let huge = vec![1u8; (65 * MIB) as usize];
    assert!(configdrive::decode(&huge, true, "n")
        .unwrap_err()
        .details
        .contains("64MiB"));
}
