//! The qcow2 header (docs/interop/qcow2.txt in QEMU): parsed, and refused when we cannot
//! convert the image safely on our own.

/// The features IPA's inspector and we refuse, and the ones we handle.
const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;
/// QEMU's limit on the L1 table (32 MiB).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Largest virtual size we accept (QEMU's own limit is 2^63 - 512; 2^61 keeps arithmetic safe).
const MAX_VIRTUAL_SIZE: u64 = 1 << 61;

/// How compressed clusters are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate (no zlib header), QEMU's default.
    Deflate,
    Zstd,
}

/// The parts of the header the conversion uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    pub virtual_size: u64,
    pub l1_size: u32,
    pub l1_offset: u64,
    pub compression: CompressionType,
    /// Bytes of the header proper (72 for v2, `header_length` for v3).
    pub header_len: u32,
}

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn be64(b: &[u8], o: usize) -> u64 {
    (u64::from(be32(b, o)) << 32) | u64::from(be32(b, o + 4))
}

impl Header {
    /// Parses and checks the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < 72 || &b[..4] != b"QFI\xfb" {
            return Err("the qcow2 header is missing or truncated".into());
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(format!(
                "qcow2 version {version} is not supported (only 2 and 3 are)"
            ));
        }
        if be64(b, 8) != 0 {
            return Err("the qcow2 image has a backing file, which is not allowed".into());
        }
        if be32(b, 32) != 0 {
            return Err("the qcow2 image is encrypted, which is not supported".into());
        }
        let cluster_bits = be32(b, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(format!(
                "qcow2 cluster size 2^{cluster_bits} is outside 512 B..2 MiB"
            ));
        }
        let (header_len, compression) = if version == 3 {
            Self::parse_v3(b)?
        } else {
            (72, CompressionType::Deflate)
        };
        let h = Self {
            version,
            cluster_bits,
            virtual_size: be64(b, 24),
            l1_size: be32(b, 36),
            l1_offset: be64(b, 40),
            compression,
            header_len,
        };
        h.check_geometry()?;
        Ok(h)
    }

    /// Version 3 fields: feature bits, header length, compression type.
    fn parse_v3(b: &[u8]) -> Result<(u32, CompressionType), String> {
        if b.len() < 104 {
            return Err("the qcow2 v3 header is truncated".into());
        }
        let incompat = be64(b, 72);
        if incompat & INCOMPAT_DATA_FILE != 0 {
            return Err(
                "the qcow2 image keeps its data in an external data file, which is not allowed"
                    .into(),
            );
        }
        if incompat & INCOMPAT_CORRUPT != 0 {
            return Err("the qcow2 image is marked corrupt".into());
        }
        if incompat & INCOMPAT_EXTL2 != 0 {
            return Err(
                "the qcow2 image uses extended L2 entries (subclusters), which are not supported"
                    .into(),
            );
        }
        let unknown = incompat & !(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION);
        if unknown != 0 {
            return Err(format!(
                "the qcow2 image has unknown incompatible features {unknown:#x}"
            ));
        }
        let header_len = be32(b, 100);
        if header_len < 104 || header_len as usize > b.len() {
            return Err(format!("the qcow2 header length {header_len} is invalid"));
        }
        let ctype = if header_len > 104 { b[104] } else { 0 };
        let compression = match (incompat & INCOMPAT_COMPRESSION != 0, ctype) {
            (false, 0) | (true, 0) => CompressionType::Deflate,
            (true, 1) => CompressionType::Zstd,
            (false, _) => {
                return Err("the qcow2 compression type is set without its feature bit".into())
            }
            (true, t) => return Err(format!("qcow2 compression type {t} is not supported")),
        };
        Ok((header_len, compression))
    }

    fn check_geometry(&self) -> Result<(), String> {
        if self.virtual_size > MAX_VIRTUAL_SIZE {
            return Err(format!(
                "the qcow2 virtual size {} is too large",
                self.virtual_size
            ));
        }
        if u64::from(self.l1_size) * 8 > MAX_L1_BYTES {
            return Err(format!(
                "the qcow2 L1 table of {} entries is larger than 32 MiB",
                self.l1_size
            ));
        }
        if u64::from(self.l1_size) < self.l1_entries_needed() {
            return Err(format!(
                "the qcow2 L1 table of {} entries cannot map {} bytes",
                self.l1_size, self.virtual_size
            ));
        }
        if self.l1_entries_needed() > 0
            && (self.l1_offset == 0 || self.l1_offset % self.cluster_size() != 0)
        {
            return Err(format!(
                "the qcow2 L1 table offset {:#x} is not cluster-aligned",
                self.l1_offset
            ));
        }
        Ok(())
    }

    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries in one L2 table (one cluster of 8-byte entries).
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Guest bytes one L2 table maps.
    pub fn l2_span(&self) -> u64 {
        self.cluster_size() * self.l2_entries()
    }

    /// L1 entries the virtual size needs (later ones are ignored).
    pub fn l1_entries_needed(&self) -> u64 {
        self.virtual_size.div_ceil(self.l2_span())
    }

    /// Bytes of L1 table to read.
    pub fn l1_bytes(&self) -> u64 {
        self.l1_entries_needed() * 8
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A v3 header: 64 KiB clusters, 1 GiB, L1 at 0x30000.
    pub fn v3() -> Vec<u8> {
        let mut b = vec![0u8; 112];
        b[..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
        b[36..40].copy_from_slice(&2u32.to_be_bytes());
        b[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b
    }

    #[test]
    fn parses_v3() {
        let h = Header::parse(&v3()).unwrap();
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.l1_entries_needed(), 2);
        assert_eq!(h.compression, CompressionType::Deflate);
    }

    #[test]
    fn refuses_what_it_cannot_convert() {
        let mut b = v3();
        b[15] = 1;
        assert!(Header::parse(&b).unwrap_err().contains("backing file"));
        let mut b = v3();
        b[35] = 2;
        assert!(Header::parse(&b).unwrap_err().contains("encrypted"));
        let mut b = v3();
        b[79] = INCOMPAT_DATA_FILE as u8;
        assert!(Header::parse(&b)
            .unwrap_err()
            .contains("external data file"));
        let mut b = v3();
        b[78] = 1;
        assert!(Header::parse(&b)
            .unwrap_err()
            .contains("unknown incompatible"));
        let mut b = v3();
        b[79] = INCOMPAT_COMPRESSION as u8;
        b[104] = 1;
        assert_eq!(
            Header::parse(&b).unwrap().compression,
            CompressionType::Zstd
        );
        let mut b = v3();
        b[23] = 22;
        assert!(Header::parse(&b).is_err());
        let mut b = v3();
        b[39] = 1; // one L1 entry cannot map 1 GiB with 64 KiB clusters
        assert!(Header::parse(&b).is_err());
        assert!(Header::parse(&v3()[..60]).is_err());
    }
}
