//! Test support for the image pipeline: a loopback HTTP/1.1 server with fault injection, and
//! fixture helpers around qemu-img.
#![allow(dead_code)]

pub mod agent;
pub mod erase;
pub mod fake_ironic;
pub mod hardware;
pub mod loopdev;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// One served document.
#[derive(Clone)]
pub struct Doc {
    pub data: Arc<Vec<u8>>,
    pub etag: String,
}

/// Faults the server injects; each one-shot fault fires once.
#[derive(Default)]
pub struct Faults {
    /// Close the connection when the body reaches these file offsets (once each).
    pub drop_at: Vec<u64>,
    /// Pause this long when the body reaches this offset (once).
    pub stall_at: Option<(u64, Duration)>,
    /// Ignore Range headers: always answer 200 with the whole document.
    pub no_range: bool,
    /// Answer the next N requests with 503.
    pub fail_next: u32,
    /// Answer every request for the image with this status.
    pub status: Option<u16>,
    /// After the first dropped connection, replace the image with this document (new ETag).
    pub replace_after_drop: Option<Vec<u8>>,
    /// Serve these bytes (same ETag) to bounded Range requests `bytes=a-b`: a server that
    /// lies about metadata.
    pub bounded_ranges_from: Option<Arc<Vec<u8>>>,
}

/// What a request asked for.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    /// The request came in absolute form, as through a proxy.
    pub proxied: bool,
}

#[derive(Default)]
pub struct State {
    pub docs: Mutex<HashMap<String, Doc>>,
    pub faults: Mutex<Faults>,
    pub log: Mutex<Vec<Logged>>,
    /// Path prefix → target path: answered with a 302.
    pub redirects: Mutex<HashMap<String, String>>,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    tls: bool,
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, st.clone()));
            }
        });
        Self {
            addr,
            state,
            tls: false,
        }
    }

    /// The same server behind TLS with a fresh self-signed certificate for 127.0.0.1;
    /// returns the certificate (PEM) too.
    pub async fn start_tls() -> (Self, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let pem = ck.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(sock).await {
                        serve(tls, st).await;
                    }
                });
            }
        });
        (
            Self {
                addr,
                state,
                tls: true,
            },
            pem,
        )
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    pub fn put(&self, path: &str, data: Vec<u8>) {
        let etag = format!("\"{:x}-{}\"", data.len(), fastsum(&data));
        self.state.docs.lock().unwrap().insert(
            format!("/{}", path.trim_start_matches('/')),
            Doc {
                data: Arc::new(data),
                etag,
            },
        );
    }

    pub fn redirect(&self, from: &str, to: &str) {
        self.state
            .redirects
            .lock()
            .unwrap()
            .insert(format!("/{from}"), format!("/{to}"));
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.state.faults.lock().unwrap()
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }
}

fn fastsum(d: &[u8]) -> u64 {
    d.iter().step_by(4099).fold(d.len() as u64, |a, &b| {
        a.wrapping_mul(31).wrapping_add(u64::from(b))
    })
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

async fn read_head(sock: &mut impl Conn) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

async fn serve(mut sock: impl Conn, st: Arc<State>) {
    let Some(head) = read_head(&mut sock).await else {
        return;
    };
    let mut lines = head.lines();
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    // A proxy gets absolute URIs: serve them as if we were the origin, and note it.
    let proxied = target.starts_with("http://");
    let path = match target.strip_prefix("http://") {
        Some(rest) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_else(|| "/".into()),
        None => target.to_string(),
    };
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut logged = Logged {
        path: path.clone(),
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
        authorization: headers.get("authorization").cloned(),
        status: 200,
        proxied,
    };
    let status = respond(&mut sock, &st, &path, &headers).await;
    logged.status = status;
    st.log.lock().unwrap().push(logged);
}

async fn simple(sock: &mut impl Conn, status: u16, extra: &str) -> u16 {
    let msg =
        format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n");
    let _ = sock.write_all(msg.as_bytes()).await;
    status
}

async fn respond(sock: &mut impl Conn, st: &State, path: &str, h: &HashMap<String, String>) -> u16 {
    let redirect = st.redirects.lock().unwrap().get(path).cloned();
    if let Some(to) = redirect {
        return simple(sock, 302, &format!("Location: {to}\r\n")).await;
    }
    let doc = st.docs.lock().unwrap().get(path).cloned();
    let Some(mut doc) = doc else {
        return simple(sock, 404, "").await;
    };
    let bounded = h.get("range").is_some_and(|r| !r.ends_with('-'));
    let lie = st.faults.lock().unwrap().bounded_ranges_from.clone();
    if let Some(other) = lie.filter(|_| bounded) {
        doc.data = other;
    }
    let forced = {
        let mut f = st.faults.lock().unwrap();
        if f.status.is_some() {
            f.status
        } else if f.fail_next > 0 {
            f.fail_next -= 1;
            Some(503)
        } else {
            None
        }
    };
    if let Some(s) = forced {
        return simple(sock, s, "").await;
    }
    let total = doc.data.len() as u64;
    let no_range = st.faults.lock().unwrap().no_range;
    let range_ok = h.get("if-range").is_none_or(|v| *v == doc.etag);
    let range = if no_range || !range_ok {
        None
    } else {
        h.get("range").and_then(|r| parse_range(r, total))
    };
    let (status, start, end) = match range {
        Some((s, e)) => (206, s, e),
        None => (200, 0, total),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: {}\r\nConnection: close\r\n",
        end - start,
        doc.etag
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end.saturating_sub(1)
        ));
    }
    if !no_range {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    head.push_str("\r\n");
    if sock.write_all(head.as_bytes()).await.is_err() {
        return status;
    }
    send_body(sock, st, path, &doc, start, end).await;
    status
}

fn parse_range(r: &str, total: u64) -> Option<(u64, u64)> {
    let spec = r.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() {
        total
    } else {
        (b.parse::<u64>().ok()? + 1).min(total)
    };
    (start < end).then_some((start, end))
}

async fn send_body(sock: &mut impl Conn, st: &State, path: &str, doc: &Doc, start: u64, end: u64) {
    let mut pos = start;
    while pos < end {
        let mut chunk_end = (pos + 65536).min(end);
        let (drop_here, stall) = {
            let mut f = st.faults.lock().unwrap();
            let drop_at = f
                .drop_at
                .iter()
                .copied()
                .filter(|d| *d > pos && *d <= chunk_end)
                .min();
            if let Some(d) = drop_at {
                chunk_end = d;
                f.drop_at.retain(|x| *x != d);
            }
            let stall = match f.stall_at {
                Some((at, dur)) if at > pos && at <= chunk_end => {
                    f.stall_at = None;
                    chunk_end = at;
                    Some(dur)
                }
                _ => None,
            };
            (drop_at.is_some(), stall)
        };
        if sock
            .write_all(&doc.data[pos as usize..chunk_end as usize])
            .await
            .is_err()
        {
            return;
        }
        pos = chunk_end;
        if let Some(d) = stall {
            let _ = sock.flush().await;
            tokio::time::sleep(d).await;
        }
        if drop_here {
            let _ = sock.flush().await;
            let replacement = st.faults.lock().unwrap().replace_after_drop.take();
            if let Some(new) = replacement {
                let etag = format!("\"changed-{}\"", new.len());
                st.docs.lock().unwrap().insert(
                    path.to_string(),
                    Doc {
                        data: Arc::new(new),
                        etag,
                    },
                );
            }
            return; // dropping the socket closes the connection mid-body
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A raw disk image of `size` bytes: noise in the first MiB and in scattered 256 KiB blocks,
/// a run of a repeated byte, zeros elsewhere.
pub fn raw_image(size: usize, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; size];
    let first = size.min(1 << 20);
    d[..first].copy_from_slice(&noise(seed, first));
    let block = 256 << 10;
    let mut i = 3usize;
    while i * block + block <= size {
        d[i * block..(i + 1) * block].copy_from_slice(&noise(seed + i as u64, block));
        i += 7;
    }
    if size > 8 << 20 {
        d[(5 << 20)..(6 << 20)].fill(0x5a);
    }
    d
}

pub fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img is installed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn qemu_io(args: &[&str]) {
    let out = Command::new("qemu-io")
        .args(args)
        .output()
        .expect("qemu-io is installed");
    assert!(
        out.status.success(),
        "qemu-io {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The reference conversion: `qemu-img convert -O raw`.
pub fn reference_raw(src: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("reference.raw");
    qemu_img(&[
        "convert",
        "-O",
        "raw",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    std::fs::read(out).unwrap()
}

/// A target file of `len` bytes of garbage, so zeros must really be written.
pub fn garbage_target(dir: &Path, len: usize) -> PathBuf {
    let p = dir.join("target.img");
    std::fs::write(&p, vec![0xEEu8; len]).unwrap();
    p
}

/// Fast, patient options for tests.
pub fn test_fetch() -> ironic_agent::image::FetchOptions {
    ironic_agent::image::FetchOptions {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_millis(700),
        retries: 3,
        retry_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

pub fn sha256_hex(d: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(d))
}

/// A request for `url` verified with the sha256 of `data`.
pub fn request(url: &str, data: &[u8]) -> ironic_agent::image::WriteRequest {
    use ironic_agent::image::checksum::{Algo, Expected};
    ironic_agent::image::WriteRequest {
        id: "test-image".into(),
        urls: vec![url.to_string()],
        checksum: ironic_agent::image::ChecksumSource::Known(
            Expected::new(Algo::Sha256, &sha256_hex(data), false).unwrap(),
        ),
        md5_allowed: false,
        policy: ironic_agent::image::FormatPolicy::default(),
        fetch: test_fetch(),
    }
}

pub fn files_only() -> ironic_agent::safety::DiskGuard {
    ironic_agent::safety::DiskGuard::new(false, vec![])
}

/// Asserts equality without printing megabytes.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length differs");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i} (got {:#x}, want {:#x})",
            got[i], want[i]
        );
    }
}
