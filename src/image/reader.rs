//! Small blocking readers the pipeline composes: the channel from the network (which also
//! hashes the downloaded bytes) and a peek buffer for sniffing magic bytes.

use super::checksum::Hasher;
use super::error::ImageError;
use super::fetch::Msg;
use bytes::Bytes;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why the pipeline stopped reading: carried inside an `io::Error` through `Read` adapters
/// (decompressors) and recovered by [`abort_of`].
#[derive(Debug, thiserror::Error)]
pub enum Abort {
    #[error("{0}")]
    Failed(ImageError),
    #[error("the download must restart from byte 0: {0}")]
    Restart(String),
}

/// Recovers the [`Abort`] inside an I/O error, if that is what it carries.
pub fn abort_of(e: io::Error) -> Result<Abort, io::Error> {
    if e.get_ref().is_some_and(|i| i.is::<Abort>()) {
        match e.into_inner().map(|i| i.downcast::<Abort>()) {
            Some(Ok(a)) => Ok(*a),
            _ => Err(io::Error::other("lost abort")),
        }
    } else {
        Err(e)
    }
}

/// Reads the bytes the async pump sends, counting them and hashing them on a thread of its
/// own: the checksum covers exactly the bytes that came over the wire, and hashing overlaps
/// with decoding and writing instead of adding to them. Blocking: only for blocking threads.
pub struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    done: bool,
    count: Arc<AtomicU64>,
    hasher: Option<HashThread>,
}

/// A hasher fed through a bounded queue of (reference-counted, not copied) chunks.
struct HashThread {
    tx: std::sync::mpsc::SyncSender<Bytes>,
    handle: std::thread::JoinHandle<String>,
}

impl HashThread {
    fn spawn(mut hasher: Hasher) -> io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Bytes>(HASH_QUEUE);
        let handle = std::thread::Builder::new()
            .name("image-hash".into())
            .spawn(move || {
                while let Ok(chunk) = rx.recv() {
                    hasher.update(&chunk);
                }
                hasher.finish()
            })?;
        Ok(Self { tx, handle })
    }
}

/// Chunks queued for the hash thread.
const HASH_QUEUE: usize = 8;

impl ChannelReader {
    pub fn new(
        rx: mpsc::Receiver<Msg>,
        hasher: Option<Hasher>,
        count: Arc<AtomicU64>,
    ) -> io::Result<Self> {
        let hasher = hasher.map(HashThread::spawn).transpose()?;
        Ok(Self {
            rx,
            cur: Bytes::new(),
            done: false,
            count,
            hasher,
        })
    }

    /// Bytes received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The digest of everything received (None without a hasher).
    pub fn finish(self) -> Option<String> {
        let h = self.hasher?;
        drop(h.tx);
        h.handle.join().ok()
    }

    fn receive(&mut self, b: Bytes) {
        self.count.fetch_add(b.len() as u64, Ordering::Relaxed);
        if let Some(h) = &self.hasher {
            // The thread only stops when we drop the sender; a send cannot fail before.
            let _ = h.tx.send(b.clone());
        }
        self.cur = b;
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() && !self.done {
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => self.receive(b),
                Some(Msg::End) => self.done = true,
                Some(Msg::Restart(why)) => return Err(io::Error::other(Abort::Restart(why))),
                Some(Msg::Failed(e)) => return Err(io::Error::other(Abort::Failed(e))),
                None => return Err(io::Error::other("the download was cancelled")),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Reads up to `n` bytes (fewer only at EOF).
pub fn read_up_to<R: Read + ?Sized>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// Replays a peeked prefix, then continues with the inner reader.
pub struct Peeked<R> {
    head: Vec<u8>,
    pos: usize,
    inner: R,
}

impl<R: Read> Peeked<R> {
    /// Reads up to `n` bytes of `inner` to look at; they are read again through the result.
    pub fn new(mut inner: R, n: usize) -> io::Result<Self> {
        let head = read_up_to(&mut inner, n)?;
        Ok(Self {
            head,
            pos: 0,
            inner,
        })
    }

    pub fn head(&self) -> &[u8] {
        &self.head
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.head.len() {
                self.head = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeked_replays_prefix() {
        let mut p = Peeked::new(&b"hello world"[..], 5).unwrap();
        assert_eq!(p.head(), b"hello");
        let mut s = String::new();
        p.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
    }

    #[test]
    fn channel_reader_delivers_and_aborts() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Msg::Data(Bytes::from_static(b"abc"))).unwrap();
        tx.try_send(Msg::Restart("etag changed".into())).unwrap();
        let mut r = ChannelReader::new(rx, None, Arc::default()).unwrap();
        let mut buf = [0u8; 2];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert_eq!(r.read(&mut buf).unwrap(), 1);
        let err = r.read(&mut buf).unwrap_err();
        assert!(matches!(abort_of(err), Ok(Abort::Restart(_))));
        drop(tx);
        assert!(abort_of(r.read(&mut buf).unwrap_err()).is_err());
    }

    #[test]
    fn channel_reader_hashes_and_counts() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Msg::Data(Bytes::from_static(b"ab"))).unwrap();
        tx.try_send(Msg::Data(Bytes::from_static(b"c"))).unwrap();
        tx.try_send(Msg::End).unwrap();
        let mut r = ChannelReader::new(
            rx,
            Some(Hasher::new(super::super::checksum::Algo::Md5)),
            Arc::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        assert_eq!(r.count(), 3);
        assert_eq!(r.finish().unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }
}
