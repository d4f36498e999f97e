//! The config drive (contract §11.8): fetched or decoded (base64 of gzip, or an http(s) URL
//! serving that), limited to 64 MiB, and written to a `config-2` partition: the one the image
//! already has, else a new one at the end of the disk (whole-disk images); partition images
//! get theirs in the layout ([`super::partition_image`]).

use crate::context::AgentContext;
use crate::disk::table::{self, Partition, MIB};
use crate::disk::{kernel, Disk, DiskError};
use crate::errors::{CommandError, ErrorKind};
use base64::Engine;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// IPA's `MAX_CONFIG_DRIVE_SIZE_MB`.
pub const MAX_MIB: u64 = 64;
/// The label cloud-init looks for.
pub const LABEL: &str = "config-2";
/// Largest download accepted: base64 of a gzip of at most 64 MiB, with room to spare.
const DOWNLOAD_LIMIT: usize = 96 << 20;

fn fail(msg: impl Into<String>) -> CommandError {
    CommandError::new(ErrorKind::Deployment, msg)
}

/// The `configdrive` Ironic passed: the step argument, else `image_info["configdrive"]`.
pub fn requested<'a>(
    arg: Option<&'a serde_json::Value>,
    image_info: &'a serde_json::Value,
) -> Option<&'a str> {
    arg.filter(|v| !v.is_null())
        .or_else(|| image_info.get("configdrive").filter(|v| !v.is_null()))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
}

/// The uncompressed config drive image: downloaded when `source` is an http(s) URL (TLS
/// settings of image downloads, no proxy, as IPA), then base64-decoded and gunzipped.
pub async fn load(ctx: &AgentContext, source: &str, node: &str) -> Result<Vec<u8>, CommandError> {
    let lower = source.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return decode(source.as_bytes(), false, node);
    }
    let mut opts = super::write_image::image_settings(ctx).fetch;
    opts.proxies = Default::default();
    opts.auth = None;
    let download_err = |reason: String| {
        fail(format!(
            "Can't download the configdrive content for node {node} from '{source}'. Reason: {reason}"
        ))
    };
    reqwest::Url::parse(source).map_err(|e| download_err(e.to_string()))?;
    let http = crate::image::fetch::Http::new(opts).map_err(|e| download_err(e.to_string()))?;
    let data = http
        .get_small(source, DOWNLOAD_LIMIT)
        .await
        .map_err(|e| download_err(e.to_string()))?;
    let node = node.to_string();
    tokio::task::spawn_blocking(move || decode(&data, true, &node))
        .await
        .map_err(|e| fail(format!("decoding the config drive failed: {e}")))?
}

/// base64 → gzip → bytes. Downloaded content that is not base64 is taken as the image itself
/// (IPA's rule); inline content must be base64.
pub fn decode(data: &[u8], downloaded: bool, node: &str) -> Result<Vec<u8>, CommandError> {
    let text: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let gz = match base64::engine::general_purpose::STANDARD.decode(&text) {
        Ok(gz) => gz,
        Err(_) if downloaded => return check_size(data.to_vec(), node),
        Err(e) => {
            return Err(fail(format!(
            "Config drive for node {node} is not base64 encoded or the content is malformed: {e}"
        )))
        }
    };
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .take(MAX_MIB * MIB + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            fail(format!(
                "Encountered error while decompressing and writing config drive for node {node}. \
                 Error: {e}"
            ))
        })?;
    check_size(out, node)
}

fn check_size(data: Vec<u8>, node: &str) -> Result<Vec<u8>, CommandError> {
    if data.len() as u64 > MAX_MIB * MIB {
        return Err(fail(format!(
            "Config drive size exceeds maximum limit of {MAX_MIB}MiB for node {node}"
        )));
    }
    if data.is_empty() {
        return Err(fail(format!("the config drive for node {node} is empty")));
    }
    Ok(data)
}

/// Size of the partition a config drive of `len` bytes needs, in MiB (rounded up).
pub fn size_mib(len: usize) -> u64 {
    (len as u64).div_ceil(MIB).max(1)
}

/// Writes `data` into `part` of `disk` and checks that blkid sees a file system there.
pub fn write_into(disk: &Disk, part: &Partition, data: &[u8]) -> Result<(), DiskError> {
    if data.len() as u64 > part.size {
        return Err(DiskError::Invalid(format!(
            "the config drive ({} bytes) does not fit partition {} of {} ({} bytes)",
            data.len(),
            part.number,
            disk.path.display(),
            part.size
        )));
    }
    disk.file
        .write_all_at(data, part.start)
        .map_err(|e| DiskError::io("writing the config drive to", &disk.path, e))?;
    disk.sync()?;
    // IPA mounts it as a test and only logs when that fails; a probe is our mount test.
    match disk.probe(part) {
        Ok(info) if info.fstype.is_some() => tracing::info!(
            "config drive written to partition {} of {} ({}, label {})",
            part.number,
            disk.path.display(),
            info.fstype.unwrap_or_default(),
            info.label.unwrap_or_default()
        ),
        _ => tracing::warn!(
            "the config drive written to partition {} of {} holds no recognisable file system",
            part.number,
            disk.path.display()
        ),
    }
    Ok(())
}

/// Whole-disk images: an existing partition labelled `config-2` (any case), else a new one at
/// the end of the disk; then the data. Returns the partition used.
pub fn add_to_whole_disk(disk: &Disk, data: &[u8]) -> Result<Partition, DiskError> {
    let table = table::read(&disk.file, &disk.path, disk.geo)?.ok_or_else(|| {
        DiskError::Invalid(format!(
            "{} has no partition table to add a config drive to",
            disk.path.display()
        ))
    })?;
    let part = match labelled(disk, &table.partitions)? {
        Some(p) => {
            tracing::info!(
                "reusing partition {} of {} labelled {LABEL} for the config drive",
                p.number,
                disk.path.display()
            );
            p
        }
        None => {
            let p = table::add_config_drive(&disk.file, &disk.path, disk.geo, &table, MAX_MIB)?;
            disk.sync()?;
            let after = table::read(&disk.file, &disk.path, disk.geo)?.unwrap_or(table);
            kernel::sync_partitions(&disk.file, &disk.path, &after)?;
            p
        }
    };
    write_into(disk, &part, data)?;
    Ok(part)
}

/// The one partition whose file system label is `config-2`; two of them is an error.
fn labelled(disk: &Disk, parts: &[Partition]) -> Result<Option<Partition>, DiskError> {
    let mut found: Option<Partition> = None;
    for p in parts {
        let is_cd = disk
            .probe(p)
            .ok()
            .and_then(|i| i.label)
            .is_some_and(|l| l.eq_ignore_ascii_case(LABEL));
        if !is_cd {
            continue;
        }
        if let Some(first) = &found {
            return Err(DiskError::Invalid(format!(
                "More than one partition with label \"{LABEL}\" exists on device {}: partitions {} and {}",
                disk.path.display(),
                first.number,
                p.number
            )));
        }
        found = Some(p.clone());
    }
    Ok(found)
}

/// The blocking part of a whole-disk config drive, as a step error.
pub fn add_to_whole_disk_at(
    path: &Path,
    guard: &crate::safety::DiskGuard,
    data: &[u8],
    node: &str,
) -> Result<Partition, CommandError> {
    let disk = Disk::open(path, guard).map_err(|e| fail(e.to_string()))?;
    add_to_whole_disk(&disk, data).map_err(|e| {
        fail(format!(
            "Failed to create config drive on disk {} for node {node}. Error: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub fn gzip_b64(data: &[u8]) -> String {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        base64::engine::general_purpose::STANDARD.encode(e.finish().unwrap())
    }

    #[test]
    fn decodes_base64_gzip_and_enforces_the_limit() {
        let s = gzip_b64(b"hello config drive");
        assert_eq!(
            decode(s.as_bytes(), false, "n").unwrap(),
            b"hello config drive"
        );
        // line-wrapped base64 (as some tools produce) is fine
        let wrapped: String = s
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(
            decode(wrapped.as_bytes(), false, "n").unwrap(),
            b"hello config drive"
        );
        let e = decode(b"not base64 at all!", false, "n1").unwrap_err();
        assert!(
            e.details.contains("not base64") && e.details.contains("n1"),
            "{}",
            e.details
        );
        assert_eq!(e.kind, "DeploymentError");
        // downloaded raw bytes are the image
        assert_eq!(decode(b"\x00CD001raw", true, "n").unwrap(), b"\x00CD001raw");
        let big = gzip_b64(&vec![0u8; (MAX_MIB * MIB + 1) as usize]);
        let e = decode(big.as_bytes(), false, "n").unwrap_err();
        assert!(
            e.details.contains("exceeds maximum limit of 64MiB"),
            "{}",
            e.details
        );
        let notgz = base64::engine::general_purpose::STANDARD.encode(b"plain");
        assert!(decode(notgz.as_bytes(), false, "n")
            .unwrap_err()
            .details
            .contains("decompressing"));
    }

    #[test]
    fn requested_prefers_the_argument() {
        let info = serde_json::json!({"configdrive": "B"});
        assert_eq!(requested(Some(&serde_json::json!("A")), &info), Some("A"));
        assert_eq!(requested(Some(&serde_json::Value::Null), &info), Some("B"));
        assert_eq!(requested(None, &serde_json::json!({})), None);
        assert_eq!(
            requested(None, &serde_json::json!({"configdrive": ""})),
            None
        );
    }

    fn fat_image(label: &str) -> Vec<u8> {
        let (_dir, f, p) = crate::disk::scratch_disk(2 * MIB);
        crate::disk::format::vfat(&f, &p, 0, 2 * MIB, label, false).unwrap();
        std::fs::read(&p).unwrap()
    }

    #[test]
    fn whole_disk_gets_a_new_partition_then_reuses_it() {
        let (_dir, f, path) = crate::disk::scratch_disk(256 * MIB);
        let disk = Disk::open(&path, &crate::safety::DiskGuard::new(false, vec![])).unwrap();
        table::create(
            &disk.file,
            &path,
            disk.geo,
            table::Label::Gpt,
            &[table::NewPartition {
                size_mib: 100,
                role: table::Role::Linux,
                bootable: false,
            }],
        )
        .unwrap();
        let data = fat_image("config-2");
        let p = add_to_whole_disk(&disk, &data).unwrap();
        assert_eq!((p.number, p.start), (2, 192 * MIB));
        let info = disk.probe(&p).unwrap();
        assert_eq!(info.label.as_deref(), Some("config-2"));
        // a second run finds it by label instead of adding a third partition
        let q = add_to_whole_disk(&disk, &fat_image("CONFIG-2")).unwrap();
        assert_eq!(q.number, 2);
        let t = table::read(&disk.file, &path, disk.geo).unwrap().unwrap();
        assert_eq!(t.partitions.len(), 2);
        // an image without a table is refused
        f.set_len(0).unwrap();
        f.set_len(8 * MIB).unwrap();
        let disk = Disk::open(&path, &crate::safety::DiskGuard::new(false, vec![])).unwrap();
        assert!(add_to_whole_disk(&disk, &data)
            .unwrap_err()
            .to_string()
            .contains("no partition table"));
    }
}
