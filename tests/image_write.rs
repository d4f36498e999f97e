//! Raw and compressed images end to end over loopback HTTP: verification, format policy, the
//! held-back first MiB.

mod support;

use ironic_agent::errors::{ErrorKind, IntoCommandError};
use ironic_agent::image::checksum::{Algo, Expected};
use ironic_agent::image::{write_image, ChecksumSource, ImageError, ImageInfo, ImageSettings};
use std::io::Write;
use support::*;

fn gzip(d: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn xz(d: &[u8]) -> Vec<u8> {
    let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(d).unwrap();
    e.finish().unwrap()
}

fn zst(d: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(d, 3).unwrap()
}

#[tokio::test]
async fn raw_image_is_written_exactly_over_garbage() {
    let srv = Server::start().await;
    let img = raw_image(24 << 20, 1);
    srv.put("disk.raw", img.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = garbage_target(dir.path(), 32 << 20);
    let report = write_image(
        &request(&srv.url("disk.raw"), &img),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.format, "raw");
    assert_eq!(report.bytes_downloaded, img.len() as u64);
    assert_same(&std::fs::read(&target).unwrap(), &img, "raw");
}

#[tokio::test]
async fn compressed_raw_images_are_decompressed() {
    let srv = Server::start().await;
    let img = raw_image(12 << 20, 2);
    let dir = tempfile::tempdir().unwrap();
    for (name, packed, format) in [
        ("d.gz", gzip(&img), "gzip+raw"),
        ("d.xz", xz(&img), "xz+raw"),
        ("d.zst", zst(&img), "zstd+raw"),
    ] {
        srv.put(name, packed.clone());
        let target = garbage_target(dir.path(), 16 << 20);
        let mut req = request(&srv.url(name), &packed);
        // Compression is removed even when Ironic says raw: a gzip stream is not a disk.
        req.policy.disk_format = Some("raw".into());
        let report = write_image(&req, &target, &files_only(), |_| {})
            .await
            .unwrap();
        assert_eq!(report.format, format);
        assert_eq!(
            report.bytes_downloaded,
            packed.len() as u64,
            "the hash covers the downloaded bytes"
        );
        assert_same(&std::fs::read(&target).unwrap(), &img, name);
    }
}

#[tokio::test]
async fn checksum_mismatch_leaves_the_first_mib_untouched() {
    let srv = Server::start().await;
    let img = raw_image(8 << 20, 3);
    srv.put("disk.raw", img.clone());
    let dir = tempfile::tempdir().unwrap();
    let target = garbage_target(dir.path(), 8 << 20);
    let mut req = request(&srv.url("disk.raw"), b"something else");
    req.fetch.retries = 1;
    let err = write_image(&req, &target, &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Checksum { .. }), "{err}");
    let c = err.into_command_error();
    assert!(c.kind_is(ErrorKind::ImageChecksum));
    assert!(c.details.contains("disk.raw"), "{}", c.details);
    let after = std::fs::read(&target).unwrap();
    assert!(
        after[..1 << 20].iter().all(|&b| b == 0xEE),
        "the first MiB was written before verification"
    );
    // Two attempts: IPA retries checksum mismatches.
    assert_eq!(
        srv.log()
            .iter()
            .filter(|l| l.range.as_deref() == Some("bytes=0-"))
            .count(),
        2
    );
}

#[tokio::test]
async fn checksum_files_and_os_hash() {
    let srv = Server::start().await;
    let img = raw_image(3 << 20, 4);
    srv.put("images/disk.img", img.clone());
    let sum = sha256_hex(&img);
    srv.put(
        "SHA256SUMS",
        format!("{}  other.img\n{sum} *disk.img\n", "0".repeat(64)).into_bytes(),
    );
    srv.put("BSD", format!("SHA256 (disk.img) = {sum}\n").into_bytes());
    let dir = tempfile::tempdir().unwrap();
    for sums in ["SHA256SUMS", "BSD"] {
        let json = serde_json::json!({"id": "x", "urls": [srv.url("images/disk.img")], "checksum": srv.url(sums)});
        let mut req = ImageInfo::parse(&json, false)
            .unwrap()
            .to_request(&ImageSettings::default())
            .unwrap();
        req.fetch = test_fetch();
        let target = dir.path().join(format!("t-{sums}"));
        write_image(&req, &target, &files_only(), |_| {})
            .await
            .unwrap();
        assert_same(&std::fs::read(&target).unwrap(), &img, sums);
    }
    // os_hash_* wins over a wrong legacy checksum.
    let sha512 = {
        use sha2::Digest;
        hex::encode(sha2::Sha512::digest(&img))
    };
    let json = serde_json::json!({"id": "x", "urls": [srv.url("images/disk.img")], "checksum": "1".repeat(64),
                                  "os_hash_algo": "sha512", "os_hash_value": sha512});
    let mut req = ImageInfo::parse(&json, false)
        .unwrap()
        .to_request(&ImageSettings::default())
        .unwrap();
    req.fetch = test_fetch();
    write_image(&req, &dir.path().join("t-os"), &files_only(), |_| {})
        .await
        .unwrap();
    // A checksum file without our image is a download error naming it.
    srv.put("EMPTY", b"# nothing\n".to_vec());
    let json = serde_json::json!({"id": "x", "urls": [srv.url("images/disk.img")], "checksum": srv.url("EMPTY")});
    let mut req = ImageInfo::parse(&json, false)
        .unwrap()
        .to_request(&ImageSettings::default())
        .unwrap();
    req.fetch = test_fetch();
    let err = write_image(&req, &dir.path().join("t-none"), &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk.img"), "{err}");
}

#[tokio::test]
async fn format_policy_is_enforced_before_writing() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A qcow2 header labelled raw is written as it is (IPA: raw is never inspected).
    let src = dir.path().join("s.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", src.to_str().unwrap(), "4M"]);
    let q = std::fs::read(&src).unwrap();
    srv.put("s.qcow2", q.clone());
    let target = dir.path().join("raw-labelled");
    let mut req = request(&srv.url("s.qcow2"), &q);
    req.policy.disk_format = Some("raw".into());
    write_image(&req, &target, &files_only(), |_| {})
        .await
        .unwrap();
    assert_same(&std::fs::read(&target).unwrap(), &q, "raw-labelled qcow2");
    // A raw image labelled qcow2 is refused.
    let img = raw_image(2 << 20, 5);
    srv.put("plain", img.clone());
    let target = garbage_target(dir.path(), 2 << 20);
    let mut req = request(&srv.url("plain"), &img);
    req.policy.disk_format = Some("qcow2".into());
    let err = write_image(&req, &target, &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expected format was qcow2"),
        "{err}"
    );
    assert!(err.into_command_error().kind_is(ErrorKind::InvalidImage));
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 0xEE),
        "nothing may be written"
    );
    // qcow2 not permitted.
    let mut req = request(&srv.url("s.qcow2"), &q);
    req.policy.permitted = vec!["raw".into()];
    let err = write_image(&req, &dir.path().join("x"), &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("only raw are allowed"), "{err}");
    // Formats we recognise but do not convert.
    let vmdk = dir.path().join("d.vmdk");
    qemu_img(&["create", "-q", "-f", "vmdk", vmdk.to_str().unwrap(), "4M"]);
    let v = std::fs::read(&vmdk).unwrap();
    srv.put("d.vmdk", v.clone());
    let err = write_image(
        &request(&srv.url("d.vmdk"), &v),
        &dir.path().join("y"),
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("vmdk"), "{err}");
}

#[tokio::test]
async fn md5_only_when_allowed_and_unverified_cli_mode() {
    let srv = Server::start().await;
    let img = raw_image(1 << 20, 6);
    srv.put("d", img.clone());
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&img))
    };
    assert!(Expected::from_bare(&md5, false).is_err());
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&srv.url("d"), &img);
    req.checksum = ChecksumSource::Known(Expected::new(Algo::Md5, &md5, true).unwrap());
    write_image(&req, &dir.path().join("a"), &files_only(), |_| {})
        .await
        .unwrap();
    req.checksum = ChecksumSource::None;
    write_image(&req, &dir.path().join("b"), &files_only(), |_| {})
        .await
        .unwrap();
    assert_same(
        &std::fs::read(dir.path().join("b")).unwrap(),
        &img,
        "unverified",
    );
}

#[tokio::test]
async fn block_devices_need_permission() {
    let srv = Server::start().await;
    let img = raw_image(1 << 20, 7);
    srv.put("d", img.clone());
    let err = write_image(
        &request(&srv.url("d"), &img),
        std::path::Path::new("/dev/null"),
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("/dev/null"), "{err}");
    assert!(
        srv.log().is_empty(),
        "nothing is downloaded for a refused target"
    );
}
