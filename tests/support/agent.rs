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
            .timeout(Duration::from_secs(30))
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
