//! `ironic-agent erase-device`: one erase method on one named device, outside Ironic (for
//! operators, and for measuring throughput against `dd`). Naming the device on the command
//! line is the permission the disk guard asks for, as with `write-image`.

use super::blockdev::Device;
use super::{metadata, overwrite};
use crate::safety::DiskGuard;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// `erase_devices`' fallback: random passes, then zeros.
    Overwrite,
    /// `erase_devices_metadata` on this one device.
    Metadata,
}

#[derive(Debug, clap::Args)]
pub struct EraseDeviceArgs {
    /// Block device (or regular file) to erase.
    pub device: PathBuf,
    #[arg(long, value_enum, default_value = "overwrite")]
    pub method: Method,
    /// Random passes (agent_erase_devices_iterations).
    #[arg(long, default_value_t = 1)]
    pub iterations: u32,
    /// Skip the final pass of zeros (agent_erase_devices_zeroize=false).
    #[arg(long)]
    pub no_zeroize: bool,
}

impl EraseDeviceArgs {
    /// Runs on the calling thread (the CLI has nothing else to do meanwhile).
    pub fn run(self) -> anyhow::Result<()> {
        crate::logs::init(false, None);
        let guard = DiskGuard::detect(vec![self.device.clone()]);
        guard.check(&self.device)?;
        let name = self.device.display().to_string();
        let dev = Device::open(&self.device).with_context(|| format!("opening {name}"))?;
        match self.method {
            Method::Metadata => {
                let r = metadata::wipe(&dev, &name, dev.is_block_device())?;
                println!(
                    "{name}: erased signatures {:?}, zeroed {} ranges",
                    r.signatures,
                    r.zeroed.len()
                );
            }
            Method::Overwrite => {
                let passes = overwrite::Passes {
                    random: self.iterations,
                    zero: !self.no_zeroize,
                };
                let started = Instant::now();
                let mut pass_start = started;
                let mut passes_done = Vec::new();
                overwrite::overwrite(&dev, passes, &mut |p| {
                    if p.done == p.total {
                        passes_done.push((p.pass, p.zeros, pass_start.elapsed().as_secs_f64()));
                        pass_start = Instant::now();
                    }
                })
                .map_err(|e| anyhow::anyhow!("erasing {name} failed: {e}"))?;
                let mib = dev.size() as f64 / 1_048_576.0;
                for (pass, zeros, secs) in passes_done {
                    println!(
                        "{name}: pass {pass} ({}) {mib:.0} MiB in {secs:.2} s = {:.0} MiB/s",
                        if zeros { "zeros" } else { "random" },
                        mib / secs.max(1e-9)
                    );
                }
                let total = started.elapsed().as_secs_f64();
                println!(
                    "{name}: {} passes in {total:.2} s (with cache flushes) = {:.0} MiB/s per pass",
                    passes.total(),
                    mib * f64::from(passes.total()) / total.max(1e-9)
                );
            }
        }
        Ok(())
    }
}
