//! The ensure loop, once for every store: restore on a hit, else run the install and save
//! what it produced. `restore`, `check` and `save` are its parts on their own.

use crate::backend::{Backend, StoreError};
use crate::cli::FlightArgs;
use crate::entries::objects::creator;
use crate::entry::EntryName;
use crate::exit::Ending;
use crate::job::{Hit, Job, Lookup, Save, Skip};
use crate::lease::{self, Flight};
use crate::report::{self, Outcome};
use crate::store::Gated;

pub fn ensure(mut job: Job, cmd: &[String], save_on_failure: bool, flight: &FlightArgs) -> Ending {
    job.recover();
    let lookup = job.lookup();
    let store_down = matches!(lookup, Lookup::Unavailable { writes_too: true });
    if let Lookup::Hit(hit) = &lookup
        && job.restore(hit)
    {
        job.set_result(Outcome::Hit);
        return job.finish(Ending::Done);
    }
    if job.stops_on_trouble() {
        return job.finish(Ending::Trouble);
    }
    job.set_result(Outcome::Miss);
    let miss = job.write_head("miss");
    // Single-flight only where this job would both restore and save, on a store that
    // answered: a job that cannot save must not make others wait for it. Runner mode has
    // no objects, so it never waits.
    let key = job.plan().key.clone();
    let backend = job
        .objects()
        .map(|o| (o.store().clone(), o.entry_name(o.scopes().write, &key)))
        .filter(|(g, _)| !store_down && g.reads() && g.writes());
    let mut lease = None;
    if let (Some((backend, entry)), Some(settings)) = (&backend, flight.settings()) {
        match single_flight(&mut job, backend, entry, &settings) {
            Some(Flight::Leader(l)) => lease = Some(l),
            Some(_) => {}
            None => return job.finish(Ending::Done),
        }
    }
    let install = |job: &mut Job| -> (i32, Save) {
        let (status, secs) = job.install(cmd, flight.fallback);
        if status != 0 && !save_on_failure {
            eprintln!(
                "{miss} · command exited {status} after {}; nothing saved",
                report::secs(secs)
            );
            return (status, Save::Skipped(Skip::CommandFailed));
        }
        let saved = if store_down {
            Save::Skipped(Skip::StoreFailed)
        } else {
            job.save(Some(secs), false)
        };
        if let Save::Skipped(Skip::Policy) = saved {
            eprintln!(
                "{miss} · installed in {}; not saved (--policy pull)",
                report::secs(secs)
            );
        }
        (status, saved)
    };
    let (status, saved) = match lease {
        Some(mut l) => {
            // Held through the upload too: waiters restore only a complete entry.
            let (status, saved) = l.hold(|| install(&mut job));
            let done = status == 0 && matches!(saved, Save::Saved | Save::Exists);
            l.release(if done {
                lease::State::Done
            } else {
                lease::State::Failed
            });
            (status, saved)
        }
        None => install(&mut job),
    };
    let result = match saved {
        Save::Skipped(Skip::CommandFailed) => return job.finish(Ending::Command(status)),
        Save::Skipped(Skip::Policy) => Outcome::Miss,
        Save::Skipped(Skip::StoreFailed) => {
            eprintln!("{miss} · not saved: the store failed during the lookup");
            Outcome::Skipped
        }
        Save::Skipped(_) => Outcome::Skipped,
        Save::Exists => Outcome::Exists,
        Save::Saved | Save::Failed(_) => Outcome::Miss,
    };
    job.set_result(result);
    job.finish(Ending::Command(status))
}

/// Wait for another job installing this key, or take the lease to install it here. `None`
/// when the other job's entry was restored (the job is done); the lease when this job leads.
fn single_flight<'a>(
    job: &mut Job,
    backend: &'a Gated,
    entry: &EntryName,
    settings: &lease::Settings,
) -> Option<Flight<'a>> {
    let miss = job.write_head("miss");
    let manifest = entry.manifest();
    let mut ready = || match backend.stat(&manifest) {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e),
    };
    let flight = lease::acquire(backend, entry, &creator(), settings, &mut ready);
    match &flight {
        Flight::Ready { waited, leader } => {
            job.waited(*waited, Some(leader));
            if let Lookup::Hit(hit) = job.lookup()
                && job.restore(&hit)
            {
                job.set_result(Outcome::Hit);
                return None;
            }
            job.set_result(Outcome::Miss);
        }
        Flight::Leader(l) => {
            if let Some(t) = &l.takeover {
                eprintln!(
                    "{miss} · {} after waiting {}",
                    t.describe(),
                    report::secs(l.waited.as_secs_f64())
                );
                job.waited(l.waited, None);
            }
        }
        Flight::Alone { waited, why } => {
            eprintln!("{miss} · no single flight: {why}");
            if !waited.is_zero() {
                job.waited(*waited, None);
            }
        }
    }
    Some(flight)
}

pub fn restore(mut job: Job) -> Ending {
    job.recover();
    if let Lookup::Hit(hit) = job.lookup()
        && job.restore(&hit)
    {
        job.set_result(Outcome::Hit);
        return job.finish(Ending::Done);
    }
    job.set_result(Outcome::Miss);
    eprintln!("{} · nothing restored", job.miss_head());
    job.finish(Ending::Miss)
}

/// Look up without downloading.
pub fn check(mut job: Job) -> Ending {
    match job.lookup() {
        Lookup::Hit(hit) => {
            if let Hit::Entry { scope, manifest } = &hit {
                eprintln!(
                    "{} · {}, {} in {}",
                    job.head("hit", *scope),
                    report::files(manifest.files),
                    report::bytes(manifest.bytes),
                    job.describe()
                );
                job.found(*scope, manifest.files, manifest.bytes);
            } else {
                eprintln!("{} · restored by GitLab's cache", job.write_head("hit"));
            }
            job.set_result(Outcome::Hit);
            job.set_hit();
            job.finish(Ending::Done)
        }
        miss => {
            let store = job.describe();
            // A store that did not answer is no "not in": nobody could say either way.
            let why = if matches!(miss, Lookup::Unavailable { .. }) {
                format!(
                    "unknown: the store {store} is unreachable or failing (see the warning above)"
                )
            } else {
                format!("not in {store}")
            };
            eprintln!("{} · {why}", job.miss_head());
            job.set_result(Outcome::Miss);
            job.finish(Ending::Miss)
        }
    }
}

pub fn save(mut job: Job, replace: bool) -> Ending {
    // A swap cut short must not be archived half old, half new.
    job.recover();
    let result = match job.save(None, replace) {
        Save::Saved => Outcome::Saved,
        Save::Exists => Outcome::Exists,
        Save::Skipped(Skip::Policy) => {
            eprintln!(
                "{} · not saved (--policy pull never uploads)",
                job.write_head("miss")
            );
            Outcome::Skipped
        }
        Save::Skipped(_) => Outcome::Skipped,
        Save::Failed(_) => Outcome::None,
    };
    job.set_result(result);
    job.finish(Ending::Done)
}
