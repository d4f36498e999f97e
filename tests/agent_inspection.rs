//! Inspection at startup against a fake Ironic's /v1/continue_inspection.

mod support;

use std::time::Duration;
use support::agent::*;
use support::fake_ironic::{Canned, FakeIronic, NODE_UUID};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn posts_inventory_then_looks_up_with_the_node_uuid() {
    let ironic = FakeIronic::start().await;
    let host = fixture_host(&[("vda", 5 << 30)]);
    let state = tempdir();
    let extra = format!(
        "ipa-inspection-callback-url={}/v1/continue_inspection ipa-inspection-collectors=default,logs,pci-devices \
         BOOTIF=01-52-54-00-12-34-56 ipa-inspection-dhcp-wait-timeout=0",
        ironic.url
    );
    let _agent = start_agent_with_host(&ironic, &state_path(&state), host.path(), &extra);
    ironic.wait_for("/v1/heartbeat/", 202, 1, T).await;
    let post = &ironic.requests("/v1/continue_inspection")[0];
    assert_eq!(
        post.version, None,
        "inspection must not send an API version"
    );
    let b = &post.body;
    assert_eq!(
        b["inventory"]["interfaces"][0]["mac_address"],
        "52:54:00:12:34:56"
    );
    assert_eq!(b["root_disk"]["name"], "/dev/vda");
    assert_eq!(b["boot_interface"], "01-52-54-00-12-34-56");
    assert_eq!(
        b["inventory"]["boot"]["pxe_interface"],
        "01-52-54-00-12-34-56"
    );
    assert_eq!(
        b["configuration"]["collectors"],
        serde_json::json!(["default", "logs", "pci-devices"])
    );
    assert!(b["logs"].as_str().is_some_and(|l| !l.is_empty()));
    assert!(b["pci_devices"].is_array());
    assert_eq!(b["error"], serde_json::Value::Null);
    let lookup = &ironic.requests("/v1/lookup")[0];
    assert!(
        lookup.query.contains(&format!("node_uuid={NODE_UUID}")),
        "{}",
        lookup.query
    );
}

#[tokio::test]
async fn collector_failures_are_reported_and_lookup_goes_on_without_the_uuid() {
    let ironic = FakeIronic::start().await;
    let host = fixture_host(&[("vda", 5 << 30)]);
    let state = tempdir();
    let extra = format!(
        "ipa-inspection-callback-url={}/v1/continue_inspection ipa-inspection-collectors=default,extra-hardware,dmi-decode",
        ironic.url
    );
    let _agent = start_agent_with_host(&ironic, &state_path(&state), host.path(), &extra);
    ironic.wait_for("/v1/heartbeat/", 202, 1, T).await;
    let post = &ironic.requests("/v1/continue_inspection")[0];
    let error = post.body["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "The following errors were encountered:\n* collector extra-hardware failed"
        ),
        "{error}"
    );
    assert!(
        post.body["inventory"].is_object(),
        "the other collectors still ran"
    );
    assert!(!ironic.requests("/v1/lookup")[0].query.contains("node_uuid"));
}

/// Ironic answers 404 while the node is still `inspecting` (its conductor has not returned from
/// the power-on): a ramdisk that boots faster than the BMC reports power must retry, and once
/// the data is accepted, a restarted agent must not post it again.
#[tokio::test]
async fn not_found_while_ironic_powers_on_is_retried_and_not_repeated_after_a_restart() {
    let ironic = FakeIronic::start().await;
    ironic.script(|s| {
        s.inspections
            .push_back(Canned::error(404, "Resource could not be found."))
    });
    let host = fixture_host(&[("vda", 5 << 30)]);
    let state = tempdir();
    let extra = format!(
        "ipa-inspection-callback-url={}/v1/continue_inspection ipa-inspection-dhcp-wait-timeout=0",
        ironic.url
    );
    let agent = start_agent_with_host(&ironic, &state_path(&state), host.path(), &extra);
    ironic.wait_for("/v1/heartbeat/", 202, 1, T).await;
    let posts = ironic.requests("/v1/continue_inspection");
    assert_eq!(posts.len(), 2, "one 404, then accepted");
    assert!(ironic.requests("/v1/lookup")[0]
        .query
        .contains(&format!("node_uuid={NODE_UUID}")));
    drop(agent);

    let again = start_agent_with_host(&ironic, &state_path(&state), host.path(), &extra);
    ironic.wait_for("/v1/heartbeat/", 202, 2, T).await;
    assert_eq!(ironic.requests("/v1/continue_inspection").len(), 2);
    drop(again);
}
