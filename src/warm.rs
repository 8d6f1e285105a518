//! Warm start (`--fallback`): on a miss, restore the newest entry of the same cache name and
//! project whose platform and runtime match this job's (only the lock files or the command
//! differ), and let the install update it: poetry, uv, pip, pnpm and bundler update an
//! environment far faster than they build one. The result is saved under the new key as
//! usual. This is a miss path, so it may list entries; a hit never lists.

use std::cmp::Reverse;

use crate::backend::Backend;
use crate::entries::{Log, Objects, head};
use crate::entry::{Manifest, ObjectName};
use crate::key;
use crate::plan::Plan;
use crate::preset;
use crate::report::{self, WarmReport};
use crate::scope::Scope;

/// The newest entries read before giving up: a cache with many keys of other runtimes must
/// not turn a miss into hundreds of requests.
const CANDIDATES: usize = 20;

/// Restore the entry a warm start builds on; `None` (after saying why) when there is none or
/// it could not be restored, and the install starts from nothing.
pub fn start(o: &Objects, plan: &Plan, log: &mut Log, cmd: &[String]) -> Option<WarmReport> {
    let name = plan.components.name.clone();
    if let Some(why) = preset::discards_tree(cmd) {
        eprintln!(
            "cachegate: no warm start: {why}, so restoring an older tree would only cost time"
        );
        return None;
    }
    let backend = o.store();
    let mut ruled_out: Option<(String, Vec<String>)> = None;
    for scope in o.scopes().read.clone() {
        let dir = o.entry_dir(scope);
        let mut objects = match backend.list(&dir) {
            Ok(objects) => objects,
            Err(e) => {
                log.trouble(format!(
                    "no warm start: cannot list {}: {e}",
                    backend.describe()
                ));
                return None;
            }
        };
        objects.retain(|o| matches!(o.object(), Some(ObjectName::Manifest(_))));
        objects.sort_by_key(|o| Reverse(o.modified.unwrap_or(0)));
        for meta in objects.into_iter().take(CANDIDATES) {
            // The listing is of this cache name's directory: its manifests are its entries.
            let Some(ObjectName::Manifest(theirs)) = meta.object() else {
                continue;
            };
            if theirs.key == plan.key {
                continue;
            }
            let Ok(bytes) = backend.get_small(&theirs.manifest()) else {
                continue;
            };
            let Ok(m) = Manifest::parse(&bytes, o.ns(), scope, &name, &theirs.key) else {
                continue;
            };
            if o.untrusted(scope, &m).is_some() {
                continue;
            }
            match plan.components.warm_diff(&m.components) {
                Ok(differs) => return restore(o, plan, log, scope, &m, differs),
                Err(why) => {
                    ruled_out.get_or_insert((m.key.clone(), why));
                }
            }
        }
    }
    match ruled_out {
        None => eprintln!(
            "cachegate: no warm start: no earlier entry of {name} in this project ({})",
            o.project()
        ),
        Some((k, why)) => eprintln!(
            "cachegate: no warm start: the newest entry of {name} ({}) differs in more than lock files, dependency manifests and command: {}",
            key::short(&k),
            crate::echo::line(&why.join("; "))
        ),
    }
    None
}

fn restore(
    o: &Objects,
    plan: &Plan,
    log: &mut Log,
    scope: Scope,
    m: &Manifest,
    differs: Vec<&'static str>,
) -> Option<WarmReport> {
    let start = std::time::Instant::now();
    match o.unpack(plan, scope, m) {
        Ok(stats) => {
            let what = if differs.is_empty() {
                "same components".to_string()
            } else {
                format!("{} differ", differs.join(" and "))
            };
            eprintln!(
                "{} · restored {} ({what}) · {}, {} in {}; running the command on top",
                head(plan, "warm", scope.as_str()),
                key::short(&m.key),
                report::files(stats.files),
                report::bytes(stats.bytes),
                report::secs(start.elapsed().as_secs_f64()),
            );
            Some(WarmReport {
                key: m.key.clone(),
                scope: scope.as_str().into(),
                creator: m.creator.clone(),
                created: m.created,
                differs: differs.iter().map(|d| d.to_string()).collect(),
                restore_seconds: start.elapsed().as_secs_f64(),
            })
        }
        Err(e) => {
            log.trouble(format!(
                "no warm start: could not restore {}: {e}; installing from scratch",
                key::short(&m.key)
            ));
            None
        }
    }
}
