//! The fixture server of the hardware tests (tests/fixtures/hardware/server).
//!
//! sysfs has meaningful empty directories (`scsi_device/0:0:0:0`, `bonding`, `holders`), which
//! git does not keep: they are listed in `server.empty-dirs` and re-created before use.

use ironic_agent::hardware::HostRoot;
use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hardware")
}

pub fn server() -> HostRoot {
    let root = fixtures().join("server");
    let list =
        std::fs::read_to_string(fixtures().join("server.empty-dirs")).expect("server.empty-dirs");
    for dir in list.lines().filter(|l| !l.trim().is_empty()) {
        std::fs::create_dir_all(root.join(dir)).expect("re-creating an empty fixture directory");
    }
    HostRoot::new(root)
}
