//! Telling Ironic we are alive: `POST /v1/heartbeat/{node}` and its schedule (contract §5).
//!
//! The schedule runs on the monotonic clock (IPA uses wall time, so a clock step by NTP during a
//! step could delay heartbeats). After a success the next heartbeat is due after
//! `heartbeat_timeout × U(0.3, 0.6)`, after any failure after `5 × U(1, 2)` s, and a heartbeat
//! forced by a finished asynchronous command goes out as soon as 5 s have passed since the
//! previous one, so several close requests merge into one.

use super::client::{
    IronicClient, IronicError, AGENT_VERSION_VERSION, HEARTBEAT_VERSION, LOOKUP_VERSION,
};
use crate::config::ApiVersion;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Forced heartbeats are merged so that at most one goes out per this period.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// What goes into every heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatBody {
    pub callback_url: String,
    pub agent_token: Option<String>,
    pub agent_version: String,
    /// The PEM of the auto-TLS certificate, when the agent made one.
    pub agent_verify_ca: Option<String>,
}

impl HeartbeatBody {
    /// The JSON body for API `version`: fields the server's version does not know are left out,
    /// since Ironic answers 400 to a field sent at too low a version.
    pub fn to_json(&self, version: ApiVersion) -> Value {
        let mut m = Map::new();
        m.insert("callback_url".into(), json!(self.callback_url));
        if version >= LOOKUP_VERSION {
            m.insert("agent_token".into(), json!(self.agent_token));
        }
        if version >= AGENT_VERSION_VERSION {
            m.insert("agent_version".into(), json!(self.agent_version));
        }
        if version >= HEARTBEAT_VERSION {
            if let Some(pem) = &self.agent_verify_ca {
                m.insert("agent_verify_ca".into(), json!(pem));
            }
        }
        Value::Object(m)
    }
}

/// Sends one heartbeat. Only 202 is success.
pub async fn heartbeat_once(
    client: &IronicClient,
    node_uuid: &str,
    body: &HeartbeatBody,
) -> Result<(), IronicError> {
    let version = client.negotiate(HEARTBEAT_VERSION).await;
    let path = format!("/v1/heartbeat/{node_uuid}");
    let reply = client
        .send(
            Method::POST,
            &path,
            Some(version),
            Some(&body.to_json(version)),
        )
        .await?;
    if reply.status == StatusCode::ACCEPTED {
        Ok(())
    } else {
        Err(reply.into_error(&format!("the heartbeat for node {node_uuid}")))
    }
}

/// True when Ironic refused the heartbeat because it no longer knows our token (it wipes it at
/// the end of a deploy or a cleaning without fast track); a new lookup can get a fresh one.
pub fn is_token_rejection(e: &IronicError) -> bool {
    matches!(e, IronicError::Status { status: 400, message, .. } if message.to_ascii_lowercase().contains("agent token"))
}

/// When the next heartbeat is due.
#[derive(Debug, Clone)]
pub struct Schedule {
    previous: Option<Instant>,
    interval: Duration,
    forced: bool,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::new()
    }
}

impl Schedule {
    /// The first heartbeat is due immediately.
    pub fn new() -> Self {
        Self {
            previous: None,
            interval: Duration::ZERO,
            forced: false,
        }
    }

    /// A finished asynchronous command wants Ironic to look soon.
    pub fn force(&mut self) {
        self.forced = true;
    }

    pub fn is_forced(&self) -> bool {
        self.forced
    }

    /// The instant the next heartbeat is due.
    pub fn due_at(&self) -> Option<Instant> {
        let prev = self.previous?;
        let normal = prev + self.interval;
        Some(if self.forced {
            normal.min(prev + MIN_HEARTBEAT_INTERVAL)
        } else {
            normal
        })
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.due_at().is_none_or(|at| now >= at)
    }

    pub fn succeeded(&mut self, now: Instant, heartbeat_timeout: Duration) {
        self.previous = Some(now);
        self.forced = false;
        self.interval = jitter(heartbeat_timeout, 0.3, 0.6);
    }

    /// Any failure: retry in 5-10 s. A forced heartbeat stays forced until one succeeds.
    pub fn failed(&mut self, now: Instant) {
        self.previous = Some(now);
        self.interval = jitter(MIN_HEARTBEAT_INTERVAL, 1.0, 2.0);
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }
}

fn jitter(base: Duration, low: f64, high: f64) -> Duration {
    base.mul_f64(rand::thread_rng().gen_range(low..=high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> HeartbeatBody {
        HeartbeatBody {
            callback_url: "https://192.0.2.10:9999".into(),
            agent_token: Some("t".into()),
            agent_version: "0.1.0".into(),
            agent_verify_ca: Some("PEM".into()),
        }
    }

    #[test]
    fn body_fields_follow_the_api_version() {
        let full = body().to_json(ApiVersion(1, 68));
        assert_eq!(full["agent_verify_ca"], "PEM");
        assert_eq!(full["agent_token"], "t");
        let v62 = body().to_json(ApiVersion(1, 62));
        assert!(v62.get("agent_verify_ca").is_none());
        assert_eq!(v62["agent_version"], "0.1.0");
        let v31 = body().to_json(ApiVersion(1, 31));
        assert_eq!(
            v31.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["callback_url"]
        );
    }

    #[test]
    fn first_heartbeat_is_immediate_then_jittered() {
        let mut s = Schedule::new();
        let t0 = Instant::now();
        assert!(s.is_due(t0));
        s.succeeded(t0, Duration::from_secs(300));
        assert!(
            s.interval() >= Duration::from_secs(90) && s.interval() <= Duration::from_secs(180)
        );
        assert!(!s.is_due(t0 + Duration::from_secs(89)));
        assert!(s.is_due(t0 + Duration::from_secs(181)));
    }

    #[test]
    fn failures_retry_in_five_to_ten_seconds() {
        let mut s = Schedule::new();
        let t0 = Instant::now();
        s.failed(t0);
        assert!(s.interval() >= Duration::from_secs(5) && s.interval() <= Duration::from_secs(10));
    }

    #[test]
    fn forced_heartbeats_merge_within_five_seconds() {
        let mut s = Schedule::new();
        let t0 = Instant::now();
        s.succeeded(t0, Duration::from_secs(300));
        s.force();
        s.force();
        assert!(!s.is_due(t0 + Duration::from_secs(4)));
        assert!(s.is_due(t0 + Duration::from_secs(5)));
        s.succeeded(t0 + Duration::from_secs(5), Duration::from_secs(300));
        assert!(!s.is_forced());
        assert!(!s.is_due(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn forced_flag_survives_a_failed_heartbeat() {
        let mut s = Schedule::new();
        let t0 = Instant::now();
        s.force();
        s.failed(t0);
        assert!(s.is_forced());
    }

    #[test]
    fn recognises_token_rejections() {
        let e = IronicError::Status {
            operation: "hb".into(),
            status: 400,
            message: "Invalid or missing agent token received.".into(),
        };
        assert!(is_token_rejection(&e));
        let tls = IronicError::Status {
            operation: "hb".into(),
            status: 400,
            message: "TLS is required by configuration".into(),
        };
        assert!(!is_token_rejection(&tls));
    }
}
