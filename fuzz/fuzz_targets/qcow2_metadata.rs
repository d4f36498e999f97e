//! Fuzzes the qcow2 metadata parser and the one-pass converter with whole hostile files.
//!
//! Each input is a complete qcow2 file. It goes through both ways the agent reads qcow2:
//! the mapped way (header, L1 and L2 tables read by offset, as with HTTP Range requests, then
//! one pass over the file) and the sequential way (no random access at all). Neither may
//! panic, hang, or allocate without bound; the converted disk lands in a capped memory sink.
#![no_main]

use ironic_agent::image::qcow2::header::Header;
use ironic_agent::image::qcow2::map::{parse_l1, MapBuilder};
use ironic_agent::image::qcow2::stream::{self, Window};
use ironic_agent::image::qcow2::Qcow2Error;
use ironic_agent::image::sink::MemSink;
use libfuzzer_sys::fuzz_target;

/// Largest virtual disk the harness materialises.
const LIMIT: u64 = 16 << 20;

fn slice(data: &[u8], off: u64, len: u64) -> &[u8] {
    let start = (off.min(data.len() as u64)) as usize;
    let end = (off.saturating_add(len).min(data.len() as u64)) as usize;
    &data[start..end]
}

fn mapped(data: &[u8]) {
    let Ok(h) = Header::parse(data) else { return };
    let size = Some(data.len() as u64);
    let Ok(refs) = parse_l1(&h, slice(data, h.l1_offset, h.l1_bytes()), size) else { return };
    let l1 = slice(data, h.l1_offset, h.l1_bytes());
    let mut b = MapBuilder::new(h.clone(), size);
    b.record(l1);
    for r in refs {
        if b.add_l2(r, slice(data, r.offset, h.cluster_size())).is_err() {
            return;
        }
    }
    let Ok(map) = b.finish() else { return };
    if h.virtual_size > LIMIT {
        let _ = map.zero_ranges().count();
        return;
    }
    let mut sink = MemSink::new(LIMIT);
    if stream::write_zeros(&map, &mut sink).is_err() {
        return;
    }
    let (extents, digests) = map.into_host_order();
    let mut w = Window::new(data);
    // The same bytes go by, so the metadata check must pass whenever the walk gets there.
    if let Err(Qcow2Error::Changed(off)) = stream::write_extents(&mut w, &h, &extents, &digests, &mut sink) {
        panic!("metadata at {off:#x} reported changed although the file is the same");
    }
}

fn sequential(data: &[u8]) {
    let mut sink = MemSink::new(LIMIT);
    let _ = stream::convert_sequential(data, Some(data.len() as u64), &mut sink);
}

fuzz_target!(|data: &[u8]| {
    mapped(data);
    sequential(data);
});
