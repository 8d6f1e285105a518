//! The ensure loop, once for every store: restore on a hit, else run the install and save
//! what it produced. `restore`, `check` and `save` are its parts on their own.

use crate::exit::Ending;
use crate::install::run_install;
use crate::job::{Hit, Job, Lookup, Save, Skip};
use crate::key::shell_words;
use crate::report::{self, Outcome};

pub fn ensure(mut job: Job, cmd: &[String], save_on_failure: bool) -> i32 {
    job.recover();
    let lookup = job.lookup();
    let store_down = matches!(lookup, Lookup::Unavailable { writes_too: true });
    if let Lookup::Hit(hit) = &lookup
        && job.restore(hit)
    {
        job.report.result = Outcome::Hit;
        return job.finish(Ending::Done);
    }
    if job.strict && job.trouble_so_far() {
        return job.finish(Ending::Trouble);
    }
    job.report.result = Outcome::Miss;
    let miss = job.head("miss", job.scopes.write);
    job.before_install();
    eprintln!("{miss} · running {}", shell_words(cmd));
    let (status, secs) = run_install(&job.plan, cmd, &mut job.report);
    if status != 0 && !save_on_failure {
        eprintln!(
            "{miss} · command exited {status} after {}; nothing saved",
            report::secs(secs)
        );
        return job.finish(Ending::Command(status));
    }
    let saved = if store_down {
        Save::Skipped(Skip::StoreFailed)
    } else {
        job.save(Some(secs))
    };
    job.report.result = match saved {
        Save::Skipped(Skip::Policy) => {
            eprintln!(
                "{miss} · installed in {}; not saved (--policy pull)",
                report::secs(secs)
            );
            Outcome::Miss
        }
        Save::Skipped(Skip::StoreFailed) => {
            eprintln!("{miss} · not saved: the store failed during the lookup");
            Outcome::Skipped
        }
        Save::Skipped(_) => Outcome::Skipped,
        Save::Exists => Outcome::Exists,
        Save::Saved | Save::Failed(_) => Outcome::Miss,
    };
    job.finish(Ending::Command(status))
}

pub fn restore(mut job: Job) -> i32 {
    job.recover();
    if let Lookup::Hit(hit) = job.lookup()
        && job.restore(&hit)
    {
        job.report.result = Outcome::Hit;
        return job.finish(Ending::Done);
    }
    job.report.result = Outcome::Miss;
    eprintln!("{} · nothing restored", job.miss_head());
    job.finish(Ending::Miss)
}

/// Look up without downloading.
pub fn check(mut job: Job) -> i32 {
    match job.lookup() {
        Lookup::Hit(hit) => {
            if let Hit::Entry { scope, manifest } = &hit {
                eprintln!(
                    "{} · {}, {} in {}",
                    job.head("hit", *scope),
                    report::files(manifest.files),
                    report::bytes(manifest.bytes),
                    job.store.describe()
                );
                job.report.scope = scope.as_str().into();
                job.report.files = Some(manifest.files);
                job.report.bytes = Some(manifest.bytes);
            } else {
                eprintln!(
                    "{} · restored by GitLab's cache",
                    job.head("hit", job.scopes.write)
                );
            }
            job.report.result = Outcome::Hit;
            job.report.hit = true;
            job.finish(Ending::Done)
        }
        Lookup::Miss | Lookup::Unavailable { .. } => {
            eprintln!("{} · not in {}", job.miss_head(), job.store.describe());
            job.report.result = Outcome::Miss;
            job.finish(Ending::Miss)
        }
    }
}

pub fn save(mut job: Job) -> i32 {
    job.report.result = match job.save(None) {
        Save::Saved => Outcome::Saved,
        Save::Exists => Outcome::Exists,
        Save::Skipped(Skip::Policy) => {
            eprintln!(
                "{} · not saved (--policy pull never uploads)",
                job.head("miss", job.scopes.write)
            );
            Outcome::Skipped
        }
        Save::Skipped(_) => Outcome::Skipped,
        Save::Failed(_) => Outcome::None,
    };
    job.finish(Ending::Done)
}
