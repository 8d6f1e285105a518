//! Restore an archive into staging directories beside the targets, check its digest, then
//! swap the staged trees into place. Anything wrong with the archive rejects all of it and
//! leaves the workspace exactly as it was.
//!
//! Safety does not depend on canonicalizing paths: every directory an entry is written
//! into was created by this extraction and is recorded as a directory, so no entry can be
//! written through a symlink, whether the archive made it or the workspace had it. Links
//! themselves are restored as links with whatever target they had (a venv's
//! `bin/python -> /usr/bin/python3` is normal); they are just never followed.
//!
//! Anything another tar reader could see differently (PAX size disagreements, global
//! headers, malformed records) is rejected, and `Limits` bound bytes, entries, names,
//! expansion and memory, so hostile archives fail fast and cheaply.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::{Duration, SystemTime};

use anyhow::anyhow;

use super::journal::{ASIDE, STAGED};
use crate::backend::ranged::Damaged;
use crate::pipe::{self, PipeWriter};

/// Bounds that stop decompression bombs and entry floods before they fill the disk.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Compressed archive size, checked against the manifest before downloading.
    pub max_archive: u64,
    pub max_entries: u64,
    /// Bytes of the decompressed tar stream (file contents plus headers).
    pub max_bytes: u64,
    pub max_path: usize,
    /// Decompressed bytes per compressed byte, once the archive passes `RATIO_FLOOR`.
    pub max_ratio: u64,
    pub window_log_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive: 32 << 30,
            max_entries: 5_000_000,
            max_bytes: 64 << 30,
            max_path: 4096,
            max_ratio: 1000,
            window_log_max: 27,
        }
    }
}

impl Limits {
    /// Refuse an archive its manifest says is too big, before a byte is downloaded.
    pub fn check_archive_size(&self, size: u64) -> Result<(), UnpackError> {
        if size > self.max_archive {
            return Err(corrupt(format!(
                "archive is {size} bytes, over the limit of {}",
                self.max_archive
            )));
        }
        Ok(())
    }
}

type NameKey = [u8; 16];

/// Paths kept in memory until the end of an extraction (directories get their modes and
/// times last; hardlinks are made last). Real caches need a few MB of this.
const MAX_HELD: usize = 256 << 20;

/// Below this many compressed bytes the ratio is not checked: small archives of empty or
/// repetitive files compress absurdly well and are harmless at that size.
const RATIO_FLOOR: u64 = 1 << 20;

/// What the manifest promises about the archive.
#[derive(Debug, Clone)]
pub struct Expected {
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Default, Clone)]
pub struct UnpackStats {
    pub files: u64,
    pub bytes: u64,
    pub archive_bytes: u64,
}

#[derive(Debug)]
pub enum UnpackError {
    /// The entry itself is bad: wrong digest, not a valid archive, or hostile content.
    /// Such an entry will never restore and may be replaced.
    Corrupt(String),
    /// The download broke off: the entry may be fine.
    Transfer(anyhow::Error),
    /// Local trouble (disk full, permissions): the entry may be fine.
    Local(anyhow::Error),
    /// The entry is sound but does not fit this machine or project (a dangling interpreter
    /// link, a tracked file in the way): it stays for the machines it fits.
    Unfit(String),
    /// The target holds files the repository tracks, which the swap would replace.
    Tracked(String),
    /// A target outside the project exists and cachegate did not make it (outside.rs).
    Foreign(String),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnpackError::Corrupt(m) => write!(f, "entry rejected: {m}"),
            UnpackError::Transfer(e) => write!(f, "download failed: {e:#}"),
            UnpackError::Local(e) => write!(f, "cannot write the restored files: {e:#}"),
            UnpackError::Unfit(m) => write!(f, "it does not fit here: {m}"),
            UnpackError::Tracked(m) => write!(f, "the repository tracks files there: {m}"),
            UnpackError::Foreign(m) => write!(f, "cachegate did not create {m}"),
        }
    }
}

impl std::error::Error for UnpackError {}

fn corrupt(msg: impl Into<String>) -> UnpackError {
    UnpackError::Corrupt(msg.into())
}

fn local(e: impl Into<anyhow::Error>) -> UnpackError {
    UnpackError::Local(e.into())
}

/// Reads through to the source, hashing and counting, and remembers whether the source
/// itself failed (a broken download) as opposed to the bytes being bad.
struct HashReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    count: u64,
    limit: u64,
    source_failed: bool,
    /// The source found a range that matched its digest on neither of two reads.
    damaged: Option<String>,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                match e.get_ref().and_then(|i| i.downcast_ref::<Damaged>()) {
                    Some(d) => self.damaged = Some(d.0.clone()),
                    None => self.source_failed = true,
                }
                return Err(e);
            }
        };
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other("archive is larger than its manifest says"));
        }
        Ok(n)
    }
}

/// Bytes the decoder hands the extractor at a time.
const DECODED_CHUNK: usize = 256 << 10;

struct Decoded {
    digest: String,
    raw: u64,
    source_failed: bool,
    damaged: Option<String>,
    error: Option<String>,
}

/// Decompression runs on its own thread so it overlaps with file creation. Whatever stops
/// it (the end, bad bytes, a limit, the extractor giving up), it reads the rest of the raw
/// source so the digest covers every byte: a damaged archive is reported as exactly that.
fn spawn_decoder(
    src: Box<dyn Read + Send>,
    expected_size: u64,
    limits: Limits,
    tx: PipeWriter,
) -> std::thread::JoinHandle<Decoded> {
    std::thread::spawn(move || {
        let mut hr = HashReader {
            inner: src,
            hasher: blake3::Hasher::new(),
            count: 0,
            limit: expected_size,
            source_failed: false,
            damaged: None,
        };
        let result = decode(&mut hr, limits, &tx);
        let error = result.err().map(|e| e.to_string());
        match &error {
            Some(e) => tx.fail(e.clone()),
            None => tx.close(),
        }
        let drained = io::copy(&mut hr, &mut io::sink());
        let error = match (error, drained) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(e.to_string()),
            (None, Ok(_)) => None,
        };
        Decoded {
            digest: hr.hasher.finalize().to_hex().to_string(),
            raw: hr.count,
            source_failed: hr.source_failed,
            damaged: hr.damaged,
            error,
        }
    })
}

fn decode<R: Read>(hr: &mut HashReader<R>, limits: Limits, tx: &PipeWriter) -> io::Result<()> {
    let mut dec = zstd::stream::read::Decoder::new(hr)?;
    dec.window_log_max(limits.window_log_max)?;
    let mut decoded: u64 = 0;
    loop {
        let mut chunk = vec![0u8; DECODED_CHUNK];
        let mut filled = 0;
        while filled < chunk.len() {
            let n = dec.read(&mut chunk[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        decoded += filled as u64;
        if decoded > limits.max_bytes {
            return Err(io::Error::other(format!(
                "archive expands past the limit of {} bytes",
                limits.max_bytes
            )));
        }
        let raw = dec.get_ref().get_ref().count;
        if decoded / raw.max(RATIO_FLOOR) > limits.max_ratio {
            return Err(io::Error::other(format!(
                "archive expands more than {}-fold ({decoded} bytes from {raw})",
                limits.max_ratio
            )));
        }
        chunk.truncate(filled);
        if tx.send(chunk).is_err() {
            // The extractor stopped early (it found something wrong).
            return Ok(());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
}

struct Stage {
    dir: tempfile::TempDir,
    target: PathBuf,
}

impl Stage {
    fn root(&self) -> PathBuf {
        self.dir.path().join(STAGED)
    }
}

struct Extractor<'a> {
    stages: &'a [Stage],
    limits: Limits,
    /// What this extraction created, by a hash of the entry name: memory per entry stays
    /// small however long the names in a flood of entries are.
    made: HashMap<NameKey, Kind>,
    /// Bytes of paths kept until the end (directories, hardlinks), bounded by `MAX_HELD`.
    held: usize,
    dirs: Vec<(PathBuf, u32, u64)>,
    stats: UnpackStats,
    entries: u64,
    pool: Pool,
    hardlinks: Vec<(PathBuf, PathBuf)>,
    umask: u32,
    /// Most file content the archive may declare: the byte limit, or less when the ratio
    /// limit would stop the stream anyway, so a bomb is refused before a byte is written.
    byte_cap: u64,
}

fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; it is restored at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

/// Files up to this size are read whole and written by the pool; larger ones stream
/// from the archive on the parsing thread, so memory stays bounded.
const POOLED_FILE_MAX: u64 = 256 << 10;

struct FileJob {
    path: PathBuf,
    data: Vec<u8>,
    mode: u32,
    mtime: u64,
    umask: u32,
}

impl FileJob {
    fn create(&self) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.mode)
            .open(&self.path)
    }

    /// Mode and times go on the open handle: no path lookups, nothing followed.
    fn finish(&self, file: &File) -> io::Result<()> {
        // One syscall less per file in the common case where the umask did not change
        // the mode the file was created with.
        if self.mode & self.umask != 0 {
            file.set_permissions(fs::Permissions::from_mode(self.mode))?;
        }
        let t = unix_time(self.mtime);
        file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
    }

    fn write(&self) -> io::Result<()> {
        let mut f = self.create()?;
        io::Write::write_all(&mut f, &self.data)?;
        self.finish(&f)
    }
}

/// File creation, not decompression, is the floor of a restore (performance.md), and
/// creating files in parallel hides much of the filesystem's per-file latency. The files
/// wait in a queue of 64 (each at most `POOLED_FILE_MAX`), which a rayon pool's threads
/// drain one file at a time as each is free: memory stays bounded however many files
/// the archive holds.
struct Pool {
    tx: Option<SyncSender<FileJob>>,
    /// Hands the queue to the pool and returns once it is drained.
    writer: Option<std::thread::JoinHandle<()>>,
    failed: std::sync::Arc<std::sync::Mutex<Option<io::Error>>>,
}

impl Pool {
    fn new(threads: usize) -> Pool {
        let (tx, rx) = sync_channel::<FileJob>(64);
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let first_failure = failed.clone();
        let write = move |job: FileJob| {
            if let Err(e) = job.write() {
                let mut f = first_failure.lock().expect("pool lock");
                f.get_or_insert(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", job.path.display()),
                ));
            }
        };
        let writer = std::thread::spawn(move || {
            use rayon::iter::{ParallelBridge as _, ParallelIterator as _};
            match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                Ok(pool) => pool.install(|| rx.into_iter().par_bridge().for_each(write)),
                // No threads to be had: one file at a time is slow, not wrong.
                Err(_) => rx.into_iter().for_each(write),
            }
        });
        Pool {
            tx: Some(tx),
            writer: Some(writer),
            failed,
        }
    }

    fn check(&self) -> Result<(), UnpackError> {
        match self.failed.lock().expect("pool lock").take() {
            Some(e) => Err(local(e)),
            None => Ok(()),
        }
    }

    fn submit(&self, job: FileJob) -> Result<(), UnpackError> {
        self.check()?;
        self.tx
            .as_ref()
            .expect("pool open")
            .send(job)
            .map_err(|_| local(anyhow!("file writer stopped")))
    }

    /// Wait for every queued file to be written.
    fn join(&mut self) -> Result<(), UnpackError> {
        self.tx = None;
        if let Some(w) = self.writer.take()
            && w.join().is_err()
        {
            // A file it took may not have been written: never report success then.
            let mut f = self.failed.lock().expect("pool lock");
            f.get_or_insert(io::Error::other("a file writer thread panicked"));
        }
        self.check()
    }
}

/// Modes as restored: no setuid/setgid/sticky, nothing writable by everyone.
fn safe_mode(mode: u32) -> u32 {
    mode & 0o775
}

impl Extractor<'_> {
    /// Split and check an entry name: `<index>[/<component>...]`, nothing else.
    fn parse_name<'n>(&self, name: &'n [u8]) -> Result<(usize, Vec<&'n [u8]>), UnpackError> {
        let shown = || String::from_utf8_lossy(name).into_owned();
        if name.is_empty() {
            return Err(corrupt("an entry has an empty name"));
        }
        if name.len() > self.limits.max_path {
            return Err(corrupt(format!(
                "an entry name is {} bytes long (limit {})",
                name.len(),
                self.limits.max_path
            )));
        }
        if name.iter().any(|&b| b == 0 || b == b'\n' || b == b'\r') {
            return Err(corrupt(format!(
                "entry name {:?} contains a control character",
                shown()
            )));
        }
        if name[0] == b'/' {
            return Err(corrupt(format!("entry name {:?} is absolute", shown())));
        }
        let trimmed = name.strip_suffix(b"/").unwrap_or(name);
        let mut parts = trimmed.split(|&b| b == b'/');
        let index = parts.next().unwrap_or_default();
        let index = std::str::from_utf8(index)
            .ok()
            .filter(|s| !s.is_empty() && (s == &"0" || !s.starts_with('0')))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&i| i < self.stages.len())
            .ok_or_else(|| corrupt(format!("entry {:?} is outside the cached paths", shown())))?;
        let rest: Vec<&[u8]> = parts.collect();
        for c in &rest {
            if c.is_empty() || *c == b"." || *c == b".." {
                return Err(corrupt(format!(
                    "entry name {:?} has a '{}' component",
                    shown(),
                    String::from_utf8_lossy(c)
                )));
            }
        }
        Ok((index, rest))
    }

    fn key(index: usize, parts: &[&[u8]]) -> NameKey {
        // Components hold neither `/` nor NUL, so the joined name is unambiguous.
        let mut h = blake3::Hasher::new();
        h.update(index.to_string().as_bytes());
        for p in parts {
            h.update(b"/");
            h.update(p);
        }
        let mut k = [0u8; 16];
        k.copy_from_slice(&h.finalize().as_bytes()[..16]);
        k
    }

    fn shown(index: usize, parts: &[&[u8]]) -> String {
        let mut s = index.to_string();
        for p in parts {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(p));
        }
        s
    }

    /// Keep a path until the end of the extraction, within the memory budget.
    fn hold(&mut self, bytes: usize) -> Result<(), UnpackError> {
        self.held += bytes;
        if self.held > MAX_HELD {
            return Err(corrupt(format!(
                "archive holds more than {} MiB of directory and link names",
                MAX_HELD >> 20
            )));
        }
        Ok(())
    }

    fn fs_path(&self, index: usize, parts: &[&[u8]]) -> PathBuf {
        let mut p = self.stages[index].root();
        for c in parts {
            p.push(OsStr::from_bytes(c));
        }
        p
    }

    /// Make sure every directory above an entry exists and was made by this extraction.
    fn parents(&mut self, index: usize, parts: &[&[u8]]) -> Result<(), UnpackError> {
        for depth in 0..parts.len() {
            let key = Self::key(index, &parts[..depth]);
            match self.made.get(&key) {
                Some(Kind::Dir) => {}
                Some(_) => {
                    return Err(corrupt(format!(
                        "entry {:?} would be written through a link or file",
                        Self::shown(index, parts)
                    )));
                }
                None => {
                    let path = self.fs_path(index, &parts[..depth]);
                    fs::create_dir(&path).map_err(local)?;
                    self.made.insert(key, Kind::Dir);
                }
            }
        }
        Ok(())
    }

    /// A regular file: small ones are read whole and written by the pool, larger ones
    /// stream from the archive here.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: PathBuf,
        mode: u32,
        mtime: u64,
    ) -> Result<(), UnpackError> {
        let size = entry.size();
        self.stats.bytes = self.stats.bytes.saturating_add(size);
        if self.stats.bytes > self.byte_cap {
            return Err(corrupt(if self.byte_cap < self.limits.max_bytes {
                format!(
                    "archive would expand more than {}-fold",
                    self.limits.max_ratio
                )
            } else {
                format!("archive expands past {} bytes", self.limits.max_bytes)
            }));
        }
        let file = FileJob {
            path,
            data: Vec::new(),
            mode: safe_mode(mode),
            mtime,
            umask: self.umask,
        };
        if size <= POOLED_FILE_MAX {
            let mut file = file;
            file.data.reserve_exact(size as usize);
            let n = entry
                .read_to_end(&mut file.data)
                .map_err(|e| corrupt(format!("cannot read the archive: {e}")))?;
            if n as u64 != size {
                return Err(corrupt("archive ends inside a file"));
            }
            self.pool.submit(file)?;
        } else {
            let mut out = file.create().map_err(local)?;
            let copied = copy(entry, &mut out)?;
            if copied != size {
                return Err(corrupt("archive ends inside a file"));
            }
            file.finish(&out).map_err(local)?;
        }
        Ok(())
    }

    /// A hardlink, to a file this archive already wrote in the same cached path; made at
    /// the end, as the target may still be in the write pool.
    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        name: &[u8],
        index: usize,
        path: PathBuf,
    ) -> Result<(), UnpackError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| corrupt("a hardlink has no target"))?
            .into_owned();
        let (tindex, tparts) = self.parse_name(&target)?;
        let tkey = Self::key(tindex, &tparts);
        // Only files this archive already wrote, in the same cached path.
        if tindex != index || self.made.get(&tkey) != Some(&Kind::File) {
            return Err(corrupt(format!(
                "hardlink {:?} points outside the archive's files",
                String::from_utf8_lossy(name)
            )));
        }
        // The target may still be in the write pool: link once it is done.
        let tpath = self.fs_path(tindex, &tparts);
        self.hold(tpath.as_os_str().len() + path.as_os_str().len())?;
        self.hardlinks.push((tpath, path));
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            // Other tar readers apply these to later entries and the tar crate does not:
            // two readers seeing different names is the start of a smuggling attack.
            return Err(corrupt("archive has a global PAX header"));
        }
        check_pax(&mut entry)?;
        let header = entry.header();
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(corrupt(format!(
                "archive has more than {} entries",
                self.limits.max_entries
            )));
        }
        let name = entry.path_bytes().into_owned();
        let (index, parts) = self.parse_name(&name)?;
        let key = Self::key(index, &parts);
        let mode = header
            .mode()
            .map_err(|e| corrupt(format!("bad mode: {e}")))?;
        let mtime = header.mtime().unwrap_or(0);
        // Found by the fuzzer: a binary mtime field past what a timestamp can hold made
        // setting the time panic (and a panic aborts the release binary mid-restore).
        if i64::try_from(mtime).is_err() {
            return Err(corrupt(format!(
                "entry {:?} has an impossible mtime",
                String::from_utf8_lossy(&name)
            )));
        }
        let path = self.fs_path(index, &parts);

        // A cached path is restored as a directory or a file; a link there would make the
        // target itself point somewhere else.
        if parts.is_empty() && !matches!(kind, tar::EntryType::Directory | tar::EntryType::Regular)
        {
            return Err(corrupt(format!(
                "entry {:?} for a cached path is not a directory or file ({kind:?})",
                String::from_utf8_lossy(&name)
            )));
        }
        if let Some(existing) = self.made.get(&key) {
            if kind.is_dir() && *existing == Kind::Dir {
                self.hold(path.as_os_str().len())?;
                self.dirs.push((path, mode, mtime));
                return Ok(());
            }
            return Err(corrupt(format!(
                "entry {:?} appears twice",
                String::from_utf8_lossy(&name)
            )));
        }
        self.parents(index, &parts)?;

        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.file(&mut entry, path, mode, mtime)?;
                self.made.insert(key, Kind::File);
                self.stats.files += 1;
            }
            tar::EntryType::Directory => {
                fs::create_dir(&path).map_err(local)?;
                self.made.insert(key, Kind::Dir);
                self.hold(path.as_os_str().len())?;
                self.dirs.push((path, mode, mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| corrupt("a symlink has no target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) || target.len() > self.limits.max_path {
                    return Err(corrupt(format!(
                        "symlink {:?} has an empty or invalid target",
                        String::from_utf8_lossy(&name)
                    )));
                }
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).map_err(local)?;
                set_mtime_nofollow(&path, mtime);
                self.made.insert(key, Kind::Link);
                self.stats.files += 1;
            }
            tar::EntryType::Link => {
                self.hardlink(&entry, &name, index, path)?;
                self.made.insert(key, Kind::File);
                self.stats.files += 1;
            }
            other => {
                return Err(corrupt(format!(
                    "entry {:?} has a type that caches never contain ({other:?})",
                    String::from_utf8_lossy(&name)
                )));
            }
        }
        Ok(())
    }
}

/// PAX records that would make this parser and another disagree about the archive: a size
/// that differs from the header's (the next header hides inside the data, or data inside
/// the next header: "TARmageddon"), malformed records, and values with line breaks or NULs.
/// cachegate never writes PAX headers; an archive that has them gets no benefit of doubt.
fn check_pax<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
    let header_size = entry.header().entry_size().ok();
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| corrupt(format!("unreadable PAX header: {e}")))?
    else {
        return Ok(());
    };
    for ext in exts {
        let ext = ext.map_err(|e| corrupt(format!("malformed PAX record: {e}")))?;
        let key = String::from_utf8_lossy(ext.key_bytes()).into_owned();
        let value = ext.value_bytes();
        if value.iter().any(|&b| b == 0 || b == b'\n' || b == b'\r') {
            return Err(corrupt(format!(
                "PAX record {key:?} has a line break or NUL"
            )));
        }
        if key == "size" {
            let pax_size = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            if pax_size.is_none() || pax_size != header_size {
                return Err(corrupt(format!(
                    "PAX size {:?} disagrees with the header's {header_size:?}",
                    String::from_utf8_lossy(value)
                )));
            }
        }
    }
    Ok(())
}

fn copy<R: Read>(src: &mut R, dst: &mut File) -> Result<u64, UnpackError> {
    let mut buf = vec![0u8; 128 << 10];
    let mut total = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(format!("cannot read the archive: {e}"))),
        };
        io::Write::write_all(dst, &buf[..n]).map_err(local)?;
        total += n as u64;
    }
}

/// Seconds since the epoch as a time, saturating rather than overflowing.
fn unix_time(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Sets times by path without following a link in the last component (the staging tree
/// is this run's own, so the path cannot lead anywhere else).
fn set_mtime_nofollow(path: &Path, mtime: u64) {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated path and `times` holds two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        );
    }
}

/// Restore `src` into `targets` (one per cached path, in manifest order).
pub fn unpack(
    src: Box<dyn Read + Send>,
    targets: &[PathBuf],
    expected: &Expected,
    limits: Limits,
) -> Result<UnpackStats, UnpackError> {
    unpack_checked(src, targets, expected, limits, &|_| Ok(()))
}

/// What decides, before the swap, whether the staged trees (one per target) fit here.
pub type FitCheck<'a> = &'a dyn Fn(&[PathBuf]) -> Result<(), String>;

/// `unpack`, with `fits` asked about the staged trees once they are complete and verified;
/// its refusal leaves the workspace as it was and is `UnpackError::Unfit`.
pub fn unpack_checked(
    src: Box<dyn Read + Send>,
    targets: &[PathBuf],
    expected: &Expected,
    limits: Limits,
    fits: FitCheck,
) -> Result<UnpackStats, UnpackError> {
    limits.check_archive_size(expected.size)?;
    let progress = crate::progress::Progress::restore(expected.size);
    let src: Box<dyn Read + Send> = Box::new(progress.reader(src));
    let stages = stage(targets)?;

    // Sixteen decoded chunks ahead of the extractor.
    let (tx, mut reader) = pipe::pipe(16 * DECODED_CHUNK);
    let decoder = spawn_decoder(src, expected.size, limits, tx);
    let mut ex = Extractor {
        stages: &stages,
        limits,
        made: HashMap::new(),
        held: 0,
        dirs: Vec::new(),
        stats: UnpackStats::default(),
        entries: 0,
        pool: Pool::new(4),
        hardlinks: Vec::new(),
        umask: current_umask(),
        byte_cap: limits.max_bytes.min(
            limits
                .max_ratio
                .saturating_mul(expected.size.max(RATIO_FLOOR)),
        ),
    };

    let extracted = (|| -> Result<(), UnpackError> {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive
            .entries()
            .map_err(|e| corrupt(format!("not a cachegate archive: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| corrupt(format!("not a valid archive: {e}")))?;
            ex.entry(entry)?;
        }
        Ok(())
    })();
    let written = ex.pool.join();
    // Let the decoder finish (so the digest covers every byte), or stop it on failure.
    if extracted.is_ok() {
        let _ = io::copy(&mut reader, &mut io::sink());
    }
    drop(reader);
    let decoded = decoder
        .join()
        .map_err(|_| local(anyhow!("decompression thread panicked")))?;

    verify(&decoded, expected)?;
    extracted?;
    written?;
    ex.finish(&stages)?;
    let mut stats = ex.stats.clone();
    stats.archive_bytes = decoded.raw;
    let staged: Vec<PathBuf> = stages.iter().map(Stage::root).collect();
    fits(&staged).map_err(UnpackError::Unfit)?;
    swap_into_place(&stages)?;
    Ok(stats)
}

/// A staging directory beside each target, named for the target it is for.
fn stage(targets: &[PathBuf]) -> Result<Vec<Stage>, UnpackError> {
    let mut stages = Vec::new();
    for t in targets {
        let parent = t
            .parent()
            .ok_or_else(|| local(anyhow!("{} has no parent directory", t.display())))?;
        fs::create_dir_all(parent).map_err(local)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
            .tempdir_in(parent)
            .map_err(local)?;
        if let Some(name) = t.file_name() {
            fs::write(dir.path().join(TARGET_NOTE), name.as_bytes()).map_err(local)?;
        }
        stages.push(Stage {
            dir,
            target: t.clone(),
        });
    }

    Ok(stages)
}

/// The decoder's verdict on the archive: the digest first, so a damaged or swapped archive
/// is reported as that, not as whatever its garbage happened to look like to the
/// decompressor or the tar parser.
fn verify(decoded: &Decoded, expected: &Expected) -> Result<(), UnpackError> {
    if let Some(why) = &decoded.damaged {
        return Err(corrupt(why.clone()));
    }
    if decoded.source_failed {
        return Err(UnpackError::Transfer(anyhow!(
            "{}",
            decoded.error.as_deref().unwrap_or("read failed")
        )));
    }
    if decoded.raw != expected.size {
        return Err(corrupt(if decoded.raw > expected.size {
            format!(
                "archive is larger than the {} bytes its manifest says",
                expected.size
            )
        } else {
            format!(
                "archive is {} bytes, the manifest says {}",
                decoded.raw, expected.size
            )
        }));
    }
    if decoded.digest != expected.digest {
        return Err(corrupt("archive digest does not match the manifest"));
    }
    if let Some(e) = &decoded.error {
        return Err(corrupt(format!("archive does not decompress: {e}")));
    }
    Ok(())
}

impl Extractor<'_> {
    /// Once every entry is written: the hardlinks, a tree for every target, and the
    /// directories' modes and times.
    fn finish(&self, stages: &[Stage]) -> Result<(), UnpackError> {
        for (target, link) in &self.hardlinks {
            fs::hard_link(target, link).map_err(local)?;
        }
        for (i, s) in stages.iter().enumerate() {
            if !self.made.contains_key(&Extractor::key(i, &[])) {
                return Err(corrupt(format!(
                    "archive holds nothing for {}",
                    s.target.display()
                )));
            }
        }

        // Deepest first, so setting a child's times does not disturb its parent's. Half
        // the entries of a node_modules tree are directories: one syscall each in the
        // common case where mkdir already gave the mode the archive asks for.
        let made_mode = 0o777 & !self.umask;
        for (path, mode, mtime) in self.dirs.iter().rev() {
            let wanted = safe_mode(*mode) | 0o700;
            if wanted != made_mode {
                let _ = fs::set_permissions(path, fs::Permissions::from_mode(wanted));
            }
            set_mtime_nofollow(path, *mtime);
        }
        Ok(())
    }
}

/// Staging directories are `<prefix><pid>-<random>`: the pid tells a later run whether the
/// restore that made one is still going.
const STAGING_PREFIX: &str = ".cachegate-staging-";
/// Inside a staging directory: the file name of the target it is for.
const TARGET_NOTE: &str = "target";

/// A restore killed midway (a cancelled job, the OOM killer) leaves its staging directory
/// beside the target, and if it died between the two renames of the swap, the previous tree
/// inside it with the target missing. Put such a tree back and remove what is left, so the
/// next run starts from the state before the interrupted one. Returns what it put back.
pub fn recover_interrupted(targets: &[PathBuf]) -> Vec<PathBuf> {
    let mut restored = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut dead = Vec::new();
    for parent in targets.iter().filter_map(|t| t.parent()) {
        if !seen.insert(parent.to_path_buf()) {
            continue;
        }
        let Ok(listing) = fs::read_dir(parent) else {
            continue;
        };
        for e in listing.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(STAGING_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            // Not a symlink someone planted: only a real directory is ours to clean.
            if !e.file_type().is_ok_and(|t| t.is_dir()) || process_alive(pid) {
                continue;
            }
            dead.push((parent.to_path_buf(), e.path(), pid));
        }
    }
    // A multi-path swap cut short is rolled back whole first, every path of it.
    for (_, dir, pid) in &dead {
        restored.extend(super::journal::roll_back(
            dir,
            &format!("{STAGING_PREFIX}{pid}-"),
        ));
    }
    for (parent, dir, _) in dead {
        let parent = parent.as_path();
        if fs::symlink_metadata(&dir).is_err() {
            continue;
        }
        let aside = dir.join(ASIDE);
        let note = fs::read(dir.join(TARGET_NOTE)).unwrap_or_default();
        // One plain name, so the note can only ever point at a sibling of the staging dir.
        let plain = !note.is_empty() && !note.contains(&b'/') && note != b"." && note != b"..";
        if plain {
            let target = parent.join(OsStr::from_bytes(&note));
            if fs::symlink_metadata(&target).is_err()
                && fs::symlink_metadata(&aside).is_ok()
                && fs::rename(&aside, &target).is_ok()
            {
                restored.push(target);
            }
        }
        // remove_dir_all does not follow symlinks inside.
        let _ = fs::remove_dir_all(&dir);
    }
    restored.sort();
    restored.dedup();
    restored
}

fn process_alive(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only asks whether the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Rename every staged tree over its target. An existing target (even a symlink) is
/// renamed aside first, never followed, and removed only after all swaps succeeded.
fn swap_into_place(stages: &[Stage]) -> Result<(), UnpackError> {
    // One path is one swap; several need the journal to be one step.
    let journal = if stages.len() > 1 {
        let listed: Vec<(&Path, &Path)> = stages
            .iter()
            .map(|s| (s.dir.path(), s.target.as_path()))
            .collect();
        Some(super::journal::Journal::begin(&listed).map_err(local)?)
    } else {
        None
    };
    let mut old = Vec::new();
    let mut done: Vec<(usize, Option<PathBuf>)> = Vec::new();
    let result = (|| -> io::Result<()> {
        for (i, s) in stages.iter().enumerate() {
            let aside = match fs::symlink_metadata(&s.target) {
                Ok(_) => {
                    let aside = s.dir.path().join(ASIDE);
                    fs::rename(&s.target, &aside)?;
                    Some(aside)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            done.push((i, aside.clone()));
            fs::rename(s.root(), &s.target)?;
            if let Some(a) = aside {
                old.push(a);
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Put back what was moved aside, so a failure leaves the previous state.
        for (i, aside) in done.into_iter().rev() {
            let s = &stages[i];
            if let Some(a) = aside {
                if fs::symlink_metadata(s.root()).is_err() {
                    let _ = fs::rename(&s.target, s.root());
                }
                let _ = fs::rename(&a, &s.target);
            }
        }
        if let Some(j) = journal {
            j.commit();
        }
        return Err(local(e));
    }
    if let Some(j) = journal {
        j.commit();
    }
    // The old trees sit inside the staging dirs, which remove themselves on drop;
    // remove_dir_all does not follow symlinks.
    for a in old {
        let _ = match fs::symlink_metadata(&a) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&a),
            _ => fs::remove_file(&a),
        };
    }
    Ok(())
}
