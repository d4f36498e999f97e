//! Finding our node: `GET /v1/lookup` with the host's MACs, retried with random exponential
//! backoff until `ipa-lookup-timeout` (contract §4).

use super::client::{IronicClient, IronicError, LOOKUP_VERSION};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The longest wait between two lookups.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pauses after 409 (node locked while Ironic generates the token): 5, 10, then 30 s.
const CONFLICT_PAUSES: [u64; 3] = [5, 10, 30];

/// What Ironic tells the agent in a lookup reply.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupReply {
    pub node: Value,
    pub config: LookupConfig,
}

impl LookupReply {
    pub fn node_uuid(&self) -> &str {
        self.node["uuid"].as_str().unwrap_or_default()
    }
}

/// The `config` object (contract §4.3). Unknown keys are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LookupConfig {
    pub heartbeat_timeout: f64,
    #[serde(default)]
    pub agent_token: Option<String>,
    #[serde(default)]
    pub agent_md5_checksum_enable: Option<bool>,
    #[serde(default)]
    pub disable_deep_image_inspection: Option<bool>,
    #[serde(default)]
    pub permitted_image_formats: Option<Vec<String>>,
    #[serde(default)]
    pub agent_skip_bmc_detect: bool,
    #[serde(default)]
    pub enable_bios_bootloader_install: Option<bool>,
    #[serde(default)]
    pub tls_min_version: Option<String>,
    #[serde(default)]
    pub tls_cipher_suites: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("looking up this node in Ironic failed for {elapsed_s} s (ipa-lookup-timeout); last error: {last}")]
pub struct LookupTimedOut {
    pub elapsed_s: u64,
    pub last: String,
}

/// What one lookup attempt needs.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// Lowercase colon MACs of every interface.
    pub macs: Vec<String>,
    /// The node UUID inspection returned, when there was one.
    pub node_uuid: Option<String>,
}

impl LookupRequest {
    fn path(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("addresses", &self.macs.join(","));
        if let Some(u) = &self.node_uuid {
            q.append_pair("node_uuid", u);
        }
        format!("/v1/lookup?{}", q.finish())
    }
}

/// One lookup attempt.
pub async fn lookup_once(
    client: &IronicClient,
    req: &LookupRequest,
) -> Result<LookupReply, IronicError> {
    let op = "node lookup";
    let version = client.negotiate(LOOKUP_VERSION).await;
    let reply = client
        .send(Method::GET, &req.path(), Some(version), None)
        .await?;
    if reply.status != StatusCode::OK {
        return Err(reply.into_error(op));
    }
    parse_reply(reply.json(op)?)
}

/// Parses a 200 lookup body; very old Ironics put `heartbeat_timeout` at the top level.
pub fn parse_reply(body: Value) -> Result<LookupReply, IronicError> {
    let op = "node lookup";
    let bad = |reason: &str| IronicError::Body {
        operation: op.into(),
        reason: reason.into(),
    };
    if !body["node"]["uuid"].is_string() {
        return Err(bad("it has no node.uuid"));
    }
    let config_value = if body["config"].is_object() {
        body["config"].clone()
    } else if body["heartbeat_timeout"].is_number() {
        serde_json::json!({ "heartbeat_timeout": body["heartbeat_timeout"] })
    } else {
        return Err(bad("it has neither config nor heartbeat_timeout"));
    };
    let config: LookupConfig = serde_json::from_value(config_value)
        .map_err(|e| bad(&format!("its config is malformed ({e})")))?;
    if !(config.heartbeat_timeout.is_finite() && config.heartbeat_timeout > 0.0) {
        return Err(bad("its heartbeat_timeout is not a positive number"));
    }
    Ok(LookupReply {
        node: body["node"].clone(),
        config,
    })
}

/// Looks the node up until it is found or `timeout` has passed since the first attempt.
pub async fn lookup_node(
    client: &IronicClient,
    req: &LookupRequest,
    timeout: Duration,
    min_interval: Duration,
) -> Result<LookupReply, LookupTimedOut> {
    let start = Instant::now();
    let mut attempt: u32 = 0;
    let mut conflicts: usize = 0;
    loop {
        let last = match lookup_once(client, req).await {
            Ok(reply) => {
                tracing::info!("lookup found node {}", reply.node_uuid());
                return Ok(reply);
            }
            Err(e) => e,
        };
        if last.status() == Some(409) {
            // The conductor holds the node lock; hammering it makes things worse.
            let pause =
                Duration::from_secs(CONFLICT_PAUSES[conflicts.min(CONFLICT_PAUSES.len() - 1)]);
            conflicts += 1;
            tracing::warn!(
                "{last}; pausing {} s before the next lookup",
                pause.as_secs()
            );
            tokio::time::sleep(pause).await;
        } else if last.status() == Some(404) {
            // The normal answer until the node reaches a state that allows lookup.
            tracing::info!("{last}; the node may not be waiting for an agent yet");
        } else {
            tracing::warn!("{last}");
        }
        let wait = backoff(attempt, min_interval);
        attempt = attempt.saturating_add(1);
        if start.elapsed() + wait >= timeout {
            return Err(LookupTimedOut {
                elapsed_s: start.elapsed().as_secs(),
                last: last.to_string(),
            });
        }
        tokio::time::sleep(wait).await;
    }
}

/// Random exponential backoff: uniform in [min, min(60 s, min * 2^attempt)].
pub fn backoff(attempt: u32, min: Duration) -> Duration {
    let min = min.max(Duration::from_millis(100));
    let cap = min
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_BACKOFF)
        .max(min);
    let secs = rand::thread_rng().gen_range(min.as_secs_f64()..=cap.as_secs_f64());
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_carries_macs_and_node_uuid() {
        let r = LookupRequest {
            macs: vec!["52:54:00:00:0a:01".into(), "52:54:00:00:0a:02".into()],
            node_uuid: Some("n-1".into()),
        };
        assert_eq!(
            r.path(),
            "/v1/lookup?addresses=52%3A54%3A00%3A00%3A0a%3A01%2C52%3A54%3A00%3A00%3A0a%3A02&node_uuid=n-1"
        );
    }

    #[test]
    fn parses_current_and_old_replies() {
        let r = parse_reply(
            json!({"node": {"uuid": "u"}, "config": {"heartbeat_timeout": 10, "agent_token": "t", "unknown": 1}}),
        )
        .unwrap();
        assert_eq!(r.node_uuid(), "u");
        assert_eq!(r.config.heartbeat_timeout, 10.0);
        assert_eq!(r.config.agent_token.as_deref(), Some("t"));
        let old = parse_reply(json!({"node": {"uuid": "u"}, "heartbeat_timeout": 300})).unwrap();
        assert_eq!(old.config.heartbeat_timeout, 300.0);
    }

    #[test]
    fn rejects_unusable_replies() {
        for body in [
            json!({}),
            json!({"node": {}}),
            json!({"node": {"uuid": "u"}}),
            json!({"node": {"uuid": "u"}, "config": {"heartbeat_timeout": -1}}),
        ] {
            assert!(parse_reply(body.clone()).is_err(), "{body}");
        }
    }

    #[test]
    fn backoff_stays_between_the_interval_and_sixty_seconds() {
        for attempt in 0..30 {
            let w = backoff(attempt, Duration::from_secs(1));
            assert!(w >= Duration::from_secs(1) && w <= MAX_BACKOFF, "{w:?}");
        }
        assert!(backoff(0, Duration::from_secs(1)) <= Duration::from_secs(1));
    }
}
