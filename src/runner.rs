//! Runner mode (`--backend runner`): cachegate stores nothing. GitLab's own `cache:` carries
//! the paths between jobs, and a marker file inside the first cached path records the key
//! the tree was built from, so a job can tell "restored and current" from "missing or stale".

use std::fs;
use std::path::PathBuf;

use crate::cli::{ReportArgs, StoreArgs};
use crate::config;
use crate::job::EXIT_MISS;
use crate::key::shell_words;
use crate::plan::Plan;
use crate::report::{self, Report};

/// The marker's file name inside the first cached path.
pub const MARKER: &str = ".cachegate-runner";
const HEADER: &str = "cachegate runner marker v1";

/// Whether `--backend runner` is what the store arguments select.
pub fn selected(store: &StoreArgs) -> anyhow::Result<bool> {
    Ok(matches!(
        config::backend_spec(store.backend.as_deref())?,
        crate::backend::BackendSpec::Runner
    ))
}

enum State {
    /// The marker holds this key and every cached path exists.
    Current,
    /// Why not: for the log.
    Not(String),
}

fn marker(plan: &Plan) -> PathBuf {
    plan.paths[0].abs.join(MARKER)
}

fn state(plan: &Plan) -> State {
    let path = marker(plan);
    let first = &plan.paths[0].declared;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) if fs::symlink_metadata(&plan.paths[0].abs).is_err() => {
            return State::Not(format!("{first} is not there (GitLab restored no cache)"));
        }
        Err(_) => return State::Not(format!("{first} has no cachegate marker")),
    };
    let mut lines = text.lines();
    let key = match (
        lines.next(),
        lines.next().and_then(|l| l.strip_prefix("key ")),
    ) {
        (Some(HEADER), Some(k)) => k.trim(),
        _ => return State::Not(format!("the marker in {first} is not readable")),
    };
    if key != plan.key {
        return State::Not(format!(
            "{first} was built for key {}, not this one",
            crate::key::short(key)
        ));
    }
    if let Some(p) = plan.missing_paths().first() {
        return State::Not(format!("{p} is missing"));
    }
    State::Current
}

fn write_marker(plan: &Plan) -> Result<(), String> {
    let first = &plan.paths[0];
    if !first.abs.is_dir() {
        return Err(format!(
            "{} is not a directory, so it cannot hold the runner marker; list a directory first in --path",
            first.declared
        ));
    }
    let body = format!(
        "{HEADER}\nkey {}\nname {}\n",
        plan.key, plan.components.name
    );
    // Temp file + rename: a job killed mid-write never leaves a marker that half-matches.
    let tmp = first.abs.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, marker(plan)))
        .map_err(|e| format!("cannot write the runner marker in {}: {e}", first.declared))
}

struct Runner<'a> {
    plan: &'a Plan,
    report: Report,
    report_args: &'a ReportArgs,
    strict: bool,
    trouble: bool,
}

impl<'a> Runner<'a> {
    fn new(
        command: &'static str,
        plan: &'a Plan,
        store: &StoreArgs,
        report_args: &'a ReportArgs,
    ) -> Self {
        let paths: Vec<&str> = plan.paths.iter().map(|p| p.declared.as_str()).collect();
        eprintln!(
            "cachegate: runner mode: GitLab's cache: carries {}; marker {}/{MARKER}",
            paths.join(", "),
            plan.paths[0].declared
        );
        Runner {
            plan,
            report: Report {
                command,
                key: plan.key.clone(),
                name: plan.components.name.clone(),
                scope: "runner".into(),
                backend: "runner".into(),
                components: Some(plan.components.clone()),
                ..Report::default()
            },
            report_args,
            strict: store.strict,
            trouble: false,
        }
    }

    fn head(&self, word: &str) -> String {
        format!(
            "cachegate: {word} {} {} (runner)",
            self.plan.components.name,
            self.plan.short_key()
        )
    }

    fn save(&mut self) -> bool {
        if let Err(msg) = write_marker(self.plan) {
            self.trouble = true;
            self.report.warn(msg);
            return false;
        }
        self.report.saved = true;
        eprintln!(
            "{} · marked; GitLab's cache: uploads the paths after the job",
            self.head("saved")
        );
        true
    }

    fn finish(&mut self, code: i32) -> i32 {
        crate::job::finish(
            &self.report,
            Some(self.report_args),
            self.strict && self.trouble,
            code,
        )
    }

    /// Hit or miss from the marker; logs the miss reason.
    fn lookup(&mut self) -> bool {
        match state(self.plan) {
            State::Current => {
                self.report.result = "hit".into();
                self.report.hit = true;
                true
            }
            State::Not(why) => {
                self.report.result = "miss".into();
                eprintln!("{} · {why}", self.head("miss"));
                false
            }
        }
    }
}

pub fn ensure(
    plan: &Plan,
    cmd: &[String],
    store: &StoreArgs,
    report_args: &ReportArgs,
    save_on_failure: bool,
) -> i32 {
    let mut r = Runner::new("ensure", plan, store, report_args);
    if r.lookup() {
        eprintln!("{} · restored by GitLab's cache", r.head("hit"));
        return r.finish(0);
    }
    // A stale marker must not survive an install that fails halfway.
    let _ = fs::remove_file(marker(plan));
    eprintln!("{} · running {}", r.head("miss"), shell_words(cmd));
    let (status, secs) = crate::install::run_install(plan, cmd, &mut r.report);
    if status != 0 && !save_on_failure {
        eprintln!(
            "{} · command exited {status} after {}; not marked",
            r.head("miss"),
            report::secs(secs)
        );
        return r.finish(status);
    }
    if store.policy.pushes() {
        r.save();
    }
    r.finish(status)
}

/// `check` and `restore` agree: GitLab has already restored (or not) by the time the
/// script runs, so both only read the marker.
pub fn check(command: &'static str, plan: &Plan, store: &StoreArgs, args: &ReportArgs) -> i32 {
    let mut r = Runner::new(command, plan, store, args);
    if r.lookup() {
        eprintln!("{} · restored by GitLab's cache", r.head("hit"));
        return r.finish(0);
    }
    r.finish(EXIT_MISS)
}

pub fn save(plan: &Plan, store: &StoreArgs, args: &ReportArgs) -> i32 {
    let mut r = Runner::new("save", plan, store, args);
    let missing = plan.missing_paths();
    if !missing.is_empty() {
        r.report.result = "skipped".into();
        r.report
            .warn(format!("not marked: {} missing", missing.join(", ")));
        return r.finish(0);
    }
    if r.save() {
        r.report.result = "saved".into();
    }
    r.finish(0)
}

/// `explain` in runner mode: what the marker says.
pub fn explain(plan: &Plan) -> i32 {
    match state(plan) {
        State::Current => {
            println!(
                "hit: {} {} is current in {} (runner mode)",
                plan.components.name,
                plan.short_key(),
                plan.paths[0].declared
            );
            0
        }
        State::Not(why) => {
            println!(
                "miss: {} {}: {why} (runner mode; GitLab's cache: decides what is restored)",
                plan.components.name,
                plan.short_key()
            );
            EXIT_MISS
        }
    }
}
