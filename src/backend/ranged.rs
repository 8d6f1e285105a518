//! Parallel ranged downloads for every remote store: one stream to an object store usually
//! runs far below the link, so a large archive is fetched as `--chunk-size` ranges,
//! `--concurrency` at a time, and handed to the unpacker strictly in order.
//!
//! Memory stays bounded: a range is requested only while fewer than `concurrency` chunks are
//! in flight or waiting, the one the unpacker is reading included, and each chunk reaches
//! the unpacker in pieces as it arrives (the pieces are freed as they are consumed), so at
//! most `concurrency` × `chunk` bytes are held. Every range is bound to the object version
//! the download started with (the store's `Ranges` sends `If-Match` or its like), so an
//! archive replaced mid-download fails fast instead of splicing two versions; the archive
//! digest is still checked by the unpacker before anything is swapped in.
//!
//! The chunks are fetched by a rayon pool of `concurrency` threads, which `claim` feeds in
//! order as the window has room.
//!
//! When the manifest has a digest per range (`Sums`), each range is checked as it arrives
//! and reaches the unpacker only once it matched: one that does not is fetched again, once,
//! on a new connection (a byte flipped in transit is not a damaged entry), and only a
//! second mismatch fails the download as `Damaged`. The bound is the same, as a range is
//! held in its slot until checked, and the slots are the window.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use super::retry::Verdict;
use crate::entry::{CHUNK_DIGEST_BYTES, ChunkDigests};

/// Bytes handed to the unpacker at a time: small enough that the chunk at the head streams
/// to it while it downloads, large enough that the hand-over costs nothing.
const PIECE: usize = 256 << 10;

/// Why a range could not be had.
pub enum RangeError {
    /// The connection broke or the body came short: another request may work.
    Transient(io::Error),
    /// The store refused (the object changed, it answered something else): give up.
    Final(io::Error),
}

/// The digest of each `chunk`-byte piece of the object, from its manifest.
pub struct Sums {
    pub chunk: u64,
    pub sums: Vec<[u8; CHUNK_DIGEST_BYTES]>,
}

/// How to cut ranges that are whole pieces of `piece` bytes, within the `chunk` ×
/// `concurrency` bytes a download may hold: `(chunk, concurrency)`, or `None` when a piece
/// alone is larger than that (the ranges are then not checked one by one).
pub fn aligned(chunk: u64, concurrency: usize, piece: u64) -> Option<(u64, usize)> {
    if piece == 0 {
        return None;
    }
    if piece <= chunk {
        return Some((chunk / piece * piece, concurrency));
    }
    let budget = chunk.saturating_mul(concurrency as u64);
    (piece <= budget).then(|| (piece, (budget / piece) as usize))
}

/// The ranges of a download of `size` bytes with the manifest's range digests `chunks`:
/// `(chunk, concurrency, sums)`, cut to whole pieces of the digests where that keeps within
/// the download's bound, else as asked and unchecked (the archive digest still decides).
pub fn plan(
    chunk: u64,
    concurrency: usize,
    size: u64,
    chunks: Option<&ChunkDigests>,
) -> (u64, usize, Option<Sums>) {
    let Some(c) = chunks else {
        return (chunk, concurrency, None);
    };
    match (aligned(chunk, concurrency, c.size), c.decode(size)) {
        (Some((chunk, concurrency)), Some(sums)) => (
            chunk,
            concurrency,
            Some(Sums {
                chunk: c.size,
                sums,
            }),
        ),
        _ => (chunk, concurrency, None),
    }
}

/// What a download fails with when a range did not match its digest on two reads: the
/// stored object is damaged, not the link.
#[derive(Debug)]
pub struct Damaged(pub String);

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Damaged {}

/// Said of an object that came damaged on both of two reads.
pub const READ_TWICE: &str = "(read twice, on two connections)";

/// Hashes the bytes of one range as they arrive, piece by piece of the digests.
struct Check<'a> {
    sums: &'a Sums,
    total: u64,
    hasher: blake3::Hasher,
    pos: u64,
    damaged: bool,
}

impl Check<'_> {
    fn update(&mut self, mut buf: &[u8]) {
        let chunk = self.sums.chunk;
        while !buf.is_empty() {
            let room = (chunk - self.pos % chunk) as usize;
            let (now, later) = buf.split_at(room.min(buf.len()));
            self.hasher.update(now);
            self.pos += now.len() as u64;
            if self.pos % chunk == 0 || self.pos == self.total {
                let i = ((self.pos - 1) / chunk) as usize;
                let sum = self.hasher.finalize();
                self.hasher.reset();
                let want = self.sums.sums.get(i);
                self.damaged |= want.is_none_or(|w| sum.as_bytes()[..CHUNK_DIGEST_BYTES] != w[..]);
            }
            buf = later;
        }
    }
}

/// Opens byte ranges of the object version the download started with.
pub trait Ranges: Send + Sync + 'static {
    /// The body of one request for exactly bytes `start..end`. The request is made here,
    /// so a refusal (412, another status) is an error of this call, not of a read.
    fn open(&self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, RangeError>;
    /// What is being downloaded, for messages (no credentials).
    fn describe(&self) -> String;
    /// Make the next `open` use a new connection, not one kept alive.
    fn reconnect(&self) {}
}

/// How a large download is split.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Bytes of the whole object.
    pub total: u64,
    pub chunk: u64,
    pub concurrency: usize,
    /// Further attempts per chunk after one that broke off (`--retries`).
    pub retries: u32,
    /// When the whole download must be done (`--timeout`).
    pub deadline: Instant,
}

#[derive(Default)]
struct Slot {
    pieces: VecDeque<Vec<u8>>,
    complete: bool,
}

#[derive(Default)]
struct State {
    /// Next chunk index a worker may claim.
    next: u64,
    /// Chunk index the reader is reading.
    wanted: u64,
    slots: BTreeMap<u64, Slot>,
    /// Pieces the reader is done with, for the workers to fill again: recycled rather than
    /// freed, so eight threads' allocations cannot fragment the heap past the bound.
    spare: Vec<Vec<u8>>,
    /// The body of the request that started the download: the first chunk.
    first: Option<Box<dyn Read + Send>>,
    /// The first failure: the download is over, the reader reports it at once. `true`
    /// when it is a range damaged on both reads.
    failed: Option<(io::ErrorKind, String, bool)>,
    /// The reader went away: workers stop at their next piece.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    source: Arc<dyn Ranges>,
    split: Split,
    chunks: u64,
    sums: Option<Sums>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn over(&self) -> bool {
        let st = self.lock();
        st.closed || st.failed.is_some()
    }

    /// The next chunk to fetch, once the window has room; `None` when there is nothing
    /// left to do.
    fn claim(&self) -> Option<(u64, Option<Box<dyn Read + Send>>)> {
        let mut st = self.lock();
        while !st.closed
            && st.failed.is_none()
            && st.next < self.chunks
            && st.next >= st.wanted + self.split.concurrency as u64
        {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed || st.failed.is_some() || st.next >= self.chunks {
            return None;
        }
        let idx = st.next;
        st.next += 1;
        st.slots.insert(idx, Slot::default());
        let first = if idx == 0 { st.first.take() } else { None };
        Some((idx, first))
    }

    fn push(&self, idx: u64, piece: Vec<u8>) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.get_mut(&idx) {
            slot.pieces.push_back(piece);
        }
        self.cond.notify_all();
    }

    fn complete(&self, idx: u64) {
        let mut st = self.lock();
        if let Some(slot) = st.slots.get_mut(&idx) {
            slot.complete = true;
        }
        self.cond.notify_all();
    }

    fn fail(&self, e: io::Error) {
        let mut st = self.lock();
        if st.failed.is_none() {
            let damaged = e.get_ref().is_some_and(|i| i.is::<Damaged>());
            st.failed = Some((e.kind(), e.to_string(), damaged));
        }
        self.cond.notify_all();
    }

    /// Empty a slot for a second read of its range, recycling its pieces.
    fn discard(&self, idx: u64) {
        let mut st = self.lock();
        let pieces = st
            .slots
            .get_mut(&idx)
            .map(|slot| std::mem::take(&mut slot.pieces))
            .unwrap_or_default();
        for mut p in pieces {
            p.clear();
            st.spare.push(p);
        }
    }

    /// Fetch one chunk into its slot, checked against its digests when there are some: a
    /// range that arrived damaged is fetched again, once, on a new connection.
    fn fetch(&self, idx: u64, body: Option<Box<dyn Read + Send>>) -> io::Result<()> {
        if !self.fetch_range(idx, body)? {
            return Ok(());
        }
        let from = idx * self.split.chunk;
        let to = (from + self.split.chunk).min(self.split.total);
        eprintln!(
            "cachegate: bytes {from}-{} of {} arrived damaged; fetching that range again on a new connection",
            to - 1,
            self.source.describe()
        );
        self.discard(idx);
        self.source.reconnect();
        if !self.fetch_range(idx, None)? {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            Damaged(format!(
                "bytes {from}-{} of the archive: digest does not match the manifest {READ_TWICE}",
                to - 1
            )),
        ))
    }

    /// Fetch one chunk into its slot piece by piece; whether it came damaged. A body that
    /// breaks off is taken up where it stopped, with a new request for the rest, within
    /// `--retries` and `--timeout`; the other chunks keep going meanwhile.
    fn fetch_range(&self, idx: u64, mut body: Option<Box<dyn Read + Send>>) -> io::Result<bool> {
        let from = idx * self.split.chunk;
        let to = (from + self.split.chunk).min(self.split.total);
        let mut pos = from;
        let mut check = self.sums.as_ref().map(|sums| Check {
            sums,
            total: self.split.total,
            hasher: blake3::Hasher::new(),
            pos: from,
            damaged: false,
        });
        let once = || -> Result<(), RangeError> {
            let mut r = match body.take() {
                Some(b) => b,
                None => self.source.open(pos, to)?,
            };
            while pos < to {
                if self.over() {
                    return Ok(());
                }
                let want = (to - pos).min(PIECE as u64);
                let mut piece = self
                    .lock()
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(PIECE));
                // Bytes read before an error are good bytes: keep them.
                let read = Read::by_ref(&mut r).take(want).read_to_end(&mut piece);
                let got = piece.len() as u64;
                if got > 0 {
                    if let Some(c) = &mut check {
                        c.update(&piece);
                    }
                    self.push(idx, piece);
                    pos += got;
                }
                match read {
                    Err(e) => return Err(RangeError::Transient(e)),
                    Ok(_) if got < want => {
                        return Err(RangeError::Transient(io::Error::other(format!(
                            "{}: the range ended after {} of {} bytes",
                            self.source.describe(),
                            pos - from,
                            to - from
                        ))));
                    }
                    Ok(_) => {}
                }
            }
            Ok(())
        };
        let deadline = self.split.deadline;
        super::retry::Policy::new(self.split.retries)
            .run(
                once,
                |e| match e {
                    RangeError::Transient(_) if Instant::now() < deadline => Verdict::Retry,
                    _ => Verdict::Final,
                },
                |_| true,
                |e, wait| {
                    super::retry_log::note(&format!(
                        "{e}; retrying that part in {:.1} s",
                        wait.as_secs_f64()
                    ))
                },
            )
            .map_err(|(RangeError::Transient(e) | RangeError::Final(e))| e)?;
        Ok(check.is_some_and(|c| c.damaged))
    }
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (RangeError::Transient(e) | RangeError::Final(e)) = self;
        write!(f, "{e}")
    }
}

/// A reader over `split.total` bytes, fetched in chunks by `split.concurrency` workers.
/// `first`, when given, is the body of a request already made for the first chunk.
/// `sums`, when given, are digests of pieces that divide `split.chunk` (`aligned`).
pub fn parallel(
    source: Arc<dyn Ranges>,
    first: Option<Box<dyn Read + Send>>,
    split: Split,
    sums: Option<Sums>,
) -> Box<dyn Read + Send> {
    let chunks = split.total.div_ceil(split.chunk.max(1));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            first,
            ..State::default()
        }),
        cond: Condvar::new(),
        source,
        split,
        chunks,
        sums: sums.filter(|s| s.chunk > 0 && split.chunk % s.chunk == 0),
    });
    let workers = split.concurrency.clamp(1, chunks.max(1) as usize);
    // A pool of `workers` threads takes the chunks as `claim` hands them out, in order and
    // only while the window has room (the memory bound). Dropping the pool leaves its
    // threads to finish the download, or to stop at their next piece once the reader is gone.
    let work = {
        let shared = shared.clone();
        move || {
            use rayon::iter::{ParallelBridge as _, ParallelIterator as _};
            std::iter::from_fn(|| shared.claim())
                .par_bridge()
                .for_each(|(idx, body)| match shared.fetch(idx, body) {
                    Ok(()) => shared.complete(idx),
                    Err(e) => shared.fail(e),
                });
        }
    };
    match rayon::ThreadPoolBuilder::new().num_threads(workers).build() {
        Ok(pool) => pool.spawn(work),
        // No pool of its own to be had: rayon's global one; the window still bounds what
        // is held.
        Err(_) => rayon::spawn(work),
    }
    Box::new(InOrder {
        shared,
        current: io::Cursor::new(Vec::new()),
    })
}

struct InOrder {
    shared: Arc<Shared>,
    current: io::Cursor<Vec<u8>>,
}

impl Read for InOrder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            let shared = &self.shared;
            let mut st = shared.lock();
            loop {
                if let Some((kind, msg, damaged)) = &st.failed {
                    return Err(if *damaged {
                        io::Error::new(*kind, Damaged(msg.clone()))
                    } else {
                        io::Error::new(*kind, msg.clone())
                    });
                }
                let wanted = st.wanted;
                if wanted >= shared.chunks {
                    return Ok(0);
                }
                let checked = shared.sums.is_some();
                if let Some(slot) = st.slots.get_mut(&wanted) {
                    // A range that is checked is handed on only once it matched.
                    if (!checked || slot.complete)
                        && let Some(piece) = slot.pieces.pop_front()
                    {
                        let mut done = std::mem::replace(&mut self.current, io::Cursor::new(piece))
                            .into_inner();
                        if done.capacity() >= PIECE {
                            done.clear();
                            st.spare.push(done);
                        }
                        break;
                    }
                    if slot.complete {
                        st.slots.remove(&wanted);
                        st.wanted += 1;
                        shared.cond.notify_all();
                        continue;
                    }
                }
                let left = shared
                    .split
                    .deadline
                    .saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the download took longer than --timeout",
                    ));
                }
                st = shared
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
        st.slots.clear();
        st.spare.clear();
        st.first = None;
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
        in_flight: Arc<AtomicUsize>,
        most: AtomicUsize,
        opened: Mutex<Vec<(u64, u64)>>,
        fail_at: Option<u64>,
        /// The first request for this start delivers only half its bytes.
        cut_at: Option<u64>,
        /// A request for this start has a byte flipped: the first one, or (`true`) each.
        flip_at: Option<(u64, bool)>,
        reconnects: AtomicUsize,
    }

    fn byte(i: u64) -> u8 {
        (i % 251) as u8
    }

    fn pattern(len: u64) -> Pattern {
        Pattern {
            len,
            in_flight: Arc::new(AtomicUsize::new(0)),
            most: AtomicUsize::new(0),
            opened: Mutex::new(Vec::new()),
            fail_at: None,
            cut_at: None,
            flip_at: None,
            reconnects: AtomicUsize::new(0),
        }
    }

    /// Counts itself in flight until its body is read to the end.
    struct Body {
        data: io::Cursor<Vec<u8>>,
        in_flight: Option<Arc<AtomicUsize>>,
        delay: Duration,
    }

    impl Read for Body {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
                self.delay = Duration::ZERO;
            }
            let n = self.data.read(buf)?;
            if self.data.position() == self.data.get_ref().len() as u64
                && let Some(f) = self.in_flight.take()
            {
                f.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(n)
        }
    }

    impl Ranges for Pattern {
        fn open(&self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, RangeError> {
            assert!(end <= self.len && start < end);
            let first_time = {
                let mut o = self.opened.lock().unwrap();
                let first = !o.iter().any(|(s, _)| *s == start);
                o.push((start, end));
                first
            };
            if self.fail_at == Some(start) {
                return Err(RangeError::Final(io::Error::other(
                    "412 the object changed",
                )));
            }
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            let mut end = end;
            if self.cut_at == Some(start) && first_time {
                end = start + (end - start) / 2;
            }
            // Later chunks come back first, so ordering is really exercised.
            let delay = Duration::from_millis(10 * (8 - (start / 1000) % 8));
            let mut data: Vec<u8> = (start..end).map(byte).collect();
            if let Some((at, always)) = self.flip_at
                && at == start
                && (first_time || always)
            {
                data[7] ^= 0x55;
            }
            Ok(Box::new(Body {
                data: io::Cursor::new(data),
                in_flight: Some(self.in_flight.clone()),
                delay,
            }))
        }
        fn describe(&self) -> String {
            "the pattern".into()
        }
        fn reconnect(&self) {
            self.reconnects.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The pattern's digests in pieces of `piece` bytes.
    fn sums(total: u64, piece: u64) -> Sums {
        let sums = (0..total.div_ceil(piece))
            .map(|i| {
                let bytes: Vec<u8> = (i * piece..((i + 1) * piece).min(total))
                    .map(byte)
                    .collect();
                blake3::hash(&bytes).as_bytes()[..CHUNK_DIGEST_BYTES]
                    .try_into()
                    .unwrap()
            })
            .collect();
        Sums { chunk: piece, sums }
    }

    #[test]
    fn a_range_damaged_once_is_fetched_again_alone_on_a_new_connection() {
        let total = 10_500;
        let src = Arc::new(Pattern {
            flip_at: Some((4000, false)),
            ..pattern(total)
        });
        // Pieces of 500 bytes: each range of 1000 is checked as two.
        let mut out = Vec::new();
        parallel(src.clone(), None, split(total), Some(sums(total, 500)))
            .read_to_end(&mut out)
            .unwrap();
        assert!(out.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
        assert_eq!(out.len() as u64, total);
        let opened = src.opened.lock().unwrap();
        assert_eq!(opened.len(), 12, "{opened:?}");
        let again: Vec<_> = opened.iter().filter(|(s, _)| *s == 4000).collect();
        assert_eq!(again, [&(4000, 5000), &(4000, 5000)], "{opened:?}");
        assert_eq!(src.reconnects.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_range_damaged_on_both_reads_fails_the_download_as_damaged() {
        let total = 10_000;
        let src = Arc::new(Pattern {
            flip_at: Some((6000, true)),
            ..pattern(total)
        });
        let mut out = Vec::new();
        let err = parallel(src.clone(), None, split(total), Some(sums(total, 1000)))
            .read_to_end(&mut out)
            .unwrap_err();
        let damaged = err.get_ref().and_then(|e| e.downcast_ref::<Damaged>());
        assert!(damaged.is_some(), "{err}");
        assert!(err.to_string().contains("bytes 6000-6999"), "{err}");
        assert!(err.to_string().ends_with(READ_TWICE), "{err}");
        // Nothing of the damaged range reached the reader.
        assert!(out.len() <= 6000, "{}", out.len());
        assert!(out.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
    }

    #[test]
    fn ranges_are_cut_to_whole_digest_pieces_within_the_bound() {
        assert_eq!(aligned(4 << 20, 8, 4 << 20), Some((4 << 20, 8)));
        assert_eq!(aligned(10 << 20, 8, 4 << 20), Some((8 << 20, 8)));
        // Pieces larger than the chunk: fewer at once, the same bytes held.
        assert_eq!(aligned(1 << 20, 8, 4 << 20), Some((4 << 20, 2)));
        assert_eq!(aligned(1 << 20, 2, 4 << 20), None);
        assert_eq!(aligned(1 << 20, 2, 0), None);
    }

    fn split(total: u64) -> Split {
        Split {
            total,
            chunk: 1000,
            concurrency: 4,
            retries: 2,
            deadline: Instant::now() + Duration::from_secs(30),
        }
    }

    fn read_all(src: Arc<Pattern>, first: Option<Box<dyn Read + Send>>) -> io::Result<Vec<u8>> {
        let total = src.len;
        let mut out = Vec::new();
        parallel(src, first, split(total), None)
            .read_to_end(&mut out)
            .map(|_| out)
    }

    #[test]
    fn chunks_arrive_in_order_with_bounded_concurrency() {
        let total = 25_500;
        let src = Arc::new(pattern(total));
        let first: Box<dyn Read + Send> =
            Box::new(io::Cursor::new((0..1000).map(byte).collect::<Vec<u8>>()));
        let out = read_all(src.clone(), Some(first)).unwrap();
        assert_eq!(out.len() as u64, total);
        assert!(out.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
        let most = src.most.load(Ordering::SeqCst);
        assert!((2..=4).contains(&most), "{most} in flight");
        let opened = src.opened.lock().unwrap();
        assert!(
            !opened.iter().any(|(s, _)| *s == 0),
            "the first chunk came with the first answer"
        );
        assert_eq!(opened.len(), 25, "{opened:?}");
    }

    #[test]
    fn a_failed_chunk_fails_the_read_instead_of_skipping_it() {
        let total = 10_000;
        let src = Arc::new(Pattern {
            fail_at: Some(5000),
            ..pattern(total)
        });
        let err = read_all(src, None).unwrap_err();
        assert!(err.to_string().contains("412"), "{err}");
    }

    #[test]
    fn a_chunk_cut_short_is_taken_up_where_it_stopped() {
        let total = 10_000;
        let src = Arc::new(Pattern {
            cut_at: Some(3000),
            ..pattern(total)
        });
        let out = read_all(src.clone(), None).unwrap();
        assert!(out.iter().enumerate().all(|(i, b)| *b == byte(i as u64)));
        assert_eq!(out.len() as u64, total);
        let opened = src.opened.lock().unwrap();
        assert_eq!(opened.len(), 11, "{opened:?}");
        assert!(opened.contains(&(3500, 4000)), "the rest only: {opened:?}");
    }
}
