//! A Python environment restored where the install would have left it, at whatever path
//! the project is checked out: GitLab builds one project at several paths
//! (`/builds/<token>/<slot>/group/app`). On save, the files that hold the project's path
//! are recorded; a restore at another path rewrites them (console-script shebangs,
//! `activate*`, `pyvenv.cfg`, editable `.pth`/`direct_url.json`, RECORD hashes) in the
//! staged tree before it is swapped in, or refuses when a file holds the path in a form that
//! cannot be rewritten (a compiled extension). uv's freshness record of a local package
//! (`uv_cache.json`: ctimes of its `pyproject.toml`, the birth time of `src`) is rewritten
//! to this checkout's, as `uv sync` would have written it, so uv sees the environment in sync.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::paths::CachePath;

/// Most files one manifest lists for rewriting; more makes the entry unmovable.
const MAX_FILES: usize = 50_000;

/// What a restore at another path must rewrite.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Relocation {
    /// The project directory the entry was saved from.
    pub dir: String,
    /// `<index of the cached path>/<path inside it>` of the text files and links holding `dir`.
    pub files: Vec<String>,
    /// Why a restore at another path cannot work, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocker: Option<String>,
}

/// Whether `hay` holds `needle` as a path: followed by `/` or by something no path name
/// continues with (so `/b/app` is not found in `/b/app2`).
fn find_path(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find_iter(hay, needle).find(|&i| is_boundary(hay.get(i + needle.len())))
}

fn is_boundary(next: Option<&u8>) -> bool {
    next.is_none_or(|b| !(b.is_ascii_alphanumeric() || b"._-+~".contains(b)))
}

fn replace_path(hay: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len() + 64);
    let mut last = 0;
    for i in memchr::memmem::find_iter(hay, old) {
        if i < last || !is_boundary(hay.get(i + old.len())) {
            continue;
        }
        out.extend_from_slice(&hay[last..i]);
        out.extend_from_slice(new);
        last = i + old.len();
    }
    out.extend_from_slice(&hay[last..]);
    out
}

/// Record what holds `dir` in the cached trees (read once more after packing; the tree is
/// in the page cache then).
pub fn scan(paths: &[CachePath], dir: &Path) -> Relocation {
    let needle = dir.as_os_str().as_encoded_bytes();
    let mut r = Relocation {
        dir: dir.display().to_string(),
        ..Relocation::default()
    };
    for (index, p) in paths.iter().enumerate() {
        for e in crate::paths::walk_sorted(&p.abs).into_iter().flatten() {
            let rel = e.path().strip_prefix(&p.abs).unwrap_or(e.path());
            let name = format!("{index}/{}", rel.display());
            let ft = e.file_type();
            let holds = if ft.is_symlink() {
                std::fs::read_link(e.path())
                    .is_ok_and(|t| find_path(t.as_os_str().as_encoded_bytes(), needle).is_some())
            } else if ft.is_file() {
                let Ok(bytes) = std::fs::read(e.path()) else {
                    continue;
                };
                if find_path(&bytes, needle).is_none() {
                    false
                } else if e.path().extension().is_some_and(|x| x == "pyc") {
                    // The import system replaces a .pyc's recorded source path with the one
                    // it loads from, so an old path there is never seen.
                    false
                } else if bytes.contains(&0) {
                    if r.blocker.is_none() {
                        r.blocker =
                            Some(format!("{}/{} (a binary file)", p.declared, rel.display()));
                    }
                    false
                } else {
                    true
                }
            } else {
                false
            };
            if holds {
                if r.files.len() >= MAX_FILES {
                    r.blocker
                        .get_or_insert_with(|| format!("more than {MAX_FILES} files"));
                    break;
                }
                r.files.push(name);
            }
        }
    }
    r
}

/// Make the staged trees (one per target) right for the project in `dir`: rewrite what
/// holds the old project path when it moved, then uv's freshness records. The error says
/// why the entry cannot be used here.
pub fn apply(r: Option<&Relocation>, staged: &[PathBuf], dir: &Path) -> Result<(), String> {
    // Only Python presets' entries carry a relocation record: other trees are not walked.
    let Some(r) = r else {
        return Ok(());
    };
    if Path::new(&r.dir) != dir {
        if let Some(b) = &r.blocker {
            return Err(format!(
                "it was saved at {} and {b} holds that path, which cachegate cannot rewrite",
                r.dir
            ));
        }
        let old = r.dir.as_bytes();
        let new = dir.as_os_str().as_encoded_bytes();
        let mut rewritten = Vec::new();
        for f in &r.files {
            let Some((index, rel)) = f.split_once('/') else {
                continue;
            };
            let Some(root) = index.parse::<usize>().ok().and_then(|i| staged.get(i)) else {
                continue;
            };
            let path = inside(root, rel).ok_or_else(|| {
                format!("its manifest names {f:?}, which is not a file inside the cached tree")
            })?;
            rewrite(&path, old, new).map_err(|e| format!("cannot rewrite {f}: {e}"))?;
            rewritten.push(path);
        }
        update_records(staged, &rewritten).map_err(|e| format!("cannot update RECORD: {e}"))?;
    }
    for s in staged {
        refresh_uv_cache_info(s, dir);
    }
    Ok(())
}

/// `root/rel` when `rel` is a plain relative path whose directories inside `root` are real
/// directories: a manifest must not steer a rewrite through a link out of the tree.
fn inside(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    let plain = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || rel.as_os_str().is_empty() {
        return None;
    }
    let mut at = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        at.push(c);
        if parts.peek().is_some() && !std::fs::symlink_metadata(&at).ok()?.is_dir() {
            return None;
        }
    }
    let meta = std::fs::symlink_metadata(&at).ok()?;
    (meta.is_file() || meta.file_type().is_symlink()).then_some(at)
}

fn rewrite(path: &Path, old: &[u8], new: &[u8]) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)?;
        let t = replace_path(target.as_os_str().as_encoded_bytes(), old, new);
        std::fs::remove_file(path)?;
        use std::os::unix::ffi::OsStrExt as _;
        return std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&t), path);
    }
    let bytes = std::fs::read(path)?;
    std::fs::write(path, replace_path(&bytes, old, new))?;
    // The install's own times, as on any other restored file.
    let f = std::fs::File::options().write(true).open(path)?;
    f.set_modified(meta.modified()?)?;
    Ok(())
}

/// Each dist-info's RECORD names its files with their sha256 and size: the lines of
/// rewritten files get their new ones, as the install at this path would have written.
fn update_records(staged: &[PathBuf], rewritten: &[PathBuf]) -> std::io::Result<()> {
    if rewritten.is_empty() {
        return Ok(());
    }
    for s in staged {
        for e in crate::paths::walk(s)
            .max_depth(6)
            .into_iter()
            .flatten()
            .filter(|e| e.file_name() == "RECORD" && e.file_type().is_file())
        {
            let Some(info) = e.path().parent() else {
                continue;
            };
            if info.extension().is_none_or(|x| x != "dist-info") {
                continue;
            }
            let base = info.parent().unwrap_or(info);
            let text = std::fs::read_to_string(e.path())?;
            let mut changed = false;
            let mut out = String::with_capacity(text.len());
            for line in text.lines() {
                let name = line.split(',').next().unwrap_or("");
                let file = lexical(&base.join(name));
                if !name.is_empty() && rewritten.contains(&file) && line.contains(",sha256=") {
                    let data = std::fs::read(&file)?;
                    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(&data));
                    out.push_str(&format!("{name},sha256={hash},{}\n", data.len()));
                    changed = true;
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            if changed {
                let meta = std::fs::metadata(e.path())?;
                std::fs::write(e.path(), out)?;
                std::fs::File::options()
                    .write(true)
                    .open(e.path())?
                    .set_modified(meta.modified()?)?;
            }
        }
    }
    Ok(())
}

fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// uv decides a local package is up to date by comparing the `uv_cache.json` of its
/// dist-info with what it computes from the source now: the newest ctime of the package's
/// `pyproject.toml`, `setup.py` and `setup.cfg`, and the birth time of `src`. A checkout
/// made after the entry was saved has other times, so uv would reinstall every workspace
/// member after a hit. Rewritten only for the default cache keys and a source inside the
/// project: anything else (`tool.uv.cache-keys`, a git commit) is left for uv to judge.
fn refresh_uv_cache_info(staged: &Path, dir: &Path) {
    let infos = crate::paths::walk(staged)
        .min_depth(1)
        .max_depth(5)
        .into_iter()
        .flatten()
        .filter(|e| {
            e.file_type().is_dir() && e.file_name().to_string_lossy().ends_with(".dist-info")
        });
    for info in infos {
        let cache = info.path().join("uv_cache.json");
        // Written in place: only a regular file, never through a link.
        if !std::fs::symlink_metadata(&cache).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&cache) else {
            continue;
        };
        let Some(source) = local_source(&info.path().join("direct_url.json")) else {
            continue;
        };
        if !source.starts_with(dir) {
            continue;
        }
        if let Some(fresh) = uv_cache_info(&text, &source) {
            let _ = std::fs::write(&cache, fresh);
        }
    }
}

/// The local directory a `direct_url.json` names (`file://...`), percent-decoded.
fn local_source(direct_url: &Path) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(direct_url).ok()?).ok()?;
    let url = v.get("url")?.as_str()?.strip_prefix("file://")?;
    v.get("dir_info")?;
    let decoded = percent_encoding::percent_decode_str(url)
        .decode_utf8()
        .ok()?;
    Some(PathBuf::from(decoded.as_ref()))
}

fn timestamp(t: std::time::SystemTime) -> serde_json::Value {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    serde_json::json!({"secs_since_epoch": d.as_secs(), "nanos_since_epoch": d.subsec_nanos()})
}

fn ctime(meta: &std::fs::Metadata) -> std::time::SystemTime {
    use std::os::unix::fs::MetadataExt as _;
    let secs = u64::try_from(meta.ctime()).unwrap_or(0);
    let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
    std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

/// `uv_cache.json` as uv would write it for `source` now, or `None` to leave it alone.
fn uv_cache_info(recorded: &str, source: &Path) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(recorded).ok()?;
    let obj = v.as_object_mut()?;
    let defaults_only = obj.get("commit").is_none_or(|c| c.is_null())
        && obj.get("tags").is_none_or(|t| t.is_null())
        && obj
            .get("env")
            .is_none_or(|e| e.as_object().is_some_and(|m| m.is_empty()));
    let pyproject = std::fs::read_to_string(source.join("pyproject.toml")).ok();
    let custom_keys = pyproject
        .as_deref()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| {
            t.get("tool")
                .and_then(|x| x.get("uv"))
                .and_then(|u| u.get("cache-keys"))
                .is_some()
        });
    if !defaults_only || custom_keys {
        return None;
    }
    let newest = ["pyproject.toml", "setup.py", "setup.cfg"]
        .iter()
        .filter_map(|f| std::fs::metadata(source.join(f)).ok())
        .filter(|m| m.is_file())
        .map(|m| ctime(&m))
        .max();
    obj.insert(
        "timestamp".into(),
        newest.map_or(serde_json::Value::Null, timestamp),
    );
    if let Some(dirs) = obj.get_mut("directories").and_then(|d| d.as_object_mut()) {
        for (name, value) in dirs.iter_mut() {
            if value.is_null() {
                continue;
            }
            let born = std::fs::metadata(source.join(name))
                .ok()
                .and_then(|m| m.created().ok())?;
            *value = timestamp(born);
        }
    }
    serde_json::to_string(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_replaced_whole_and_only_whole() {
        let text = b"#!/b/app/.venv/bin/python\nother=/b/app2/x\nend /b/app";
        assert_eq!(
            replace_path(text, b"/b/app", b"/c/longer/app"),
            b"#!/c/longer/app/.venv/bin/python\nother=/b/app2/x\nend /c/longer/app".to_vec()
        );
        assert!(find_path(b"/b/app2", b"/b/app").is_none());
        assert!(find_path(b"'/b/app'", b"/b/app").is_some());
    }

    #[test]
    fn scan_lists_text_files_skips_pyc_and_blocks_on_binaries() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("proj");
        let venv = dir.join(".venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        let py = format!("#!{}/bin/python\n", venv.display());
        std::fs::write(venv.join("bin/black"), &py).unwrap();
        std::fs::write(venv.join("mod.pyc"), format!("\0{}", venv.display())).unwrap();
        std::fs::write(venv.join("plain"), "nothing here").unwrap();
        let paths = [CachePath {
            declared: ".venv".into(),
            abs: venv.clone(),
            optional: false,
            glob: false,
            skip: crate::paths::Names::default(),
        }];
        let r = scan(&paths, &dir);
        assert_eq!(r.files, ["0/bin/black"]);
        assert_eq!(r.blocker, None);
        std::fs::write(
            venv.join("ext.so"),
            format!("\0rpath={}/lib", dir.display()),
        )
        .unwrap();
        let r = scan(&paths, &dir);
        assert_eq!(r.blocker.as_deref(), Some(".venv/ext.so (a binary file)"));

        // Restored elsewhere: the script is rewritten, the binary refuses.
        let other = d.path().join("elsewhere/proj");
        let e = apply(Some(&r), std::slice::from_ref(&venv), &other).unwrap_err();
        assert!(
            e.contains("ext.so") && e.contains(&dir.display().to_string()),
            "{e}"
        );
        std::fs::remove_file(venv.join("ext.so")).unwrap();
        let r = scan(&paths, &dir);
        // A manifest steering the rewrite out of the tree is refused.
        std::os::unix::fs::symlink(d.path(), venv.join("out")).unwrap();
        for bad in ["0/../outside", "0/out/x", "0//etc/passwd"] {
            let forged = Relocation {
                files: vec![bad.into()],
                ..r.clone()
            };
            let e = apply(Some(&forged), std::slice::from_ref(&venv), &other).unwrap_err();
            assert!(e.contains("not a file inside"), "{bad}: {e}");
        }
        apply(Some(&r), std::slice::from_ref(&venv), &other).unwrap();
        let got = std::fs::read_to_string(venv.join("bin/black")).unwrap();
        assert_eq!(got, format!("#!{}/.venv/bin/python\n", other.display()));
    }
}
