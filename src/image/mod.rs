//! The image pipeline: fetch -> sniff -> decode -> verify -> sink, in one streaming pass and
//! in memory bounded independently of the image size.
//!
//! ```text
//!  HTTP(S) ──pump (async, resumes with Range)──► bounded channel ──► blocking thread:
//!    ChannelReader (counts; a hash thread checksums the downloaded bytes)
//!      └► sniff: gzip/xz/zstd? → decompress → raw/gpt/iso: copy │ qcow2: convert
//!           └► Writer: coalesced aligned writes (O_DIRECT), zeros as BLKZEROOUT/holes,
//!                      first MiB held back ─► checksum OK? ─► commit: head, fsync, GPT, BLKRRPART
//! ```
//!
//! * [`fetch`]: HTTP with IPA's `image_info` semantics, retries, stall timeout, resume.
//! * [`sniff`]: formats by magic bytes and IPA's format policy (CVE-2024-44082). In short:
//!   `disk_format: raw` is written as it is, never interpreted; compression wrappers are
//!   always removed first; everything else must be a permitted, matching format.
//! * [`qcow2`]: conversion without staging (metadata first with Range requests, then one pass).
//! * [`checksum`]: algorithms, expected values, checksum files.
//! * [`sink`]: the writer; [`gpt`]: backup GPT relocation.
//!
//! # The API the `write_image` deploy step uses
//!
//! ```no_run
//! # async fn step(json: serde_json::Value) -> Result<(), ironic_agent::errors::CommandError> {
//! use ironic_agent::errors::IntoCommandError;
//! use ironic_agent::image::{write_image, ImageInfo, ImageSettings};
//! let settings = ImageSettings::default(); // md5 policy, permitted formats, timeouts, TLS
//! let info = ImageInfo::parse(&json, settings.md5_allowed).map_err(|e| e.into_command_error())?;
//! let request = info.to_request(&settings).map_err(|e| e.into_command_error())?;
//! let guard = ironic_agent::safety::DiskGuard::detect(vec![]);
//! let report = write_image(&request, std::path::Path::new("/dev/sda"), &guard, |p| {
//!     tracing::debug!(downloaded = p.downloaded, written = p.written, "image progress");
//! })
//! .await
//! .map_err(|e| e.into_command_error())?;
//! tracing::info!("wrote {} ({} bytes of {})", report.url, report.bytes_written, report.format);
//! # Ok(()) }
//! ```
//!
//! [`ImageError`] converts into IPA's error classes (`InvalidCommandParamsError`,
//! `ImageDownloadError`, `ImageDownloadFatalError`, `ImageDownloadTimeoutError`,
//! `ImageChecksumError`, `InvalidImage`, `ImageWriteError`, `ImageDownloadOutofSpaceError`)
//! through [`crate::errors::IntoCommandError`].

pub mod checksum;
pub mod cli;
pub mod error;
pub mod fetch;
pub mod gpt;
pub mod info;
mod pipeline;
pub mod qcow2;
pub mod reader;
pub mod sink;
pub mod sniff;

pub use error::ImageError;
pub use fetch::{Auth, FetchOptions, Proxies, TlsOptions};
pub use info::{ChecksumSource, ImageInfo, ImageSettings, WriteRequest};
pub use sniff::FormatPolicy;

use crate::safety::DiskGuard;
use std::path::Path;
use std::time::Duration;

/// A progress report, about twice a second while an image is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received in the current attempt.
    pub downloaded: u64,
    /// Size of the download, when the server said.
    pub total: Option<u64>,
    /// Bytes of the target made to hold image content (written or zeroed).
    pub written: u64,
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteReport {
    /// The URL that served the image.
    pub url: String,
    pub bytes_downloaded: u64,
    pub bytes_written: u64,
    /// What was detected, e.g. `qcow2`, `raw`, `gpt`, `gzip+raw`, `zstd+qcow2`.
    pub format: String,
    /// Size of the disk image the target now holds.
    pub virtual_size: u64,
    pub duration: Duration,
    /// Whether the backup GPT was moved to the end of a larger disk.
    pub gpt_moved: bool,
}

/// Downloads `req`'s image and writes it to `target` (a block device or a regular file).
///
/// `guard` must allow `target`. `progress` is called from an async task about twice a second.
/// On any failure the first MiB of the target is left as it was.
pub async fn write_image<P>(
    req: &WriteRequest,
    target: &Path,
    guard: &DiskGuard,
    progress: P,
) -> Result<WriteReport, ImageError>
where
    P: Fn(Progress) + Send + Sync + 'static,
{
    pipeline::write_image(req, target, guard, progress).await
}
