//! Inspection at startup (contract §10): run the configured collectors in order, post the data
//! to the inspector or Ironic, and hand the node UUID from the reply to the lookup.
//!
//! Collector failures are gathered into the body's `error` field, not raised: the data is posted
//! anyway, and Ironic's `ramdisk-error` hook decides what the failure means.

use crate::config::Config;
use crate::context::AgentContext;
use crate::hardware::Inventory;
use crate::ironic::inspection::{post_inspection, InspectionOutcome};
use crate::ironic::IronicClient;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The collectors this agent implements, in the names IPA uses.
pub const KNOWN_COLLECTORS: &[&str] = &["default", "logs"];

/// Builds the inspection body by running `collectors` in order.
pub async fn collect(
    ctx: &Arc<AgentContext>,
    inventory: &Inventory,
    collectors: &[String],
) -> Value {
    let mut data = Map::new();
    let mut errors: Vec<String> = Vec::new();
    for name in collectors {
        match run_collector(ctx, inventory, name, &mut data).await {
            Ok(()) => tracing::info!("inspection collector {name} finished"),
            Err(e) => {
                tracing::error!("inspection collector {name} failed: {e}");
                errors.push(format!("collector {name} failed: {e}"));
            }
        }
    }
    data.insert(
        "error".into(),
        if errors.is_empty() {
            Value::Null
        } else {
            json!(format!(
                "The following errors were encountered:\n* {}",
                errors.join("\n* ")
            ))
        },
    );
    Value::Object(data)
}

async fn run_collector(
    ctx: &Arc<AgentContext>,
    inventory: &Inventory,
    name: &str,
    data: &mut Map<String, Value>,
) -> Result<(), String> {
    match name {
        "default" => {
            wait_for_dhcp(&ctx.config).await;
            data.insert(
                "inventory".into(),
                serde_json::to_value(inventory).map_err(|e| e.to_string())?,
            );
            data.insert("boot_interface".into(), json!(ctx.config.bootif));
            data.insert(
                "configuration".into(),
                json!({
                    "collectors": ctx.config.collectors(),
                    "managers": [{"name": crate::steps::MANAGER_NAME, "version": crate::steps::MANAGER_VERSION}],
                }),
            );
            Ok(())
        }
        "logs" => {
            let c = ctx.clone();
            let archive = tokio::task::spawn_blocking(move || {
                crate::logs::archive_base64(&crate::logs::collect_entries(&c.host, c.state.path()))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            data.insert("logs".into(), json!(archive));
            Ok(())
        }
        other => Err(format!(
            "{other} is not a collector this agent implements (known: {})",
            KNOWN_COLLECTORS.join(", ")
        )),
    }
}

/// Waits for DHCP before inspecting: the BOOTIF NIC, or every NIC with a MAC when
/// `ipa-inspection-dhcp-all-interfaces` is set (or BOOTIF is unknown).
async fn wait_for_dhcp(config: &Config) {
    if config.inspection_dhcp_wait_timeout.is_zero() {
        return;
    }
    let ifaces: Vec<String> = match (config.inspection_dhcp_all_interfaces, config.bootif_mac()) {
        (false, Some(mac)) => interface_with_mac(&mac).into_iter().collect(),
        _ => physical_interfaces(),
    };
    if !ifaces.is_empty() {
        crate::net::wait_for_ipv4(&ifaces, config.inspection_dhcp_wait_timeout).await;
    }
}

fn physical_interfaces() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| e.path().join("device").exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

fn interface_with_mac(mac: &str) -> Option<String> {
    std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .find_map(|e| {
            let addr = std::fs::read_to_string(e.path().join("address")).ok()?;
            (addr.trim().eq_ignore_ascii_case(mac))
                .then(|| e.file_name().into_string().ok())
                .flatten()
        })
}

/// Runs inspection; returns the node UUID the inspector or Ironic named, if any.
pub async fn inspect(
    ctx: &Arc<AgentContext>,
    inventory: &Inventory,
    tls: rustls::ClientConfig,
) -> Option<String> {
    let targets = ctx.config.inspection_targets();
    let body = collect(ctx, inventory, &ctx.config.collectors()).await;
    let client = match IronicClient::new(
        targets.clone(),
        tls,
        ctx.config.http_request_timeout,
        ctx.config.global_request_id.clone(),
        None,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("inspection is not possible: {e}");
            return None;
        }
    };
    tracing::info!("posting inspection data to {}", targets.join(", "));
    match post_inspection(&client, &body).await {
        InspectionOutcome::Accepted(uuid) => {
            tracing::info!(
                "inspection data accepted; node {}",
                uuid.as_deref().unwrap_or("(not named)")
            );
            if body["error"].is_string() {
                // As IPA: collector failures are reported after the post, and then the node UUID
                // is not used for lookup.
                tracing::error!(
                    "inspection finished with collector errors: {}",
                    body["error"]
                );
                return None;
            }
            uuid
        }
        InspectionOutcome::Failed(e) => {
            tracing::error!("inspection failed, proceeding with lookup: {e}");
            None
        }
    }
}
