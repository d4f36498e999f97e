//! The `clean_uefi_nvram` clean and deploy step: removes UEFI boot entries whose device path
//! matches one of `match_patterns` (case-insensitive regular expressions, IPA's defaults
//! below), so that stale entries of earlier deployments cannot win the next boot.

use super::StepCall;
use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use serde_json::{json, Value};
use std::sync::Arc;

/// IPA's `DEFAULT_CLEAN_UEFI_NVRAM_MATCH_PATTERNS`.
pub const DEFAULT_PATTERNS: &[&str] = &[r"^HD\(", r"shim.*\.efi", r"grub.*\.efi"];

pub fn argsinfo() -> Value {
    json!({"match_patterns": {
        "description": format!(
            "Json blob contains a list of regex patterns where any UEFI NVRAM entry matching \
             that pattern will be deleted. Default value is '[\"{}\"]'",
            DEFAULT_PATTERNS.join("\", \"")
        ),
        "required": false,
    }})
}

/// The patterns from the step's arguments: a list of strings that compile, else refused.
pub fn patterns(arg: Option<&Value>) -> Result<Vec<regex_lite::Regex>, CommandError> {
    let invalid = |v: &Value| {
        CommandError::new(
            ErrorKind::InvalidCommandParams,
            format!("The match_patterns must be a list of strings: {v}"),
        )
    };
    let list: Vec<String> = match arg {
        None | Some(Value::Null) => DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect(),
        Some(v @ Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| invalid(v)))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(invalid(v)),
    };
    list.iter()
        .map(|p| {
            regex_lite::RegexBuilder::new(p)
                .case_insensitive(true)
                .build()
                .map_err(|_| invalid(&json!(list)))
        })
        .collect()
}

pub async fn run(ctx: Arc<AgentContext>, call: StepCall) -> Result<Value, CommandError> {
    let pats = patterns(call.args.get("match_patterns"))?;
    let host = ctx.host.clone();
    let removed = tokio::task::spawn_blocking(move || crate::efi::clean_boot_records(&host, &pats))
        .await
        .map_err(|e| {
            CommandError::new(
                call.kind.error_kind(),
                format!("cleaning UEFI NVRAM failed: {e}"),
            )
        })?
        .map_err(|e| {
            CommandError::new(
                call.kind.error_kind(),
                format!("cleaning UEFI NVRAM boot entries failed: {e}"),
            )
        })?;
    tracing::info!("clean_uefi_nvram removed {} boot entries", removed.len());
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_default_validate_and_ignore_case() {
        let d = patterns(None).unwrap();
        assert_eq!(d.len(), 3);
        assert!(d[1].is_match("File(\\EFI\\ubuntu\\SHIMX64.EFI)"));
        assert!(patterns(Some(&json!("^HD"))).is_err());
        assert!(patterns(Some(&json!([1]))).is_err());
        let e = patterns(Some(&json!(["("]))).unwrap_err();
        assert_eq!(e.kind, "InvalidCommandParamsError");
        assert_eq!(patterns(Some(&json!([]))).unwrap().len(), 0);
    }
}
