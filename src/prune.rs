//! `prune`: delete entries by age, count per cache name and total size, and abandoned uploads.

use anyhow::Result;

use crate::backend::{Backend, ObjectMeta};
use crate::ls::{Listed, age, list_entries};
use crate::report;
use crate::{entry, key};

pub struct PruneRules {
    pub older_than_days: Option<u64>,
    pub keep: Option<usize>,
    pub max_size: Option<u64>,
    /// An unfinished upload older than this is abandoned (`--abandoned-after`).
    pub abandoned_after_secs: u64,
    pub dry_run: bool,
}

/// Delete entries by age, per-name count and total size (oldest first), plus archives
/// that no manifest references and that are old enough to be abandoned uploads.
pub fn prune(backend: &dyn Backend, rules: &PruneRules) -> Result<i32> {
    let (entries, objects) = list_entries(backend)?;
    let now = report::unix_now();
    let mut doomed: Vec<&Listed> = Vec::new();
    let mut per_name: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut kept_size = 0u64;
    // Newest first: an entry survives only if every rule lets it.
    for e in &entries {
        let n = per_name.entry((&e.scope, &e.name)).or_default();
        *n += 1;
        let too_old = rules
            .older_than_days
            .is_some_and(|d| now.saturating_sub(e.created) > d * 86_400);
        let too_many = rules.keep.is_some_and(|k| *n > k);
        let too_big = rules
            .max_size
            .is_some_and(|m| kept_size + e.archive_bytes > m);
        if too_old || too_many || too_big {
            doomed.push(e);
        } else {
            kept_size += e.archive_bytes;
        }
    }
    let referenced: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.archive.as_str()).collect();
    let orphans: Vec<&ObjectMeta> = objects
        .iter()
        .filter(|o| o.name.ends_with(".tar.zst") && !referenced.contains(o.name.as_str()))
        .filter(|o| {
            o.modified
                .is_some_and(|m| now.saturating_sub(m) > rules.abandoned_after_secs)
        })
        .collect();
    // An upload still running is younger than the bound, so only dead ones are aborted.
    let incomplete: Vec<crate::backend::IncompleteUpload> = backend
        .incomplete_uploads(&format!("{}/", entry::LAYOUT_ROOT))?
        .into_iter()
        .filter(|u| {
            u.initiated
                .is_some_and(|t| now.saturating_sub(t) > rules.abandoned_after_secs)
        })
        .collect();
    let verb = if rules.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut freed = 0;
    for e in &doomed {
        if !rules.dry_run {
            // Manifest first: the entry disappears atomically for readers.
            backend.delete(&e.manifest)?;
            if !e.archive.is_empty() {
                backend.delete(&e.archive)?;
            }
        }
        freed += e.archive_bytes;
        println!(
            "{verb} {} {} {} ({}, {} old)",
            e.scope,
            e.name,
            key::short(&e.key),
            report::bytes(e.archive_bytes),
            age(e.created)
        );
    }
    for o in &orphans {
        if !rules.dry_run {
            backend.delete(&o.name)?;
        }
        freed += o.size;
        println!(
            "{verb} abandoned upload {} ({})",
            o.name,
            report::bytes(o.size)
        );
    }
    let aborted = if rules.dry_run {
        "would abort"
    } else {
        "aborted"
    };
    for u in &incomplete {
        if !rules.dry_run {
            backend.abort_upload(u)?;
        }
        println!(
            "{aborted} incomplete upload {} ({} old)",
            u.name,
            age(u.initiated.unwrap_or(now))
        );
    }
    eprintln!(
        "cachegate: {verb} {} entries and {} abandoned uploads ({} incomplete), {} freed; {} entries, {} kept",
        doomed.len(),
        orphans.len() + incomplete.len(),
        incomplete.len(),
        report::bytes(freed),
        entries.len() - doomed.len(),
        report::bytes(kept_size)
    );
    Ok(0)
}
