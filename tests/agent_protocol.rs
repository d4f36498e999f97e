//! The agent against a fake conductor: lookup, auto-TLS heartbeats, the agent API as Ironic
//! calls it, and the recovery paths (409, token wiped, agent restarted).

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::agent::*;
use support::fake_ironic::{Canned, FakeIronic, NODE_UUID, TOKEN};

const T: Duration = Duration::from_secs(20);

/// Starts an agent and returns it with a conductor-side client, after its first heartbeat.
async fn agent_with_conductor(
    ironic: &FakeIronic,
    dir: &tempfile::TempDir,
) -> (RunningAgent, Conductor, Value) {
    let agent = start_agent(ironic, &state_path(dir), "");
    let hb = ironic.wait_for("/v1/heartbeat/", 202, 1, T).await.remove(0);
    let conductor = Conductor::new(agent.port, hb.body["agent_verify_ca"].as_str().unwrap());
    (agent, conductor, hb.body)
}

#[tokio::test]
async fn looks_up_then_heartbeats_over_auto_tls() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let (agent, _c, hb) = agent_with_conductor(&ironic, &dir).await;
    let lookup = &ironic.requests("/v1/lookup")[0];
    assert_eq!(lookup.version.as_deref(), Some("1.62"));
    assert!(lookup.query.contains("addresses="), "{}", lookup.query);
    let beat = &ironic.requests("/v1/heartbeat/")[0];
    assert_eq!(beat.path, format!("/v1/heartbeat/{NODE_UUID}"));
    assert_eq!(beat.version.as_deref(), Some("1.68"));
    assert_eq!(
        hb["callback_url"],
        format!("https://127.0.0.1:{}", agent.port)
    );
    assert_eq!(hb["agent_token"], TOKEN);
    assert_eq!(hb["agent_version"], ironic_agent::version());
    assert!(hb["agent_verify_ca"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
}

#[tokio::test]
async fn heartbeats_keep_coming_with_the_same_certificate() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let _agent = start_agent(&ironic, &state_path(&dir), "");
    // heartbeat_timeout 2 s -> every 0.6-1.2 s.
    let beats = ironic.wait_for("/v1/heartbeat/", 202, 3, T).await;
    let pems: Vec<&Value> = beats.iter().map(|b| &b.body["agent_verify_ca"]).collect();
    assert!(pems.windows(2).all(|w| w[0] == w[1]));
    for w in beats.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_millis(1500),
            "{gap:?}"
        );
    }
}

#[tokio::test]
async fn conductor_round_trip_of_step_listing() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let (_agent, c, _) = agent_with_conductor(&ironic, &dir).await;
    let (status, r) = c
        .post(
            "clean.get_clean_steps",
            json!({"node": {"uuid": NODE_UUID}, "ports": []}),
            true,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["command_name"], "get_clean_steps");
    assert_eq!(r["command_status"], "SUCCEEDED");
    assert_eq!(r["command_error"], Value::Null);
    assert_eq!(
        r["command_result"]["hardware_manager_version"],
        json!({"generic_hardware_manager": "1.2"})
    );
    assert!(r["command_result"]["clean_steps"]["GenericHardwareManager"].is_array());
    let cmds = c.commands().await;
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0]["id"], r["id"]);
}

#[tokio::test]
async fn api_errors_match_ipa() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let (_agent, c, _) = agent_with_conductor(&ironic, &dir).await;

    let (s, v) = c.get("/v1/commands/?agent_token=wrong").await;
    assert_eq!(
        (s, v),
        (
            401,
            json!({"faultcode": "Client", "faultstring": "401 Unauthorized: Token invalid."})
        )
    );
    let (s, _) = c.get("/v1/commands/").await;
    assert_eq!(s, 401);

    let url = format!("{}/v1/commands/?wait=true&agent_token={TOKEN}", c.base);
    let r = c.http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["faultstring"]
        .as_str()
        .unwrap()
        .starts_with("400 Bad Request: Failed to decode JSON object"));

    let r = c
        .http
        .post(&url)
        .json(&json!({"name": "clean.get_clean_steps", "params": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let (s, v) = c.post("nodot", json!({}), true).await;
    assert_eq!(s, 400);
    assert_eq!(
        v["faultstring"],
        "Invalid command: Command name must be of the form <extension>.<name>"
    );

    let (s, v) = c.post("nosuch.cmd", json!({}), true).await;
    assert_eq!(
        (s, v["faultstring"].as_str().unwrap()),
        (404, "Not found: Extension with id nosuch not found.")
    );

    let (s, v) = c.post("clean.nosuch", json!({}), true).await;
    assert_eq!(
        (s, v["faultstring"].as_str().unwrap()),
        (400, "Invalid command: Unknown command: nosuch")
    );

    let (s, v) = c
        .get(&format!("/v1/commands/nope?agent_token={TOKEN}"))
        .await;
    assert_eq!(
        (s, v["faultstring"].as_str().unwrap()),
        (404, "Not found: Command Result with id nope not found.")
    );

    // A Python-style argument error is a FAILED result, never a 500.
    let (s, v) = c
        .post("clean.get_clean_steps", json!({"node": {}}), true)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["command_status"], "FAILED");
    assert_eq!(v["command_error"]["type"], "TypeError");

    // Trailing-slash redirect keeps the query.
    let r = c
        .http
        .get(format!("{}/v1/commands?agent_token={TOKEN}", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("/v1/commands/?agent_token={TOKEN}")
    );

    // Unauthenticated documents.
    let (s, v) = c.get("/").await;
    assert_eq!(s, 200);
    assert_eq!(v["name"], "OpenStack Ironic Python Agent API");
    let (s, v) = c.get("/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(v["version"], ironic_agent::version());
    assert!(v["started_at"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn failed_async_step_forces_a_heartbeat_within_five_seconds() {
    let ironic = FakeIronic::start().await;
    ironic.script(|s| s.heartbeat_timeout = 300.0);
    let dir = tempdir();
    let (_agent, c, _) = agent_with_conductor(&ironic, &dir).await;
    let started = Instant::now();
    let step = json!({"step": "no_such_step", "interface": "deploy", "priority": 10});
    let (s, r) = c
        .post(
            "clean.execute_clean_step",
            json!({"step": step, "node": {"uuid": NODE_UUID}, "ports": []}),
            false,
        )
        .await;
    assert_eq!(s, 200);
    let id = r["id"].as_str().unwrap().to_string();
    let (_, done) = c
        .get(&format!("/v1/commands/{id}?wait=true&agent_token={TOKEN}"))
        .await;
    assert_eq!(done["command_status"], "FAILED");
    assert!(done["command_error"]["details"]
        .as_str()
        .unwrap()
        .contains("no_such_step"));
    // With a 300 s timeout the next regular heartbeat is 90+ s away; the forced one comes at 5 s.
    let beats = ironic
        .wait_for("/v1/heartbeat/", 202, 2, Duration::from_secs(10))
        .await;
    let forced_after = beats[1].at.duration_since(beats[0].at);
    assert!(
        forced_after >= Duration::from_secs(5) && forced_after < Duration::from_secs(7),
        "{forced_after:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn lookup_survives_404_and_pauses_on_409() {
    let ironic = FakeIronic::start().await;
    ironic.script(|s| {
        s.lookups
            .push_back(Canned::error(404, "Resource could not be found."));
        s.lookups.push_back(Canned::error(
            409,
            "Node is locked by host c1, please retry after the current operation is completed.",
        ));
    });
    let dir = tempdir();
    let _agent = start_agent(&ironic, &state_path(&dir), "");
    ironic.wait_for("/v1/heartbeat/", 202, 1, T).await;
    let lookups = ironic.requests("/v1/lookup");
    assert_eq!(
        lookups.iter().map(|l| l.status).collect::<Vec<_>>(),
        vec![404, 409, 200]
    );
    let pause = lookups[2].at.duration_since(lookups[1].at);
    assert!(
        pause >= Duration::from_secs(5),
        "a 409 must pause 5 s, paused {pause:?}"
    );
}

#[tokio::test]
async fn wiped_token_is_replaced_by_a_new_lookup() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let _agent = start_agent(&ironic, &state_path(&dir), "");
    ironic.wait_for("/v1/heartbeat/", 202, 1, T).await;
    // Ironic wipes the token (e.g. end of cleaning) and will hand out a new one.
    ironic.script(|s| {
        s.heartbeats.push_back(Canned::error(
            400,
            "Invalid or missing agent token received.",
        ));
        s.token_issued = false;
    });
    ironic.wait_for("/v1/heartbeat/", 400, 1, T).await;
    ironic.wait_for("/v1/heartbeat/", 202, 2, T).await;
    assert_eq!(
        ironic
            .requests("/v1/lookup")
            .iter()
            .filter(|l| l.status == 200)
            .count(),
        2
    );
}

#[tokio::test]
async fn restarted_agent_recovers_token_and_certificate() {
    let ironic = FakeIronic::start().await;
    let dir = tempdir();
    let port = free_port();
    let first = start_agent_on(&ironic, &state_path(&dir), port, "");
    let hb1 = ironic.wait_for("/v1/heartbeat/", 202, 1, T).await.remove(0);
    let c = Conductor::new(port, hb1.body["agent_verify_ca"].as_str().unwrap());
    let (_, r) = c
        .post(
            "clean.get_clean_steps",
            json!({"node": {}, "ports": []}),
            true,
        )
        .await;
    assert_eq!(r["command_status"], "SUCCEEDED");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Ironic now answers lookups with ******: only the kept token lets the agent go on.
    let before = ironic.requests("/v1/heartbeat/").len();
    let _second = start_agent_on(&ironic, &state_path(&dir), port, "");
    let beats = ironic.wait_for("/v1/heartbeat/", 202, before + 1, T).await;
    let hb2 = beats.last().unwrap();
    assert_eq!(hb2.body["agent_token"], TOKEN);
    assert_eq!(hb2.body["agent_verify_ca"], hb1.body["agent_verify_ca"]);
    assert_eq!(hb2.body["callback_url"], hb1.body["callback_url"]);
    // The command history survived too, and Ironic's old client still verifies the server.
    let cmds = c.commands().await;
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0]["id"], r["id"]);
}

#[tokio::test]
async fn agent_without_a_token_stops_serving() {
    let ironic = FakeIronic::start().await;
    ironic.script(|s| s.token_issued = true);
    let dir = tempdir();
    let agent = start_agent(&ironic, &state_path(&dir), "");
    ironic.wait_for("/v1/lookup", 200, 1, T).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(ironic.requests("/v1/heartbeat/").is_empty());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", agent.port)).is_err(),
        "the API must not listen"
    );
}

#[tokio::test]
async fn plain_http_with_an_old_ironic() {
    let ironic = FakeIronic::start().await;
    ironic.script(|s| s.max_version = "1.62".into());
    let dir = tempdir();
    let agent = start_agent(&ironic, &state_path(&dir), "");
    let hb = ironic.wait_for("/v1/heartbeat/", 202, 1, T).await.remove(0);
    assert_eq!(hb.version.as_deref(), Some("1.62"));
    assert_eq!(
        hb.body["callback_url"],
        format!("http://127.0.0.1:{}", agent.port)
    );
    assert!(hb.body.get("agent_verify_ca").is_none());
}
