//! Flushing disks, powering off and rebooting the host (contract §12).
//!
//! Only an agent running as a ramdisk's agent may power the machine off or reboot it: the same
//! binary run on a workstation for debugging must never take the workstation down.

use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind};
use nix::sys::reboot::RebootMode;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Lets Ironic read the RUNNING reply before the machine goes away.
const GRACE_BEFORE_POWER_ACTION: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

impl PowerAction {
    fn verb(self) -> &'static str {
        match self {
            Self::PowerOff => "power off",
            Self::Reboot => "reboot",
        }
    }
}

nix::ioctl_none!(blkflsbuf, 0x12, 97);

/// IPA's `full_sync`: write dirty pages out; in the ramdisk also drop caches and flush each
/// disk's buffers so the next boot reads what was written.
pub fn full_sync(ctx: &AgentContext) {
    nix::unistd::sync();
    if !ctx.guard.is_ramdisk() {
        return;
    }
    if let Err(e) = std::fs::write(ctx.host.path("/proc/sys/vm/drop_caches"), b"3") {
        tracing::warn!("dropping the page cache failed: {e}");
    }
    for disk in crate::hardware::list_disks(&ctx.host) {
        match std::fs::File::open(&disk.name) {
            // SAFETY: BLKFLSBUF takes no argument and only acts on the open descriptor.
            Ok(f) => {
                if let Err(e) = unsafe { blkflsbuf(f.as_raw_fd()) } {
                    tracing::warn!("flushing the buffers of {} failed: {e}", disk.name);
                }
            }
            Err(e) => tracing::warn!("opening {} to flush its buffers failed: {e}", disk.name),
        }
    }
}

/// Syncs, then powers off or reboots. Returns only on failure.
pub async fn power_action(
    ctx: std::sync::Arc<AgentContext>,
    action: PowerAction,
) -> Result<serde_json::Value, CommandError> {
    if !ctx.guard.is_ramdisk() {
        return Err(CommandError::new(
            ErrorKind::SystemReboot,
            format!(
                "refusing to {} this machine: the agent is not running from a ramdisk",
                action.verb()
            ),
        ));
    }
    tracing::info!("preparing to {} the machine", action.verb());
    if let Some(server) = &ctx.config.ntp_server {
        // The next OS boots from the hardware clock this sets.
        if let Err(e) = crate::ntp::sync_clock(server).await {
            tracing::warn!("{e}");
        }
    }
    let sync_ctx = ctx.clone();
    tokio::task::spawn_blocking(move || full_sync(&sync_ctx))
        .await
        .map_err(|e| {
            CommandError::new(
                ErrorKind::SystemReboot,
                format!("syncing disks before {} failed: {e}", action.verb()),
            )
        })?;
    tokio::time::sleep(GRACE_BEFORE_POWER_ACTION).await;
    let mode = match action {
        PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let err = match nix::sys::reboot::reboot(mode) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    // The kernel refused; the magic SysRq key is IPA's fallback too.
    let key = if action == PowerAction::PowerOff {
        b"o"
    } else {
        b"b"
    };
    let sysrq = std::fs::write(ctx.host.path("/proc/sysrq-trigger"), key);
    Err(CommandError::new(
        ErrorKind::SystemReboot,
        format!(
            "the {} request failed: reboot(2) returned {err}, sysrq fallback {sysrq:?}",
            action.verb()
        ),
    ))
}
