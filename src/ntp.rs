//! `ipa-ntp-server`: set the clock from an NTP server (an SNTPv4 query) and write it to the
//! hardware clock, at startup and before powering off or rebooting (contract §1.2, §12).
//!
//! IPA runs chronyd or ntpdate and then `hwclock --systohc`; the ramdisk has neither, and both
//! steps are a UDP packet and two system calls.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const NTP_PORT: u16 = 123;
/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    #[error("resolving NTP server {server} failed: {reason}")]
    Resolve { server: String, reason: String },
    #[error("querying NTP server {server} failed: {reason}")]
    Query { server: String, reason: String },
    #[error("setting the system clock from NTP server {server} failed: {reason}")]
    SetClock { server: String, reason: String },
}

/// Queries `server` and sets the system clock; then writes the hardware clock (best effort).
pub async fn sync_clock(server: &str) -> Result<SystemTime, NtpError> {
    let addr = resolve(server).await?;
    let now = query(server, addr).await?;
    let since_epoch = now
        .duration_since(UNIX_EPOCH)
        .map_err(|e| NtpError::Query {
            server: server.into(),
            reason: e.to_string(),
        })?;
    let ts = nix::sys::time::TimeSpec::new(
        since_epoch.as_secs() as libc::time_t,
        since_epoch.subsec_nanos() as libc::c_long,
    );
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(|e| {
        NtpError::SetClock {
            server: server.into(),
            reason: e.to_string(),
        }
    })?;
    tracing::info!("system clock set from NTP server {server}");
    if let Err(e) = write_hardware_clock(now) {
        tracing::warn!("writing the hardware clock failed: {e}");
    }
    Ok(now)
}

async fn resolve(server: &str) -> Result<SocketAddr, NtpError> {
    let host = server.trim_matches(['[', ']']);
    tokio::net::lookup_host((host, NTP_PORT))
        .await
        .map_err(|e| NtpError::Resolve {
            server: server.into(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| NtpError::Resolve {
            server: server.into(),
            reason: "no address".into(),
        })
}

async fn query(server: &str, addr: SocketAddr) -> Result<SystemTime, NtpError> {
    let fail = |reason: String| NtpError::Query {
        server: server.into(),
        reason,
    };
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| fail(e.to_string()))?;
    sock.connect(addr).await.map_err(|e| fail(e.to_string()))?;
    let sent_at = std::time::Instant::now();
    sock.send(&request())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf))
        .await
        .map_err(|_| fail(format!("no answer within {} s", QUERY_TIMEOUT.as_secs())))?
        .map_err(|e| fail(e.to_string()))?;
    let server_time = parse_reply(&buf[..n]).map_err(fail)?;
    // Half the round trip is the usual estimate of the reply's travel time.
    Ok(server_time + sent_at.elapsed() / 2)
}

/// An SNTPv4 client request: LI 0, version 4, mode 3 (client).
fn request() -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = 0b00_100_011;
    p
}

/// The server's transmit timestamp from a reply.
fn parse_reply(p: &[u8]) -> Result<SystemTime, String> {
    if p.len() < 48 {
        return Err(format!(
            "the reply is {} bytes, an NTP packet is 48",
            p.len()
        ));
    }
    let mode = p[0] & 0x7;
    if mode != 4 && mode != 5 {
        return Err(format!("the reply has mode {mode}, not a server reply"));
    }
    if p[1] == 0 {
        return Err("the server is unsynchronised (stratum 0, kiss-o'-death)".into());
    }
    let secs = u32::from_be_bytes([p[40], p[41], p[42], p[43]]) as u64;
    let frac = u32::from_be_bytes([p[44], p[45], p[46], p[47]]) as u64;
    let unix = secs
        .checked_sub(NTP_UNIX_OFFSET)
        .ok_or("the server's time is before 1970")?;
    let nanos = (frac * 1_000_000_000) >> 32;
    Ok(UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_nanos(nanos))
}

/// `struct rtc_time` from <linux/rtc.h>.
#[repr(C)]
#[derive(Default)]
struct RtcTime {
    tm_sec: libc::c_int,
    tm_min: libc::c_int,
    tm_hour: libc::c_int,
    tm_mday: libc::c_int,
    tm_mon: libc::c_int,
    tm_year: libc::c_int,
    tm_wday: libc::c_int,
    tm_yday: libc::c_int,
    tm_isdst: libc::c_int,
}

nix::ioctl_write_ptr!(rtc_set_time, b'p', 0x0a, RtcTime);

/// `hwclock --systohc` in UTC.
fn write_hardware_clock(t: SystemTime) -> std::io::Result<()> {
    let dt = time::OffsetDateTime::from(t);
    let rtc = RtcTime {
        tm_sec: dt.second() as i32,
        tm_min: dt.minute() as i32,
        tm_hour: dt.hour() as i32,
        tm_mday: dt.day() as i32,
        tm_mon: dt.month() as i32 - 1,
        tm_year: dt.year() - 1900,
        ..Default::default()
    };
    let f = std::fs::OpenOptions::new().write(true).open("/dev/rtc0")?;
    // SAFETY: RTC_SET_TIME reads one rtc_time from the pointer we pass.
    unsafe { rtc_set_time(f.as_raw_fd(), &rtc) }.map_err(std::io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(secs_since_1900: u32, frac: u32, mode: u8, stratum: u8) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = (4 << 3) | mode;
        p[1] = stratum;
        p[40..44].copy_from_slice(&secs_since_1900.to_be_bytes());
        p[44..48].copy_from_slice(&frac.to_be_bytes());
        p
    }

    #[test]
    fn parses_transmit_timestamp() {
        let t = parse_reply(&reply(
            (NTP_UNIX_OFFSET + 1_700_000_000) as u32,
            1 << 31,
            4,
            2,
        ))
        .unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_700_000_000);
        assert_eq!(d.subsec_millis(), 500);
    }

    #[test]
    fn rejects_bad_replies() {
        assert!(parse_reply(&[0u8; 10]).unwrap_err().contains("48"));
        assert!(parse_reply(&reply(3_900_000_000, 0, 3, 2))
            .unwrap_err()
            .contains("mode 3"));
        assert!(parse_reply(&reply(3_900_000_000, 0, 4, 0))
            .unwrap_err()
            .contains("stratum 0"));
    }

    #[test]
    fn request_is_a_version_4_client_packet() {
        let r = request();
        assert_eq!(r[0] >> 3 & 0x7, 4);
        assert_eq!(r[0] & 0x7, 3);
    }

    #[tokio::test]
    async fn queries_a_loopback_server() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 48];
            let (_, peer) = server.recv_from(&mut buf).await.unwrap();
            server
                .send_to(
                    &reply((NTP_UNIX_OFFSET + 1_800_000_000) as u32, 0, 4, 1),
                    peer,
                )
                .await
                .unwrap();
        });
        let t = query("test", addr).await.unwrap();
        let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((1_800_000_000..1_800_000_002).contains(&secs));
    }
}
