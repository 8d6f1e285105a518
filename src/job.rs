//! One cache job: the plan, its entries and the report. `Job` orchestrates and reports;
//! how entries are found, restored and saved is the entries' (`entries/`), chosen once when
//! the store opens. Cache trouble becomes a warning and a miss (exit 3 under `--strict`);
//! only the wrapped command's own status or a usage error ends a job red. The commands that
//! drive a job are in `ensure.rs`; `explain.rs` reads through one too.

use std::time::Duration;

use anyhow::Result;

use crate::cli::{JobArgs, ReportArgs, StoreArgs};
use crate::entries::{self, Entries, Log, Objects, Settings};
pub use crate::entries::{Hit, Lookup, Save, Skip};
use crate::exit::{self, Ending};
use crate::namespace::Namespace;
use crate::plan::Plan;
use crate::report::{self, Outcome, WarmReport};
use crate::scope::{Scope, Scopes};
use crate::store::{Policy, Store};
use crate::{echo, warm};

pub struct Job {
    plan: Plan,
    entries: Box<dyn Entries>,
    /// The project whose entries this job reads and writes.
    namespace: Namespace,
    scopes: Scopes,
    verbose: u8,
    log: Log,
    report_args: Option<ReportArgs>,
}

impl Job {
    /// The plan from the key options, then the job: what every job command starts with.
    pub fn open(command: &'static str, args: JobArgs, cmd: &[String], verbose: u8) -> Result<Job> {
        let plan = crate::plan::plan(&(&args.key).into(), cmd)?;
        let mut report = args.report;
        report.json = report.json_destination();
        report.json_file = None;
        Job::new(command, plan, &args.store, Some(report), verbose)
    }

    pub fn new(
        command: &'static str,
        plan: Plan,
        args: &StoreArgs,
        report_args: Option<ReportArgs>,
        verbose: u8,
    ) -> Result<Job> {
        let store = Store::configured(
            args.backend.as_deref(),
            &args.transfer.transfer(),
            args.policy,
        )?
        .with_local_tier(args.local_tier.clone(), args.local_tier_max_size);
        let namespace = Namespace::resolve(args.namespace.as_deref(), &plan.dir)?;
        let (scopes, widened) = Scopes::resolve(args.trust.scope);
        let entries = entries::open(
            store,
            Settings {
                ns: namespace.segment(),
                project: namespace.name.clone(),
                scopes: scopes.clone(),
                name: plan.components.name.clone(),
                replace: args.policy == Policy::Push,
                level: args.compression_level,
                chunk_size: args.transfer.chunk_size,
                limits: args.limits.limits(),
                refuse_secrets: args.trust.refuse_secrets,
            },
        )?;
        let mut report = report::Report {
            command,
            key: plan.key.clone(),
            name: plan.components.name.clone(),
            scope: entries.place(scopes.write).to_string(),
            backend: entries.describe(),
            components: Some(plan.components.clone()),
            namespace: namespace.name.clone(),
            ..report::Report::default()
        };
        if let Some(w) = widened.filter(|_| entries.scoped()) {
            report.warn(w);
        }
        let job = Job {
            plan,
            entries,
            namespace,
            scopes,
            verbose,
            log: Log::new(report, args.strict),
            report_args,
        };
        if !job.entries.log_plan(&job.plan) {
            job.log_plan();
        }
        Ok(job)
    }

    fn log_plan(&self) {
        let p = &self.plan;
        let paths: Vec<String> = p.paths.iter().map(|c| echo::value(&c.declared)).collect();
        // Name a preset only when its paths are the ones cached: with --path it chose nothing.
        let mut line = if p.presets.is_empty() || !p.preset_paths {
            format!("caching {}", paths.join(", "))
        } else {
            format!(
                "preset {}: caching {}",
                p.presets.join(", "),
                paths.join(", ")
            )
        };
        let set: Vec<String> = p
            .command_env
            .iter()
            .map(|v| {
                if v.ours {
                    format!("{}={}", v.name, v.value)
                } else {
                    format!("{}={} (already set, kept)", v.name, v.value)
                }
            })
            .collect();
        if !set.is_empty() {
            line.push_str(&format!("; command env {}", set.join(" ")));
        }
        // What the tools' own configuration decided: why these paths and not others.
        for n in &p.notes {
            line.push_str(&format!("; {n}"));
        }
        line.push_str(&format!("; project {}", self.namespace.name));
        // The tools' configuration (the notes) is from outside too.
        eprintln!("cachegate: {}", echo::line(&line));
        // In GitLab, ensure ends with one section holding all of it (`summary.rs`).
        let summary_later = self.log.report.command == "ensure" && report::in_gitlab();
        if !summary_later && (report::in_gitlab() || self.verbose > 0) {
            report::section("key", &format!("key {}", p.short_key()), &self.key_lines());
        }
    }

    /// The key's parts and where its entries live, for people.
    pub(crate) fn key_lines(&self) -> Vec<String> {
        let p = &self.plan;
        let mut lines: Vec<String> = p.components.explain().lines().map(String::from).collect();
        lines.push(format!("backend  {}", self.entries.describe()));
        lines.push(format!("project  {}", self.namespace.describe()));
        lines.push(format!(
            "scopes   write {}, read {}",
            self.scopes.write.as_str(),
            self.scopes
                .read
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" then ")
        ));
        lines
    }

    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether `--strict` stops this job before its install: cache trouble so far.
    pub(crate) fn stops_on_trouble(&self) -> bool {
        self.log.strict() && self.log.had_trouble()
    }

    /// The start of a summary line: `cachegate: hit pip 1a2b3c4d (protected)`.
    pub(crate) fn head(&self, word: &str, scope: Scope) -> String {
        entries::head(&self.plan, word, self.entries.place(scope))
    }

    /// A summary line's start for the scope this job writes.
    pub(crate) fn write_head(&self, word: &str) -> String {
        self.head(word, self.scopes.write)
    }

    /// The scope a miss is reported in: the first one looked in.
    pub(crate) fn miss_head(&self) -> String {
        self.head("miss", self.scopes.read[0])
    }

    pub(crate) fn describe(&self) -> String {
        self.entries.describe()
    }

    pub(crate) fn set_result(&mut self, result: Outcome) {
        self.log.report.result = result;
    }

    pub(crate) fn set_hit(&mut self) {
        self.log.report.hit = true;
    }

    /// What `check` found in the store, for the report.
    pub(crate) fn found(&mut self, scope: Scope, files: u64, bytes: u64) {
        let r = &mut self.log.report;
        r.scope = scope.as_str().into();
        r.files = Some(files);
        r.bytes = Some(bytes);
    }

    /// Single-flight: this job waited `waited` (for `leader`, when another job's save ended
    /// the wait).
    pub(crate) fn waited(&mut self, waited: Duration, leader: Option<&str>) {
        self.log.report.waited_seconds = Some(waited.as_secs_f64());
        if let Some(leader) = leader {
            self.log.report.waited_for = Some(leader.to_string());
        }
    }

    /// The object protocol, for single-flight: `None` in runner mode.
    pub(crate) fn objects(&mut self) -> Option<&mut Objects> {
        self.entries.objects()
    }

    /// Look the key up in every scope this job may read, in order.
    pub fn lookup(&mut self) -> Lookup {
        self.entries.lookup(&self.plan, &mut self.log)
    }

    /// Undo what an interrupted restore left beside the cached paths, before looking at them.
    pub(crate) fn recover(&mut self) {
        self.entries.recover(&self.plan, &mut self.log);
    }

    /// Put a hit in place. `false` means it did not work out (cache trouble, reported) and
    /// the job goes on as a miss.
    pub fn restore(&mut self, hit: &Hit) -> bool {
        self.entries.restore(&self.plan, &mut self.log, hit)
    }

    /// On a miss: a warm start where asked (`--fallback`) and stored entries can be restored,
    /// then the install. Its status and how long it took.
    pub(crate) fn install(&mut self, cmd: &[String], fallback: bool) -> (i32, f64) {
        if fallback && let Some(o) = self.entries.objects() {
            self.log.report.warm = warm_start(o, &self.plan, &mut self.log, cmd);
        }
        self.entries.before_install(&self.plan);
        let made = crate::outside::ours_before_install(&self.plan.dir, &self.plan.targets());
        eprintln!(
            "{} · running {}",
            self.write_head("miss"),
            echo::value(&crate::key::shell_words(cmd))
        );
        let crate::install::Installed {
            status,
            seconds: secs,
        } = crate::install::run_install(&self.plan, cmd, &mut self.log.report);
        if status == 0 {
            crate::outside::claim(&self.plan.dir, &made);
        }
        (status, secs)
    }

    /// `explain`: why the lookup misses, on stdout.
    pub(crate) fn explain(&mut self) -> Ending {
        self.entries.explain(&self.plan, &mut self.log)
    }

    /// Save the cached paths under this job's key (runner mode: mark them); `replace`
    /// (`save --replace`) replaces an entry of this key already there.
    pub fn save(&mut self, install_seconds: Option<f64>, replace: bool) -> Save {
        if !self.entries.may_save() {
            return Save::Skipped(Skip::Policy);
        }
        let crate::cached::ToSave { paths, missing } =
            crate::cached::for_save(&self.plan.dir, &self.plan.paths);
        if !missing.is_empty() || paths.is_empty() {
            // Only optional paths were declared and none exists: name them all.
            let missing: Vec<String> = if missing.is_empty() {
                self.plan.paths.iter().map(|p| p.declared.clone()).collect()
            } else {
                missing
            };
            self.log.warn(format!(
                "nothing saved: {} {} not exist after the command (check --path or the preset)",
                missing
                    .iter()
                    .map(|m| echo::value(m))
                    .collect::<Vec<_>>()
                    .join(", "),
                if missing.len() == 1 { "does" } else { "do" }
            ));
            return Save::Skipped(Skip::MissingPaths(missing));
        }
        // An archive holds a link at the top of a cached path as a link, which every restore
        // rejects: saving it would only make each later run download, reject and save again.
        if let Some(link) = paths
            .iter()
            .find(|p| std::fs::symlink_metadata(&p.abs).is_ok_and(|m| m.is_symlink()))
        {
            let to = std::fs::read_link(&link.abs).unwrap_or_default();
            let real = std::fs::canonicalize(&link.abs).map_or_else(
                |_| "the directory it points to".to_string(),
                |r| {
                    let shown = r.strip_prefix(&self.plan.dir).unwrap_or(&r);
                    format!("--path {}", shown.display())
                },
            );
            self.log.warn(format!(
                "nothing saved: --path {:?} is a symbolic link (to {}), which a restore cannot put back; cache {real} instead",
                link.declared,
                to.display()
            ));
            return Save::Skipped(Skip::Link(link.declared.clone()));
        }
        // An entry of empty directories would hit and skip an install that produced
        // nothing there (a tool that put its tree somewhere else).
        if !paths.iter().any(|p| crate::paths::holds_files(&p.abs)) {
            let names: Vec<String> = paths.iter().map(|p| p.declared.clone()).collect();
            self.log.warn(format!(
                "nothing saved: {} {} no files after the command (check --path or the preset)",
                names.join(", "),
                if names.len() == 1 { "holds" } else { "hold" }
            ));
            return Save::Skipped(Skip::MissingPaths(names));
        }
        self.entries
            .save(&self.plan, &mut self.log, &paths, install_seconds, replace)
    }

    /// Write the report files and give `--strict` its say on how the job ended (the exit
    /// code is `exit::code`'s).
    pub fn finish(&mut self, ending: Ending) -> Ending {
        crate::backend::retry_log::summarize();
        if let Some(args) = &self.report_args
            && let Err(e) = self
                .log
                .report
                .write_files(args.json.as_deref(), args.dotenv.as_deref())
        {
            report::warn(&format!("{e:#}"));
        }
        if let Some(path) = self.report_args.as_ref().and_then(|a| a.metrics.as_deref())
            && let Err(e) = crate::metrics::write(&self.log.report, path)
        {
            report::warn(&format!("{e:#}"));
        }
        if self.log.report.command == "ensure" && report::in_gitlab() {
            crate::summary::print(&self.log.report, &self.plan, self.key_lines());
        }
        let ended = exit::under_strict(ending, self.log.strict() && self.log.had_trouble());
        if ended == Ending::Trouble && self.log.strict() && self.log.had_trouble() {
            eprintln!("cachegate: exit 3: cache trouble under --strict (see the warning above)");
        }
        ended
    }
}

/// A warm start, where stored entries may be restored: `--policy push` restores nothing, a
/// warm start included (and runner mode has no entries to start from).
fn warm_start(o: &mut Objects, plan: &Plan, log: &mut Log, cmd: &[String]) -> Option<WarmReport> {
    if o.store().reads() {
        warm::start(o, plan, log, cmd)
    } else {
        None
    }
}
