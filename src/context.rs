//! The state every command and step sees: configuration, the node as Ironic last described it,
//! the token, the host, the disk guard, and the switches that make the agent heartbeat early or
//! stop serving.

use crate::collectors::CollectorRegistry;
use crate::config::Config;
use crate::hardware::{HostRoot, InventoryOptions};
use crate::ironic::lookup::{LookupConfig, LookupReply, LookupRequest};
use crate::ironic::IronicClient;
use crate::safety::DiskGuard;
use crate::state::{StateDir, StoredToken};
use crate::steps::StepRegistry;
use serde_json::Value;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{watch, Notify};

/// Why the agent stops serving its API (contract §2 step 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeState {
    Serving,
    /// `rescue.finalize_rescue`: stop API and heartbeats, then exit.
    Rescued,
    /// `system.lockdown`: stop API and heartbeats, take every interface down, idle forever.
    LockedDown,
}

/// What the agent learned from Ironic: the node and the token.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub node: Option<Value>,
    pub token: Option<String>,
    pub lookup: Option<LookupConfig>,
}

/// Results of the last image write, for `standby.get_partition_uuids`.
#[derive(Debug, Clone, Default)]
pub struct DeploymentState {
    pub partition_uuids: serde_json::Map<String, Value>,
}

pub struct AgentContext {
    pub config: Config,
    pub host: HostRoot,
    pub guard: DiskGuard,
    pub state: StateDir,
    /// Epoch seconds when this process started (`/v1/status`).
    pub started_at: f64,
    pub steps: StepRegistry,
    /// The inspection collectors by IPA's names (built-ins; plugins register here too).
    pub collectors: CollectorRegistry,
    /// Outbound TLS for downloads (images, checksums, configdrives).
    pub download_tls: rustls::ClientConfig,
    /// The Ironic API client, when `ipa-api-url` is set.
    pub ironic: Option<Arc<IronicClient>>,
    /// What a node refresh (re-lookup) sends.
    pub lookup_request: Mutex<Option<LookupRequest>>,
    session: RwLock<Session>,
    pub deployment: Mutex<DeploymentState>,
    heartbeat_wanted: Notify,
    serving: watch::Sender<ServeState>,
}

impl AgentContext {
    pub fn new(
        config: Config,
        host: HostRoot,
        guard: DiskGuard,
        state: StateDir,
        download_tls: rustls::ClientConfig,
        ironic: Option<Arc<IronicClient>>,
    ) -> Self {
        let steps = StepRegistry::new(&config);
        let started_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let (serving, _) = watch::channel(ServeState::Serving);
        Self {
            config,
            host,
            guard,
            state,
            started_at,
            steps,
            collectors: CollectorRegistry::new(),
            download_tls,
            ironic,
            lookup_request: Mutex::new(None),
            session: RwLock::new(Session::default()),
            deployment: Mutex::new(DeploymentState::default()),
            heartbeat_wanted: Notify::new(),
            serving,
        }
    }

    pub fn session(&self) -> Session {
        self.session.read().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn token(&self) -> Option<String> {
        self.session.read().ok().and_then(|s| s.token.clone())
    }

    pub fn node(&self) -> Option<Value> {
        self.session.read().ok().and_then(|s| s.node.clone())
    }

    pub fn node_uuid(&self) -> Option<String> {
        self.node()
            .and_then(|n| n["uuid"].as_str().map(str::to_string))
    }

    /// Ironic sends the whole node with every step command; keep the newest copy.
    pub fn cache_node(&self, node: &Value) {
        if node.is_object() {
            if let Ok(mut s) = self.session.write() {
                s.node = Some(node.clone());
            }
        }
    }

    /// Applies a lookup reply: the node, the config, and the token rules of contract §6.
    /// Returns false when the agent must stop serving (`******` and no token of its own).
    pub fn apply_lookup(&self, reply: &LookupReply) -> bool {
        let offered = reply.config.agent_token.clone();
        let uuid = reply.node_uuid().to_string();
        let Ok(mut s) = self.session.write() else {
            return false;
        };
        s.node = Some(reply.node.clone());
        s.lookup = Some(reply.config.clone());
        match offered.as_deref() {
            Some(t) if t.len() >= 32 => {
                s.token = Some(t.to_string());
                self.state.save_token(&StoredToken {
                    node_uuid: uuid,
                    token: t.to_string(),
                });
                tracing::info!("received a new agent token from Ironic");
            }
            Some("******") if s.token.is_some() => {
                tracing::info!(
                    "Ironic has already issued a token to this agent; keeping the one we hold"
                );
            }
            Some("******") => {
                if let Some(stored) = self.state.load_token().filter(|t| t.node_uuid == uuid) {
                    tracing::info!(
                        "recovered the agent token kept by an earlier run of this agent"
                    );
                    s.token = Some(stored.token);
                } else {
                    tracing::error!(
                        "Ironic already issued the token for node {uuid} to another agent process and \
                         this one has no copy; it cannot be commanded. Power-cycle the node to recover."
                    );
                    return false;
                }
            }
            Some(short) => tracing::warn!(
                "ignoring an agent token of {} characters (fewer than 32)",
                short.len()
            ),
            None => tracing::warn!(
                "Ironic's lookup reply carries no agent token (API older than 1.62?)"
            ),
        }
        true
    }

    /// A token given on the kernel command line (virtual media: `ipa-agent-token`).
    pub fn preset_token(&self, token: &str) {
        if let Ok(mut s) = self.session.write() {
            s.token = Some(token.to_string());
        }
    }

    /// The token rules for incoming commands (contract §6 "Validation").
    pub fn token_is_valid(&self, presented: Option<&str>) -> bool {
        match (presented, self.token()) {
            (Some(p), Some(t)) if !p.is_empty() => constant_time_eq(p.as_bytes(), t.as_bytes()),
            _ => false,
        }
    }

    /// Options for an inventory run, from the kernel command line and Ironic's lookup config.
    pub fn inventory_options(&self) -> InventoryOptions {
        let skip_bmc = self
            .session
            .read()
            .ok()
            .and_then(|s| s.lookup.as_ref().map(|l| l.agent_skip_bmc_detect));
        InventoryOptions {
            skip_bmc_detect: skip_bmc.unwrap_or(false),
            collect_lldp: self.config.collect_lldp,
            lldp_timeout: self.config.lldp_timeout,
            bootif: self.config.bootif.clone(),
        }
    }

    /// Ask for a heartbeat soon (a finished asynchronous command).
    pub fn force_heartbeat(&self) {
        self.heartbeat_wanted.notify_one();
    }

    /// Resolves when someone asked for a heartbeat.
    pub async fn heartbeat_requested(&self) {
        self.heartbeat_wanted.notified().await
    }

    pub fn stop_serving(&self, why: ServeState) {
        self.serving.send_replace(why);
    }

    pub fn serve_state(&self) -> watch::Receiver<ServeState> {
        self.serving.subscribe()
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
