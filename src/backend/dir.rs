//! A local or network-mounted directory. Object names map to files under the root;
//! uploads go to a temp file in the destination directory and are renamed into place, so
//! a reader sees either nothing or a complete file, also over NFS.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use tempfile::NamedTempFile;

use super::{Backend, ObjectMeta, StoreError, StoreResult, Upload};
use crate::entry::ObjectName;

pub struct DirBackend {
    root: PathBuf,
}

impl DirBackend {
    pub fn new(root: PathBuf) -> Self {
        DirBackend { root }
    }

    fn path(&self, name: &ObjectName) -> StoreResult<PathBuf> {
        self.path_of(&name.to_string())
    }

    /// The path of an object or a listed directory.
    fn path_of(&self, name: &str) -> StoreResult<PathBuf> {
        // Names come from `entry::ObjectName`, but a backend is the last line of defence for the
        // invariant that nothing lands outside its root (a namespace is not escaped).
        if !crate::entry::safe_object_name(name) {
            return Err(StoreError::Other(anyhow!("invalid object name {name:?}")));
        }
        Ok(self.root.join(name))
    }

    fn temp_beside(&self, path: &Path) -> StoreResult<NamedTempFile> {
        let parent = path.parent().expect("object paths have a parent");
        fs::create_dir_all(parent).map_err(|e| with_path(e, parent))?;
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(|e| with_path(e, parent))
    }
}

fn with_path(e: io::Error, path: &Path) -> StoreError {
    let kind = e.kind();
    let err = anyhow!("{}: {e}", path.display());
    match kind {
        io::ErrorKind::NotFound => StoreError::NotFound,
        io::ErrorKind::AlreadyExists => StoreError::Exists,
        io::ErrorKind::PermissionDenied => StoreError::Auth(err),
        _ => StoreError::Other(err),
    }
}

struct DirUpload {
    temp: NamedTempFile,
    dest: PathBuf,
}

impl Write for DirUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

impl Upload for DirUpload {
    fn finish(self: Box<Self>) -> StoreResult<()> {
        let DirUpload { temp, dest } = *self;
        temp.persist(&dest).map_err(|e| with_path(e.error, &dest))?;
        Ok(())
    }
}

impl Backend for DirBackend {
    fn describe(&self) -> String {
        crate::echo::value(&self.root.display().to_string())
    }

    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        let path = self.path(name)?;
        let meta = fs::metadata(&path).map_err(|e| with_path(e, &path))?;
        Ok(meta.len())
    }

    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        let path = self.path(name)?;
        let file = File::open(&path).map_err(|e| with_path(e, &path))?;
        Ok(Box::new(file))
    }

    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        let dest = self.path(name)?;
        let temp = self.temp_beside(&dest)?;
        Ok(Box::new(DirUpload { temp, dest }))
    }

    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        let dest = self.path(name)?;
        let mut temp = self.temp_beside(&dest)?;
        temp.write_all(data)
            .map_err(|e| with_path(e, temp.path()))?;
        // persist_noclobber is link()+unlink, atomic on local filesystems and NFS alike.
        temp.persist_noclobber(&dest)
            .map_err(|e| with_path(e.error, &dest))?;
        Ok(())
    }

    fn check_root(&self) -> StoreResult<()> {
        if self.root.is_dir() {
            return Ok(());
        }
        Err(StoreError::Other(anyhow!(
            "the directory store {} does not exist (or is not a directory); create it (mkdir -p {0}) or point --backend at the cache directory",
            self.root.display()
        )))
    }

    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        // Walk from the deepest directory the prefix names, then filter by the full prefix.
        let dir_part = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path_of(dir_part)?
        };
        if !start.exists() {
            return Ok(());
        }
        // A directory sorts as its name plus `/`, so whole names come in byte order, as S3
        // lists them (`pip-x/…` before `pip/…`): `ls` and `prune` group by it.
        let walk = walkdir::WalkDir::new(&start).sort_by_key(|e| {
            let mut k = e.file_name().as_encoded_bytes().to_vec();
            if e.file_type().is_dir() {
                k.push(b'/');
            }
            k
        });
        for entry in walk {
            let entry = entry.map_err(|e| StoreError::Other(e.into()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&self.root)
                .expect("walk stays under root");
            let name = rel.to_string_lossy().replace('\\', "/");
            if !name.starts_with(prefix)
                || name
                    .rsplit('/')
                    .next()
                    .is_some_and(|b| b.starts_with(".tmp-"))
            {
                continue;
            }
            let meta = entry.metadata().map_err(|e| StoreError::Other(e.into()))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs());
            each(ObjectMeta {
                name,
                size: meta.len(),
                modified,
            })?;
        }
        Ok(())
    }

    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(with_path(e, &path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryName;
    use crate::scope::Scope;

    fn entry(name: &str, key: &str) -> EntryName {
        EntryName::new("ns", Scope::Local, name, key)
    }

    #[test]
    fn upload_is_invisible_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        let a = entry("x", "a").archive("1");
        let mut up = b.put(&a).unwrap();
        up.write_all(b"hello").unwrap();
        assert!(matches!(b.stat(&a), Err(StoreError::NotFound)));
        assert!(
            b.list("v2/").unwrap().is_empty(),
            "temp files are not listed"
        );
        up.finish().unwrap();
        assert_eq!(b.stat(&a).unwrap(), 5);
        assert_eq!(b.get_small(&a).unwrap(), b"hello");
    }

    #[test]
    fn dropped_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        let a = entry("x", "a").archive("1");
        let mut up = b.put(&a).unwrap();
        up.write_all(b"partial").unwrap();
        drop(up);
        let entry_dir = dir.path().join(entry("x", "a").dir());
        assert_eq!(fs::read_dir(entry_dir).unwrap().count(), 0);
    }

    #[test]
    fn first_writer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        let m = entry("x", "m").manifest();
        b.create_if_absent(&m, b"first").unwrap();
        assert!(matches!(
            b.create_if_absent(&m, b"second"),
            Err(StoreError::Exists)
        ));
        assert_eq!(b.get_small(&m).unwrap(), b"first");
    }

    #[test]
    fn refuses_names_that_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().join("root"));
        // The namespace is the one segment the layout takes as it is.
        for bad in ["..", "../x", "/etc", "a//b", ""] {
            let name = EntryName::new(bad, Scope::Local, "x", "k").manifest();
            assert!(b.put(&name).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_by_prefix_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        for n in [entry("a", "1"), entry("a", "2"), entry("b", "1")] {
            b.create_if_absent(&n.manifest(), b"{}").unwrap();
        }
        let names: Vec<_> = b
            .list(&entry("a", "").dir())
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["v2/ns/local/a/1.json", "v2/ns/local/a/2.json"]);
        b.delete(&entry("a", "1").manifest()).unwrap();
        b.delete(&entry("a", "1").manifest()).unwrap();
        assert_eq!(b.list("v2/ns/local/").unwrap().len(), 2);
    }
}
