//! `prune`: delete entries by age, count per cache name and total size, and abandoned uploads.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;

use crate::backend::{Backend, IncompleteUpload, ObjectMeta};
use crate::entry::ObjectName;
use crate::ls::{Group, Listed, age, bounded, for_each_group};
use crate::report;
use crate::scope::Scope;
use crate::{entry, key, records};

impl crate::cli::PruneArgs {
    /// The rules, or a usage error when there are none: prune never guesses what to delete.
    /// `concurrency`: deletes in flight at once (the store's `--concurrency`).
    pub fn rules(&self, concurrency: usize) -> Result<PruneRules> {
        if self.older_than.is_none()
            && self.unused_for.is_none()
            && self.keep.is_none()
            && self.max_size.is_none()
            && self.abandoned_after.is_none()
        {
            anyhow::bail!(
                "prune needs a rule: --older-than AGE, --unused-for AGE, --keep N, --max-size SIZE \
                 or --abandoned-after AGE"
            );
        }
        Ok(PruneRules {
            older_than_secs: self.older_than,
            unused_for_secs: self.unused_for,
            scope: self.scope,
            abandoned_after: self.abandoned_after.unwrap_or(DEFAULT_ABANDONED_AFTER),
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

/// `--max-size`: where least recently used first stops. Entries last used before `second`
/// go; in `second` itself they are admitted, in name order, while `room` lasts; later ones
/// stay (as far as the size is concerned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cutoff {
    second: u64,
    room: u64,
}

/// Walking `hist` (bytes per unit of last use) from the most recent unit, with `kept`
/// bytes already kept by more recent ones: the first unit that no longer fits in `max`, and
/// the bytes kept before it. `None`: everything fits.
fn boundary(hist: &BTreeMap<u64, u64>, max: u64, mut kept: u64) -> Option<(u64, u64)> {
    for (unit, bytes) in hist.iter().rev() {
        if kept + bytes > max {
            return Some((*unit, kept));
        }
        kept += bytes;
    }
    None
}

const HOUR: u64 = 3600;

/// Unreferenced archives younger than a day may be uploads still running.
const DEFAULT_ABANDONED_AFTER: u64 = 24 * HOUR;

/// Items a delete batch gathers before it runs `--concurrency` at a time, so that small
/// groups still delete in parallel while memory stays fixed.
const DELETE_BATCH: usize = 512;

/// What one walk over the store deletes: entries (manifest first, so readers see an entry
/// whole or not at all), abandoned uploads, and leftovers (deleted quietly).
enum Doomed {
    Entry(Box<Listed>),
    /// An archive no manifest names, as listed.
    Abandoned(ObjectName, ObjectMeta),
    Leftover(ObjectName),
}

#[derive(Default)]
struct Tally {
    entries: u64,
    deleted: u64,
    abandoned: u64,
    freed: u64,
    kept: u64,
}

impl PruneRules {
    /// Whether the age, time-unused and count rules delete the `nth` most recently used
    /// entry of its cache name.
    fn by_age_or_count(&self, e: &Listed, nth: usize, now: u64) -> bool {
        let too_old = self
            .older_than_secs
            .is_some_and(|s| now.saturating_sub(e.created) > s);
        let unused = self
            .unused_for_secs
            .is_some_and(|s| now.saturating_sub(e.last_use()) > s);
        let too_many = self.keep.is_some_and(|k| nth >= k);
        too_old || unused || too_many
    }

    /// Whether a group (`v2/<project>/<scope>/<name>/`) is within `--scope`.
    fn wants(&self, group: &str) -> bool {
        self.scope
            .is_none_or(|s| entry::group_scope(group) == Some(s))
    }

    /// Run `work` on `items` `--concurrency` at a time, or, in a dry run, nothing: what
    /// was (or would have been) done, and the failure that stopped it.
    fn act<T: Sync>(
        &self,
        items: &[T],
        work: impl Fn(&T) -> Result<()> + Sync,
    ) -> (Vec<Option<()>>, Option<anyhow::Error>) {
        if self.dry_run {
            return (items.iter().map(|_| Some(())).collect(), None);
        }
        bounded(items, self.concurrency, work)
    }

    fn in_scope(&self, object: &ObjectName) -> bool {
        self.scope.is_none_or(|s| object.scope() == s)
    }

    /// Bytes per `unit` of last use of the entries the other rules keep.
    fn weigh(
        &self,
        backend: &dyn Backend,
        now: u64,
        unit: &dyn Fn(u64) -> Option<u64>,
    ) -> Result<BTreeMap<u64, u64>> {
        let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
        for_each_group(
            backend,
            self.concurrency,
            false,
            &|g| self.wants(g),
            &mut |g| {
                let in_scope = g.entries.iter().filter(|e| self.in_scope(&e.manifest));
                for (nth, e) in in_scope.enumerate() {
                    if self.by_age_or_count(e, nth, now) {
                        continue;
                    }
                    if let Some(u) = unit(e.last_use()) {
                        *hist.entry(u).or_default() += e.archive_bytes;
                    }
                }
                Ok(())
            },
        )?;
        Ok(hist)
    }

    /// `--max-size` weighs the store before anything is deleted, in memory bounded by its
    /// age rather than its entries: a pass sums what the other rules keep per hour of last
    /// use and finds the hour that no longer fits; a second pass, only then, does the same
    /// per second within that hour. A save between the passes is newer than the cutoff and
    /// stays.
    fn size_cutoff(&self, backend: &dyn Backend, now: u64) -> Result<Option<Cutoff>> {
        let Some(max) = self.max_size else {
            return Ok(None);
        };
        let hours = self.weigh(backend, now, &|t| Some(t / HOUR))?;
        let Some((hour, kept)) = boundary(&hours, max, 0) else {
            return Ok(None);
        };
        let seconds = self.weigh(backend, now, &|t| (t / HOUR == hour).then_some(t))?;
        Ok(boundary(&seconds, max, kept).map(|(second, kept)| Cutoff {
            second,
            room: max - kept,
        }))
    }
}

/// Deletes gathered across groups and run `--concurrency` at a time, each reported (in
/// order) once done, or that it would be in a dry run.
struct Deleter<'a> {
    backend: &'a dyn Backend,
    rules: &'a PruneRules,
    verb: &'static str,
    batch: Vec<Doomed>,
    tally: Tally,
}

impl Deleter<'_> {
    /// What no entry of the group owns any more: abandoned uploads, leases long done with,
    /// last-use records of gone entries and old job records.
    fn push_unowned(
        &mut self,
        objects: Vec<ObjectMeta>,
        referenced: &HashSet<String>,
        now: u64,
    ) -> Result<()> {
        let older =
            |o: &ObjectMeta, secs: u64| o.modified.is_some_and(|m| now.saturating_sub(m) >= secs);
        for o in objects {
            // What is not of the layout is no entry's: not ours to delete.
            let Some(object) = o.object().filter(|n| self.rules.in_scope(n)) else {
                continue;
            };
            if referenced.contains(&o.name) {
                continue;
            }
            // A lease is done with once its owner is long gone; a last-use record once its
            // entry is.
            let leftover = match &object {
                ObjectName::Archive(..) => {
                    if older(&o, self.rules.abandoned_after) {
                        self.push(Doomed::Abandoned(object, o))?;
                    }
                    continue;
                }
                ObjectName::Lease(..) => older(&o, 86_400),
                ObjectName::Usage(_) => true,
                // Kept a while for `stats`: a hit on another scope's entry lands here.
                ObjectName::Record(_, fields) => records::Record::parse(fields)
                    .is_none_or(|r| now.saturating_sub(r.time) >= records::KEEP),
                _ => false,
            };
            if leftover {
                self.push(Doomed::Leftover(object))?;
            }
        }
        Ok(())
    }

    fn push(&mut self, d: Doomed) -> Result<()> {
        self.batch.push(d);
        if self.batch.len() >= DELETE_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let items = std::mem::take(&mut self.batch);
        let backend = self.backend;
        let (done, failed) = self.rules.act(&items, |d| {
            match d {
                Doomed::Entry(e) => {
                    // Manifest first: the entry disappears atomically for readers.
                    backend.delete(&e.manifest)?;
                    if let Some(a) = &e.archive {
                        backend.delete(a)?;
                    }
                    if let Some(u) = &e.usage {
                        backend.delete(u)?;
                    }
                    for r in &e.records {
                        backend.delete(r)?;
                    }
                }
                Doomed::Abandoned(o, _) | Doomed::Leftover(o) => backend.delete(o)?,
            }
            Ok(())
        });
        let verb = self.verb;
        for (d, _) in items.iter().zip(done).filter(|(_, d)| d.is_some()) {
            match d {
                Doomed::Entry(e) => {
                    self.tally.deleted += 1;
                    self.tally.freed += e.archive_bytes;
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
                }
                Doomed::Abandoned(_, o) => {
                    self.tally.abandoned += 1;
                    self.tally.freed += o.size;
                    crate::outln!(
                        "{verb} abandoned upload {} ({})",
                        o.name,
                        report::bytes(o.size)
                    );
                }
                Doomed::Leftover(_) => {}
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Abort the incomplete multipart uploads (S3) old enough to be dead: an upload still
/// running is younger than the bound. How many were (or would be) aborted.
fn abort_incomplete(backend: &dyn Backend, rules: &PruneRules, now: u64) -> Result<u64> {
    let incomplete: Vec<IncompleteUpload> = backend
        .incomplete_uploads(&format!("{}/", entry::LAYOUT_ROOT))?
        .into_iter()
        .filter(|u| {
            rules
                .scope
                .is_none_or(|s| u.object().is_some_and(|n| n.scope() == s))
        })
        .filter(|u| {
            u.initiated
                .is_some_and(|t| now.saturating_sub(t) >= rules.abandoned_after)
        })
        .collect();
    let (aborted, failed) = rules.act(&incomplete, |u| Ok(backend.abort_upload(u)?));
    let abort_verb = if rules.dry_run {
        "would abort"
    } else {
        "aborted"
    };
    for (u, _) in incomplete.iter().zip(aborted).filter(|(_, d)| d.is_some()) {
        crate::outln!(
            "{abort_verb} incomplete upload {} ({} old)",
            u.name,
            age(u.initiated.unwrap_or(now))
        );
    }
    failed.map_or(Ok(incomplete.len() as u64), Err)
}

/// Delete entries by age, time unused, per-name count and total size (least recently used
/// first), plus what no entry owns any more: archives no manifest names (old enough to be
/// abandoned uploads), leases older than a day, last-use records of gone entries, and job
/// records a month old (`records::KEEP`; a kept entry keeps its newest hit's). The
/// store is walked one cache name at a time as its listing streams (see `ls`).
pub fn prune(backend: &dyn Backend, rules: &PruneRules) -> Result<crate::exit::Ending> {
    let now = report::unix_now();
    let cutoff = rules.size_cutoff(backend, now)?;
    let mut room = cutoff.map_or(0, |c| c.room);
    let verb = if rules.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut del = Deleter {
        backend,
        rules,
        verb,
        batch: Vec::new(),
        tally: Tally::default(),
    };
    for_each_group(
        backend,
        rules.concurrency,
        true,
        &|g| rules.wants(g),
        &mut |g| {
            let Group { entries, objects } = g;
            let referenced: HashSet<String> = entries
                .iter()
                .flat_map(|e| e.archive.iter().chain(&e.usage).chain(&e.records))
                .map(ToString::to_string)
                .collect();
            // Most recently used first: an entry survives only if every rule lets it.
            for (nth, e) in entries
                .into_iter()
                .filter(|e| rules.in_scope(&e.manifest))
                .enumerate()
            {
                del.tally.entries += 1;
                let too_big = cutoff.is_some_and(|c| match e.last_use().cmp(&c.second) {
                    std::cmp::Ordering::Less => true,
                    std::cmp::Ordering::Greater => false,
                    std::cmp::Ordering::Equal => {
                        let fits = e.archive_bytes <= room;
                        if fits && !rules.by_age_or_count(&e, nth, now) {
                            room -= e.archive_bytes;
                        }
                        !fits
                    }
                });
                if rules.by_age_or_count(&e, nth, now) || too_big {
                    del.push(Doomed::Entry(Box::new(e)))?;
                } else {
                    del.tally.kept += e.archive_bytes;
                    for name in records::expired(&e.records, now) {
                        del.push(Doomed::Leftover(name))?;
                    }
                }
            }
            del.push_unowned(objects, &referenced, now)?;
            Ok(())
        },
    )?;
    del.flush()?;
    let incomplete = abort_incomplete(backend, rules, now)?;
    let t = del.tally;
    let n = |n: u64, one, many| report::counted(n, one, many);
    eprintln!(
        "cachegate: {verb} {} and {} ({} incomplete), {} freed; {}, {} kept",
        n(t.deleted, "entry", "entries"),
        n(
            t.abandoned + incomplete,
            "abandoned upload",
            "abandoned uploads"
        ),
        incomplete,
        report::bytes(t.freed),
        n(t.entries - t.deleted, "entry", "entries"),
        report::bytes(t.kept)
    );
    Ok(crate::exit::Ending::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_cutoff_is_the_first_unit_that_no_longer_fits() {
        let hist: BTreeMap<u64, u64> = [(10, 5), (11, 30), (12, 20), (13, 40)].into();
        // Newest first: 40 fits in 100, then 20 (60), then 30 would make 90 > 80.
        assert_eq!(boundary(&hist, 80, 0), Some((11, 60)));
        assert_eq!(boundary(&hist, 94, 0), Some((10, 90)));
        assert_eq!(boundary(&hist, 94, 1), Some((10, 91)));
        assert_eq!(boundary(&hist, 95, 0), None);
        assert_eq!(boundary(&hist, 39, 0), Some((13, 0)));
        // A second pass starts with what newer hours kept.
        assert_eq!(boundary(&hist, 100, 60), Some((12, 100)));
        assert_eq!(boundary(&BTreeMap::new(), 0, 0), None);
    }
}
