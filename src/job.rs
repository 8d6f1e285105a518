//! One cache job: the store, the scopes and the plan, looked up, restored and saved. Cache
//! trouble becomes a warning and a miss (exit 3 under `--strict`); only the wrapped command's
//! own status or a usage error ends a job red. The commands that drive a job are in
//! `ensure.rs`; `explain.rs` reads through one too.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::archive::{self, Expected, Limits, UnpackError};
use crate::backend::{Backend, StoreError, ranged};
use crate::cli::{JobArgs, ReportArgs, StoreArgs};
use crate::entry::{self, EntryName, Manifest};
use crate::exit::{self, Ending};
use crate::namespace::Namespace;
use crate::plan::Plan;
use crate::report::{self, Report};
use crate::scope::{Scope, Scopes};
use crate::store::{Gated, Store};
use crate::{echo, env_vars, key, records, redact, runner, secrets, sign};

/// What a lookup found (just's `CacheStatus`).
pub enum Lookup {
    Hit(Hit),
    Miss,
    /// The store failed: a miss, and cache trouble. `writes_too` when it failed on the scope
    /// this job writes, where a save would only repeat the failure and its timeouts.
    Unavailable {
        writes_too: bool,
    },
}

pub enum Hit {
    /// An entry to download and unpack.
    Entry {
        scope: Scope,
        manifest: Box<Manifest>,
    },
    /// Runner mode: GitLab's `cache:` already put the paths in place, and the marker says
    /// they were built for this key.
    InPlace,
}

/// What a save came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Save {
    Saved,
    /// Another job saved this key first; theirs is kept.
    Exists,
    Skipped(Skip),
    /// Cache trouble (already reported as a warning).
    Failed(String),
}

/// Why nothing was saved, when that is no trouble.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// `--policy pull`.
    Policy,
    /// Cached paths the command did not produce.
    MissingPaths(Vec<String>),
    /// The store failed during the lookup of the scope this job writes.
    StoreFailed,
    /// `--refuse-secrets` found credential files.
    Secrets(Vec<String>),
    /// A cached path is a symbolic link, which no restore accepts.
    Link(String),
    /// The install failed (and `--save-on-failure` was not given).
    CommandFailed,
}

pub struct Job {
    pub plan: Plan,
    pub store: Store,
    /// The project whose entries this job reads and writes.
    pub namespace: Namespace,
    /// `namespace` as the path segment the layout uses.
    pub ns: String,
    /// `--policy push` or `save --replace`: an existing entry of this key is replaced.
    pub replace: bool,
    /// Single-flight: how long this job waited for another's install, and for whom.
    pub waited: Option<(Duration, String)>,
    pub scopes: Scopes,
    pub strict: bool,
    pub level: i32,
    /// `--chunk-size`: the pieces a save records a digest of, as downloads fetch them.
    pub chunk_size: u64,
    pub verbose: u8,
    pub report: Report,
    pub report_args: Option<ReportArgs>,
    /// Cache trouble so far, for `--strict`: set only by `trouble`, read only by `finish`.
    trouble: bool,
    pub limits: Limits,
    /// Signs the manifests this job writes (`CACHEGATE_SIGNING_KEY`).
    pub signing: Option<ed25519_dalek::SigningKey>,
    /// When set, entries this job must trust need a signature by one of these.
    pub trusted: Option<Vec<ed25519_dalek::VerifyingKey>>,
    pub refuse_secrets: bool,
    /// The manifest found for this key whose entry did not fit this machine: this job's
    /// save replaces it (as `--policy push` does).
    pub replace_unfit: Option<String>,
}

impl Job {
    /// The plan from the key options, then the job: what every job command starts with.
    pub fn open(command: &'static str, args: JobArgs, cmd: &[String], verbose: u8) -> Result<Job> {
        let plan = crate::plan::plan(&args.key, cmd)?;
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
        let runner = matches!(store, Store::Marker(_));
        let namespace = Namespace::resolve(args.namespace.as_deref(), &plan.dir)?;
        let (scopes, widened) = Scopes::resolve(args.trust.scope);
        // Runner mode stores no entries, so it neither signs nor verifies any.
        let (signing, trusted) = if runner {
            (None, None)
        } else {
            (signing_key()?, trusted_keys()?)
        };
        let mut report = Report {
            command,
            key: plan.key.clone(),
            name: plan.components.name.clone(),
            scope: if runner {
                "runner".into()
            } else {
                scopes.write.as_str().to_string()
            },
            backend: store.describe(),
            components: Some(plan.components.clone()),
            namespace: namespace.name.clone(),
            ..Report::default()
        };
        if let Some(w) = widened.filter(|_| !runner) {
            report.warn(w);
        }
        let job = Job {
            plan,
            store,
            ns: namespace.segment(),
            namespace,
            replace: args.policy == crate::store::Policy::Push,
            waited: None,
            scopes,
            strict: args.strict,
            level: args.compression_level,
            chunk_size: args.transfer.chunk_size,
            verbose,
            report,
            report_args,
            trouble: false,
            limits: args.limits.limits(),
            signing,
            trusted,
            refuse_secrets: args.trust.refuse_secrets,
            replace_unfit: None,
        };
        if runner {
            runner::log_plan(&job.plan);
        } else {
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
            .map(|(k, v, ours)| {
                if *ours {
                    format!("{k}={v}")
                } else {
                    format!("{k}={v} (already set, kept)")
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
        let summary_later = self.report.command == "ensure" && report::in_gitlab();
        if !summary_later && (report::in_gitlab() || self.verbose > 0) {
            report::section("key", &format!("key {}", p.short_key()), &self.key_lines());
        }
    }

    /// The key's parts and where its entries live, for people.
    pub(crate) fn key_lines(&self) -> Vec<String> {
        let p = &self.plan;
        let mut lines: Vec<String> = p.components.explain().lines().map(String::from).collect();
        lines.push(format!("backend  {}", self.store.describe()));
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

    /// Whether cache trouble happened so far (`--strict` stops before the install).
    pub(crate) fn trouble_so_far(&self) -> bool {
        self.trouble
    }

    /// What a job does about cache trouble before its install: goes on as a miss, or, under
    /// `--strict`, stops.
    pub(crate) fn as_miss(&self) -> &'static str {
        if self.strict {
            "stopping with exit 3 (--strict)"
        } else {
            "treating it as a miss"
        }
    }

    /// Cache trouble: a warning, remembered for `--strict`.
    pub(crate) fn trouble(&mut self, msg: String) {
        self.trouble = true;
        self.report.warn(msg);
    }

    /// The start of a summary line: `cachegate: hit pip 1a2b3c4d (protected)`.
    pub(crate) fn head(&self, word: &str, scope: Scope) -> String {
        let place = match self.store {
            Store::Marker(_) => "runner",
            Store::Objects(_) => scope.as_str(),
        };
        format!(
            "cachegate: {word} {} {} ({place})",
            self.plan.components.name,
            self.plan.short_key(),
        )
    }

    /// The scope a miss is reported in: the first one looked in.
    pub(crate) fn miss_head(&self) -> String {
        self.head("miss", self.scopes.read[0])
    }

    /// The object store, unless this is runner mode.
    pub(crate) fn objects(&self) -> Option<&Gated> {
        match &self.store {
            Store::Objects(g) => Some(g),
            Store::Marker(_) => None,
        }
    }

    /// The entry of `key` under this job's project and cache name, in `scope`.
    pub(crate) fn entry_name(&self, scope: Scope, key: &str) -> EntryName {
        EntryName::new(&self.ns, scope, &self.plan.components.name, key)
    }

    /// Where this job's entries of its cache name live in `scope`.
    pub(crate) fn entry_dir(&self, scope: Scope) -> String {
        self.entry_name(scope, "").dir()
    }

    pub(crate) fn manifest_object(&self, scope: Scope, key: &str) -> String {
        self.entry_name(scope, key).manifest()
    }

    /// Look the key up in every scope this job may read, in order.
    pub fn lookup(&mut self) -> Lookup {
        if !self.store.reads() {
            return Lookup::Miss;
        }
        if let Store::Marker(_) = self.store {
            return match runner::state(&self.plan) {
                runner::State::Current => Lookup::Hit(Hit::InPlace),
                runner::State::Not(why) => {
                    eprintln!("{} · {why}", self.miss_head());
                    Lookup::Miss
                }
            };
        }
        let name = self.plan.components.name.clone();
        for scope in self.scopes.read.clone() {
            let object = self.manifest_object(scope, &self.plan.key);
            let Store::Objects(backend) = &self.store else {
                break;
            };
            let why = match backend.get_small(&object) {
                Ok(bytes) => {
                    match Manifest::parse(&bytes, &self.ns, scope, &name, &self.plan.key) {
                        Ok(m) if m.files == 0 => format!(
                            "not restoring the {} entry {object}: it holds no files, so the install did not produce what it caches; treating it as a miss",
                            scope.as_str()
                        ),
                        Ok(m) => match self.untrusted(scope, &m) {
                            None => {
                                return Lookup::Hit(Hit::Entry {
                                    scope,
                                    manifest: Box::new(m),
                                });
                            }
                            Some(why) => format!(
                                "not restoring the {} entry {object}: {why}; {}",
                                scope.as_str(),
                                self.as_miss()
                            ),
                        },
                        Err(e) => format!(
                            "ignoring the {} entry {object}: {e:#}; {}",
                            scope.as_str(),
                            self.as_miss()
                        ),
                    }
                }
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    let describe = backend.describe();
                    self.trouble(format!(
                        "cannot look up {} in {describe}: {e}; {}",
                        self.plan.short_key(),
                        self.as_miss()
                    ));
                    // Failing on the scope this job writes means the save would fail too; a
                    // scope it may only read says nothing about writing.
                    return Lookup::Unavailable {
                        writes_too: scope == self.scopes.write,
                    };
                }
            };
            self.trouble(why);
            // Left in place it would block this job's save (a signed one too) forever.
            self.discard(scope, &object, None);
        }
        Lookup::Miss
    }

    /// Why an entry must not be restored when trusted keys are set: protected entries, and
    /// anything a protected job restores, need a signature by a trusted key.
    pub(crate) fn untrusted(&self, scope: Scope, m: &Manifest) -> Option<String> {
        let trusted = self.trusted.as_ref()?;
        if scope != Scope::Protected && !self.scopes.protected_job {
            return None;
        }
        sign::verify(trusted, m).err().map(|e| format!("{e:#}"))
    }

    /// Remove a broken entry so the next save can replace it, but only in the scope this
    /// job writes (the store refuses under `--policy pull`). Whether it is gone.
    fn discard(&self, scope: Scope, manifest: &str, archive: Option<&str>) -> bool {
        let Store::Objects(backend) = &self.store else {
            return false;
        };
        if scope != self.scopes.write || backend.delete(manifest).is_err() {
            return false;
        }
        if let Some(a) = archive {
            let _ = backend.delete(a);
        }
        true
    }

    /// Undo what an interrupted restore left beside the cached paths, before looking at them.
    pub(crate) fn recover(&mut self) {
        if matches!(self.store, Store::Marker(_)) {
            return;
        }
        for t in archive::recover_interrupted(&self.plan.targets()) {
            self.report.warn(format!(
                "an earlier restore was interrupted midway; put {} back as it was",
                t.display()
            ));
        }
    }

    /// Before the install runs on a miss.
    pub(crate) fn before_install(&self) {
        if let Store::Marker(_) = self.store {
            // A stale marker must not survive an install that fails halfway.
            runner::remove_marker(&self.plan);
        }
    }

    /// Put a hit in place. `false` means it did not work out (cache trouble, reported) and
    /// the job goes on as a miss.
    pub fn restore(&mut self, hit: &Hit) -> bool {
        let (scope, m, backend) = match (hit, &self.store) {
            (Hit::Entry { scope, manifest }, Store::Objects(b)) => (*scope, manifest, b),
            _ => {
                eprintln!(
                    "{} · restored by GitLab's cache",
                    self.head("hit", self.scopes.write)
                );
                self.report.hit = true;
                return true;
            }
        };
        let (scope, m) = (scope, m.clone());
        let start = Instant::now();
        let unpacked = self.unpack(scope, &m);
        crate::backend::retry_log::summarize();
        match unpacked {
            Ok(stats) => {
                let secs = start.elapsed().as_secs_f64();
                // After the restore: a local tier says whether the archive came from disk.
                let describe = backend.describe();
                let mut line = format!(
                    "{} · {}, {} in {} from {describe}",
                    self.head("hit", scope),
                    report::files(stats.files),
                    report::bytes(stats.bytes),
                    report::secs(secs),
                );
                if let Some(install) = m.install_seconds {
                    line.push_str(&format!(" · {}", report::saved_phrase(install, secs)));
                    self.report.entry_install_seconds = Some(install);
                    self.report.saved_seconds = Some(install - secs);
                }
                if let Some((waited, leader)) = &self.waited {
                    line.push_str(&format!(
                        " · waited {} for {leader}",
                        report::secs(waited.as_secs_f64())
                    ));
                }
                eprintln!("{line}");
                let r = &mut self.report;
                r.hit = true;
                r.scope = scope.as_str().into();
                r.files = Some(stats.files);
                r.bytes = Some(stats.bytes);
                r.archive_bytes = Some(stats.archive_bytes);
                r.restore_seconds = Some(secs);
                let rec = records::Record::new(
                    records::Kind::Hit,
                    m.install_seconds,
                    secs,
                    stats.archive_bytes,
                );
                self.record(&m.key, &rec);
                true
            }
            Err(UnpackError::Tracked(files)) => {
                self.report.warn(format!(
                    "not restoring {}: the repository tracks files in the cached paths ({files}), which a restore would replace; running the install instead",
                    self.plan.short_key()
                ));
                false
            }
            Err(UnpackError::Foreign(paths)) => {
                self.report.warn(format!(
                    "not restoring {}: {paths} already exists and cachegate did not create it, so a restore would replace someone else's files; running the install instead (remove it once to let cachegate restore it)",
                    self.plan.short_key()
                ));
                false
            }
            Err(UnpackError::Unfit(why)) => {
                let object = self.manifest_object(scope, &m.key);
                self.report.warn(format!(
                    "not restoring {}: the entry does not fit this machine: {why}; running the install (the entry stays for the machines it fits)",
                    self.plan.short_key()
                ));
                // The key could not tell this machine from the one that saved the entry,
                // so this machine's verified save must win for its next run.
                if scope == self.scopes.write {
                    self.replace_unfit = Some(object);
                }
                false
            }
            Err(e) => {
                let object = self.manifest_object(scope, &m.key);
                let replaced = matches!(e, UnpackError::Corrupt(_))
                    && self.discard(scope, &object, Some(&m.archive));
                self.trouble(format!(
                    "could not restore {} from {}: {e}; {}",
                    self.plan.short_key(),
                    backend.describe(),
                    if replaced {
                        "the entry is removed and will be replaced"
                    } else {
                        self.as_miss()
                    }
                ));
                false
            }
        }
    }

    /// Download and unpack an entry into the cached paths (verified, swapped in whole). An
    /// archive gone between reading the manifest and fetching it is usually a refresh that
    /// swapped in a new one: read the manifest again and follow it, a few times at most.
    pub(crate) fn unpack(
        &self,
        scope: Scope,
        m: &Manifest,
    ) -> Result<archive::UnpackStats, UnpackError> {
        let Some(backend) = self.objects() else {
            unreachable!("runner mode has no entries to unpack")
        };
        let mut current = m.clone();
        for _ in 0..3 {
            // The manifest's paths (a glob's matches), each one the key declares.
            let targets: Vec<std::path::PathBuf> =
                crate::cached::for_restore(&self.plan, &current.paths)
                    .map_err(UnpackError::Corrupt)?
                    .into_iter()
                    .map(|c| c.abs)
                    .collect();
            // A restore replaces the target trees whole: whatever git tracks there would go.
            let tracked = crate::fit::tracked(&self.plan.dir, &targets);
            if !tracked.is_empty() {
                let mut shown: Vec<&str> = tracked.iter().take(5).map(String::as_str).collect();
                let more = format!("and {} more", tracked.len().saturating_sub(5));
                if tracked.len() > 5 {
                    shown.push(&more);
                }
                return Err(UnpackError::Tracked(shown.join(", ")));
            }
            let foreign = crate::outside::foreign(&self.plan.dir, &targets);
            if !foreign.is_empty() {
                let shown: Vec<String> = foreign.iter().map(|p| p.display().to_string()).collect();
                return Err(UnpackError::Foreign(shown.join(", ")));
            }
            self.limits.check_archive_size(current.archive_size)?;
            let expected = Expected {
                digest: current.archive_blake3.clone(),
                size: current.archive_size,
            };
            match backend.get_archive(
                &current.archive,
                current.archive_size,
                &current.archive_blake3,
                current.chunks.as_ref(),
            ) {
                Ok(reader) => {
                    let fits = |staged: &[std::path::PathBuf]| {
                        crate::fit::check(staged, &targets, &current.paths, &current.links)?;
                        crate::relocate::apply(current.relocation.as_ref(), staged, &self.plan.dir)
                    };
                    let unpack = |reader| {
                        archive::unpack_checked(reader, &targets, &expected, self.limits, &fits)
                    };
                    let why = match unpack(reader) {
                        // A range checked against its digest was fetched again already.
                        Err(UnpackError::Corrupt(why)) if !why.ends_with(ranged::READ_TWICE) => why,
                        done => return done,
                    };
                    // A byte flipped in transit looks just like a damaged entry: read it
                    // again on a new connection before judging the stored one.
                    eprintln!(
                        "cachegate: the archive of {} arrived damaged ({}); reading it again on a new connection",
                        self.plan.short_key(),
                        echo::value(&why)
                    );
                    backend.reconnect();
                    let again = backend
                        .get_archive(
                            &current.archive,
                            current.archive_size,
                            &current.archive_blake3,
                            current.chunks.as_ref(),
                        )
                        .map_err(|e| UnpackError::Transfer(e.into()))?;
                    return match unpack(again) {
                        Err(UnpackError::Corrupt(twice))
                            if !twice.ends_with(ranged::READ_TWICE) =>
                        {
                            Err(UnpackError::Corrupt(format!(
                                "{twice} {}",
                                ranged::READ_TWICE
                            )))
                        }
                        done => done,
                    };
                }
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(UnpackError::Transfer(e.into())),
            }
            let object = self.manifest_object(scope, &current.key);
            let replaced = backend
                .get_small(&object)
                .ok()
                .and_then(|b| {
                    Manifest::parse(&b, &self.ns, scope, &current.name, &current.key).ok()
                })
                .filter(|n| n.archive != current.archive && self.untrusted(scope, n).is_none());
            match replaced {
                Some(n) => current = n,
                None => break,
            }
        }
        Err(UnpackError::Corrupt("its archive is missing".into()))
    }

    /// Leave this job's record beside the entry (`records.rs`): bounded in time, never an
    /// error. Only in the scope this job writes, and never under `--policy pull` (read-only
    /// means no writes at all); a hit on another scope's entry is recorded in this job's
    /// scope, under the entry's key.
    fn record(&self, key: &str, record: &records::Record) {
        let Some(backend) = self.objects() else {
            return;
        };
        if !self.store.writes() {
            return;
        }
        records::write_in_background(
            std::sync::Arc::new(backend.clone()),
            &self.entry_name(self.scopes.write, key),
            record,
            Duration::from_secs(2),
        );
    }

    /// Save the cached paths under this job's key (runner mode: mark them).
    pub fn save(&mut self, install_seconds: Option<f64>) -> Save {
        if !self.store.writes() {
            return Save::Skipped(Skip::Policy);
        }
        let (paths, missing) = crate::cached::for_save(&self.plan);
        if !missing.is_empty() || paths.is_empty() {
            // Only optional paths were declared and none exists: name them all.
            let missing: Vec<String> = if missing.is_empty() {
                self.plan.paths.iter().map(|p| p.declared.clone()).collect()
            } else {
                missing
            };
            self.report.warn(format!(
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
            self.report.warn(format!(
                "nothing saved: --path {:?} is a symbolic link (to {}), which a restore cannot put back; cache {real} instead",
                link.declared,
                to.display()
            ));
            return Save::Skipped(Skip::Link(link.declared.clone()));
        }
        // An entry of empty directories would hit and skip an install that produced
        // nothing there (a tool that put its tree somewhere else).
        if !paths.iter().any(|p| crate::cached::holds_files(&p.abs)) {
            let names: Vec<String> = paths.iter().map(|p| p.declared.clone()).collect();
            self.report.warn(format!(
                "nothing saved: {} {} no files after the command (check --path or the preset)",
                names.join(", "),
                if names.len() == 1 { "holds" } else { "hold" }
            ));
            return Save::Skipped(Skip::MissingPaths(names));
        }
        if let Store::Marker(_) = self.store {
            return match runner::write_marker(&self.plan) {
                Ok(()) => {
                    self.report.saved = true;
                    eprintln!(
                        "{} · marked; GitLab's cache: uploads the paths after the job",
                        self.head("saved", self.scopes.write)
                    );
                    Save::Saved
                }
                Err(msg) => {
                    self.trouble(msg.clone());
                    Save::Failed(msg)
                }
            };
        }
        if self.refuse_secrets {
            let found: Vec<String> = secrets::scan(&self.plan.targets())
                .iter()
                .map(|f| f.to_string())
                .collect();
            if !found.is_empty() {
                self.report.warn(format!(
                    "nothing saved (--refuse-secrets): the cached paths hold credential files: {}",
                    found.join(", ")
                ));
                return Save::Skipped(Skip::Secrets(found));
            }
        }
        let outcome = self.upload(&paths, install_seconds);
        let key = self.plan.key.clone();
        match &outcome {
            Save::Failed(why) => self.trouble(why.clone()),
            Save::Saved => {
                let r = &self.report;
                let (secs, bytes) = (r.save_seconds.unwrap_or(0.0), r.archive_bytes.unwrap_or(0));
                let rec = records::Record::new(records::Kind::Saved, install_seconds, secs, bytes);
                self.record(&key, &rec);
            }
            Save::Exists => {
                let rec = records::Record::new(records::Kind::Missed, install_seconds, 0.0, 0);
                self.record(&key, &rec);
            }
            Save::Skipped(_) => {}
        }
        outcome
    }

    /// Pack and upload the archive, then commit the manifest (first writer wins).
    fn upload(&mut self, paths: &[crate::plan::CachePath], install_seconds: Option<f64>) -> Save {
        let Store::Objects(backend) = &self.store else {
            unreachable!("runner mode saves a marker")
        };
        let scope = self.scopes.write;
        let describe = backend.describe();
        let short = self.plan.short_key().to_string();
        let name = self.plan.components.name.clone();
        let entry = self.entry_name(scope, &self.plan.key);
        let manifest_object = entry.manifest();
        let replacing = self
            .replace_unfit
            .as_ref()
            .is_some_and(|o| *o == manifest_object);
        // A replaced entry keeps what only its first save could measure: how long the
        // install took (`save --replace` runs none), so later hits still say "saved ~N s".
        let mut install_seconds = install_seconds;
        match backend.stat(&manifest_object) {
            Ok(_) if replacing || self.replace => {
                if install_seconds.is_none() {
                    install_seconds = self
                        .existing(backend, &manifest_object)
                        .and_then(|m| m.install_seconds);
                }
            }
            Ok(_) => {
                eprintln!(
                    "{} · already saved{}; not saving again (--replace overwrites it)",
                    self.head("exists", scope),
                    self.existing(backend, &manifest_object)
                        .map(|m| saved_by(&m))
                        .unwrap_or_default()
                );
                return Save::Exists;
            }
            Err(StoreError::NotFound) => {}
            Err(e) => return Save::Failed(format!("could not save {short} to {describe}: {e}")),
        }
        let start = Instant::now();
        let archive_object = entry.archive(&entry::upload_id());
        let packed = (|| -> Result<archive::PackStats> {
            let upload = backend.put(&archive_object).context("upload failed")?;
            let (upload, stats) = archive::pack(paths, upload, self.level, self.chunk_size)?;
            upload.finish().context("upload failed")?;
            Ok(stats)
        })();
        let stats = match packed {
            Ok(s) => s,
            Err(e) => return Save::Failed(format!("could not save {short} to {describe}: {e:#}")),
        };
        let mut manifest = Manifest {
            format: key::ENTRY_FORMAT,
            key: self.plan.key.clone(),
            name: name.clone(),
            scope: scope.as_str().into(),
            archive: archive_object.clone(),
            archive_size: stats.archive_bytes,
            archive_blake3: stats.digest.clone(),
            files: stats.files,
            bytes: stats.bytes,
            paths: paths.iter().map(|p| p.declared.clone()).collect(),
            components: self.plan.components.clone(),
            created: report::unix_now(),
            creator: creator(),
            install_seconds,
            signature: None,
            links: stats.links.clone(),
            namespace: Some(self.namespace.name.clone()),
            relocation: self
                .plan
                .relocatable_python
                .then(|| crate::relocate::scan(paths, &self.plan.dir)),
            chunks: stats.chunks.clone(),
        };
        if let Some(key) = &self.signing {
            manifest.signature = Some(sign::sign(key, &manifest));
            if let Some(c) = &mut manifest.chunks {
                c.signature = Some(sign::sign_chunks(key, &manifest.archive_blake3, c));
            }
        }
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let committed = if self.replace || replacing {
            self.swap_in(backend, &manifest_object, &archive_object, &body)
        } else {
            backend.create_if_absent(&manifest_object, &body)
        };
        match committed {
            Ok(()) => {}
            Err(StoreError::Exists) => {
                let _ = backend.delete(&archive_object);
                eprintln!(
                    "{} · another job saved it first; keeping theirs",
                    self.head("exists", scope)
                );
                return Save::Exists;
            }
            Err(e) => {
                let _ = backend.delete(&archive_object);
                return Save::Failed(format!("could not save {short}: {e}"));
            }
        }
        for s in &stats.skipped {
            self.report
                .warn(format!("not cached (not a file, directory or link): {s}"));
        }
        for f in &stats.credentials {
            self.report.warn(format!(
                "cached a credential file: {f}; anyone who can read the cache can read it (remove it from the cached path, or pass --refuse-secrets)"
            ));
        }
        let secs = start.elapsed().as_secs_f64();
        self.report.saved = true;
        self.report.files = Some(stats.files);
        self.report.bytes = Some(stats.bytes);
        self.report.archive_bytes = Some(stats.archive_bytes);
        self.report.save_seconds = Some(secs);
        eprintln!(
            "{} · {}, {} ({} compressed) in {} to {describe}",
            self.head(if self.replace { "replaced" } else { "saved" }, scope),
            report::files(stats.files),
            report::bytes(stats.bytes),
            report::bytes(stats.archive_bytes),
            report::secs(secs),
        );
        Save::Saved
    }

    /// Refresh: the new archive is complete, now swap the manifest (a plain overwrite, which
    /// every store makes atomic), so readers see the old entry or the new one, never a mix.
    /// The archive the old manifest named is then removed; readers that lose it mid-lookup
    /// follow the new manifest (`unpack`). Racing replacers: the last swap stands, and a
    /// replacer that finds another's manifest after its own swap removes its now unnamed
    /// archive; what a race still leaves is an unreferenced archive for `prune`.
    fn swap_in(
        &self,
        backend: &Gated,
        manifest_object: &str,
        archive_object: &str,
        body: &[u8],
    ) -> crate::backend::StoreResult<()> {
        let named = || self.existing(backend, manifest_object).map(|m| m.archive);
        let previous = named();
        backend.put_small(manifest_object, body)?;
        if let Some(old) = previous.filter(|a| a != archive_object) {
            let _ = backend.delete(&old);
        }
        if named().is_some_and(|a| a != archive_object) {
            let _ = backend.delete(archive_object);
        }
        Ok(())
    }

    /// The entry of this key already in the write scope, if it is one this job can read.
    fn existing(&self, backend: &Gated, manifest_object: &str) -> Option<Manifest> {
        let b = backend.peek(manifest_object).ok()?;
        let name = &self.plan.components.name;
        Manifest::parse(&b, &self.ns, self.scopes.write, name, &self.plan.key).ok()
    }

    /// Write the report files and give `--strict` its say on how the job ended (the exit
    /// code is `exit::code`'s).
    pub fn finish(&mut self, ending: Ending) -> Ending {
        crate::backend::retry_log::summarize();
        if let Some(args) = &self.report_args
            && let Err(e) = self
                .report
                .write_files(args.json.as_deref(), args.dotenv.as_deref())
        {
            report::warn(&format!("{e:#}"));
        }
        if let Some(path) = self.report_args.as_ref().and_then(|a| a.metrics.as_deref())
            && let Err(e) = crate::metrics::write(&self.report, path)
        {
            report::warn(&format!("{e:#}"));
        }
        if self.report.command == "ensure" && report::in_gitlab() {
            self.print_summary();
        }
        let ended = exit::under_strict(ending, self.strict && self.trouble);
        if ended == Ending::Trouble && self.strict && self.trouble {
            eprintln!("cachegate: exit 3: cache trouble under --strict (see the warning above)");
        }
        ended
    }
}

fn signing_key() -> Result<Option<ed25519_dalek::SigningKey>> {
    redact::secret_env(sign::SIGNING_KEY_VAR)
        .map(|text| sign::parse_signing_key(&text))
        .transpose()
}

fn trusted_keys() -> Result<Option<Vec<ed25519_dalek::VerifyingKey>>> {
    match std::env::var(sign::TRUSTED_KEYS_VAR) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(sign::parse_trusted_keys(&text)?)),
        _ => Ok(None),
    }
}

/// Who saved an entry: the CI job's URL, else `user@host`.
/// " by X N ago" for an entry already there: the user's own earlier run reads as that, not
/// as another job.
fn saved_by(m: &Manifest) -> String {
    let ago = report::secs(report::unix_now().saturating_sub(m.created) as f64);
    if m.creator == creator() && std::env::var(env_vars::CI_JOB_URL).is_err() {
        format!(" by an earlier run here ({}, {ago} ago)", m.creator)
    } else {
        format!(" by {} {ago} ago", m.creator)
    }
}

pub(crate) fn creator() -> String {
    if let Ok(url) = std::env::var(env_vars::CI_JOB_URL) {
        return url;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{}@{host}", user_name())
}

/// `USER`, else the name the password database gives this process's uid (a container's
/// shell often sets no `USER`), else the uid itself.
fn user_name() -> String {
    if let Ok(u) = std::env::var(env_vars::USER)
        && !u.is_empty()
    {
        return u;
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, and buf outlives the use of pwd's
    // strings, which point into it.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        if let Ok(n) = name.to_str()
            && !n.is_empty()
        {
            return n.to_string();
        }
    }
    format!("uid{uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_name_comes_from_the_uid_without_user() {
        // The test process's own uid has a name in any usable passwd (root in CI images).
        let name = user_name();
        assert!(!name.is_empty() && name != "unknown", "{name}");
    }
}
