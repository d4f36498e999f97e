//! The agent's own log (console + a capped file in the state directory) and the system-log
//! archive Ironic collects on failures (`log.collect_system_logs`, and the `logs` inspection
//! collector): a gzipped tar built natively, with no journalctl, dmesg or lsblk.

use crate::hardware::HostRoot;
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The agent log rotates to `agent.log.1` beyond this size, so it never fills the ramdisk.
const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;
/// The kernel's log buffer can be up to this large.
const KLOG_BUFFER: usize = 4 * 1024 * 1024;

pub const LOG_FILE_NAME: &str = "agent.log";

/// Sets up logging: human-readable lines on stderr (the serial console) and, when `log_dir` is
/// given, the same lines in `log_dir/agent.log`. `debug` is `ipa-debug`.
pub fn init(debug: bool, log_dir: Option<&Path>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = if debug { "debug" } else { "info" };
    // Our own crate at the chosen level; libraries only when they warn.
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("IRONIC_AGENT_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("warn,ironic_agent={level}"))
        });
    // A serial console at 115200 baud can block a writer for a long time; log lines go through
    // a dedicated thread (dropping lines if it falls far behind) so no task, heartbeats
    // included, ever waits for the console.
    let console = tracing_subscriber::fmt::layer()
        .with_writer(non_blocking(std::io::stderr()))
        .with_target(false);
    let file = log_dir
        .and_then(|d| RotatingFile::open(d.join(LOG_FILE_NAME)).ok())
        .map(|f| {
            tracing_subscriber::fmt::layer()
                .with_writer(non_blocking(f))
                .with_ansi(false)
                .with_target(false)
        });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file)
        .try_init();
}

/// The writer threads' guards: dropping one flushes what its thread still holds.
static WRITER_GUARDS: Mutex<Vec<tracing_appender::non_blocking::WorkerGuard>> =
    Mutex::new(Vec::new());

/// Wraps `w` in a writer thread that lives until [`flush`].
fn non_blocking<W: Write + Send + 'static>(w: W) -> tracing_appender::non_blocking::NonBlocking {
    let (writer, guard) = tracing_appender::non_blocking(w);
    if let Ok(mut guards) = WRITER_GUARDS.lock() {
        guards.push(guard);
    }
    writer
}

/// Writes out every buffered log line; call before the process exits.
pub fn flush() {
    if let Ok(mut guards) = WRITER_GUARDS.lock() {
        guards.clear();
    }
}

/// An append-only log file that rotates once when it grows past [`MAX_LOG_BYTES`].
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<(PathBuf, std::fs::File)>>,
}

impl RotatingFile {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new((path, f))),
        })
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| std::io::Error::other("log file lock poisoned"))?;
        if g.1.metadata().map(|m| m.len()).unwrap_or(0) > MAX_LOG_BYTES {
            let rotated = g.0.with_extension("log.1");
            std::fs::rename(&g.0, rotated)?;
            g.1 = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&g.0)?;
        }
        g.1.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("building the system log archive failed: {0}")]
pub struct ArchiveError(#[from] std::io::Error);

/// The files of the archive: the agent's log, the kernel log and system facts.
pub fn collect_entries(host: &HostRoot, state_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut entries = Vec::new();
    for name in [format!("{LOG_FILE_NAME}.1"), LOG_FILE_NAME.to_string()] {
        if let Ok(data) = std::fs::read(state_dir.join(&name)) {
            entries.push((name, data));
        }
    }
    match read_kernel_log() {
        Ok(dmesg) => entries.push(("dmesg".into(), dmesg)),
        Err(e) => entries.push((
            "dmesg.error".into(),
            format!("reading the kernel log failed: {e}\n").into_bytes(),
        )),
    }
    for (name, path) in [
        ("cmdline", "/proc/cmdline"),
        ("meminfo", "/proc/meminfo"),
        ("mounts", "/proc/mounts"),
        ("partitions", "/proc/partitions"),
        ("cpuinfo", "/proc/cpuinfo"),
        ("modules", "/proc/modules"),
        ("mdstat", "/proc/mdstat"),
        ("net_dev", "/proc/net/dev"),
        ("net_route", "/proc/net/route"),
        ("net_if_inet6", "/proc/net/if_inet6"),
        ("uptime", "/proc/uptime"),
    ] {
        if let Ok(data) = std::fs::read(host.path(path)) {
            entries.push((name.into(), data));
        }
    }
    entries.push(("ip_addr".into(), addresses().into_bytes()));
    entries.push(("ps".into(), processes(host).into_bytes()));
    entries
}

/// A gzipped tar of `entries`, base64-encoded as Ironic expects `system_logs`.
pub fn archive_base64(entries: &[(String, Vec<u8>)]) -> Result<String, ArchiveError> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_slice())?;
    }
    let bytes = tar.into_inner()?.finish()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The kernel ring buffer through syslog(2), as dmesg reads it.
fn read_kernel_log() -> std::io::Result<Vec<u8>> {
    const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
    let mut buf = vec![0u8; KLOG_BUFFER];
    // SAFETY: klogctl writes at most `len` bytes into the buffer we own.
    let n = unsafe {
        libc::klogctl(
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr().cast(),
            buf.len() as libc::c_int,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Every interface address, one per line (what `ip addr` would show of it).
fn addresses() -> String {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return "reading interface addresses failed\n".into();
    };
    let mut out = String::new();
    for a in addrs {
        let addr = a.address.map(|s| s.to_string()).unwrap_or_default();
        out.push_str(&format!("{} {:?} {}\n", a.interface_name, a.flags, addr));
    }
    out
}

/// `pid cmdline` for every process.
fn processes(host: &HostRoot) -> String {
    let Ok(dir) = std::fs::read_dir(host.path("/proc")) else {
        return String::new();
    };
    let mut rows: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            Some((pid, cmd.trim().to_string()))
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .map(|(p, c)| format!("{p} {c}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn archive_is_a_base64_gzipped_tar_of_the_entries() {
        let b64 = archive_base64(&[
            ("agent.log".into(), b"hello\n".to_vec()),
            ("dmesg".into(), b"k\n".to_vec()),
        ])
        .unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(raw.as_slice()));
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut e = entry.unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            seen.push((e.path().unwrap().display().to_string(), s));
        }
        assert_eq!(
            seen,
            vec![
                ("agent.log".into(), "hello\n".into()),
                ("dmesg".into(), "k\n".into())
            ]
        );
    }

    #[test]
    fn entries_include_the_agent_log_and_system_facts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE_NAME), b"agent line\n").unwrap();
        let entries = collect_entries(&HostRoot::system(), dir.path());
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        for want in ["agent.log", "cmdline", "meminfo", "mounts", "ip_addr", "ps"] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(names.contains(&"dmesg") || names.contains(&"dmesg.error"));
    }

    #[test]
    fn log_file_rotates_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE_NAME);
        let mut f = RotatingFile::open(path.clone()).unwrap();
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..10 {
            f.write_all(&chunk).unwrap();
        }
        assert!(dir.path().join("agent.log.1").exists());
        assert!(std::fs::metadata(&path).unwrap().len() <= MAX_LOG_BYTES + chunk.len() as u64);
    }
}
