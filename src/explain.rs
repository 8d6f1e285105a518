//! `explain`: why a lookup misses, against the newest entry of the same cache name.

use crate::entry::{self, Manifest};
use crate::job::{EXIT_MISS, Job, Lookup};
use crate::key;
use crate::report;
use crate::scope::Scope;

/// Why a lookup misses: compare this key's components with the newest entry of the same
/// cache name. Prints on stdout (it is the answer asked for); exit 0 on a hit, 1 on a miss.
pub fn explain(mut job: Job) -> i32 {
    let name = job.plan.components.name.clone();
    let short = job.plan.short_key().to_string();
    if let Lookup::Hit { scope, manifest } = job.lookup() {
        println!(
            "hit: {name} {short} is in {} ({}), saved by {}",
            job.backend.describe(),
            scope.as_str(),
            manifest.creator
        );
        return job.finish(0);
    }
    let mut newest: Option<(u64, Scope, String)> = None;
    for scope in job.scopes.read.clone() {
        match job.backend.list(&entry::entry_dir(scope, &name)) {
            Ok(objects) => {
                for o in objects.into_iter().filter(|o| o.name.ends_with(".json")) {
                    let t = o.modified.unwrap_or(0);
                    if newest.as_ref().is_none_or(|(nt, _, _)| t > *nt) {
                        newest = Some((t, scope, o.name));
                    }
                }
            }
            Err(e) => {
                job.trouble(format!("cannot list {}: {e}", job.backend.describe()));
                return job.finish(EXIT_MISS);
            }
        }
    }
    println!(
        "miss: no entry for {name} {short} in {} (read scopes: {})",
        job.backend.describe(),
        job.scopes
            .read
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some((_, scope, object)) = newest else {
        println!(
            "no entry of cache {name:?} exists at all: the cache is empty, was cleared, or was never saved"
        );
        return job.finish(EXIT_MISS);
    };
    let other = job
        .backend
        .get_small(&object)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
    match other {
        Some(m) => {
            let age = report::unix_now().saturating_sub(m.created);
            println!(
                "newest entry: {name} {} ({}), saved {} ago by {}",
                key::short(&m.key),
                scope.as_str(),
                report::secs(age as f64),
                m.creator
            );
            let diff = job.plan.components.diff(&m.components);
            if diff.is_empty() {
                println!("its components are the same; it was saved by another cachegate version");
            } else {
                println!("what differs (theirs -> yours):");
                for d in diff {
                    println!("  {d}");
                }
            }
        }
        None => println!("newest entry {object} cannot be read"),
    }
    job.finish(EXIT_MISS)
}
