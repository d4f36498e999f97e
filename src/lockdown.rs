//! Taking the network down for `system.lockdown`: every physical NIC, VLAN and bond loses its
//! IFF_UP flag (SIOCSIFFLAGS, as `ip link set DEV down`), so the locked node is unreachable.

use crate::hardware::HostRoot;

/// Takes every interface down; failures are logged, as IPA does. Only in the ramdisk: the same
/// binary run on a workstation must never cut its network.
pub fn all_interfaces_down(host: &HostRoot, in_ramdisk: bool) {
    // IPA's list_interfaces: NICs with a device, VLANs and bonds (not lo, not bridges).
    let names = crate::hardware::nics::interface_names(host);
    if !in_ramdisk {
        tracing::warn!(
            "not running from a ramdisk: leaving interfaces {names:?} up despite the lockdown"
        );
        return;
    }
    for n in names {
        match crate::net::set_link_up(&n, false) {
            Ok(()) => tracing::info!("interface {n} is down"),
            Err(e) => tracing::warn!("Could not bring down interface {n}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_ramdisk_nothing_is_taken_down() {
        // A fixture host whose NIC names do not exist here: in a ramdisk the ioctl would be
        // tried (and fail, logged); outside one it must not even be tried.
        let d = tempfile::tempdir().unwrap();
        let h = HostRoot::new(d.path());
        std::fs::create_dir_all(h.path("/sys/class/net/eno1/device")).unwrap();
        all_interfaces_down(&h, false);
        all_interfaces_down(&h, true);
    }
}
