//! Inspection at startup (contract §10): run the configured collectors in order, post the data
//! to the inspector or Ironic, and hand the node UUID from the reply to the lookup.
//!
//! Collector failures are gathered into the body's `error` field, not raised: the data is posted
//! anyway, and Ironic's `ramdisk-error` hook decides what the failure means. Unlike IPA, an
//! unknown collector name does not void the whole inspection: it is one more listed failure.

use crate::collectors::{Collected, CollectorInput};
use crate::config::Config;
use crate::context::AgentContext;
use crate::hardware::{HostRoot, Inventory};
use crate::ironic::inspection::{post_inspection, InspectionOutcome};
use crate::ironic::IronicClient;
use crate::state::InspectionRecord;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// Builds the inspection body by running `collectors` in order, each on a blocking thread.
pub async fn collect(
    ctx: &Arc<AgentContext>,
    inventory: &Inventory,
    collectors: &[String],
) -> Value {
    let inventory = Arc::new(inventory.clone());
    let mut data = Map::new();
    let mut errors: Vec<String> = Vec::new();
    for name in collectors {
        match run_collector(ctx, &inventory, name).await {
            Ok(collected) => {
                tracing::info!("inspection collector {name} finished");
                data.extend(collected);
            }
            Err(e) => {
                tracing::error!("inspection collector {name} failed: {e}");
                errors.push(format!("collector {name} failed: {e}"));
            }
        }
    }
    let error = match errors.is_empty() {
        true => Value::Null,
        false => json!(format!(
            "The following errors were encountered:\n* {}",
            errors.join("\n* ")
        )),
    };
    data.insert("error".into(), error);
    Value::Object(data)
}

async fn run_collector(
    ctx: &Arc<AgentContext>,
    inventory: &Arc<Inventory>,
    name: &str,
) -> Result<Collected, String> {
    let Some(collector) = ctx.collectors.get(name) else {
        return Err(format!(
            "{name} is not a collector this agent implements (known: {})",
            ctx.collectors.names().join(", ")
        ));
    };
    let (c, inv) = (ctx.clone(), inventory.clone());
    tokio::task::spawn_blocking(move || {
        collector.collect(&CollectorInput {
            host: &c.host,
            config: &c.config,
            state_dir: c.state.path(),
            inventory: &inv,
        })
    })
    .await
    .map_err(|e| format!("the collector stopped unexpectedly: {e}"))?
}

/// Waits for DHCP before inspecting (contract §1.2): the BOOTIF NIC, or every NIC when
/// `ipa-inspection-dhcp-all-interfaces` is set. Without BOOTIF there is nothing to wait for.
pub async fn wait_for_dhcp(host: &HostRoot, config: &Config) {
    if config.inspection_dhcp_wait_timeout.is_zero() {
        return;
    }
    let names = crate::hardware::nics::interface_names(host);
    let ifaces: Vec<String> = if config.inspection_dhcp_all_interfaces {
        names
    } else if let Some(mac) = config.bootif_mac() {
        names
            .into_iter()
            .filter(|n| interface_mac(host, n).is_some_and(|m| m.eq_ignore_ascii_case(&mac)))
            .collect()
    } else {
        tracing::warn!(
            "no PXE boot interface known (BOOTIF); not waiting for DHCP before inspection"
        );
        return;
    };
    if !ifaces.is_empty() {
        crate::net::wait_for_ipv4(&ifaces, config.inspection_dhcp_wait_timeout).await;
    }
}

fn interface_mac(host: &HostRoot, name: &str) -> Option<String> {
    std::fs::read_to_string(host.path(&format!("/sys/class/net/{name}/address")))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Runs inspection; returns the node UUID the inspector or Ironic named, if any.
pub async fn inspect(
    ctx: &Arc<AgentContext>,
    inventory: &Inventory,
    tls: rustls::ClientConfig,
) -> Option<String> {
    if let Some(done) = ctx.state.load_inspection() {
        tracing::info!(
            "inspection data was accepted earlier in this boot (node {}); not posting it again",
            done.node_uuid.as_deref().unwrap_or("not named")
        );
        return done.node_uuid;
    }
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
            // As IPA: collector failures count after the post, and then the node UUID is not
            // used for lookup.
            let uuid = if body["error"].is_string() {
                tracing::error!(
                    "inspection finished with collector errors: {}",
                    body["error"]
                );
                None
            } else {
                uuid
            };
            ctx.state.save_inspection(&InspectionRecord {
                node_uuid: uuid.clone(),
            });
            uuid
        }
        InspectionOutcome::Failed(e) => {
            tracing::error!("inspection failed, proceeding with lookup: {e}");
            None
        }
    }
}
