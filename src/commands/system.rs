//! `system.lockdown` (contract §12): for nodes Ironic must not power off (`disable_power_off`).
//! The disks are synced, the reply goes out, then the agent stops its API and heartbeats, takes
//! every network interface down ([`crate::lockdown`]) and idles forever.

use crate::api::registry::{handler, CommandSpec, Mode, Registry, Signature};
use crate::context::ServeState;
use crate::errors::{CommandError, ErrorKind};
use serde_json::Value;

pub fn register(r: &mut Registry) {
    r.add(
        "system",
        "lockdown",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature::NONE,
            validator: None,
            handler: handler(|ctx, _| async move {
                let sync_ctx = ctx.clone();
                tokio::task::spawn_blocking(move || crate::power::full_sync(&sync_ctx))
                    .await
                    .map_err(|e| {
                        CommandError::new(
                            ErrorKind::CommandExecution,
                            format!("syncing disks before the lockdown failed: {e}"),
                        )
                    })?;
                tracing::info!("locking down: the API and heartbeats stop after this reply");
                ctx.stop_serving(ServeState::LockedDown);
                Ok(Value::Null)
            }),
        },
    );
}
