//! Runner mode (`--backend runner`): cachegate stores nothing. GitLab's own `cache:` carries
//! the paths between jobs, and a marker file inside the first cached path records the key
//! the tree was built from, so a job can tell "restored and current" from "missing or stale".

use std::fs;
use std::path::PathBuf;

use super::{Entries, Hit, Log, Lookup, Objects, Save, head};
use crate::exit::Ending;
use crate::paths::CachePath;
use crate::plan::Plan;
use crate::scope::Scope;

/// Runner mode's entries: the marker file inside the first cached path. `reads`/`writes`
/// are the policy, which no store gates here.
pub struct Runner {
    pub reads: bool,
    pub writes: bool,
}

impl Entries for Runner {
    fn describe(&self) -> String {
        "runner".into()
    }

    fn place(&self, _: Scope) -> &'static str {
        "runner"
    }

    fn scoped(&self) -> bool {
        false
    }

    fn log_plan(&self, plan: &Plan) -> bool {
        log_plan(plan);
        true
    }

    fn lookup(&mut self, plan: &Plan, _: &mut Log) -> Lookup {
        if !self.reads {
            return Lookup::Miss;
        }
        match state(plan) {
            State::Current => Lookup::Hit(Hit::InPlace),
            State::Not(why) => {
                eprintln!("{} · {why}", head(plan, "miss", "runner"));
                Lookup::Miss
            }
        }
    }

    fn recover(&self, _: &Plan, _: &mut Log) {}

    fn before_install(&self, plan: &Plan) {
        // A stale marker must not survive an install that fails halfway.
        remove_marker(plan);
    }

    fn restore(&mut self, plan: &Plan, log: &mut Log, _: &Hit) -> bool {
        eprintln!(
            "{} · restored by GitLab's cache",
            head(plan, "hit", "runner")
        );
        log.report.hit = true;
        true
    }

    fn may_save(&self) -> bool {
        self.writes
    }

    fn save(
        &mut self,
        plan: &Plan,
        log: &mut Log,
        _: &[CachePath],
        _: Option<f64>,
        _: bool,
    ) -> Save {
        match write_marker(plan) {
            Ok(()) => {
                log.report.saved = true;
                eprintln!(
                    "{} · marked; GitLab's cache: uploads the paths after the job",
                    head(plan, "saved", "runner")
                );
                Save::Saved
            }
            Err(msg) => {
                log.trouble(msg.clone());
                Save::Failed(msg)
            }
        }
    }

    fn explain(&mut self, plan: &Plan, _: &mut Log) -> Ending {
        explain(plan)
    }

    fn objects(&mut self) -> Option<&mut Objects> {
        None
    }
}

/// The marker's file name inside the first cached path.
pub const MARKER: &str = ".cachegate-runner";
const HEADER: &str = "cachegate runner marker v1";

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
    // The key leaves out where a project's Python environment lies, because a restore from
    // a store rewrites it for the new path; GitLab's cache puts it back untouched.
    let built_at = text.lines().find_map(|l| l.strip_prefix("dir "));
    let here = plan.dir.display().to_string();
    if plan.relocatable_python && built_at != Some(here.as_str()) {
        return State::Not(format!(
            "{first} was built at {}, and GitLab's cache does not rewrite the paths a virtualenv holds",
            built_at.unwrap_or("another path")
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
        "{HEADER}\nkey {}\nname {}\ndir {}\n",
        plan.key,
        plan.components.name,
        plan.dir.display()
    );
    // Temp file + rename: a job killed mid-write never leaves a marker that half-matches.
    let tmp = first.abs.join(format!("{MARKER}.tmp"));
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, marker(plan)))
        .map_err(|e| format!("cannot write the runner marker in {}: {e}", first.declared))
}

/// Remove the marker: the tree is about to change.
fn remove_marker(plan: &Plan) {
    let _ = fs::remove_file(marker(plan));
}

/// The log line that takes the place of the plan's in runner mode.
fn log_plan(plan: &Plan) {
    let paths: Vec<String> = plan
        .paths
        .iter()
        .map(|p| crate::echo::value(&p.declared))
        .collect();
    eprintln!(
        "cachegate: runner mode: GitLab's cache: carries {}; marker {}/{MARKER}",
        paths.join(", "),
        paths[0]
    );
}

/// `explain` in runner mode: what the marker says.
fn explain(plan: &Plan) -> Ending {
    match state(plan) {
        State::Current => {
            crate::outln!(
                "hit: {} {} is current in {} (runner mode)",
                plan.components.name,
                plan.short_key(),
                plan.paths[0].declared
            );
            Ending::Done
        }
        State::Not(why) => {
            crate::outln!(
                "miss: {} {}: {why} (runner mode; GitLab's cache: decides what is restored)",
                plan.components.name,
                plan.short_key()
            );
            Ending::Miss
        }
    }
}
