//! The one byte channel between two threads: a bounded in-memory pipe. An upload streams the
//! archive through it into the request body; a restore streams decompressed bytes through it
//! from the decoder thread to the extractor. Memory stays bounded whatever the archive size.
//!
//! Either end can stop the other: a writer that fails (or is dropped without `close`) makes
//! the reader's next read an error once the queued bytes are read, so a request body or an
//! archive never ends as if it were complete; a reader that is dropped makes the writer's
//! next `send` fail, so the writer stops instead of blocking.
//!
//! It stays hand-written because no crate in reach does its job: a bounded channel
//! (crossbeam, std's `sync_channel`) bounds messages, not bytes, cannot carry a writer's
//! failure to the reader as the reader's error after the queued bytes, and has no stall
//! bound on a send.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A pipe holding about `capacity` bytes ahead of its reader.
pub fn pipe(capacity: usize) -> (PipeWriter, PipeReader) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        cond: Condvar::new(),
        capacity,
    });
    (
        PipeWriter {
            shared: shared.clone(),
            stall: None,
            ended: false,
        },
        PipeReader {
            shared,
            buf: Vec::new(),
            pos: 0,
        },
    )
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Vec<u8>>,
    queued: usize,
    /// The writer finished: end of stream after the queue drains.
    closed: bool,
    /// The writer failed: this error after the queue drains.
    failed: Option<String>,
    /// The reader is gone.
    reader_gone: bool,
}

/// Why a `send` did not go through.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The reader went away (the request ended, the extractor stopped).
    ReaderGone,
    /// The reader took nothing for the writer's stall bound.
    Stalled(Duration),
}

pub struct PipeWriter {
    shared: Arc<Shared>,
    stall: Option<Duration>,
    ended: bool,
}

impl PipeWriter {
    /// Give up on a `send` that waits longer than `stall` for room.
    pub fn with_stall(mut self, stall: Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    /// Queue a chunk, waiting while the pipe is full.
    pub fn send(&self, chunk: Vec<u8>) -> Result<(), SendError> {
        if chunk.is_empty() {
            // An empty chunk would read as the end of the stream.
            return Ok(());
        }
        let started = Instant::now();
        let mut st = self.shared.lock();
        while st.queued >= self.shared.capacity && !st.reader_gone {
            st = match self.stall {
                None => self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(stall) => {
                    let left = stall.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(SendError::Stalled(stall));
                    }
                    self.shared
                        .cond
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        if st.reader_gone {
            return Err(SendError::ReaderGone);
        }
        st.queued += chunk.len();
        st.chunks.push_back(chunk);
        self.shared.cond.notify_all();
        Ok(())
    }

    /// End the stream: the reader sees the end once it has read everything queued.
    pub fn close(mut self) {
        self.end(None);
    }

    /// End the stream with an error the reader sees after everything queued.
    pub fn fail(mut self, why: String) {
        self.end(Some(why));
    }

    fn end(&mut self, failed: Option<String>) {
        let mut st = self.shared.lock();
        match failed {
            Some(why) => st.failed = Some(why),
            None => st.closed = true,
        }
        self.ended = true;
        self.shared.cond.notify_all();
    }
}

impl Drop for PipeWriter {
    fn drop(&mut self) {
        if !self.ended {
            self.end(Some("the writer gave up before the end".into()));
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // At most the capacity per call, so one huge write cannot defeat the bound.
        let n = buf.len().min(self.shared.capacity);
        match self.send(buf[..n].to_vec()) {
            Ok(()) => Ok(n),
            Err(SendError::ReaderGone) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the reader went away",
            )),
            Err(SendError::Stalled(d)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no progress for {} s", d.as_secs()),
            )),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub struct PipeReader {
    shared: Arc<Shared>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            let mut st = self.shared.lock();
            loop {
                if let Some(chunk) = st.chunks.pop_front() {
                    st.queued -= chunk.len();
                    self.shared.cond.notify_all();
                    self.buf = chunk;
                    self.pos = 0;
                    break;
                }
                if let Some(why) = &st.failed {
                    return Err(io::Error::other(why.clone()));
                }
                if st.closed {
                    return Ok(0);
                }
                st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        self.shared.lock().reader_gone = true;
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_in_order_then_the_end() {
        let (w, mut r) = pipe(8);
        let t = std::thread::spawn(move || {
            for i in 0..100u8 {
                w.send(vec![i; 5]).unwrap();
            }
            w.close();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        t.join().unwrap();
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 5]).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_failed_or_dropped_writer_is_an_error_after_the_queued_bytes() {
        let (w, mut r) = pipe(64);
        w.send(b"abc".to_vec()).unwrap();
        w.fail("bad bytes".into());
        let mut got = [0u8; 3];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abc");
        assert!(
            r.read(&mut got)
                .unwrap_err()
                .to_string()
                .contains("bad bytes")
        );

        let (w, mut r) = pipe(64);
        drop(w);
        assert!(
            r.read(&mut got).is_err(),
            "a dropped writer must not read as the end"
        );
    }

    #[test]
    fn a_gone_reader_stops_the_writer_and_a_slow_one_stalls_it() {
        let (w, r) = pipe(4);
        drop(r);
        assert_eq!(w.send(vec![1]), Err(SendError::ReaderGone));

        let (w, _r) = pipe(4);
        let w = w.with_stall(Duration::from_millis(50));
        w.send(vec![0; 4]).unwrap();
        assert_eq!(
            w.send(vec![0; 4]),
            Err(SendError::Stalled(Duration::from_millis(50)))
        );
    }
}
