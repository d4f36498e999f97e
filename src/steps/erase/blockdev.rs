//! The device handle every erase method writes through: a block device (or, in tests, a
//! regular file) opened for direct I/O, with the block-layer ioctls the erase methods need
//! (size, sector size, zero-out, discard, buffer flush, partition re-read).
//!
//! Direct I/O keeps a multi-terabyte overwrite from churning the page cache of a small
//! ramdisk and makes every write reach the device before the next one is counted. File systems
//! that refuse O_DIRECT (tmpfs) get a buffered handle instead, synced at the end.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Memory alignment for O_DIRECT buffers (covers every logical block size in use).
pub const MEM_ALIGN: usize = 4096;

mod ioctl {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, 0x1268, libc::c_int);
    nix::ioctl_none_bad!(blkrrpart, 0x125f);
    nix::ioctl_none_bad!(blkflsbuf, 0x1261);
    nix::ioctl_write_ptr_bad!(blkdiscard, 0x1277, [u64; 2]);
    nix::ioctl_write_ptr_bad!(blksecdiscard, 0x127d, [u64; 2]);
    nix::ioctl_write_ptr_bad!(blkzeroout, 0x127f, [u64; 2]);
}

/// An opened erase target.
pub struct Device {
    path: PathBuf,
    /// Direct-I/O handle when the device accepts O_DIRECT, else buffered.
    file: File,
    /// Buffered handle for unaligned writes and for libblkid.
    buffered: File,
    direct: bool,
    block: bool,
    size: u64,
    sector: u64,
}

impl Device {
    /// Opens `path` read-write. The caller has asked the disk guard already.
    pub fn open(path: &Path) -> io::Result<Self> {
        let block = std::fs::metadata(path)?.file_type().is_block_device();
        let open = |flags: i32| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        let buffered = open(0)?;
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
            Err(e) => return Err(e),
        };
        let (size, sector) = if block {
            geometry(&buffered)?
        } else {
            (buffered.metadata()?.len(), 512)
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            buffered,
            direct,
            block,
            size,
            sector,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capacity in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Logical sector size in bytes.
    pub fn sector(&self) -> u64 {
        self.sector
    }

    pub fn is_block_device(&self) -> bool {
        self.block
    }

    /// The buffered descriptor (libblkid probes and wipes through it).
    pub fn buffered(&self) -> &File {
        &self.buffered
    }

    /// Writes all of `data` at `off`; direct when the range is sector-aligned.
    pub fn write_all_at(&self, data: &[u8], off: u64) -> io::Result<()> {
        let aligned = off % self.sector == 0
            && data.len() as u64 % self.sector == 0
            && data.as_ptr() as usize % MEM_ALIGN == 0;
        if self.direct && aligned {
            self.file.write_all_at(data, off)
        } else {
            self.buffered.write_all_at(data, off)
        }
    }

    /// Reads exactly `buf.len()` bytes at `off`, bypassing the page cache when possible.
    pub fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let aligned = off % self.sector == 0
            && buf.len() as u64 % self.sector == 0
            && buf.as_ptr() as usize % MEM_ALIGN == 0;
        if self.direct && aligned {
            self.file.read_exact_at(buf, off)
        } else {
            self.buffered.read_exact_at(buf, off)
        }
    }

    /// Makes the device read zeros over `[off, off+len)`: BLKZEROOUT on block devices (offloaded
    /// to the device when it supports WRITE ZEROES / WRITE SAME, written by the kernel
    /// otherwise); `Ok(false)` when the device refuses it and the caller must write zeros.
    pub fn zero_out(&self, off: u64, len: u64) -> io::Result<bool> {
        if !self.block {
            return Ok(false);
        }
        // SAFETY: BLKZEROOUT reads a [start, length] pair of u64 from the pointer.
        match unsafe { ioctl::blkzeroout(self.file.as_raw_fd(), &[off, len]) } {
            Ok(_) => Ok(true),
            Err(nix::errno::Errno::EOPNOTSUPP)
            | Err(nix::errno::Errno::ENOTTY)
            | Err(nix::errno::Errno::EINVAL) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Discards the whole device: a secure discard when `secure`, else a plain one.
    pub fn discard_all(&self, secure: bool) -> io::Result<()> {
        if !self.block {
            return Err(io::Error::from_raw_os_error(libc::ENOTBLK));
        }
        let range = [0u64, self.size];
        let fd = self.file.as_raw_fd();
        // SAFETY: both ioctls read a [start, length] pair of u64 from the pointer.
        let r = if secure {
            unsafe { ioctl::blksecdiscard(fd, &range) }
        } else {
            unsafe { ioctl::blkdiscard(fd, &range) }
        };
        r.map(drop).map_err(io::Error::from)
    }

    /// Writes back and drops the device's page cache (so reads see what the device returns).
    pub fn flush_buffers(&self) -> io::Result<()> {
        self.sync()?;
        if self.block {
            // SAFETY: BLKFLSBUF takes no argument.
            unsafe { ioctl::blkflsbuf(self.buffered.as_raw_fd()) }.map_err(io::Error::from)?;
        }
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.buffered.sync_all()?;
        self.file.sync_all()
    }

    /// Tells the kernel to re-read the partition table of a whole disk.
    pub fn reread_partitions(&self) -> io::Result<()> {
        // SAFETY: BLKRRPART takes no argument.
        unsafe { ioctl::blkrrpart(self.buffered.as_raw_fd()) }
            .map(drop)
            .map_err(io::Error::from)
    }
}

/// The size of an open device or file.
pub fn size_of(file: &File) -> io::Result<u64> {
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        geometry(file).map(|(size, _)| size)
    } else {
        Ok(meta.len())
    }
}

fn geometry(file: &File) -> io::Result<(u64, u64)> {
    let fd = file.as_raw_fd();
    let mut size = 0u64;
    let mut ssz: libc::c_int = 0;
    // SAFETY: both ioctls write one integer of the given type.
    unsafe { ioctl::blkgetsize64(fd, &mut size) }.map_err(io::Error::from)?;
    unsafe { ioctl::blksszget(fd, &mut ssz) }.map_err(io::Error::from)?;
    Ok((size, u64::try_from(ssz).unwrap_or(512).max(512)))
}

/// A zeroed heap buffer whose usable part starts on a [`MEM_ALIGN`] boundary.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + MEM_ALIGN];
        let start = storage.as_ptr().align_offset(MEM_ALIGN);
        Self {
            storage,
            start,
            len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_and_zeroed() {
        for len in [512, 4096, 1 << 20] {
            let b = AlignedBuf::new(len);
            assert_eq!(b.as_slice().as_ptr() as usize % MEM_ALIGN, 0);
            assert_eq!(b.as_slice().len(), len);
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn files_open_with_their_length_and_take_unaligned_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk");
        std::fs::write(&p, vec![7u8; 10_000]).unwrap();
        let d = Device::open(&p).unwrap();
        assert_eq!(
            (d.size(), d.sector(), d.is_block_device()),
            (10_000, 512, false)
        );
        d.write_all_at(&[1, 2, 3], 9_997).unwrap();
        let mut buf = AlignedBuf::new(512);
        buf.as_mut_slice().fill(9);
        d.write_all_at(buf.as_slice(), 512).unwrap();
        assert!(!d.zero_out(0, 512).unwrap(), "files have no BLKZEROOUT");
        d.sync().unwrap();
        let data = std::fs::read(&p).unwrap();
        assert_eq!(&data[9_997..], &[1, 2, 3]);
        assert!(data[512..1024].iter().all(|&x| x == 9));
        assert!(d.discard_all(false).is_err());
    }

    #[test]
    fn opening_a_missing_device_names_the_os_error() {
        let e = Device::open(Path::new("/nonexistent/disk")).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
