//! The commands a job runs: `ensure` (restore on a hit, else run the install and save), and
//! its parts on their own: `restore`, `check`, `save`.

use crate::backend::StoreError;
use crate::cli::{FlightArgs, Policy};
use crate::install::run_install;
use crate::job::{EXIT_MISS, EXIT_TROUBLE, Job, Lookup, creator};
use crate::key::shell_words;
use crate::lease::{self, Flight};
use crate::{report, warm};

pub fn ensure(mut job: Job, cmd: &[String], save_on_failure: bool, flight: &FlightArgs) -> i32 {
    job.recover();
    if let Lookup::Hit { scope, manifest } = job.lookup()
        && job.restore(scope, &manifest)
    {
        return job.finish(0);
    }
    if job.strict && job.trouble {
        return job.finish(EXIT_TROUBLE);
    }
    job.report.result = "miss".into();
    let scope = job.scopes.write;
    // Single-flight only where this job would save what it installs and the store answered:
    // a read-only job leading would make the others wait for nothing.
    let settings = flight
        .settings()
        .filter(|_| job.policy == Policy::PullPush && !job.store_failed);
    let backend = job.backend.clone();
    let mut lease = None;
    if let Some(settings) = settings {
        let manifest = job.manifest_object(scope, &job.plan.key);
        let mut ready = || match backend.stat(&manifest) {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound) => Ok(false),
            Err(e) => Err(e),
        };
        let base = job.entry_base(scope);
        match lease::acquire(backend.as_ref(), &base, &creator(), &settings, &mut ready) {
            Flight::Ready { waited, leader } => {
                job.report.waited_seconds = Some(waited.as_secs_f64());
                job.report.waited_for = Some(leader.clone());
                job.waited = Some((waited, leader));
                if let Lookup::Hit { scope, manifest } = job.lookup()
                    && job.restore(scope, &manifest)
                {
                    return job.finish(0);
                }
                job.report.result = "miss".into();
            }
            Flight::Leader(l) => {
                if let Some(t) = &l.takeover {
                    eprintln!(
                        "{} · {} after waiting {}",
                        job.head("miss", scope),
                        t.describe(),
                        report::secs(l.waited.as_secs_f64())
                    );
                    job.report.waited_seconds = Some(l.waited.as_secs_f64());
                }
                lease = Some(l);
            }
            Flight::Alone { waited, why } => {
                eprintln!("{} · no single flight: {why}", job.head("miss", scope));
                if !waited.is_zero() {
                    job.report.waited_seconds = Some(waited.as_secs_f64());
                }
            }
        }
    }
    let install = |job: &mut Job| -> (i32, bool) {
        if flight.fallback {
            job.report.warm = warm::start(job, cmd);
        }
        eprintln!("{} · running {}", job.head("miss", scope), shell_words(cmd));
        let (status, secs) = run_install(&job.plan, cmd, &mut job.report);
        if status != 0 && !save_on_failure {
            eprintln!(
                "{} · command exited {status} after {}; nothing saved",
                job.head("miss", scope),
                report::secs(secs)
            );
            return (status, false);
        }
        if !job.policy.pushes() {
            eprintln!(
                "{} · installed in {}; not saved (--policy pull)",
                job.head("miss", scope),
                report::secs(secs)
            );
            return (status, false);
        }
        (status, job.save(Some(secs)))
    };
    let status = match lease {
        Some(mut l) => {
            // Held through the upload too: waiters restore only a complete entry.
            let (status, saved) = l.hold(|| install(&mut job));
            l.release(if saved && status == 0 {
                lease::State::Done
            } else {
                lease::State::Failed
            });
            status
        }
        None => install(&mut job).0,
    };
    job.finish(status)
}

pub fn restore(mut job: Job) -> i32 {
    job.recover();
    if let Lookup::Hit { scope, manifest } = job.lookup()
        && job.restore(scope, &manifest)
    {
        return job.finish(0);
    }
    job.report.result = "miss".into();
    eprintln!(
        "{} · nothing restored",
        job.head("miss", job.scopes.read[0])
    );
    job.finish(EXIT_MISS)
}

pub fn check(mut job: Job) -> i32 {
    match job.lookup() {
        Lookup::Hit { scope, manifest } => {
            eprintln!(
                "{} · {} files, {} in {}",
                job.head("hit", scope),
                report::count(manifest.files),
                report::bytes(manifest.bytes),
                job.backend.describe()
            );
            job.report.result = "hit".into();
            job.report.hit = true;
            job.report.scope = scope.as_str().into();
            job.report.files = Some(manifest.files);
            job.report.bytes = Some(manifest.bytes);
            job.finish(0)
        }
        Lookup::Miss => {
            eprintln!(
                "{} · not in {}",
                job.head("miss", job.scopes.read[0]),
                job.backend.describe()
            );
            job.report.result = "miss".into();
            job.finish(EXIT_MISS)
        }
    }
}

pub fn save(mut job: Job, replace: bool) -> i32 {
    job.replace |= replace;
    if job.save(None) && job.report.result.is_empty() {
        job.report.result = "saved".into();
    }
    job.finish(0)
}
