//! One sequential pass over a qcow2 file: data clusters are written to their guest offsets
//! as they go by, compressed ones decompressed on the way.

use super::header::{CompressionType, Header};
use super::map::{parse_l1, Extent, Map, MapBuilder, MetaDigest};
use super::Qcow2Error;
use crate::image::sink::BlockSink;
use sha2::{Digest, Sha256};
use std::io::Read;

/// Largest piece of an uncompressed run handled at once.
const CHUNK: usize = 4 << 20;
/// How much of the file start is buffered to parse the header.
const HEADER_PEEK: usize = 64 << 10;

/// A forward-only view of the file: bytes `[base, base + buffered)` are held, the reader is
/// positioned after them. Compressed clusters may share sectors with the next cluster, so
/// bytes stay buffered until the walk moves past them.
pub struct Window<R> {
    r: R,
    buf: Vec<u8>,
    start: usize,
    base: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    pub fn new(r: R) -> Self {
        Self {
            r,
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
        }
    }

    /// File offset of the first buffered byte.
    pub fn position(&self) -> u64 {
        self.base
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Moves to file offset `off` (never backwards), discarding what lies before it.
    pub fn advance_to(&mut self, off: u64) -> Result<(), Qcow2Error> {
        if off < self.base {
            return Err(Qcow2Error::Invalid(format!(
                "internal: cannot go back from {:#x} to {off:#x}",
                self.base
            )));
        }
        let drop = (off - self.base).min(self.buffered() as u64) as usize;
        self.start += drop;
        self.base += drop as u64;
        if self.buffered() == 0 {
            self.buf.clear();
            self.start = 0;
        }
        while self.base < off {
            let want = (off - self.base).min(CHUNK as u64) as usize;
            let got = self.read_more(want)?;
            if got == 0 {
                return Err(Qcow2Error::Invalid(format!(
                    "the file ends at byte {}, before offset {off:#x} (truncated?)",
                    self.base
                )));
            }
            self.base += got as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Appends up to `want` bytes from the reader to the buffer; returns how many.
    fn read_more(&mut self, want: usize) -> Result<usize, Qcow2Error> {
        if self.eof {
            return Ok(0);
        }
        let old = self.buf.len();
        self.buf.resize(old + want, 0);
        let mut got = 0;
        while got < want {
            match self.r.read(&mut self.buf[old + got..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old + got);
                    return Err(Qcow2Error::Read(e));
                }
            }
        }
        self.buf.truncate(old + got);
        Ok(got)
    }

    /// The next `n` bytes from the current position (fewer only at end of file).
    pub fn fill(&mut self, n: usize) -> Result<&[u8], Qcow2Error> {
        if self.buffered() < n && self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let missing = n.saturating_sub(self.buffered());
        if missing > 0 {
            self.read_more(missing)?;
        }
        let end = self.start + n.min(self.buffered());
        Ok(&self.buf[self.start..end])
    }

    /// Reads and discards the rest of the file (so the checksum sees every byte).
    pub fn drain(&mut self) -> Result<u64, Qcow2Error> {
        let skipped = self.buffered() as u64;
        self.base += skipped;
        self.buf.clear();
        self.start = 0;
        loop {
            let got = self.read_more(CHUNK)?;
            self.buf.clear();
            if got == 0 {
                return Ok(self.base);
            }
            self.base += got as u64;
        }
    }
}

/// Decompresses clusters, reusing one decompression context for the whole image.
pub struct Decompressor {
    kind: CompressionType,
    inflate: flate2::Decompress,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
}

impl Decompressor {
    pub fn new(kind: CompressionType) -> Result<Self, String> {
        let zstd = match kind {
            CompressionType::Zstd => Some(
                zstd::stream::raw::Decoder::new().map_err(|e| format!("cannot start zstd: {e}"))?,
            ),
            CompressionType::Deflate => None,
        };
        Ok(Self {
            kind,
            inflate: flate2::Decompress::new(false),
            zstd,
        })
    }

    /// Decompresses one cluster from `input` (which may run on into the next cluster's
    /// bytes) into `out`, which must then hold at least `need` bytes.
    pub fn cluster(&mut self, input: &[u8], out: &mut [u8], need: usize) -> Result<(), String> {
        let produced = match (self.kind, &mut self.zstd) {
            (CompressionType::Zstd, Some(d)) => unzstd(d, input, out)?,
            _ => inflate(&mut self.inflate, input, out)?,
        };
        if produced < need {
            return Err(format!(
                "a compressed cluster decompressed to {produced} bytes instead of {need}"
            ));
        }
        Ok(())
    }
}

fn inflate(d: &mut flate2::Decompress, input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    d.reset(false);
    d.decompress(input, out, flate2::FlushDecompress::Finish)
        .map_err(|e| format!("a deflate-compressed cluster is corrupt: {e}"))?;
    Ok(d.total_out() as usize)
}

fn unzstd(
    d: &mut zstd::stream::raw::Decoder<'static>,
    input: &[u8],
    out: &mut [u8],
) -> Result<usize, String> {
    use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
    d.reinit().map_err(|e| format!("cannot reset zstd: {e}"))?;
    let mut inb = InBuffer::around(input);
    let mut outb = OutBuffer::around(out);
    while outb.pos() < outb.capacity() && inb.pos() < inb.src.len() {
        let before = (inb.pos(), outb.pos());
        let hint = d
            .run(&mut inb, &mut outb)
            .map_err(|e| format!("a zstd-compressed cluster is corrupt: {e}"))?;
        if hint == 0 || before == (inb.pos(), outb.pos()) {
            break;
        }
    }
    Ok(outb.pos())
}

/// Writes every extent (in file order) from the file behind `w` to its guest offset, checks
/// that the metadata named by `digests` goes by unchanged, then reads the file to its end.
pub fn write_extents<R: Read>(
    w: &mut Window<R>,
    h: &Header,
    extents: &[Extent],
    digests: &[MetaDigest],
    sink: &mut dyn BlockSink,
) -> Result<(), Qcow2Error> {
    let mut cluster = vec![0u8; h.cluster_size() as usize];
    let mut decompressor = Decompressor::new(h.compression).map_err(Qcow2Error::Invalid)?;
    let mut checks = digests.iter().peekable();
    for e in extents {
        while let Some(d) = checks.next_if(|d| d.offset < e.host) {
            check_digest(w, d)?;
        }
        w.advance_to(e.host)?;
        if e.is_compressed() {
            let input = w.fill(e.compressed_len as usize)?;
            decompressor
                .cluster(input, &mut cluster, e.len as usize)
                .map_err(|m| {
                    Qcow2Error::Invalid(format!("cluster at file offset {:#x}: {m}", e.host))
                })?;
            sink.write_at(e.guest, &cluster[..e.len as usize])
                .map_err(Qcow2Error::Sink)?;
        } else {
            copy_run(w, e, sink)?;
        }
    }
    for d in checks {
        check_digest(w, d)?;
    }
    w.drain()?;
    Ok(())
}

/// Hashes the metadata range `d` as it goes by and compares.
fn check_digest<R: Read>(w: &mut Window<R>, d: &MetaDigest) -> Result<(), Qcow2Error> {
    w.advance_to(d.offset)?;
    let mut hash = Sha256::new();
    let mut done = 0u64;
    while done < d.len {
        let n = (d.len - done).min(CHUNK as u64) as usize;
        let bytes = w.fill(n)?;
        if bytes.len() < n {
            return Err(Qcow2Error::Invalid(format!(
                "the file ends inside the metadata at {:#x} (truncated?)",
                d.offset
            )));
        }
        hash.update(bytes);
        done += n as u64;
        w.advance_to(d.offset + done)?;
    }
    if <[u8; 32]>::from(hash.finalize()) != d.sha256 {
        return Err(Qcow2Error::Changed(d.offset));
    }
    Ok(())
}

fn copy_run<R: Read>(
    w: &mut Window<R>,
    e: &Extent,
    sink: &mut dyn BlockSink,
) -> Result<(), Qcow2Error> {
    let mut done = 0u64;
    while done < u64::from(e.len) {
        let n = (u64::from(e.len) - done).min(CHUNK as u64) as usize;
        let data = w.fill(n)?;
        if data.len() < n {
            return Err(Qcow2Error::Invalid(format!(
                "the file ends inside the data cluster at {:#x} (truncated?)",
                e.host + done
            )));
        }
        sink.write_at(e.guest + done, data)
            .map_err(Qcow2Error::Sink)?;
        done += n as u64;
        w.advance_to(e.host + done)?;
    }
    Ok(())
}

/// Zeroes every guest range the image does not allocate.
pub fn write_zeros(map: &Map, sink: &mut dyn BlockSink) -> Result<(), Qcow2Error> {
    for (off, len) in map.zero_ranges() {
        sink.zero(off, len).map_err(Qcow2Error::Sink)?;
    }
    Ok(())
}

/// Converts a qcow2 file read strictly in order, without Range requests: the header, the L1
/// table and every L2 table must come before the data they map.
pub fn convert_sequential<R: Read>(
    r: R,
    file_size: Option<u64>,
    sink: &mut dyn BlockSink,
) -> Result<Header, Qcow2Error> {
    let mut w = Window::new(r);
    let h = Header::parse(w.fill(HEADER_PEEK)?).map_err(Qcow2Error::Invalid)?;
    w.advance_to(h.l1_offset)?;
    let refs =
        parse_l1(&h, w.fill(h.l1_bytes() as usize)?, file_size).map_err(Qcow2Error::Invalid)?;
    let mut builder = MapBuilder::new(h.clone(), file_size);
    for r in refs {
        if r.offset < w.position() {
            return Err(Qcow2Error::NeedsRange(format!(
                "its L2 table at {:#x} precedes the L1 table",
                r.offset
            )));
        }
        w.advance_to(r.offset)?;
        let table = w.fill(h.cluster_size() as usize)?;
        builder.add_l2(r, table).map_err(Qcow2Error::Invalid)?;
    }
    let map = builder.finish().map_err(Qcow2Error::Invalid)?;
    let passed = w.position();
    let extents = map.extents();
    if let Some(e) = extents
        .iter()
        .filter(|e| e.host < passed)
        .min_by_key(|e| e.host)
    {
        return Err(Qcow2Error::NeedsRange(format!(
            "data at file offset {:#x} comes before the L2 table at {passed:#x} that maps it",
            e.host
        )));
    }
    sink.reserve(h.virtual_size).map_err(Qcow2Error::Sink)?;
    write_zeros(&map, sink)?;
    let (extents, digests) = map.into_host_order();
    write_extents(&mut w, &h, &extents, &digests, sink)?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_moves_forward_and_buffers() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut w = Window::new(&data[..]);
        assert_eq!(w.fill(10).unwrap(), &data[..10]);
        w.advance_to(5).unwrap();
        assert_eq!(w.fill(10).unwrap(), &data[5..15]);
        w.advance_to(9000).unwrap();
        assert_eq!(w.fill(2000).unwrap(), &data[9000..]);
        assert!(w.advance_to(4).is_err());
        assert!(w.advance_to(20_000).is_err());
    }

    #[test]
    fn inflates_raw_deflate_and_zstd() {
        use std::io::Write;
        let plain = vec![7u8; 4096];
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&plain).unwrap();
        let mut packed = enc.finish().unwrap();
        packed.extend_from_slice(&[0xAA; 100]); // the next cluster's bytes follow
        let mut d = Decompressor::new(CompressionType::Deflate).unwrap();
        for _ in 0..2 {
            let mut out = vec![0u8; 4096];
            d.cluster(&packed, &mut out, 4096).unwrap();
            assert_eq!(out, plain, "the context is reusable");
        }
        let mut out = vec![0u8; 4096];
        assert!(d.cluster(&[1, 2, 3], &mut out, 4096).is_err());
        let z = zstd::bulk::compress(&plain, 3).unwrap();
        let mut d = Decompressor::new(CompressionType::Zstd).unwrap();
        for _ in 0..2 {
            let mut out = vec![0u8; 4096];
            d.cluster(&z, &mut out, 4096).unwrap();
            assert_eq!(out, plain);
        }
    }
}
