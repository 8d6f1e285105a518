//! A local or network-mounted directory. Object names map to files under the root;
//! uploads go to a temp file in the destination directory and are renamed into place, so
//! a reader sees either nothing or a complete file, also over NFS.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use tempfile::NamedTempFile;

use super::{Backend, ObjectMeta, StoreError, StoreResult, Upload};

pub struct DirBackend {
    root: PathBuf,
}

impl DirBackend {
    pub fn new(root: PathBuf) -> Self {
        DirBackend { root }
    }

    fn path(&self, name: &str) -> StoreResult<PathBuf> {
        // Names come from `entry::ObjectName`, but a backend is the last line of defence for the
        // invariant that nothing lands outside its root.
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

    fn stat(&self, name: &str) -> StoreResult<u64> {
        let path = self.path(name)?;
        let meta = fs::metadata(&path).map_err(|e| with_path(e, &path))?;
        Ok(meta.len())
    }

    fn get(&self, name: &str) -> StoreResult<Box<dyn Read + Send>> {
        let path = self.path(name)?;
        let file = File::open(&path).map_err(|e| with_path(e, &path))?;
        Ok(Box::new(file))
    }

    fn put(&self, name: &str) -> StoreResult<Box<dyn Upload>> {
        let dest = self.path(name)?;
        let temp = self.temp_beside(&dest)?;
        Ok(Box::new(DirUpload { temp, dest }))
    }

    fn create_if_absent(&self, name: &str, data: &[u8]) -> StoreResult<()> {
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
            self.path(dir_part)?
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

    fn delete(&self, name: &str) -> StoreResult<()> {
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

    #[test]
    fn upload_is_invisible_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        let mut up = b.put("v1/local/x/a.bin").unwrap();
        up.write_all(b"hello").unwrap();
        assert!(matches!(
            b.stat("v1/local/x/a.bin"),
            Err(StoreError::NotFound)
        ));
        assert!(
            b.list("v1/").unwrap().is_empty(),
            "temp files are not listed"
        );
        up.finish().unwrap();
        assert_eq!(b.stat("v1/local/x/a.bin").unwrap(), 5);
        assert_eq!(b.get_small("v1/local/x/a.bin").unwrap(), b"hello");
    }

    #[test]
    fn dropped_upload_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        let mut up = b.put("v1/a.bin").unwrap();
        up.write_all(b"partial").unwrap();
        drop(up);
        assert_eq!(fs::read_dir(dir.path().join("v1")).unwrap().count(), 0);
    }

    #[test]
    fn first_writer_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        b.create_if_absent("v1/m.json", b"first").unwrap();
        assert!(matches!(
            b.create_if_absent("v1/m.json", b"second"),
            Err(StoreError::Exists)
        ));
        assert_eq!(b.get_small("v1/m.json").unwrap(), b"first");
    }

    #[test]
    fn refuses_names_that_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().join("root"));
        for bad in ["../x", "/etc/passwd", "a/../../x", "a//b", ""] {
            assert!(b.put(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_by_prefix_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let b = DirBackend::new(dir.path().to_path_buf());
        for n in [
            "v1/local/a/1.json",
            "v1/local/a/2.json",
            "v1/local/b/1.json",
        ] {
            b.create_if_absent(n, b"{}").unwrap();
        }
        let names: Vec<_> = b
            .list("v1/local/a/")
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["v1/local/a/1.json", "v1/local/a/2.json"]);
        b.delete("v1/local/a/1.json").unwrap();
        b.delete("v1/local/a/1.json").unwrap();
        assert_eq!(b.list("v1/local/").unwrap().len(), 2);
    }
}
