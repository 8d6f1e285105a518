//! Cached paths outside the project. A `--path` there is refused unless it is the user's own
//! tool cache (under `$HOME`, or under a tool's variable such as `CARGO_HOME`) or named with
//! `--allow-outside-path`: `--path /etc` would archive `shadow`. And a restore replaces an
//! existing directory out there only if cachegate made it (a restore, or the install it ran
//! when the directory was absent), as noted under `$XDG_STATE_HOME/cachegate/claimed`;
//! anything else is the user's, and the restore is a miss rather than a deletion.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::env_vars;

/// Where credentials live under `$HOME`: never a tool cache, whatever the flag.
const CREDENTIAL_DIRS: &[&str] = &[".ssh", ".gnupg", ".aws", ".azure", ".kube", ".docker"];

fn var_dir(name: &str) -> Option<PathBuf> {
    let v = std::env::var_os(name).filter(|v| !v.is_empty())?;
    let p = PathBuf::from(v);
    // A tool variable set to `/` would allow everything.
    (p.is_absolute() && p.parent().is_some()).then_some(p)
}

/// Why `abs` may not be cached without `--allow-outside-path`, or `None` when it may:
/// inside the project, or inside the user's own tool caches.
pub fn refusal(project: &Path, abs: &Path) -> Option<String> {
    if abs.starts_with(project) {
        return None;
    }
    let home = var_dir(env_vars::HOME);
    if let Some(h) = &home
        && let Ok(rest) = abs.strip_prefix(h)
        && let Some(first) = rest.components().next()
    {
        let first = first.as_os_str().to_string_lossy();
        if CREDENTIAL_DIRS.contains(&first.as_ref()) {
            return Some(format!("it holds credentials (~/{first})"));
        }
        return None;
    }
    if env_vars::TOOL_CACHE_VARS
        .iter()
        .filter_map(|v| var_dir(v))
        .any(|d| abs.starts_with(d))
    {
        return None;
    }
    Some(format!(
        "it is outside the project ({}) and outside your own tool caches (under $HOME, or a tool's variable such as CARGO_HOME, GOMODCACHE, PIP_CACHE_DIR, BUNDLE_PATH)",
        project.display()
    ))
}

fn state_dir() -> Option<PathBuf> {
    var_dir(env_vars::XDG_STATE_HOME)
        .or_else(|| var_dir(env_vars::HOME).map(|h| h.join(".local/state")))
        .map(|d| d.join("cachegate/claimed"))
}

fn claim_file(abs: &Path) -> Option<PathBuf> {
    let name = blake3::hash(abs.as_os_str().as_encoded_bytes()).to_hex();
    Some(state_dir()?.join(&name[..32]))
}

/// The identity of what is at `abs` now: a directory recreated by someone else is no
/// longer the one cachegate made, even where the filesystem hands it the same inode number
/// again (the birth time tells them apart where the filesystem records one). What is
/// added inside it later does not change it.
fn identity(abs: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(abs).ok()?;
    let born = m
        .created()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some(format!(
        "{} {} {born}\n{}\n",
        m.dev(),
        m.ino(),
        abs.display()
    ))
}

fn claimed(abs: &Path) -> bool {
    let note = claim_file(abs).and_then(|f| std::fs::read_to_string(f).ok());
    note.is_some() && note == identity(abs)
}

/// Note that cachegate made what is at each of `targets` outside `project` now. Best effort:
/// without a note the next restore there is a miss, which is safe.
pub fn claim(project: &Path, targets: &[PathBuf]) {
    for t in targets.iter().filter(|t| !t.starts_with(project)) {
        if let (Some(file), Some(id)) = (claim_file(t), identity(t)) {
            let _ = std::fs::create_dir_all(file.parent().expect("claim files have a parent"));
            let _ = std::fs::write(file, id);
        }
    }
}

/// The targets outside `project` that are cachegate's before an install it runs: absent
/// (what the install creates is cachegate's) or claimed already. `claim` them after it.
pub fn ours_before_install(project: &Path, targets: &[PathBuf]) -> Vec<PathBuf> {
    targets
        .iter()
        .filter(|t| !t.starts_with(project))
        .filter(|t| std::fs::symlink_metadata(t).is_err() || claimed(t))
        .cloned()
        .collect()
}

/// Targets outside `project` a restore would replace though cachegate did not make them:
/// they exist, are not empty directories, and carry no claim that matches them.
pub fn foreign(project: &Path, targets: &[PathBuf]) -> Vec<PathBuf> {
    targets
        .iter()
        .filter(|t| !t.starts_with(project))
        .filter(|t| {
            let Ok(m) = std::fs::symlink_metadata(t) else {
                return false;
            };
            if m.is_dir() && std::fs::read_dir(t).is_ok_and(|mut d| d.next().is_none()) {
                return false;
            }
            !claimed(t)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_paths_are_refused_and_the_project_is_not() {
        let project = Path::new("/builds/g/p");
        assert!(refusal(project, Path::new("/builds/g/p/.venv")).is_none());
        let why = refusal(project, Path::new("/etc")).unwrap();
        assert!(why.contains("outside the project (/builds/g/p)"), "{why}");
    }
}
