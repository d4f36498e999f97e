//! `ipa-enable-vlan-interfaces` (contract §1.2): create and bring up VLAN interfaces before the
//! inventory is taken, so they are reported (and usable) like IPA's.
//!
//! Each item is `iface.vid` (iface by name or MAC), or `iface` / `all`, whose VLAN IDs come from
//! the 802.1 VLAN Name TLVs the switch advertises over LLDP (only with `ipa-collect-lldp`).
//! Links are made with the 8021q module's ioctl and raised with SIOCSIFFLAGS: no `ip` binary.

use crate::hardware::NetworkInterface;
use std::os::fd::AsRawFd;

const LLDP_TLV_ORG_SPECIFIC: u8 = 127;
/// IEEE 802.1 OUI followed by the VLAN Name subtype, as hex.
const DOT1_VLAN_NAME_PREFIX: &str = "0080c203";

const SIOCSIFVLAN: libc::c_ulong = 0x8983;
const ADD_VLAN_CMD: libc::c_int = 0;

#[derive(Debug, thiserror::Error)]
pub enum VlanError {
    #[error("creating VLAN interface {name} failed: {reason}")]
    Create { name: String, reason: String },
    #[error("bringing interface {name} up failed: {reason}")]
    Up { name: String, reason: String },
}

/// What to create: `(parent interface name, VLAN ID)` pairs, in order, without duplicates.
pub fn plan(
    items: &[String],
    interfaces: &[NetworkInterface],
    collect_lldp: bool,
) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = Vec::new();
    let mut add = |iface: &str, vid: u16| {
        if !out.iter().any(|(i, v)| i == iface && *v == vid) {
            out.push((iface.to_string(), vid));
        }
    };
    for item in items {
        if let Some((iface, vid)) = item.split_once('.') {
            let parent = interfaces
                .iter()
                .find(|i| i.name == iface || i.mac_address.eq_ignore_ascii_case(iface));
            match (parent, vid.parse::<u16>()) {
                (Some(p), Ok(v)) if (1..4095).contains(&v) => add(&p.name, v),
                (None, _) => {
                    tracing::warn!("ipa-enable-vlan-interfaces names {iface}, which does not exist")
                }
                _ => {
                    tracing::warn!("ipa-enable-vlan-interfaces item {item} has an invalid VLAN ID")
                }
            }
        } else if !collect_lldp {
            tracing::warn!("ipa-enable-vlan-interfaces={item} takes VLAN IDs from LLDP, which needs ipa-collect-lldp=1");
        } else {
            for iface in interfaces
                .iter()
                .filter(|i| item == "all" || i.name == *item)
            {
                for vid in lldp_vlans(iface) {
                    add(&iface.name, vid);
                }
            }
        }
    }
    out
}

/// VLAN IDs from the 802.1 VLAN Name TLVs an interface received.
fn lldp_vlans(iface: &NetworkInterface) -> Vec<u16> {
    let Some(tlvs) = &iface.lldp else {
        return Vec::new();
    };
    tlvs.iter()
        .filter(|(t, v)| {
            *t == LLDP_TLV_ORG_SPECIFIC && v.to_ascii_lowercase().starts_with(DOT1_VLAN_NAME_PREFIX)
        })
        .filter_map(|(_, v)| v.get(8..12).and_then(|h| u16::from_str_radix(h, 16).ok()))
        .collect()
}

/// Creates `parent.vid` and brings it up; returns the new interface's name.
pub fn create(
    parent: &str,
    vid: u16,
    existing: &[NetworkInterface],
) -> Result<Option<String>, VlanError> {
    let name = format!("{parent}.{vid}");
    if existing.iter().any(|i| i.name == name) {
        tracing::info!("VLAN interface {name} already exists");
        return Ok(None);
    }
    let sock = crate::net::control_socket().map_err(|e| VlanError::Create {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    add_vlan(sock.as_raw_fd(), parent, vid).map_err(|e| VlanError::Create {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    crate::net::set_link_up(&name, true).map_err(|e| VlanError::Up {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    tracing::info!("created VLAN interface {name}");
    Ok(Some(name))
}

/// `struct vlan_ioctl_args` from <linux/if_vlan.h> (the union is an int or a 24-byte name).
#[repr(C)]
struct VlanIoctlArgs {
    cmd: libc::c_int,
    device1: [libc::c_char; 24],
    u: [u8; 24],
    vlan_qos: libc::c_short,
}

fn add_vlan(fd: libc::c_int, parent: &str, vid: u16) -> std::io::Result<()> {
    if parent.len() >= 24 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    let mut args = VlanIoctlArgs {
        cmd: ADD_VLAN_CMD,
        device1: [0; 24],
        u: [0; 24],
        vlan_qos: 0,
    };
    for (d, s) in args.device1.iter_mut().zip(parent.bytes()) {
        *d = s as libc::c_char;
    }
    args.u[..4].copy_from_slice(&(vid as libc::c_int).to_ne_bytes());
    // SAFETY: SIOCSIFVLAN reads one vlan_ioctl_args from the pointer, which lives on our stack.
    let rc = unsafe { libc::ioctl(fd, SIOCSIFVLAN as _, &mut args as *mut VlanIoctlArgs) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Creates every planned VLAN; returns the names of the new interfaces.
pub fn bring_up(
    items: &[String],
    interfaces: &[NetworkInterface],
    collect_lldp: bool,
) -> Vec<String> {
    plan(items, interfaces, collect_lldp)
        .into_iter()
        .filter_map(|(parent, vid)| match create(&parent, vid, interfaces) {
            Ok(name) => name,
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(name: &str, mac: &str, lldp: Option<Vec<(u8, String)>>) -> NetworkInterface {
        NetworkInterface {
            name: name.into(),
            mac_address: mac.into(),
            lldp,
            ..Default::default()
        }
    }

    #[test]
    fn explicit_items_by_name_or_mac() {
        let nics = [
            nic("eth0", "52:54:00:aa:bb:cc", None),
            nic("eth1", "52:54:00:aa:bb:cd", None),
        ];
        let items: Vec<String> = [
            "eth0.100",
            "52:54:00:AA:BB:CD.200",
            "eth9.5",
            "eth0.100",
            "eth1.5000",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            plan(&items, &nics, false),
            vec![("eth0".into(), 100), ("eth1".into(), 200)]
        );
    }

    #[test]
    fn lldp_items_need_collect_lldp_and_read_vlan_name_tlvs() {
        let tlvs = vec![
            (127, "0080c203006407766c616e313030".to_string()),
            (127, "0080c20300c8".to_string()),
            (127, "00120f0105".to_string()),
            (1, "0480".to_string()),
        ];
        let nics = [
            nic("eth0", "52:54:00:aa:bb:cc", Some(tlvs)),
            nic("eth1", "52:54:00:aa:bb:cd", None),
        ];
        let all = vec!["all".to_string()];
        assert!(plan(&all, &nics, false).is_empty());
        assert_eq!(
            plan(&all, &nics, true),
            vec![("eth0".into(), 100), ("eth0".into(), 200)]
        );
        assert_eq!(plan(&["eth1".to_string()], &nics, true), vec![]);
    }
}
