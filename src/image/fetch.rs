//! Fetch: the image's bytes from HTTP(S), with IPA's `image_info` semantics and resume.
//!
//! * `urls` are tried in order; a 4xx answer is fatal (not retried, no other URL tried), a
//!   5xx answer or a connection failure is retried `retries` times, `retry_interval` apart.
//! * The first request is `GET` with `Range: bytes=0-`. A `206` tells us the server can resume
//!   (and the total size); a `200` that it cannot. Redirects are followed on that first request
//!   only: every later request goes straight to the URL it ended at.
//! * The body is read with a per-read stall timeout. When the connection drops or stalls, the
//!   pump resumes with `Range: bytes=N-` and `If-Range` (the ETag, else Last-Modified), and
//!   checks the answer's `Content-Range`, size and validators. When the object changed or the
//!   server cannot resume, it tells the consumer to restart from byte 0 ([`Msg::Restart`]),
//!   so the hash and the writer restart together and nothing is spliced.
//! * The pump is async; it hands chunks to the blocking pipeline through a bounded channel,
//!   so memory stays bounded and no disk I/O happens on async workers.

use super::error::ImageError;
use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks in flight between the network and the writer (each at most ~400 KiB from hyper).
pub const CHANNEL_DEPTH: usize = 8;

/// Proxies as Ironic passes them (`proxies` and `no_proxy` of `image_info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: Option<String>,
}

/// Credentials for the image server.
#[derive(Clone)]
pub enum Auth {
    /// `image_request_authorization`, already base64-decoded: sent verbatim.
    Header(String),
    /// `image_server_auth_strategy = http_basic`.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Header(_) => f.write_str("Auth::Header(<redacted>)"),
            Self::Basic { user, .. } => write!(f, "Auth::Basic({user}, <redacted>)"),
        }
    }
}

/// TLS for image downloads.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// `ipa-insecure`: do not verify certificates.
    pub insecure: bool,
    /// An extra CA bundle (PEM) trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// A complete rustls configuration from the caller (e.g. the agent's TLS module); wins
    /// over the two fields above.
    pub config: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("insecure", &self.insecure)
            .field("ca_file", &self.ca_file)
            .field("config", &self.config.is_some())
            .finish()
    }
}

/// How to download: IPA's `ipa-image-download-*` parameters, proxies, auth and TLS.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub connect_timeout: Duration,
    /// Longest wait for the next chunk of a body before the connection counts as stalled.
    pub stall_timeout: Duration,
    pub retries: u32,
    pub retry_interval: Duration,
    /// `image_download_max_duration`: a hard cap on the whole operation, not retried.
    pub max_duration: Option<Duration>,
    pub proxies: Proxies,
    pub auth: Option<Auth>,
    pub tls: TlsOptions,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            retries: 9,
            retry_interval: Duration::from_secs(10),
            max_duration: None,
            proxies: Proxies::default(),
            auth: None,
            tls: TlsOptions::default(),
        }
    }
}

/// The validators that identify one version of the remote object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validator {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validator {
    fn from_headers(h: &HeaderMap) -> Self {
        let get = |n| {
            h.get(n)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            etag: get(header::ETAG),
            last_modified: get(header::LAST_MODIFIED),
        }
    }

    /// The `If-Range` value: a strong ETag, else the Last-Modified date.
    fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(e) if !e.starts_with("W/") => Some(e),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Whether `other` (a later answer) is visibly the same object.
    fn same_as(&self, other: &Validator) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        eq(&self.etag, &other.etag) && eq(&self.last_modified, &other.last_modified)
    }
}

/// One remote image as the first answer described it.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The URL as given (used in messages).
    pub url: String,
    /// Where redirects ended; all later requests go here.
    pub effective: reqwest::Url,
    /// Total size in bytes, when the server said.
    pub total: Option<u64>,
    /// Whether the server honours Range requests.
    pub ranges: bool,
    pub validator: Validator,
}

/// What went wrong with one request.
enum Failure {
    /// Worth another try.
    Retry(String),
    /// Not worth another try.
    Fatal(ImageError),
}

/// Receives the bytes of a range read with their file offsets.
pub type RangeSink<'a> = dyn FnMut(u64, &[u8]) -> Result<(), ImageError> + Send + 'a;

/// An HTTP client configured for image downloads.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    opts: FetchOptions,
}

impl Http {
    pub fn new(opts: FetchOptions) -> Result<Self, ImageError> {
        let client = build_client(&opts).map_err(|e| {
            ImageError::InvalidParams(format!("cannot set up the HTTP client: {e}"))
        })?;
        Ok(Self { client, opts })
    }

    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    fn request(
        &self,
        url: reqwest::Url,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut rb = self.client.get(url);
        if let Some((start, end)) = range {
            let spec = match end {
                Some(e) => format!("bytes={start}-{e}"),
                None => format!("bytes={start}-"),
            };
            rb = rb.header(header::RANGE, spec);
        }
        if let Some(v) = if_range {
            rb = rb.header(header::IF_RANGE, v);
        }
        match &self.opts.auth {
            Some(Auth::Header(v)) => rb.header(header::AUTHORIZATION, v.as_str()),
            Some(Auth::Basic { user, password }) => rb.basic_auth(user, Some(password)),
            None => rb,
        }
    }

    /// One request; classifies the outcome.
    async fn send_once(
        &self,
        name: &str,
        url: &reqwest::Url,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&str>,
    ) -> Result<Response, Failure> {
        let resp = self
            .request(url.clone(), range, if_range)
            .send()
            .await
            .map_err(|e| Failure::Retry(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            Ok(resp)
        } else if status.is_client_error() {
            Err(Failure::Fatal(ImageError::DownloadFatal {
                url: name.to_string(),
                status: status.as_u16(),
            }))
        } else {
            Err(Failure::Retry(format!("the server answered HTTP {status}")))
        }
    }

    /// A request retried on connection failures and 5xx, `retries` times.
    async fn send(
        &self,
        name: &str,
        url: &reqwest::Url,
        range: Option<(u64, Option<u64>)>,
        if_range: Option<&str>,
    ) -> Result<Response, ImageError> {
        let mut attempt = 0;
        loop {
            match self.send_once(name, url, range, if_range).await {
                Ok(r) => return Ok(r),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) if attempt >= self.opts.retries => {
                    return Err(ImageError::download(
                        name,
                        format!("{why} (after {} attempts)", attempt + 1),
                    ))
                }
                Err(Failure::Retry(why)) => {
                    attempt += 1;
                    tracing::warn!(
                        url = name,
                        "request failed: {why}; retry {attempt}/{}",
                        self.opts.retries
                    );
                    tokio::time::sleep(self.opts.retry_interval).await;
                }
            }
        }
    }

    /// Opens the image: tries `urls` in order and returns the first that answers.
    pub async fn open(&self, urls: &[String]) -> Result<(Resource, Response), ImageError> {
        let mut last = None;
        for url in urls {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                ImageError::InvalidParams(format!("image URL {url:?} is not valid: {e}"))
            })?;
            match self.send(url, &parsed, Some((0, None)), None).await {
                Ok(resp) => return Ok((describe_resource(url, &resp), resp)),
                Err(e @ ImageError::DownloadFatal { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!("{e}; trying the next URL if any");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ImageError::InvalidParams("no image URL was given".into())))
    }

    /// Reads `[start, start+len)` of `res`, calling `sink` with each piece and its file offset.
    /// A failed request is retried from `start`, so `sink` may see bytes twice.
    pub async fn read_range(
        &self,
        res: &Resource,
        start: u64,
        len: u64,
        sink: &mut RangeSink<'_>,
    ) -> Result<(), ImageError> {
        let mut attempt = 0;
        loop {
            match self.read_range_once(res, start, len, sink).await {
                Ok(()) => return Ok(()),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) if attempt >= self.opts.retries => {
                    return Err(ImageError::download(
                        &res.url,
                        format!("reading bytes {start}-{}: {why}", start + len - 1),
                    ))
                }
                Err(Failure::Retry(why)) => {
                    attempt += 1;
                    tracing::warn!(url = %res.url, "range read failed: {why}; retry {attempt}/{}", self.opts.retries);
                    tokio::time::sleep(self.opts.retry_interval).await;
                }
            }
        }
    }

    async fn read_range_once(
        &self,
        res: &Resource,
        start: u64,
        len: u64,
        sink: &mut RangeSink<'_>,
    ) -> Result<(), Failure> {
        let mut resp = self
            .send_once(
                &res.url,
                &res.effective,
                Some((start, Some(start + len - 1))),
                res.validator.if_range(),
            )
            .await?;
        check_partial(res, &resp, start).map_err(Failure::Fatal)?;
        let mut got = 0u64;
        while got < len {
            let chunk = self.next_chunk(&mut resp).await.map_err(Failure::Retry)?;
            let Some(chunk) = chunk else {
                return Err(Failure::Retry(format!(
                    "the answer ended after {got} of {len} bytes"
                )));
            };
            let take = chunk.len().min((len - got) as usize);
            sink(start + got, &chunk[..take]).map_err(Failure::Fatal)?;
            got += take as u64;
        }
        Ok(())
    }

    /// The next body chunk, or a description of why there is none (stall, drop).
    pub async fn next_chunk(&self, resp: &mut Response) -> Result<Option<Bytes>, String> {
        match tokio::time::timeout(self.opts.stall_timeout, resp.chunk()).await {
            Err(_) => Err(format!(
                "no data for {} s",
                self.opts.stall_timeout.as_secs_f64()
            )),
            Ok(Err(e)) => Err(describe(&e)),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// Fetches a small document (a checksum file) with retries, up to `limit` bytes.
    pub async fn get_small(&self, url: &str, limit: usize) -> Result<Vec<u8>, ImageError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            ImageError::InvalidParams(format!("checksum URL {url:?} is not valid: {e}"))
        })?;
        let mut resp = self.send(url, &parsed, None, None).await?;
        let mut out = Vec::new();
        while let Some(c) = self
            .next_chunk(&mut resp)
            .await
            .map_err(|e| ImageError::download(url, e))?
        {
            out.extend_from_slice(&c);
            if out.len() > limit {
                return Err(ImageError::download(
                    url,
                    format!("the document is larger than {limit} bytes"),
                ));
            }
        }
        Ok(out)
    }
}

/// Checks that a ranged answer is the part of the same object we asked for.
fn check_partial(res: &Resource, resp: &Response, start: u64) -> Result<(), ImageError> {
    if resp.status() != StatusCode::PARTIAL_CONTENT {
        return Err(ImageError::download(
            &res.url,
            "the image changed on the server (a Range request got the whole new object)",
        ));
    }
    let (first, total) = content_range(resp.headers()).ok_or_else(|| {
        ImageError::download(
            &res.url,
            "the server answered a Range request without a valid Content-Range",
        )
    })?;
    if first != start || (res.total.is_some() && total.is_some() && total != res.total) {
        return Err(ImageError::download(
            &res.url,
            "the server answered a Range request with the wrong range or size",
        ));
    }
    if !res
        .validator
        .same_as(&Validator::from_headers(resp.headers()))
    {
        return Err(ImageError::download(
            &res.url,
            "the image changed on the server (its ETag or Last-Modified differs)",
        ));
    }
    Ok(())
}

/// `Content-Range: bytes first-last/total` → (first, total).
fn content_range(h: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = h.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()))
}

fn describe_resource(url: &str, resp: &Response) -> Resource {
    let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
    let total = if partial {
        content_range(resp.headers()).and_then(|(_, t)| t)
    } else {
        resp.content_length()
    };
    Resource {
        url: url.to_string(),
        effective: resp.url().clone(),
        total,
        ranges: partial && total.is_some(),
        validator: Validator::from_headers(resp.headers()),
    }
}

/// The full chain of a reqwest error, which on its own often says only "error sending request".
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn build_client(opts: &FetchOptions) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.stall_timeout);
    let no_proxy = opts
        .proxies
        .no_proxy
        .as_deref()
        .and_then(reqwest::NoProxy::from_string);
    if let Some(p) = &opts.proxies.http {
        b = b.proxy(
            reqwest::Proxy::http(p)
                .map_err(|e| format!("http proxy {p:?}: {e}"))?
                .no_proxy(no_proxy.clone()),
        );
    }
    if let Some(p) = &opts.proxies.https {
        b = b.proxy(
            reqwest::Proxy::https(p)
                .map_err(|e| format!("https proxy {p:?}: {e}"))?
                .no_proxy(no_proxy.clone()),
        );
    }
    b = match (&opts.tls.config, opts.tls.insecure) {
        (Some(cfg), _) => b.use_preconfigured_tls((**cfg).clone()),
        (None, true) => b.danger_accept_invalid_certs(true),
        (None, false) => b.use_preconfigured_tls(default_tls(opts.tls.ca_file.as_deref())?),
    };
    b.build().map_err(|e| e.to_string())
}

/// Built-in web PKI roots, the system's roots, and the operator's CA file.
fn default_tls(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| format!("CA file {} is not valid PEM: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("CA file {} holds no certificate", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// What the pump tells the blocking pipeline.
#[derive(Debug)]
pub enum Msg {
    Data(Bytes),
    /// All bytes were delivered.
    End,
    /// The object changed or cannot be resumed: start over from byte 0.
    Restart(String),
    Failed(ImageError),
}

/// Streams `res` from `resp` (an answer whose next byte is at file offset `pos`) into `tx`,
/// resuming after drops and stalls. Ends when the consumer hangs up.
pub async fn pump(
    http: Http,
    res: Resource,
    mut resp: Response,
    mut pos: u64,
    tx: mpsc::Sender<Msg>,
) {
    let mut failures = 0u32;
    loop {
        let why = match http.next_chunk(&mut resp).await {
            Ok(Some(chunk)) => {
                pos += chunk.len() as u64;
                failures = 0;
                if tx.send(Msg::Data(chunk)).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => match res.total {
                Some(t) if pos < t => format!("the connection closed at byte {pos} of {t}"),
                _ => {
                    let _ = tx.send(Msg::End).await;
                    return;
                }
            },
            Err(e) => e,
        };
        match resume(&http, &res, pos, &why, &mut failures).await {
            Ok(r) => resp = r,
            Err(msg) => {
                let _ = tx.send(msg).await;
                return;
            }
        }
    }
}

/// Reconnects at `pos` after `why`; the message to send instead when that is impossible.
async fn resume(
    http: &Http,
    res: &Resource,
    pos: u64,
    why: &str,
    failures: &mut u32,
) -> Result<Response, Msg> {
    if !res.ranges {
        let e = ImageError::download(
            &res.url,
            format!("{why}, and the server does not support Range requests to resume"),
        );
        return Err(Msg::Failed(e));
    }
    loop {
        if *failures >= http.opts.retries {
            return Err(Msg::Failed(ImageError::download(
                &res.url,
                format!("{why}; gave up resuming after {failures} attempts without progress"),
            )));
        }
        if *failures > 0 {
            tokio::time::sleep(http.opts.retry_interval).await;
        }
        *failures += 1;
        tracing::warn!(url = %res.url, "{why}; resuming at byte {pos}");
        match http
            .send_once(
                &res.url,
                &res.effective,
                Some((pos, None)),
                res.validator.if_range(),
            )
            .await
        {
            Err(Failure::Fatal(e)) => return Err(Msg::Failed(e)),
            Err(Failure::Retry(e)) => tracing::warn!(url = %res.url, "resume failed: {e}"),
            Ok(r) if r.status() == StatusCode::OK => {
                return Err(Msg::Restart(
                    "the server sent the whole object again".into(),
                ))
            }
            Ok(r) => match check_partial(res, &r, pos) {
                Ok(()) => return Ok(r),
                Err(e) => return Err(Msg::Restart(e.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(content_range(&h), Some((100, Some(1000))));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/*"),
        );
        assert_eq!(content_range(&h), Some((0, None)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("items 0-9/10"),
        );
        assert_eq!(content_range(&h), None);
    }

    #[test]
    fn validators() {
        let a = Validator {
            etag: Some("\"x\"".into()),
            last_modified: Some("d".into()),
        };
        assert_eq!(a.if_range(), Some("\"x\""));
        let weak = Validator {
            etag: Some("W/\"x\"".into()),
            last_modified: Some("d".into()),
        };
        assert_eq!(weak.if_range(), Some("d"));
        assert!(a.same_as(&Validator {
            etag: Some("\"x\"".into()),
            last_modified: None
        }));
        assert!(!a.same_as(&Validator {
            etag: Some("\"y\"".into()),
            last_modified: None
        }));
    }
}
