//! `prune`: delete entries by age, count per cache name and total size, and abandoned uploads.

use anyhow::Result;

use crate::backend::{Backend, IncompleteUpload, ObjectMeta};
use crate::entry::ObjectName;
use crate::ls::{Listed, age, list_entries};
use crate::report;
use crate::scope::Scope;
use crate::{entry, key};

impl crate::cli::PruneArgs {
    /// The rules, or a usage error when there are none: prune never guesses what to delete.
    /// `concurrency`: deletes in flight at once (the store's `--concurrency`).
    pub fn rules(&self, concurrency: usize) -> Result<PruneRules> {
        if self.older_than.is_none()
            && self.unused_for.is_none()
            && self.keep.is_none()
            && self.max_size.is_none()
        {
            anyhow::bail!(
                "prune needs a rule: --older-than AGE, --unused-for AGE, --keep N or --max-size SIZE"
            );
        }
        Ok(PruneRules {
            older_than_secs: self.older_than,
            unused_for_secs: self.unused_for,
            scope: self.scope,
            abandoned_after: self.abandoned_after,
            keep: self.keep,
            max_size: self.max_size,
            dry_run: self.dry_run,
            concurrency,
        })
    }
}

pub struct PruneRules {
    /// Seconds.
    pub older_than_secs: Option<u64>,
    /// Entries not restored (or, never restored, not saved) for this many seconds.
    pub unused_for_secs: Option<u64>,
    /// Only entries of this scope are considered.
    pub scope: Option<Scope>,
    /// Unreferenced archives younger than this may be uploads in flight.
    pub abandoned_after: u64,
    pub keep: Option<usize>,
    pub max_size: Option<u64>,
    pub dry_run: bool,
    /// Deletes in flight at once: one by one, a store of 100,000 entries takes hours.
    pub concurrency: usize,
}

/// Run `work` on every item, at most `n` at a time, and stop taking new items at the first
/// failure: which items were done, and that failure.
fn bounded<T: Sync>(
    items: &[T],
    n: usize,
    work: impl Fn(&T) -> Result<()> + Sync,
) -> (Vec<bool>, Option<anyhow::Error>) {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let done: Vec<AtomicBool> = items.iter().map(|_| AtomicBool::new(false)).collect();
    let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let failing = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..n.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                while !failing.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    match work(item) {
                        Ok(()) => done[i].store(true, Ordering::Relaxed),
                        Err(e) => {
                            failing.store(true, Ordering::Relaxed);
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let done = done.into_iter().map(AtomicBool::into_inner).collect();
    (done, failed.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Delete with `work` unless this is a dry run; `report` is called, in order, for each item
/// deleted (or that would be), then the first failure, if any, is returned.
fn delete_all<T: Sync>(
    items: &[T],
    rules: &PruneRules,
    work: impl Fn(&T) -> Result<()> + Sync,
    mut report: impl FnMut(&T),
) -> Result<()> {
    let (done, failed) = if rules.dry_run {
        (vec![true; items.len()], None)
    } else {
        bounded(items, rules.concurrency, work)
    };
    for (item, _) in items.iter().zip(done).filter(|(_, d)| *d) {
        report(item);
    }
    failed.map_or(Ok(()), Err)
}

/// Delete entries by age, time unused, per-name count and total size (least recently used
/// first), plus what no entry owns any more: archives no manifest names (old enough to be
/// abandoned uploads), leases and last-use records older than a day.
pub fn prune(backend: &dyn Backend, rules: &PruneRules) -> Result<i32> {
    let (mut entries, objects) = list_entries(backend)?;
    let in_scope = |name: &str| {
        rules
            .scope
            .is_none_or(|s| ObjectName::parse(name).is_some_and(|o| o.scope() == s))
    };
    entries.retain(|e| in_scope(&e.manifest));
    let objects: Vec<ObjectMeta> = objects.into_iter().filter(|o| in_scope(&o.name)).collect();
    let now = report::unix_now();
    let mut doomed: Vec<&Listed> = Vec::new();
    let mut per_name: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut kept_size = 0u64;
    // Most recently used first: an entry survives only if every rule lets it.
    for e in &entries {
        let n = per_name.entry((&e.scope, &e.name)).or_default();
        *n += 1;
        let too_old = rules
            .older_than_secs
            .is_some_and(|s| now.saturating_sub(e.created) > s);
        let unused = rules
            .unused_for_secs
            .is_some_and(|s| now.saturating_sub(e.last_use()) > s);
        let too_many = rules.keep.is_some_and(|k| *n > k);
        let too_big = rules
            .max_size
            .is_some_and(|m| kept_size + e.archive_bytes > m);
        if too_old || unused || too_many || too_big {
            doomed.push(e);
        } else {
            kept_size += e.archive_bytes;
        }
    }
    let referenced: std::collections::HashSet<&str> = entries
        .iter()
        .flat_map(|e| [e.archive.as_str(), e.usage.as_deref().unwrap_or("")])
        .collect();
    let older =
        |o: &ObjectMeta, secs: u64| o.modified.is_some_and(|m| now.saturating_sub(m) >= secs);
    let orphans: Vec<&ObjectMeta> = objects
        .iter()
        .filter(|o| o.name.ends_with(".tar.zst") && !referenced.contains(o.name.as_str()))
        .filter(|o| older(o, rules.abandoned_after))
        .collect();
    // A lease is done with once its owner is long gone; a last-use record once its entry is.
    let leftovers: Vec<&ObjectMeta> = objects
        .iter()
        .filter(|o| match ObjectName::parse(&o.name) {
            Some(ObjectName::Lease(..)) => older(o, 86_400),
            Some(ObjectName::Usage(_)) => !referenced.contains(o.name.as_str()),
            _ => false,
        })
        .collect();
    let verb = if rules.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut freed = 0;
    delete_all(
        &doomed,
        rules,
        |e| {
            // Manifest first: the entry disappears atomically for readers.
            backend.delete(&e.manifest)?;
            if !e.archive.is_empty() {
                backend.delete(&e.archive)?;
            }
            if let Some(u) = &e.usage {
                backend.delete(u)?;
            }
            Ok(())
        },
        |e| {
            freed += e.archive_bytes;
            crate::outln!(
                "{verb} {} {} {} {} ({}, {} old, last used {})",
                e.namespace,
                e.scope,
                e.name,
                key::short(&e.key),
                report::bytes(e.archive_bytes),
                age(e.created),
                e.last_used
                    .map_or("never".into(), |t| format!("{} ago", age(t)))
            );
        },
    )?;
    delete_all(
        &orphans,
        rules,
        |o| Ok(backend.delete(&o.name)?),
        |o| {
            freed += o.size;
            crate::outln!(
                "{verb} abandoned upload {} ({})",
                o.name,
                report::bytes(o.size)
            );
        },
    )?;
    delete_all(&leftovers, rules, |o| Ok(backend.delete(&o.name)?), |_| {})?;
    // Incomplete multipart uploads (S3): an upload still running is younger than the bound,
    // so only dead ones are aborted.
    let incomplete: Vec<IncompleteUpload> = backend
        .incomplete_uploads(&format!("{}/", entry::LAYOUT_ROOT))?
        .into_iter()
        .filter(|u| in_scope(&u.name))
        .filter(|u| {
            u.initiated
                .is_some_and(|t| now.saturating_sub(t) >= rules.abandoned_after)
        })
        .collect();
    let aborted = if rules.dry_run {
        "would abort"
    } else {
        "aborted"
    };
    delete_all(
        &incomplete,
        rules,
        |u| Ok(backend.abort_upload(u)?),
        |u| {
            crate::outln!(
                "{aborted} incomplete upload {} ({} old)",
                u.name,
                age(u.initiated.unwrap_or(now))
            );
        },
    )?;
    let n = |n: usize, one, many| report::counted(n as u64, one, many);
    eprintln!(
        "cachegate: {verb} {} and {} ({} incomplete), {} freed; {}, {} kept",
        n(doomed.len(), "entry", "entries"),
        n(
            orphans.len() + incomplete.len(),
            "abandoned upload",
            "abandoned uploads"
        ),
        incomplete.len(),
        report::bytes(freed),
        n(entries.len() - doomed.len(), "entry", "entries"),
        report::bytes(kept_size)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::bounded;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn bounded_runs_every_item_at_most_n_at_a_time() {
        let items: Vec<usize> = (0..200).collect();
        let (running, peak, sum) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let (done, failed) = bounded(&items, 4, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            sum.fetch_add(*i, Ordering::SeqCst);
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        });
        assert!(failed.is_none());
        assert!(done.iter().all(|d| *d));
        assert_eq!(sum.into_inner(), (0..200).sum::<usize>());
        let peak = peak.into_inner();
        assert!((1..=4).contains(&peak), "{peak} in flight");
    }

    #[test]
    fn bounded_stops_at_the_first_failure_and_says_what_was_done() {
        let items: Vec<usize> = (0..1000).collect();
        let (done, failed) = bounded(&items, 3, |i| {
            if *i == 10 {
                anyhow::bail!("item {i} failed");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
            Ok(())
        });
        assert_eq!(failed.unwrap().to_string(), "item 10 failed");
        assert!(!done[10]);
        // The other workers finish the item they hold and take no new ones (a loose bound:
        // a loaded machine may run a few more before the failure is seen).
        assert!(done[..10].iter().all(|d| *d));
        assert!(done.iter().filter(|d| **d).count() < 500);
        assert!(bounded(&[] as &[usize], 8, |_| Ok(())).0.is_empty());
    }
}
