//! `logs`: the base64 tarball of the system logs, built natively (IPA's `collect_logs`).

use super::{one, Collected, Collector, CollectorInput};
use serde_json::Value;

pub struct Logs;

impl Collector for Logs {
    fn name(&self) -> &str {
        "logs"
    }

    fn collect(&self, input: &CollectorInput) -> Result<Collected, String> {
        let entries = crate::logs::collect_entries(input.host, input.state_dir);
        let archive = crate::logs::archive_base64(&entries).map_err(|e| e.to_string())?;
        Ok(one("logs", Value::String(archive)))
    }
}
