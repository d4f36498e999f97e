//! qcow2 conversion without staging.
//!
//! With a server that honours Range requests, [`fetch_map`] reads the header, the L1 table
//! and every L2 table first (neighbouring tables coalesced into one request), and the file is
//! then read once, in order ([`stream::write_extents`]): metadata may sit anywhere in the
//! file. Without Range support, [`stream::convert_sequential`] builds the map as the tables
//! go by and refuses, with the reason, an image whose data precedes the L2 table mapping it.

pub mod header;
pub mod map;
pub mod stream;

use crate::image::error::ImageError;
use crate::image::fetch::{Http, Resource};
use futures_util::StreamExt;
use header::Header;
use map::{parse_l1, L2Ref, Map, MapBuilder};

/// Tables closer than this are fetched in one request (reading the gap is cheaper than a
/// round trip).
const MAX_GAP: u64 = 1 << 20;
/// Longest single metadata request (unless one table is larger): requests are buffered whole.
const MAX_REQUEST: u64 = 2 << 20;
/// Metadata requests in flight at once: small tables far apart cost round trips, not bytes.
const IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The image is malformed or uses something we refuse.
    #[error("{0}")]
    Invalid(String),
    /// The layout needs random access the server does not offer.
    #[error(
        "the server does not support HTTP Range requests and {0}; converting it would need the \
         whole image staged in memory, which this agent never does (serve the image from a server \
         that supports Range requests)"
    )]
    NeedsRange(String),
    /// Reading the file failed.
    #[error("reading the image failed: {0}")]
    Read(std::io::Error),
    /// Writing the target failed.
    #[error("{0}")]
    Sink(ImageError),
    /// Metadata read with a Range request differs from the same bytes in the download.
    #[error("the qcow2 metadata at file offset {0:#x} changed between the Range request and the download")]
    Changed(u64),
}

/// Groups sorted, equally long file ranges into requests `(start, len)`.
pub fn coalesce(starts: impl IntoIterator<Item = u64>, len: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for s in starts {
        match out.last_mut() {
            Some((start, l)) if s <= *start + *l + MAX_GAP && s + len - *start <= MAX_REQUEST => {
                *l = s + len - *start
            }
            _ => out.push((s, len)),
        }
    }
    out
}

/// Builds the map of a remote qcow2 image with Range requests. `head` is the start of the
/// file (at least the header).
pub async fn fetch_map(http: &Http, res: &Resource, head: &[u8]) -> Result<Map, Qcow2Error> {
    let h = Header::parse(head).map_err(Qcow2Error::Invalid)?;
    let mut l1 = Vec::with_capacity(h.l1_bytes() as usize);
    if h.l1_bytes() > 0 {
        let sink = &mut |_: u64, b: &[u8]| {
            l1.extend_from_slice(b);
            Ok(())
        };
        http.read_range(res, h.l1_offset, h.l1_bytes(), sink)
            .await
            .map_err(Qcow2Error::Sink)?;
    }
    let refs = parse_l1(&h, &l1, res.total).map_err(Qcow2Error::Invalid)?;
    let mut builder = MapBuilder::new(h.clone(), res.total);
    builder.record(&l1);
    drop(l1);
    let cs = h.cluster_size();
    let groups = coalesce(refs.iter().map(|r| r.offset), cs);
    let mut filler = TableFiller::new(&refs, cs);
    let fetches = groups
        .into_iter()
        .map(|(start, len)| read_group(http, res, start, len));
    let mut results = futures_util::stream::iter(fetches).buffered(IN_FLIGHT);
    while let Some(group) = results.next().await {
        let (start, bytes) = group.map_err(Qcow2Error::Sink)?;
        filler
            .feed(start, &bytes, &mut builder)
            .map_err(Qcow2Error::Invalid)?;
    }
    builder.finish().map_err(Qcow2Error::Invalid)
}

/// One coalesced metadata request, buffered (at most [`MAX_REQUEST`] or one table).
async fn read_group(
    http: &Http,
    res: &Resource,
    start: u64,
    len: u64,
) -> Result<(u64, Vec<u8>), ImageError> {
    let mut buf = Vec::with_capacity(len as usize);
    {
        // A retried request starts over at `start`: keep only what precedes the new bytes.
        let sink = &mut |off: u64, b: &[u8]| {
            buf.truncate((off - start) as usize);
            buf.extend_from_slice(b);
            Ok(())
        };
        http.read_range(res, start, len, sink).await?;
    }
    Ok((start, buf))
}

/// Cuts a stream of file bytes into the L2 tables it contains. Idempotent for repeated bytes
/// (a retried request starts over), so each table is added once.
struct TableFiller<'a> {
    refs: &'a [L2Ref],
    cs: u64,
    table: Vec<u8>,
    done: Vec<bool>,
}

impl<'a> TableFiller<'a> {
    fn new(refs: &'a [L2Ref], cs: u64) -> Self {
        Self {
            refs,
            cs,
            table: vec![0u8; cs as usize],
            done: vec![false; refs.len()],
        }
    }

    fn feed(
        &mut self,
        mut pos: u64,
        mut data: &[u8],
        builder: &mut MapBuilder,
    ) -> Result<(), String> {
        while !data.is_empty() {
            let i = self.refs.partition_point(|r| r.offset + self.cs <= pos);
            let Some(r) = self.refs.get(i) else {
                return Ok(());
            };
            if pos < r.offset {
                let skip = (r.offset - pos).min(data.len() as u64) as usize;
                data = &data[skip..];
                pos += skip as u64;
                continue;
            }
            let within = (pos - r.offset) as usize;
            let n = (self.cs as usize - within).min(data.len());
            if !self.done[i] {
                self.table[within..within + n].copy_from_slice(&data[..n]);
                if within + n == self.cs as usize {
                    builder.add_l2(*r, &self.table)?;
                    self.done[i] = true;
                }
            }
            data = &data[n..];
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_neighbours_only() {
        let g = coalesce([0x10000, 0x20000, 0x30000, 0x1000_0000], 0x10000);
        assert_eq!(g, vec![(0x10000, 0x30000), (0x1000_0000, 0x10000)]);
        // Requests stay bounded, except that one table is never split.
        let many: Vec<u64> = (1..100).map(|i| i * 0x10000).collect();
        assert!(coalesce(many, 0x10000).iter().all(|g| g.1 <= MAX_REQUEST));
        assert_eq!(
            coalesce([0x200000, 0x400000], 0x200000),
            vec![(0x200000, 0x200000), (0x400000, 0x200000)]
        );
        assert!(coalesce([], 512).is_empty());
    }
}
