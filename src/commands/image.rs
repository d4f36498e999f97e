//! `image.install_bootloader` (contract §11.9, IPA's `ImageExtension.install_bootloader`).
//!
//! On a UEFI machine the loaders on the install disk's ESP are registered as boot entries
//! (natively, through efivarfs). Whole-disk images need nothing more. Partition images whose
//! ESP is empty, and every BIOS partition image, would need `grub2-install` inside the image:
//! like IPA since the CVE-2026-43003 mitigation that is refused unless
//! `enable_bios_bootloader_install` is set, and even then this agent has no GRUB to run.

use crate::api::registry::{handler, CommandSpec, Mode, Params, Registry, Signature};
use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use crate::steps::node_caps::BootMode;
use serde_json::Value;
use std::sync::Arc;

pub fn register(r: &mut Registry) {
    r.add(
        "image",
        "install_bootloader",
        CommandSpec {
            mode: Mode::Async,
            signature: Signature {
                required: &["root_uuid"],
                optional: &[
                    "efi_system_part_uuid",
                    "prep_boot_part_uuid",
                    "target_boot_mode",
                    "ignore_bootloader_failure",
                ],
                open: false,
            },
            validator: None,
            handler: handler(install_bootloader),
        },
    );
}

fn text<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).and_then(Value::as_str)
}

async fn install_bootloader(ctx: Arc<AgentContext>, p: Params) -> Result<Value, CommandError> {
    let device = crate::steps::write_image::target_disk(&ctx).await?;
    let ignore = p
        .get("ignore_bootloader_failure")
        .and_then(Value::as_bool)
        .unwrap_or(ctx.config.ignore_bootloader_failure);
    let root_uuid = text(&p, "root_uuid").map(str::to_string);
    let efi_uuid = text(&p, "efi_system_part_uuid").map(str::to_string);
    let target = text(&p, "target_boot_mode").unwrap_or("bios").to_string();
    let current = BootMode::current(&ctx.host);
    if current.name() != target {
        tracing::warn!(
            "Boot mode mismatch: target boot mode is {target}, current boot mode is {}. \
             Installing boot loader may fail or work incorrectly.",
            current.name()
        );
    }
    if current == BootMode::Uefi {
        let (host, guard, dev) = (ctx.host.clone(), ctx.guard.clone(), device.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            crate::efi::manage_uefi(&host, &dev, &guard, efi_uuid.as_deref())
        })
        .await
        .map_err(|e| {
            fail(format!(
                "setting up UEFI boot on {} failed: {e}",
                device.display()
            ))
        })?;
        match outcome {
            Ok(true) => return Ok(Value::Null),
            Ok(false) => {}
            Err(e) => {
                tracing::error!("Error setting up bootloader. Error {e}");
                if !ignore {
                    return Err(efi_error(e));
                }
            }
        }
    }
    // A whole-disk image brings its own boot loader (IPA has no root UUID detection for them).
    if root_uuid.as_deref().is_none_or(|u| u == "0x00000000") {
        tracing::info!("not installing GRUB: no root UUID was given, assuming a whole disk image");
        return Ok(Value::Null);
    }
    let enabled = ctx
        .session()
        .lookup
        .and_then(|l| l.enable_bios_bootloader_install)
        .unwrap_or(false);
    let err = if enabled {
        CommandError::new(
            ErrorKind::CommandExecution,
            format!(
                "installing GRUB on {} for root partition {} needs grub2-install, which this \
                 agent's ramdisk does not carry; use a whole-disk image (or a partition image \
                 with a populated ESP on UEFI)",
                device.display(),
                root_uuid.unwrap_or_default()
            ),
        )
    } else {
        CommandError::new(
            ErrorKind::InvalidImage,
            "Install of legacy BIOS bootloaders disabled by \
             CONF.enable_bios_bootloader_install as part of CVE-2026-43003 mitigation.",
        )
    };
    tracing::error!("{}", err.details);
    if ignore {
        tracing::warn!("ignoring the boot loader failure (ignore_bootloader_failure)");
        return Ok(Value::Null);
    }
    Err(err)
}

fn fail(msg: String) -> CommandError {
    CommandError::new(ErrorKind::CommandExecution, msg)
}

fn efi_error(e: crate::efi::EfiError) -> CommandError {
    let kind = match e {
        crate::efi::EfiError::NoEsp(_) => ErrorKind::DeviceNotFound,
        _ => ErrorKind::CommandExecution,
    };
    CommandError::new(kind, e.to_string())
}
