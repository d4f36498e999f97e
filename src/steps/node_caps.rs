//! What the cached node says about how to deploy it: boot mode and disk label, read from
//! `instance_info` and `properties` capabilities with IPA's precedence (`utils.get_node_boot_mode`,
//! `get_partition_table_type_from_specs`).

use crate::disk::table::Label;
use crate::hardware::HostRoot;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    Bios,
    Uefi,
}

impl BootMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::Uefi => "uefi",
        }
    }

    /// How this machine booted the ramdisk.
    pub fn current(host: &HostRoot) -> Self {
        if host.path("/sys/firmware/efi").is_dir() {
            Self::Uefi
        } else {
            Self::Bios
        }
    }
}

/// `capabilities` of `root`: a dict, a JSON string, or `k1:v1,k2:v2`.
pub fn capabilities(root: &Value) -> Map<String, Value> {
    match &root["capabilities"] {
        Value::Object(m) => m.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => s
                .split(',')
                .filter_map(|kv| kv.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                .collect(),
        },
        _ => Map::new(),
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => None,
        other => Some(other.to_string().to_ascii_lowercase()),
    }
}

/// The boot mode to deploy for: secure boot implies UEFI; then `instance_info.deploy_boot_mode`,
/// the `boot_mode` capability, `driver_internal_info.deploy_boot_mode`, and finally how the
/// ramdisk booted.
pub fn boot_mode(node: &Value, host: &HostRoot) -> BootMode {
    let ii = capabilities(&node["instance_info"]);
    let props = capabilities(&node["properties"]);
    let secure = ii
        .get("secure_boot")
        .or(props.get("secure_boot"))
        .and_then(as_text);
    if secure.as_deref() == Some("true") {
        return BootMode::Uefi;
    }
    let chosen = as_text(&node["instance_info"]["deploy_boot_mode"])
        .or_else(|| props.get("boot_mode").and_then(as_text))
        .or_else(|| as_text(&node["driver_internal_info"]["deploy_boot_mode"]));
    match chosen.as_deref() {
        Some("uefi") => BootMode::Uefi,
        Some("bios") => BootMode::Bios,
        _ => BootMode::current(host),
    }
}

/// GPT for UEFI; otherwise the `disk_label` capability (instance_info first), default msdos.
pub fn disk_label(node: &Value, host: &HostRoot) -> Label {
    if boot_mode(node, host) == BootMode::Uefi {
        return Label::Gpt;
    }
    let ii = capabilities(&node["instance_info"]);
    let props = capabilities(&node["properties"]);
    let label = ii
        .get("disk_label")
        .or(props.get("disk_label"))
        .and_then(as_text);
    if label.as_deref() == Some("gpt") {
        Label::Gpt
    } else {
        Label::Msdos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bios_host() -> (tempfile::TempDir, HostRoot) {
        let d = tempfile::tempdir().unwrap();
        let h = HostRoot::new(d.path());
        (d, h)
    }

    #[test]
    fn capabilities_in_all_three_shapes() {
        assert_eq!(
            capabilities(&json!({"capabilities": "boot_mode:uefi,disk_label:gpt"}))["disk_label"],
            "gpt"
        );
        assert_eq!(
            capabilities(&json!({"capabilities": "{\"boot_mode\": \"bios\"}"}))["boot_mode"],
            "bios"
        );
        assert_eq!(
            capabilities(&json!({"capabilities": {"secure_boot": true}}))["secure_boot"],
            true
        );
        assert!(capabilities(&json!({"capabilities": 5})).is_empty());
    }

    #[test]
    fn boot_mode_precedence_follows_ipa() {
        let (_d, h) = bios_host();
        assert_eq!(boot_mode(&json!({}), &h), BootMode::Bios);
        let efi = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(efi.path().join("sys/firmware/efi")).unwrap();
        assert_eq!(
            boot_mode(&json!({}), &HostRoot::new(efi.path())),
            BootMode::Uefi
        );
        let n = json!({"properties": {"capabilities": "boot_mode:uefi"},
                       "instance_info": {"deploy_boot_mode": "bios"}});
        assert_eq!(boot_mode(&n, &h), BootMode::Bios);
        let n = json!({"properties": {"capabilities": "boot_mode:uefi"},
                       "driver_internal_info": {"deploy_boot_mode": "bios"}});
        assert_eq!(boot_mode(&n, &h), BootMode::Uefi);
        let n = json!({"instance_info": {"capabilities": {"secure_boot": "True"},
                                         "deploy_boot_mode": "bios"}});
        assert_eq!(boot_mode(&n, &h), BootMode::Uefi);
    }

    #[test]
    fn disk_label_is_gpt_for_uefi_else_the_capability() {
        let (_d, h) = bios_host();
        assert_eq!(disk_label(&json!({}), &h), Label::Msdos);
        let n = json!({"properties": {"capabilities": "disk_label:gpt"}});
        assert_eq!(disk_label(&n, &h), Label::Gpt);
        let n = json!({"properties": {"capabilities": "disk_label:gpt"},
                       "instance_info": {"capabilities": {"disk_label": "msdos"}}});
        assert_eq!(disk_label(&n, &h), Label::Msdos);
        let n = json!({"instance_info": {"deploy_boot_mode": "uefi",
                                         "capabilities": {"disk_label": "msdos"}}});
        assert_eq!(disk_label(&n, &h), Label::Gpt);
    }
}
