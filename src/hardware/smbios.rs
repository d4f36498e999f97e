//! A small SMBIOS structure-table parser for the raw dump the kernel exports in
//! `/sys/firmware/dmi/tables/DMI` (with its entry point in `.../smbios_entry_point`).
//!
//! Firmware tables are untrusted input: every read is bounds-checked, a structure whose header
//! claims more bytes than remain ends the walk, and nothing here can panic on any byte string
//! (see the fuzz-style test at the bottom).

use super::HostRoot;

/// The SMBIOS version announced by the entry point (`_SM_` or `_SM3_`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub docrev: u8,
}

/// One structure: its formatted area (header included) and its string set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure<'a> {
    pub kind: u8,
    pub handle: u16,
    /// The whole formatted area, starting with the 4-byte header.
    pub data: &'a [u8],
    strings: Vec<&'a [u8]>,
}

impl<'a> Structure<'a> {
    /// The formatted area's declared length.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&self, off: usize) -> Option<u8> {
        self.data.get(off).copied()
    }

    pub fn word(&self, off: usize) -> Option<u16> {
        Some(u16::from_le_bytes([
            *self.data.get(off)?,
            *self.data.get(off + 1)?,
        ]))
    }

    pub fn dword(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn qword(&self, off: usize) -> Option<u64> {
        let b = self.data.get(off..off + 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }

    /// String number `n` (1-based) of the string set, as raw bytes.
    pub fn string_bytes(&self, n: u8) -> Option<&'a [u8]> {
        if n == 0 {
            return None;
        }
        self.strings.get(usize::from(n) - 1).copied()
    }

    /// The string referenced by the byte at `off`, like dmidecode's `dmi_string`:
    /// `Not Specified` for 0, `<BAD INDEX>` for a reference past the string set, and
    /// non-printable bytes shown as `.`.
    pub fn string_at(&self, off: usize) -> Option<String> {
        let n = self.byte(off)?;
        Some(match n {
            0 => "Not Specified".to_string(),
            _ => match self.string_bytes(n) {
                Some(raw) => raw
                    .iter()
                    .map(|b| {
                        if (0x20..0x7f).contains(b) {
                            char::from(*b)
                        } else {
                            '.'
                        }
                    })
                    .collect(),
                None => "<BAD INDEX>".to_string(),
            },
        })
    }

    /// The referenced string trimmed, or `None` for "no string"; for callers that want the
    /// value itself rather than dmidecode's rendering of it.
    pub fn string_value(&self, off: usize) -> Option<String> {
        let n = self.byte(off)?;
        let raw = self.string_bytes(n)?;
        let s = String::from_utf8_lossy(raw).trim().to_string();
        (!s.is_empty()).then_some(s)
    }
}

/// Parses the version out of an SMBIOS entry point; `None` when it is neither a 2.x nor a 3.x
/// anchor.
pub fn parse_entry_point(ep: &[u8]) -> Option<Version> {
    if ep.starts_with(b"_SM3_") {
        // SMBIOS 3: major at 0x07, minor 0x08, docrev 0x09.
        return Some(Version {
            major: *ep.get(7)?,
            minor: *ep.get(8)?,
            docrev: *ep.get(9)?,
        });
    }
    if ep.starts_with(b"_SM_") {
        let mut v = Version {
            major: *ep.get(6)?,
            minor: *ep.get(7)?,
            docrev: 0,
        };
        // Some firmware announces 2.33 or 2.51 where it means 2.3 and 2.6 (dmidecode's fix-ups).
        if (v.major, v.minor) == (2, 0x1f) || (v.major, v.minor) == (2, 0x21) {
            v.minor = 3;
        } else if (v.major, v.minor) == (2, 0x33) {
            v.minor = 6;
        }
        return Some(v);
    }
    if ep.starts_with(b"_DMI_") {
        let bcd = *ep.get(14)?;
        return Some(Version {
            major: bcd >> 4,
            minor: bcd & 0x0f,
            docrev: 0,
        });
    }
    None
}

/// Walks the structure table. Stops at the end-of-table structure (type 127), at a structure
/// shorter than its header, or where the remaining bytes cannot hold what a header claims.
pub fn parse_table(table: &[u8]) -> Vec<Structure<'_>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 4 <= table.len() {
        let kind = table[off];
        let len = usize::from(table[off + 1]);
        let handle = u16::from_le_bytes([table[off + 2], table[off + 3]]);
        if len < 4 || off + len > table.len() {
            break;
        }
        let data = &table[off..off + len];
        // The string set follows the formatted area and ends at the first pair of NULs (as
        // dmidecode finds it); strings are the NUL-separated pieces before that pair.
        let area_end = off + len;
        let Some(pair) = table[area_end..].windows(2).position(|w| w == [0, 0]) else {
            // No terminator: the table is truncated; keep the structure, end the walk.
            out.push(Structure {
                kind,
                handle,
                data,
                strings: Vec::new(),
            });
            break;
        };
        let set = &table[area_end..area_end + pair];
        let strings: Vec<&[u8]> = if set.is_empty() {
            Vec::new()
        } else {
            set.split(|b| *b == 0).collect()
        };
        let next = area_end + pair + 2;
        out.push(Structure {
            kind,
            handle,
            data,
            strings,
        });
        if kind == 127 {
            break;
        }
        off = next;
    }
    out
}

/// The host's SMBIOS dump: entry-point version (if readable) and the raw table.
pub struct Dump {
    pub version: Option<Version>,
    pub table: Vec<u8>,
}

/// Reads the SMBIOS tables the kernel exports, if there are any.
pub fn read_dump(host: &HostRoot) -> std::io::Result<Dump> {
    let dir = host.path("/sys/firmware/dmi/tables");
    let table = std::fs::read(dir.join("DMI"))?;
    let version = std::fs::read(dir.join("smbios_entry_point"))
        .ok()
        .as_deref()
        .and_then(parse_entry_point);
    Ok(Dump { version, table })
}

/// Size in bytes of an installed memory device (type 17), `None` for an empty slot or an
/// unknown size.
pub fn memory_device_size(s: &Structure<'_>) -> Option<u64> {
    let size = s.word(0x0c)?;
    match size {
        0 | 0xffff => None,
        0x7fff => {
            let mib = u64::from(s.dword(0x1c)? & 0x7fff_ffff);
            (mib > 0).then_some(mib << 20)
        }
        _ if size & 0x8000 != 0 => Some(u64::from(size & 0x7fff) << 10),
        _ => Some(u64::from(size) << 20),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds one structure: header, formatted bytes after the header, strings.
    pub(crate) fn structure(kind: u8, handle: u16, body: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut s = vec![kind, (4 + body.len()) as u8];
        s.extend_from_slice(&handle.to_le_bytes());
        s.extend_from_slice(body);
        if strings.is_empty() {
            s.extend_from_slice(&[0, 0]);
        } else {
            for st in strings {
                s.extend_from_slice(st.as_bytes());
                s.push(0);
            }
            s.push(0);
        }
        s
    }

    #[test]
    fn walks_structures_and_strings() {
        let mut t = structure(1, 0x100, &[1, 2, 3, 4], &["Vendor", "Product"]);
        t.extend(structure(17, 0x1100, &[0; 0x18], &[]));
        t.extend(structure(127, 0xfeff, &[], &[]));
        t.extend(structure(1, 0x200, &[], &["after the end"]));
        let s = parse_table(&t);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].kind, 1);
        assert_eq!(s[0].handle, 0x100);
        assert_eq!(s[0].string_at(4).as_deref(), Some("Vendor"));
        assert_eq!(s[0].string_at(5).as_deref(), Some("Product"));
        assert_eq!(s[0].string_at(6).as_deref(), Some("<BAD INDEX>"));
        assert_eq!(s[0].string_value(6), None);
        assert_eq!(s[1].kind, 17);
        assert_eq!(s[2].kind, 127);
    }

    #[test]
    fn memory_sizes() {
        let mut body = vec![0u8; 0x24];
        let mk = |size: u16, ext: u32, body: &mut Vec<u8>| {
            body[0x0c - 4..0x0c - 2].copy_from_slice(&size.to_le_bytes());
            body[0x1c - 4..0x1c].copy_from_slice(&ext.to_le_bytes());
            structure(17, 1, body, &[])
        };
        let t = mk(16384, 0, &mut body);
        assert_eq!(memory_device_size(&parse_table(&t)[0]), Some(16 << 30));
        let t = mk(0x8000 | 512, 0, &mut body);
        assert_eq!(memory_device_size(&parse_table(&t)[0]), Some(512 << 10));
        let t = mk(0x7fff, 65536, &mut body);
        assert_eq!(memory_device_size(&parse_table(&t)[0]), Some(64 << 30));
        let t = mk(0, 0, &mut body);
        assert_eq!(memory_device_size(&parse_table(&t)[0]), None);
    }

    #[test]
    fn entry_points() {
        let mut ep3 = b"_SM3_".to_vec();
        ep3.extend_from_slice(&[0, 24, 3, 2, 1]);
        assert_eq!(
            parse_entry_point(&ep3),
            Some(Version {
                major: 3,
                minor: 2,
                docrev: 1
            })
        );
        let mut ep2 = b"_SM_".to_vec();
        ep2.extend_from_slice(&[0, 31, 2, 8]);
        assert_eq!(
            parse_entry_point(&ep2),
            Some(Version {
                major: 2,
                minor: 8,
                docrev: 0
            })
        );
        assert_eq!(parse_entry_point(b"junk"), None);
        assert_eq!(parse_entry_point(b"_SM3_"), None);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A deterministic pseudo-random walk over many malformed tables.
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for round in 0..4000 {
            let len = (round % 97) as usize;
            let mut t = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t.push((x & 0xff) as u8);
            }
            for s in parse_table(&t) {
                for off in 0..40 {
                    let _ = (
                        s.byte(off),
                        s.word(off),
                        s.dword(off),
                        s.qword(off),
                        s.string_at(off),
                        s.string_value(off),
                    );
                }
                let _ = memory_device_size(&s);
            }
            let _ = parse_entry_point(&t);
        }
    }
}
