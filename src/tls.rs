//! TLS for both directions: the agent API's self-signed certificate (auto-TLS, contract §7.6) and
//! the client configuration used for Ironic, inspection, image and configdrive downloads (§3.5).
//!
//! Ironic rejects plain-HTTP agents by default since 2024.2 and requires TLS 1.3 on its client side
//! since 38.0, so auto-TLS is on whenever the agent talks to Ironic. The certificate must stay the
//! same for as long as Ironic remembers the agent's `agent_url`: a new PEM in a later heartbeat is
//! rejected with 400. It is therefore kept in the state directory and reused by a restarted agent.

use crate::config::{CertificateCurve, TlsMinVersion};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long the certificate is valid, and how far back it starts (clock skew between the host's
/// RTC and the conductor), as IPA does.
const VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
const ALLOWED_CLOCK_SKEW: Duration = Duration::from_secs(3600);
/// A stored certificate with less than this left is replaced rather than reused.
const MIN_REMAINING: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the agent's TLS certificate for {host} failed: {reason}")]
    Generate { host: String, reason: String },
    #[error("building the TLS configuration failed: {0}")]
    Config(String),
    #[error("reading the CA bundle {path} failed: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// The agent's self-signed certificate and key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCertMeta {
    host: String,
    not_after_unix: u64,
}

impl AgentCertificate {
    /// A new certificate for `host`, the advertised address: an IP SAN for an IP (what Ironic
    /// checks the connection against), a DNS SAN for a host name.
    pub fn generate(host: &str, curve: CertificateCurve) -> Result<Self, TlsError> {
        let fail = |reason: String| TlsError::Generate {
            host: host.to_string(),
            reason,
        };
        let alg = match curve {
            CertificateCurve::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            // ring has no P-521; IPA's default is P-384, which is what we then use.
            CertificateCurve::P384 | CertificateCurve::P521 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        let key = rcgen::KeyPair::generate_for(alg).map_err(|e| fail(e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, hostname());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                host.try_into()
                    .map_err(|e: rcgen::Error| fail(e.to_string()))?,
            ),
        }];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - ALLOWED_CLOCK_SKEW;
        params.not_after = now + VALIDITY;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        let cert = params.self_signed(&key).map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The stored certificate when it is for `host` and still valid, else a new one (then
    /// stored). Reusing it keeps `agent_verify_ca` unchanged across an agent restart.
    pub fn load_or_generate(
        dir: &Path,
        host: &str,
        curve: CertificateCurve,
    ) -> Result<Self, TlsError> {
        if let Some(stored) = Self::load(dir, host) {
            tracing::info!("reusing the agent certificate stored in {}", dir.display());
            return Ok(stored);
        }
        let cert = Self::generate(host, curve)?;
        if let Err(e) = cert.store(dir, host) {
            tracing::warn!(
                "could not store the agent certificate in {}: {e}; a restarted agent \
                            would present a new one",
                dir.display()
            );
        }
        Ok(cert)
    }

    fn load(dir: &Path, host: &str) -> Option<Self> {
        let meta: StoredCertMeta =
            serde_json::from_slice(&std::fs::read(dir.join("agent.crt.json")).ok()?).ok()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        if meta.host != host || meta.not_after_unix < now + MIN_REMAINING.as_secs() {
            return None;
        }
        let cert_pem = std::fs::read_to_string(dir.join("agent.crt")).ok()?;
        let key_pem = std::fs::read_to_string(dir.join("agent.key")).ok()?;
        let cert = Self { cert_pem, key_pem };
        cert.server_parts().ok()?;
        Some(cert)
    }

    fn store(&self, dir: &Path, host: &str) -> std::io::Result<()> {
        let not_after = std::time::SystemTime::now() + VALIDITY;
        let meta = StoredCertMeta {
            host: host.to_string(),
            not_after_unix: not_after
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        crate::state::write_private(&dir.join("agent.key"), self.key_pem.as_bytes())?;
        crate::state::write_private(&dir.join("agent.crt"), self.cert_pem.as_bytes())?;
        crate::state::write_private(&dir.join("agent.crt.json"), &serde_json::to_vec(&meta)?)
    }

    fn server_parts(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Config(format!("agent certificate PEM is unreadable: {e}")))?;
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|e| TlsError::Config(format!("agent key PEM is unreadable: {e}")))?
            .ok_or_else(|| TlsError::Config("agent key PEM holds no key".into()))?;
        Ok((certs, key))
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ironic-agent".to_string())
}

/// The protocol versions and TLS 1.2 cipher suites both sides use.
#[derive(Debug, Clone)]
pub struct TlsPolicy {
    pub min_version: TlsMinVersion,
    /// An OpenSSL-style cipher list (`ipa-tls-cipher-suites`) for TLS 1.2; `None` = IPA's default.
    pub cipher_suites: Option<String>,
}

impl Default for TlsPolicy {
    fn default() -> Self {
        Self {
            min_version: TlsMinVersion::Tls12,
            cipher_suites: None,
        }
    }
}

/// IPA's default TLS 1.2 list: ECDHE with AES-GCM only.
const DEFAULT_TLS12_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
];

/// OpenSSL cipher names -> rustls suites (the TLS 1.2 suites rustls implements).
fn tls12_suite_by_openssl_name(name: &str) -> Option<rustls::CipherSuite> {
    use rustls::CipherSuite as C;
    Some(match name {
        "ECDHE-ECDSA-AES256-GCM-SHA384" => C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-AES256-GCM-SHA384" => C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-AES128-GCM-SHA256" => C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-CHACHA20-POLY1305" => C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

impl TlsPolicy {
    /// A ring provider restricted to TLS 1.3's suites plus the allowed TLS 1.2 suites.
    fn provider(&self) -> CryptoProvider {
        let mut provider = rustls::crypto::ring::default_provider();
        let wanted = self.tls12_suites();
        provider.cipher_suites.retain(|s| match s {
            rustls::SupportedCipherSuite::Tls13(_) => true,
            rustls::SupportedCipherSuite::Tls12(_) => wanted.contains(&s.suite()),
        });
        provider
    }

    fn tls12_suites(&self) -> Vec<rustls::CipherSuite> {
        let defaults = || {
            DEFAULT_TLS12_SUITES
                .iter()
                .filter_map(|n| tls12_suite_by_openssl_name(n))
                .collect()
        };
        let Some(list) = &self.cipher_suites else {
            return defaults();
        };
        let chosen: Vec<_> = list
            .split([':', ','])
            .filter_map(|n| tls12_suite_by_openssl_name(n.trim()))
            .collect();
        if chosen.is_empty() {
            tracing::warn!(
                "ipa-tls-cipher-suites={list} names no TLS 1.2 suite this agent supports; \
                            using the default ECDHE AES-GCM suites"
            );
            return defaults();
        }
        chosen
    }

    fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self.min_version {
            TlsMinVersion::Tls12 => &TLS12_AND_13,
            TlsMinVersion::Tls13 => &TLS13_ONLY,
        }
    }

    /// The agent API's server configuration (no client certificates requested).
    pub fn server_config(
        &self,
        cert: &AgentCertificate,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let (certs, key) = cert.server_parts()?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(self.provider()))
            .with_protocol_versions(self.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(config))
    }

    /// The configuration for every outbound HTTPS request. Trusts the public web roots, the
    /// system's CA store and `ca_file`; verifies nothing with `insecure` (`ipa-insecure`).
    pub fn client_config(
        &self,
        insecure: bool,
        ca_file: Option<&Path>,
    ) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(self.provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(self.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(root_store(ca_file)?)
                .with_no_client_auth()
        };
        Ok(config)
    }
}

fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // The ramdisk usually has no system store; on a host (and in tests) it adds local CAs.
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!("trusting {added} CA certificates from the system store");
    if let Some(path) = ca_file {
        let fail = |reason: String| TlsError::CaFile {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("it holds no PEM certificate".into()));
        }
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(fail(format!(
                "none of its {ignored} certificates could be used"
            )));
        }
    }
    Ok(roots)
}

/// `ipa-insecure`: accept any server certificate, but still check the handshake signatures so
/// the connection itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_usable_by_a_server() {
        let cert = AgentCertificate::generate("192.0.2.10", CertificateCurve::P384).unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        TlsPolicy::default().server_config(&cert).unwrap();
        let named =
            AgentCertificate::generate("agent.example.org", CertificateCurve::P256).unwrap();
        TlsPolicy::default().server_config(&named).unwrap();
    }

    #[test]
    fn stored_certificate_is_reused_for_the_same_ip_only() {
        let dir = tempfile::tempdir().unwrap();
        let ip = "192.0.2.10";
        let first =
            AgentCertificate::load_or_generate(dir.path(), ip, CertificateCurve::P384).unwrap();
        let again =
            AgentCertificate::load_or_generate(dir.path(), ip, CertificateCurve::P384).unwrap();
        assert_eq!(first, again);
        let other =
            AgentCertificate::load_or_generate(dir.path(), "192.0.2.11", CertificateCurve::P384)
                .unwrap();
        assert_ne!(first, other);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("agent.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn default_tls12_suites_are_ecdhe_gcm() {
        let suites = TlsPolicy::default().tls12_suites();
        assert_eq!(suites.len(), 4);
        let custom = TlsPolicy {
            cipher_suites: Some("ECDHE-RSA-AES128-GCM-SHA256:BOGUS".into()),
            ..Default::default()
        };
        assert_eq!(
            custom.tls12_suites(),
            vec![rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
        );
        let none = TlsPolicy {
            cipher_suites: Some("BOGUS".into()),
            ..Default::default()
        };
        assert_eq!(none.tls12_suites().len(), 4);
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a pem").unwrap();
        let err = TlsPolicy::default()
            .client_config(false, Some(&f))
            .unwrap_err();
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }
}
