//! `ls`: the entries in a store, most recently used first; the listing `prune` decides on.

use anyhow::Result;

use crate::backend::{Backend, ObjectMeta};
use crate::entry::{self, Manifest, ObjectName};
use crate::key;
use crate::report;
use crate::usage;

/// One stored entry, as `ls` and `prune` see it.
pub(crate) struct Listed {
    pub(crate) manifest: String,
    pub(crate) archive: String,
    /// The last-use record, when the entry has one.
    pub(crate) usage: Option<String>,
    /// The project, as the manifest names it (else the path segment).
    pub(crate) namespace: String,
    pub(crate) scope: String,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) archive_bytes: u64,
    pub(crate) created: u64,
    pub(crate) creator: String,
    pub(crate) install_seconds: Option<f64>,
    pub(crate) last_used: Option<u64>,
    pub(crate) hit_days: u64,
}

impl Listed {
    /// When the entry was last of use: its last restore, else its creation.
    pub(crate) fn last_use(&self) -> u64 {
        self.last_used.unwrap_or(0).max(self.created)
    }
}

pub(crate) fn list_entries(backend: &dyn Backend) -> Result<(Vec<Listed>, Vec<ObjectMeta>)> {
    let objects = backend.list(&format!("{}/", entry::LAYOUT_ROOT))?;
    let names: std::collections::HashSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let mut entries = Vec::new();
    for o in objects.iter().filter(|o| o.name.ends_with(".json")) {
        let Ok(bytes) = backend.get_small(&o.name) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            report::warn(&format!("{} is not a readable manifest", o.name));
            continue;
        };
        // Where a manifest lies decides its scope, name and key, not what it says, and it
        // may only name an archive of that entry: a manifest planted in one scope must not
        // steer prune into deleting another scope's entries.
        let Some(ObjectName::Manifest(at)) = ObjectName::parse(&o.name) else {
            continue;
        };
        let own = at.owns_archive(&m.archive);
        if !own {
            report::warn(&format!(
                "{} names an archive outside its entry ({:?}); only the manifest is managed",
                o.name, m.archive
            ));
        }
        let used = at.usage();
        let (usage, record) = if names.contains(used.as_str()) {
            let record = usage::read(backend, &used).ok().flatten();
            (Some(used), record)
        } else {
            (None, None)
        };
        entries.push(Listed {
            manifest: o.name.clone(),
            archive: if own { m.archive } else { String::new() },
            usage,
            namespace: m.namespace.unwrap_or_else(|| at.ns.clone()),
            install_seconds: m.install_seconds,
            last_used: record.map(|u| u.last_used),
            hit_days: record.map_or(0, |u| u.hit_days),
            scope: at.scope.as_str().to_string(),
            name: at.name,
            key: at.key,
            files: m.files,
            bytes: m.bytes,
            archive_bytes: m.archive_size,
            created: m.created,
            creator: m.creator,
        });
    }
    entries.sort_by_key(|e| std::cmp::Reverse((e.last_use(), e.created)));
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
                    "namespace": e.namespace, "scope": e.scope, "name": e.name, "key": e.key,
                    "files": e.files, "bytes": e.bytes, "archive_bytes": e.archive_bytes,
                    "created": e.created, "creator": e.creator, "manifest": e.manifest,
                    "archive": e.archive, "install_seconds": e.install_seconds,
                    "last_used": e.last_used, "hit_days": e.hit_days,
                })
            })
            .collect();
        crate::outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    crate::outln!(
        "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6} {:>8} {:>5} {:>9}  {:<20} creator",
        "scope",
        "name",
        "key",
        "files",
        "stored",
        "age",
        "install",
        "hits",
        "last use",
        "project"
    );
    for e in &entries {
        crate::outln!(
            "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6} {:>8} {:>5} {:>9}  {:<20} {}",
            e.scope,
            e.name,
            key::short(&e.key),
            report::count(e.files),
            report::bytes(e.archive_bytes),
            age(e.created),
            e.install_seconds.map_or("-".into(), report::secs),
            e.hit_days,
            e.last_used
                .map_or("never".into(), |t| format!("{} ago", age(t))),
            e.namespace,
            e.creator
        );
    }
    let total: u64 = entries.iter().map(|e| e.archive_bytes).sum();
    eprintln!(
        "cachegate: {}, {} in {}",
        report::counted(entries.len() as u64, "entry", "entries"),
        report::bytes(total),
        backend.describe()
    );
    Ok(0)
}
