//! Ironic's `image_info` (contract §11.1): parsed, validated, and turned into a
//! [`WriteRequest`].

use super::checksum::{Algo, Expected};
use super::error::ImageError;
use super::fetch::{Auth, FetchOptions, Proxies};
use super::sniff::FormatPolicy;
use base64::Engine;
use serde_json::Value;

/// Where the expected checksum comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChecksumSource {
    /// Not verified (only the command-line tool allows this).
    None,
    Known(Expected),
    /// A checksum file to download; `algo` when `os_hash_algo` named one.
    Url {
        url: String,
        algo: Option<Algo>,
    },
}

/// Everything [`super::write_image`] needs.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// For logs and messages (Ironic's image `id`).
    pub id: String,
    pub urls: Vec<String>,
    pub checksum: ChecksumSource,
    /// Whether a checksum file may yield an md5 digest.
    pub md5_allowed: bool,
    pub policy: FormatPolicy,
    pub fetch: FetchOptions,
}

/// The agent-wide settings that shape a write (kernel parameters and lookup config).
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// `md5_enabled` / Ironic's `agent_md5_checksum_enable`.
    pub md5_allowed: bool,
    /// `permitted_image_formats` (Ironic sends raw,gpt,qcow2,iso).
    pub permitted_formats: Vec<String>,
    /// Timeouts, retries and TLS from the kernel command line; proxies and auth are filled in
    /// from `image_info`.
    pub fetch: FetchOptions,
    /// `[DEFAULT]image_server_*` fallback credentials when `image_info` has none.
    pub default_auth: Option<Auth>,
}

impl Default for ImageSettings {
    fn default() -> Self {
        Self {
            md5_allowed: false,
            permitted_formats: FormatPolicy::default().permitted,
            fetch: FetchOptions::default(),
            default_auth: None,
        }
    }
}

/// The whole-disk subset of `image_info` the image pipeline uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub urls: Vec<String>,
    pub disk_format: Option<String>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    /// Already base64-decoded.
    pub authorization: Option<String>,
    pub auth_strategy: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub proxies: Proxies,
    pub node_uuid: Option<String>,
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidParams(msg.into())
}

/// A string field: absent and null are `None`, anything but a string is an error.
fn opt_str(v: &Value, key: &str) -> Result<Option<String>, ImageError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("image '{key}' must be a string"))),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

impl ImageInfo {
    /// Parses and validates `image_info` as IPA's `_validate_image_info` does.
    pub fn parse(v: &Value, md5_allowed: bool) -> Result<Self, ImageError> {
        if !v.is_object() {
            return Err(bad("image_info must be an object"));
        }
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(bad("image is missing the 'id' field")),
        };
        let urls = match v.get("urls") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|u| {
                    u.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad("image 'urls' must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(bad("image 'urls' must be a list with at least one element")),
        };
        let checksum = opt_str(v, "checksum")?;
        if checksum.as_deref() == Some("") {
            return Err(bad("image 'checksum' must be a non-empty string"));
        }
        let authorization = opt_str(v, "image_request_authorization")?
            .map(|b| decode_auth(&b))
            .transpose()?;
        let proxies = Proxies {
            http: v
                .pointer("/proxies/http")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            https: v
                .pointer("/proxies/https")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            no_proxy: opt_str(v, "no_proxy")?.filter(|s| !s.is_empty()),
        };
        let info = Self {
            id,
            urls,
            disk_format: opt_str(v, "disk_format")?,
            checksum,
            os_hash_algo: opt_str(v, "os_hash_algo")?.filter(|s| !s.is_empty()),
            os_hash_value: opt_str(v, "os_hash_value")?.filter(|s| !s.is_empty()),
            authorization,
            auth_strategy: opt_str(v, "image_server_auth_strategy")?,
            user: opt_str(v, "image_server_user")?,
            password: opt_str(v, "image_server_password")?,
            proxies,
            node_uuid: opt_str(v, "node_uuid")?,
        };
        info.check_usable_checksum(md5_allowed)?;
        Ok(info)
    }

    /// §11.1: a URL, a digest longer than md5, an allowed md5, or os_hash_algo + value.
    fn check_usable_checksum(&self, md5_allowed: bool) -> Result<(), ImageError> {
        let usable = self.os_hash_algo.is_some() && self.os_hash_value.is_some()
            || self
                .checksum
                .as_deref()
                .is_some_and(|c| is_url(c) || c.len() > 32 || (c.len() == 32 && md5_allowed));
        if usable {
            Ok(())
        } else {
            Err(bad(format!(
                "image {} has no usable checksum (md5 checksums are {})",
                self.id,
                if md5_allowed { "allowed" } else { "disabled" }
            )))
        }
    }

    /// §11.3: `os_hash_algo`/`os_hash_value` first (when the algorithm is known), then
    /// `checksum`; either may be a URL of a checksum file.
    pub fn checksum_source(&self, md5_allowed: bool) -> Result<ChecksumSource, ImageError> {
        if let (Some(name), Some(value)) = (&self.os_hash_algo, &self.os_hash_value) {
            match Algo::from_name(name) {
                Some(algo) if is_url(value) => {
                    return Ok(ChecksumSource::Url {
                        url: value.clone(),
                        algo: Some(algo),
                    })
                }
                Some(algo) => {
                    let e = Expected::new(algo, value, md5_allowed)
                        .map_err(|m| bad(format!("os_hash_value of image {}: {m}", self.id)))?;
                    return Ok(ChecksumSource::Known(e));
                }
                None => {
                    tracing::warn!(image = %self.id, "os_hash_algo {name:?} is not supported; falling back to 'checksum'")
                }
            }
        }
        match &self.checksum {
            Some(c) if is_url(c) => Ok(ChecksumSource::Url {
                url: c.clone(),
                algo: None,
            }),
            Some(c) => Expected::from_bare(c, md5_allowed)
                .map(ChecksumSource::Known)
                .map_err(|m| bad(format!("checksum of image {}: {m}", self.id))),
            None => Err(bad(format!(
                "unable to verify image {}: no checksum was given",
                self.id
            ))),
        }
    }

    /// The credentials: the image's own authorization header, else basic auth when the
    /// strategy is http_basic, else the agent's default.
    fn auth(&self, default: Option<&Auth>) -> Result<Option<Auth>, ImageError> {
        if let Some(h) = &self.authorization {
            return Ok(Some(Auth::Header(h.clone())));
        }
        match self.auth_strategy.as_deref() {
            None | Some("noauth") => Ok(default.cloned()),
            Some("http_basic") => match (&self.user, &self.password) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(Some(Auth::Basic {
                    user: u.clone(),
                    password: p.clone(),
                })),
                _ => Err(ImageError::download(
                    &self.urls[0],
                    "image_server_auth_strategy is http_basic but the user or password is missing",
                )),
            },
            Some(other) => Err(bad(format!(
                "image_server_auth_strategy {other:?} is not supported (noauth or http_basic)"
            ))),
        }
    }

    /// The request [`super::write_image`] runs.
    pub fn to_request(&self, settings: &ImageSettings) -> Result<WriteRequest, ImageError> {
        let mut fetch = settings.fetch.clone();
        fetch.proxies = self.proxies.clone();
        fetch.auth = self.auth(settings.default_auth.as_ref())?;
        Ok(WriteRequest {
            id: self.id.clone(),
            urls: self.urls.clone(),
            checksum: self.checksum_source(settings.md5_allowed)?,
            md5_allowed: settings.md5_allowed,
            policy: FormatPolicy {
                disk_format: self.disk_format.clone(),
                permitted: settings.permitted_formats.clone(),
            },
            fetch,
        })
    }
}

fn decode_auth(b64: &str) -> Result<String, ImageError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| {
            bad(format!(
                "image_request_authorization is not valid base64: {e}"
            ))
        })?;
    String::from_utf8(raw).map_err(|_| bad("image_request_authorization does not decode to text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn validates_like_ipa() {
        let ok = json!({"id": "img", "urls": ["http://h/i.qcow2"], "checksum": SHA});
        assert!(ImageInfo::parse(&ok, false).is_ok());
        for bad in [
            json!({"urls": ["http://h/i"], "checksum": SHA}),
            json!({"id": "i", "urls": [], "checksum": SHA}),
            json!({"id": "i", "urls": "http://h/i", "checksum": SHA}),
            json!({"id": "i", "urls": ["http://h/i"], "checksum": ""}),
            json!({"id": "i", "urls": ["http://h/i"]}),
            json!({"id": "i", "urls": ["http://h/i"], "checksum": "a".repeat(32)}),
            json!("not an object"),
        ] {
            let e = ImageInfo::parse(&bad, false).unwrap_err();
            assert!(matches!(e, ImageError::InvalidParams(_)), "{bad}: {e}");
        }
        let md5 = json!({"id": "i", "urls": ["http://h/i"], "checksum": "a".repeat(32)});
        assert!(ImageInfo::parse(&md5, true).is_ok());
    }

    #[test]
    fn prefers_os_hash_and_accepts_urls() {
        let v = json!({"id": "i", "urls": ["http://h/i"], "checksum": "http://h/SHA256SUMS",
                       "os_hash_algo": "sha512", "os_hash_value": "b".repeat(128)});
        let info = ImageInfo::parse(&v, false).unwrap();
        match info.checksum_source(false).unwrap() {
            ChecksumSource::Known(e) => assert_eq!(e.algo, Algo::Sha512),
            other => panic!("{other:?}"),
        }
        let v = json!({"id": "i", "urls": ["http://h/i"], "checksum": "http://h/SHA256SUMS", "os_hash_algo": "whirlpool", "os_hash_value": "x"});
        let info = ImageInfo::parse(&v, false).unwrap();
        assert_eq!(
            info.checksum_source(false).unwrap(),
            ChecksumSource::Url {
                url: "http://h/SHA256SUMS".into(),
                algo: None
            }
        );
    }

    #[test]
    fn auth_and_proxies() {
        let v = json!({"id": "i", "urls": ["http://h/i"], "checksum": SHA,
                       "image_request_authorization": "QmVhcmVyIHRva2Vu",
                       "proxies": {"http": "http://proxy:3128", "https": ""}, "no_proxy": "10.0.0.1"});
        let req = ImageInfo::parse(&v, false)
            .unwrap()
            .to_request(&ImageSettings::default())
            .unwrap();
        assert!(matches!(req.fetch.auth, Some(Auth::Header(ref h)) if h == "Bearer token"));
        assert_eq!(req.fetch.proxies.http.as_deref(), Some("http://proxy:3128"));
        assert_eq!(req.fetch.proxies.https, None);
        assert_eq!(req.fetch.proxies.no_proxy.as_deref(), Some("10.0.0.1"));
        let v = json!({"id": "i", "urls": ["http://h/i"], "checksum": SHA, "image_server_auth_strategy": "http_basic", "image_server_user": "u"});
        let e = ImageInfo::parse(&v, false)
            .unwrap()
            .to_request(&ImageSettings::default())
            .unwrap_err();
        assert!(matches!(e, ImageError::Download { .. }));
        let v = json!({"id": "i", "urls": ["http://h/i"], "checksum": SHA, "image_server_auth_strategy": "http_basic",
                       "image_server_user": "u", "image_server_password": "p"});
        let req = ImageInfo::parse(&v, false)
            .unwrap()
            .to_request(&ImageSettings::default())
            .unwrap();
        assert!(matches!(req.fetch.auth, Some(Auth::Basic { .. })));
    }
}
