//! What the host is: the inventory Ironic stores (contract §10.3), read from the kernel's own
//! interfaces (sysfs, procfs, ioctls) under a root path, so tests can point it at fixture /sys
//! and /proc trees.
//!
//! The types below are the wire contract (IPA's `serializable_fields`). Each part of the
//! inventory lives in the module named for it: [`disks`], [`nics`], [`cpu`], [`memory`],
//! [`system`] (vendor, boot, hostname).

pub mod bmc;
mod by_path;
pub mod cpu;
mod disk_ids;
pub mod disks;
pub mod dmi_decode;
pub mod lldp;
pub mod memory;
pub mod nics;
pub mod numa;
pub mod pci;
pub mod root_device;
pub mod smbios;
mod specs;
mod sysfs;
pub mod system;

pub use bmc::{detect_bmc, BmcInfo};
pub use cpu::get_cpu;
pub use disks::list_disks;
pub use memory::get_memory;
pub use nics::{list_interfaces, LinkProbe, NoLinkProbe, SystemLinkProbe};
pub use root_device::{
    guess_root_disk, root_disk_for_inspection, select_root_device, RootDeviceError,
};
pub use system::{get_boot_info, get_hostname, get_system_vendor};

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where /sys, /proc, /dev and /run live: `/` in production, a fixture tree in tests.
#[derive(Debug, Clone)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The real host.
    pub fn system() -> Self {
        Self::new("/")
    }

    /// `rel` (an absolute path such as `/sys/block`) under this root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True for the running system (`/`): only then may the inventory ask the kernel about
    /// live objects (interface ioctls, the BMC), which a fixture tree cannot stand in for.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Knobs that change what an inventory run does.
#[derive(Debug, Clone, Default)]
pub struct InventoryOptions {
    /// Ironic's `agent_skip_bmc_detect`: do not talk to the BMC over /dev/ipmi0.
    pub skip_bmc_detect: bool,
    /// `ipa-collect-lldp`: fill `interfaces[].lldp`.
    pub collect_lldp: bool,
    /// `ipa-lldp-timeout`.
    pub lldp_timeout: Duration,
    /// `BOOTIF` as given on the command line (reported verbatim as `boot.pxe_interface`).
    pub bootif: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub interfaces: Vec<NetworkInterface>,
    pub cpu: Cpu,
    pub disks: Vec<BlockDevice>,
    pub memory: Memory,
    pub bmc_address: Option<String>,
    pub bmc_v6address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    pub system_vendor: SystemVendor,
    pub boot: BootInfo,
    pub hostname: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub model_name: String,
    pub frequency: String,
    pub count: u32,
    pub architecture: String,
    pub flags: Vec<String>,
    pub socket_count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub total: Option<u64>,
    pub physical_mb: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    pub name: String,
    pub model: Option<String>,
    pub size: u64,
    pub rotational: bool,
    pub wwn: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
    pub hctl: Option<String>,
    pub by_path: Option<String>,
    pub logical_sectors: Option<u32>,
    pub physical_sectors: Option<u32>,
    pub tran: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    pub mac_address: String,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub has_carrier: bool,
    pub lldp: Option<Vec<(u8, String)>>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub client_id: Option<String>,
    pub biosdevname: Option<String>,
    pub speed_mbps: Option<u64>,
    pub pci_address: Option<String>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemVendor {
    pub product_name: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub firmware: Firmware,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    pub vendor: String,
    pub version: String,
    pub build_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootInfo {
    pub current_boot_mode: String,
    pub pxe_interface: Option<String>,
}

/// Collects the whole inventory. Blocking (file reads, ioctls): call it from a blocking thread.
pub fn collect_inventory(host: &HostRoot, opts: &InventoryOptions) -> Inventory {
    let started = Instant::now();
    // ipa-collect-lldp: listen first (up to lldp_timeout), then describe the interfaces.
    let lldp = (opts.collect_lldp && host.is_live())
        .then(|| lldp::collect_lldp(&nics::interface_names(host), opts.lldp_timeout));
    let interfaces = if host.is_live() {
        list_interfaces(host, &SystemLinkProbe::new(), lldp.as_ref())
    } else {
        list_interfaces(host, &NoLinkProbe, None)
    };
    // Ironic's agent_skip_bmc_detect (out-of-band management such as Redfish): no IPMI at all.
    let bmc = if opts.skip_bmc_detect {
        BmcInfo::default()
    } else {
        detect_bmc(host)
    };
    let inventory = Inventory {
        interfaces,
        cpu: get_cpu(host),
        disks: list_disks(host),
        memory: get_memory(host),
        bmc_address: bmc.address,
        bmc_v6address: bmc.v6address,
        bmc_mac: bmc.mac,
        system_vendor: get_system_vendor(host),
        boot: get_boot_info(host, opts.bootif.as_deref()),
        hostname: get_hostname(host),
    };
    tracing::info!(
        "inventory collected in {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    inventory
}
