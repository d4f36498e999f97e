//! `log.collect_system_logs`: what Ironic stores when a step fails.

use crate::api::registry::{handler, CommandSpec, Mode, Registry, Signature};
use crate::errors::{CommandError, ErrorKind};
use serde_json::json;

pub fn register(r: &mut Registry) {
    r.add(
        "log",
        "collect_system_logs",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature::NONE,
            validator: None,
            handler: handler(|ctx, _| async move {
                let archive = tokio::task::spawn_blocking(move || {
                    let entries = crate::logs::collect_entries(&ctx.host, ctx.state.path());
                    crate::logs::archive_base64(&entries)
                })
                .await
                .map_err(|e| {
                    CommandError::new(
                        ErrorKind::CommandExecution,
                        format!("collecting system logs failed: {e}"),
                    )
                })?
                .map_err(|e| CommandError::new(ErrorKind::CommandExecution, e.to_string()))?;
                Ok(json!({ "system_logs": archive }))
            }),
        },
    );
}
