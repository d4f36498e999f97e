//! The network interfaces of the inventory (contract §10.3, IPA's `netutils`).
//!
//! Listed: every `/sys/class/net` entry that is a physical device (has `device/`), a VLAN
//! (`<parent>.<number>`) or a bond (has `bonding/`). The MAC is the permanent one
//! (`ETHTOOL_GPERMADDR`) when the driver knows it, else the current one; an interface whose MAC
//! starts with `fa:` (locally administered, typical of in-band BMC USB NICs) or that has no MAC
//! is left out, as IPA does. Order: by name.
//!
//! `speed_mbps` is the negotiated link speed from sysfs (unknown while the link is down). IPA
//! reports lshw's "capacity", the fastest mode the NIC supports, which needs the ethtool
//! link-mode tables; Ironic keeps the value but no built-in hook reads it.
//!
//! What only the live kernel can answer (the permanent MAC, the IP addresses) goes through
//! [`LinkProbe`], so fixture trees can be listed without touching the host's own interfaces.

use super::sysfs::{dir_names, link_basename, read_i64, read_nonempty, read_trimmed};
use super::{HostRoot, NetworkInterface};
use std::collections::HashMap;

/// Per-interface facts that come from syscalls rather than sysfs.
pub trait LinkProbe {
    /// The permanent hardware address (`aa:bb:...`), if the driver reports a non-zero one.
    fn permanent_mac(&self, ifname: &str) -> Option<String>;
    /// The first IPv4 and the first IPv6 address of the interface, as psutil reports them
    /// (IPv6 link-local addresses carry a `%<ifname>` suffix).
    fn addresses(&self, ifname: &str) -> (Option<String>, Option<String>);
}

/// Answers nothing: used for fixture trees, where the host's interfaces are not the subject.
pub struct NoLinkProbe;

impl LinkProbe for NoLinkProbe {
    fn permanent_mac(&self, _ifname: &str) -> Option<String> {
        None
    }
    fn addresses(&self, _ifname: &str) -> (Option<String>, Option<String>) {
        (None, None)
    }
}

/// The running kernel: `SIOCETHTOOL` for permanent MACs, `getifaddrs` for addresses.
pub struct SystemLinkProbe {
    addrs: HashMap<String, (Option<String>, Option<String>)>,
}

impl SystemLinkProbe {
    /// Snapshots the addresses of every interface (one `getifaddrs` call).
    pub fn new() -> Self {
        let mut addrs: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
        match nix::ifaddrs::getifaddrs() {
            Ok(list) => {
                for ifa in list {
                    let Some(addr) = ifa.address else { continue };
                    let entry = addrs.entry(ifa.interface_name.clone()).or_default();
                    if let Some(v4) = addr.as_sockaddr_in() {
                        entry.0.get_or_insert_with(|| v4.ip().to_string());
                    } else if let Some(v6) = addr.as_sockaddr_in6() {
                        entry.1.get_or_insert_with(|| {
                            if v6.scope_id() != 0 {
                                format!("{}%{}", v6.ip(), ifa.interface_name)
                            } else {
                                v6.ip().to_string()
                            }
                        });
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list interface addresses (getifaddrs): {e}"),
        }
        Self { addrs }
    }
}

impl Default for SystemLinkProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl LinkProbe for SystemLinkProbe {
    fn permanent_mac(&self, ifname: &str) -> Option<String> {
        match permanent_mac_ioctl(ifname) {
            Ok(mac) => mac,
            Err(e) => {
                tracing::debug!("no permanent MAC for {ifname} (SIOCETHTOOL): {e}");
                None
            }
        }
    }

    fn addresses(&self, ifname: &str) -> (Option<String>, Option<String>) {
        self.addrs.get(ifname).cloned().unwrap_or_default()
    }
}

/// `struct ethtool_perm_addr` with room for `MAX_ADDR_LEN` (32) bytes.
#[repr(C)]
struct EthtoolPermAddr {
    cmd: u32,
    size: u32,
    data: [u8; 32],
}

const ETHTOOL_GPERMADDR: u32 = 0x20;

/// Asks the driver for the permanent address with `SIOCETHTOOL`/`ETHTOOL_GPERMADDR`.
fn permanent_mac_ioctl(ifname: &str) -> std::io::Result<Option<String>> {
    use std::os::fd::AsRawFd;
    let mut ifr = crate::net::interface_request(ifname)?;
    let sock = crate::net::control_socket()?;
    let mut perm = EthtoolPermAddr {
        cmd: ETHTOOL_GPERMADDR,
        size: 32,
        data: [0; 32],
    };
    ifr.ifr_ifru.ifru_data = (&mut perm as *mut EthtoolPermAddr).cast();
    // SAFETY: SIOCETHTOOL reads the ifreq and writes at most `perm.size` bytes into `perm.data`,
    // both of which outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = (perm.size as usize).min(perm.data.len());
    let bytes = &perm.data[..len];
    if bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    Ok(Some(format_mac(bytes)))
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// IPA's VLAN test: the name is `<something>.<digits>`.
fn is_vlan(name: &str) -> bool {
    match name.split_once('.') {
        Some((_, vlan)) => !vlan.is_empty() && vlan.chars().all(|c| c.is_ascii_digit()),
        None => false,
    }
}

/// The names IPA lists: physical devices, VLANs and bonds, sorted.
pub fn interface_names(host: &HostRoot) -> Vec<String> {
    let net = host.path("/sys/class/net");
    dir_names(&net)
        .into_iter()
        .filter(|n| {
            is_vlan(n)
                || net.join(n).join("device").exists()
                || net.join(n).join("bonding").exists()
        })
        .collect()
}

/// The MAC IPA would report for an interface, or `None` when it leaves the interface out.
fn mac_address(host: &HostRoot, name: &str, probe: &dyn LinkProbe) -> Option<String> {
    let mac = probe
        .permanent_mac(name)
        .or_else(|| read_nonempty(host.path(&format!("/sys/class/net/{name}/address"))))?
        .to_ascii_lowercase();
    if mac.starts_with("fa:") {
        tracing::warn!(
            "ignoring interface {name}: its MAC {mac} is locally assigned, which is unexpected and may \
             be an in-band BMC connection"
        );
        return None;
    }
    Some(mac)
}

/// The inventory's interfaces. `lldp` holds the TLVs collected per interface, if any.
pub fn list_interfaces(
    host: &HostRoot,
    probe: &dyn LinkProbe,
    lldp: Option<&HashMap<String, Vec<(u8, String)>>>,
) -> Vec<NetworkInterface> {
    let mut out = Vec::new();
    for name in interface_names(host) {
        let Some(mac_address) = mac_address(host, &name, probe) else {
            continue;
        };
        let sys = host.path(&format!("/sys/class/net/{name}"));
        let (ipv4_address, ipv6_address) = probe.addresses(&name);
        out.push(NetworkInterface {
            mac_address,
            ipv4_address,
            ipv6_address,
            // Reading `carrier` of a down interface fails with EINVAL: no carrier.
            has_carrier: read_trimmed(sys.join("carrier")).as_deref() == Some("1"),
            lldp: lldp.map(|l| l.get(&name).cloned().unwrap_or_default()),
            vendor: read_trimmed(sys.join("device/vendor")),
            product: read_trimmed(sys.join("device/device")),
            client_id: None,
            biosdevname: None,
            speed_mbps: read_i64(sys.join("speed"))
                .filter(|s| *s > 0)
                .map(|s| s as u64),
            pci_address: link_basename(sys.join("device")),
            driver: link_basename(sys.join("device/driver")),
            name,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_names() {
        assert!(is_vlan("eth0.100"));
        assert!(!is_vlan("eth0."));
        assert!(!is_vlan("eth0.a1"));
        assert!(!is_vlan("eth0"));
    }

    #[test]
    fn mac_formatting() {
        assert_eq!(
            format_mac(&[0x52, 0x54, 0, 0xab, 0x0c, 0xff]),
            "52:54:00:ab:0c:ff"
        );
    }

    #[test]
    fn loopback_has_no_permanent_mac() {
        // lo has a zero address; the ioctl either fails or reports zeros: never a MAC.
        assert_eq!(permanent_mac_ioctl("lo").ok().flatten(), None);
        assert!(permanent_mac_ioctl("").is_err());
        assert!(permanent_mac_ioctl("a-name-longer-than-16").is_err());
    }
}
