//! The commands a job runs: `ensure` (restore on a hit, else run the install and save), and
//! its parts on their own: `restore`, `check`, `save`.

use crate::install::run_install;
use crate::job::{EXIT_MISS, EXIT_TROUBLE, Job, Lookup};
use crate::key::shell_words;
use crate::report;

pub fn ensure(mut job: Job, cmd: &[String], save_on_failure: bool) -> i32 {
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
    eprintln!("{} · running {}", job.head("miss", scope), shell_words(cmd));
    let (status, secs) = run_install(&job.plan, cmd, &mut job.report);
    if status != 0 && !save_on_failure {
        eprintln!(
            "{} · command exited {status} after {}; nothing saved",
            job.head("miss", scope),
            report::secs(secs)
        );
        return job.finish(status);
    }
    if !job.policy.pushes() {
        eprintln!(
            "{} · installed in {}; not saved (--policy pull)",
            job.head("miss", scope),
            report::secs(secs)
        );
        return job.finish(status);
    }
    job.save(Some(secs));
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

pub fn save(mut job: Job) -> i32 {
    if job.save(None) && job.report.result.is_empty() {
        job.report.result = "saved".into();
    }
    job.finish(0)
}
