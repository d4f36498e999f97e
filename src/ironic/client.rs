//! The conductor-facing HTTP client: failover across API URLs, Ironic's error bodies, and the API
//! version negotiation (contract §3).

use crate::config::ApiVersion;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;

/// The version IPA assumes for one call when the probe fails.
pub const FALLBACK_VERSION: ApiVersion = ApiVersion(1, 31);
/// Lookup with a token needs 1.62; heartbeat with `agent_verify_ca` needs 1.68.
pub const LOOKUP_VERSION: ApiVersion = ApiVersion(1, 62);
pub const HEARTBEAT_VERSION: ApiVersion = ApiVersion(1, 68);
/// `agent_version` in heartbeats exists from 1.36.
pub const AGENT_VERSION_VERSION: ApiVersion = ApiVersion(1, 36);

#[derive(Debug, thiserror::Error)]
pub enum IronicError {
    /// No URL gave an HTTP answer.
    #[error("could not reach Ironic at {urls}: {reason}")]
    Unreachable { urls: String, reason: String },
    /// Ironic answered with an error status.
    #[error("{operation} was refused by Ironic with HTTP {status}: {message}")]
    Status {
        operation: String,
        status: u16,
        message: String,
    },
    /// Ironic answered, but not with what we need.
    #[error("{operation} got an unusable answer from Ironic: {reason}")]
    Body { operation: String, reason: String },
}

impl IronicError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A response that was received (from whichever URL answered).
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, or a clear error naming the operation.
    pub fn json(&self, operation: &str) -> Result<Value, IronicError> {
        serde_json::from_slice(&self.body).map_err(|e| IronicError::Body {
            operation: operation.to_string(),
            reason: format!("the body is not JSON ({e})"),
        })
    }

    /// The error this reply represents.
    pub fn into_error(self, operation: &str) -> IronicError {
        IronicError::Status {
            operation: operation.to_string(),
            status: self.status.as_u16(),
            message: decode_error_body(&self.body),
        }
    }
}

/// The HTTP client for one or more Ironic API (or inspector) URLs.
pub struct IronicClient {
    http: reqwest::Client,
    /// Tried in order; the one that last answered is moved to the front.
    urls: Mutex<Vec<String>>,
    request_id: Option<String>,
    forced_version: Option<ApiVersion>,
    server_max: Mutex<Option<ApiVersion>>,
}

impl IronicClient {
    pub fn new(
        urls: Vec<String>,
        tls: rustls::ClientConfig,
        timeout: Duration,
        request_id: Option<String>,
        forced_version: Option<ApiVersion>,
    ) -> Result<Self, IronicError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(2)
            .user_agent(concat!("ironic-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IronicError::Unreachable {
                urls: urls.join(", "),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            urls: Mutex::new(urls),
            request_id,
            forced_version,
            server_max: Mutex::new(None),
        })
    }

    pub fn urls(&self) -> Vec<String> {
        self.urls.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Sends a request to each URL in turn until one gives any HTTP answer (contract §3.1).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        version: Option<ApiVersion>,
        body: Option<&Value>,
    ) -> Result<Reply, IronicError> {
        let urls = self.urls();
        let mut last_error = String::from("no URL is configured");
        for base in &urls {
            let mut req = self
                .http
                .request(method.clone(), format!("{base}{path}"))
                .header("Accept", "application/json");
            if let Some(id) = &self.request_id {
                req = req.header("X-OpenStack-Request-ID", id);
            }
            if let Some(v) = version {
                req = req.header("X-OpenStack-Ironic-API-Version", v.to_string());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.bytes().await {
                        Ok(bytes) => {
                            self.promote(base);
                            return Ok(Reply {
                                status,
                                body: bytes.to_vec(),
                            });
                        }
                        Err(e) => {
                            last_error =
                                format!("{base}: reading the reply failed: {}", describe(&e))
                        }
                    }
                }
                Err(e) => last_error = format!("{base}: {}", describe(&e)),
            }
            tracing::debug!("{method} {path} failed, trying the next URL: {last_error}");
        }
        Err(IronicError::Unreachable {
            urls: urls.join(", "),
            reason: last_error,
        })
    }

    fn promote(&self, base: &str) {
        if let Ok(mut urls) = self.urls.lock() {
            if let Some(pos) = urls.iter().position(|u| u == base) {
                let u = urls.remove(pos);
                urls.insert(0, u);
            }
        }
    }

    /// The API version to send: `ipa-ironic-api-version`, else `min(server max, wanted)`.
    /// A failed probe means 1.31 for this call only and a new probe next time (as IPA).
    pub async fn negotiate(&self, wanted: ApiVersion) -> ApiVersion {
        if let Some(v) = self.forced_version {
            return v;
        }
        match self.server_max().await {
            Ok(max) => max.min(wanted),
            Err(e) => {
                tracing::warn!("could not detect Ironic's API version ({e}); using {FALLBACK_VERSION} for this call");
                FALLBACK_VERSION
            }
        }
    }

    /// Ironic's maximum API version, probed once with `GET /` and cached.
    pub async fn server_max(&self) -> Result<ApiVersion, IronicError> {
        if let Some(v) = self.server_max.lock().ok().and_then(|g| *g) {
            return Ok(v);
        }
        let op = "the API version probe (GET /)";
        let reply = self.send(Method::GET, "/", None, None).await?;
        if !reply.status.is_success() {
            return Err(reply.into_error(op));
        }
        let doc = reply.json(op)?;
        let v = doc["default_version"]["version"]
            .as_str()
            .and_then(ApiVersion::parse)
            .ok_or_else(|| IronicError::Body {
                operation: op.into(),
                reason: "it has no default_version.version".into(),
            })?;
        if let Ok(mut g) = self.server_max.lock() {
            *g = Some(v);
        }
        Ok(v)
    }
}

/// A short description of a transport error, with its cause chain (reqwest hides the useful part).
fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Ironic wraps errors as `{"error_message": "<json>"}` whose inner JSON has `faultstring`
/// (contract §3.4); the inspector uses `{"error": {"message": ...}}`. Falls back to the raw text.
pub fn decode_error_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body).trim().to_string();
    let Ok(outer) = serde_json::from_str::<Value>(&text) else {
        return if text.is_empty() {
            "(empty body)".to_string()
        } else {
            text
        };
    };
    let inner = match &outer["error_message"] {
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.clone())),
        Value::Null => outer.clone(),
        other => other.clone(),
    };
    for key in ["faultstring", "title"] {
        if let Some(s) = inner[key].as_str() {
            return s.to_string();
        }
    }
    if let Some(s) = inner["error"]["message"].as_str() {
        return s.to_string();
    }
    match inner {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ironic_error_bodies() {
        let body = br#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Node 62d0 is locked by host c1, please retry after the current operation is completed.\", \"debuginfo\": null}"}"#;
        assert_eq!(
            decode_error_body(body),
            "Node 62d0 is locked by host c1, please retry after the current operation is completed."
        );
        assert_eq!(
            decode_error_body(br#"{"error_message": "{\"title\": \"Not Found\"}"}"#),
            "Not Found"
        );
        assert_eq!(
            decode_error_body(br#"{"error": {"message": "no node"}}"#),
            "no node"
        );
        assert_eq!(decode_error_body(b"plain text"), "plain text");
        assert_eq!(decode_error_body(b""), "(empty body)");
    }
}
