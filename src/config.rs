//! Kernel command line -> [`Config`]: every `ipa-*` parameter IPA reads (contract §1.2), with
//! IPA's tokenising, defaults and coercion rules.
//!
//! Tokenising follows IPA exactly: split on whitespace, ignore tokens without `=`, split at the
//! first `=`, a later duplicate wins, no quoting. Where IPA would crash on a malformed value (an
//! integer that does not parse, a boolean that is not one of the accepted words), we log one clear
//! sentence and keep the default instead: a bad command line must never kill the agent, because
//! a dead agent strands the node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Everything the agent takes from the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `ipa-api-url`: Ironic API base URLs, trailing `/` removed. `mdns` means discover.
    pub api_urls: Vec<String>,
    /// `ipa-inspection-callback-url`: inspection POST targets.
    pub inspection_callback_urls: Vec<String>,
    /// `ipa-inspection-collectors`: collector names in order; `None` when not given.
    pub inspection_collectors: Option<Vec<String>>,
    pub inspection_dhcp_wait_timeout: Duration,
    pub inspection_dhcp_all_interfaces: bool,
    /// `ipa-inspection-benchmarks`: only used by IPA's extra-hardware collector.
    pub inspection_benchmarks: Vec<String>,
    pub global_request_id: Option<String>,
    /// `ipa-listen-host`; `None` means all addresses (`::` when IPv6 is up, else `0.0.0.0`).
    pub listen_host: Option<IpAddr>,
    pub listen_port: u16,
    pub advertise_host: Option<String>,
    pub advertise_port: u16,
    pub advertise_protocol: Protocol,
    pub ip_lookup_attempts: u32,
    pub ip_lookup_sleep: Duration,
    pub network_interface: Option<String>,
    pub lookup_timeout: Duration,
    pub lookup_interval: Duration,
    pub lldp_timeout: Duration,
    pub collect_lldp: bool,
    pub hardware_initialization_delay: Duration,
    pub disk_wait_attempts: u32,
    pub disk_wait_delay: Duration,
    pub insecure: bool,
    pub ntp_server: Option<String>,
    pub agent_token: Option<String>,
    pub image_download: ImageDownloadConfig,
    pub ironic_api_version: Option<ApiVersion>,
    pub enable_vlan_interfaces: Vec<String>,
    pub ignore_bootloader_failure: bool,
    pub inject_files_priority: u32,
    pub guard_special_filesystems: bool,
    pub enable_discard_erase: bool,
    pub http_request_timeout: Duration,
    pub tls_min_version: TlsMinVersion,
    pub tls_cipher_suites: Option<String>,
    pub tls_certificate_curve: CertificateCurve,
    pub use_mdns: bool,
    pub debug: bool,
    /// `BOOTIF` exactly as given (reported verbatim as `boot.pxe_interface`).
    pub bootif: Option<String>,
    /// `boot_method=vmedia`: parameters may also come from a virtual-media device.
    pub boot_method_vmedia: bool,
    /// One sentence per value that was malformed and replaced by its default.
    pub warnings: Vec<String>,
}

/// Download knobs shared by images, checksum files and configdrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageDownloadConfig {
    pub connection_timeout: Duration,
    pub retries: u32,
    pub retry_interval: Duration,
    /// `None` when off (the default `0`).
    pub max_duration: Option<Duration>,
}

impl Default for ImageDownloadConfig {
    fn default() -> Self {
        Self {
            connection_timeout: Duration::from_secs(60),
            retries: 9,
            retry_interval: Duration::from_secs(10),
            max_duration: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateCurve {
    P256,
    P384,
    P521,
}

/// An Ironic API microversion `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let (major, minor) = s.trim().split_once('.')?;
        Some(Self(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_urls: Vec::new(),
            inspection_callback_urls: Vec::new(),
            inspection_collectors: None,
            inspection_dhcp_wait_timeout: Duration::from_secs(60),
            inspection_dhcp_all_interfaces: false,
            inspection_benchmarks: Vec::new(),
            global_request_id: None,
            listen_host: None,
            listen_port: 9999,
            advertise_host: None,
            advertise_port: 9999,
            advertise_protocol: Protocol::Http,
            ip_lookup_attempts: 6,
            ip_lookup_sleep: Duration::from_secs(10),
            network_interface: None,
            lookup_timeout: Duration::from_secs(600),
            lookup_interval: Duration::from_secs(1),
            lldp_timeout: Duration::from_secs(30),
            collect_lldp: false,
            hardware_initialization_delay: Duration::ZERO,
            disk_wait_attempts: 10,
            disk_wait_delay: Duration::from_secs(3),
            insecure: false,
            ntp_server: None,
            agent_token: None,
            image_download: ImageDownloadConfig::default(),
            ironic_api_version: None,
            enable_vlan_interfaces: Vec::new(),
            ignore_bootloader_failure: false,
            inject_files_priority: 0,
            guard_special_filesystems: true,
            enable_discard_erase: false,
            http_request_timeout: Duration::from_secs(30),
            tls_min_version: TlsMinVersion::Tls12,
            tls_cipher_suites: None,
            tls_certificate_curve: CertificateCurve::P384,
            use_mdns: false,
            debug: false,
            bootif: None,
            boot_method_vmedia: false,
            warnings: Vec::new(),
        }
    }
}

/// Splits a command line into parameters the way IPA does (contract §1.1).
pub fn tokenize(cmdline: &str) -> HashMap<String, String> {
    cmdline
        .split_whitespace()
        .filter_map(|tok| tok.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Config {
    /// Parses a kernel command line. Never fails: malformed values become warnings.
    pub fn from_cmdline(cmdline: &str) -> Self {
        Self::from_params(&tokenize(cmdline))
    }

    pub fn from_params(params: &HashMap<String, String>) -> Self {
        let mut p = Parser {
            params,
            cfg: Config::default(),
        };
        p.read_urls_and_inspection();
        p.read_network();
        p.read_timeouts();
        p.read_image_download();
        p.read_tls();
        p.read_misc();
        p.cfg
    }

    /// The MAC in `BOOTIF`, normalised to lowercase `aa:bb:..`; `None` when absent or malformed.
    pub fn bootif_mac(&self) -> Option<String> {
        self.bootif.as_deref().and_then(normalize_bootif)
    }

    /// True when inspection runs at startup (contract §10.1).
    pub fn inspection_enabled(&self) -> bool {
        !self.inspection_callback_urls.is_empty()
            || (self.inspection_collectors.is_some() && !self.api_urls.is_empty())
    }

    /// The collectors to run: the configured list, else IPA's `default,logs`.
    pub fn collectors(&self) -> Vec<String> {
        self.inspection_collectors
            .clone()
            .unwrap_or_else(|| vec!["default".to_string(), "logs".to_string()])
    }

    /// Where inspection data goes: the callback URLs, else `{api}/v1/continue_inspection`.
    pub fn inspection_targets(&self) -> Vec<String> {
        if !self.inspection_callback_urls.is_empty() {
            return self.inspection_callback_urls.clone();
        }
        self.api_urls
            .iter()
            .filter(|u| *u != "mdns")
            .map(|u| format!("{u}/v1/continue_inspection"))
            .collect()
    }
}

/// `01-aa-bb-cc-dd-ee-ff` (pxelinux) or `aa:bb:cc:dd:ee:ff` (iPXE) -> `aa:bb:cc:dd:ee:ff`.
pub fn normalize_bootif(raw: &str) -> Option<String> {
    let s = raw.trim().to_ascii_lowercase().replace('-', ":");
    let parts: Vec<&str> = s.split(':').collect();
    let octets = match parts.len() {
        7 if parts[0] == "01" => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    let valid = octets
        .iter()
        .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| octets.join(":"))
}

/// Reads typed values out of the parameter map, recording malformed ones.
struct Parser<'a> {
    params: &'a HashMap<String, String>,
    cfg: Config,
}

impl Parser<'_> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    fn warn(&mut self, key: &str, value: &str, expected: &str) {
        self.cfg.warnings.push(format!(
            "kernel parameter {key}={value} is not {expected}; using the default instead"
        ));
    }

    /// A value parsed by `parse`, else `default` (with a warning when present but malformed).
    fn typed<T>(
        &mut self,
        key: &str,
        default: T,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> T {
        let Some(value) = self.raw(key).map(str::to_string) else {
            return default;
        };
        match parse(&value) {
            Some(v) => v,
            None => {
                self.warn(key, &value, expected);
                default
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        self.typed(
            key,
            default,
            "a boolean (1/0, true/false, yes/no, on/off)",
            parse_bool,
        )
    }

    fn uint(&mut self, key: &str, default: u32, min: u32) -> u32 {
        let expected = format!("an integer of at least {min}");
        self.typed(key, default, &expected, |v| {
            v.parse::<u32>().ok().filter(|n| *n >= min)
        })
    }

    fn seconds(&mut self, key: &str, default: Duration, min: f64) -> Duration {
        let expected = format!("a number of seconds of at least {min}");
        self.typed(key, default, &expected, |v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= min)
                .map(Duration::from_secs_f64)
        })
    }

    fn string(&self, key: &str) -> Option<String> {
        self.raw(key).filter(|v| !v.is_empty()).map(str::to_string)
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.raw(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn read_urls_and_inspection(&mut self) {
        self.cfg.api_urls = self.urls("ipa-api-url");
        self.cfg.inspection_callback_urls = self.urls("ipa-inspection-callback-url");
        if self.raw("ipa-inspection-collectors").is_some() {
            self.cfg.inspection_collectors = Some(self.list("ipa-inspection-collectors"));
        }
        self.cfg.inspection_dhcp_wait_timeout = self.seconds(
            "ipa-inspection-dhcp-wait-timeout",
            Duration::from_secs(60),
            0.0,
        );
        self.cfg.inspection_dhcp_all_interfaces =
            self.boolean("ipa-inspection-dhcp-all-interfaces", false);
        self.cfg.inspection_benchmarks = self.list("ipa-inspection-benchmarks");
        self.cfg.collect_lldp = self.boolean("ipa-collect-lldp", false);
        self.cfg.lldp_timeout = self.seconds("ipa-lldp-timeout", Duration::from_secs(30), 0.0);
    }

    /// A comma-separated URL list, validated like IPA (`mdns` or `http(s)://...`).
    fn urls(&mut self, key: &str) -> Vec<String> {
        let mut urls = Vec::new();
        for item in self.list(key) {
            let valid = item == "mdns"
                || url::Url::parse(&item).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some_and(|h| !h.is_empty())
                });
            if valid {
                urls.push(item.trim_end_matches('/').to_string());
            } else {
                self.cfg.warnings.push(format!(
                    "kernel parameter {key} contains {item:?}, which is neither an http(s) URL nor \
                     \"mdns\"; ignoring it"
                ));
            }
        }
        urls
    }

    fn read_network(&mut self) {
        self.cfg.global_request_id = self.string("ipa-global-request-id");
        self.cfg.listen_host = match self.string("ipa-listen-host") {
            None => None,
            Some(v) => match v.trim_matches(['[', ']']).parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.warn("ipa-listen-host", &v, "an IP address");
                    None
                }
            },
        };
        self.cfg.listen_port = self.port("ipa-listen-port");
        self.cfg.advertise_host = self.string("ipa-advertise-host");
        self.cfg.advertise_port = self.port("ipa-advertise-port");
        self.cfg.advertise_protocol = self.typed(
            "ipa-advertise-protocol",
            Protocol::Http,
            "http or https",
            |v| match v.to_ascii_lowercase().as_str() {
                "http" => Some(Protocol::Http),
                "https" => Some(Protocol::Https),
                _ => None,
            },
        );
        self.cfg.ip_lookup_attempts = self.uint("ipa-ip-lookup-attempts", 6, 1);
        self.cfg.ip_lookup_sleep =
            self.seconds("ipa-ip-lookup-timeout", Duration::from_secs(10), 0.0);
        self.cfg.network_interface = self.string("ipa-network-interface");
        self.cfg.enable_vlan_interfaces = self.list("ipa-enable-vlan-interfaces");
        self.cfg.bootif = self.string("BOOTIF");
        if let Some(raw) = self.cfg.bootif.clone() {
            if normalize_bootif(&raw).is_none() {
                self.cfg.warnings.push(format!(
                    "kernel parameter BOOTIF={raw} is not a MAC address (aa:bb:cc:dd:ee:ff or \
                     01-aa-bb-cc-dd-ee-ff); it is reported as given but not used to pick a NIC"
                ));
            }
        }
        self.cfg.boot_method_vmedia = self.raw("boot_method") == Some("vmedia");
        self.cfg.use_mdns = self.boolean("ipa-use-mdns", false);
    }

    fn port(&mut self, key: &str) -> u16 {
        self.typed(key, 9999, "a TCP port (1-65535)", |v| {
            v.parse::<u16>().ok().filter(|p| *p > 0)
        })
    }

    fn read_timeouts(&mut self) {
        self.cfg.lookup_timeout = self.seconds("ipa-lookup-timeout", Duration::from_secs(600), 0.0);
        self.cfg.lookup_interval = self.seconds("ipa-lookup-interval", Duration::from_secs(1), 0.0);
        self.cfg.hardware_initialization_delay =
            self.seconds("ipa-hardware-initialization-delay", Duration::ZERO, 0.0);
        self.cfg.disk_wait_attempts = self.uint("ipa-disk-wait-attempts", 10, 0);
        self.cfg.disk_wait_delay = self.seconds("ipa-disk-wait-delay", Duration::from_secs(3), 0.0);
        self.cfg.http_request_timeout =
            self.seconds("ipa-http-request-timeout", Duration::from_secs(30), 1.0);
    }

    fn read_image_download(&mut self) {
        let d = ImageDownloadConfig::default();
        self.cfg.image_download = ImageDownloadConfig {
            connection_timeout: self.seconds(
                "ipa-image-download-connection-timeout",
                d.connection_timeout,
                1.0,
            ),
            retries: self.uint("ipa-image-download-connection-retries", d.retries, 0),
            retry_interval: self.seconds(
                "ipa-image-download-connection-retry-interval",
                d.retry_interval,
                0.0,
            ),
            max_duration: Some(self.seconds(
                "ipa-image-download-max-duration",
                Duration::ZERO,
                0.0,
            ))
            .filter(|d| !d.is_zero()),
        };
    }

    fn read_tls(&mut self) {
        self.cfg.insecure = self.boolean("ipa-insecure", false);
        self.cfg.tls_min_version = self.typed(
            "ipa-tls-min-version",
            TlsMinVersion::Tls12,
            "1.2 or 1.3",
            |v| match v {
                "1.2" => Some(TlsMinVersion::Tls12),
                "1.3" => Some(TlsMinVersion::Tls13),
                _ => None,
            },
        );
        self.cfg.tls_cipher_suites = self.string("ipa-tls-cipher-suites");
        self.cfg.tls_certificate_curve = self.typed(
            "ipa-tls-certificate-curve",
            CertificateCurve::P384,
            "p256, p384 or p521",
            |v| match v.to_ascii_lowercase().as_str() {
                "p256" => Some(CertificateCurve::P256),
                "p384" => Some(CertificateCurve::P384),
                "p521" => Some(CertificateCurve::P521),
                _ => None,
            },
        );
    }

    fn read_misc(&mut self) {
        self.cfg.agent_token = self.string("ipa-agent-token");
        self.cfg.ironic_api_version = self.typed(
            "ipa-ironic-api-version",
            None,
            "an API version like 1.68",
            |v| ApiVersion::parse(v).map(Some),
        );
        self.cfg.ntp_server = self.ntp_server();
        self.cfg.ignore_bootloader_failure = self.boolean("ipa-ignore-bootloader-failure", false);
        self.cfg.inject_files_priority = self.typed(
            "ipa-inject-files-priority",
            0,
            "an integer from 0 to 99",
            |v| v.parse::<u32>().ok().filter(|n| *n <= 99),
        );
        self.cfg.guard_special_filesystems = self.boolean("ipa-guard-special-filesystems", true);
        self.cfg.enable_discard_erase = self.boolean("ipa-enable-discard-erase", false);
        // IPA parses ipa-debug leniently: anything it does not recognise means false.
        self.cfg.debug = self.raw("ipa-debug").and_then(parse_bool).unwrap_or(false);
    }

    /// IPA accepts an IP, or a host name of at most 253 characters of `[A-Za-z0-9.:_-]`.
    fn ntp_server(&mut self) -> Option<String> {
        let v = self.string("ipa-ntp-server")?;
        let ok = v.parse::<IpAddr>().is_ok()
            || (v.len() <= 253
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c)));
        if ok {
            Some(v)
        } else {
            self.warn("ipa-ntp-server", &v, "an IP address or host name");
            None
        }
    }
}

/// oslo.config's boolean words, in any case.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRONIC_IPXE: &str = "nofb vga=normal ipa-debug=1 \
        ipa-inspection-callback-url=http://127.0.0.1:6385/v1/continue_inspection \
        ipa-api-url=http://127.0.0.1:6385 ipa-global-request-id=req-0b6c BOOTIF=52:54:00:12:34:56 \
        initrd=deploy_ramdisk";

    #[test]
    fn parses_what_ironic_puts_on_the_command_line() {
        let c = Config::from_cmdline(IRONIC_IPXE);
        assert_eq!(c.api_urls, vec!["http://127.0.0.1:6385"]);
        assert_eq!(
            c.inspection_callback_urls,
            vec!["http://127.0.0.1:6385/v1/continue_inspection"]
        );
        assert_eq!(c.global_request_id.as_deref(), Some("req-0b6c"));
        assert!(c.debug);
        assert_eq!(c.bootif_mac().as_deref(), Some("52:54:00:12:34:56"));
        assert!(c.inspection_enabled());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn defaults_match_ipa() {
        let c = Config::from_cmdline("");
        assert_eq!(c.listen_port, 9999);
        assert_eq!(c.advertise_port, 9999);
        assert_eq!(c.lookup_timeout, Duration::from_secs(600));
        assert_eq!(c.lookup_interval, Duration::from_secs(1));
        assert_eq!(c.http_request_timeout, Duration::from_secs(30));
        assert_eq!(c.image_download, ImageDownloadConfig::default());
        assert_eq!(c.tls_certificate_curve, CertificateCurve::P384);
        assert!(c.guard_special_filesystems);
        assert_eq!(c.collectors(), vec!["default", "logs"]);
        assert!(!c.inspection_enabled());
    }

    #[test]
    fn tokenizes_like_ipa() {
        let p = tokenize("a=1 flag b=x=y a=2 c=\"q\"");
        assert_eq!(p.get("a").map(String::as_str), Some("2"));
        assert_eq!(p.get("b").map(String::as_str), Some("x=y"));
        assert_eq!(p.get("c").map(String::as_str), Some("\"q\""));
        assert!(!p.contains_key("flag"));
    }

    #[test]
    fn url_lists_drop_empty_items_and_trailing_slashes() {
        let c = Config::from_cmdline("ipa-api-url=http://a:6385/,,https://b/ironic/");
        assert_eq!(c.api_urls, vec!["http://a:6385", "https://b/ironic"]);
    }

    #[test]
    fn bad_urls_are_dropped_with_a_warning() {
        let c = Config::from_cmdline("ipa-api-url=ftp://x,http://ok");
        assert_eq!(c.api_urls, vec!["http://ok"]);
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("ftp://x"));
    }

    #[test]
    fn malformed_values_fall_back_to_defaults_with_one_sentence_each() {
        let c = Config::from_cmdline(
            "ipa-lookup-timeout=soon ipa-insecure=maybe ipa-listen-port=99999 \
             ipa-image-download-connection-timeout=0 ipa-ironic-api-version=latest",
        );
        assert_eq!(c.lookup_timeout, Duration::from_secs(600));
        assert!(!c.insecure);
        assert_eq!(c.listen_port, 9999);
        assert_eq!(c.image_download.connection_timeout, Duration::from_secs(60));
        assert_eq!(c.ironic_api_version, None);
        assert_eq!(c.warnings.len(), 5, "{:?}", c.warnings);
        assert!(c
            .warnings
            .iter()
            .all(|w| w.starts_with("kernel parameter ") && w.ends_with("instead")));
    }

    #[test]
    fn booleans_accept_oslo_words_in_any_case() {
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("Yes", true),
            ("on", true),
            ("0", false),
            ("Off", false),
        ] {
            assert_eq!(
                Config::from_cmdline(&format!("ipa-insecure={v}")).insecure,
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn ipa_debug_is_lenient() {
        let c = Config::from_cmdline("ipa-debug=verbose");
        assert!(!c.debug);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn bootif_in_both_forms() {
        assert_eq!(
            normalize_bootif("01-52-54-00-AB-cd-EF").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(
            normalize_bootif("52:54:00:ab:cd:ef").as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(normalize_bootif("52:54:00:ab:cd"), None);
        assert_eq!(normalize_bootif("zz:54:00:ab:cd:ef"), None);
        let c = Config::from_cmdline("BOOTIF=garbage");
        assert_eq!(c.bootif.as_deref(), Some("garbage"));
        assert_eq!(c.bootif_mac(), None);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn inspection_targets_fall_back_to_continue_inspection() {
        let c = Config::from_cmdline(
            "ipa-api-url=http://i:6385 ipa-inspection-collectors=default,pci-devices",
        );
        assert!(c.inspection_enabled());
        assert_eq!(
            c.inspection_targets(),
            vec!["http://i:6385/v1/continue_inspection"]
        );
        assert_eq!(c.collectors(), vec!["default", "pci-devices"]);
    }

    #[test]
    fn image_download_max_duration_zero_means_off() {
        let c = Config::from_cmdline(
            "ipa-image-download-max-duration=0 ipa-image-download-connection-retries=3",
        );
        assert_eq!(c.image_download.max_duration, None);
        assert_eq!(c.image_download.retries, 3);
        let c = Config::from_cmdline("ipa-image-download-max-duration=3600");
        assert_eq!(
            c.image_download.max_duration,
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn tls_and_api_version() {
        let c = Config::from_cmdline(
            "ipa-tls-min-version=1.3 ipa-tls-certificate-curve=P256 ipa-ironic-api-version=1.68",
        );
        assert_eq!(c.tls_min_version, TlsMinVersion::Tls13);
        assert_eq!(c.tls_certificate_curve, CertificateCurve::P256);
        assert_eq!(c.ironic_api_version, Some(ApiVersion(1, 68)));
    }

    #[test]
    fn ntp_server_validation() {
        assert_eq!(
            Config::from_cmdline("ipa-ntp-server=10.0.0.1")
                .ntp_server
                .as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            Config::from_cmdline("ipa-ntp-server=ntp.example.org")
                .ntp_server
                .as_deref(),
            Some("ntp.example.org")
        );
        let c = Config::from_cmdline("ipa-ntp-server=bad/host");
        assert_eq!(c.ntp_server, None);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn listen_host_accepts_ipv6_in_brackets() {
        let c = Config::from_cmdline("ipa-listen-host=[::1]");
        assert_eq!(c.listen_host, Some("::1".parse().unwrap()));
    }

    #[test]
    fn inject_files_priority_is_bounded() {
        assert_eq!(
            Config::from_cmdline("ipa-inject-files-priority=55").inject_files_priority,
            55
        );
        let c = Config::from_cmdline("ipa-inject-files-priority=150");
        assert_eq!(c.inject_files_priority, 0);
        assert_eq!(c.warnings.len(), 1);
    }
}
