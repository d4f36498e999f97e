//! `poll.get_hardware_info`: the inventory, on demand.

use crate::api::registry::{handler, CommandSpec, Mode, Registry, Signature};
use crate::errors::{CommandError, ErrorKind};

pub fn register(r: &mut Registry) {
    r.add(
        "poll",
        "get_hardware_info",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature::NONE,
            validator: None,
            handler: handler(|ctx, _| async move {
                let opts = ctx.inventory_options();
                let host = ctx.host.clone();
                let inventory = tokio::task::spawn_blocking(move || {
                    crate::hardware::collect_inventory(&host, &opts)
                })
                .await
                .map_err(|e| {
                    CommandError::new(
                        ErrorKind::CommandExecution,
                        format!("collecting the inventory failed: {e}"),
                    )
                })?;
                serde_json::to_value(inventory).map_err(|e| {
                    CommandError::new(
                        ErrorKind::CommandExecution,
                        format!("encoding the inventory failed: {e}"),
                    )
                })
            }),
        },
    );
}
