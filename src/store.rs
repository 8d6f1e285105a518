//! The store a job uses, chosen once (sccache's `storage_from_config`): the `--backend` value
//! is parsed and opened in one place, and runner mode is one kind of store rather than a
//! check in every command. The `--policy` is applied here too, as a gate around the store,
//! so no command can forget it: under `pull` nothing is written, under `push` nothing read.

use std::io::Read;
use std::sync::Arc;

use anyhow::{Result, bail};

use crate::backend::{
    Backend, BackendSpec, IncompleteUpload, ObjectMeta, StoreError, StoreResult, Transfer, Upload,
};
use crate::entry::ObjectName;

/// `--policy`: whether a job restores, saves, or both.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Restore only; never upload
    Pull,
    /// Never restore; run and upload
    Push,
    /// Restore, and upload on a miss
    PullPush,
}

impl Policy {
    pub fn pulls(self) -> bool {
        self != Policy::Push
    }
    pub fn pushes(self) -> bool {
        self != Policy::Pull
    }
}

pub enum Store {
    /// Entries as objects: a directory, S3, an HTTP server, the GitLab package registry.
    Objects(Gated),
    /// Runner mode: GitLab's own `cache:` carries the paths; a marker records the key.
    Marker(Marker),
}

/// Runner mode's store: the marker file inside the first cached path.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub reads: bool,
    pub writes: bool,
}

impl Store {
    /// The store the options name (`--backend`, else the configuration), opened under
    /// `policy`.
    pub fn configured(backend: Option<&str>, transfer: &Transfer, policy: Policy) -> Result<Store> {
        Store::open(&crate::config::backend_spec(backend)?, transfer, policy)
    }

    /// The object store the options name, read and write, for the commands that manage
    /// entries (runner mode has none: an error).
    pub fn managed(backend: Option<&str>, transfer: &Transfer) -> Result<Gated> {
        Store::configured(backend, transfer, Policy::PullPush)?.objects()
    }

    /// The one factory: every command that touches entries opens its store here.
    pub fn open(spec: &BackendSpec, transfer: &Transfer, policy: Policy) -> Result<Store> {
        let (reads, writes) = (policy.pulls(), policy.pushes());
        Ok(match spec {
            BackendSpec::Runner => Store::Marker(Marker { reads, writes }),
            _ => Store::Objects(Gated {
                inner: Arc::from(spec.open(transfer)?),
                reads,
                writes,
            }),
        })
    }

    /// Put a local tier (`--local-tier`) in front of an object store, under the policy gate.
    pub fn with_local_tier(self, dir: Option<std::path::PathBuf>, max_size: Option<u64>) -> Store {
        match (self, dir) {
            (Store::Objects(g), Some(dir)) => Store::Objects(Gated {
                inner: crate::backend::tier::open(dir, g.inner, max_size),
                ..g
            }),
            (store, _) => store,
        }
    }

    /// Where the cache lives, for people: never contains credentials.
    pub fn describe(&self) -> String {
        match self {
            Store::Objects(b) => b.describe(),
            Store::Marker(_) => "runner".into(),
        }
    }

    /// The object store, unless this is runner mode (which stores nothing).
    pub fn into_objects(self) -> Option<Gated> {
        match self {
            Store::Objects(g) => Some(g),
            Store::Marker(_) => None,
        }
    }

    /// The object store, for the commands that manage entries (`ls`, `prune`).
    pub fn objects(self) -> Result<Gated> {
        match self {
            Store::Objects(g) => Ok(g),
            Store::Marker(_) => bail!(
                "--backend runner stores nothing (GitLab's own cache: carries the paths); this command needs a store such as s3://bucket/prefix or a directory"
            ),
        }
    }
}

/// An object store behind the policy: reads of entries answer "not found" when the job may
/// not restore, and writes are refused (`StoreError::ReadOnly`, nothing sent) when it may not
/// save. Existence checks and listings pass: they restore nothing.
#[derive(Clone)]
pub struct Gated {
    /// Shared with the threads that renew a lease or record a last use.
    inner: Arc<dyn Backend>,
    reads: bool,
    writes: bool,
}

impl Gated {
    /// Read a small object this job may overwrite: allowed whenever it may write (under
    /// `--policy push` too), since a refresh reads the manifest it replaces to learn which
    /// archive to remove, which restores nothing. A job that may not write reads it as any
    /// other object.
    pub fn peek(&self, name: &ObjectName) -> StoreResult<Vec<u8>> {
        if self.writes {
            self.inner.get_small(name)
        } else {
            self.get_small(name)
        }
    }

    /// Whether entries may be restored through this store (not `--policy push`): for what
    /// only makes sense when they can, such as waiting for another job's save.
    pub fn reads(&self) -> bool {
        self.reads
    }

    /// Whether entries may be saved through this store (not `--policy pull`).
    pub fn writes(&self) -> bool {
        self.writes
    }

    fn write(&self) -> StoreResult<()> {
        if self.writes {
            Ok(())
        } else {
            Err(StoreError::ReadOnly)
        }
    }

    fn read(&self) -> StoreResult<()> {
        if self.reads {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }
}

impl Backend for Gated {
    fn reconnect(&self) {
        self.inner.reconnect();
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        self.inner.stat(name)
    }
    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        self.read()?;
        self.inner.get(name)
    }
    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        blake3: &str,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        self.read()?;
        self.inner.get_archive(name, size, blake3, chunks)
    }
    fn get_small(&self, name: &ObjectName) -> StoreResult<Vec<u8>> {
        self.read()?;
        self.inner.get_small(name)
    }
    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        self.write()?;
        self.inner.put(name)
    }
    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        self.write()?;
        self.inner.create_if_absent(name, data)
    }
    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.inner.list_each(prefix, each)
    }
    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        self.write()?;
        self.inner.delete(name)
    }
    fn check_root(&self) -> StoreResult<()> {
        self.inner.check_root()
    }
    fn incomplete_uploads(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        self.inner.incomplete_uploads(prefix)
    }
    fn abort_upload(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        self.write()?;
        self.inner.abort_upload(upload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryName;
    use crate::scope::Scope;

    fn manifest() -> ObjectName {
        EntryName::new("ns", Scope::Local, "x", "k").manifest()
    }

    fn dir_store(policy: Policy) -> (tempfile::TempDir, Gated) {
        let d = tempfile::tempdir().unwrap();
        let spec = BackendSpec::Dir(d.path().to_path_buf());
        let store = Store::open(&spec, &Transfer::default(), policy).unwrap();
        (d, store.objects().unwrap())
    }

    #[test]
    fn pull_writes_nothing() {
        let (d, g) = dir_store(Policy::Pull);
        assert!(matches!(
            g.put(&EntryName::new("ns", Scope::Local, "x", "k").archive("1")),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(
            g.create_if_absent(&manifest(), b"{}"),
            Err(StoreError::ReadOnly)
        ));
        assert!(matches!(g.delete(&manifest()), Err(StoreError::ReadOnly)));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn push_reads_nothing_but_sees_what_exists() {
        let (_d, rw) = dir_store(Policy::PullPush);
        rw.create_if_absent(&manifest(), b"{}").unwrap();
        let (d, _) = (_d, ());
        let spec = BackendSpec::Dir(d.path().to_path_buf());
        let push = Store::open(&spec, &Transfer::default(), Policy::Push)
            .unwrap()
            .objects()
            .unwrap();
        assert!(matches!(
            push.get_small(&manifest()),
            Err(StoreError::NotFound)
        ));
        assert!(push.stat(&manifest()).is_ok());
    }

    #[test]
    fn runner_mode_is_a_store_without_objects() {
        let s = Store::open(&BackendSpec::Runner, &Transfer::default(), Policy::Push).unwrap();
        assert!(matches!(
            s,
            Store::Marker(Marker {
                reads: false,
                writes: true
            })
        ));
        let e = s.objects().err().unwrap().to_string();
        assert!(e.contains("stores nothing"), "{e}");
    }
}
