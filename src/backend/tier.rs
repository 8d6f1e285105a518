//! A local tier: a directory store on the runner's own disk in front of the remote store
//! (`--local-tier DIR`), so a self-hosted runner with a persistent disk does not pay the
//! network for an entry it restored an hour ago.
//!
//! Every job on the machine can write that directory, whatever its ref, so the tier is
//! never trusted more than an unprotected job: manifests of the `protected` scope are always
//! read from the remote store (whose credentials enforce the scopes), never from the tier;
//! an archive is served from the tier only when its blake3 matches the manifest that named
//! it. A planted or damaged tier file therefore is at worst a tier miss. Archives come into
//! the tier as they stream from the remote (one download), and saves write both.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::dir::DirBackend;
use super::{Backend, IncompleteUpload, ObjectMeta, StoreResult, Upload};
use crate::entry::ObjectName;

pub struct Tiered {
    root: PathBuf,
    tier: DirBackend,
    remote: Arc<dyn Backend>,
    max_size: Option<u64>,
    /// An archive came from the tier: the hit line says so, since a job's log is where
    /// people look to see whether the network was paid.
    served_locally: std::sync::atomic::AtomicBool,
}

/// Whether the tier may answer for this manifest: not for the protected scope.
fn tier_may_answer(name: &ObjectName) -> bool {
    name.scope() != crate::scope::Scope::Protected
}

/// Mark a tier file as just used, for the least-recently-used pruning.
fn touch(path: &Path) {
    if let Ok(f) = File::options().write(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

impl Tiered {
    pub fn new(root: PathBuf, remote: Arc<dyn Backend>, max_size: Option<u64>) -> Tiered {
        Tiered {
            tier: DirBackend::new(root.clone()),
            root,
            remote,
            max_size,
            served_locally: Default::default(),
        }
    }

    fn path(&self, name: &ObjectName) -> PathBuf {
        self.root.join(name.to_string())
    }

    fn keep(&self, name: &ObjectName, data: &[u8]) {
        if let Ok(mut up) = self.tier.put(name)
            && up.write_all(data).is_ok()
            && up.finish().is_ok()
        {
            self.enforce_max();
        }
    }

    /// The tier's own copy of an archive, if it is the one the manifest names.
    fn local_archive(&self, name: &ObjectName, size: u64, blake3: &str) -> Option<File> {
        let path = self.path(name);
        let meta = fs::metadata(&path).ok()?;
        if meta.len() != size {
            return None;
        }
        if file_digest(&path).ok()? != blake3 {
            let _ = fs::remove_file(&path);
            return None;
        }
        touch(&path);
        File::open(&path).ok()
    }

    /// Least recently used files first, until the tier fits `--local-tier-max-size`.
    fn enforce_max(&self) {
        let Some(max) = self.max_size else { return };
        prune_lru(&self.root, max);
    }
}

/// The blake3 of a file, read in blocks rather than mapped: the pages of a mapping count in
/// the process's RSS (a 1 GB archive would show as 1 GB), a read's page cache does not. Each
/// block is still hashed on every core.
fn file_digest(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut block = vec![0u8; 1 << 20];
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(hasher.finalize().to_hex().to_string());
        }
        hasher.update_rayon(&block[..n]);
    }
}

/// Delete the least recently used files under `root` until at most `max` bytes remain.
pub fn prune_lru(root: &Path, max: u64) {
    let mut files: Vec<(SystemTime, u64, PathBuf)> = crate::paths::walk(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".tmp-"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((m.modified().ok()?, m.len(), e.into_path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

/// The remote download, copied into the tier as it passes; the copy is kept only if every
/// byte arrived and they are the archive the manifest names.
struct Tee {
    inner: Box<dyn Read + Send>,
    copy: Option<Box<dyn Upload>>,
    hasher: blake3::Hasher,
    count: u64,
    size: u64,
    blake3: String,
    owner: Arc<Tiered>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let Some(up) = self.copy.take()
                && self.count == self.size
                && self.hasher.finalize().to_hex().as_str() == self.blake3
                && up.finish().is_ok()
            {
                self.owner.enforce_max();
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        if let Some(up) = self.copy.as_mut()
            && up.write_all(&buf[..n]).is_err()
        {
            // A full disk under the tier costs the tier its copy, not the restore.
            self.copy = None;
        }
        Ok(n)
    }
}

/// A save to the remote, written to the tier too; the tier's copy counts only once the
/// remote one finished.
struct BothUpload {
    remote: Box<dyn Upload>,
    copy: Option<Box<dyn Upload>>,
    owner: Arc<Tiered>,
}

impl Write for BothUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.remote.write(buf)?;
        if let Some(up) = self.copy.as_mut()
            && up.write_all(&buf[..n]).is_err()
        {
            self.copy = None;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.remote.flush()
    }
}

impl Upload for BothUpload {
    fn finish(self: Box<Self>) -> StoreResult<()> {
        let BothUpload {
            remote,
            copy,
            owner,
        } = *self;
        remote.finish()?;
        if let Some(up) = copy
            && up.finish().is_ok()
        {
            owner.enforce_max();
        }
        Ok(())
    }
}

/// The tiered store, as a backend.
pub fn open(root: PathBuf, remote: Arc<dyn Backend>, max_size: Option<u64>) -> Arc<dyn Backend> {
    Arc::new(TierRef(Arc::new(Tiered::new(root, remote, max_size))))
}

/// Readers and uploads keep the tier alive for the pruning they trigger when they end.
struct TierRef(Arc<Tiered>);

impl Backend for TierRef {
    fn reconnect(&self) {
        self.0.remote.reconnect();
    }

    fn describe(&self) -> String {
        let t = &self.0;
        if t.served_locally.load(std::sync::atomic::Ordering::Relaxed) {
            return format!(
                "local tier {} (in front of {})",
                t.root.display(),
                t.remote.describe()
            );
        }
        format!("{} (local tier {})", t.remote.describe(), t.root.display())
    }

    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        self.0.remote.stat(name)
    }

    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        self.0.remote.get(name)
    }

    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        blake3: &str,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        let t = &self.0;
        if let Some(f) = t.local_archive(name, size, blake3) {
            t.served_locally
                .store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Box::new(f));
        }
        let inner = t.remote.get_archive(name, size, blake3, chunks)?;
        Ok(Box::new(Tee {
            inner,
            copy: t.tier.put(name).ok(),
            hasher: blake3::Hasher::new(),
            count: 0,
            size,
            blake3: blake3.to_string(),
            owner: t.clone(),
        }))
    }

    fn get_small(&self, name: &ObjectName) -> StoreResult<Vec<u8>> {
        let t = &self.0;
        if tier_may_answer(name)
            && let Ok(bytes) = t.tier.get_small(name)
        {
            touch(&t.path(name));
            return Ok(bytes);
        }
        let bytes = t.remote.get_small(name)?;
        if tier_may_answer(name) {
            t.keep(name, &bytes);
        }
        Ok(bytes)
    }

    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        let t = &self.0;
        Ok(Box::new(BothUpload {
            remote: t.remote.put(name)?,
            copy: t.tier.put(name).ok(),
            owner: t.clone(),
        }))
    }

    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        let t = &self.0;
        t.remote.create_if_absent(name, data)?;
        if tier_may_answer(name) {
            t.keep(name, data);
        }
        Ok(())
    }

    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        self.0.remote.list_each(prefix, each)
    }

    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        let _ = self.0.tier.delete(name);
        self.0.remote.delete(name)
    }

    fn incomplete_uploads(&self, prefix: &str) -> StoreResult<Vec<IncompleteUpload>> {
        self.0.remote.incomplete_uploads(prefix)
    }

    fn abort_upload(&self, upload: &IncompleteUpload) -> StoreResult<()> {
        self.0.remote.abort_upload(upload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use std::time::Duration;

    #[test]
    fn pruning_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.path().join(name);
            fs::write(&p, vec![0u8; 100]).unwrap();
            File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(now - Duration::from_secs(1000 - i as u64 * 100))
                .unwrap();
        }
        touch(&dir.path().join("old"));
        prune_lru(dir.path(), 200);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["new", "old"]);
    }

    #[test]
    fn the_tier_digest_is_the_archive_digest_read_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        // Over one block, and not a multiple of it.
        let data: Vec<u8> = (0..(3 << 20) + 12_345u32)
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&p, &data).unwrap();
        assert_eq!(
            file_digest(&p).unwrap(),
            blake3::hash(&data).to_hex().to_string()
        );
    }

    #[test]
    fn protected_manifests_never_come_from_the_tier() {
        let key = "ab".repeat(32);
        let at = |scope| crate::entry::EntryName::new("acme-app", scope, "pip", &key).manifest();
        assert!(!tier_may_answer(&at(Scope::Protected)));
        assert!(tier_may_answer(&at(Scope::Unprotected)));
        assert!(tier_may_answer(&at(Scope::Local)));
    }
}
