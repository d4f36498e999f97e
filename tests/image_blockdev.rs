//! Writing to a real block device: a loop device this test creates (never a host disk).
//! Exercises O_DIRECT writes, BLKZEROOUT for zeros, the guard, and moving the backup GPT to
//! the end of a disk larger than the image.

mod support;

use ironic_agent::image::write_image;
use ironic_agent::safety::DiskGuard;
use std::os::unix::fs::FileExt;
use support::loopdev::Loop;
use support::*;

fn le64(b: &mut [u8], o: usize, v: u64) {
    b[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

/// A raw GPT disk image of `lbas` 512-byte sectors: one partition, data in it.
fn gpt_image(lbas: u64) -> Vec<u8> {
    let mut d = raw_image(lbas as usize * 512, 51);
    d[..34 * 512].fill(0);
    let tail = (lbas as usize - 33) * 512;
    d[tail..].fill(0);
    // Protective MBR.
    d[446..462].copy_from_slice(&[0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0]);
    d[458..462].copy_from_slice(&((lbas - 1) as u32).to_le_bytes());
    d[510] = 0x55;
    d[511] = 0xaa;
    let mut entries = vec![0u8; 128 * 128];
    entries[..16].copy_from_slice(&[
        0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d,
        0xe4,
    ]);
    entries[16] = 1;
    le64(&mut entries, 32, 2048);
    le64(&mut entries, 40, lbas - 34);
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = vec![0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x10000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        le64(&mut h, 24, my);
        le64(&mut h, 32, alt);
        le64(&mut h, 40, 34);
        le64(&mut h, 48, lbas - 34);
        h[56] = 0x42;
        le64(&mut h, 72, entries_lba);
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    d[512..604].copy_from_slice(&header(1, lbas - 1, 2));
    d[1024..1024 + entries.len()].copy_from_slice(&entries);
    let be = ((lbas - 33) * 512) as usize;
    d[be..be + entries.len()].copy_from_slice(&entries);
    let bh = ((lbas - 1) * 512) as usize;
    d[bh..bh + 92].copy_from_slice(&header(lbas - 1, 1, lbas - 33));
    d
}

#[tokio::test]
async fn qcow2_to_a_larger_loop_device_moves_the_backup_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("disk.bin");
    std::fs::write(&backing, vec![0xEEu8; 96 << 20]).unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    let lbas = (64u64 << 20) / 512;
    let img = gpt_image(lbas);
    let raw = dir.path().join("gpt.raw");
    std::fs::write(&raw, &img).unwrap();
    let q = dir.path().join("gpt.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&q).unwrap();
    let srv = Server::start().await;
    srv.put("gpt.qcow2", bytes.clone());

    // Not permitted: refused before anything is downloaded.
    let refused = write_image(
        &request(&srv.url("gpt.qcow2"), &bytes),
        dev,
        &DiskGuard::new(false, vec![]),
        |_| {},
    )
    .await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains(dev.to_str().unwrap()));

    let guard = DiskGuard::new(false, vec![dev.clone()]);
    let report = write_image(&request(&srv.url("gpt.qcow2"), &bytes), dev, &guard, |_| {})
        .await
        .unwrap();
    assert!(report.gpt_moved);
    drop(lp);

    let disk = std::fs::File::open(&backing).unwrap();
    let last = (96u64 << 20) / 512 - 1;
    let mut got = vec![0u8; 64 << 20];
    disk.read_exact_at(&mut got, 0).unwrap();
    // The data area is the image's, zeros included (the device held 0xEE).
    assert_same(
        &got[34 * 512..(lbas as usize - 33) * 512],
        &img[34 * 512..(lbas as usize - 33) * 512],
        "data",
    );
    assert_same(&got[..512], &img[..512], "protective MBR");
    let primary = &got[512..604];
    assert_eq!(
        u64::from_le_bytes(primary[32..40].try_into().unwrap()),
        last,
        "alternate LBA points at the new end"
    );
    let mut backup = vec![0u8; 512];
    disk.read_exact_at(&mut backup, last * 512).unwrap();
    assert_eq!(&backup[..8], b"EFI PART");
    assert_eq!(u64::from_le_bytes(backup[24..32].try_into().unwrap()), last);
    let mut entries = vec![0u8; 128 * 128];
    disk.read_exact_at(&mut entries, (last - 32) * 512).unwrap();
    assert_same(&entries, &img[1024..1024 + 128 * 128], "backup entries");
}

#[tokio::test]
async fn image_larger_than_the_device_is_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("small.bin");
    std::fs::write(&backing, vec![0xEEu8; 8 << 20]).unwrap();
    let Some(lp) = Loop::attach_plain(&backing) else {
        return;
    };
    let dev = &lp.dev;
    let img = raw_image(12 << 20, 52);
    let srv = Server::start().await;
    srv.put("big.img", img.clone());
    let guard = DiskGuard::new(false, vec![dev.clone()]);
    let err = write_image(&request(&srv.url("big.img"), &img), dev, &guard, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, ironic_agent::image::ImageError::OutOfSpace { .. }),
        "{err}"
    );
    drop(lp);
    assert!(std::fs::read(&backing).unwrap().iter().all(|&b| b == 0xEE));
}
