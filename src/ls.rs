//! `ls`: the entries in a store, one cache name at a time, newest first within each; the
//! listing `prune` decides on.
//!
//! Stores list in name order, so the objects of one `<scope>/<name>` come together: the
//! listing is consumed as it streams, one such group at a time, and memory is bounded by
//! the largest group rather than by the store.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;

use crate::backend::{Backend, ObjectMeta, StoreError};
use crate::entry::{self, Manifest, ObjectName};
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

/// The objects of one `v1/<scope>/<name>/` and the entries their manifests describe,
/// newest first.
pub(crate) struct Group {
    pub(crate) entries: Vec<Listed>,
    pub(crate) objects: Vec<ObjectMeta>,
}

/// `f(item)` for every item on up to `threads` threads, results in input order: manifest
/// reads and deletes are round trips, so a large store is walked `--concurrency` at a time.
pub(crate) fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was done"))
        .collect()
}

/// The entry a manifest object describes, or `None` (with a warning) when it cannot be read.
fn listed(backend: &dyn Backend, o: &ObjectMeta) -> Option<Listed> {
    // Where a manifest lies decides its scope, name and key, not what it says, and it may
    // only name an archive of that entry: a manifest planted in one scope must not steer
    // prune into deleting another scope's entries.
    let Some(ObjectName::Manifest(at)) = ObjectName::parse(&o.name) else {
        return None;
    };
    let bytes = backend.get_small(&o.name).ok()?;
    let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
        report::warn(&format!("{} is not a readable manifest", o.name));
        return None;
    };
    let own = at.owns_archive(&m.archive);
    if !own {
        report::warn(&format!(
            "{} names an archive outside its entry ({:?}); only the manifest is managed",
            o.name, m.archive
        ));
    }
    Some(Listed {
        manifest: o.name.clone(),
        archive: if own { m.archive } else { String::new() },
        scope: at.scope.as_str().to_string(),
        name: at.name,
        key: at.key,
        files: m.files,
        bytes: m.bytes,
        archive_bytes: m.archive_size,
        created: m.created,
        creator: m.creator,
    })
}

/// `v1/<scope>/<name>/` of an object, if it has the layout's shape.
fn group_of(name: &str) -> Option<&str> {
    let mut slashes = name.match_indices('/').map(|(i, _)| i);
    let end = slashes.nth(2)?;
    (!name[end + 1..].contains('/')).then(|| &name[..=end])
}

/// Stream the store's listing and call `f` once per `<scope>/<name>` group, reading the
/// group's manifests `threads` at a time.
pub(crate) fn for_each_group(
    backend: &dyn Backend,
    threads: usize,
    f: &mut dyn FnMut(Group) -> Result<()>,
) -> Result<()> {
    let mut current: Option<String> = None;
    let mut objects: Vec<ObjectMeta> = Vec::new();
    // Names are few next to entries: this guards the contiguity the grouping relies on.
    let mut done: HashSet<String> = HashSet::new();
    let mut failed: Option<anyhow::Error> = None;
    let flush = |objects: Vec<ObjectMeta>, f: &mut dyn FnMut(Group) -> Result<()>| {
        let manifests: Vec<&ObjectMeta> = objects
            .iter()
            .filter(|o| o.name.ends_with(".json"))
            .collect();
        let mut entries: Vec<Listed> = parallel(&manifests, threads, |o| listed(backend, o))
            .into_iter()
            .flatten()
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.created));
        f(Group { entries, objects })
    };
    let listed = backend.list_each(&format!("{}/", entry::LAYOUT_ROOT), &mut |o| {
        let Some(g) = group_of(&o.name) else {
            return Ok(());
        };
        if current.as_deref() != Some(g) {
            if let Some(prev) = current.take() {
                if let Err(e) = flush(std::mem::take(&mut objects), &mut *f) {
                    failed = Some(e);
                    return Err(StoreError::Other(anyhow::anyhow!("stopped")));
                }
                done.insert(prev);
            }
            if done.contains(g) {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "the store listed {g} in two places; cannot group its entries"
                )));
            }
            current = Some(g.to_string());
        }
        objects.push(o);
        Ok(())
    });
    if let Err(e) = listed {
        return Err(failed.take().unwrap_or_else(|| e.into()));
    }
    if current.is_some() {
        flush(objects, f)?;
    }
    Ok(())
}

pub(crate) fn age(created: u64) -> String {
    let s = report::unix_now().saturating_sub(created);
    match s {
        0..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn ls(backend: &dyn Backend, json: bool, threads: usize) -> Result<i32> {
    let (mut count, mut total) = (0u64, 0u64);
    let mut first = true;
    if json {
        crate::outln!("[");
    } else {
        crate::outln!(
            "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6}  creator",
            "scope",
            "name",
            "key",
            "files",
            "stored",
            "age"
        );
    }
    for_each_group(backend, threads, &mut |g| {
        for e in &g.entries {
            count += 1;
            total += e.archive_bytes;
            if json {
                let row = serde_json::json!({
                    "scope": e.scope, "name": e.name, "key": e.key, "files": e.files,
                    "bytes": e.bytes, "archive_bytes": e.archive_bytes, "created": e.created,
                    "creator": e.creator, "manifest": e.manifest, "archive": e.archive,
                });
                let sep = if first { "" } else { ",\n" };
                crate::out!("{sep}  {}", serde_json::to_string(&row)?);
                first = false;
            } else {
                crate::outln!(
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
        }
        Ok(())
    })?;
    if json {
        crate::outln!("{}]", if first { "" } else { "\n" });
    }
    eprintln!(
        "cachegate: {} entries, {} in {}",
        report::count(count),
        report::bytes(total),
        backend.describe()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_group_by_scope_and_name() {
        assert_eq!(group_of("v1/local/pip/k.json"), Some("v1/local/pip/"));
        assert_eq!(group_of("v1/local/pip/k-1.tar.zst"), Some("v1/local/pip/"));
        assert_eq!(group_of("v1/local/pip"), None);
        assert_eq!(group_of("v1/local/pip/x/k.json"), None);
    }

    #[test]
    fn parallel_keeps_order_and_bounds_threads() {
        let items: Vec<u32> = (0..100).collect();
        let live = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let out = parallel(&items, 4, |i| {
            let now = live.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            live.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 4);
    }
}
