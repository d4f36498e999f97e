//! LLDP capture on real sockets: a veth pair in a private network namespace (made by this
//! test's own thread, so the host's interfaces are never touched), an LLDP frame sent on one
//! end, heard on the other.
//!
//! Needs root (CAP_NET_ADMIN/CAP_NET_RAW) and iproute2's `ip`; without them the test says so
//! and does nothing.

use ironic_agent::hardware::lldp::{collect_lldp, lldp_raw, LLDP_ETHERTYPE, LLDP_MULTICAST};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut v = ((u16::from(kind) << 9) | value.len() as u16)
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(value);
    v
}

fn frame() -> Vec<u8> {
    let mut f = LLDP_MULTICAST.to_vec();
    f.extend_from_slice(&[0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    f.extend_from_slice(&LLDP_ETHERTYPE.to_be_bytes());
    f.extend(tlv(1, &[4, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55]));
    f.extend(tlv(2, b"\x05Ethernet7"));
    f.extend(tlv(3, &[0, 120]));
    f.extend(tlv(0, &[]));
    f.resize(64, 0);
    f
}

fn send_frame(ifname: &str, frame: &[u8]) {
    let c = std::ffi::CString::new(ifname).unwrap();
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) } as libc::c_int;
    assert!(index > 0, "{ifname} exists");
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            libc::c_int::from(LLDP_ETHERTYPE.to_be()),
        )
    };
    assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = LLDP_ETHERTYPE.to_be();
    sll.sll_ifindex = index;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&LLDP_MULTICAST);
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    assert_eq!(
        n,
        frame.len() as isize,
        "sendto: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn hears_a_frame_on_a_veth_pair() {
    let outcome = std::thread::spawn(|| {
        // This thread (and threads it starts, and processes it spawns) get a fresh netns.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(format!(
                "cannot create a network namespace ({e}); run as root to test LLDP capture"
            ));
        }
        if !(ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"])
            && ip(&["link", "add", "w0", "type", "veth", "peer", "name", "w1"])
            && ["v0", "v1", "w0", "w1", "lo"]
                .iter()
                .all(|i| ip(&["link", "set", i, "up"])))
        {
            return Err(
                "cannot create veth pairs with `ip`; install iproute2 to test LLDP capture".into(),
            );
        }
        let sender = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            send_frame("v0", &frame());
        });
        let started = Instant::now();
        let names = ["lo", "v1", "w1"].map(String::from);
        let got = collect_lldp(&names, Duration::from_secs(2));
        let took = started.elapsed();
        sender.join().unwrap();
        // The JSON shape of the lldp collector, in this namespace too.
        let raw = lldp_raw(&["w1".to_string()], Duration::from_millis(100));
        Ok((got, took, raw))
    })
    .join()
    .unwrap();

    let (got, took, raw) = match outcome {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    assert!(!got.contains_key("lo"), "lo is never listened on");
    assert_eq!(
        got["v1"],
        vec![
            (1, "04021122334455".to_string()),
            (2, hex_of(b"\x05Ethernet7")),
            (3, "0078".to_string()),
            (0, String::new()),
        ]
    );
    assert_eq!(got["w1"], Vec::<(u8, String)>::new(), "no frame on w1");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "waited {took:?}"
    );
    assert_eq!(raw, serde_json::json!({"w1": []}));
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
