//! `explain`: why a lookup misses, against the newest entry of the same cache name.

use crate::backend::Backend;
use crate::entry::Manifest;
use crate::exit::Ending;
use crate::job::{Hit, Job, Lookup};
use crate::key;
use crate::report;
use crate::runner;
use crate::scope::Scope;
use crate::store::Store;

/// Why a lookup misses: compare this key's components with the newest entry of the same
/// cache name. Prints on stdout (it is the answer asked for); exit 0 on a hit, 1 on a miss.
pub fn explain(mut job: Job) -> Ending {
    let ending = if let Store::Marker(_) = job.store {
        runner::explain(&job.plan)
    } else {
        objects(&mut job)
    };
    job.finish(ending)
}

fn objects(job: &mut Job) -> Ending {
    let name = job.plan.components.name.clone();
    let short = job.plan.short_key().to_string();
    let describe = job.store.describe();
    if let Lookup::Hit(Hit::Entry { scope, manifest }) = job.lookup() {
        crate::outln!(
            "hit: {name} {short} is in {describe} ({}), saved by {}",
            scope.as_str(),
            manifest.creator
        );
        return Ending::Done;
    }
    let Store::Objects(backend) = &job.store else {
        unreachable!("runner mode is explained by its marker")
    };
    let mut newest: Option<(u64, Scope, String)> = None;
    let mut failed = None;
    for scope in job.scopes.read.clone() {
        match backend.list(&job.entry_dir(scope)) {
            Ok(objects) => {
                for o in objects.into_iter().filter(|o| o.name.ends_with(".json")) {
                    let t = o.modified.unwrap_or(0);
                    if newest.as_ref().is_none_or(|(nt, _, _)| t > *nt) {
                        newest = Some((t, scope, o.name));
                    }
                }
            }
            Err(e) => {
                failed = Some(format!("cannot list {describe}: {e}"));
                break;
            }
        }
    }
    if let Some(why) = failed {
        job.trouble(why);
        return Ending::Miss;
    }
    crate::outln!(
        "miss: no entry for {name} {short} in {describe} (project {}, read scopes: {})",
        job.namespace.name,
        job.scopes
            .read
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some((_, scope, object)) = newest else {
        crate::outln!(
            "no entry of cache {name:?} exists at all in project {}: the cache is empty, was cleared, or was never saved (another project's entries are not compared; --namespace NAME reads another project's)",
            job.namespace.name
        );
        return Ending::Miss;
    };
    let other = backend
        .get_small(&object)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
    match other {
        Some(m) => {
            let age = report::unix_now().saturating_sub(m.created);
            crate::outln!(
                "newest entry: {name} {} ({}), saved {} ago by {}",
                key::short(&m.key),
                scope.as_str(),
                report::secs(age as f64),
                crate::echo::value(&m.creator)
            );
            let diff = job.plan.components.diff(&m.components);
            if diff.is_empty() {
                crate::outln!(
                    "its components are the same; it was saved by another cachegate version"
                );
            } else {
                crate::outln!("what differs (theirs -> yours):");
                for d in diff {
                    crate::outln!("  {}", crate::echo::line(&d.to_string()));
                }
            }
        }
        None => crate::outln!("newest entry {object} cannot be read"),
    }
    Ending::Miss
}
