//! The erase knobs Ironic puts in `driver_internal_info` when it prepares cleaning
//! (`deploy_utils.agent_add_clean_params`, contract §9.4), read with IPA's defaults for the
//! keys an older conductor does not send.

use serde_json::Value;

/// How `erase_devices` and friends behave for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EraseOptions {
    /// `agent_erase_devices_iterations`: random overwrite passes (IPA default 1).
    pub iterations: u32,
    /// `agent_erase_devices_zeroize`: a final pass of zeros after the random ones (default true).
    pub zeroize: bool,
    /// `agent_continue_if_secure_erase_failed`, or the older `agent_continue_if_ata_erase_failed`
    /// when the newer key is absent: overwrite when a secure erase failed (default false).
    pub continue_if_secure_erase_failed: bool,
    /// `agent_enable_ata_secure_erase` (default true).
    pub ata_secure_erase: bool,
    /// `agent_enable_nvme_secure_erase` (default true).
    pub nvme_secure_erase: bool,
    /// `agent_erase_skip_read_only`: skip read-only devices instead of failing (default false).
    pub skip_read_only: bool,
    /// `disk_erasure_concurrency`: devices erased at once (IPA default 1; Ironic sends 4).
    pub concurrency: usize,
    /// `agent_enable_discard_erase`, else `ipa-enable-discard-erase`: accept a verified discard
    /// when a secure erase failed (IPA 13).
    pub discard_erase: bool,
    /// `wipe_special_filesystems` (default true): false turns the protected-device guard off.
    pub guard_special_filesystems: bool,
}

impl EraseOptions {
    /// Reads the node's `driver_internal_info`; `discard_default` is `ipa-enable-discard-erase`
    /// and `guard_default` is `ipa-guard-special-filesystems`.
    pub fn from_node(node: &Value, discard_default: bool, guard_default: bool) -> Self {
        let info = &node["driver_internal_info"];
        let flag = |key: &str, default: bool| as_bool(&info[key]).unwrap_or(default);
        // IPA reads the new key first and falls back to the deprecated one only when the new
        // one is absent, so an explicit `false` in the new key wins.
        let continue_if_failed = as_bool(&info["agent_continue_if_secure_erase_failed"])
            .or_else(|| as_bool(&info["agent_continue_if_ata_erase_failed"]))
            .unwrap_or(false);
        Self {
            iterations: as_count(&info["agent_erase_devices_iterations"]).unwrap_or(1),
            zeroize: flag("agent_erase_devices_zeroize", true),
            continue_if_secure_erase_failed: continue_if_failed,
            ata_secure_erase: flag("agent_enable_ata_secure_erase", true),
            nvme_secure_erase: flag("agent_enable_nvme_secure_erase", true),
            skip_read_only: flag("agent_erase_skip_read_only", false),
            concurrency: as_count(&info["disk_erasure_concurrency"])
                .map(|n| n.max(1) as usize)
                .unwrap_or(1),
            discard_erase: flag("agent_enable_discard_erase", discard_default),
            guard_special_filesystems: guard_default && flag("wipe_special_filesystems", true),
        }
    }
}

/// Booleans as Ironic stores them (JSON booleans), plus the strings oslo accepts.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
            "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A non-negative count (an integer or its decimal string).
fn as_count(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_ipas_when_ironic_sends_nothing() {
        let o = EraseOptions::from_node(&json!({}), false, true);
        assert_eq!(
            o,
            EraseOptions {
                iterations: 1,
                zeroize: true,
                continue_if_secure_erase_failed: false,
                ata_secure_erase: true,
                nvme_secure_erase: true,
                skip_read_only: false,
                concurrency: 1,
                discard_erase: false,
                guard_special_filesystems: true,
            }
        );
    }

    #[test]
    fn reads_what_ironic_sets() {
        let node = json!({"driver_internal_info": {
            "agent_erase_devices_iterations": 3,
            "agent_erase_devices_zeroize": false,
            "agent_continue_if_secure_erase_failed": true,
            "agent_enable_ata_secure_erase": false,
            "agent_enable_nvme_secure_erase": false,
            "agent_erase_skip_read_only": true,
            "disk_erasure_concurrency": 4,
            "agent_enable_discard_erase": true,
            "wipe_special_filesystems": false,
        }});
        let o = EraseOptions::from_node(&node, false, true);
        assert_eq!(o.iterations, 3);
        assert!(!o.zeroize);
        assert!(o.continue_if_secure_erase_failed);
        assert!(!o.ata_secure_erase && !o.nvme_secure_erase);
        assert!(o.skip_read_only);
        assert_eq!(o.concurrency, 4);
        assert!(o.discard_erase);
        assert!(!o.guard_special_filesystems);
    }

    #[test]
    fn the_deprecated_fallback_key_only_counts_when_the_new_one_is_absent() {
        let old = json!({"driver_internal_info": {"agent_continue_if_ata_erase_failed": true}});
        assert!(EraseOptions::from_node(&old, false, true).continue_if_secure_erase_failed);
        let both = json!({"driver_internal_info": {
            "agent_continue_if_secure_erase_failed": false,
            "agent_continue_if_ata_erase_failed": true}});
        assert!(!EraseOptions::from_node(&both, false, true).continue_if_secure_erase_failed);
    }

    #[test]
    fn zero_concurrency_means_one_and_the_kernel_options_are_defaults() {
        let node = json!({"driver_internal_info": {"disk_erasure_concurrency": 0}});
        let o = EraseOptions::from_node(&node, true, false);
        assert_eq!(o.concurrency, 1);
        assert!(o.discard_erase, "ipa-enable-discard-erase is the default");
        assert!(
            !o.guard_special_filesystems,
            "ipa-guard-special-filesystems=false turns the guard off"
        );
        let strings = json!({"driver_internal_info": {"agent_erase_devices_iterations": "2",
                                                      "agent_erase_devices_zeroize": "False"}});
        let o = EraseOptions::from_node(&strings, false, true);
        assert_eq!((o.iterations, o.zeroize), (2, false));
    }
}
