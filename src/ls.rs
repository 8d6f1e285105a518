//! `ls`: the entries in a store, newest first; the listing `prune` decides on.

use anyhow::Result;

use crate::backend::{Backend, ObjectMeta};
use crate::entry::{self, Manifest};
use crate::key;
use crate::report;

/// One stored entry, as `ls` and `prune` see it.
pub(crate) struct Listed {
    pub(crate) manifest: String,
    pub(crate) archive: String,
    pub(crate) scope: String,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) archive_bytes: u64,
    pub(crate) created: u64,
    pub(crate) creator: String,
}

pub(crate) fn list_entries(backend: &dyn Backend) -> Result<(Vec<Listed>, Vec<ObjectMeta>)> {
    let objects = backend.list(&format!("{}/", entry::LAYOUT_ROOT))?;
    let mut entries = Vec::new();
    for o in objects.iter().filter(|o| o.name.ends_with(".json")) {
        let Ok(bytes) = backend.get_small(&o.name) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            report::warn(&format!("{} is not a readable manifest", o.name));
            continue;
        };
        // Where a manifest lies decides its scope and name, not what it says, and it may
        // only name an archive beside it: a manifest planted in one scope must not steer
        // prune into deleting another scope's entries.
        let [_, scope, name, _] = o.name.split('/').collect::<Vec<_>>()[..] else {
            continue;
        };
        let dir = entry::entry_dir_raw(scope, name);
        let own = m
            .archive
            .strip_prefix(&dir)
            .is_some_and(|r| !r.contains('/') && r.ends_with(".tar.zst"));
        if !own {
            report::warn(&format!(
                "{} names an archive outside its entry ({:?}); only the manifest is managed",
                o.name, m.archive
            ));
        }
        entries.push(Listed {
            manifest: o.name.clone(),
            archive: if own { m.archive } else { String::new() },
            scope: scope.to_string(),
            name: name.to_string(),
            key: m.key,
            files: m.files,
            bytes: m.bytes,
            archive_bytes: m.archive_size,
            created: m.created,
            creator: m.creator,
        });
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.created));
    Ok((entries, objects))
}

pub(crate) fn age(created: u64) -> String {
    let s = report::unix_now().saturating_sub(created);
    match s {
        0..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn ls(backend: &dyn Backend, json: bool) -> Result<i32> {
    let (entries, _) = list_entries(backend)?;
    if json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "scope": e.scope, "name": e.name, "key": e.key, "files": e.files,
                    "bytes": e.bytes, "archive_bytes": e.archive_bytes, "created": e.created,
                    "creator": e.creator, "manifest": e.manifest, "archive": e.archive,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6}  creator",
        "scope", "name", "key", "files", "stored", "age"
    );
    for e in &entries {
        println!(
            "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6}  {}",
            e.scope,
            e.name,
            key::short(&e.key),
            report::count(e.files),
            report::bytes(e.archive_bytes),
            age(e.created),
            e.creator
        );
    }
    let total: u64 = entries.iter().map(|e| e.archive_bytes).sum();
    eprintln!(
        "cachegate: {} entries, {} in {}",
        entries.len(),
        report::bytes(total),
        backend.describe()
    );
    Ok(0)
}
