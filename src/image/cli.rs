//! `ironic-agent write-image`: the pipeline from the command line.
//!
//! The DEVICE named on the command line counts as explicitly permitted (as `--allow-device`
//! would): naming it is the operator's consent. A progress bar with rate and ETA is drawn on
//! a terminal; otherwise a log line is written every ten seconds.

use super::checksum::Expected;
use super::fetch::{FetchOptions, TlsOptions};
use super::info::{ChecksumSource, WriteRequest};
use super::sniff::FormatPolicy;
use super::{write_image, Progress};
use crate::safety::DiskGuard;
use anyhow::Context;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How to treat the image's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Detect by magic bytes (compression is always removed first).
    Auto,
    /// Write the (decompressed) bytes as they are, never interpreting them.
    Raw,
    /// Require qcow2 and convert it.
    Qcow2,
}

#[derive(Debug, clap::Args)]
pub struct WriteImageArgs {
    /// Image URL (http or https).
    pub url: String,
    /// Target block device or regular file (created if missing).
    pub device: PathBuf,
    /// Expected checksum as ALGO:HEX (md5, sha224, sha256, sha384, sha512) or a bare hex digest.
    #[arg(long, conflicts_with = "checksum_url")]
    pub checksum: Option<String>,
    /// URL of a checksum file (bare hash, GNU or BSD format) naming the image's file name.
    #[arg(long)]
    pub checksum_url: Option<String>,
    /// Image format handling.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: FormatArg,
    /// Formats allowed after detection (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "raw,gpt,qcow2,iso")]
    pub permitted_formats: Vec<String>,
    /// Do not verify the server's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Extra CA bundle (PEM) to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Connection timeout and per-read stall timeout, in seconds.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout: u64,
    /// Retries after a failed connection or download.
    #[arg(long, default_value_t = 9)]
    pub retries: u32,
    /// Seconds between retries.
    #[arg(long, default_value_t = 10)]
    pub retry_interval: u64,
    /// Give up after this many seconds in total (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_duration: u64,
}

impl WriteImageArgs {
    fn request(&self) -> anyhow::Result<WriteRequest> {
        let checksum = match (&self.checksum, &self.checksum_url) {
            (Some(c), _) => ChecksumSource::Known(
                Expected::parse_tagged(c, true)
                    .map_err(anyhow::Error::msg)
                    .context("--checksum")?,
            ),
            (None, Some(u)) => ChecksumSource::Url {
                url: u.clone(),
                algo: None,
            },
            (None, None) => {
                tracing::warn!(
                    "no --checksum or --checksum-url given: the image will not be verified"
                );
                ChecksumSource::None
            }
        };
        let disk_format = match self.format {
            FormatArg::Auto => None,
            FormatArg::Raw => Some("raw".to_string()),
            FormatArg::Qcow2 => Some("qcow2".to_string()),
        };
        let timeout = Duration::from_secs(self.connect_timeout.max(1));
        let fetch = FetchOptions {
            connect_timeout: timeout,
            stall_timeout: timeout,
            retries: self.retries,
            retry_interval: Duration::from_secs(self.retry_interval),
            max_duration: (self.max_duration > 0).then(|| Duration::from_secs(self.max_duration)),
            tls: TlsOptions {
                insecure: self.insecure,
                ca_file: self.ca_file.clone(),
                config: None,
            },
            ..FetchOptions::default()
        };
        Ok(WriteRequest {
            id: super::checksum::url_basename(&self.url),
            urls: vec![self.url.clone()],
            checksum,
            md5_allowed: true,
            policy: FormatPolicy {
                disk_format,
                permitted: self.permitted_formats.clone(),
            },
            fetch,
        })
    }

    pub async fn run(self) -> anyhow::Result<()> {
        init_logging();
        let req = self.request()?;
        let guard = DiskGuard::detect(vec![self.device.clone()]);
        let report = write_image(&req, &self.device, &guard, reporter()).await?;
        eprintln!(
            "wrote {} ({}) to {}: {} bytes downloaded, {} bytes of disk image, in {:.1} s{}",
            report.url,
            report.format,
            self.device.display(),
            report.bytes_downloaded,
            report.virtual_size,
            report.duration.as_secs_f64(),
            if report.gpt_moved {
                "; backup GPT moved to the end of the disk"
            } else {
                ""
            }
        );
        Ok(())
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A progress bar on a terminal, a log line every ten seconds otherwise.
fn reporter() -> Box<dyn Fn(Progress) + Send + Sync> {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} [{wide_bar}] {binary_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Box::new(move |p: Progress| {
            if let Some(t) = p.total {
                bar.set_length(t);
            }
            bar.set_position(p.downloaded);
        })
    } else {
        let last = Mutex::new(Instant::now());
        Box::new(move |p: Progress| {
            let Ok(mut last) = last.lock() else { return };
            if last.elapsed() >= Duration::from_secs(10) {
                *last = Instant::now();
                let total = p.total.map(|t| format!(" of {t}")).unwrap_or_default();
                tracing::info!(
                    "downloaded {}{total} bytes, {} bytes written",
                    p.downloaded,
                    p.written
                );
            }
        })
    }
}
