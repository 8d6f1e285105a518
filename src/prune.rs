//! `prune`: delete entries by age, count per cache name and total size, and abandoned uploads.
//!
//! The store is walked one `<scope>/<name>` group at a time as its listing streams (see
//! `ls`), so memory does not grow with the number of entries; reads and deletes go
//! `--concurrency` at a time.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::backend::{Backend, IncompleteUpload, ObjectMeta};
use crate::ls::{Listed, age, for_each_group, parallel};
use crate::report;
use crate::{entry, key};

impl crate::cli::PruneArgs {
    /// The rules, or a usage error when there are none: prune never guesses what to delete.
    pub fn rules(&self, concurrency: usize) -> Result<PruneRules> {
        if self.older_than.is_none() && self.keep.is_none() && self.max_size.is_none() {
            anyhow::bail!("prune needs a rule: --older-than AGE, --keep N or --max-size SIZE");
        }
        Ok(PruneRules {
            older_than_secs: self.older_than,
            keep: self.keep,
            max_size: self.max_size,
            abandoned_after_secs: self.abandoned_after * 3600,
            dry_run: self.dry_run,
            concurrency,
        })
    }
}

pub struct PruneRules {
    /// Seconds.
    pub older_than_secs: Option<u64>,
    pub keep: Option<usize>,
    pub max_size: Option<u64>,
    /// An unfinished upload older than this is abandoned (`--abandoned-after`).
    pub abandoned_after_secs: u64,
    pub dry_run: bool,
    /// Requests in flight (`--concurrency`).
    pub concurrency: usize,
}

impl PruneRules {
    /// Whether the age and count rules delete the `nth` newest entry of its group.
    fn by_age_or_count(&self, e: &Listed, nth: usize, now: u64) -> bool {
        let too_old = self
            .older_than_secs
            .is_some_and(|s| now.saturating_sub(e.created) > s);
        let too_many = self.keep.is_some_and(|k| nth >= k);
        too_old || too_many
    }
}

#[derive(Default)]
struct Tally {
    entries: u64,
    deleted: u64,
    abandoned: u64,
    freed: u64,
    kept: u64,
}

/// `--max-size` weighs the whole store before the first delete: a first pass sums what the
/// other rules keep per hour of creation, and entries from the newest hour that no longer
/// fits, and every older one, go. Memory is one counter per hour of the store's age.
fn size_cutoff(backend: &dyn Backend, rules: &PruneRules, now: u64) -> Result<Option<u64>> {
    let Some(max) = rules.max_size else {
        return Ok(None);
    };
    let mut per_hour: BTreeMap<u64, u64> = BTreeMap::new();
    for_each_group(backend, rules.concurrency, &mut |g| {
        for (nth, e) in g.entries.iter().enumerate() {
            if !rules.by_age_or_count(e, nth, now) {
                *per_hour.entry(e.created / 3600).or_default() += e.archive_bytes;
            }
        }
        Ok(())
    })?;
    let mut kept = 0u64;
    for (hour, bytes) in per_hour.iter().rev() {
        if kept + bytes > max {
            return Ok(Some(*hour));
        }
        kept += bytes;
    }
    Ok(None)
}

/// Delete entries by age, per-name count and total size (oldest first), plus archives
/// that no manifest references and incomplete uploads, once old enough to be abandoned.
pub fn prune(backend: &dyn Backend, rules: &PruneRules) -> Result<i32> {
    let now = report::unix_now();
    let cutoff = size_cutoff(backend, rules, now)?;
    let verb = if rules.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut t = Tally::default();
    for_each_group(backend, rules.concurrency, &mut |g| {
        t.entries += g.entries.len() as u64;
        let dooms = |nth: usize, e: &Listed| {
            rules.by_age_or_count(e, nth, now) || cutoff.is_some_and(|c| e.created / 3600 <= c)
        };
        let doomed: Vec<&Listed> = g
            .entries
            .iter()
            .enumerate()
            .filter(|(nth, e)| dooms(*nth, e))
            .map(|(_, e)| e)
            .collect();
        t.kept += g
            .entries
            .iter()
            .enumerate()
            .filter(|(nth, e)| !dooms(*nth, e))
            .map(|(_, e)| e.archive_bytes)
            .sum::<u64>();
        let referenced: std::collections::HashSet<&str> =
            g.entries.iter().map(|e| e.archive.as_str()).collect();
        let orphans: Vec<&ObjectMeta> = g
            .objects
            .iter()
            .filter(|o| o.name.ends_with(".tar.zst") && !referenced.contains(o.name.as_str()))
            .filter(|o| {
                o.modified
                    .is_some_and(|m| now.saturating_sub(m) >= rules.abandoned_after_secs)
            })
            .collect();
        let gone = parallel(&doomed, rules.concurrency, |e| {
            if !rules.dry_run {
                // Manifest first: the entry disappears atomically for readers.
                backend.delete(&e.manifest)?;
                if !e.archive.is_empty() {
                    backend.delete(&e.archive)?;
                }
            }
            Ok::<_, crate::backend::StoreError>(())
        });
        for (e, r) in doomed.iter().zip(gone) {
            r?;
            t.deleted += 1;
            t.freed += e.archive_bytes;
            crate::outln!(
                "{verb} {} {} {} ({}, {} old)",
                e.scope,
                e.name,
                key::short(&e.key),
                report::bytes(e.archive_bytes),
                age(e.created)
            );
        }
        let gone = parallel(&orphans, rules.concurrency, |o| {
            if rules.dry_run {
                Ok(())
            } else {
                backend.delete(&o.name)
            }
        });
        for (o, r) in orphans.iter().zip(gone) {
            r?;
            t.abandoned += 1;
            t.freed += o.size;
            crate::outln!(
                "{verb} abandoned upload {} ({})",
                o.name,
                report::bytes(o.size)
            );
        }
        Ok(())
    })?;
    // An upload still running is younger than the bound, so only dead ones are aborted.
    let incomplete: Vec<IncompleteUpload> = backend
        .incomplete_uploads(&format!("{}/", entry::LAYOUT_ROOT))?
        .into_iter()
        .filter(|u| {
            u.initiated
                .is_some_and(|t| now.saturating_sub(t) >= rules.abandoned_after_secs)
        })
        .collect();
    let aborted = if rules.dry_run {
        "would abort"
    } else {
        "aborted"
    };
    let done = parallel(&incomplete, rules.concurrency, |u| {
        if rules.dry_run {
            Ok(())
        } else {
            backend.abort_upload(u)
        }
    });
    for (u, r) in incomplete.iter().zip(done) {
        r?;
        crate::outln!(
            "{aborted} incomplete upload {} ({} old)",
            u.name,
            age(u.initiated.unwrap_or(now))
        );
    }
    eprintln!(
        "cachegate: {verb} {} entries and {} abandoned uploads ({} incomplete), {} freed; {} entries, {} kept",
        report::count(t.deleted),
        report::count(t.abandoned + incomplete.len() as u64),
        incomplete.len(),
        report::bytes(t.freed),
        report::count(t.entries - t.deleted),
        report::bytes(t.kept)
    );
    Ok(0)
}
