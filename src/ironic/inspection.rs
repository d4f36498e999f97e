//! Posting inspection data: to `ipa-inspection-callback-url` (legacy ironic-inspector's
//! `/v1/continue`) or to Ironic's built-in `/v1/continue_inspection` (contract §10.4).
//!
//! No API version header is sent, as IPA does: with 1.84 or higher Ironic would hand the token
//! out here, and the later lookup would get `******`.

use super::client::{IronicClient, IronicError};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Attempts for connection errors, 404, 409 and 5xx, with waits growing ×1.5 from 5 s up to
/// 30 s: 66 s in all, longer than Ironic's 60 s `[conductor]power_state_change_timeout` (IPA
/// makes 5 attempts, 41 s, and does not retry 404; see [`is_retryable`]).
const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_secs(5);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How posting ended.
#[derive(Debug, PartialEq)]
pub enum InspectionOutcome {
    /// Accepted; the node UUID when the reply named one.
    Accepted(Option<String>),
    /// Refused or unreachable: the agent goes on to lookup without a node UUID.
    Failed(String),
}

/// Posts `body` to the inspection endpoint `client` was built for (its URLs are complete).
pub async fn post_inspection(client: &IronicClient, body: &Value) -> InspectionOutcome {
    post_with_waits(client, body, FIRST_WAIT).await
}

async fn post_with_waits(
    client: &IronicClient,
    body: &Value,
    first_wait: Duration,
) -> InspectionOutcome {
    let mut wait = first_wait;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match post_once(client, body).await {
            Ok(uuid) => return InspectionOutcome::Accepted(uuid),
            Err(e) if is_retryable(&e) => last = e.to_string(),
            Err(e) => return InspectionOutcome::Failed(e.to_string()),
        }
        if attempt < ATTEMPTS {
            tracing::warn!("{last}; retrying in {} s", wait.as_secs_f32());
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(1.5).min(MAX_WAIT);
        }
    }
    InspectionOutcome::Failed(format!("{last} (gave up after {ATTEMPTS} attempts)"))
}

async fn post_once(client: &IronicClient, body: &Value) -> Result<Option<String>, IronicError> {
    let op = "posting the inspection data";
    let reply = client.send(Method::POST, "", None, Some(body)).await?;
    if !reply.status.is_success() {
        return Err(reply.into_error(op));
    }
    // Both the inspector and Ironic answer {"uuid": ...}; an empty body is still a success.
    let uuid = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v["uuid"].as_str().map(str::to_string));
    Ok(uuid)
}

/// As IPA, plus 404: Ironic answers 404 both for a node it does not know and for a node that
/// is still `inspecting`, i.e. whose conductor has not returned from powering it on. A ramdisk
/// that boots in seconds (this one, with a BMC that reports power-on late) posts before Ironic
/// enters `inspect wait`; IPA, booting for a minute or more, never meets that window.
fn is_retryable(e: &IronicError) -> bool {
    match e {
        IronicError::Unreachable { .. } => true,
        IronicError::Status { status, .. } => *status == 404 || *status == 409 || *status >= 500,
        IronicError::Body { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rules_are_ipas_plus_not_found() {
        let st = |status| IronicError::Status {
            operation: "p".into(),
            status,
            message: "m".into(),
        };
        assert!(is_retryable(&st(409)));
        assert!(is_retryable(&st(503)));
        assert!(!is_retryable(&st(400)));
        assert!(is_retryable(&st(404)));
        assert!(!is_retryable(&st(403)));
        assert!(is_retryable(&IronicError::Unreachable {
            urls: "u".into(),
            reason: "r".into()
        }));
    }
}
