//! The guest-to-host mapping of a qcow2 image, small enough for multi-TiB images.
//!
//! Only allocated clusters are stored, as extents: runs of clusters contiguous both in the
//! file and on the guest disk are merged, compressed clusters are one extent each. Everything
//! not covered by an extent reads as zeros (unallocated clusters and v3 zero clusters; there
//! is never a backing file). The map is built from the L1 table and the L2 tables, validated
//! (alignment, bounds, no overlap with metadata or other data), and then walked in file
//! order so the image can be converted in one sequential pass.
//!
//! Refcounts are never read: they only matter for allocation, and a conversion must not
//! trust them anyway.

use super::header::Header;
use sha2::{Digest, Sha256};

/// Bits 9..55 of L1 and standard L2 entries.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const COMPRESSED: u64 = 1 << 62;
const ZERO_FLAG: u64 = 1;
/// Memory the map may use: keeps the whole conversion within its RSS budget.
pub const MAX_MAP_BYTES: usize = 24 << 20;
const MAX_ENTRIES: usize = MAX_MAP_BYTES / std::mem::size_of::<Extent>();

/// An allocated piece of the image: `len` guest bytes at `guest`, stored at `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub host: u64,
    pub guest: u64,
    /// Guest bytes (a run of whole clusters, the last one clipped to the virtual size).
    pub len: u32,
    /// Compressed bytes available at `host` when compressed, else 0.
    pub compressed_len: u32,
}

impl Extent {
    pub fn is_compressed(&self) -> bool {
        self.compressed_len > 0
    }

    /// Bytes of the file this extent occupies.
    pub fn host_len(&self) -> u64 {
        if self.is_compressed() {
            u64::from(self.compressed_len)
        } else {
            u64::from(self.len)
        }
    }
}

/// The digest of a metadata range read out of band (with a Range request): the one-pass
/// conversion checks that the same bytes go by in the stream the checksum covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDigest {
    pub offset: u64,
    pub len: u64,
    pub sha256: [u8; 32],
}

impl MetaDigest {
    pub fn of(offset: u64, bytes: &[u8]) -> Self {
        Self {
            offset,
            len: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }
}

/// An allocated L2 table: which L1 slot points at which file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Ref {
    pub l1_index: u64,
    pub offset: u64,
}

/// The allocated L2 tables named by the L1 table, sorted by file offset.
pub fn parse_l1(h: &Header, l1: &[u8], file_size: Option<u64>) -> Result<Vec<L2Ref>, String> {
    if (l1.len() as u64) < h.l1_bytes() {
        return Err("the qcow2 L1 table is truncated".into());
    }
    let mut refs = Vec::new();
    for (i, e) in l1
        .chunks_exact(8)
        .take(h.l1_entries_needed() as usize)
        .enumerate()
    {
        let entry = u64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
        let offset = entry & OFFSET_MASK;
        if offset == 0 {
            continue;
        }
        check_cluster_offset(h, offset, file_size).map_err(|e| format!("L1 entry {i} {e}"))?;
        if refs.len() >= MAX_ENTRIES {
            return Err("the qcow2 image has too many L2 tables to map in bounded memory".into());
        }
        refs.push(L2Ref {
            l1_index: i as u64,
            offset,
        });
    }
    refs.sort_unstable_by_key(|r| r.offset);
    if let Some(w) = refs.windows(2).find(|w| w[0].offset == w[1].offset) {
        return Err(format!(
            "two L1 entries share the L2 table at {:#x}",
            w[0].offset
        ));
    }
    Ok(refs)
}

fn check_cluster_offset(h: &Header, offset: u64, file_size: Option<u64>) -> Result<(), String> {
    if offset % h.cluster_size() != 0 {
        return Err(format!(
            "points at {offset:#x}, which is not cluster-aligned"
        ));
    }
    if offset < h.cluster_size() {
        return Err("points into the qcow2 header".into());
    }
    match file_size {
        Some(size)
            if offset.saturating_add(h.cluster_size())
                > size.next_multiple_of(h.cluster_size()) =>
        {
            Err(format!(
                "points at {offset:#x}, beyond the end of the {size}-byte file"
            ))
        }
        _ => Ok(()),
    }
}

/// Collects extents from L2 tables, in any order.
pub struct MapBuilder {
    header: Header,
    file_size: Option<u64>,
    extents: Vec<Extent>,
    /// File ranges holding metadata (header cluster, L1, L2 tables): data must not overlap.
    metadata: Vec<(u64, u64)>,
    /// Digests of out-of-band metadata, when [`MapBuilder::record`] is on.
    digests: Option<Vec<MetaDigest>>,
}

impl MapBuilder {
    pub fn new(header: Header, file_size: Option<u64>) -> Self {
        let l1 = (header.l1_offset, header.l1_bytes());
        let metadata = vec![(0, header.cluster_size()), l1];
        Self {
            header,
            file_size,
            extents: Vec::new(),
            metadata,
            digests: None,
        }
    }

    /// Keeps a digest of every table added (and of `l1`), for [`Map::digests`]: used when
    /// the tables were read out of band and must be checked against the stream later.
    pub fn record(&mut self, l1: &[u8]) {
        self.digests = Some(vec![MetaDigest::of(self.header.l1_offset, l1)]);
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Adds the L2 table that `r` names, whose bytes are `table` (one cluster).
    pub fn add_l2(&mut self, r: L2Ref, table: &[u8]) -> Result<(), String> {
        let h = self.header.clone();
        if (table.len() as u64) < h.cluster_size() {
            return Err(format!(
                "the qcow2 L2 table at {:#x} is truncated",
                r.offset
            ));
        }
        self.metadata.push((r.offset, h.cluster_size()));
        if let Some(d) = &mut self.digests {
            d.push(MetaDigest::of(
                r.offset,
                &table[..h.cluster_size() as usize],
            ));
        }
        let first_guest = r.l1_index * h.l2_span();
        for (j, e) in table.chunks_exact(8).enumerate() {
            let guest = first_guest + j as u64 * h.cluster_size();
            if guest >= h.virtual_size {
                break;
            }
            let entry = u64::from_be_bytes([e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7]]);
            let len = (h.virtual_size - guest).min(h.cluster_size()) as u32;
            if let Some(ext) = self
                .decode_entry(entry, guest, len)
                .map_err(|e| format!("L2 entry for guest offset {guest:#x} {e}"))?
            {
                self.push(ext)?;
            }
        }
        Ok(())
    }

    /// One L2 entry → the extent it maps, `None` when it reads as zeros.
    fn decode_entry(&self, entry: u64, guest: u64, len: u32) -> Result<Option<Extent>, String> {
        let h = &self.header;
        if entry & COMPRESSED != 0 {
            // Bits 0..x-1 offset, x..61 extra 512-byte sectors, x = 62 - (cluster_bits - 8).
            let x = 62 - (h.cluster_bits - 8);
            let host = entry & ((1u64 << x) - 1);
            let sectors = ((entry & ((1u64 << 62) - 1)) >> x) + 1;
            let avail = sectors * 512 - (host & 511);
            if host < h.cluster_size() {
                return Err("points a compressed cluster into the qcow2 header".into());
            }
            let avail = match self.file_size {
                Some(size) if host >= size => {
                    return Err(format!("points at {host:#x}, beyond the end of the file"))
                }
                Some(size) => avail.min(size - host),
                None => avail,
            };
            return Ok(Some(Extent {
                host,
                guest,
                len,
                compressed_len: avail as u32,
            }));
        }
        let host = entry & OFFSET_MASK;
        let zero = self.header.version >= 3 && entry & ZERO_FLAG != 0;
        if zero || host == 0 {
            return Ok(None);
        }
        check_cluster_offset(h, host, self.file_size)?;
        Ok(Some(Extent {
            host,
            guest,
            len,
            compressed_len: 0,
        }))
    }

    /// Appends, merging with the previous extent when both file and guest are contiguous.
    fn push(&mut self, e: Extent) -> Result<(), String> {
        if let Some(last) = self.extents.last_mut() {
            let mergeable = !last.is_compressed()
                && !e.is_compressed()
                && last.host + u64::from(last.len) == e.host
                && last.guest + u64::from(last.len) == e.guest
                && u64::from(last.len) + u64::from(e.len) <= u64::from(u32::MAX);
            if mergeable {
                last.len += e.len;
                return Ok(());
            }
        }
        if self.extents.len() >= MAX_ENTRIES {
            return Err(format!(
                "the qcow2 image is too fragmented to convert in bounded memory (more than {MAX_ENTRIES} separate extents)"
            ));
        }
        self.extents.push(e);
        Ok(())
    }

    /// Validates the whole map and returns it in guest order.
    pub fn finish(mut self) -> Result<Map, String> {
        self.extents.sort_unstable_by_key(|e| e.host);
        self.metadata.sort_unstable();
        check_metadata_overlaps(&self.metadata)?;
        check_data_overlaps(&self.extents, &self.metadata)?;
        self.extents.sort_unstable_by_key(|e| e.guest);
        let mut digests = self.digests.unwrap_or_default();
        digests.retain(|d| d.len > 0);
        digests.sort_unstable_by_key(|d| d.offset);
        Ok(Map {
            header: self.header,
            extents: self.extents,
            metadata: self.metadata,
            digests,
        })
    }
}

fn check_metadata_overlaps(meta: &[(u64, u64)]) -> Result<(), String> {
    match meta.windows(2).find(|w| w[0].0 + w[0].1 > w[1].0) {
        Some(w) => Err(format!(
            "qcow2 metadata at {:#x} and {:#x} overlap",
            w[0].0, w[1].0
        )),
        None => Ok(()),
    }
}

/// Data must not overlap metadata; uncompressed data must not overlap other data; compressed
/// clusters may share their last sector with what follows (QEMU packs them), so only their
/// start is checked.
fn check_data_overlaps(extents: &[Extent], meta: &[(u64, u64)]) -> Result<(), String> {
    let mut reach = 0u64; // end of the previous uncompressed extent
    let mut prev_start = None;
    for e in extents {
        if e.host < reach || prev_start == Some(e.host) {
            return Err(format!(
                "two qcow2 data clusters overlap at file offset {:#x}",
                e.host
            ));
        }
        let claimed = if e.is_compressed() { 1 } else { e.host_len() };
        let i = meta.partition_point(|m| m.0 + m.1 <= e.host);
        if meta.get(i).is_some_and(|m| m.0 < e.host + claimed) {
            return Err(format!(
                "a qcow2 data cluster at file offset {:#x} overlaps metadata",
                e.host
            ));
        }
        if !e.is_compressed() {
            reach = e.host + e.host_len();
        }
        prev_start = Some(e.host);
    }
    Ok(())
}

/// A validated mapping, in guest order.
#[derive(Debug)]
pub struct Map {
    header: Header,
    extents: Vec<Extent>,
    metadata: Vec<(u64, u64)>,
    digests: Vec<MetaDigest>,
}

impl Map {
    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn extents(&self) -> &[Extent] {
        &self.extents
    }

    /// Where metadata ends: the end of the last header/L1/L2 range in the file.
    pub fn metadata_end(&self) -> u64 {
        self.metadata.iter().map(|m| m.0 + m.1).max().unwrap_or(0)
    }

    /// Guest ranges that read as zeros, in guest order.
    pub fn zero_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let vsize = self.header.virtual_size;
        let ends = self
            .extents
            .iter()
            .map(|e| (e.guest, e.guest + u64::from(e.len)))
            .chain(std::iter::once((vsize, vsize)));
        ends.scan(0u64, |pos, (start, end)| {
            let gap = (*pos, start.saturating_sub(*pos));
            *pos = end;
            Some(gap)
        })
        .filter(|g| g.1 > 0)
    }

    /// Digests of the metadata read out of band, in file order (empty when none was).
    pub fn digests(&self) -> &[MetaDigest] {
        &self.digests
    }

    /// The extents in file order, for the conversion pass, and the metadata digests.
    pub fn into_host_order(mut self) -> (Vec<Extent>, Vec<MetaDigest>) {
        self.extents.sort_unstable_by_key(|e| e.host);
        (self.extents, self.digests)
    }
}

#[cfg(test)]
mod tests {
    use super::super::header::tests::v3;
    use super::*;

    fn l2_with(entries: &[(usize, u64)]) -> Vec<u8> {
        let mut t = vec![0u8; 65536];
        for &(i, v) in entries {
            t[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        t
    }

    #[test]
    fn builds_merged_extents_and_zero_ranges() {
        let h = Header::parse(&v3()).unwrap();
        let mut l1 = vec![0u8; 16];
        l1[..8].copy_from_slice(&0x40000u64.to_be_bytes());
        let refs = parse_l1(&h, &l1, None).unwrap();
        assert_eq!(
            refs,
            vec![L2Ref {
                l1_index: 0,
                offset: 0x40000
            }]
        );
        let mut b = MapBuilder::new(h, None);
        let c = 0x10000u64;
        // clusters 0 and 1 contiguous, cluster 3 a v3 zero cluster, cluster 5 elsewhere
        let t = l2_with(&[
            (0, 0x50000 | 1 << 63),
            (1, 0x60000),
            (3, 0x70000 | 1),
            (5, 0x90000),
        ]);
        b.add_l2(refs[0], &t).unwrap();
        let m = b.finish().unwrap();
        assert_eq!(m.extents().len(), 2);
        assert_eq!(
            m.extents()[0],
            Extent {
                host: 0x50000,
                guest: 0,
                len: 2 * c as u32,
                compressed_len: 0
            }
        );
        let zeros: Vec<_> = m.zero_ranges().collect();
        assert_eq!(zeros, vec![(2 * c, 3 * c), (6 * c, (1 << 30) - 6 * c)]);
    }

    #[test]
    fn decodes_compressed_entries() {
        let h = Header::parse(&v3()).unwrap();
        let mut b = MapBuilder::new(h, Some(0x100000));
        // x = 62 - 8 = 54: offset 0x50123, 3 extra sectors
        let entry = COMPRESSED | (3u64 << 54) | 0x50123;
        b.add_l2(
            L2Ref {
                l1_index: 0,
                offset: 0x40000,
            },
            &l2_with(&[(0, entry)]),
        )
        .unwrap();
        let m = b.finish().unwrap();
        assert_eq!(m.extents()[0].compressed_len, 4 * 512 - 0x123);
    }

    #[test]
    fn refuses_bad_metadata() {
        let h = Header::parse(&v3()).unwrap();
        let mut l1 = vec![0u8; 16];
        l1[..8].copy_from_slice(&0x40200u64.to_be_bytes());
        assert!(parse_l1(&h, &l1, None)
            .unwrap_err()
            .contains("not cluster-aligned"));
        l1[..8].copy_from_slice(&0x400000u64.to_be_bytes());
        assert!(parse_l1(&h, &l1, Some(0x100000))
            .unwrap_err()
            .contains("beyond the end"));
        l1[..8].copy_from_slice(&0x40000u64.to_be_bytes());
        l1[8..].copy_from_slice(&0x40000u64.to_be_bytes());
        assert!(parse_l1(&h, &l1, None).unwrap_err().contains("share"));

        // data cluster on top of the L1 table
        let mut b = MapBuilder::new(h.clone(), None);
        b.add_l2(
            L2Ref {
                l1_index: 0,
                offset: 0x40000,
            },
            &l2_with(&[(0, 0x30000)]),
        )
        .unwrap();
        assert!(b.finish().unwrap_err().contains("overlaps metadata"));
        // two guest clusters on one host cluster
        let mut b = MapBuilder::new(h.clone(), None);
        b.add_l2(
            L2Ref {
                l1_index: 0,
                offset: 0x40000,
            },
            &l2_with(&[(0, 0x50000), (2, 0x50000)]),
        )
        .unwrap();
        assert!(b.finish().unwrap_err().contains("overlap"));
        // L2 table overlapping the L1 table
        let mut b = MapBuilder::new(h, None);
        b.add_l2(
            L2Ref {
                l1_index: 0,
                offset: 0x30000,
            },
            &l2_with(&[]),
        )
        .unwrap();
        assert!(b.finish().unwrap_err().contains("overlap"));
    }
}
