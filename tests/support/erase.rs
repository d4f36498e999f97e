//! Fixtures for the erase tests: a host root whose /sys/block and /dev entries stand for disks
//! the test created itself (regular files, or loop devices over files), an agent context on
//! it, and the blkid/wipefs CLIs to check what is left on a device afterwards. Never a disk of
//! this machine.
#![allow(dead_code)]

use ironic_agent::config::Config;
use ironic_agent::context::AgentContext;
use ironic_agent::errors::CommandError;
use ironic_agent::hardware::HostRoot;
use ironic_agent::safety::DiskGuard;
use ironic_agent::state::StateDir;
use ironic_agent::steps::{self, StepKind};
use serde_json::{json, Value};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

pub const NODE_UUID: &str = "1be26c0b-03f2-4d2d-ae87-c02d7f33c123";

/// True when `tool` runs here; otherwise prints why the calling test is skipped.
pub fn have(tool: &str, package: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .or_else(|_| Command::new(tool).arg("-V").output())
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: {tool} is not installed (apt-get install {package})");
    }
    ok
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// What `blkid -p` (low-level probe, no cache) finds on `dev`: empty when nothing.
pub fn blkid(dev: &Path) -> String {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(dev)
        .output()
        .expect("running blkid");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What `wipefs` lists on `dev` (every signature, including backup GPT headers).
pub fn wipefs_list(dev: &Path) -> String {
    let out = Command::new("wipefs")
        .args(["--noheadings", "--output", "TYPE,OFFSET"])
        .arg(dev)
        .output()
        .expect("running wipefs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub use super::loopdev::Loop;

/// A fixture host root.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub allowed: Vec<PathBuf>,
}

impl Host {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/block")).unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        // The agent waits for a NIC before looking the node up.
        std::fs::create_dir_all(dir.path().join("sys/class/net/eth0")).unwrap();
        std::fs::write(
            dir.path().join("sys/class/net/eth0/address"),
            "52:54:00:12:34:56\n",
        )
        .unwrap();
        Self {
            dir,
            allowed: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn host(&self) -> HostRoot {
        HostRoot::new(self.root())
    }

    /// A disk `name` that is a regular file of `size` bytes (its sysfs entry written by hand).
    pub fn file_disk(&self, name: &str, size: u64, devnum: &str) -> PathBuf {
        let sys = self.root().join("sys/block").join(name);
        std::fs::create_dir_all(sys.join("queue")).unwrap();
        std::fs::write(sys.join("size"), format!("{}\n", size / 512)).unwrap();
        std::fs::write(sys.join("dev"), format!("{devnum}\n")).unwrap();
        std::fs::write(sys.join("ro"), "0\n").unwrap();
        std::fs::write(sys.join("queue/logical_block_size"), "512\n").unwrap();
        let dev = self.root().join("dev").join(name);
        let f = std::fs::File::create(&dev).unwrap();
        f.set_len(size).unwrap();
        dev
    }

    /// A disk `name` that is the loop device `lp`: its sysfs directory is the loop device's
    /// (size, ro, partitions), its /dev node a link to it, and so are its partitions'.
    pub fn loop_disk(&mut self, name: &str, lp: &Loop) -> PathBuf {
        symlink(
            format!("/sys/block/{}", lp.kname()),
            self.root().join("sys/block").join(name),
        )
        .unwrap();
        let dev = self.root().join("dev").join(name);
        symlink(&lp.dev, &dev).unwrap();
        self.allowed.push(lp.dev.clone());
        for p in lp.partitions() {
            let link = self.root().join("dev").join(p.file_name().unwrap());
            symlink(&p, link).unwrap();
            self.allowed.push(p);
        }
        dev
    }

    /// An agent context on this root: devices allowed as named, not a ramdisk.
    pub fn ctx(&self, cmdline: &str) -> Arc<AgentContext> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let state = StateDir::open(self.root().join("state")).unwrap();
        Arc::new(AgentContext::new(
            Config::from_cmdline(cmdline),
            self.host(),
            DiskGuard::new(false, self.allowed.clone()),
            state,
            tls,
            None,
        ))
    }
}

/// A node as Ironic sends it with clean steps, with `driver_internal_info` as given.
pub fn node(driver_internal_info: Value) -> Value {
    json!({"uuid": NODE_UUID, "properties": {}, "instance_info": {},
           "driver_internal_info": driver_internal_info})
}

/// Runs a clean step the way `clean.execute_clean_step` does; returns `clean_result`.
pub async fn clean_step(
    ctx: &Arc<AgentContext>,
    name: &str,
    node: &Value,
) -> Result<Value, CommandError> {
    let params = json!({
        "step": {"step": name, "interface": "deploy", "priority": 10, "args": {}},
        "node": node, "ports": [], "clean_version": {"generic_hardware_manager": "1.2"},
    });
    let Value::Object(params) = params else {
        unreachable!()
    };
    steps::execute(ctx.clone(), StepKind::Clean, params)
        .await
        .map(|r| r["clean_result"].clone())
}

/// Fills `path` (a file or device) with a repeating non-zero pattern over `len` bytes.
pub fn fill(path: &Path, len: u64, byte: u8) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let chunk = vec![byte; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
}

/// Reads `len` bytes at `off` (O_DIRECT is not needed: the erase wrote with direct I/O and
/// the kernel dropped those cached pages).
pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, off)
        .unwrap();
    buf
}

/// True when every byte of `path` (first `len` bytes) is zero.
pub fn all_zero(path: &Path, len: u64) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n]).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        left -= n as u64;
    }
    true
}
