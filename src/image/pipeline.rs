//! The whole write: attempts with IPA's retry rules, the async fetch side and the blocking
//! decode-verify-write side joined by a bounded channel.

use super::checksum::{find_in_checksum_file, url_basename, Expected, Hasher};
use super::error::ImageError;
use super::fetch::{self, Http, Msg, Resource};
use super::info::{ChecksumSource, WriteRequest};
use super::qcow2::{self, stream, Qcow2Error};
use super::reader::{abort_of, Abort, ChannelReader, Peeked};
use super::sink::{BlockSink, Target, Writer};
use super::sniff::{Compression, Decode, Format, FormatPolicy, SNIFF_LEN};
use super::{Progress, WriteReport};
use crate::safety::DiskGuard;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Largest checksum file we read.
const CHECKSUM_FILE_LIMIT: usize = 1 << 20;
/// Piece size of the raw copy.
const COPY_BUF: usize = 4 << 20;
/// How often progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Why one attempt ended without success.
enum Failure {
    Image(ImageError),
    /// The policy refused the image before any of it was written: report at once.
    Refused(ImageError),
    /// Start over from byte 0 at once (the object changed, or cannot be resumed).
    Restart(String),
}

impl From<ImageError> for Failure {
    fn from(e: ImageError) -> Self {
        Self::Image(e)
    }
}

/// Counters the progress reporter reads.
#[derive(Default)]
struct Counters {
    downloaded: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    /// `u64::MAX` while unknown.
    total: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Progress {
        let total = self.total.load(Ordering::Relaxed);
        Progress {
            downloaded: self.downloaded.load(Ordering::Relaxed),
            total: (total != u64::MAX).then_some(total),
            written: self.written.load(Ordering::Relaxed),
        }
    }
}

/// See [`super::write_image`].
pub async fn write_image<P>(
    req: &WriteRequest,
    target: &Path,
    guard: &DiskGuard,
    progress: P,
) -> Result<WriteReport, ImageError>
where
    P: Fn(Progress) + Send + Sync + 'static,
{
    if req.urls.is_empty() {
        return Err(ImageError::InvalidParams("no image URL was given".into()));
    }
    guard
        .check(target)
        .map_err(|e| ImageError::write(target, e))?;
    let started = Instant::now();
    let deadline = req.fetch.max_duration.map(|d| started + d);
    let http = Http::new(req.fetch.clone())?;
    let counters = Arc::new(Counters {
        total: AtomicU64::new(u64::MAX),
        ..Default::default()
    });
    let reporter = spawn_reporter(counters.clone(), progress);
    let result = async {
        let expected = within(deadline, req, resolve_checksum(&http, req)).await?;
        attempts(&http, req, expected, target, guard, &counters, deadline).await
    }
    .await;
    reporter.abort();
    let (res, out) = result?;
    Ok(WriteReport {
        url: res.url,
        bytes_downloaded: counters.downloaded.load(Ordering::Relaxed),
        bytes_written: out.bytes_written,
        format: out.format,
        virtual_size: out.virtual_size,
        duration: started.elapsed(),
        gpt_moved: out.gpt_moved,
    })
}

fn spawn_reporter<P: Fn(Progress) + Send + Sync + 'static>(
    c: Arc<Counters>,
    progress: P,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        loop {
            tick.tick().await;
            progress(c.snapshot());
        }
    })
}

fn timeout_error(req: &WriteRequest) -> ImageError {
    let seconds = req.fetch.max_duration.map(|d| d.as_secs()).unwrap_or(0);
    ImageError::Timeout {
        url: req.urls[0].clone(),
        seconds,
    }
}

/// Runs `fut`, failing with the timeout error once `deadline` passes.
async fn within<T>(
    deadline: Option<Instant>,
    req: &WriteRequest,
    fut: impl std::future::Future<Output = Result<T, ImageError>>,
) -> Result<T, ImageError> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, fut)
            .await
            .map_err(|_| timeout_error(req))?,
        None => fut.await,
    }
}

/// The expected digest, downloading the checksum file when it is a URL.
async fn resolve_checksum(http: &Http, req: &WriteRequest) -> Result<Option<Expected>, ImageError> {
    let (url, algo) = match &req.checksum {
        ChecksumSource::None => return Ok(None),
        ChecksumSource::Known(e) => return Ok(Some(e.clone())),
        ChecksumSource::Url { url, algo } => (url, *algo),
    };
    let text = http.get_small(url, CHECKSUM_FILE_LIMIT).await?;
    let text = String::from_utf8_lossy(&text);
    let name = url_basename(&req.urls[0]);
    let hex = find_in_checksum_file(&text, &name).ok_or_else(|| {
        ImageError::download(url, format!("the checksum file has no checksum for {name}"))
    })?;
    let by_length =
        Expected::from_bare(&hex, req.md5_allowed).map_err(|m| ImageError::download(url, m))?;
    if let Some(a) = algo.filter(|a| *a != by_length.algo) {
        tracing::warn!(
            url,
            "os_hash_algo says {a} but the checksum file holds a {} digest; using {}",
            by_length.algo,
            by_length.algo
        );
    }
    Ok(Some(by_length))
}

/// What a successful attempt produced.
struct Outcome {
    format: String,
    virtual_size: u64,
    bytes_written: u64,
    gpt_moved: bool,
}

/// IPA's whole-download retry loop: retryable failures wait `retry_interval`, a changed
/// object restarts at once; both are bounded by `retries`.
async fn attempts(
    http: &Http,
    req: &WriteRequest,
    expected: Option<Expected>,
    target: &Path,
    guard: &DiskGuard,
    counters: &Arc<Counters>,
    deadline: Option<Instant>,
) -> Result<(Resource, Outcome), ImageError> {
    let mut n = 0;
    loop {
        let failure = match attempt(
            http,
            req,
            expected.clone(),
            target,
            guard,
            counters,
            deadline,
        )
        .await
        {
            Ok(r) => return Ok(r),
            Err(f) => f,
        };
        n += 1;
        match failure {
            Failure::Refused(e) => return Err(e),
            Failure::Image(e) if !e.is_retryable() || n > req.fetch.retries => return Err(e),
            Failure::Restart(why) if n > req.fetch.retries => {
                return Err(ImageError::download(&req.urls[0], why))
            }
            Failure::Restart(why) => {
                tracing::warn!(image = %req.id, "{why}; restarting the download from byte 0")
            }
            Failure::Image(e) => {
                tracing::warn!(image = %req.id, "{e}; retry {n}/{} in {:?}", req.fetch.retries, req.fetch.retry_interval);
                within(deadline, req, async {
                    tokio::time::sleep(req.fetch.retry_interval).await;
                    Ok(())
                })
                .await?;
            }
        }
    }
}

/// How the blocking side decodes.
enum Plan {
    /// qcow2 whose map was fetched with Range requests.
    Mapped(qcow2::map::Map),
    /// Sniff and decode as the bytes arrive.
    Sequential,
}

async fn attempt(
    http: &Http,
    req: &WriteRequest,
    expected: Option<Expected>,
    target: &Path,
    guard: &DiskGuard,
    counters: &Arc<Counters>,
    deadline: Option<Instant>,
) -> Result<(Resource, Outcome), Failure> {
    let (res, mut resp) = within(deadline, req, http.open(&req.urls)).await?;
    counters
        .total
        .store(res.total.unwrap_or(u64::MAX), Ordering::Relaxed);
    counters.downloaded.store(0, Ordering::Relaxed);
    let prefix = within(deadline, req, read_prefix(http, &res, &mut resp)).await?;
    let plan = match mapped_qcow2(&req.policy, &res, &prefix) {
        true => Plan::Mapped(within(deadline, req, fetch_map(http, &res, &prefix)).await?),
        false => Plan::Sequential,
    };
    let (tx, rx) = mpsc::channel(fetch::CHANNEL_DEPTH);
    let start = prefix.len() as u64;
    if !prefix.is_empty() {
        let _ = tx.try_send(Msg::Data(prefix.into()));
    }
    let pump = tokio::spawn(fetch::pump(http.clone(), res.clone(), resp, start, tx));
    let job = Job {
        url: res.url.clone(),
        total: res.total,
        policy: req.policy.clone(),
        expected,
        target: target.to_path_buf(),
        guard: guard.clone(),
        downloaded: counters.downloaded.clone(),
        written: counters.written.clone(),
    };
    let mut work = tokio::task::spawn_blocking(move || job.run(rx, plan));
    let joined = match deadline {
        Some(d) => tokio::select! {
            r = &mut work => r,
            _ = tokio::time::sleep_until(d) => {
                // Closing the channel makes the writer stop; wait so nothing writes after we return.
                pump.abort();
                let _ = work.await;
                return Err(Failure::Image(timeout_error(req)));
            }
        },
        None => work.await,
    };
    pump.abort();
    let outcome = joined
        .map_err(|e| ImageError::write(target, format!("the writer thread failed: {e}")))??;
    Ok((res, outcome))
}

/// The first bytes of the body, for sniffing (fewer only when the image is shorter).
async fn read_prefix(
    http: &Http,
    res: &Resource,
    resp: &mut reqwest::Response,
) -> Result<Vec<u8>, ImageError> {
    let mut prefix = Vec::with_capacity(SNIFF_LEN);
    while prefix.len() < SNIFF_LEN {
        match http
            .next_chunk(resp)
            .await
            .map_err(|e| ImageError::download(&res.url, e))?
        {
            Some(c) => prefix.extend_from_slice(&c),
            None => break,
        }
    }
    Ok(prefix)
}

/// Whether the image is an uncompressed qcow2 we should map with Range requests first.
fn mapped_qcow2(policy: &FormatPolicy, res: &Resource, prefix: &[u8]) -> bool {
    res.ranges
        && !policy.is_raw()
        && Compression::detect(prefix).is_none()
        && Format::detect(prefix).ok() == Some(Format::Qcow2)
        && policy.decide(prefix) == Ok(Decode::Qcow2)
}

async fn fetch_map(
    http: &Http,
    res: &Resource,
    prefix: &[u8],
) -> Result<qcow2::map::Map, ImageError> {
    qcow2::fetch_map(http, res, prefix)
        .await
        .map_err(|e| match e {
            Qcow2Error::Sink(e) => e,
            other => ImageError::invalid(&res.url, other),
        })
}

/// The blocking half of an attempt.
struct Job {
    url: String,
    total: Option<u64>,
    policy: FormatPolicy,
    expected: Option<Expected>,
    target: PathBuf,
    guard: DiskGuard,
    downloaded: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

type Source = ChannelReader;

impl Job {
    fn run(self, rx: mpsc::Receiver<Msg>, plan: Plan) -> Result<Outcome, Failure> {
        let mut writer = Writer::new(
            Target::open(&self.target, &self.guard)?,
            self.written.clone(),
        );
        let hasher = self.expected.as_ref().map(|e| Hasher::new(e.algo));
        let mut src = ChannelReader::new(rx, hasher, self.downloaded.clone()).map_err(|e| {
            ImageError::write(&self.target, format!("cannot start the hash thread: {e}"))
        })?;
        let decoded = match plan {
            Plan::Mapped(map) => self.write_mapped(&mut src, map, &mut writer),
            Plan::Sequential => self.write_sequential(&mut src, &mut writer),
        };
        let (format, virtual_size) = match decoded {
            Ok(v) => v,
            // A decoding error may be a corrupt transfer: read the rest and let the checksum
            // (a retryable error) speak first.
            Err(Failure::Image(e @ ImageError::InvalidImage { .. })) if self.expected.is_some() => {
                let drained = io::copy(&mut src, &mut io::sink());
                let digest = src.finish();
                return Err(match (drained, self.verify(digest.as_deref())) {
                    (Ok(_), Err(mismatch)) => Failure::Image(mismatch),
                    _ => Failure::Image(e),
                });
            }
            Err(f) => return Err(f),
        };
        // Trailing bytes the decoder did not need still belong to the checksum.
        io::copy(&mut src, &mut io::sink()).map_err(|e| self.read_failure(e))?;
        self.verify(src.finish().as_deref())?;
        let done = writer.commit()?;
        Ok(Outcome {
            format,
            virtual_size,
            bytes_written: done.bytes_written,
            gpt_moved: done.gpt_moved,
        })
    }

    fn verify(&self, digest: Option<&str>) -> Result<(), ImageError> {
        match (&self.expected, digest) {
            (Some(e), Some(d)) if d != e.hex => Err(ImageError::Checksum {
                url: self.url.clone(),
                algo: e.algo.name(),
                expected: e.hex.clone(),
                computed: d.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// A read error: a pump abort carries its own reason; anything else is a broken stream.
    fn read_failure(&self, e: io::Error) -> Failure {
        match abort_of(e) {
            Ok(Abort::Restart(why)) => Failure::Restart(why),
            Ok(Abort::Failed(e)) => Failure::Image(e),
            Err(e) => Failure::Image(ImageError::invalid(
                &self.url,
                format!("reading the image failed: {e}"),
            )),
        }
    }

    fn qcow2_failure(&self, e: Qcow2Error) -> Failure {
        match e {
            Qcow2Error::Read(e) => self.read_failure(e),
            Qcow2Error::Sink(e) => Failure::Image(e),
            e @ Qcow2Error::Changed(_) => Failure::Restart(e.to_string()),
            other => Failure::Image(ImageError::invalid(&self.url, other)),
        }
    }

    fn write_mapped(
        &self,
        src: &mut Source,
        map: qcow2::map::Map,
        writer: &mut Writer,
    ) -> Result<(String, u64), Failure> {
        let h = map.header().clone();
        writer.reserve(h.virtual_size)?;
        stream::write_zeros(&map, writer).map_err(|e| self.qcow2_failure(e))?;
        let (extents, digests) = map.into_host_order();
        let mut w = stream::Window::new(&mut *src);
        stream::write_extents(&mut w, &h, &extents, &digests, writer)
            .map_err(|e| self.qcow2_failure(e))?;
        Ok(("qcow2".into(), h.virtual_size))
    }

    fn write_sequential(
        &self,
        src: &mut Source,
        writer: &mut Writer,
    ) -> Result<(String, u64), Failure> {
        let outer = Peeked::new(&mut *src, 8).map_err(|e| self.read_failure(e))?;
        let compression = Compression::detect(outer.head());
        let inner: Box<dyn Read + '_> = match compression {
            None => Box::new(outer),
            Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(outer)),
            Some(Compression::Xz) => Box::new(xz2::read::XzDecoder::new_multi_decoder(outer)),
            Some(Compression::Zstd) => {
                Box::new(zstd::stream::read::Decoder::new(outer).map_err(|e| self.read_failure(e))?)
            }
        };
        let mut inner = Peeked::new(inner, SNIFF_LEN).map_err(|e| self.read_failure(e))?;
        let decode = self
            .policy
            .decide(inner.head())
            .map_err(|m| Failure::Refused(ImageError::invalid(&self.url, m)))?;
        let wrapper = compression
            .map(|c| format!("{}+", c.name()))
            .unwrap_or_default();
        match decode {
            Decode::Copy(format) => {
                if let (None, Some(total)) = (compression, self.total) {
                    writer.reserve(total)?;
                }
                let n = copy_all(&mut inner, writer).map_err(|e| match e {
                    CopyError::Read(e) => self.read_failure(e),
                    CopyError::Write(e) => Failure::Image(e),
                })?;
                Ok((format!("{wrapper}{}", format.name()), n))
            }
            Decode::Qcow2 => {
                let file_size = if compression.is_none() {
                    self.total
                } else {
                    None
                };
                let h = stream::convert_sequential(inner, file_size, writer)
                    .map_err(|e| self.qcow2_failure(e))?;
                Ok((format!("{wrapper}qcow2"), h.virtual_size))
            }
        }
    }
}

enum CopyError {
    Read(io::Error),
    Write(ImageError),
}

/// Copies a raw stream to the start of the target; returns its length.
fn copy_all(r: &mut dyn Read, sink: &mut dyn BlockSink) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut pos = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match r.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        if filled == 0 {
            return Ok(pos);
        }
        sink.write_at(pos, &buf[..filled])
            .map_err(CopyError::Write)?;
        pos += filled as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::sink::MemSink;

    #[test]
    fn copies_everything() {
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut sink = MemSink::new(1 << 30);
        let n = copy_all(&mut &data[..], &mut sink).ok().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sink.data, data);
    }
}
