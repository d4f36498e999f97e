//! The BMC's addresses (`bmc_address`, `bmc_v6address`, `bmc_mac`), asked of the BMC itself
//! through the kernel's IPMI device (`/dev/ipmi0`), as IPA asks it with `ipmitool lan print`
//! and `ipmitool lan6 print` on channels 1 to 11.
//!
//! * `bmc_address`: the first LAN channel's IPv4 address that is not `0.0.0.0`; `0.0.0.0` when
//!   there is an IPMI device but no channel has one; `None` without an IPMI device.
//! * `bmc_v6address`: on channels whose IPv6/IPv4 addressing enables say `ipv6` or `both`, the
//!   first active dynamic (SLAAC/DHCPv6) address, else the first active enabled static one,
//!   without its prefix length; `::/0` when there is none.
//! * `bmc_mac`: the first LAN channel's MAC that is not all zeros, on a channel that has an IPv4
//!   address or a global IPv6 address; absent otherwise.
//!
//! The protocol (request bytes, response parsing) is in pure functions; [`IpmiDevice`] is the
//! small ioctl part. Every request has a timeout, the whole detection has a deadline, and a BMC
//! that stops answering ends the scan, so a hung BMC delays the inventory by seconds, not minutes.
//! The result is cached for the life of the process, as IPA caches it.

use super::HostRoot;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// NetFn/commands used (IPMI v2.0 spec).
const NETFN_APP: u8 = 0x06;
const CMD_GET_CHANNEL_INFO: u8 = 0x42;
const NETFN_TRANSPORT: u8 = 0x0c;
const CMD_GET_LAN_CONFIG: u8 = 0x02;

/// LAN configuration parameters.
const LAN_IP_ADDRESS: u8 = 3;
const LAN_MAC_ADDRESS: u8 = 5;
const LAN6_ENABLES: u8 = 51;
const LAN6_STATUS: u8 = 55;
const LAN6_STATIC_ADDRESS: u8 = 56;
const LAN6_DYNAMIC_ADDRESS: u8 = 59;

/// Channel medium types that are LANs (802.3 and "other LAN").
const MEDIUM_LAN: u8 = 0x04;
const MEDIUM_LAN_OTHER: u8 = 0x06;

/// What was learned about the BMC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BmcInfo {
    pub address: Option<String>,
    pub v6address: Option<String>,
    pub mac: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpmiError {
    #[error("cannot open the IPMI device {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("IPMI request netfn {netfn:#04x} cmd {cmd:#04x} failed: {reason}")]
    Io { netfn: u8, cmd: u8, reason: String },
    #[error(
        "the BMC did not answer IPMI request netfn {netfn:#04x} cmd {cmd:#04x} within {timeout:?}"
    )]
    Timeout {
        netfn: u8,
        cmd: u8,
        timeout: Duration,
    },
    #[error("the BMC answered with completion code {0:#04x}")]
    Completion(u8),
    #[error("the BMC's answer is too short")]
    Short,
    #[error("BMC detection ran out of time")]
    Deadline,
}

/// Sends one IPMI request to the BMC and returns the response data (completion code first).
pub trait IpmiTransport {
    fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError>;
}

// ---------------------------------------------------------------- request/response encoding

/// Get Channel Info request data.
pub fn channel_info_request(channel: u8) -> Vec<u8> {
    vec![channel & 0x0f]
}

/// Get LAN Configuration Parameters request data: channel, parameter, set and block selectors.
pub fn lan_config_request(channel: u8, param: u8, set: u8, block: u8) -> Vec<u8> {
    vec![channel & 0x0f, param, set, block]
}

/// Strips the completion code, failing on anything but success.
pub fn response_data(resp: &[u8]) -> Result<&[u8], IpmiError> {
    match resp.first() {
        None => Err(IpmiError::Short),
        Some(0) => Ok(&resp[1..]),
        Some(cc) => Err(IpmiError::Completion(*cc)),
    }
}

/// The channel medium type from a Get Channel Info response.
pub fn channel_medium(resp: &[u8]) -> Result<u8, IpmiError> {
    let data = response_data(resp)?;
    data.get(1).map(|m| m & 0x7f).ok_or(IpmiError::Short)
}

/// The parameter data of a Get LAN Configuration Parameters response (after the revision byte).
pub fn lan_param_data(resp: &[u8]) -> Result<&[u8], IpmiError> {
    let data = response_data(resp)?;
    data.get(1..).ok_or(IpmiError::Short)
}

pub fn decode_ipv4(param: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = param.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

pub fn decode_mac(param: &[u8]) -> Option<String> {
    let b = param.get(..6)?;
    Some(
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// The IPv6/IPv4 Addressing Enables parameter as ipmitool prints it.
pub fn decode_enables(param: &[u8]) -> Option<&'static str> {
    match param.first()? {
        0 => Some("ipv4"),
        1 => Some("ipv6"),
        2 => Some("both"),
        _ => None,
    }
}

/// One IPv6 address set (parameters 56 and 59).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6Entry {
    /// Static: the enable bit. Dynamic: the source is SLAAC or DHCPv6.
    pub enabled: bool,
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// 0 active, 1 disabled, 2 pending, 3 failed, 4 deprecated, 5 invalid.
    pub status: u8,
}

/// Decodes an IPv6 static (param 56) or dynamic (param 59) address set:
/// `set selector, source/type, address[16], prefix length, status`.
pub fn decode_v6_entry(param: &[u8], dynamic: bool) -> Option<V6Entry> {
    let source = *param.get(1)?;
    let addr: [u8; 16] = param.get(2..18)?.try_into().ok()?;
    let enabled = if dynamic {
        matches!(source & 0x0f, 1 | 2)
    } else {
        source & 0x80 != 0
    };
    Some(V6Entry {
        enabled,
        address: Ipv6Addr::from(addr),
        prefix_len: *param.get(18)?,
        status: *param.get(19)? & 0x0f,
    })
}

impl V6Entry {
    /// IPA's test for an address worth reporting: active, enabled, and not `::` (whatever the
    /// prefix length).
    fn usable(&self) -> bool {
        self.status == 0 && self.enabled && !self.address.is_unspecified()
    }

    /// IPA's `bmc_mac` test on `lan6 print` output: any printed address that starts with
    /// neither `::` nor `fe80`.
    fn is_global_looking(&self) -> bool {
        let text = self.address.to_string();
        !text.starts_with("::") && !text.starts_with("fe80")
    }
}

// ---------------------------------------------------------------- channel scan

/// A request: netfn, command, data.
type Request = (u8, u8, Vec<u8>);

/// Remembers answers within one detection run, so each parameter is asked once.
struct Session<'a> {
    transport: &'a mut dyn IpmiTransport,
    answers: HashMap<Request, Result<Vec<u8>, IpmiError>>,
    deadline: Instant,
    consecutive_timeouts: u32,
}

impl Session<'_> {
    fn ask(&mut self, netfn: u8, cmd: u8, data: Vec<u8>) -> Result<Vec<u8>, IpmiError> {
        let key = (netfn, cmd, data);
        if let Some(a) = self.answers.get(&key) {
            return a.clone();
        }
        // A BMC that timed out twice in a row is not answering: stop asking.
        let result = if Instant::now() >= self.deadline || self.consecutive_timeouts >= 2 {
            Err(IpmiError::Deadline)
        } else {
            self.transport.request(netfn, cmd, &key.2)
        };
        match &result {
            Err(IpmiError::Timeout { .. }) => self.consecutive_timeouts += 1,
            Err(_) => {}
            Ok(_) => self.consecutive_timeouts = 0,
        }
        self.answers.insert(key, result.clone());
        result
    }

    fn is_lan_channel(&mut self, ch: u8) -> bool {
        self.ask(NETFN_APP, CMD_GET_CHANNEL_INFO, channel_info_request(ch))
            .and_then(|r| channel_medium(&r))
            .is_ok_and(|m| m == MEDIUM_LAN || m == MEDIUM_LAN_OTHER)
    }

    fn lan_param(&mut self, ch: u8, param: u8, set: u8) -> Result<Vec<u8>, IpmiError> {
        let resp = self.ask(
            NETFN_TRANSPORT,
            CMD_GET_LAN_CONFIG,
            lan_config_request(ch, param, set, 0),
        )?;
        lan_param_data(&resp).map(<[u8]>::to_vec)
    }

    fn ipv4(&mut self, ch: u8) -> Option<Ipv4Addr> {
        self.lan_param(ch, LAN_IP_ADDRESS, 0)
            .ok()
            .as_deref()
            .and_then(decode_ipv4)
    }

    fn mac(&mut self, ch: u8) -> Option<String> {
        self.lan_param(ch, LAN_MAC_ADDRESS, 0)
            .ok()
            .as_deref()
            .and_then(decode_mac)
    }

    /// The address sets of one kind, as ipmitool walks them: from set 0 until the BMC refuses
    /// one, bounded by the counts in the IPv6 Status parameter when it has them.
    fn v6_entries(&mut self, ch: u8, dynamic: bool) -> Vec<V6Entry> {
        let status = self.lan_param(ch, LAN6_STATUS, 0).ok();
        let max = status
            .as_deref()
            .and_then(|s| s.get(usize::from(dynamic)).copied())
            .unwrap_or(16)
            .min(16);
        let param = if dynamic {
            LAN6_DYNAMIC_ADDRESS
        } else {
            LAN6_STATIC_ADDRESS
        };
        let mut out = Vec::new();
        for set in 0..max {
            match self.lan_param(ch, param, set) {
                Ok(data) => out.extend(decode_v6_entry(&data, dynamic)),
                Err(_) => break,
            }
        }
        out
    }
}

const CHANNELS: std::ops::RangeInclusive<u8> = 1..=11;

fn scan_address(s: &mut Session<'_>) -> String {
    for ch in CHANNELS {
        if !s.is_lan_channel(ch) {
            continue;
        }
        match s.ipv4(ch) {
            Some(ip) if !ip.is_unspecified() => return ip.to_string(),
            _ => continue,
        }
    }
    "0.0.0.0".to_string()
}

fn scan_v6address(s: &mut Session<'_>) -> String {
    for ch in CHANNELS {
        let enables = s.lan_param(ch, LAN6_ENABLES, 0).ok();
        if !matches!(
            enables.as_deref().and_then(decode_enables),
            Some("ipv6" | "both")
        ) {
            continue;
        }
        let pick = |entries: Vec<V6Entry>| entries.into_iter().find(V6Entry::usable);
        if let Some(e) = pick(s.v6_entries(ch, true)).or_else(|| pick(s.v6_entries(ch, false))) {
            return e.address.to_string();
        }
    }
    "::/0".to_string()
}

fn scan_mac(s: &mut Session<'_>) -> Option<String> {
    for ch in CHANNELS {
        if !s.is_lan_channel(ch) {
            continue;
        }
        let (Some(ip), Some(mac)) = (s.ipv4(ch), s.mac(ch)) else {
            continue;
        };
        if ip.is_unspecified() {
            let mut v6 = s.v6_entries(ch, true);
            v6.extend(s.v6_entries(ch, false));
            if !v6.iter().any(V6Entry::is_global_looking) {
                continue;
            }
        }
        if mac != "00:00:00:00:00:00" {
            return Some(mac);
        }
    }
    None
}

/// Runs the whole detection over a transport, within `budget`.
pub fn detect_with(transport: &mut dyn IpmiTransport, budget: Duration) -> BmcInfo {
    let mut s = Session {
        transport,
        answers: HashMap::new(),
        deadline: Instant::now() + budget,
        consecutive_timeouts: 0,
    };
    let address = scan_address(&mut s);
    let v6address = scan_v6address(&mut s);
    let mac = scan_mac(&mut s);
    BmcInfo {
        address: Some(address),
        v6address: Some(v6address),
        mac,
    }
}

// ---------------------------------------------------------------- the device

/// The IPMI character device, if the host has one (IPA's `any_ipmi_device_exists`).
pub fn find_ipmi_device(host: &HostRoot) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let is_char = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device());
    let mut candidates = Vec::new();
    for name in super::sysfs::dir_names(host.path("/dev")) {
        if name.starts_with("ipmi") {
            candidates.push(host.path(&format!("/dev/{name}")));
        }
    }
    for dir in ["/dev/ipmi", "/dev/ipmidev"] {
        for name in super::sysfs::dir_names(host.path(dir)) {
            candidates.push(host.path(&format!("{dir}/{name}")));
        }
    }
    candidates.into_iter().find(|p| is_char(p))
}

#[repr(C)]
struct IpmiSystemInterfaceAddr {
    addr_type: libc::c_int,
    channel: libc::c_short,
    lun: libc::c_uchar,
}

#[repr(C)]
struct IpmiMsg {
    netfn: libc::c_uchar,
    cmd: libc::c_uchar,
    data_len: libc::c_ushort,
    data: *mut libc::c_uchar,
}

#[repr(C)]
struct IpmiReq {
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

#[repr(C)]
struct IpmiRecv {
    recv_type: libc::c_int,
    addr: *mut libc::c_uchar,
    addr_len: libc::c_uint,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

const IPMI_SYSTEM_INTERFACE_ADDR_TYPE: libc::c_int = 0x0c;
const IPMI_BMC_CHANNEL: libc::c_short = 0x0f;
const IPMI_RESPONSE_RECV_TYPE: libc::c_int = 1;

nix::ioctl_read!(ipmictl_send_command, b'i', 13, IpmiReq);
nix::ioctl_readwrite!(ipmictl_receive_msg_trunc, b'i', 11, IpmiRecv);

/// `/dev/ipmi0` opened for requests to the BMC over the system interface.
pub struct IpmiDevice {
    file: std::fs::File,
    next_id: libc::c_long,
    timeout: Duration,
}

impl IpmiDevice {
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, IpmiError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| IpmiError::Open {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            file,
            next_id: 1,
            timeout,
        })
    }

    fn wait_readable(&self, left: Duration) -> Result<bool, std::io::Error> {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(rc > 0)
    }
}

impl IpmiTransport for IpmiDevice {
    fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
        use std::os::fd::AsRawFd;
        let io = |e: &dyn std::fmt::Display| IpmiError::Io {
            netfn,
            cmd,
            reason: e.to_string(),
        };
        let mut addr = IpmiSystemInterfaceAddr {
            addr_type: IPMI_SYSTEM_INTERFACE_ADDR_TYPE,
            channel: IPMI_BMC_CHANNEL,
            lun: 0,
        };
        let mut payload = data.to_vec();
        let msgid = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut req = IpmiReq {
            addr: (&mut addr as *mut IpmiSystemInterfaceAddr).cast(),
            addr_len: std::mem::size_of::<IpmiSystemInterfaceAddr>() as libc::c_uint,
            msgid,
            msg: IpmiMsg {
                netfn,
                cmd,
                data_len: payload.len() as libc::c_ushort,
                data: payload.as_mut_ptr(),
            },
        };
        // SAFETY: req points at `addr` and `payload`, both alive for the call; the kernel copies
        // them before returning.
        unsafe { ipmictl_send_command(self.file.as_raw_fd(), &mut req) }.map_err(|e| io(&e))?;

        let started = Instant::now();
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(IpmiError::Timeout {
                    netfn,
                    cmd,
                    timeout: self.timeout,
                });
            }
            if !self.wait_readable(left).map_err(|e| io(&e))? {
                continue;
            }
            let mut raddr = [0u8; 64];
            let mut rdata = vec![0u8; 1024];
            let mut recv = IpmiRecv {
                recv_type: 0,
                addr: raddr.as_mut_ptr(),
                addr_len: raddr.len() as libc::c_uint,
                msgid: 0,
                msg: IpmiMsg {
                    netfn: 0,
                    cmd: 0,
                    data_len: rdata.len() as libc::c_ushort,
                    data: rdata.as_mut_ptr(),
                },
            };
            // SAFETY: recv points at buffers of the sizes it declares, alive for the call.
            match unsafe { ipmictl_receive_msg_trunc(self.file.as_raw_fd(), &mut recv) } {
                Ok(_) | Err(nix::errno::Errno::EMSGSIZE) => {}
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io(&e)),
            }
            // Skip events and answers to earlier requests that timed out.
            if recv.recv_type != IPMI_RESPONSE_RECV_TYPE || recv.msgid != msgid {
                continue;
            }
            let len = usize::from(recv.msg.data_len).min(rdata.len());
            rdata.truncate(len);
            return Ok(rdata);
        }
    }
}

/// Per-request timeout and the budget for the whole detection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const DETECTION_BUDGET: Duration = Duration::from_secs(15);

/// Detects the BMC's addresses (cached for the process on the live system).
pub fn detect_bmc(host: &HostRoot) -> BmcInfo {
    static LIVE: OnceLock<BmcInfo> = OnceLock::new();
    let Some(device) = find_ipmi_device(host) else {
        return BmcInfo::default();
    };
    let detect = || {
        let started = Instant::now();
        let info = match IpmiDevice::open(&device, REQUEST_TIMEOUT) {
            Ok(mut dev) => detect_with(&mut dev, DETECTION_BUDGET),
            Err(e) => {
                // IPA reports "nothing configured" when ipmitool cannot talk to the BMC.
                tracing::warn!("{e}");
                BmcInfo {
                    address: Some("0.0.0.0".into()),
                    v6address: Some("::/0".into()),
                    mac: None,
                }
            }
        };
        tracing::info!(
            "BMC detection over {} took {:?}: {info:?}",
            device.display(),
            started.elapsed()
        );
        info
    };
    if host.is_live() {
        LIVE.get_or_init(detect).clone()
    } else {
        detect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted BMC: LAN configuration per channel.
    #[derive(Default)]
    struct FakeBmc {
        lan_channels: Vec<u8>,
        ipv4: HashMap<u8, [u8; 4]>,
        mac: HashMap<u8, [u8; 6]>,
        enables: HashMap<u8, u8>,
        /// (channel, dynamic) -> address sets
        v6: HashMap<(u8, bool), Vec<Vec<u8>>>,
        requests: Vec<(u8, u8, Vec<u8>)>,
        hang: bool,
    }

    fn v6set(set: u8, source: u8, addr: &str, prefix: u8, status: u8) -> Vec<u8> {
        let mut v = vec![set, source];
        v.extend_from_slice(&addr.parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&[prefix, status]);
        v
    }

    impl IpmiTransport for FakeBmc {
        fn request(&mut self, netfn: u8, cmd: u8, data: &[u8]) -> Result<Vec<u8>, IpmiError> {
            self.requests.push((netfn, cmd, data.to_vec()));
            if self.hang {
                return Err(IpmiError::Timeout {
                    netfn,
                    cmd,
                    timeout: Duration::from_secs(3),
                });
            }
            let ok = |param: &[u8]| {
                let mut r = vec![0u8, 0x11];
                r.extend_from_slice(param);
                Ok(r)
            };
            match (netfn, cmd) {
                (NETFN_APP, CMD_GET_CHANNEL_INFO) => {
                    let ch = data[0];
                    let medium = if self.lan_channels.contains(&ch) {
                        MEDIUM_LAN
                    } else {
                        0x05
                    };
                    Ok(vec![0, ch, medium, 1, 0x80, 0xf2, 0x1b, 0, 0, 0])
                }
                (NETFN_TRANSPORT, CMD_GET_LAN_CONFIG) => {
                    let (ch, param, set) = (data[0], data[1], data[2]);
                    match param {
                        LAN_IP_ADDRESS => self.ipv4.get(&ch).map_or(Ok(vec![0x80]), |ip| ok(ip)),
                        LAN_MAC_ADDRESS => self.mac.get(&ch).map_or(Ok(vec![0x80]), |m| ok(m)),
                        LAN6_ENABLES => self.enables.get(&ch).map_or(Ok(vec![0x80]), |e| ok(&[*e])),
                        LAN6_STATUS => Ok(vec![0x80]),
                        LAN6_STATIC_ADDRESS | LAN6_DYNAMIC_ADDRESS => {
                            let sets = self.v6.get(&(ch, param == LAN6_DYNAMIC_ADDRESS));
                            match sets.and_then(|s| s.get(usize::from(set))) {
                                Some(e) => ok(e),
                                None => Ok(vec![0xc9]),
                            }
                        }
                        _ => Ok(vec![0x80]),
                    }
                }
                _ => Ok(vec![0xc1]),
            }
        }
    }

    #[test]
    fn request_encoding() {
        assert_eq!(
            lan_config_request(1, LAN_IP_ADDRESS, 0, 0),
            [0x01, 0x03, 0x00, 0x00]
        );
        assert_eq!(
            lan_config_request(0x1b, LAN6_STATIC_ADDRESS, 2, 0),
            [0x0b, 56, 2, 0]
        );
        assert_eq!(channel_info_request(3), [3]);
    }

    #[test]
    fn response_decoding() {
        assert_eq!(response_data(&[0, 1, 2]).unwrap(), &[1, 2]);
        assert_eq!(response_data(&[0xc1]), Err(IpmiError::Completion(0xc1)));
        assert_eq!(response_data(&[]), Err(IpmiError::Short));
        assert_eq!(
            lan_param_data(&[0, 0x11, 10, 0, 0, 5]).unwrap(),
            &[10, 0, 0, 5]
        );
        assert_eq!(
            decode_ipv4(&[192, 0, 2, 7]),
            Some(Ipv4Addr::new(192, 0, 2, 7))
        );
        assert_eq!(decode_ipv4(&[192, 0]), None);
        assert_eq!(
            decode_mac(&[0x0c, 0xc4, 0x7a, 0x01, 0x02, 0xff]).as_deref(),
            Some("0c:c4:7a:01:02:ff")
        );
        assert_eq!(decode_enables(&[2]), Some("both"));
        assert_eq!(decode_enables(&[9]), None);
        assert_eq!(channel_medium(&[0, 1, 0x84]).unwrap(), 0x04);
        let e = decode_v6_entry(&v6set(0, 0x80, "2001:db8::5", 64, 0), false).unwrap();
        assert_eq!(
            e,
            V6Entry {
                enabled: true,
                address: "2001:db8::5".parse().unwrap(),
                prefix_len: 64,
                status: 0
            }
        );
        assert!(
            !decode_v6_entry(&v6set(0, 0x00, "2001:db8::5", 64, 0), false)
                .unwrap()
                .enabled
        );
        assert!(
            decode_v6_entry(&v6set(0, 0x01, "fe80::1", 64, 0), true)
                .unwrap()
                .enabled
        );
        assert!(decode_v6_entry(&[0, 1, 2], true).is_none());
    }

    #[test]
    fn first_configured_lan_channel_wins() {
        let mut bmc = FakeBmc {
            lan_channels: vec![1, 2, 8],
            ..Default::default()
        };
        bmc.ipv4.insert(1, [0, 0, 0, 0]);
        bmc.mac.insert(1, [0; 6]);
        bmc.ipv4.insert(2, [10, 1, 2, 3]);
        bmc.mac.insert(2, [0x0c, 0xc4, 0x7a, 1, 2, 3]);
        bmc.ipv4.insert(5, [10, 9, 9, 9]); // not a LAN channel: never reported
        let info = detect_with(&mut bmc, Duration::from_secs(10));
        assert_eq!(info.address.as_deref(), Some("10.1.2.3"));
        assert_eq!(info.v6address.as_deref(), Some("::/0"));
        assert_eq!(info.mac.as_deref(), Some("0c:c4:7a:01:02:03"));
        // Each parameter is asked once even though three scans read it.
        let ip_asks = bmc
            .requests
            .iter()
            .filter(|r| r.1 == CMD_GET_LAN_CONFIG && r.2 == [2, 3, 0, 0])
            .count();
        assert_eq!(ip_asks, 1);
    }

    #[test]
    fn nothing_configured() {
        let mut bmc = FakeBmc {
            lan_channels: vec![1],
            ..Default::default()
        };
        bmc.ipv4.insert(1, [0, 0, 0, 0]);
        bmc.mac.insert(1, [0x0c, 0xc4, 0x7a, 1, 2, 3]);
        let info = detect_with(&mut bmc, Duration::from_secs(10));
        assert_eq!(info.address.as_deref(), Some("0.0.0.0"));
        assert_eq!(info.v6address.as_deref(), Some("::/0"));
        // No IPv4 and no global IPv6 address: the MAC is not reported.
        assert_eq!(info.mac, None);
    }

    #[test]
    fn ipv6_only_bmc() {
        let mut bmc = FakeBmc {
            lan_channels: vec![1],
            ..Default::default()
        };
        bmc.ipv4.insert(1, [0, 0, 0, 0]);
        bmc.mac.insert(1, [0x0c, 0xc4, 0x7a, 4, 5, 6]);
        bmc.enables.insert(1, 1);
        bmc.v6.insert(
            (1, true),
            vec![
                v6set(0, 0x01, "fe80::ec4:7aff:fe04:506", 64, 1),
                v6set(1, 0x02, "2001:db8::10", 64, 0),
            ],
        );
        bmc.v6
            .insert((1, false), vec![v6set(0, 0x80, "2001:db8::20", 64, 0)]);
        let info = detect_with(&mut bmc, Duration::from_secs(10));
        assert_eq!(info.address.as_deref(), Some("0.0.0.0"));
        // The dynamic (DHCPv6) address wins over the static one; the inactive SLAAC one is skipped.
        assert_eq!(info.v6address.as_deref(), Some("2001:db8::10"));
        assert_eq!(info.mac.as_deref(), Some("0c:c4:7a:04:05:06"));
    }

    #[test]
    fn static_v6_when_no_dynamic_and_disabled_channels_are_skipped() {
        let mut bmc = FakeBmc {
            lan_channels: vec![1, 2],
            ..Default::default()
        };
        bmc.enables.insert(1, 0); // IPv4 only
        bmc.v6
            .insert((1, false), vec![v6set(0, 0x80, "2001:db8::1", 64, 0)]);
        bmc.enables.insert(2, 2);
        bmc.v6.insert(
            (2, false),
            vec![
                v6set(0, 0x80, "::", 0, 0),
                v6set(1, 0x80, "2001:db8::2", 64, 0),
            ],
        );
        let info = detect_with(&mut bmc, Duration::from_secs(10));
        assert_eq!(info.v6address.as_deref(), Some("2001:db8::2"));
    }

    #[test]
    fn a_hung_bmc_is_given_up_quickly() {
        let mut bmc = FakeBmc {
            hang: true,
            ..Default::default()
        };
        let info = detect_with(&mut bmc, Duration::from_secs(10));
        assert_eq!(info.address.as_deref(), Some("0.0.0.0"));
        assert_eq!(info.mac, None);
        assert_eq!(bmc.requests.len(), 2, "two timeouts in a row end the scan");
    }

    #[test]
    fn no_device_no_bmc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        // A regular file named like the device is not an IPMI device.
        std::fs::write(dir.path().join("dev/ipmi0"), b"").unwrap();
        let host = HostRoot::new(dir.path());
        assert_eq!(find_ipmi_device(&host), None);
        assert_eq!(detect_bmc(&host), BmcInfo::default());
    }

    #[test]
    fn ioctl_numbers_match_linux() {
        // _IOR('i', 13, struct ipmi_req) and _IOWR('i', 11, struct ipmi_recv) on 64-bit Linux.
        assert_eq!(std::mem::size_of::<IpmiReq>(), 40);
        assert_eq!(std::mem::size_of::<IpmiRecv>(), 48);
        assert_eq!(
            nix::request_code_read!(b'i', 13, std::mem::size_of::<IpmiReq>()),
            0x8028_690d
        );
        assert_eq!(
            nix::request_code_readwrite!(b'i', 11, std::mem::size_of::<IpmiRecv>()),
            0xc030_690b
        );
    }
}
