//! The agent side of the integration tests: an agent running in-process against the fake
//! Ironic, and a client that talks to the agent the way Ironic's agent_client does (HTTPS
//! verified against the certificate the agent sent in its heartbeat).
#![allow(dead_code)]

use super::fake_ironic::{FakeIronic, TOKEN};
use ironic_agent::agent::{run, RunOptions};
use ironic_agent::config::Config;
use ironic_agent::hardware::HostRoot;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent running in this process against `ironic`.
pub struct RunningAgent {
    pub port: u16,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn agent_cmdline(ironic: &FakeIronic, port: u16, extra: &str) -> String {
    format!(
        "ipa-api-url={} ipa-listen-host=127.0.0.1 ipa-listen-port={port} ipa-advertise-host=127.0.0.1 \
         ipa-advertise-port={port} ipa-lookup-interval=0.1 {extra}",
        ironic.url
    )
}

pub fn start_agent(ironic: &FakeIronic, state_dir: &Path, extra: &str) -> RunningAgent {
    start_agent_on(ironic, state_dir, free_port(), extra)
}

pub fn start_agent_on(
    ironic: &FakeIronic,
    state_dir: &Path,
    port: u16,
    extra: &str,
) -> RunningAgent {
    let config = Config::from_cmdline(&agent_cmdline(ironic, port, extra));
    let opts = RunOptions {
        config,
        state_dir: state_dir.to_path_buf(),
        allow_devices: vec![],
        ca_file: None,
        host: HostRoot::system(),
    };
    RunningAgent {
        port,
        task: tokio::spawn(run(opts)),
    }
}

/// Talks to the agent API like Ironic: HTTPS, trusting only the PEM from the heartbeat.
pub struct Conductor {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Conductor {
    pub fn new(port: u16, verify_ca_pem: &str) -> Self {
        let cert = reqwest::Certificate::from_pem(verify_ca_pem.as_bytes()).unwrap();
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .redirect(reqwest::redirect::Policy::none())
            // `wait=true` holds the request for the whole command: an 80 MiB debug-build write
            // takes ~80 s when the shared 2-core machine runs at load 15.
            .timeout(Duration::from_secs(180))
            .build()
            .unwrap();
        Self {
            http,
            base: format!("https://127.0.0.1:{port}"),
            token: TOKEN.to_string(),
        }
    }

    pub async fn post(&self, name: &str, params: Value, wait: bool) -> (u16, Value) {
        let url = format!(
            "{}/v1/commands/?wait={wait}&agent_token={}",
            self.base, self.token
        );
        let resp = self
            .http
            .post(url)
            .json(&serde_json::json!({"name": name, "params": params}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn commands(&self) -> Vec<Value> {
        let (s, v) = self
            .get(&format!("/v1/commands/?agent_token={}", self.token))
            .await;
        assert_eq!(s, 200, "{v}");
        v["commands"].as_array().cloned().unwrap_or_default()
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state")
}

/// A fake host under a temporary root: one NIC and the given disks, each backed by a sparse
/// regular file at `<root>/dev/<name>` (what the agent writes to under a fixture root).
pub fn fixture_host(disks: &[(&str, u64)]) -> tempfile::TempDir {
    let root = tempdir();
    let w = |rel: &str, v: &str| {
        let p = root.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    };
    w("sys/class/net/eth0/address", "52:54:00:12:34:56\n");
    w("sys/class/net/eth0/carrier", "1\n");
    std::fs::create_dir_all(root.path().join("sys/class/net/eth0/device")).unwrap();
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    std::fs::create_dir_all(root.path().join("sys/bus/pci/devices")).unwrap();
    for (i, (name, size)) in disks.iter().enumerate() {
        w(
            &format!("sys/block/{name}/size"),
            &format!("{}\n", size / 512),
        );
        w(
            &format!("sys/block/{name}/dev"),
            &format!("252:{}\n", i * 16),
        );
        w(&format!("sys/block/{name}/queue/rotational"), "0\n");
        w(
            &format!("sys/block/{name}/queue/logical_block_size"),
            "512\n",
        );
        let f = std::fs::File::create(root.path().join("dev").join(name)).unwrap();
        f.set_len(*size).unwrap();
    }
    root
}

/// Like [`start_agent_on`], but reading the host from `host_root`.
pub fn start_agent_with_host(
    ironic: &FakeIronic,
    state_dir: &Path,
    host_root: &Path,
    extra: &str,
) -> RunningAgent {
    let port = free_port();
    let config = Config::from_cmdline(&agent_cmdline(ironic, port, extra));
    let opts = RunOptions {
        config,
        state_dir: state_dir.to_path_buf(),
        allow_devices: vec![],
        ca_file: None,
        host: HostRoot::new(host_root),
    };
    RunningAgent {
        port,
        task: tokio::spawn(run(opts)),
    }
}

impl Conductor {
    /// Posts `name` without waiting, then polls until it is no longer RUNNING (as Ironic does
    /// on heartbeats).
    pub async fn run_async(&self, name: &str, params: Value) -> Value {
        let (s, r) = self.post(name, params, false).await;
        assert_eq!(s, 200, "{r}");
        let id = r["id"].as_str().unwrap().to_string();
        let (_, done) = self
            .get(&format!(
                "/v1/commands/{id}?wait=true&agent_token={}",
                self.token
            ))
            .await;
        done
    }
}

/// A small whole-disk image: an MBR with disk signature 0x1a2b3c4d and one partition, then
/// noise and zeros.
pub fn mbr_disk_image(size: usize) -> Vec<u8> {
    let mut d = super::raw_image(size, 7);
    d[440..444].copy_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    d[444..446].fill(0);
    let mut entry = [0u8; 16];
    entry[4] = 0x83;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    entry[12..16].copy_from_slice(&(((size as u32) / 512) - 2048).to_le_bytes());
    d[446..462].copy_from_slice(&entry);
    d[462..510].fill(0);
    d[510] = 0x55;
    d[511] = 0xaa;
    d
}
