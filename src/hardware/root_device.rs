//! Choosing the disk to deploy to (contract §11.7, IPA's `get_os_install_device` and
//! `device_hints`).
//!
//! * Hints come from `instance_info.root_device`, else `properties.root_device`.
//! * Disks matching any `properties.skip_block_devices` entry are never candidates (entries
//!   naming a RAID `volume_name` are about RAID volumes and are ignored here).
//! * With hints, the first candidate (in [`list_disks`](super::list_disks) order) matching every
//!   hint wins. String hints are lower-cased and URL-quoted on both sides and compared with
//!   `s==` unless they carry an operator; `size` is in GiB and compared as a float with `==`
//!   unless it carries an operator (a bare `=` means `>=`); `rotational` is a boolean. For
//!   `serial` and `wwn` every identifier udev and lsblk know for the disk is tried.
//! * Without hints, the smallest disk of at least 4 GiB wins, ties broken by name.
//!
//! One extension over IPA: a `name` hint without a `/dev/` prefix (`sda`) names `/dev/sda`,
//! as Ironic's ansible deploy interface already accepts.

use super::specs::{self, Value as SpecValue};
use super::BlockDevice;
use crate::errors::{CommandError, ErrorKind, IntoCommandError};
use serde_json::{Map, Value};

/// The smallest disk the no-hints rule accepts.
pub const MIN_ROOT_DISK_SIZE: u64 = 4 * 1024 * 1024 * 1024;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootDeviceError {
    #[error(
        "No suitable device was found for deployment - root device hints were not provided and all found \
         block devices are smaller than {0}B."
    )]
    NoDiskLargeEnough(u64),
    #[error("No suitable device was found for deployment using these hints {0}")]
    NoMatch(String),
    #[error("No devices could be found using the root device hints {hints} because they failed to validate. Error: {error}")]
    InvalidHints { hints: String, error: String },
    #[error("Cannot apply the properties.skip_block_devices entry {hint}: {error}")]
    InvalidSkipHint { hint: String, error: String },
}

impl IntoCommandError for RootDeviceError {
    fn into_command_error(self) -> CommandError {
        // IPA raises DeviceNotFound (404) for all of these.
        CommandError::new(ErrorKind::DeviceNotFound, self.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HintType {
    Str,
    Int,
    Bool,
}

/// The hints IPA accepts, in the order it lists them in its error message.
const VALID_HINTS: [(&str, HintType); 12] = [
    ("size", HintType::Int),
    ("model", HintType::Str),
    ("wwn", HintType::Str),
    ("serial", HintType::Str),
    ("vendor", HintType::Str),
    ("wwn_with_extension", HintType::Str),
    ("wwn_vendor_extension", HintType::Str),
    ("name", HintType::Str),
    ("rotational", HintType::Bool),
    ("hctl", HintType::Str),
    ("by_path", HintType::Str),
    ("tran", HintType::Str),
];

fn hint_type(name: &str) -> Option<HintType> {
    VALID_HINTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// A hint that failed validation; the text is IPA's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HintError(String);

/// One validated hint: a spec string for the matcher, or a boolean.
#[derive(Debug, Clone, PartialEq)]
enum Parsed {
    Spec(String),
    Bool(bool),
}

/// Python's `str()` of a JSON value (what IPA interpolates into its messages and parses).
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => py_repr(other),
    }
}

/// Python's `repr()` of a JSON value, so hints appear in errors as IPA prints them.
pub(crate) fn py_repr(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Bool(_) | Value::Null => py_str(v),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `urllib.parse.quote` with its default safe set (`/` and the unreserved characters).
fn url_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// IPA's `_extract_hint_operator_and_values`: lower-cases, then recovers the operator and the
/// values by splitting the text on the operator (so values may contain spaces).
fn extract_op_and_values(expression: &str, name: &str) -> Result<(String, Vec<String>), HintError> {
    let expression = expression.trim().to_lowercase();
    if expression.is_empty() {
        return Err(HintError(format!(
            "Root device hint {name} expression is empty"
        )));
    }
    let ast = specs::parse(&expression).ok_or_else(|| {
        HintError(format!(
            "Root device hint {name} expression {expression:?} cannot be parsed"
        ))
    })?;
    if ast.len() <= 1 {
        return Ok((String::new(), vec![expression]));
    }
    let op = ast[0].clone();
    let values = expression
        .split(op.as_str())
        .filter(|v| !v.is_empty())
        .map(|v| v.trim().to_string())
        .collect();
    Ok((op, values))
}

/// IPA's `_normalize_hint_expression`: URL-quotes each value, keeps the operator.
fn normalize_expression(expression: &str, name: &str) -> Result<String, HintError> {
    let (op, values) = extract_op_and_values(expression, name)?;
    let joined = values
        .iter()
        .map(|v| format!(" {} ", url_quote(v)))
        .collect::<Vec<_>>()
        .join(&op);
    Ok(format!("{op}{joined}").trim().to_string())
}

/// `name` without `/dev/` means `/dev/<name>` (see the module comment).
fn with_dev_prefix(expression: &str) -> Result<String, HintError> {
    let (op, values) = extract_op_and_values(expression, "name")?;
    if !matches!(op.as_str(), "" | "s==" | "s!=" | "<or>") {
        return Ok(expression.to_string());
    }
    let values: Vec<String> = values
        .into_iter()
        .map(|v| {
            if v.contains('/') || v.is_empty() {
                v
            } else {
                format!("/dev/{v}")
            }
        })
        .collect();
    Ok(if op.is_empty() {
        values.join(" ")
    } else {
        format!("{op} {}", values.join(&format!(" {op} ")))
    })
}

/// IPA's `parse_root_device_hints`: validates and turns every hint into a matcher spec.
fn parse_hints(hints: &Map<String, Value>) -> Result<Vec<(String, Parsed)>, HintError> {
    let mut invalid: Vec<&str> = hints
        .keys()
        .map(String::as_str)
        .filter(|k| hint_type(k).is_none())
        .collect();
    if !invalid.is_empty() {
        invalid.sort_unstable();
        let valid: Vec<&str> = VALID_HINTS.iter().map(|(n, _)| *n).collect();
        return Err(HintError(format!(
            "The hints \"{}\" are invalid. Valid hints are: \"{}\"",
            invalid.join(", "),
            valid.join(", ")
        )));
    }
    let mut out = Vec::new();
    for (name, expression) in hints {
        let parsed = match hint_type(name) {
            Some(HintType::Str) => {
                let Value::String(text) = expression else {
                    return Err(HintError(format!(
                        "Root device hint \"{name}\" is not a string value. Hint expression: {}",
                        py_str(expression)
                    )));
                };
                let text = if name == "name" {
                    with_dev_prefix(text)?
                } else {
                    text.clone()
                };
                let normalized = normalize_expression(&text, name)?;
                Parsed::Spec(with_default_operator(&normalized, "s=="))
            }
            Some(HintType::Int) => {
                let text = py_str(expression);
                let (_, values) = extract_op_and_values(&text, name)?;
                for v in values {
                    let n: i64 = v.trim().parse().map_err(|_| {
                        HintError(format!("Root device hint \"{name}\" is not an integer value. Current value: {text}"))
                    })?;
                    if n <= 0 {
                        return Err(HintError(format!(
                            "Root device hint \"{name}\" should be a positive integer. Current value: {text}"
                        )));
                    }
                }
                Parsed::Spec(with_default_operator(&text, "=="))
            }
            Some(HintType::Bool) => {
                Parsed::Bool(bool_from_string(expression).ok_or_else(|| {
                    HintError(format!(
                        "Root device hint \"{name}\" is not a Boolean value. Current value: {}",
                        py_str(expression)
                    ))
                })?)
            }
            None => unreachable_hint(name)?,
        };
        out.push((name.clone(), parsed));
    }
    Ok(out)
}

fn unreachable_hint(name: &str) -> Result<Parsed, HintError> {
    Err(HintError(format!(
        "The hint \"{name}\" is not a valid root device hint"
    )))
}

/// IPA's `_append_operator_to_hints`: an expression with no operator gets the default one.
fn with_default_operator(expression: &str, op: &str) -> String {
    match specs::parse(expression) {
        Some(ast) if ast.len() > 1 => expression.to_string(),
        _ => format!("{op} {expression}"),
    }
}

/// oslo's `strutils.bool_from_string(strict=True)`.
fn bool_from_string(v: &Value) -> Option<bool> {
    if let Value::Bool(b) = v {
        return Some(*b);
    }
    match py_str(v).trim().to_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Every value udev and lsblk know for a string attribute; `serial` and `wwn` have several
/// (IPA collects them with `all_serial_and_wwn`), derived the way udev derives them.
fn attribute_values(dev: &BlockDevice, name: &str) -> Vec<Option<String>> {
    match name {
        "serial" => {
            let mut v = vec![dev.serial.clone()];
            // ID_SERIAL: "<model>_<serial>" for ATA and NVMe disks ...
            if let (Some(model), Some(serial)) = (&dev.model, &dev.serial) {
                v.push(Some(format!(
                    "{}_{}",
                    model.split_whitespace().collect::<Vec<_>>().join("_"),
                    serial
                )));
            }
            // ... and for SCSI disks ID_SERIAL_SHORT is the NAA identifier, ID_SERIAL the same
            // with its designator type (3) in front.
            let is_scsi = dev.hctl.is_some() && dev.vendor.as_deref() != Some("ATA");
            if let (true, Some(w)) = (is_scsi, &dev.wwn_with_extension) {
                let hex = w.trim_start_matches("0x");
                v.push(Some(hex.to_string()));
                v.push(Some(format!("3{hex}")));
            }
            v
        }
        "wwn" => {
            let mut v = vec![dev.wwn.clone()];
            // ID_WWN is the WWN without the vendor extension lsblk shows.
            if let (Some(w), Some(_)) = (&dev.wwn, &dev.wwn_vendor_extension) {
                v.push(Some(w.chars().take(18).collect()));
            }
            v
        }
        "model" => vec![dev.model.clone()],
        "vendor" => vec![dev.vendor.clone()],
        "wwn_with_extension" => vec![dev.wwn_with_extension.clone()],
        "wwn_vendor_extension" => vec![dev.wwn_vendor_extension.clone()],
        "name" => vec![Some(dev.name.clone())],
        "hctl" => vec![dev.hctl.clone()],
        "by_path" => vec![dev.by_path.clone()],
        "tran" => vec![dev.tran.clone()],
        _ => vec![None],
    }
}

/// Python's `str()` of a device attribute: a missing value is the string `None`.
fn device_text(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "None".to_string())
}

/// Whether `dev` satisfies every parsed hint. `Err` carries a comparison Python could not make.
fn device_matches(dev: &BlockDevice, hints: &[(String, Parsed)]) -> Result<bool, String> {
    for (name, parsed) in hints {
        let ok = match parsed {
            Parsed::Bool(want) => dev.rotational == *want,
            Parsed::Spec(spec) if name == "size" => {
                specs::matches(&SpecValue::Num(dev.size as f64 / GIB), spec)
                    .map_err(|e| e.to_string())?
            }
            Parsed::Spec(spec) => {
                let values = attribute_values(dev, name);
                let multi = matches!(name.as_str(), "serial" | "wwn");
                let candidates: Vec<String> = if multi {
                    values.iter().flatten().cloned().collect()
                } else {
                    vec![device_text(&values[0])]
                };
                let mut any = false;
                for c in candidates {
                    // A value that normalises to nothing (blank) cannot match anything.
                    let Ok(normalized) = normalize_expression(&c, name) else {
                        continue;
                    };
                    if specs::matches(&SpecValue::Str(normalized), spec)
                        .map_err(|e| e.to_string())?
                    {
                        any = true;
                        break;
                    }
                }
                any
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// All disks matching a hints object (IPA's `find_devices_by_hints`).
fn find_by_hints<'a>(
    disks: &'a [BlockDevice],
    hints: &Map<String, Value>,
) -> Result<Vec<&'a BlockDevice>, String> {
    let parsed = parse_hints(hints).map_err(|e| e.0)?;
    let mut out = Vec::new();
    for d in disks {
        if device_matches(d, &parsed)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// The no-hints rule: the smallest disk of at least 4 GiB, ties broken by name.
pub fn guess_root_disk(disks: &[BlockDevice]) -> Result<BlockDevice, RootDeviceError> {
    let mut sorted: Vec<&BlockDevice> = disks.iter().collect();
    sorted.sort_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)));
    sorted
        .into_iter()
        .find(|d| d.size >= MIN_ROOT_DISK_SIZE)
        .cloned()
        .ok_or(RootDeviceError::NoDiskLargeEnough(MIN_ROOT_DISK_SIZE))
}

/// What inspection reports as `root_disk`: the disk the no-hints rule picks, if any.
pub fn root_disk_for_inspection(disks: &[BlockDevice]) -> Option<BlockDevice> {
    guess_root_disk(disks).ok()
}

/// The names of the disks `properties.skip_block_devices` rules out (cleaning spares them too).
pub fn skipped_disks(disks: &[BlockDevice], node: &Value) -> Result<Vec<String>, RootDeviceError> {
    skipped(disks, node)
}

/// The disks `properties.skip_block_devices` rules out.
fn skipped(disks: &[BlockDevice], node: &Value) -> Result<Vec<String>, RootDeviceError> {
    let mut names = Vec::new();
    let Some(entries) = node
        .pointer("/properties/skip_block_devices")
        .and_then(Value::as_array)
    else {
        return Ok(names);
    };
    for entry in entries {
        let Some(hint) = entry.as_object() else {
            return Err(RootDeviceError::InvalidSkipHint {
                hint: py_repr(entry),
                error: "it is not an object".into(),
            });
        };
        if hint.contains_key("volume_name") {
            continue;
        }
        let found =
            find_by_hints(disks, hint).map_err(|error| RootDeviceError::InvalidSkipHint {
                hint: py_repr(entry),
                error,
            })?;
        for d in found {
            if !names.contains(&d.name) {
                tracing::warn!(
                    "skipping {} as properties.skip_block_devices entry {} asks",
                    d.name,
                    py_repr(entry)
                );
                names.push(d.name.clone());
            }
        }
    }
    Ok(names)
}

/// The root device hints of a node: `instance_info.root_device`, else `properties.root_device`
/// (an empty object counts as none).
pub fn root_device_hints(node: &Value) -> Option<&Value> {
    let present = |v: &&Value| match v {
        Value::Null => false,
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    };
    node.pointer("/instance_info/root_device")
        .filter(present)
        .or_else(|| node.pointer("/properties/root_device").filter(present))
}

/// Chooses the install disk for `node` (the node object from lookup) among `disks`.
pub fn select_root_device(
    disks: &[BlockDevice],
    node: &Value,
) -> Result<BlockDevice, RootDeviceError> {
    let skip = skipped(disks, node)?;
    let candidates: Vec<BlockDevice> = disks
        .iter()
        .filter(|d| !skip.contains(&d.name))
        .cloned()
        .collect();
    let Some(hints) = root_device_hints(node) else {
        return guess_root_disk(&candidates);
    };
    let invalid = |error: String| RootDeviceError::InvalidHints {
        hints: py_repr(hints),
        error,
    };
    let Some(map) = hints.as_object() else {
        return Err(invalid(
            "root device hints must be an object of hint names and values".into(),
        ));
    };
    let found = find_by_hints(&candidates, map).map_err(invalid)?;
    match found.first() {
        Some(d) => {
            tracing::info!(
                "picked root device {} using hints {}",
                d.name,
                py_repr(hints)
            );
            Ok((*d).clone())
        }
        None => Err(RootDeviceError::NoMatch(py_repr(hints))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalization_matches_ipa() {
        assert_eq!(
            normalize_expression("<or> foo bar <or> bar", "model").unwrap(),
            "<or> foo%20bar <or> bar"
        );
        assert_eq!(normalize_expression("  ABC  ", "model").unwrap(), "abc");
        assert_eq!(
            normalize_expression("/dev/disk/by-path/1:0:0:0", "by_path").unwrap(),
            "/dev/disk/by-path/1%3A0%3A0%3A0"
        );
        assert_eq!(
            normalize_expression("s== Foo Bar", "model").unwrap(),
            "s== foo%20bar"
        );
        assert!(normalize_expression("   ", "model").is_err());
        assert_eq!(with_default_operator("abc", "s=="), "s== abc");
        assert_eq!(with_default_operator("<in> abc", "s=="), "<in> abc");
        assert_eq!(with_default_operator("10", "=="), "== 10");
    }

    #[test]
    fn parse_errors_use_ipa_wording() {
        let e = parse_hints(json!({"size": "big"}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.0,
            "Root device hint \"size\" is not an integer value. Current value: big"
        );
        let e = parse_hints(json!({"size": 0}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.0,
            "Root device hint \"size\" should be a positive integer. Current value: 0"
        );
        let e = parse_hints(json!({"model": 5}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.0,
            "Root device hint \"model\" is not a string value. Hint expression: 5"
        );
        let e = parse_hints(json!({"rotational": "maybe"}).as_object().unwrap()).unwrap_err();
        assert_eq!(
            e.0,
            "Root device hint \"rotational\" is not a Boolean value. Current value: maybe"
        );
        let e = parse_hints(json!({"colour": "red", "bogus": 1}).as_object().unwrap()).unwrap_err();
        assert!(e.0.starts_with(
            "The hints \"bogus, colour\" are invalid. Valid hints are: \"size, model, wwn"
        ));
        let e = parse_hints(json!({"model": ""}).as_object().unwrap()).unwrap_err();
        assert_eq!(e.0, "Root device hint model expression is empty");
    }

    #[test]
    fn python_repr() {
        assert_eq!(
            py_repr(&json!({"size": ">= 10", "rotational": true, "x": null})),
            "{'size': '>= 10', 'rotational': True, 'x': None}"
        );
    }

    #[test]
    fn bools() {
        for (v, want) in [
            (json!(true), Some(true)),
            (json!("Yes"), Some(true)),
            (json!("off"), Some(false)),
            (json!(0), Some(false)),
            (json!("nope"), None),
        ] {
            assert_eq!(bool_from_string(&v), want, "{v}");
        }
    }

    #[test]
    fn url_quoting() {
        assert_eq!(url_quote("a b:c/d~e_f.g-h"), "a%20b%3Ac/d~e_f.g-h");
        assert_eq!(url_quote("é"), "%C3%A9");
    }
}
