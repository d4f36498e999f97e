//! Inspection at startup (contract §10): run the configured collectors in order, post the data
//! to the inspector or Ironic, and hand the node UUID from the reply to the lookup.
//!
//! Collector failures are gathered into the body's `error` field, not raised: the data is posted
//! anyway, and Ironic's `ramdisk-error` hook decides what the failure means. Unlike IPA, an
//! unknown collector name does not void the whole inspection: it is one more listed failure.

use crate::config::Config;
use crate::context::AgentContext;
use crate::hardware::{HostRoot, Inventory};
use crate::ironic::inspection::{post_inspection, InspectionOutcome};
use crate::ironic::IronicClient;
use crate::state::InspectionRecord;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The collectors this agent implements, in the names IPA uses.
pub const KNOWN_COLLECTORS: &[&str] = &[
    "default",
    "logs",
    "pci-devices",
    "numa-topology",
    "dmi-decode",
    "lldp",
];

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
    inventory: &Inventory,
    name: &str,
    data: &mut Map<String, Value>,
) -> Result<(), String> {
    let (key, value) = match name {
        "default" => return default_collector(ctx, inventory, data),
        "logs" => {
            let archive = blocking(ctx, |host, _, state| {
                crate::logs::archive_base64(&crate::logs::collect_entries(host, state))
                    .map_err(|e| e.to_string())
            });
            ("logs", Value::String(archive.await?))
        }
        "pci-devices" => {
            let v = blocking(ctx, |host, _, _| {
                crate::hardware::pci::pci_devices(host).map_err(|e| e.to_string())
            });
            ("pci_devices", v.await?)
        }
        "numa-topology" => {
            let v = blocking(ctx, |host, _, _| {
                Ok(crate::hardware::numa::numa_topology(host))
            });
            match v.await? {
                Ok(v) => ("numa_topology", v),
                // As IPA: missing or odd NUMA data is logged and left out, not a failure.
                Err(e) => {
                    tracing::warn!("leaving numa_topology out of the inspection data: {e}");
                    return Ok(());
                }
            }
        }
        "dmi-decode" => {
            let v = blocking(ctx, |host, _, _| {
                crate::hardware::dmi_decode::dmi_decode(host).map_err(|e| e.to_string())
            });
            ("dmi", v.await?)
        }
        "lldp" => {
            let v = blocking(ctx, |host, config, _| {
                // IPA listens on the interfaces it inventories: physical, VLANs and bonds.
                let names = crate::hardware::nics::interface_names(host);
                Ok(crate::hardware::lldp::lldp_raw(&names, config.lldp_timeout))
            });
            ("lldp_raw", v.await?)
        }
        other => {
            return Err(format!(
                "{other} is not a collector this agent implements (known: {})",
                KNOWN_COLLECTORS.join(", ")
            ))
        }
    };
    data.insert(key.into(), value);
    Ok(())
}

/// `inventory`, `root_disk`, `boot_interface` and `configuration`, as IPA's default collector.
fn default_collector(
    ctx: &AgentContext,
    inventory: &Inventory,
    data: &mut Map<String, Value>,
) -> Result<(), String> {
    data.insert(
        "inventory".into(),
        serde_json::to_value(inventory).map_err(|e| e.to_string())?,
    );
    // The disk a deploy without hints would pick, so Ironic's root-device hook agrees with it.
    match crate::hardware::guess_root_disk(&inventory.disks) {
        Ok(disk) => {
            data.insert(
                "root_disk".into(),
                serde_json::to_value(disk).map_err(|e| e.to_string())?,
            );
        }
        Err(e) => tracing::warn!("no suitable root device detected: {e}"),
    }
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

/// Runs a blocking collector off the async workers.
async fn blocking<F, T>(ctx: &Arc<AgentContext>, f: F) -> Result<T, String>
where
    F: FnOnce(&HostRoot, &Config, &std::path::Path) -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    let c = ctx.clone();
    tokio::task::spawn_blocking(move || f(&c.host, &c.config, c.state.path()))
        .await
        .map_err(|e| e.to_string())?
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
