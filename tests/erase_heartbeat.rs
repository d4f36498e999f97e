//! Heartbeats never stall during a long erase: an agent runs in-process against the fake
//! Ironic (on a single-threaded runtime, so any blocking I/O on it would stop everything),
//! and the conductor starts `erase_devices` on a loop device this test throttles to a few
//! MiB/s with the kernel's block I/O controller. While the erase runs for many seconds the
//! heartbeats must keep their 0.6-1.2 s rhythm and the agent API must answer at once.
//!
//! Needs root, a loop device and the blkio (cgroup v1) or io (cgroup v2) controller; it is
//! skipped with a note otherwise. It is the only test in this binary because it moves its own
//! process into the throttled cgroup.

mod support;

use ironic_agent::agent::{run, RunOptions};
use ironic_agent::config::Config;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{agent_cmdline, free_port, Conductor};
use support::erase::{all_zero, fill, Host, Loop};
use support::fake_ironic::{FakeIronic, NODE_UUID};

const MIB: u64 = 1 << 20;
const DISK: u64 = 40 * MIB;
/// 5 MiB/s: one random pass and one zero pass over 40 MiB take about 16 s.
const WRITE_BPS: u64 = 5 * MIB;

/// This process in a cgroup whose writes to one device are throttled; undone on drop.
struct Throttle {
    dir: PathBuf,
    root_procs: PathBuf,
}

impl Throttle {
    fn apply(devnum: &str, bps: u64) -> Option<Self> {
        let name = format!("ironic-agent-erase-test-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/blkio");
        if v1.join("blkio.throttle.write_bps_device").exists() {
            let dir = v1.join(&name);
            std::fs::create_dir(&dir).ok()?;
            let t = Self {
                root_procs: v1.join("cgroup.procs"),
                dir: dir.clone(),
            };
            std::fs::write(
                dir.join("blkio.throttle.write_bps_device"),
                format!("{devnum} {bps}"),
            )
            .ok()?;
            std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).ok()?;
            return Some(t);
        }
        let v2 = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).ok()?;
        if !controllers.split_whitespace().any(|c| c == "io") {
            return None;
        }
        std::fs::write(v2.join("cgroup.subtree_control"), "+io").ok()?;
        let dir = v2.join(&name);
        std::fs::create_dir(&dir).ok()?;
        let t = Self {
            root_procs: v2.join("cgroup.procs"),
            dir: dir.clone(),
        };
        std::fs::write(dir.join("io.max"), format!("{devnum} wbps={bps}")).ok()?;
        std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).ok()?;
        Some(t)
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.root_procs, std::process::id().to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[tokio::test]
async fn heartbeats_keep_their_rhythm_while_a_slow_disk_is_erased() {
    let files = tempfile::tempdir().unwrap();
    let backing = files.path().join("disk");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(DISK)
        .unwrap();
    fill(&backing, DISK, 0xe5);
    let Some(lp) = Loop::attach(&backing, false) else {
        return;
    };
    let devnum = std::fs::read_to_string(format!("/sys/block/{}/dev", lp.kname())).unwrap();
    let Some(_throttle) = Throttle::apply(devnum.trim(), WRITE_BPS) else {
        eprintln!("SKIPPED: no blkio/io cgroup controller to throttle the loop device with");
        return;
    };
    let mut host = Host::new();
    host.loop_disk("sda", &lp);

    let ironic = FakeIronic::start().await; // heartbeat_timeout 2 s: every 0.6-1.2 s
    let port = free_port();
    let agent = tokio::spawn(run(RunOptions {
        config: Config::from_cmdline(&agent_cmdline(&ironic, port, "")),
        state_dir: files.path().join("state"),
        allow_devices: host.allowed.clone(),
        ca_file: None,
        host: host.host(),
    }));
    let first = ironic
        .wait_for("/v1/heartbeat/", 202, 1, Duration::from_secs(20))
        .await
        .remove(0);
    let c = Conductor::new(port, first.body["agent_verify_ca"].as_str().unwrap());

    let node = json!({"uuid": NODE_UUID, "properties": {}, "instance_info": {},
                      "driver_internal_info": {"agent_erase_devices_iterations": 1,
                                               "agent_erase_devices_zeroize": true,
                                               "agent_continue_if_secure_erase_failed": false,
                                               "disk_erasure_concurrency": 4}});
    let step = json!({"step": "erase_devices", "interface": "deploy", "priority": 10,
                      "abortable": true, "reboot_requested": false, "args": {}});
    let started = Instant::now();
    let (status, r) = c
        .post(
            "clean.execute_clean_step",
            json!({"step": step, "node": node, "ports": [],
                   "clean_version": {"generic_hardware_manager": "1.2"}}),
            false,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["command_status"], "RUNNING");

    // Poll like Ironic, timing every answer of the agent API.
    let mut slowest_answer = Duration::ZERO;
    let done: Value = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let asked = Instant::now();
        let cmds = c.commands().await;
        slowest_answer = slowest_answer.max(asked.elapsed());
        let last = cmds.last().cloned().unwrap();
        if last["command_status"] != "RUNNING" {
            break last;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the erase did not finish"
        );
    };
    let erase_time = started.elapsed();
    assert_eq!(done["command_status"], "SUCCEEDED", "{done}");
    assert_eq!(
        done["command_result"]["clean_result"],
        json!({"/dev/sda": null})
    );
    assert!(all_zero(&backing, DISK));
    // The throttle worked: this was a long erase, not a fast one.
    assert!(
        erase_time >= Duration::from_secs(8),
        "the erase took only {erase_time:?}; the throttle did not apply"
    );

    let beats: Vec<Instant> = ironic
        .requests("/v1/heartbeat/")
        .iter()
        .filter(|b| b.status == 202 && b.at >= started && b.at <= started + erase_time)
        .map(|b| b.at)
        .collect();
    let expected = (erase_time.as_secs_f64() / 1.2).floor() as usize - 1;
    assert!(
        beats.len() >= expected,
        "{} heartbeats in {erase_time:?}, expected at least {expected}",
        beats.len()
    );
    let mut gaps: Vec<Duration> = beats.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.push(beats[0] - started);
    let longest = gaps.iter().max().copied().unwrap();
    assert!(
        longest <= Duration::from_millis(1600),
        "a heartbeat gap of {longest:?} during the erase (interval is 0.6-1.2 s)"
    );
    assert!(
        slowest_answer < Duration::from_secs(1),
        "the agent API took {slowest_answer:?} to answer during the erase"
    );
    eprintln!(
        "erase of {} MiB at {} MiB/s took {:.1} s: {} heartbeats, longest gap {:?}, slowest API answer {:?}",
        DISK >> 20,
        WRITE_BPS >> 20,
        erase_time.as_secs_f64(),
        beats.len(),
        longest,
        slowest_answer
    );
    agent.abort();
}
