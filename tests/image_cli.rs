//! `ironic-agent write-image` as an operator runs it.

mod support;

use std::process::Command;
use support::*;

fn agent() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ironic-agent"));
    // anyhow appends a backtrace when these are set; operators do not set them.
    c.env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE");
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_reports() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let img = raw_image(6 << 20, 11);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &img).unwrap();
    let gz = e.finish().unwrap();
    srv.put("d.raw.gz", gz.clone());
    let target = dir.path().join("out.img");
    let (url, t, sum) = (
        srv.url("d.raw.gz"),
        target.clone(),
        format!("sha256:{}", sha256_hex(&gz)),
    );
    let out = tokio::task::spawn_blocking(move || {
        agent()
            .args(["write-image", &url, t.to_str().unwrap(), "--checksum", &sum])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("gzip+raw"), "{stderr}");
    assert_same(&std::fs::read(&target).unwrap(), &img, "cli");
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_one_line_naming_the_url() {
    let srv = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let url = srv.url("missing.img");
    let t = dir.path().join("out.img");
    let out = tokio::task::spawn_blocking(move || {
        agent()
            .args(["write-image", &url, t.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("ironic-agent: ") && last.contains("missing.img") && last.contains("404"),
        "{stderr}"
    );
    let bad = agent()
        .args([
            "write-image",
            "http://127.0.0.1:1/x",
            "/tmp/x",
            "--checksum",
            "sha256:zz",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--checksum"));
}
