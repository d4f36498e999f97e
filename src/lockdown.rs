//! Taking the network down for `system.lockdown`: every physical NIC, VLAN and bond loses its
//! IFF_UP flag (SIOCSIFFLAGS, as `ip link set DEV down`), so the locked node is unreachable.

use crate::hardware::HostRoot;
use std::os::fd::AsRawFd;

nix::ioctl_read_bad!(siocgifflags, libc::SIOCGIFFLAGS, libc::ifreq);
nix::ioctl_write_ptr_bad!(siocsifflags, libc::SIOCSIFFLAGS, libc::ifreq);

/// IPA's `list_interfaces`: NICs with a device, VLANs and bonds (not `lo`, not bridges).
pub fn interfaces(host: &HostRoot) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(host.path("/sys/class/net")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let base = host.path(&format!("/sys/class/net/{n}"));
            base.join("device").exists()
                || base.join("bonding").exists()
                || host.path(&format!("/proc/net/vlan/{n}")).exists()
        })
        .collect();
    names.sort();
    names
}

fn ifreq(name: &str) -> Option<libc::ifreq> {
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Some(req)
}

/// Clears IFF_UP on `name`.
pub fn set_down(name: &str) -> Result<(), String> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("opening a control socket failed: {e}"))?;
    let mut req = ifreq(name).ok_or_else(|| format!("interface name {name:?} is too long"))?;
    // SAFETY: the ifreq is initialised with the name; the ioctls read/write its flags field.
    unsafe {
        siocgifflags(sock.as_raw_fd(), &mut req)
            .map_err(|e| format!("reading the flags of {name} failed: {e}"))?;
        req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short);
        siocsifflags(sock.as_raw_fd(), &req)
            .map_err(|e| format!("taking {name} down failed: {e}"))?;
    }
    Ok(())
}

/// Takes every interface down; failures are logged, as IPA does. Only in the ramdisk: the same
/// binary run on a workstation must never cut its network.
pub fn all_interfaces_down(host: &HostRoot, in_ramdisk: bool) {
    let names = interfaces(host);
    if !in_ramdisk {
        tracing::warn!(
            "not running from a ramdisk: leaving interfaces {names:?} up despite the lockdown"
        );
        return;
    }
    for n in names {
        match set_down(&n) {
            Ok(()) => tracing::info!("interface {n} is down"),
            Err(e) => tracing::warn!("Could not bring down interface {n}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_nics_vlans_and_bonds_but_not_lo_or_bridges() {
        let d = tempfile::tempdir().unwrap();
        let h = HostRoot::new(d.path());
        for (n, extra) in [
            ("eno1", "device"),
            ("bond0", "bonding"),
            ("lo", ""),
            ("br0", "bridge"),
            ("eno1.100", ""),
        ] {
            std::fs::create_dir_all(h.path(&format!("/sys/class/net/{n}/{extra}"))).unwrap();
        }
        std::fs::create_dir_all(h.path("/proc/net/vlan")).unwrap();
        std::fs::write(h.path("/proc/net/vlan/eno1.100"), "").unwrap();
        assert_eq!(interfaces(&h), ["bond0", "eno1", "eno1.100"]);
        assert!(ifreq(&"x".repeat(16)).is_none());
        assert!(set_down("no-such-if0").is_err());
    }
}
