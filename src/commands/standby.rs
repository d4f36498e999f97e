//! `standby`: partition UUIDs of the written image, sync, power off and reboot.

use crate::api::registry::{handler, CommandSpec, Mode, Registry, Signature};
use crate::errors::{CommandError, ErrorKind};
use crate::power::{power_action, PowerAction};
use serde_json::Value;

pub fn register(r: &mut Registry) {
    r.add(
        "standby",
        "get_partition_uuids",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature::NONE,
            validator: None,
            handler: handler(|ctx, _| async move {
                let uuids = ctx
                    .deployment
                    .lock()
                    .map(|d| d.partition_uuids.clone())
                    .unwrap_or_default();
                Ok(Value::Object(uuids))
            }),
        },
    );
    r.add(
        "standby",
        "sync",
        CommandSpec {
            mode: Mode::Sync,
            signature: Signature::NONE,
            validator: None,
            handler: handler(|ctx, _| async move {
                tokio::task::spawn_blocking(move || crate::power::full_sync(&ctx))
                    .await
                    .map_err(|e| {
                        CommandError::new(
                            ErrorKind::CommandExecution,
                            format!("syncing disks failed: {e}"),
                        )
                    })?;
                Ok(Value::Null)
            }),
        },
    );
    r.add(
        "standby",
        "prepare_image",
        CommandSpec {
            mode: Mode::Async,
            signature: Signature {
                required: &["image_info"],
                optional: &["configdrive"],
                open: false,
            },
            validator: Some(crate::steps::write_image::validate_image_info),
            handler: handler(|ctx, params| async move {
                let info = params.get("image_info").cloned().unwrap_or(Value::Null);
                crate::steps::write_image::prepare_image(ctx, &info, params.get("configdrive"))
                    .await
                    .map(Value::String)
            }),
        },
    );
    for (name, action) in [
        ("power_off", PowerAction::PowerOff),
        ("run_image", PowerAction::Reboot),
    ] {
        r.add(
            "standby",
            name,
            CommandSpec {
                mode: Mode::Async,
                signature: Signature::NONE,
                validator: None,
                handler: handler(move |ctx, _| power_action(ctx, action)),
            },
        );
    }
}
