//! The `inject_files` deploy and service step (IPA's `inject_files.py`): files from
//! `node.properties.inject_files` plus the `files` argument are written into (or deleted from)
//! partitions of the install disk, mounted for the purpose.
//!
//! A file names its partition by number (on the install disk), by device path, or not at all:
//! then the partition holding the first directory of its path is searched for. Content is
//! base64, or a URL that may carry `{node[...]}`/`{ports[...]}` fields as Python's format does.

use super::StepCall;
use crate::context::AgentContext;
use crate::disk::{kernel, table, Disk};
use crate::errors::{CommandError, ErrorKind};
use base64::Engine;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

const FIELDS: &[&str] = &[
    "path",
    "partition",
    "content",
    "deleted",
    "mode",
    "dirmode",
    "owner",
    "group",
];
/// Largest content fetched from a URL (held in memory before it is written).
const URL_LIMIT: usize = 64 << 20;
/// LVM physical volumes are skipped when searching (IPA skips partitions flagged lvm).
const LVM_TYPES: &[&str] = &["e6d6d379-f507-44c2-a23c-238f2a3df928", "0x8e"];

pub fn argsinfo() -> Value {
    json!({
        "files": {
            "description": "Files to inject, a list of file structures with keys: 'path' (path \
                to the file), 'partition' (partition specifier), 'content' (base64 encoded \
                string), 'mode' (new file mode) and 'dirmode' (mode for the leaf directory, if \
                created). Merged with the values from node.properties[inject_files].",
            "required": false,
        },
        "verify_ca": {
            "description": "Whether to verify TLS certificates. Global agent options are used \
                by default.",
            "required": false,
        }
    })
}

fn invalid(msg: impl Into<String>) -> CommandError {
    CommandError::new(ErrorKind::InvalidCommandParams, msg)
}

fn exec_err(msg: impl Into<String>) -> CommandError {
    CommandError::new(ErrorKind::CommandExecution, msg)
}

/// One validated file request.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSpec {
    /// Relative to the partition root, normalised.
    pub path: PathBuf,
    pub partition: Option<Value>,
    pub content: Option<String>,
    pub deleted: bool,
    pub mode: Option<u32>,
    pub dirmode: Option<u32>,
    pub owner: Option<i64>,
    pub group: Option<i64>,
    /// The request as given, for error messages.
    pub raw: Value,
}

/// IPA's `_validate_files`: both lists must be lists, and each entry well-formed.
pub fn validate(from_properties: &Value, from_args: &Value) -> Result<Vec<FileSpec>, CommandError> {
    let list = |v: &Value, what: &str| -> Result<Vec<Value>, CommandError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(a) => Ok(a.clone()),
            other => Err(invalid(format!("The {what} must be a list, got {other}"))),
        }
    };
    let mut all = list(from_properties, "`inject_files` node property")?;
    all.extend(list(from_args, "`files` argument")?);
    let mut failures = Vec::new();
    let mut out = Vec::new();
    for f in &all {
        match spec(f) {
            Ok(s) => out.push(s),
            Err(mut e) => failures.append(&mut e),
        }
    }
    if !failures.is_empty() {
        return Err(invalid(format!(
            "Validation of files failed: {}",
            failures.join("; ")
        )));
    }
    Ok(out)
}

fn spec(f: &Value) -> Result<FileSpec, Vec<String>> {
    let Some(m) = f.as_object() else {
        return Err(vec![format!("{f} is not a file structure")]);
    };
    let mut fail = Vec::new();
    let unknown: Vec<&str> = m
        .keys()
        .map(String::as_str)
        .filter(|k| !FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        fail.push(format!("unexpected fields in {f}: {}", unknown.join(", ")));
    }
    let path = m.get("path").and_then(Value::as_str).unwrap_or_default();
    let partition = m.get("partition").filter(|p| truthy(p)).cloned();
    if path.is_empty() {
        fail.push(format!("expected a path in {f}"));
    } else if !path.starts_with('/') {
        fail.push(format!("{f}: the path must be absolute"));
    } else if path.rfind('/') == Some(0) && partition.is_none() {
        // os.path.dirname(path) == "/": a file in the root directory
        fail.push(format!("{f} in root directory requires \"partition\""));
    } else if path.ends_with('/') {
        fail.push(format!("directories not supported for {f}"));
    }
    let content = m.get("content").and_then(Value::as_str).map(str::to_string);
    let deleted = m.get("deleted").is_some_and(truthy);
    if content.as_deref().is_some_and(|c| !c.is_empty()) && deleted {
        fail.push(format!("content cannot be used with deleted in {f}"));
    }
    if !deleted && content.is_none() {
        fail.push(format!("expected content (or deleted) in {f}"));
    }
    let mut int = |k: &str| -> Option<i64> {
        match m.get(k) {
            None => None,
            Some(Value::Number(n)) if n.is_i64() => n.as_i64(),
            Some(_) => {
                fail.push(format!("{k} must be a number in {f}"));
                None
            }
        }
    };
    let (mode, dirmode, owner, group) = (int("mode"), int("dirmode"), int("owner"), int("group"));
    let normal = normalise(path);
    if path.starts_with('/') && normal.is_none() {
        fail.push(format!("{f}: the path must stay inside its partition"));
    }
    if !fail.is_empty() {
        return Err(fail);
    }
    Ok(FileSpec {
        path: normal.unwrap_or_default(),
        partition,
        content,
        deleted,
        mode: mode.map(|v| v as u32),
        dirmode: dirmode.map(|v| v as u32),
        owner,
        group,
        raw: f.clone(),
    })
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// `/etc/../etc/x` -> `etc/x`; `None` when `..` would leave the partition.
fn normalise(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Python's `str.format(node=node, ports=ports)` for the `{name[key][0]}` fields IPA's
/// templates use; `{{` and `}}` are literal braces.
pub fn format_url(template: &str, node: &Value, ports: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&field_value(&field, node, ports)?);
            }
            '}' => return Err(format!("single '}}' in {template}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn field_value(field: &str, node: &Value, ports: &Value) -> Result<String, String> {
    let (name, mut rest) = field.split_once('[').map_or((field, ""), |(n, r)| (n, r));
    let mut v = match name {
        "node" => node,
        "ports" => ports,
        other => return Err(format!("unknown field {other:?} (only node and ports)")),
    };
    while !rest.is_empty() {
        let (key, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("unbalanced brackets in {{{field}}}"))?;
        v = match (v, key.parse::<usize>()) {
            (Value::Array(a), Ok(i)) => a.get(i),
            (Value::Object(m), _) => m.get(key),
            _ => None,
        }
        .ok_or_else(|| format!("{{{field}}}: no {key:?} in the {name}"))?;
        rest = tail.strip_prefix('[').unwrap_or(tail);
    }
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => other.to_string(),
    })
}

pub async fn run(ctx: Arc<AgentContext>, call: StepCall) -> Result<Value, CommandError> {
    let files = validate(
        &call.node["properties"]["inject_files"],
        call.args.get("files").unwrap_or(&Value::Null),
    )?;
    if files.is_empty() {
        tracing::info!("No files to inject");
        return Ok(Value::Null);
    }
    let verify = call
        .args
        .get("verify_ca")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let root_dev = super::write_image::target_disk(&ctx).await?;
    for f in files {
        let data = content(&ctx, &f, &call.node, &call.ports, verify).await?;
        let (dev, guard) = (root_dev.clone(), ctx.guard.clone());
        tokio::task::spawn_blocking(move || inject_one(&dev, &guard, &f, data.as_deref()))
            .await
            .map_err(|e| exec_err(format!("injecting a file failed: {e}")))??;
    }
    Ok(Value::Null)
}

/// The bytes to write: base64-decoded, or downloaded from the formatted URL.
async fn content(
    ctx: &AgentContext,
    f: &FileSpec,
    node: &Value,
    ports: &Value,
    verify: bool,
) -> Result<Option<Vec<u8>>, CommandError> {
    let failed = |e: String| exec_err(format!("Failed to process file {}. {e}", f.raw));
    let Some(c) = f.content.as_deref().filter(|_| !f.deleted) else {
        return Ok(None);
    };
    if !c.contains("://") {
        return base64::engine::general_purpose::STANDARD
            .decode(c.trim())
            .map(Some)
            .map_err(|e| failed(format!("the content is not base64: {e}")));
    }
    let url = format_url(c, node, ports).map_err(failed)?;
    let mut b = reqwest::Client::builder()
        .connect_timeout(ctx.config.image_download.connection_timeout)
        .read_timeout(ctx.config.image_download.connection_timeout);
    b = if verify {
        b.use_preconfigured_tls(ctx.download_tls.clone())
    } else {
        b.danger_accept_invalid_certs(true)
    };
    let client = b.build().map_err(|e| failed(e.to_string()))?;
    let mut resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| failed(format!("downloading {url} failed: {e}")))?;
    if !resp.status().is_success() {
        return Err(failed(format!(
            "downloading {url} got HTTP {}",
            resp.status()
        )));
    }
    let mut data = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| failed(format!("downloading {url} failed: {e}")))?
    {
        data.extend_from_slice(&chunk);
        if data.len() > URL_LIMIT {
            return Err(failed(format!("{url} is larger than {URL_LIMIT} bytes")));
        }
    }
    Ok(Some(data))
}

/// A file system mounted on a private directory for the duration of one file.
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn new(dev: &Path) -> Result<Self, String> {
        let fstype = {
            let f =
                std::fs::File::open(dev).map_err(|e| format!("opening {}: {e}", dev.display()))?;
            let len = f
                .metadata()
                .map(|m| m.len())
                .ok()
                .filter(|l| *l > 0)
                .unwrap_or(u64::MAX / 2);
            let len = if kernel::is_block_device(dev) {
                device_size(&f).unwrap_or(len)
            } else {
                len
            };
            crate::disk::probe::filesystem(&f, dev, 0, len)
                .map_err(|e| e.to_string())?
                .fstype
                .ok_or_else(|| format!("{} holds no file system", dev.display()))?
        };
        let dir = std::env::temp_dir().join(format!("ironic-agent-mnt-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Err(e) = nix::mount::mount(
            Some(dev),
            &dir,
            Some(fstype.as_str()),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!("mounting {} ({fstype}) failed: {e}", dev.display()));
        }
        Ok(Self { dir })
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount(&self.dir) {
            tracing::warn!("unmounting {} failed: {e}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn device_size(f: &std::fs::File) -> Option<u64> {
    use std::io::Seek;
    let mut f = f;
    f.seek(std::io::SeekFrom::End(0)).ok()
}

/// Partition `number` of the install disk.
fn partition_by_number(root_dev: &Path, number: u32) -> Result<PathBuf, CommandError> {
    kernel::partition_node(root_dev, number).map_err(|e| exec_err(e.to_string()))
}

/// Mounts the partition for `f` and returns it with the file's full path.
fn find_and_mount(
    root_dev: &Path,
    guard: &crate::safety::DiskGuard,
    f: &FileSpec,
) -> Result<(Mounted, PathBuf), CommandError> {
    if let Some(p) = &f.partition {
        let number = match p {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let dev = match (number, p) {
            (Some(n), _) => partition_by_number(root_dev, n as u32)?,
            (None, Value::String(s)) => PathBuf::from(s),
            _ => {
                return Err(invalid(format!(
                    "partition {p} is neither a number nor a device"
                )))
            }
        };
        let m = Mounted::new(&dev).map_err(exec_err)?;
        let full = m.dir.join(&f.path);
        return Ok((m, full));
    }
    let mut parts = f.path.components();
    let (Some(first), rest) = (parts.next(), parts.as_path().to_path_buf()) else {
        return Err(invalid(format!(
            "Invalid path {}, must be an absolute path to a file",
            f.path.display()
        )));
    };
    let disk = Disk::open(root_dev, guard).map_err(|e| exec_err(e.to_string()))?;
    let t = table::read(&disk.file, root_dev, disk.geo)
        .map_err(|e| exec_err(e.to_string()))?
        .ok_or_else(|| {
            CommandError::new(
                ErrorKind::DeviceNotFound,
                format!("{} has no partition table to search", root_dev.display()),
            )
        })?;
    drop(disk);
    for p in t
        .partitions
        .iter()
        .filter(|p| !LVM_TYPES.contains(&p.type_id.as_str()))
    {
        let Ok(dev) = partition_by_number(root_dev, p.number) else {
            continue;
        };
        match Mounted::new(&dev) {
            Ok(m) if m.dir.join(first).is_dir() => {
                tracing::info!(
                    "Path {} has been found on partition {}",
                    first.as_os_str().to_string_lossy(),
                    dev.display()
                );
                let full = m.dir.join(first).join(rest);
                return Ok((m, full));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("Failure when inspecting partition {}: {e}", dev.display()),
        }
    }
    Err(CommandError::new(
        ErrorKind::DeviceNotFound,
        format!(
            "No partition found with path /{} on {}, scanned partitions {:?}",
            first.as_os_str().to_string_lossy(),
            root_dev.display(),
            t.partitions.iter().map(|p| p.number).collect::<Vec<_>>()
        ),
    ))
}

fn inject_one(
    root_dev: &Path,
    guard: &crate::safety::DiskGuard,
    f: &FileSpec,
    data: Option<&[u8]>,
) -> Result<(), CommandError> {
    let (_mounted, path) = find_and_mount(root_dev, guard, f)?;
    let failed = |e: String| exec_err(format!("Failed to process file {}. {e}", f.raw));
    if f.deleted {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(failed(format!("deleting {} failed: {e}", f.path.display())))
            }
            _ => return Ok(()),
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("creating {}: {e}", dir.display())))?;
        if let Some(m) = f.dirmode {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m))
                .map_err(|e| failed(format!("chmod of {}: {e}", dir.display())))?;
        }
    }
    std::fs::write(&path, data.unwrap_or_default())
        .map_err(|e| failed(format!("writing {}: {e}", f.path.display())))?;
    if let Some(m) = f.mode {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m))
            .map_err(|e| failed(format!("chmod of {}: {e}", f.path.display())))?;
    }
    if f.owner.is_some() || f.group.is_some() {
        let id = |v: Option<i64>| v.filter(|v| *v >= 0).map(|v| v as u32);
        std::os::unix::fs::chown(&path, id(f.owner), id(f.group))
            .map_err(|e| failed(format!("chown of {}: {e}", f.path.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_ipa() {
        let ok = validate(
            &json!([{"path": "/etc/a.conf", "content": "YQ=="}]),
            &json!([{"path": "/x", "partition": 1, "deleted": true},
                    {"path": "/etc/../etc/b", "content": "Yg==", "mode": 384, "owner": 0}]),
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0].path, PathBuf::from("etc/a.conf"));
        assert_eq!(ok[2].path, PathBuf::from("etc/b"));
        assert_eq!(ok[2].mode, Some(0o600));
        let e = validate(
            &Value::Null,
            &json!([{"path": "/x", "content": "YQ=="},
                    {"path": "/etc/", "content": "YQ=="},
                    {"path": "/etc/x", "content": "YQ==", "deleted": true},
                    {"path": "/etc/x", "content": "YQ==", "mode": "0644"},
                    {"content": "YQ==", "colour": 1},
                    {"path": "/../../x", "partition": 1, "content": "YQ=="}]),
        )
        .unwrap_err();
        for want in [
            "in root directory requires \"partition\"",
            "directories not supported",
            "content cannot be used with deleted",
            "mode must be a number",
            "unexpected fields",
            "expected a path",
            "inside its partition",
        ] {
            assert!(
                e.details.contains(want),
                "{want} missing from {}",
                e.details
            );
        }
        assert!(validate(&json!({"a": 1}), &Value::Null).is_err());
        assert!(validate(&Value::Null, &json!("x")).is_err());
    }

    #[test]
    fn urls_are_formatted_like_python() {
        let node = json!({"uuid": "u-1", "properties": {"n": 3}});
        let ports = json!([{"address": "52:54:00:00:00:01"}]);
        assert_eq!(
            format_url(
                "http://s/{node[uuid]}/{ports[0][address]}/{node[properties][n]}{{x}}",
                &node,
                &ports
            )
            .unwrap(),
            "http://s/u-1/52:54:00:00:00:01/3{x}"
        );
        assert!(format_url("http://s/{node[nope]}", &node, &ports).is_err());
        assert!(format_url("http://s/{other}", &node, &ports).is_err());
        assert!(format_url("http://s/}", &node, &ports).is_err());
    }
}
