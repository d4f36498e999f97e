//! Downloads under fault injection: drops, stalls, no Range support, 5xx, 4xx, redirects,
//! an object replaced mid-download, deadlines, several URLs, credentials.

mod support;

use ironic_agent::errors::{ErrorKind, IntoCommandError};
use ironic_agent::image::{write_image, Auth, ImageError};
use std::time::Duration;
use support::*;

async fn served(size: usize, seed: u64) -> (Server, Vec<u8>, tempfile::TempDir) {
    let srv = Server::start().await;
    let img = raw_image(size, seed);
    srv.put("disk.img", img.clone());
    (srv, img, tempfile::tempdir().unwrap())
}

#[tokio::test]
async fn drops_resume_with_range_and_if_range() {
    let (srv, img, dir) = served(10 << 20, 31).await;
    srv.faults().drop_at = vec![100_000, 3 << 20, 7_777_777];
    let target = garbage_target(dir.path(), 10 << 20);
    let report = write_image(
        &request(&srv.url("disk.img"), &img),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_same(&std::fs::read(&target).unwrap(), &img, "resumed");
    assert_eq!(
        report.bytes_downloaded,
        img.len() as u64,
        "no byte was downloaded twice"
    );
    let log = srv.log();
    let resumes: Vec<_> = log
        .iter()
        .filter_map(|l| l.range.clone())
        .filter(|r| r != "bytes=0-")
        .collect();
    assert_eq!(
        resumes,
        vec!["bytes=100000-", "bytes=3145728-", "bytes=7777777-"]
    );
    assert!(
        log.iter().skip(1).all(|l| l.if_range.is_some()),
        "resumes carry If-Range"
    );
}

#[tokio::test]
async fn stalls_are_detected_and_resumed() {
    let (srv, img, dir) = served(4 << 20, 32).await;
    // A stall much longer than the download: on the shared 2-core machine at load 15 the
    // debug-build write alone takes ~4 s, so "faster than the stall" needs a margin.
    srv.faults().stall_at = Some((2 << 20, Duration::from_secs(20)));
    let target = dir.path().join("t");
    let started = std::time::Instant::now();
    write_image(
        &request(&srv.url("disk.img"), &img),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stall timeout (0.7 s) fired, not the stall's end"
    );
    assert_same(&std::fs::read(&target).unwrap(), &img, "after stall");
    let log = srv.log();
    assert!(
        log.iter()
            .any(|l| l.range.as_deref() == Some("bytes=2097152-")),
        "{log:?}"
    );
}

#[tokio::test]
async fn without_range_support_a_drop_restarts_from_zero() {
    let (srv, img, dir) = served(4 << 20, 33).await;
    srv.faults().no_range = true;
    srv.faults().drop_at = vec![1_500_000];
    let target = garbage_target(dir.path(), 4 << 20);
    write_image(
        &request(&srv.url("disk.img"), &img),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_same(&std::fs::read(&target).unwrap(), &img, "restarted");
    assert_eq!(srv.log().len(), 2, "one failed and one complete download");
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let (srv, img, dir) = served(1 << 20, 34).await;
    srv.faults().fail_next = 2;
    write_image(
        &request(&srv.url("disk.img"), &img),
        &dir.path().join("a"),
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(srv.log().iter().filter(|l| l.status == 503).count(), 2);

    srv.faults().status = Some(403);
    let before = srv.log().len();
    let err = write_image(
        &request(&srv.url("disk.img"), &img),
        &dir.path().join("b"),
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ImageError::DownloadFatal { status: 403, .. }),
        "{err}"
    );
    assert!(err
        .into_command_error()
        .kind_is(ErrorKind::ImageDownloadFatal));
    assert_eq!(srv.log().len() - before, 1, "4xx is not retried");

    srv.faults().status = Some(500);
    let err = write_image(
        &request(&srv.url("disk.img"), &img),
        &dir.path().join("c"),
        &files_only(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(err.into_command_error().kind_is(ErrorKind::ImageDownload));
}

#[tokio::test]
async fn redirects_are_resolved_once() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("image.qcow2");
    let raw = dir.path().join("src.raw");
    std::fs::write(&raw, raw_image(16 << 20, 35)).unwrap();
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        raw.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&q).unwrap();
    srv.put("real/image.qcow2", bytes.clone());
    srv.redirect("image.qcow2", "real/image.qcow2");
    srv.faults().drop_at = vec![bytes.len() as u64 / 2];
    let target = dir.path().join("t");
    write_image(
        &request(&srv.url("image.qcow2"), &bytes),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    assert_same(
        &std::fs::read(&target).unwrap(),
        &reference_raw(&q, dir.path()),
        "redirected qcow2",
    );
    let log = srv.log();
    assert_eq!(
        log.iter().filter(|l| l.path == "/image.qcow2").count(),
        1,
        "{log:?}"
    );
    assert!(
        log.iter().filter(|l| l.path == "/real/image.qcow2").count() >= 3,
        "metadata ranges and the resume go to the target"
    );
}

#[tokio::test]
async fn a_replaced_object_restarts_from_zero_instead_of_splicing() {
    let (srv, old, dir) = served(6 << 20, 36).await;
    let new = raw_image(5 << 20, 37);
    assert_ne!(old[..1024], new[..1024]);
    srv.faults().drop_at = vec![2 << 20];
    srv.faults().replace_after_drop = Some(new.clone());
    let target = garbage_target(dir.path(), 6 << 20);
    // The operator published the checksum of the new version.
    write_image(
        &request(&srv.url("disk.img"), &new),
        &target,
        &files_only(),
        |_| {},
    )
    .await
    .unwrap();
    let got = std::fs::read(&target).unwrap();
    assert_same(&got, &new, "new version only");
    let log = srv.log();
    let resume = log
        .iter()
        .find(|l| l.range.as_deref() == Some("bytes=2097152-"))
        .expect("a resume was tried");
    assert!(resume.if_range.is_some());
    assert_eq!(
        resume.status, 200,
        "the changed object answered the resume in full"
    );
    assert_eq!(
        log.last().unwrap().range.as_deref(),
        Some("bytes=0-"),
        "then the download restarted at 0"
    );
}

#[tokio::test]
async fn max_duration_is_a_timeout_and_not_retried() {
    let (srv, img, dir) = served(4 << 20, 38).await;
    srv.faults().stall_at = Some((1 << 20, Duration::from_secs(30)));
    let target = garbage_target(dir.path(), 4 << 20);
    let mut req = request(&srv.url("disk.img"), &img);
    req.fetch.stall_timeout = Duration::from_secs(20);
    req.fetch.max_duration = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = write_image(&req, &target, &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, ImageError::Timeout { .. }), "{err}");
    assert!(err
        .into_command_error()
        .kind_is(ErrorKind::ImageDownloadTimeout));
    assert!(std::fs::read(&target).unwrap()[..1 << 20]
        .iter()
        .all(|&b| b == 0xEE));
}

#[tokio::test]
async fn urls_are_tried_in_order() {
    let (srv, img, dir) = served(1 << 20, 39).await;
    let mut req = request("http://127.0.0.1:1/disk.img", &img);
    req.urls.push(srv.url("disk.img"));
    req.fetch.retries = 1;
    let report = write_image(&req, &dir.path().join("t"), &files_only(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.url, srv.url("disk.img"));
}

#[tokio::test]
async fn credentials_are_sent() {
    let (srv, img, dir) = served(1 << 20, 40).await;
    let mut req = request(&srv.url("disk.img"), &img);
    req.fetch.auth = Some(Auth::Header("Bearer s3cr3t".into()));
    write_image(&req, &dir.path().join("a"), &files_only(), |_| {})
        .await
        .unwrap();
    assert_eq!(srv.log()[0].authorization.as_deref(), Some("Bearer s3cr3t"));
    req.fetch.auth = Some(Auth::Basic {
        user: "u".into(),
        password: "p".into(),
    });
    write_image(&req, &dir.path().join("b"), &files_only(), |_| {})
        .await
        .unwrap();
    assert_eq!(srv.log()[1].authorization.as_deref(), Some("Basic dTpw"));
}

#[tokio::test]
async fn progress_is_reported() {
    let (srv, img, dir) = served(8 << 20, 41).await;
    srv.faults().stall_at = Some((4 << 20, Duration::from_millis(600)));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut req = request(&srv.url("disk.img"), &img);
    req.fetch.stall_timeout = Duration::from_secs(5);
    write_image(&req, &dir.path().join("t"), &files_only(), move |p| {
        s.lock().unwrap().push(p)
    })
    .await
    .unwrap();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .any(|p| p.total == Some(img.len() as u64) && p.downloaded > 0),
        "{seen:?}"
    );
}

#[tokio::test]
async fn metadata_that_differs_from_the_download_is_never_used() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    std::fs::write(&raw, raw_image(8 << 20, 42)).unwrap();
    let honest = dir.path().join("honest.qcow2");
    qemu_img(&[
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        honest.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&honest).unwrap();
    // The lie: Range answers carry an L2 table mapping guest cluster 0 somewhere else.
    let mut lie = bytes.clone();
    let l1 = u64::from_be_bytes(lie[40..48].try_into().unwrap()) as usize;
    let l2 =
        (u64::from_be_bytes(lie[l1..l1 + 8].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00) as usize;
    let second = lie[l2 + 8..l2 + 16].to_vec();
    lie[l2..l2 + 8].copy_from_slice(&second);
    lie[l2 + 8..l2 + 16].fill(0);
    srv.put("image.qcow2", bytes.clone());
    srv.faults().bounded_ranges_from = Some(std::sync::Arc::new(lie));
    let target = garbage_target(dir.path(), 8 << 20);
    let mut req = request(&srv.url("image.qcow2"), &bytes);
    req.fetch.retries = 1;
    let err = write_image(&req, &target, &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("changed between the Range request and the download"),
        "{err}"
    );
    assert!(std::fs::read(&target).unwrap()[..1 << 20]
        .iter()
        .all(|&b| b == 0xEE));
}

#[tokio::test]
async fn proxies_and_no_proxy() {
    let (proxy, img, dir) = served(1 << 20, 43).await;
    // The image host does not resolve: only the proxy can reach it.
    let mut req = request("http://image-host.invalid/disk.img", &img);
    req.fetch.proxies.http = Some(proxy.url(""));
    req.fetch.retries = 0;
    write_image(&req, &dir.path().join("a"), &files_only(), |_| {})
        .await
        .unwrap();
    assert!(proxy.log().iter().all(|l| l.proxied));
    req.fetch.proxies.no_proxy = Some("image-host.invalid".into());
    let before = proxy.log().len();
    let err = write_image(&req, &dir.path().join("b"), &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("image-host.invalid"), "{err}");
    assert_eq!(proxy.log().len(), before, "no_proxy hosts bypass the proxy");
}

#[tokio::test]
async fn tls_verification_ca_file_and_insecure() {
    let (srv, pem) = Server::start_tls().await;
    let img = raw_image(1 << 20, 44);
    srv.put("disk.img", img.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut req = request(&srv.url("disk.img"), &img);
    req.fetch.retries = 0;
    let err = write_image(&req, &dir.path().join("a"), &files_only(), |_| {})
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    req.fetch.tls.ca_file = Some(ca);
    write_image(&req, &dir.path().join("b"), &files_only(), |_| {})
        .await
        .unwrap();
    req.fetch.tls.ca_file = None;
    req.fetch.tls.insecure = true;
    write_image(&req, &dir.path().join("c"), &files_only(), |_| {})
        .await
        .unwrap();
    assert_same(
        &std::fs::read(dir.path().join("c")).unwrap(),
        &img,
        "insecure",
    );
}
