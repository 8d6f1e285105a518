//! The swap of a multi-path restore as one step. Each cached path is swapped by two renames
//! (its previous tree aside, the new one in), so a kill between two paths' swaps would leave
//! one path new and another old. Before the first rename a journal naming every path's
//! staging directory is written and synced, and it is removed once the last rename is done:
//! a later run that finds the journal of a dead restore rolls the whole swap back before
//! anything reads the tree. A reader sees every path old or every path new, never a mix.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Inside a staging directory (the journal rolls back by these names): where the target's
/// previous tree waits while the new one is renamed into place, and the new tree, until it
/// is renamed over the target.
pub(super) const ASIDE: &str = "old";
pub(super) const STAGED: &str = "t";
/// In the first path's staging directory.
const JOURNAL: &str = "journal";
const HEADER: &str = "cachegate swap journal 1";

/// A swap under way; `commit` once every path is in place.
pub(super) struct Journal(PathBuf);

impl Journal {
    /// Record the swap of `stages` (staging directory, target) before any of it happens.
    pub(super) fn begin(stages: &[(&Path, &Path)]) -> io::Result<Journal> {
        let first = stages[0].0;
        let mut text = format!("{HEADER}\n");
        for (dir, target) in stages {
            let name = target.file_name().unwrap_or_default();
            text.push_str(&format!(
                "{} {}\n",
                hex(dir.as_os_str().as_bytes()),
                hex(name.as_bytes())
            ));
        }
        let path = first.join(JOURNAL);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        // The renames must not reach the disk before the journal does.
        File::open(first)?.sync_all()?;
        Ok(Journal(path))
    }

    /// Every path is in place (or, after a failure, back as it was): nothing to roll back.
    pub(super) fn commit(self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// If `dir` (the staging directory of a restore that is dead, named `<prefix><pid>-…`)
/// holds a journal, put every path it lists back as it was before that swap and remove
/// the staging directories. The targets it changed back.
pub(super) fn roll_back(dir: &Path, pid_prefix: &str) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(dir.join(JOURNAL)) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    // A torn journal was being written before the first rename: nothing was swapped.
    if lines.next() != Some(HEADER) || !text.ends_with('\n') {
        return Vec::new();
    }
    let stages: Vec<(PathBuf, PathBuf)> = lines
        .filter_map(|l| {
            let (d, n) = l.split_once(' ')?;
            let d = PathBuf::from(OsStr::from_bytes(&unhex(d)?));
            let name = unhex(n)?;
            Some((d, name))
        })
        .filter_map(|(d, name)| {
            // Only staging directories of the same dead restore, and targets beside them:
            // a planted journal cannot move anything anywhere else.
            let ours = d
                .file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with(pid_prefix))
                && fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir());
            let plain = !name.is_empty() && !name.contains(&b'/') && name != b"." && name != b"..";
            let target = d.parent()?.join(OsStr::from_bytes(&name));
            (ours && plain).then_some((d, target))
        })
        .collect();
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    let mut changed = Vec::new();
    for (d, target) in &stages {
        let (new, old) = (d.join(STAGED), d.join(ASIDE));
        let mut touched = false;
        // The new tree went in (its staged copy is gone): take it out again.
        if !exists(&new) && exists(target) && fs::rename(target, &new).is_ok() {
            touched = true;
        }
        // The previous tree waits aside: put it back.
        if exists(&old) && !exists(target) && fs::rename(&old, target).is_ok() {
            touched = true;
        }
        if touched {
            changed.push(target.clone());
        }
    }
    for (d, _) in &stages {
        // remove_dir_all does not follow symlinks inside.
        let _ = fs::remove_dir_all(d);
    }
    changed
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_the_journal_whatever_their_bytes() {
        let raw = b"a b\nc\xff";
        assert_eq!(unhex(&hex(raw)).as_deref(), Some(&raw[..]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
    }
}
