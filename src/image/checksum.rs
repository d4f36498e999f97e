//! Checksums: which algorithm, which expected value, and hashing the downloaded bytes.
//!
//! The rules follow IPA (contract §11.3): `os_hash_algo`/`os_hash_value` win over `checksum`;
//! a bare checksum's algorithm comes from its length (32 md5, 64 sha256, 128 sha512); a
//! checksum that is a URL names a checksum file, parsed as a bare hash, GNU `<hash>  [*]<name>`
//! lines or BSD `ALGO (<name>) = <hash>` lines, looking for the basename of the image URL.
//! Unlike IPA, hex digests are compared case-insensitively (an uppercase published checksum is
//! still the same checksum).

use md5::Digest;
use std::fmt;

/// A hash algorithm we can verify with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Algo {
    /// The name as hashlib (and Glance's `os_hash_algo`) spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha224 => "sha224",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace('-', "").as_str() {
            "md5" => Some(Self::Md5),
            "sha224" => Some(Self::Sha224),
            "sha256" => Some(Self::Sha256),
            "sha384" => Some(Self::Sha384),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    /// IPA's length rule for checksums given without an algorithm.
    pub fn from_hex_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Self::Md5),
            64 => Some(Self::Sha256),
            128 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha224 => 56,
            Self::Sha256 => 64,
            Self::Sha384 => 96,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value the downloaded bytes must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algo: Algo,
    /// Lowercase hex.
    pub hex: String,
}

impl Expected {
    /// `hex` must be a digest of `algo`'s length; md5 only when `md5_allowed`.
    pub fn new(algo: Algo, hex: &str, md5_allowed: bool) -> Result<Self, String> {
        let hex = hex.trim().to_ascii_lowercase();
        if algo == Algo::Md5 && !md5_allowed {
            return Err(
                "md5 checksums are disabled (md5_enabled / agent_md5_checksum_enable is false)"
                    .into(),
            );
        }
        if hex.len() != algo.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{hex:?} is not a {algo} digest ({} hex digits)",
                algo.hex_len()
            ));
        }
        Ok(Self { algo, hex })
    }

    /// A checksum without an algorithm: the algorithm comes from its length.
    pub fn from_bare(hex: &str, md5_allowed: bool) -> Result<Self, String> {
        let algo = Algo::from_hex_len(hex.trim().len()).ok_or_else(|| {
            format!(
                "checksum {:?} has {} characters, which is not an md5, sha256 or sha512 digest",
                hex.trim(),
                hex.trim().len()
            )
        })?;
        Self::new(algo, hex, md5_allowed)
    }

    /// `algo:hex`, as given on the command line.
    pub fn parse_tagged(s: &str, md5_allowed: bool) -> Result<Self, String> {
        match s.split_once(':') {
            Some((a, h)) => {
                let algo = Algo::from_name(a)
                    .ok_or_else(|| format!("unknown checksum algorithm {a:?}"))?;
                Self::new(algo, h, md5_allowed)
            }
            None => Self::from_bare(s, md5_allowed),
        }
    }
}

/// A running hash over the downloaded bytes.
pub enum Hasher {
    Md5(md5::Md5),
    Sha224(sha2::Sha224),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algo: Algo) -> Self {
        match algo {
            Algo::Md5 => Self::Md5(md5::Md5::new()),
            Algo::Sha224 => Self::Sha224(sha2::Sha224::new()),
            Algo::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algo::Sha384 => Self::Sha384(sha2::Sha384::new()),
            Algo::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Md5(h) => h.update(data),
            Self::Sha224(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Sha384(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    /// Lowercase hex digest.
    pub fn finish(self) -> String {
        match self {
            Self::Md5(h) => hex::encode(h.finalize()),
            Self::Sha224(h) => hex::encode(h.finalize()),
            Self::Sha256(h) => hex::encode(h.finalize()),
            Self::Sha384(h) => hex::encode(h.finalize()),
            Self::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// The file name IPA looks for in a checksum file: the last path segment of the image URL.
pub fn url_basename(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_else(|_| url.to_string());
    path.rsplit('/').next().unwrap_or("").to_string()
}

fn is_digest(s: &str) -> bool {
    matches!(s.len(), 32 | 64 | 128) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Finds the checksum of `name` in a checksum file's text.
pub fn find_in_checksum_file(text: &str, name: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if let [only] = lines.as_slice() {
        if !only.contains(char::is_whitespace) {
            return is_digest(only).then(|| only.to_string());
        }
    }
    lines.iter().find_map(|line| digest_for(line, name))
}

/// A digest from one checksum-file line, when the line names `name`.
fn digest_for(line: &str, name: &str) -> Option<String> {
    let gnu = line
        .strip_suffix(name)
        .is_some_and(|rest| rest.ends_with([' ', '\t', '*']));
    let bsd = line.contains(&format!("({name})"));
    if !(gnu || bsd) || name.is_empty() {
        return None;
    }
    let first = line.split_whitespace().next()?;
    let last = line.split_whitespace().last()?;
    [first, last]
        .into_iter()
        .find(|t| is_digest(t))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hashes_bytes() {
        let mut h = Hasher::new(Algo::Sha256);
        h.update(b"");
        assert_eq!(h.finish(), SHA256_EMPTY);
        let mut h = Hasher::new(Algo::Md5);
        h.update(b"abc");
        assert_eq!(h.finish(), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn algorithm_from_length_and_md5_policy() {
        assert_eq!(
            Expected::from_bare(SHA256_EMPTY, false).unwrap().algo,
            Algo::Sha256
        );
        assert_eq!(
            Expected::from_bare(&"a".repeat(128), false).unwrap().algo,
            Algo::Sha512
        );
        assert!(Expected::from_bare(&"a".repeat(32), false).is_err());
        assert_eq!(
            Expected::from_bare(&"A".repeat(32), true).unwrap().hex,
            "a".repeat(32)
        );
        assert!(Expected::from_bare("abc", true).is_err());
        assert!(Expected::from_bare(&"z".repeat(64), true).is_err());
        assert_eq!(
            Expected::parse_tagged(&format!("sha256:{SHA256_EMPTY}"), false)
                .unwrap()
                .algo,
            Algo::Sha256
        );
        assert!(Expected::parse_tagged("sha1:abcd", true).is_err());
        assert!(Expected::parse_tagged(&format!("sha512:{SHA256_EMPTY}"), true).is_err());
    }

    #[test]
    fn checksum_file_formats() {
        assert_eq!(
            find_in_checksum_file(&format!("\n{SHA256_EMPTY}\n"), "x.img").unwrap(),
            SHA256_EMPTY
        );
        let gnu = format!(
            "# comment\n{} other.img\n{SHA256_EMPTY}  disk.qcow2\n",
            "1".repeat(64)
        );
        assert_eq!(
            find_in_checksum_file(&gnu, "disk.qcow2").unwrap(),
            SHA256_EMPTY
        );
        let star = format!("{SHA256_EMPTY} *disk.qcow2\n{} x\n", "1".repeat(64));
        assert_eq!(
            find_in_checksum_file(&star, "disk.qcow2").unwrap(),
            SHA256_EMPTY
        );
        let bsd = format!(
            "SHA256 (other) = {}\nSHA256 (disk.qcow2) = {SHA256_EMPTY}\n",
            "1".repeat(64)
        );
        assert_eq!(
            find_in_checksum_file(&bsd, "disk.qcow2").unwrap(),
            SHA256_EMPTY
        );
        assert!(find_in_checksum_file(&gnu, "missing.img").is_none());
        // A name that is only a suffix of another name does not match.
        assert!(find_in_checksum_file(
            &format!("{SHA256_EMPTY}  mydisk.qcow2\nx y\n"),
            "disk.qcow2"
        )
        .is_none());
    }

    #[test]
    fn basename_ignores_query() {
        assert_eq!(
            url_basename("http://h/a/b/disk.img?temp_url_sig=1"),
            "disk.img"
        );
    }
}
