//! Overwriting a whole device, IPA's `shred --force [--zero] --iterations N` fallback:
//! `N` passes of pseudo-random data, then one pass of zeros when `zeroize` is set.
//!
//! Throughput is the point (this runs for hours on big disks): direct I/O in 8 MiB aligned
//! chunks, random data from a fast non-cryptographic generator (xoshiro256++, seeded from the
//! OS per pass; the goal is overwriting, not secrecy of the pattern) produced on a second
//! thread while the previous chunk is written, and the zero pass offloaded to the device with
//! BLKZEROOUT when it supports it. Each pass ends with a flush of the device's write cache.

use super::blockdev::{AlignedBuf, Device};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use std::sync::mpsc;

/// Write size: large enough to keep a device's queue busy, small enough for a 256 MiB ramdisk
/// erasing four disks at once (3 buffers each).
pub const CHUNK: usize = 8 << 20;
/// The zero pass hands the kernel this much per BLKZEROOUT (progress granularity).
const ZERO_STEP: u64 = 1 << 30;
/// Buffers in flight between the generator and the writer.
const BUFFERS: usize = 3;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passes {
    pub random: u32,
    pub zero: bool,
}

impl Passes {
    pub fn total(&self) -> u32 {
        self.random + u32::from(self.zero)
    }
}

/// Where an overwrite is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// 1-based pass number.
    pub pass: u32,
    pub passes: u32,
    /// True for the final pass of zeros.
    pub zeros: bool,
    pub done: u64,
    pub total: u64,
}

/// Runs all passes over `dev`. Errors are sentences naming the pass and the offset.
pub fn overwrite(
    dev: &Device,
    passes: Passes,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), String> {
    let total = dev.size();
    for pass in 1..=passes.total() {
        let zeros = pass > passes.random;
        let mut report = |done| {
            progress(Progress {
                pass,
                passes: passes.total(),
                zeros,
                done,
                total,
            })
        };
        let kind = if zeros { "zeros" } else { "random data" };
        let r = if zeros {
            zero_pass(dev, &mut report)
        } else {
            random_pass(dev, &mut report)
        };
        r.and_then(|_| dev.sync())
            .map_err(|e| format!("pass {pass} of {} ({kind}) failed: {e}", passes.total()))?;
    }
    Ok(())
}

/// One pass of random data: a generator thread fills buffers, this thread writes them.
fn random_pass(dev: &Device, report: &mut dyn FnMut(u64)) -> std::io::Result<()> {
    let size = dev.size();
    let (filled_tx, filled_rx) = mpsc::sync_channel::<AlignedBuf>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::channel::<AlignedBuf>();
    for _ in 0..BUFFERS {
        // Cannot fail: the receiver is alive.
        let _ = empty_tx.send(AlignedBuf::new(CHUNK));
    }
    let chunks = size.div_ceil(CHUNK as u64);
    // `move`: the writer's channel ends drop when it returns, which stops the generator
    // before the scope joins it (else an early error would wait for it forever).
    std::thread::scope(move |s| {
        s.spawn(move || {
            let mut rng = SmallRng::from_entropy();
            for _ in 0..chunks {
                let Ok(mut buf) = empty_rx.recv() else { return };
                rng.fill_bytes(buf.as_mut_slice());
                if filled_tx.send(buf).is_err() {
                    return;
                }
            }
        });
        let mut off = 0u64;
        while off < size {
            let Ok(buf) = filled_rx.recv() else {
                return Err(std::io::Error::other("the random data generator stopped"));
            };
            let n = (size - off).min(CHUNK as u64) as usize;
            dev.write_all_at(&buf.as_slice()[..n], off).map_err(|e| {
                std::io::Error::new(e.kind(), format!("writing at offset {off}: {e}"))
            })?;
            off += n as u64;
            report(off);
            // The generator may have finished; a closed channel is fine here.
            let _ = empty_tx.send(buf);
        }
        Ok(())
    })
}

/// One pass of zeros: BLKZEROOUT when the device takes it, written zeros otherwise.
fn zero_pass(dev: &Device, report: &mut dyn FnMut(u64)) -> std::io::Result<()> {
    let size = dev.size();
    let aligned = size - size % dev.sector();
    let mut off = 0u64;
    while off < aligned {
        let n = (aligned - off).min(ZERO_STEP);
        if !dev.zero_out(off, n)? {
            break;
        }
        off += n;
        report(off);
    }
    let zeros = AlignedBuf::new(CHUNK);
    while off < size {
        let n = (size - off).min(CHUNK as u64) as usize;
        dev.write_all_at(&zeros.as_slice()[..n], off)
            .map_err(|e| std::io::Error::new(e.kind(), format!("writing at offset {off}: {e}")))?;
        off += n as u64;
        report(off);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(len: usize, byte: u8) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, vec![byte; len]).unwrap();
        (dir, p)
    }

    #[test]
    fn random_then_zeros_leaves_zeros_and_reports_every_pass() {
        let len = CHUNK * 2 + 4096 + 100; // several chunks and an unaligned tail
        let (_d, p) = file_with(len, 0xab);
        let dev = Device::open(&p).unwrap();
        let mut seen = Vec::new();
        overwrite(
            &dev,
            Passes {
                random: 2,
                zero: true,
            },
            &mut |pr| seen.push(pr),
        )
        .unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(data.len(), len);
        assert!(data.iter().all(|&b| b == 0));
        let ends: Vec<(u32, bool, u64)> = seen
            .iter()
            .filter(|pr| pr.done == pr.total)
            .map(|pr| (pr.pass, pr.zeros, pr.done))
            .collect();
        assert_eq!(
            ends,
            [
                (1, false, len as u64),
                (2, false, len as u64),
                (3, true, len as u64)
            ]
        );
    }

    #[test]
    fn random_only_leaves_no_trace_of_the_old_data() {
        let len = CHUNK + 512;
        let (_d, p) = file_with(len, 0xab);
        let dev = Device::open(&p).unwrap();
        overwrite(
            &dev,
            Passes {
                random: 1,
                zero: false,
            },
            &mut |_| {},
        )
        .unwrap();
        let data = std::fs::read(&p).unwrap();
        // Random bytes: about 1/256 of them equal any given value, never long runs of it.
        let same = data.iter().filter(|&&b| b == 0xab).count();
        assert!(same < len / 128, "{same} bytes still 0xab");
        assert!(data.windows(64).all(|w| w.iter().any(|&b| b != w[0])));
    }

    #[test]
    fn zero_passes_alone() {
        let (_d, p) = file_with(10_000, 0xff);
        let dev = Device::open(&p).unwrap();
        overwrite(
            &dev,
            Passes {
                random: 0,
                zero: true,
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(std::fs::read(&p).unwrap().iter().all(|&b| b == 0));
    }
}
