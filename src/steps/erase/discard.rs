//! Erasing by discard, IPA 13's opt-in fallback (`ipa-enable-discard-erase` /
//! `agent_enable_discard_erase`) for drives whose firmware froze every secure-erase path.
//!
//! A discard only counts when it can be proven: a marker pattern is written at ten sampled
//! positions first, then the device is discarded (BLKSECDISCARD, else BLKDISCARD), its page
//! cache dropped, and every sample must read back as zeros. Anything else returns `false` and
//! the caller's other options (overwrite, or failing) apply.

use super::blockdev::{AlignedBuf, Device};
use std::path::Path;

const SAMPLE: usize = 1 << 20;
const FRACTIONS: [f64; 10] = [0.0, 0.01, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99];
const MARKER: u8 = 0xa5;

/// The sampled offsets, aligned to the logical sector, distinct, in order (empty when the
/// device is too small to sample).
pub fn sample_offsets(size: u64, sector: u64) -> Vec<u64> {
    if size <= SAMPLE as u64 {
        return Vec::new();
    }
    let span = size - SAMPLE as u64;
    let align = sector.max(1);
    let mut offs: Vec<u64> = FRACTIONS
        .iter()
        .map(|f| {
            let o = (span as f64 * f) as u64;
            o - o % align
        })
        .collect();
    offs.sort_unstable();
    offs.dedup();
    offs
}

/// `queue/discard_max_bytes` of the disk (0: no discard).
pub fn discard_max_bytes(sys: &Path) -> u64 {
    std::fs::read_to_string(sys.join("queue/discard_max_bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Tries to erase `dev` by discarding it; `Ok(true)` only when verified.
pub fn discard_erase(dev: &Device, name: &str, max_bytes: u64) -> bool {
    if max_bytes == 0 {
        tracing::info!("not erasing {name} by discard: the device does not support discard");
        return false;
    }
    let offsets = sample_offsets(dev.size(), dev.sector());
    if offsets.is_empty() {
        tracing::warn!("not erasing {name} by discard: it is too small to verify the result");
        return false;
    }
    let mut marker = AlignedBuf::new(SAMPLE);
    marker.as_mut_slice().fill(MARKER);
    // The device is modified from here on even if the discard fails; the step then fails or
    // overwrites, and Ironic never hands such a node to a tenant.
    let written = offsets
        .iter()
        .try_for_each(|&o| dev.write_all_at(marker.as_slice(), o))
        .and_then(|_| dev.sync());
    if let Err(e) = written {
        tracing::warn!(
            "not erasing {name} by discard: writing the verification markers failed: {e}"
        );
        return false;
    }
    let discarded = [(true, "secure discard"), (false, "discard")]
        .into_iter()
        .find_map(|(secure, kind)| {
            tracing::info!("erasing {name} by {kind} (discard_max_bytes {max_bytes})");
            match dev.discard_all(secure) {
                Ok(()) => Some(kind),
                Err(e) => {
                    tracing::warn!("{kind} of {name} failed: {e}");
                    None
                }
            }
        });
    let Some(kind) = discarded else {
        return false;
    };
    if let Err(e) = dev.flush_buffers() {
        tracing::warn!("flushing the buffers of {name} after the {kind} failed: {e}");
        return false;
    }
    let mut buf = AlignedBuf::new(SAMPLE);
    for &o in &offsets {
        if let Err(e) = dev.read_exact_at(buf.as_mut_slice(), o) {
            tracing::warn!("reading {name} back after the {kind} failed: {e}");
            return false;
        }
        if buf.as_slice().iter().any(|&b| b != 0) {
            tracing::warn!("{name} still holds data at offset {o:#x} after the {kind}");
            return false;
        }
    }
    tracing::info!(
        "{name} erased by {kind}: {} sampled positions read back as zeros",
        offsets.len()
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_readable_range() {
        let size = 1u64 << 30;
        let o = sample_offsets(size, 512);
        assert_eq!(o.len(), 10);
        assert_eq!(o[0], 0);
        assert!(o.iter().all(|x| x % 512 == 0 && x + SAMPLE as u64 <= size));
        assert!(o.windows(2).all(|w| w[0] < w[1]));
        assert!(sample_offsets(SAMPLE as u64, 512).is_empty());
        // Tiny spans collapse onto few distinct offsets rather than repeating one.
        let o = sample_offsets(SAMPLE as u64 + 4096, 4096);
        assert_eq!(o, vec![0]);
    }

    #[test]
    fn files_cannot_be_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, vec![1u8; 4 << 20]).unwrap();
        let dev = Device::open(&p).unwrap();
        assert!(!discard_erase(&dev, "/dev/sdx", 0));
        assert!(!discard_erase(&dev, "/dev/sdx", 1 << 30));
    }

    #[test]
    fn discard_limit_comes_from_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discard_max_bytes(dir.path()), 0);
        std::fs::create_dir(dir.path().join("queue")).unwrap();
        std::fs::write(dir.path().join("queue/discard_max_bytes"), "2147483648\n").unwrap();
        assert_eq!(discard_max_bytes(dir.path()), 1 << 31);
    }
}
