//! Small network facts the agent needs before it can talk: interface addresses, the source
//! address the kernel would use toward Ironic, and the callback URL built from it (contract §5.3).
//! Read from the kernel (getifaddrs, a connected UDP socket), never by running `ip`.

use crate::config::Config;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    #[error("interface {0} (ipa-network-interface) has no IPv4 address to advertise")]
    InterfaceWithoutAddress(String),
    #[error("finding the address to advertise to Ironic failed after {attempts} attempts: {last}")]
    NoRoute { attempts: u32, last: String },
}

/// The first IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let sin = a.address.as_ref()?.as_sockaddr_in()?.ip();
        (a.interface_name == name).then_some(IpAddr::V4(sin))
    })
}

/// The source address the kernel routes from toward `dest`: connecting a UDP socket sends
/// nothing but makes the kernel pick the route and the local address.
pub fn route_source(dest: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse()
    } else {
        "[::]:0".parse()
    }
    .map_err(std::io::Error::other)?;
    let sock = std::net::UdpSocket::bind(bind)?;
    sock.connect(dest)?;
    Ok(sock.local_addr()?.ip())
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The host part of `callback_url`: `ipa-advertise-host`, else `ipa-network-interface`'s
/// IPv4, else the route source toward the first reachable Ironic URL, retried
/// `ipa-ip-lookup-attempts` times `ipa-ip-lookup-timeout` apart.
pub async fn advertise_host(config: &Config) -> Result<String, AdvertiseError> {
    if let Some(h) = &config.advertise_host {
        return Ok(h.clone());
    }
    if let Some(iface) = &config.network_interface {
        return interface_ipv4(iface)
            .map(|ip| ip.to_string())
            .ok_or_else(|| AdvertiseError::InterfaceWithoutAddress(iface.clone()));
    }
    let mut last = String::from("no Ironic API URL to route toward");
    for attempt in 1..=config.ip_lookup_attempts {
        for url in config
            .api_urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
        {
            match route_source_for(&url).await {
                Ok(ip) => return Ok(ip.to_string()),
                Err(e) => last = e,
            }
        }
        if attempt < config.ip_lookup_attempts {
            tracing::warn!(
                "no address to advertise yet ({last}); retrying in {:?}",
                config.ip_lookup_sleep
            );
            tokio::time::sleep(config.ip_lookup_sleep).await;
        }
    }
    Err(AdvertiseError::NoRoute {
        attempts: config.ip_lookup_attempts,
        last,
    })
}

async fn route_source_for(url: &url::Url) -> Result<IpAddr, String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{url} has no host"))?
        .trim_matches(['[', ']']);
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolving {host} failed: {e}"))?
        .collect();
    let mut last = format!("{host} resolved to no address");
    for addr in addrs {
        match route_source(addr) {
            Ok(ip) if !is_link_local(&ip) && !ip.is_unspecified() => return Ok(ip),
            Ok(ip) => {
                last = format!("the route toward {addr} uses {ip}, which cannot be advertised")
            }
            Err(e) => last = format!("no route toward {addr}: {e}"),
        }
    }
    Err(last)
}

/// `{protocol}://{host}:{port}`, IPv6 hosts in brackets, no trailing slash.
pub fn callback_url(scheme: &str, host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{port}"),
        _ => format!("{scheme}://{host}:{port}"),
    }
}

/// A socket for interface ioctls (SIOCGIFFLAGS, SIOCETHTOOL, SIOCSIFVLAN, ...).
pub fn control_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// An `ifreq` naming interface `name`, or an error for a name the kernel cannot hold.
pub fn interface_request(name: &str) -> std::io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

/// Sets or clears IFF_UP on interface `name` (SIOCGIFFLAGS + SIOCSIFFLAGS), as
/// `ip link set DEV up|down` does.
pub fn set_link_up(name: &str, up: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut req = interface_request(name)?;
    let sock = control_socket()?;
    // SAFETY: both ioctls read and write one ifreq that lives on our stack.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let flags = req.ifr_ifru.ifru_flags;
        let iff_up = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags = if up { flags | iff_up } else { flags & !iff_up };
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `::` when the kernel has IPv6 (dual-stack, also accepts IPv4), else `0.0.0.0`.
pub fn default_listen_address() -> IpAddr {
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    }
}

/// Waits (up to `timeout`, polling every 2 s) until `ifaces` all have an IPv4 address.
pub async fn wait_for_ipv4(ifaces: &[String], timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let missing: Vec<&String> = ifaces
            .iter()
            .filter(|i| interface_ipv4(i).is_none())
            .collect();
        if missing.is_empty() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("interfaces {missing:?} still have no IPv4 address after {timeout:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_secs(2).min(timeout)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_bracket_ipv6() {
        assert_eq!(
            callback_url("https", "192.0.2.1", 9999),
            "https://192.0.2.1:9999"
        );
        assert_eq!(
            callback_url("https", "fd00::5", 9999),
            "https://[fd00::5]:9999"
        );
        assert_eq!(
            callback_url("http", "agent.example", 9998),
            "http://agent.example:9998"
        );
    }

    #[test]
    fn route_source_toward_loopback_is_loopback() {
        let ip = route_source("127.0.0.1:6385".parse().unwrap()).unwrap();
        assert_eq!(ip, "127.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn link_errors_name_the_problem() {
        let e = set_link_up("nosuchif0", true).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::EPERM)),
            "{e}"
        );
        assert!(set_link_up(&"x".repeat(40), true).is_err());
    }

    #[test]
    fn link_local_is_recognised() {
        assert!(is_link_local(&"169.254.1.1".parse().unwrap()));
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_link_local(&"10.0.2.15".parse().unwrap()));
    }

    #[tokio::test]
    async fn advertise_host_prefers_the_configured_one_then_routes() {
        let c = Config::from_cmdline(
            "ipa-advertise-host=198.51.100.7 ipa-api-url=http://127.0.0.1:6385",
        );
        assert_eq!(advertise_host(&c).await.unwrap(), "198.51.100.7");
        let c = Config::from_cmdline("ipa-api-url=http://127.0.0.1:6385");
        assert_eq!(advertise_host(&c).await.unwrap(), "127.0.0.1");
        let c = Config::from_cmdline("ipa-network-interface=nosuchif0");
        assert!(advertise_host(&c)
            .await
            .unwrap_err()
            .to_string()
            .contains("nosuchif0"));
    }
}
