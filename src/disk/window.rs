//! A byte range of a disk seen as a disk of its own (`Read + Write + Seek`).
//!
//! File system code (FAT formatting and reading, swap headers, blkid probes) works on a
//! partition through this window over the whole disk, so the same code serves a block device in
//! the ramdisk and a regular file in tests, and never depends on the kernel having created a
//! partition device node yet.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// `[start, start + len)` of `file`; reads and writes never leave it.
#[derive(Debug)]
pub struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Self {
        Self {
            file,
            start,
            len,
            pos: 0,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many of `want` bytes fit between the position and the end of the window.
    fn room(&self, want: usize) -> usize {
        self.len.saturating_sub(self.pos).min(want as u64) as usize
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let put = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) => {
                self.pos = t;
                Ok(t)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_its_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut w = Window::new(&f, 1024, 512);
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 512);
        w.seek(SeekFrom::Start(508)).unwrap();
        assert_eq!(w.write(b"abcdefgh").unwrap(), 4);
        assert!(w.write(b"x").is_err());
        w.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        w.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 512);
        assert_eq!(&all[508..], b"abcd");
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[1532..1536], b"abcd");
        assert_eq!(disk[1536], 0);
        assert!(w.seek(SeekFrom::Current(-10_000)).is_err());
    }
}
