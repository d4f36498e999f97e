//! The write_image deploy step as Ironic runs it, against a fake host whose disks are files.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::agent::*;
use support::fake_ironic::{FakeIronic, NODE_UUID};

const GIB: u64 = 1 << 30;

fn write_image_step(url: &str, sha256: &str) -> Value {
    json!({
        "step": "write_image", "interface": "deploy", "priority": 80,
        "args": {
            "image_info": {"id": "disk.img", "urls": [url], "os_hash_algo": "sha256", "os_hash_value": sha256,
                           "disk_format": null, "container_format": null, "stream_raw_images": true,
                           "node_uuid": NODE_UUID},
            "configdrive": null,
        },
    })
}

struct Deploy {
    _ironic: FakeIronic,
    _server: support::Server,
    host: tempfile::TempDir,
    _state: tempfile::TempDir,
    _agent: RunningAgent,
    conductor: Conductor,
    image: Vec<u8>,
    url: String,
}

async fn setup() -> Deploy {
    let ironic = FakeIronic::start().await;
    let server = support::Server::start().await;
    let image = mbr_disk_image(6 << 20);
    server.put("/disk.img", image.clone());
    let url = server.url("/disk.img");
    // The smaller disk is under 4 GiB, so the no-hints rule picks vdb.
    let host = fixture_host(&[("vda", GIB), ("vdb", 5 * GIB), ("vdc", 8 * GIB)]);
    std::fs::write(host.path().join("dev/vdb"), vec![0xee; 2 << 20]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(host.path().join("dev/vdb"))
        .unwrap()
        .set_len(5 * GIB)
        .unwrap();
    let state = tempdir();
    // IPA retries a download (checksum mismatch included) 10 times, 10 s apart; keep tests quick.
    let fast_retries =
        "ipa-image-download-connection-retries=1 ipa-image-download-connection-retry-interval=0.1";
    let agent = start_agent_with_host(&ironic, &state_path(&state), host.path(), fast_retries);
    let hb = ironic
        .wait_for("/v1/heartbeat/", 202, 1, Duration::from_secs(20))
        .await
        .remove(0);
    let conductor = Conductor::new(agent.port, hb.body["agent_verify_ca"].as_str().unwrap());
    Deploy {
        _ironic: ironic,
        _server: server,
        host,
        _state: state,
        _agent: agent,
        conductor,
        image,
        url,
    }
}

fn read_head(path: &std::path::Path, len: usize) -> Vec<u8> {
    let mut d = std::fs::read(path).unwrap();
    d.truncate(len);
    d
}

#[tokio::test]
async fn write_image_streams_to_the_chosen_disk_and_reports_the_disk_id() {
    let d = setup().await;
    let (_, steps) = d
        .conductor
        .post(
            "deploy.get_deploy_steps",
            json!({"node": {"uuid": NODE_UUID}, "ports": []}),
            true,
        )
        .await;
    let listed: Vec<&str> = steps["command_result"]["deploy_steps"]["GenericHardwareManager"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert!(listed.contains(&"write_image"), "{listed:?}");

    let step = write_image_step(&d.url, &support::sha256_hex(&d.image));
    let done = d
        .conductor
        .run_async("deploy.execute_deploy_step", json!({"step": step, "node": {"uuid": NODE_UUID}, "ports": [], "deploy_version": {"generic_hardware_manager": "1.2"}}))
        .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert_eq!(done["command_result"]["deploy_step"], step);
    let result = done["command_result"]["deploy_result"]["result"]
        .as_str()
        .unwrap();
    assert!(
        result.starts_with("prepare_image: image (disk.img) written to device "),
        "{result}"
    );
    assert!(
        result.ends_with("/dev/vdb root_uuid=0x1a2b3c4d"),
        "{result}"
    );
    assert_eq!(
        read_head(&d.host.path().join("dev/vdb"), d.image.len()),
        d.image
    );
    // The other disks are untouched.
    assert!(std::fs::read(d.host.path().join("dev/vda"))
        .unwrap()
        .iter()
        .take(1 << 20)
        .all(|b| *b == 0));

    let (_, uuids) = d
        .conductor
        .post("standby.get_partition_uuids", json!({}), true)
        .await;
    assert_eq!(uuids["command_result"], json!({"root uuid": "0x1a2b3c4d"}));
}

#[tokio::test]
async fn root_device_hints_choose_the_disk() {
    let d = setup().await;
    let step = write_image_step(&d.url, &support::sha256_hex(&d.image));
    let node = json!({"uuid": NODE_UUID, "instance_info": {"root_device": {"size": ">= 7"}}});
    let done = d
        .conductor
        .run_async(
            "deploy.execute_deploy_step",
            json!({"step": step, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert_eq!(
        read_head(&d.host.path().join("dev/vdc"), d.image.len()),
        d.image
    );
}

#[tokio::test]
async fn wrong_checksum_fails_and_leaves_the_disk_head_alone() {
    let d = setup().await;
    let step = write_image_step(&d.url, &"0".repeat(64));
    let done = d
        .conductor
        .run_async(
            "deploy.execute_deploy_step",
            json!({"step": step, "node": {"uuid": NODE_UUID}, "ports": []}),
        )
        .await;
    assert_eq!(done["command_status"], "FAILED");
    assert_eq!(
        done["command_error"]["type"], "ImageChecksumError",
        "{done}"
    );
    let details = done["command_error"]["details"].as_str().unwrap();
    assert!(details.contains("disk.img"), "{details}");
    // The first MiB is written only after verification: the old bytes are still there.
    assert!(read_head(&d.host.path().join("dev/vdb"), 1 << 20)
        .iter()
        .all(|b| *b == 0xee));
    let (_, uuids) = d
        .conductor
        .post("standby.get_partition_uuids", json!({}), true)
        .await;
    assert_eq!(uuids["command_result"], json!({}));
}

#[tokio::test]
async fn prepare_image_validates_before_starting() {
    let d = setup().await;
    let (s, v) = d
        .conductor
        .post(
            "standby.prepare_image",
            json!({"image_info": {"id": "x", "urls": []}}),
            false,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["faultstring"]
            .as_str()
            .unwrap()
            .starts_with("Invalid command parameters: "),
        "{v}"
    );
    assert!(
        d.conductor.commands().await.is_empty(),
        "a refused command is not recorded"
    );
}

#[tokio::test]
async fn missing_disk_is_a_clear_failure() {
    let d = setup().await;
    let step = write_image_step(&d.url, &support::sha256_hex(&d.image));
    let node = json!({"uuid": NODE_UUID, "instance_info": {"root_device": {"serial": "nope"}}});
    let done = d
        .conductor
        .run_async(
            "deploy.execute_deploy_step",
            json!({"step": step, "node": node, "ports": []}),
        )
        .await;
    assert_eq!(done["command_status"], "FAILED");
    assert_eq!(done["command_error"]["type"], "DeviceNotFound", "{done}");
}
