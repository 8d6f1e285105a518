//! Parallel ranged downloads for the HTTP-speaking stores: one stream to an object store
//! usually runs far below the link, so a large archive is fetched as `--chunk-size` ranges,
//! `--concurrency` at a time, and handed to the unpacker strictly in order.
//!
//! Memory stays bounded: no range is requested more than `concurrency` chunks ahead of the
//! one the unpacker is reading, so at most `concurrency + 1` chunks are held. Every range is
//! bound to the object version the first response came from (`If-Match` with its ETag), so
//! an archive replaced mid-download fails fast (412) instead of splicing two versions; the
//! archive digest is still checked by the unpacker before anything is swapped in.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Fetches one byte range of the object version the download started with.
pub trait Ranges: Send + Sync + 'static {
    /// Exactly bytes `start..end`, or an error; transient failures are retried inside.
    fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>>;
}

/// How a large download is split.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Bytes of the whole object.
    pub total: u64,
    pub chunk: u64,
    pub concurrency: usize,
    /// When the whole download must be done (`--timeout`).
    pub deadline: Instant,
}

#[derive(Default)]
struct State {
    /// Next chunk index a worker may claim.
    next: u64,
    /// Chunk index the reader takes next.
    wanted: u64,
    done: BTreeMap<u64, Vec<u8>>,
    /// The first failure: the download is over, the reader reports it at once.
    failed: Option<(io::ErrorKind, String)>,
    /// The reader went away: workers stop after their current request.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A reader over `split.total` bytes: `head` (bytes from offset 0 already received with the
/// first response), then the rest in chunks fetched by `split.concurrency` workers.
pub fn parallel(source: Arc<dyn Ranges>, head: Vec<u8>, split: Split) -> Box<dyn Read + Send> {
    let start = head.len() as u64;
    let chunks = split.total.saturating_sub(start).div_ceil(split.chunk);
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        cond: Condvar::new(),
    });
    let workers = split.concurrency.clamp(1, chunks.max(1) as usize);
    for _ in 0..workers {
        let shared = shared.clone();
        let source = source.clone();
        std::thread::spawn(move || {
            loop {
                let idx = {
                    let mut st = shared.lock();
                    while !st.closed
                        && st.failed.is_none()
                        && st.next < chunks
                        && st.next >= st.wanted + split.concurrency as u64
                    {
                        st = shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    if st.closed || st.failed.is_some() || st.next >= chunks {
                        return;
                    }
                    st.next += 1;
                    st.next - 1
                };
                let from = start + idx * split.chunk;
                let to = (from + split.chunk).min(split.total);
                let got = source.fetch(from, to);
                let mut st = shared.lock();
                match got {
                    Ok(bytes) => {
                        st.done.insert(idx, bytes);
                    }
                    Err(e) => {
                        if st.failed.is_none() {
                            st.failed = Some((e.kind(), e.to_string()));
                        }
                    }
                }
                shared.cond.notify_all();
            }
        });
    }
    Box::new(InOrder {
        shared,
        chunks,
        current: io::Cursor::new(head),
        deadline: split.deadline,
    })
}

struct InOrder {
    shared: Arc<Shared>,
    chunks: u64,
    current: io::Cursor<Vec<u8>>,
    deadline: Instant,
}

impl Read for InOrder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let mut st = self.shared.lock();
            if st.wanted >= self.chunks {
                return Ok(0);
            }
            loop {
                if let Some((kind, msg)) = &st.failed {
                    return Err(io::Error::new(*kind, msg.clone()));
                }
                let wanted = st.wanted;
                if let Some(bytes) = st.done.remove(&wanted) {
                    st.wanted += 1;
                    self.current = io::Cursor::new(bytes);
                    self.shared.cond.notify_all();
                    break;
                }
                let left = self.deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the download took longer than --timeout",
                    ));
                }
                st = self
                    .shared
                    .cond
                    .wait_timeout(st, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
}

impl Drop for InOrder {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        st.done.clear();
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Pattern {
        len: u64,
        in_flight: AtomicUsize,
        most: AtomicUsize,
        fail_at: Option<u64>,
    }

    fn byte(i: u64) -> u8 {
        (i % 251) as u8
    }

    impl Ranges for Pattern {
        fn fetch(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
            assert!(end <= self.len && start < end);
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            // Later chunks come back first, so ordering is really exercised.
            std::thread::sleep(Duration::from_millis(10 * (8 - (start / 1000) % 8)));
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if self.fail_at == Some(start) {
                return Err(io::Error::other("412 the object changed"));
            }
            Ok((start..end).map(byte).collect())
        }
    }

    fn split(total: u64) -> Split {
        Split {
            total,
            chunk: 1000,
            concurrency: 4,
            deadline: Instant::now() + Duration::from_secs(30),
        }
    }

    #[test]
    fn chunks_arrive_in_order_with_bounded_concurrency() {
        let total = 25_500;
        let src = Arc::new(Pattern {
            len: total,
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            fail_at: None,
        });
        let head: Vec<u8> = (0..700).map(byte).collect();
        let mut out = Vec::new();
        parallel(src.clone(), head, split(total))
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len() as u64, total);
        assert!(out.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
        let most = src.most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} in flight");
    }

    #[test]
    fn a_failed_chunk_fails_the_read_instead_of_skipping_it() {
        let total = 10_000;
        let src = Arc::new(Pattern {
            len: total,
            in_flight: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            fail_at: Some(5000),
        });
        let mut out = Vec::new();
        let err = parallel(src, Vec::new(), split(total))
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(err.to_string().contains("412"), "{err}");
        assert!(out.len() <= 5000);
    }
}
