//! LLDP: listen for the switch's announcement on each interface and report its TLVs as IPA
//! does (`lldp_raw` of the `lldp` inspection collector, and `interfaces[].lldp` with
//! `ipa-collect-lldp`): `{ifname: [[tlv_type, "<hex of the value>"], ...]}`.
//!
//! One raw `AF_PACKET` socket per interface, bound to the interface and to the LLDP ethertype
//! (0x88cc), joined to the LLDP multicast group 01:80:c2:00:00:0e (rather than IPA's
//! promiscuous mode, which would change interface flags the kernel then has to be told to
//! undo). All sockets are polled together until each has delivered one frame or the timeout
//! ends; an interface that heard nothing gets an empty list. Like IPA, interfaces are not
//! brought up here: the ramdisk's network setup does that.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub const LLDP_ETHERTYPE: u16 = 0x88cc;
pub const LLDP_MULTICAST: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];

/// TLVs of one interface: `(type, hex of the value)`.
pub type Tlvs = Vec<(u8, String)>;

/// Splits an LLDPDU (the frame after its 14-byte Ethernet header) into TLVs: a 7-bit type and
/// a 9-bit length, then the value. Parsing stops after the End of LLDPDU TLV (type 0), so the
/// Ethernet padding that follows it is not mistaken for more TLVs; a TLV whose length runs past
/// the frame keeps the bytes that are there, as IPA does.
pub fn parse_tlvs(lldpdu: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = lldpdu;
    while rest.len() >= 2 {
        let header = u16::from_be_bytes([rest[0], rest[1]]);
        let kind = (header >> 9) as u8;
        let len = usize::from(header & 0x01ff);
        let end = (2 + len).min(rest.len());
        out.push((kind, rest[2..end].to_vec()));
        rest = &rest[end..];
        if kind == 0 {
            break;
        }
    }
    out
}

/// The TLVs of a whole Ethernet frame, hex-encoded; frames too short to carry a header have none.
pub fn frame_tlvs(frame: &[u8]) -> Tlvs {
    if frame.len() < 14 {
        return Vec::new();
    }
    parse_tlvs(&frame[14..])
        .into_iter()
        .map(|(t, v)| (t, hex::encode(v)))
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen for LLDP on {ifname}: {what}: {source}")]
pub struct LldpSocketError {
    ifname: String,
    what: &'static str,
    source: std::io::Error,
}

/// A raw socket receiving LLDP frames on one interface.
struct Listener {
    ifname: String,
    fd: OwnedFd,
}

fn ifindex(name: &str) -> std::io::Result<libc::c_int> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(idx as libc::c_int)
}

impl Listener {
    fn open(ifname: &str) -> Result<Self, LldpSocketError> {
        let err = |what, source| LldpSocketError {
            ifname: ifname.to_string(),
            what,
            source,
        };
        let index = ifindex(ifname).map_err(|e| err("no such interface", e))?;
        let proto = LLDP_ETHERTYPE.to_be();
        // SAFETY: plain socket(2) call; the result is checked and owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(proto),
            )
        };
        if raw < 0 {
            return Err(err("socket(AF_PACKET)", std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as libc::c_ushort;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index;
        // SAFETY: sll is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err("bind", std::io::Error::last_os_error()));
        }

        // SAFETY: packet_mreq is plain old data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index;
        mreq.mr_type = libc::PACKET_MR_MULTICAST as libc::c_ushort;
        mreq.mr_alen = 6;
        mreq.mr_address[..6].copy_from_slice(&LLDP_MULTICAST);
        // SAFETY: mreq is a valid packet_mreq of the length given.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&mreq as *const libc::packet_mreq).cast(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(err(
                "joining the LLDP multicast group",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Self {
            ifname: ifname.to_string(),
            fd,
        })
    }

    fn receive(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 1600];
        // SAFETY: buf is writable for its whole length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

/// Listens on `interfaces` (lo is ignored) for up to `timeout` and returns the TLVs of the
/// first LLDP frame each one received (empty when none arrived or listening failed).
pub fn collect_lldp(interfaces: &[String], timeout: Duration) -> HashMap<String, Tlvs> {
    let mut result: HashMap<String, Tlvs> = HashMap::new();
    let mut waiting: Vec<Listener> = Vec::new();
    for name in interfaces.iter().filter(|n| n.as_str() != "lo") {
        result.insert(name.clone(), Vec::new());
        match Listener::open(name) {
            Ok(l) => waiting.push(l),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    let started = Instant::now();
    while !waiting.is_empty() {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            let names: Vec<&str> = waiting.iter().map(|l| l.ifname.as_str()).collect();
            tracing::warn!("no LLDP frame within {timeout:?} on {}", names.join(", "));
            break;
        }
        let mut fds: Vec<libc::pollfd> = waiting
            .iter()
            .map(|l| libc::pollfd {
                fd: l.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: fds is a valid array of pollfd of the length given.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("waiting for LLDP frames failed: {e}");
            break;
        }
        let mut done = Vec::new();
        for (i, pfd) in fds.iter().enumerate() {
            if pfd.revents == 0 {
                continue;
            }
            let l = &waiting[i];
            match l.receive() {
                Ok(frame) => {
                    tracing::info!("LLDP frame received on {}", l.ifname);
                    result.insert(l.ifname.clone(), frame_tlvs(&frame));
                    done.push(i);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::warn!("reading the LLDP frame on {} failed: {e}", l.ifname);
                    done.push(i);
                }
            }
        }
        for i in done.into_iter().rev() {
            waiting.swap_remove(i);
        }
    }
    result
}

/// The `lldp` collector's `lldp_raw` value.
pub fn lldp_raw(interfaces: &[String], timeout: Duration) -> serde_json::Value {
    let map = collect_lldp(interfaces, timeout);
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let mut obj = serde_json::Map::new();
    for n in names {
        let tlvs: Vec<serde_json::Value> = map[n]
            .iter()
            .map(|(t, v)| serde_json::json!([t, v]))
            .collect();
        obj.insert(n.clone(), serde_json::Value::Array(tlvs));
    }
    serde_json::Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
        let header = (u16::from(kind) << 9) | value.len() as u16;
        let mut v = header.to_be_bytes().to_vec();
        v.extend_from_slice(value);
        v
    }

    pub(crate) fn lldp_frame(src: [u8; 6]) -> Vec<u8> {
        let mut f = LLDP_MULTICAST.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&LLDP_ETHERTYPE.to_be_bytes());
        f.extend(tlv(1, &[4, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56])); // chassis id (MAC)
        f.extend(tlv(2, b"\x05Ethernet1/7")); // port id (interface name)
        f.extend(tlv(3, &[0, 120])); // TTL
        f.extend(tlv(5, b"switch-a.example")); // system name
        f.extend(tlv(
            127,
            &[
                0x00, 0x80, 0xc2, 0x03, 0x00, 0x64, 0x08, b'v', b'l', b'a', b'n', b'-', b'1', b'0',
                b'0',
            ],
        ));
        f.extend(tlv(0, &[]));
        f.resize(f.len().max(60), 0); // Ethernet padding
        f
    }

    #[test]
    fn tlvs_of_a_frame() {
        let tlvs = frame_tlvs(&lldp_frame([2, 0, 0, 0, 0, 1]));
        let expected: Tlvs = vec![
            (1, "04525400123456".into()),
            (2, "0545746865726e6574312f37".into()),
            (3, "0078".into()),
            (5, "7377697463682d612e6578616d706c65".into()),
            (127, "0080c203006408766c616e2d313030".into()),
            (0, String::new()),
        ];
        assert_eq!(
            tlvs, expected,
            "the padding after End of LLDPDU is not read as TLVs"
        );
    }

    #[test]
    fn truncated_and_short_input() {
        assert!(frame_tlvs(&[0u8; 13]).is_empty());
        assert!(frame_tlvs(&[0u8; 14]).is_empty());
        // A TLV claiming 10 bytes with 3 present keeps the 3.
        assert_eq!(parse_tlvs(&[0x02, 0x0a, 1, 2, 3]), vec![(1, vec![1, 2, 3])]);
        // A lone trailing byte is ignored.
        assert_eq!(parse_tlvs(&[0x0a, 0x01, 0xaa, 0x07]), vec![(5, vec![0xaa])]);
        // The maximum length (511) is honoured.
        let mut big = vec![0xff, 0xff];
        big.extend(vec![7u8; 511]);
        let parsed = parse_tlvs(&big);
        assert_eq!(parsed[0].0, 127);
        assert_eq!(parsed[0].1.len(), 511);
    }

    #[test]
    fn unknown_interfaces_report_nothing() {
        let got = collect_lldp(
            &["lo".to_string(), "no-such-if0".to_string()],
            Duration::from_millis(50),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got["no-such-if0"], Vec::<(u8, String)>::new());
    }
}
