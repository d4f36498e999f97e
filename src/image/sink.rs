//! The sink: puts decoded bytes on the target disk (or regular file).
//!
//! * Writes are coalesced into large aligned buffers and, on block devices, issued with
//!   O_DIRECT so a multi-GiB image does not churn the page cache of a small ramdisk.
//! * Zeros are written as zeros: an all-zero buffer becomes BLKZEROOUT on a block device (the
//!   disk is never assumed to be blank) or a punched hole in a regular file.
//! * The first MiB of the target (MBR, GPT, bootloader) is held back in memory and written
//!   only by [`Writer::commit`], which the pipeline calls after the checksum verified. A failed
//!   or aborted write therefore leaves the old partition table in place, never a half-written
//!   disk that looks bootable.
//! * After the commit: fsync, the backup GPT moved to the end of a larger disk, and the
//!   kernel asked to re-read the partition table.
//!
//! Everything here is blocking I/O; the pipeline runs it on a blocking thread.

use super::error::ImageError;
use super::gpt;
use crate::safety::DiskGuard;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes at the start of the target held back until the image verified.
pub const HEAD_LEN: u64 = 1 << 20;
/// Size of one coalesced write.
const WRITE_BUF: usize = 4 << 20;
/// Memory alignment of write buffers (enough for any logical block size up to 4 KiB).
const MEM_ALIGN: usize = 4096;

mod ioctl {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, 0x1268, libc::c_int);
    nix::ioctl_none_bad!(blkrrpart, 0x125f);
    nix::ioctl_write_ptr_bad!(blkzeroout, 0x127f, [u64; 2]);
}

/// An opened target: a block device or a regular file.
pub struct Target {
    path: PathBuf,
    file: File,
    /// O_DIRECT handle, block devices only.
    direct: Option<File>,
    /// Device capacity (block devices).
    capacity: Option<u64>,
    sector: u64,
}

impl Target {
    /// Opens `path` for writing, after the guard allowed it. A missing path becomes a file.
    pub fn open(path: &Path, guard: &DiskGuard) -> Result<Self, ImageError> {
        guard.check(path).map_err(|e| ImageError::write(path, e))?;
        let is_block = std::fs::metadata(path)
            .map(|m| m.file_type().is_block_device())
            .unwrap_or(false);
        let open = |flags: i32| {
            std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .create(!is_block)
                .truncate(false)
                .custom_flags(flags)
                .open(path)
                .map_err(|e| ImageError::write(path, format!("cannot open it: {e}")))
        };
        if !is_block {
            let file = open(0)?;
            return Ok(Self {
                path: path.to_path_buf(),
                file,
                direct: None,
                capacity: None,
                sector: 512,
            });
        }
        // O_EXCL on a block device fails when it is mounted or otherwise claimed.
        let direct = open(libc::O_DIRECT | libc::O_EXCL)?;
        let file = open(0)?;
        let (capacity, sector) = block_geometry(&file).map_err(|e| ImageError::write(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            direct: Some(direct),
            capacity: Some(capacity),
            sector,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device size; `None` for regular files, which grow.
    pub fn capacity(&self) -> Option<u64> {
        self.capacity
    }

    pub fn is_block_device(&self) -> bool {
        self.direct.is_some()
    }

    fn err(&self, what: &str, e: io::Error) -> ImageError {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EFBIG) => ImageError::OutOfSpace {
                device: self.path.clone(),
                reason: format!("{what}: {e}"),
            },
            _ => ImageError::write(&self.path, format!("{what}: {e}")),
        }
    }

    fn check_fits(&self, off: u64, len: u64) -> Result<(), ImageError> {
        match self.capacity {
            Some(cap) if off.saturating_add(len) > cap => Err(ImageError::OutOfSpace {
                device: self.path.clone(),
                reason: format!(
                    "the image needs at least {} bytes but the device has {cap}",
                    off + len
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Writes `data` at `off`, with O_DIRECT for the aligned part when possible.
    fn write_at(&self, off: u64, data: &[u8]) -> Result<(), ImageError> {
        self.check_fits(off, data.len() as u64)?;
        let mut done = 0usize;
        if let Some(direct) = &self.direct {
            let aligned = (data.len() as u64 / self.sector * self.sector) as usize;
            let mem_ok = (data.as_ptr() as usize) % MEM_ALIGN == 0;
            if off % self.sector == 0 && aligned > 0 && mem_ok {
                direct
                    .write_all_at(&data[..aligned], off)
                    .map_err(|e| self.err(&format!("write at offset {off}"), e))?;
                done = aligned;
            }
        }
        let rest = &data[done..];
        let at = off + done as u64;
        self.file
            .write_all_at(rest, at)
            .map_err(|e| self.err(&format!("write at offset {at}"), e))
    }

    /// Makes `[off, off+len)` read as zeros.
    fn zero(&self, off: u64, len: u64) -> Result<(), ImageError> {
        if len == 0 {
            return Ok(());
        }
        self.check_fits(off, len)?;
        if self.fast_zero(off, len).is_ok() {
            return Ok(());
        }
        let zeros = vec![0u8; WRITE_BUF.min(len as usize)];
        let mut pos = off;
        while pos < off + len {
            let n = (off + len - pos).min(zeros.len() as u64) as usize;
            self.file
                .write_all_at(&zeros[..n], pos)
                .map_err(|e| self.err(&format!("zero at offset {pos}"), e))?;
            pos += n as u64;
        }
        Ok(())
    }

    /// BLKZEROOUT on devices, a punched hole in files; Err when unsupported.
    fn fast_zero(&self, off: u64, len: u64) -> nix::Result<()> {
        let fd = self.file.as_raw_fd();
        if self.is_block_device() {
            if off % 512 != 0 || len % 512 != 0 {
                return Err(nix::errno::Errno::EINVAL);
            }
            // SAFETY: the fd is open and the range is a valid [start, len] pair.
            unsafe { ioctl::blkzeroout(fd, &[off, len]) }.map(drop)
        } else {
            let len = i64::try_from(len).map_err(|_| nix::errno::Errno::EINVAL)?;
            let off = i64::try_from(off).map_err(|_| nix::errno::Errno::EINVAL)?;
            let mode = nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE;
            nix::fcntl::fallocate(fd, mode, off, len)
        }
    }

    fn sync(&self) -> Result<(), ImageError> {
        if let Some(d) = &self.direct {
            d.sync_all().map_err(|e| self.err("fsync", e))?;
        }
        self.file.sync_all().map_err(|e| self.err("fsync", e))
    }

    /// Asks the kernel to re-read the partition table. Loop devices without partition
    /// scanning answer EINVAL; that is not a failure of the write.
    fn reread_partitions(&self) {
        if !self.is_block_device() {
            return;
        }
        // SAFETY: BLKRRPART takes no argument.
        if let Err(e) = unsafe { ioctl::blkrrpart(self.file.as_raw_fd()) } {
            tracing::warn!(device = %self.path.display(), "re-reading the partition table failed: {e}");
        }
    }
}

fn block_geometry(file: &File) -> Result<(u64, u64), String> {
    let fd = file.as_raw_fd();
    let mut size = 0u64;
    let mut ssz: libc::c_int = 0;
    // SAFETY: both ioctls write one integer of the given type.
    unsafe { ioctl::blkgetsize64(fd, &mut size) }
        .map_err(|e| format!("cannot read the device size: {e}"))?;
    unsafe { ioctl::blksszget(fd, &mut ssz) }
        .map_err(|e| format!("cannot read the sector size: {e}"))?;
    Ok((size, u64::try_from(ssz).unwrap_or(512).max(512)))
}

/// A heap buffer whose usable part starts on a [`MEM_ALIGN`] boundary (for O_DIRECT).
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(cap: usize) -> Self {
        let storage = vec![0u8; cap + MEM_ALIGN];
        let start = storage.as_ptr().align_offset(MEM_ALIGN);
        Self {
            storage,
            start,
            len: 0,
        }
    }

    fn cap(&self) -> usize {
        self.storage.len() - MEM_ALIGN
    }

    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Appends as much of `src` as fits; returns how much.
    fn push(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.cap() - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&src[..n]);
        self.len += n;
        n
    }
}

/// True when every byte is zero (64 bytes at a time, which the compiler vectorises).
pub fn is_zero(data: &[u8]) -> bool {
    let blocks = data.chunks_exact(64);
    let tail = blocks.remainder();
    tail.iter().all(|&b| b == 0)
        && blocks
            .into_iter()
            .all(|w| w.iter().fold(0u8, |a, b| a | b) == 0)
}

/// Where decoded image bytes go: the disk writer, or memory in tests and fuzzing.
pub trait BlockSink {
    /// Writes image bytes at target offset `off`.
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), ImageError>;
    /// Makes `[off, off+len)` read as zeros.
    fn zero(&mut self, off: u64, len: u64) -> Result<(), ImageError>;
    /// Refuses, before anything is written, an image of `size` bytes that cannot fit.
    fn reserve(&mut self, size: u64) -> Result<(), ImageError>;
}

/// An in-memory target, capped so hostile input cannot exhaust memory.
#[derive(Debug, Default)]
pub struct MemSink {
    pub data: Vec<u8>,
    pub limit: u64,
}

impl MemSink {
    pub fn new(limit: u64) -> Self {
        Self {
            data: Vec::new(),
            limit,
        }
    }

    fn grow(&mut self, end: u64) -> Result<(), ImageError> {
        if end > self.limit {
            return Err(ImageError::OutOfSpace {
                device: "memory".into(),
                reason: format!("{end} bytes exceed the limit"),
            });
        }
        if end as usize > self.data.len() {
            self.data.resize(end as usize, 0);
        }
        Ok(())
    }
}

impl BlockSink for MemSink {
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), ImageError> {
        self.grow(off + data.len() as u64)?;
        self.data[off as usize..off as usize + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn zero(&mut self, off: u64, len: u64) -> Result<(), ImageError> {
        self.grow(off + len)?;
        self.data[off as usize..(off + len) as usize].fill(0);
        Ok(())
    }

    fn reserve(&mut self, size: u64) -> Result<(), ImageError> {
        if size > self.limit {
            return Err(ImageError::OutOfSpace {
                device: "memory".into(),
                reason: format!("{size} bytes exceed the limit"),
            });
        }
        Ok(())
    }
}

impl BlockSink for Writer {
    fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), ImageError> {
        Writer::write_at(self, off, data)
    }

    fn zero(&mut self, off: u64, len: u64) -> Result<(), ImageError> {
        Writer::zero(self, off, len)
    }

    fn reserve(&mut self, size: u64) -> Result<(), ImageError> {
        Writer::reserve(self, size)
    }
}

/// What the pipeline writes through: coalescing, zero handling, the held-back head.
pub struct Writer {
    target: Target,
    head: Vec<u8>,
    /// How much of `head` the image covered.
    head_len: usize,
    pending: AlignedBuf,
    pending_off: u64,
    /// One past the highest byte the image covered.
    end: u64,
    /// Bytes made to hold image content (written or zeroed); shared with the progress report.
    written: Arc<AtomicU64>,
}

/// What [`Writer::commit`] did.
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub bytes_written: u64,
    pub image_end: u64,
    pub gpt_moved: bool,
}

impl Writer {
    pub fn new(target: Target, written: Arc<AtomicU64>) -> Self {
        written.store(0, Ordering::Relaxed);
        Self {
            target,
            head: vec![0u8; HEAD_LEN as usize],
            head_len: 0,
            pending: AlignedBuf::new(WRITE_BUF),
            pending_off: 0,
            end: 0,
            written,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Refuses, before anything is written, an image larger than the device.
    pub fn reserve(&self, size: u64) -> Result<(), ImageError> {
        self.target.check_fits(0, size)
    }

    /// Takes the part of `[off, off+len)` below [`HEAD_LEN`]; returns what remains above it.
    fn take_head(&mut self, off: u64, len: u64, data: Option<&[u8]>) -> (u64, u64) {
        if off >= HEAD_LEN {
            return (off, len);
        }
        let n = len.min(HEAD_LEN - off) as usize;
        let o = off as usize;
        match data {
            Some(d) => self.head[o..o + n].copy_from_slice(&d[..n]),
            None => self.head[o..o + n].fill(0),
        }
        self.head_len = self.head_len.max(o + n);
        (off + n as u64, len - n as u64)
    }

    fn note(&mut self, off: u64, len: u64) {
        self.end = self.end.max(off + len);
        self.written.fetch_add(len, Ordering::Relaxed);
    }

    /// Writes image bytes at target offset `off`.
    pub fn write_at(&mut self, off: u64, data: &[u8]) -> Result<(), ImageError> {
        self.note(off, data.len() as u64);
        let (mut off, left) = self.take_head(off, data.len() as u64, Some(data));
        let mut rest = &data[data.len() - left as usize..];
        while !rest.is_empty() {
            if self.pending.len > 0 && self.pending_off + self.pending.len as u64 != off {
                self.flush()?;
            }
            if self.pending.len == 0 {
                self.pending_off = off;
            }
            let n = self.pending.push(rest);
            rest = &rest[n..];
            off += n as u64;
            if self.pending.len == self.pending.cap() {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Makes target bytes `[off, off+len)` zero.
    pub fn zero(&mut self, off: u64, len: u64) -> Result<(), ImageError> {
        self.note(off, len);
        let (off, len) = self.take_head(off, len, None);
        if len == 0 {
            return Ok(());
        }
        self.flush()?;
        self.target.zero(off, len)
    }

    fn flush(&mut self) -> Result<(), ImageError> {
        if self.pending.len == 0 {
            return Ok(());
        }
        let (off, len) = (self.pending_off, self.pending.len as u64);
        if is_zero(self.pending.data()) {
            self.target.zero(off, len)?;
        } else {
            self.target.write_at(off, self.pending.data())?;
        }
        self.pending.len = 0;
        Ok(())
    }

    /// Everything verified: write the held-back head, size a file target, sync, move the
    /// backup GPT to the end of the disk and have the kernel re-read the partition table.
    pub fn commit(mut self) -> Result<Committed, ImageError> {
        self.flush()?;
        let head = &self.head[..self.head_len];
        let mut aligned = AlignedBuf::new(head.len().max(1));
        aligned.push(head);
        self.target.write_at(0, aligned.data())?;
        if !self.target.is_block_device() {
            self.target
                .file
                .set_len(self.end)
                .map_err(|e| self.target.err("set the file length", e))?;
        }
        self.target.sync()?;
        let gpt_moved =
            gpt::relocate_backup(&self.target.file, self.target.sector).map_err(|e| {
                ImageError::write(
                    &self.target.path,
                    format!("moving the backup GPT to the end failed: {e}"),
                )
            })?;
        if gpt_moved {
            self.target.sync()?;
        }
        self.target.reread_partitions();
        Ok(Committed {
            bytes_written: self.bytes_written(),
            image_end: self.end,
            gpt_moved,
        })
    }
}
