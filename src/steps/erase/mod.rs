//! The erase clean steps of IPA's generic hardware manager (contract §9.1), done through the
//! kernel's interfaces instead of wipefs, dd, sgdisk, hdparm, nvme-cli and shred:
//!
//! | step | clean priority | deploy priority | what |
//! |---|---|---|---|
//! | `erase_devices_metadata` | 99 | 0 | [`metadata`] wipe of every disk and partition |
//! | `erase_devices` | 10 | — | [`nvme`] format, [`ata`] security erase, else [`overwrite`] |
//! | `erase_devices_express` | 0 | — | NVMe format where possible, else the metadata wipe |
//! | `erase_pstore` | 0 | — | empty the [`pstore`] mount |
//!
//! Which devices are touched is [`devices`]' business, the shared-storage guard is
//! [`protected`]'s. Every device is opened only after [`DiskGuard`](crate::safety::DiskGuard)
//! allowed it, and all device I/O runs on blocking threads ([`concurrency`]), so the heartbeat
//! task is never starved however long an erase takes.

pub mod ata;
pub mod blockdev;
pub mod cli;
pub mod concurrency;
pub mod devices;
pub mod discard;
pub mod error;
pub mod metadata;
pub mod nvme;
pub mod options;
pub mod overwrite;
pub mod probe;
pub mod protected;
pub mod pstore;

use self::blockdev::Device;
use self::devices::{Candidate, Exclusion, Surveyed};
use self::error::EraseError;
use self::options::EraseOptions;
use super::{StepCall, StepSpec};
use crate::context::AgentContext;
use crate::errors::{CommandError, ErrorKind, IntoCommandError};
use crate::hardware::HostRoot;
use crate::safety::DiskGuard;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Overwrite progress goes to the log this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The erase steps, as IPA's `get_clean_steps` / `get_deploy_steps` list them.
pub fn specs() -> Vec<StepSpec> {
    let spec = |name, clean: u32, deploy: Option<u32>, run: super::StepFn| {
        let s = StepSpec::new(name, "deploy", run)
            .clean(clean)
            .abortable(true);
        match deploy {
            Some(p) => s.deploy(p),
            None => s,
        }
    };
    vec![
        spec(
            "erase_devices",
            10,
            None,
            Arc::new(|ctx, call| Box::pin(erase_devices(ctx, call))),
        ),
        spec(
            "erase_devices_metadata",
            99,
            Some(0),
            Arc::new(|ctx, call| Box::pin(erase_devices_metadata(ctx, call))),
        ),
        spec(
            "erase_devices_express",
            0,
            None,
            Arc::new(|ctx, call| Box::pin(erase_devices_express(ctx, call))),
        ),
        spec(
            "erase_pstore",
            0,
            None,
            Arc::new(|ctx, call| Box::pin(erase_pstore(ctx, call))),
        ),
    ]
}

/// What every erase job needs, cloned onto its blocking thread.
#[derive(Clone)]
struct Job {
    host: HostRoot,
    guard: DiskGuard,
    node: Value,
    opts: EraseOptions,
}

impl Job {
    fn new(ctx: &AgentContext, call: &StepCall) -> Self {
        let node = if call.node.is_object() {
            call.node.clone()
        } else {
            ctx.node().unwrap_or(Value::Null)
        };
        let opts = EraseOptions::from_node(
            &node,
            ctx.config.enable_discard_erase,
            ctx.config.guard_special_filesystems,
        );
        Self {
            host: ctx.host.clone(),
            guard: ctx.guard.clone(),
            node,
            opts,
        }
    }

    /// The disks (and with `partitions`, their partitions) with libblkid's view of each.
    fn survey(&self, partitions: bool) -> Result<Vec<Surveyed>, EraseError> {
        let disks = devices::disks(&self.host, &self.node)?;
        let cands = if partitions {
            devices::with_partitions(disks)
        } else {
            disks
        };
        Ok(devices::survey(cands))
    }

    fn check_protected(&self, all: &[Surveyed], erasing: &[&Surveyed]) -> Result<(), EraseError> {
        if self.opts.guard_special_filesystems {
            devices::check_protected(all, erasing)
        } else {
            Ok(())
        }
    }

    /// Opens a device for writing after the disk guard allowed it.
    fn open(&self, c: &Candidate) -> Result<Device, EraseError> {
        self.guard
            .check(&c.path)
            .map_err(|e| EraseError::Refused(format!("Erasing {} was refused: {e}", c.name)))?;
        Device::open(&c.path)
            .map_err(|e| EraseError::device(&c.name, format!("cannot open it: {e}")))
    }
}

/// Runs `f` on a blocking thread; a panic there becomes an error naming the step.
async fn blocking<T: Send + 'static>(
    step: &str,
    f: impl FnOnce() -> Result<T, EraseError> + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            CommandError::new(
                ErrorKind::Cleaning,
                format!("{step} stopped unexpectedly: {e}"),
            )
        })?
        .map_err(IntoCommandError::into_command_error)
}

/// The devices of a survey that a metadata-type step may touch (IPA's
/// `_list_erasable_devices`: virtual media, RAID members and read-only devices are skipped).
fn erasable<'a>(job: &Job, all: &'a [Surveyed]) -> Vec<&'a Surveyed> {
    all.iter()
        .filter(|s| match s.exclusion(&job.host) {
            Some(why) => {
                tracing::info!("not erasing {}: {}", s.cand.name, why.describe());
                false
            }
            None => true,
        })
        .collect()
}

// ---- erase_devices_metadata ---------------------------------------------------------------

async fn erase_devices_metadata(
    ctx: Arc<AgentContext>,
    call: StepCall,
) -> Result<Value, CommandError> {
    let job = Job::new(&ctx, &call);
    blocking("erase_devices_metadata", move || {
        let all = job.survey(true)?;
        let targets = erasable(&job, &all);
        job.check_protected(&all, &targets)?;
        let errors: Vec<EraseError> = targets
            .iter()
            .filter_map(|s| wipe_metadata(&job, &s.cand).err())
            .collect();
        EraseError::combine(errors).map_or(Ok(Value::Null), Err)
    })
    .await
}

fn wipe_metadata(job: &Job, c: &Candidate) -> Result<(), EraseError> {
    let dev = job.open(c).map_err(|e| match e {
        EraseError::Device { device, reason } => EraseError::Metadata { device, reason },
        other => other,
    })?;
    metadata::wipe(&dev, &c.name, !c.is_partition()).map(drop)
}

// ---- erase_devices ------------------------------------------------------------------------

async fn erase_devices(ctx: Arc<AgentContext>, call: StepCall) -> Result<Value, CommandError> {
    let job = Job::new(&ctx, &call);
    let j = job.clone();
    let disks = blocking("erase_devices", move || {
        let all = j.survey(false)?;
        let refs: Vec<&Surveyed> = all.iter().collect();
        j.check_protected(&all, &refs)?;
        Ok(all)
    })
    .await?;
    let names: Vec<String> = disks.iter().map(|s| s.cand.name.clone()).collect();
    tracing::info!(
        "erasing {} devices, {} at a time: {}",
        disks.len(),
        job.opts.concurrency,
        names.join(", ")
    );
    let results = concurrency::run_bounded(disks, job.opts.concurrency, move |s| {
        erase_block_device(&job, &s)
    })
    .await;
    let mut errors = Vec::new();
    let mut out = Map::new();
    for (name, r) in names.into_iter().zip(results) {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(panic) => errors.push(EraseError::device(&name, panic)),
        }
        out.insert(name, Value::Null);
    }
    match EraseError::combine(errors) {
        Some(e) => Err(e.into_command_error()),
        None => Ok(Value::Object(out)),
    }
}

/// IPA's `erase_block_device` for one disk (runs on a blocking thread).
fn erase_block_device(job: &Job, s: &Surveyed) -> Result<(), EraseError> {
    let c = &s.cand;
    match s.exclusion(&job.host) {
        Some(Exclusion::ReadOnly) if !job.opts.skip_read_only => {
            return Err(EraseError::ReadOnly(c.name.clone()))
        }
        Some(why) => {
            tracing::info!("skipping erase of {}: {}", c.name, why.describe());
            return Ok(());
        }
        None => {}
    }
    let dev = job.open(c)?;
    match secure_erase(job, c) {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(reason) => {
            if job.opts.discard_erase
                && discard::discard_erase(&dev, &c.name, discard::discard_max_bytes(&c.sys))
            {
                tracing::info!(
                    "erased {} by discarding it because secure erase was not available: {reason}",
                    c.name
                );
                return Ok(());
            }
            if !job.opts.continue_if_secure_erase_failed {
                return Err(EraseError::SecureEraseFailed {
                    device: c.name.clone(),
                    reason,
                });
            }
            tracing::warn!(
                "secure erase of {} failed, overwriting it instead: {reason}",
                c.name
            );
        }
    }
    let passes = overwrite::Passes {
        random: job.opts.iterations,
        zero: job.opts.zeroize,
    };
    let started = Instant::now();
    overwrite::overwrite(&dev, passes, &mut progress_logger(&c.name))
        .map_err(|e| EraseError::device(&c.name, format!("overwriting it failed: {e}")))?;
    tracing::info!(
        "{} overwritten ({} passes of {} MiB) in {:.1} s",
        c.name,
        passes.total(),
        dev.size() >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// NVMe format or ATA security erase, as enabled. `Ok(false)`: not applicable, overwrite.
fn secure_erase(job: &Job, c: &Candidate) -> Result<bool, String> {
    if c.is_nvme() {
        if !job.opts.nvme_secure_erase {
            return Ok(false);
        }
        return nvme::secure_format(&c.path).map(|mode| {
            tracing::info!("{} erased by NVMe format ({mode:?} erase)", c.name);
            true
        });
    }
    if !job.opts.ata_secure_erase {
        return Ok(false);
    }
    let mut port =
        ata::SgIoPort::open(&c.path).map_err(|e| format!("cannot open {}: {e}", c.name))?;
    let done = ata::secure_erase(&mut port, &c.name)?;
    if done {
        tracing::info!("{} erased by ATA security erase", c.name);
    }
    Ok(done)
}

fn progress_logger(name: &str) -> impl FnMut(overwrite::Progress) + '_ {
    let started = Instant::now();
    let mut pass_started = Instant::now();
    let mut last = Instant::now();
    let mut pass = 0;
    move |p: overwrite::Progress| {
        if p.pass != pass {
            pass = p.pass;
            pass_started = Instant::now();
        }
        if last.elapsed() < PROGRESS_EVERY && p.done < p.total {
            return;
        }
        last = Instant::now();
        let rate = p.done as f64 / pass_started.elapsed().as_secs_f64().max(0.001) / 1_048_576.0;
        tracing::info!(
            "erasing {name}: pass {} of {} ({}), {} of {} MiB ({:.0}%), {rate:.0} MiB/s, {:.0} s so far",
            p.pass,
            p.passes,
            if p.zeros { "zeros" } else { "random data" },
            p.done >> 20,
            p.total >> 20,
            p.done as f64 * 100.0 / (p.total.max(1)) as f64,
            started.elapsed().as_secs_f64()
        );
    }
}

// ---- erase_devices_express ----------------------------------------------------------------

async fn erase_devices_express(
    ctx: Arc<AgentContext>,
    call: StepCall,
) -> Result<Value, CommandError> {
    let job = Job::new(&ctx, &call);
    blocking("erase_devices_express", move || {
        let all = job.survey(true)?;
        let targets = erasable(&job, &all);
        if targets.is_empty() {
            tracing::debug!("no erasable devices were found");
            return Ok(Value::Null);
        }
        job.check_protected(&all, &targets)?;
        express(&job, &targets)
    })
    .await
}

/// NVMe namespaces are formatted once (which erases their partitions too); every other device,
/// and a namespace whose format failed, gets the metadata wipe.
fn express(job: &Job, targets: &[&Surveyed]) -> Result<Value, EraseError> {
    let mut formatted: Vec<String> = Vec::new();
    let mut format_errors: Vec<(String, String)> = Vec::new();
    for s in targets
        .iter()
        .filter(|s| s.cand.is_nvme() && !s.cand.is_partition())
    {
        if !job.opts.nvme_secure_erase {
            break;
        }
        let c = &s.cand;
        let r = job
            .guard
            .check(&c.path)
            .map_err(|e| e.to_string())
            .and_then(|_| nvme::secure_format(&c.path));
        match r {
            Ok(mode) => {
                tracing::info!("{} erased by NVMe format ({mode:?} erase)", c.name);
                formatted.push(c.kname.clone());
            }
            Err(e) => {
                tracing::error!(
                    "failed to securely erase {}: {e}; falling back to the metadata wipe",
                    c.name
                );
                format_errors.push((c.kname.clone(), e));
            }
        }
    }
    let mut errors = Vec::new();
    for s in targets {
        let c = &s.cand;
        let disk = c.parent.as_ref().map_or(&c.kname, |(d, _)| d);
        if formatted.contains(disk) {
            continue;
        }
        if let Err(e) = wipe_metadata(job, c) {
            let secure = format_errors.iter().find(|(k, _)| k == &c.kname);
            errors.push(match secure {
                Some((_, se)) => EraseError::metadata(
                    &c.name,
                    format!(
                        "Secure erase failed: {se}. Fallback to metadata erase also failed: {e}"
                    ),
                ),
                None => e,
            });
        }
    }
    EraseError::combine(errors).map_or(Ok(Value::Null), Err)
}

// ---- erase_pstore -------------------------------------------------------------------------

async fn erase_pstore(ctx: Arc<AgentContext>, _call: StepCall) -> Result<Value, CommandError> {
    // Crash records of a developer's machine are not ours to delete.
    if ctx.host.is_live() && !ctx.guard.is_ramdisk() {
        return Err(CommandError::new(
            ErrorKind::Cleaning,
            "refusing to empty the pstore: the agent is not running from a ramdisk",
        ));
    }
    let host = ctx.host.clone();
    tokio::task::spawn_blocking(move || pstore::erase(&host))
        .await
        .map_err(|e| {
            CommandError::new(
                ErrorKind::Cleaning,
                format!("erase_pstore stopped unexpectedly: {e}"),
            )
        })?
        .map_err(|e| {
            CommandError::new(
                ErrorKind::Cleaning,
                format!("Erasing the pstore failed: {e}"),
            )
        })?;
    Ok(Value::Null)
}
