//! The qcow2 fixture matrix: every image is built with qemu-img/qemu-io, converted by our
//! pipeline from loopback HTTP onto a target pre-filled with garbage, and compared byte for
//! byte with `qemu-img convert -O raw`.

mod support;

use ironic_agent::errors::{ErrorKind, IntoCommandError};
use ironic_agent::image::{write_image, ImageError};
use std::path::{Path, PathBuf};
use support::*;

const SIZE: usize = 64 << 20;

/// A raw source image written to `dir`.
fn raw_source(dir: &Path, size: usize, seed: u64) -> PathBuf {
    let p = dir.join("source.raw");
    std::fs::write(&p, raw_image(size, seed)).unwrap();
    p
}

/// Converts `raw` to qcow2 with extra qemu-img arguments.
fn to_qcow2(dir: &Path, raw: &Path, extra: &[&str]) -> PathBuf {
    let q = dir.join("image.qcow2");
    let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[raw.to_str().unwrap(), q.to_str().unwrap()]);
    qemu_img(&args);
    q
}

/// Serves `qcow2`, writes it with our pipeline and compares with qemu-img's conversion.
async fn check(qcow2: &Path, no_range: bool) -> ironic_agent::image::WriteReport {
    let dir = qcow2.parent().unwrap();
    let want = reference_raw(qcow2, dir);
    let bytes = std::fs::read(qcow2).unwrap();
    let srv = Server::start().await;
    srv.faults().no_range = no_range;
    srv.put("image.qcow2", bytes.clone());
    let target = garbage_target(dir, want.len() + (3 << 20));
    let report = write_image(
        &request(&srv.url("image.qcow2"), &bytes),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", qcow2.display()));
    assert_eq!(report.format, "qcow2");
    assert_eq!(report.virtual_size, want.len() as u64);
    assert_same(
        &std::fs::read(&target).unwrap(),
        &want,
        &qcow2.display().to_string(),
    );
    let ranged = srv
        .log()
        .iter()
        .filter(|l| l.range.as_deref().is_some_and(|r| !r.ends_with('-')))
        .count();
    assert_eq!(
        ranged > 0,
        !no_range,
        "metadata is fetched with Range requests only when the server supports them"
    );
    report
}

async fn convert_case(extra: &[&str], no_range: bool) {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_source(dir.path(), SIZE, 21);
    let q = to_qcow2(dir.path(), &raw, extra);
    check(&q, no_range).await;
}

#[tokio::test]
async fn v3_default() {
    convert_case(&[], false).await;
}

#[tokio::test]
async fn v3_without_range_support() {
    convert_case(&[], true).await;
}

#[tokio::test]
async fn v2_compat_0_10() {
    convert_case(&["-o", "compat=0.10"], false).await;
}

#[tokio::test]
async fn zlib_compressed() {
    convert_case(&["-c"], false).await;
}

#[tokio::test]
async fn zstd_compressed() {
    convert_case(&["-c", "-o", "compression_type=zstd"], false).await;
}

#[tokio::test]
async fn zstd_compressed_without_range_support() {
    convert_case(&["-c", "-o", "compression_type=zstd"], true).await;
}

#[tokio::test]
async fn clusters_of_4k() {
    // 4 KiB clusters: an L2 table maps 2 MiB, so tables and data interleave.
    convert_case(&["-o", "cluster_size=4096"], false).await;
}

#[tokio::test]
async fn clusters_of_2m() {
    convert_case(&["-o", "cluster_size=2M"], false).await;
}

#[tokio::test]
async fn clusters_of_512_bytes_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_source(dir.path(), 4 << 20, 22);
    check(
        &to_qcow2(dir.path(), &raw, &["-c", "-o", "cluster_size=512"]),
        false,
    )
    .await;
}

#[tokio::test]
async fn preallocation_metadata() {
    convert_case(&["-o", "preallocation=metadata"], false).await;
}

/// An image edited after creation: the second write allocates an L2 table after the data of
/// the first, so data precedes the L2 table of later data, and a virtual size that is not a
/// cluster multiple.
fn edited_image(dir: &Path) -> PathBuf {
    let q = dir.join("image.qcow2");
    let qs = q.to_str().unwrap();
    // 4 KiB clusters: one L2 table maps 2 MiB.
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        qs,
        "32M",
    ]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x11 0 3M", qs]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x22 30M 2M", qs]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x33 16M 64k", qs]);
    qemu_io(&["-f", "qcow2", "-c", "write -z 1M 64k", qs]); // v3 zero clusters over data
    qemu_img(&["resize", "-q", qs, "40961k"]); // not a multiple of the cluster size
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x44 39M 1000k", qs]);
    q
}

#[tokio::test]
async fn edited_and_resized_with_range_support() {
    let dir = tempfile::tempdir().unwrap();
    let q = edited_image(dir.path());
    check(&q, false).await;
}

#[tokio::test]
async fn data_before_its_l2_table_without_range_support_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = edited_image(dir.path());
    let bytes = std::fs::read(&q).unwrap();
    let srv = Server::start().await;
    srv.faults().no_range = true;
    srv.put("image.qcow2", bytes.clone());
    let target = garbage_target(dir.path(), 2 << 20);
    let err = write_image(
        &request(&srv.url("image.qcow2"), &bytes),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not support HTTP Range") && msg.contains("precede")
            || msg.contains("comes before"),
        "{msg}"
    );
    assert!(std::fs::read(&target).unwrap()[..1 << 20]
        .iter()
        .all(|&b| b == 0xEE));
}

#[tokio::test]
async fn large_sparse_virtual_size() {
    // 4 TiB virtual, a few MiB of data: the map stays tiny and zeros become holes.
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("image.qcow2");
    let qs = q.to_str().unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", qs, "4T"]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x7 0 1M", qs]);
    qemu_io(&["-f", "qcow2", "-c", "write -P 0x8 3T 1M", qs]);
    let bytes = std::fs::read(&q).unwrap();
    let srv = Server::start().await;
    srv.put("image.qcow2", bytes.clone());
    let target = dir.path().join("target.img");
    let report = write_image(
        &request(&srv.url("image.qcow2"), &bytes),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.virtual_size, 4 << 40);
    let f = std::fs::File::open(&target).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 4 << 40);
    let mut buf = vec![0u8; 1 << 20];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut buf, 3 << 40).unwrap();
    assert!(buf.iter().all(|&b| b == 8));
    f.read_exact_at(&mut buf, 1 << 40).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 7));
}

async fn refused(q: &Path, needle: &str) {
    let bytes = std::fs::read(q).unwrap();
    let srv = Server::start().await;
    srv.put("image.qcow2", bytes.clone());
    let target = garbage_target(q.parent().unwrap(), 2 << 20);
    let err = write_image(
        &request(&srv.url("image.qcow2"), &bytes),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
    assert!(
        msg.contains("image.qcow2"),
        "the error names the URL: {msg}"
    );
    assert!(matches!(err, ImageError::InvalidImage { .. }), "{err:?}");
    assert!(err.into_command_error().kind_is(ErrorKind::InvalidImage));
    assert!(
        std::fs::read(&target).unwrap().iter().all(|&b| b == 0xEE),
        "nothing was written"
    );
}

#[tokio::test]
async fn backing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "8M"]);
    let q = dir.path().join("image.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    refused(&q, "backing file").await;
}

#[tokio::test]
async fn external_data_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("image.qcow2");
    let data = dir.path().join("data.raw");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", data.display()),
        q.to_str().unwrap(),
        "8M",
    ]);
    refused(&q, "external data file").await;
}

#[tokio::test]
async fn encrypted_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("image.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "--object",
        "secret,id=sec0,data=password",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0",
        q.to_str().unwrap(),
        "8M",
    ]);
    refused(&q, "encrypted").await;
}

#[tokio::test]
async fn truncated_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_source(dir.path(), 8 << 20, 23);
    let q = to_qcow2(dir.path(), &raw, &[]);
    let full = std::fs::read(&q).unwrap();
    std::fs::write(&q, &full[..full.len() - 300_000]).unwrap();
    refused(&q, "end of the").await;
}

#[tokio::test]
async fn corrupt_l1_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_source(dir.path(), 8 << 20, 24);
    let q = to_qcow2(dir.path(), &raw, &[]);
    let mut b = std::fs::read(&q).unwrap();
    let l1 = u64::from_be_bytes(b[40..48].try_into().unwrap()) as usize;
    // Point the first L2 table at the header cluster.
    b[l1..l1 + 8].copy_from_slice(&0x8000_0000_0000_0000u64.to_be_bytes());
    b[l1 + 7] = 0; // offset 0 would mean "unallocated": use the L1 table itself instead
    let l1_off = l1 as u64;
    b[l1..l1 + 8].copy_from_slice(&(l1_off | 1 << 63).to_be_bytes());
    std::fs::write(&q, &b).unwrap();
    refused(&q, "overlap").await;
}

#[tokio::test]
async fn compressed_qcow2_inside_gzip_streams() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_source(dir.path(), 16 << 20, 25);
    let q = to_qcow2(dir.path(), &raw, &["-c"]);
    let want = reference_raw(&q, dir.path());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &std::fs::read(&q).unwrap()).unwrap();
    let gz = e.finish().unwrap();
    let srv = Server::start().await;
    srv.put("image.qcow2.gz", gz.clone());
    let target = garbage_target(dir.path(), want.len());
    let report = write_image(
        &request(&srv.url("image.qcow2.gz"), &gz),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.format, "gzip+qcow2");
    assert_same(&std::fs::read(&target).unwrap(), &want, "gzip+qcow2");
}
