//! Where entries live. Every store speaks the same small object interface: objects are
//! named by `entry::ObjectName`, never by user strings, so a backend only has to map the
//! name's text onto its own namespace. Listings are the one place text comes back: they
//! report names as the store has them, and `ObjectMeta::object` reads them as the layout's.
//!
//! The contract each backend keeps: `put` streams and becomes visible only on `finish`
//! (a dropped upload leaves nothing behind); `create_if_absent` is atomic, which is what lets
//! the manifest be the commit point and the first complete writer win.

pub mod dir;
pub mod gitlab;
pub mod http;
pub mod ranged;
pub mod retry;
pub mod retry_log;
pub mod s3;
mod s3_multipart;
pub mod tier;
pub mod transport;

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::entry::{ChunkDigests, ObjectName};

/// Why a backend call failed, as far as callers need to branch on it.
#[derive(Debug)]
pub enum StoreError {
    /// The object does not exist: a plain miss, not trouble.
    NotFound,
    /// The object exists already (create-if-absent lost the race).
    Exists,
    /// Credentials were refused; retrying will not help.
    Auth(anyhow::Error),
    /// No credentials were found to sign requests with: nothing was sent.
    NoCredentials(anyhow::Error),
    /// The store did not answer or stopped moving bytes within the transfer bounds.
    Timeout(anyhow::Error),
    /// This job may not write (`--policy pull`); nothing was sent.
    ReadOnly,
    /// Anything else: network, disk, server errors. Treated as cache trouble.
    Other(anyhow::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "not found"),
            StoreError::Exists => write!(f, "already exists"),
            StoreError::Auth(e) => write!(f, "access denied: {e:#}"),
            StoreError::NoCredentials(e) | StoreError::Timeout(e) => write!(f, "{e:#}"),
            StoreError::ReadOnly => write!(f, "not written: --policy pull never uploads"),
            StoreError::Other(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NotFound,
            std::io::ErrorKind::AlreadyExists => StoreError::Exists,
            std::io::ErrorKind::PermissionDenied => StoreError::Auth(e.into()),
            std::io::ErrorKind::TimedOut => StoreError::Timeout(e.into()),
            _ => StoreError::Other(e.into()),
        }
    }
}

pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// One object as a listing reports it.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    pub name: String,
    pub size: u64,
    /// Seconds since the Unix epoch, when the store knows it.
    pub modified: Option<u64>,
}

impl ObjectMeta {
    /// The listed name as one of the layout's objects; `None` for anything else.
    pub fn object(&self) -> Option<ObjectName> {
        ObjectName::parse(&self.name)
    }
}

/// A multipart upload that was started and never completed or aborted (an upload killed
/// midway): invisible to listings, but its parts are stored and billed.
#[derive(Debug, Clone)]
pub struct IncompleteUpload {
    /// The object name it would have had.
    pub name: String,
    pub upload_id: String,
    /// Seconds since the Unix epoch, when the store says.
    pub initiated: Option<u64>,
}

impl IncompleteUpload {
    /// The name it would have had, as one of the layout's objects.
    pub fn object(&self) -> Option<ObjectName> {
        ObjectName::parse(&self.name)
    }
}

/// A streaming upload. Bytes written are invisible to readers until `finish` succeeds;
/// dropping it without `finish` abandons the upload.
pub trait Upload: Write + Send {
    fn finish(self: Box<Self>) -> StoreResult<()>;
}

pub trait Backend: Send + Sync {
    /// Where the cache lives, for people: never contains credentials.
    fn describe(&self) -> String;

    /// Cheap existence check: the object's size, or `NotFound`.
    fn stat(&self, name: &ObjectName) -> StoreResult<u64>;

    /// Stream an object's bytes.
    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>>;

    /// Stream an archive the manifest says is `size` bytes with this blake3: large ones in
    /// parallel ranges where the store can, small ones (and stores that cannot) as one
    /// `get`. The digest is checked by the caller; a tier uses it to vet its own copy.
    /// `chunks`, the manifest's range digests, let a parallel download check each range.
    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        blake3: &str,
        chunks: Option<&ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        let _ = (size, blake3, chunks);
        self.get(name)
    }

    /// Forget kept-alive connections, so the next request opens a new one: a second read
    /// after bytes arrived damaged must not ride the connection that damaged them.
    fn reconnect(&self) {}

    /// Read a small object whole (manifests).
    fn get_small(&self, name: &ObjectName) -> StoreResult<Vec<u8>> {
        let mut buf = Vec::new();
        self.get(name)?
            .take(16 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::Other(e.into()))?;
        Ok(buf)
    }

    /// Start a streaming upload that replaces `name` when finished.
    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>>;

    /// Write a small object whole, replacing any object of that name atomically (readers
    /// see the old bytes or the new ones).
    fn put_small(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        let mut up = self.put(name)?;
        up.write_all(data)
            .map_err(|e| StoreError::Other(e.into()))?;
        up.finish()
    }

    /// Write a small object only if no object of that name exists; `Exists` otherwise.
    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()>;

    /// Every object whose name starts with `prefix`, one at a time in byte order of their
    /// names (`ls` and `prune` group by it), without holding the whole listing: S3 streams
    /// it page by page, the directory and HTTP stores directory by directory, GitLab one
    /// `<project>/<scope>/<name>` at a time.
    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()>;

    /// The same objects, gathered.
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        self.list_each(prefix, &mut |o| {
            out.push(o);
            Ok(())
        })?;
        Ok(out)
    }

    /// Remove an object; removing a missing object is not an error.
    fn delete(&self, name: &ObjectName) -> StoreResult<()>;

    /// The store itself is there: a directory store's root, an S3 bucket. A listing of one
    /// that is not reads as an empty store, so `ls` and `prune` ask first. Stores that
    /// cannot tell a missing root from an empty one (a plain HTTP server) say yes.
    fn check_root(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Multipart uploads under `prefix` that never finished. Only S3 has them: the other
    /// stores write to a temporary object the server or the filesystem discards.
    fn incomplete_uploads(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// Abort an incomplete upload, freeing its parts.
    fn abort_upload(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        let _ = upload;
        Ok(())
    }
}

/// Time and retry bounds for remote stores (`--connect-timeout`, `--stall-timeout`,
/// `--timeout`, `--retries`). The directory store ignores them.
#[derive(Debug, Clone)]
pub struct Transfer {
    pub connect: std::time::Duration,
    /// Longest a transfer may go without moving a byte.
    pub stall: std::time::Duration,
    /// Longest one whole transfer may take.
    pub overall: std::time::Duration,
    /// Retries after the first attempt, for connection errors, 5xx and 429 only.
    pub retries: u32,
    /// Ranged requests (and multipart parts) in flight for one large archive.
    pub concurrency: usize,
    /// Bytes per ranged request or multipart part; an archive no larger is one request.
    pub chunk_size: usize,
}

/// Upper bounds for `--concurrency` and `--chunk-size`: a job variable must not open
/// thousands of connections or hold gigabytes in memory.
pub const MAX_CONCURRENCY: usize = 32;
pub const MAX_CHUNK_SIZE: usize = 256 << 20;
/// Below this a chunk costs more in request overhead than it gains in parallelism.
pub const MIN_CHUNK_SIZE: usize = 1_000_000;

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            connect: std::time::Duration::from_secs(10),
            stall: std::time::Duration::from_secs(60),
            overall: std::time::Duration::from_secs(1800),
            retries: 3,
            concurrency: 8,
            // 4 MiB: on a link the streams share, as fast as 8 MiB, and half the memory
            // (bench.py --network).
            chunk_size: 4 << 20,
        }
    }
}

/// A parsed `--backend` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    Dir(PathBuf),
    /// A plain HTTP(S) server; the URL as given (credentials are read when opened).
    Http(String),
    /// The project's GitLab generic package registry.
    Gitlab,
    S3(s3::S3Spec),
    /// GitLab's own `cache:` carries the paths; cachegate keeps only a marker.
    Runner,
}

pub const ACCEPTED_FORMS: &str = "/abs/path, file:///abs/path, s3://bucket/prefix?endpoint=URL&region=REGION, http(s)://host/prefix, gitlab, runner";

impl BackendSpec {
    pub fn parse(s: &str) -> Result<BackendSpec> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                bail!(
                    "unknown backend {s:?}: a file:// URL needs an absolute path (file:///abs/path); accepted forms: {ACCEPTED_FORMS}"
                );
            }
            return Ok(BackendSpec::Dir(PathBuf::from(rest)));
        }
        if s.starts_with('/') {
            return Ok(BackendSpec::Dir(PathBuf::from(s)));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            return Ok(BackendSpec::S3(s3::S3Spec::parse(rest)?));
        }
        if s == "runner" {
            return Ok(BackendSpec::Runner);
        }
        if s == "gitlab" {
            return Ok(BackendSpec::Gitlab);
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = reqwest::Url::parse(s).map_err(|e| {
                anyhow::anyhow!(
                    "--backend {s:?} is not a valid URL ({e}); accepted forms: {ACCEPTED_FORMS}"
                )
            })?;
            if url.host_str().is_none_or(str::is_empty) {
                bail!("--backend {s:?} has no host; accepted forms: {ACCEPTED_FORMS}");
            }
            return Ok(BackendSpec::Http(s.to_string()));
        }
        if !s.is_empty() && !s.contains("://") {
            // A relative path would name another store from every job directory (and from
            // `--dir`): it is refused with the absolute path it most likely meant.
            let here = std::env::current_dir().map(|d| d.join(s.trim_start_matches("./")));
            let meant = here.map_or(String::new(), |p| format!(" (here: {})", p.display()));
            bail!(
                "unknown backend {s:?}: a directory store needs an absolute path, such as /srv/cachegate{meant} or file:///srv/cachegate; accepted forms: {ACCEPTED_FORMS}"
            );
        }
        bail!("unknown backend {s:?}; accepted forms: {ACCEPTED_FORMS}")
    }

    pub fn open(&self, transfer: &Transfer) -> Result<Box<dyn Backend>> {
        match self {
            BackendSpec::Dir(path) => Ok(Box::new(dir::DirBackend::new(path.clone()))),
            BackendSpec::Http(url) => Ok(Box::new(http::HttpBackend::open(url, transfer)?)),
            BackendSpec::Gitlab => Ok(Box::new(gitlab::GitlabBackend::open(transfer)?)),
            BackendSpec::S3(spec) => Ok(Box::new(s3::S3Backend::open(spec, transfer)?)),
            BackendSpec::Runner => bail!(
                "--backend runner stores nothing (GitLab's own cache: carries the paths); this command needs a store such as s3://bucket/prefix or a directory"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directory_forms() {
        assert_eq!(
            BackendSpec::parse("/srv/cache").unwrap(),
            BackendSpec::Dir("/srv/cache".into())
        );
        assert_eq!(
            BackendSpec::parse("file:///srv/cache").unwrap(),
            BackendSpec::Dir("/srv/cache".into())
        );
    }

    #[test]
    fn parses_remote_forms() {
        assert_eq!(
            BackendSpec::parse("https://cache.example/cg").unwrap(),
            BackendSpec::Http("https://cache.example/cg".into())
        );
        assert_eq!(BackendSpec::parse("gitlab").unwrap(), BackendSpec::Gitlab);
        for bad in ["http://", "https://", "gitlab://x"] {
            let err = BackendSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn a_relative_backend_said_only_unknown_backend() {
        for rel in ["relstore", "./relstore", "cache/dir"] {
            let err = BackendSpec::parse(rel).unwrap_err().to_string();
            assert!(err.contains(&format!("{rel:?}")), "{err}");
            assert!(err.contains("needs an absolute path"), "{err}");
            let here = std::env::current_dir().unwrap();
            let meant = here.join(rel.trim_start_matches("./"));
            assert!(err.contains(&meant.display().to_string()), "{err}");
        }
        let err = BackendSpec::parse("ftp://x/y").unwrap_err().to_string();
        assert!(!err.contains("absolute path"), "{err}");
    }

    #[test]
    fn rejects_unknown_forms_naming_them() {
        for bad in ["ftp://x/y", "relative/dir", "file://relative", ""] {
            let err = BackendSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("accepted forms"), "{err}");
        }
    }
}
