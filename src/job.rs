//! One cache job: the store, the scopes and the plan, looked up, restored and saved. Cache
//! trouble becomes a warning and a miss (exit 3 under `--strict`); only the wrapped command's
//! own status or a usage error ends a job red. The commands that drive a job are in
//! `ensure.rs`; `explain.rs` reads through one too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::archive::{self, Expected, Limits, UnpackError};
use crate::backend::{Backend, StoreError};
use crate::cli::{Policy, ReportArgs, StoreArgs};
use crate::config;
use crate::entry::{self, Manifest};
use crate::key;
use crate::namespace::Namespace;
use crate::plan::Plan;
use crate::report::{self, Report};
use crate::scope::{Scope, Scopes};
use crate::{redact, secrets, sign, usage};

pub const EXIT_MISS: i32 = 1;
pub const EXIT_TROUBLE: i32 = 3;

pub enum Lookup {
    Hit {
        scope: Scope,
        manifest: Box<Manifest>,
    },
    Miss,
}

pub struct Job {
    pub plan: Plan,
    /// Shared with the threads that renew a lease or record a last use.
    pub backend: Arc<dyn Backend>,
    /// The project whose entries this job reads and writes.
    pub namespace: Namespace,
    /// `namespace` as the path segment the layout uses.
    pub ns: String,
    pub scopes: Scopes,
    pub policy: Policy,
    pub strict: bool,
    pub level: i32,
    pub verbose: u8,
    pub report: Report,
    pub report_args: Option<ReportArgs>,
    /// Set when cache trouble happened, for `--strict`.
    pub trouble: bool,
    pub limits: Limits,
    /// Signs the manifests this job writes (`CACHEGATE_SIGNING_KEY`).
    pub signing: Option<ed25519_dalek::SigningKey>,
    /// When set, entries this job must trust need a signature by one of these.
    pub trusted: Option<Vec<ed25519_dalek::VerifyingKey>>,
    pub refuse_secrets: bool,
    /// The store failed during the lookup of the scope this job writes (down, refusing
    /// credentials, erroring): a save would only repeat the failure and its timeouts.
    pub store_failed: bool,
    /// `--policy push` or `save --replace`: an existing entry of this key is replaced.
    pub replace: bool,
    /// Single-flight: how long this job waited for another's install, and for whom.
    pub waited: Option<(Duration, String)>,
}

impl Job {
    pub fn new(
        command: &'static str,
        plan: Plan,
        store: &StoreArgs,
        report_args: Option<ReportArgs>,
        verbose: u8,
    ) -> Result<Job> {
        let spec = config::backend_spec(store.backend.as_deref())?;
        let backend: Arc<dyn Backend> = Arc::from(spec.open(&store.transfer.transfer())?);
        let namespace = Namespace::resolve(store.namespace.as_deref(), &plan.dir)?;
        let (scopes, widened) = Scopes::resolve(store.trust.scope);
        let signing = match redact::secret_env(sign::SIGNING_KEY_VAR) {
            Some(text) => Some(sign::parse_signing_key(&text)?),
            None => None,
        };
        let trusted = match std::env::var(sign::TRUSTED_KEYS_VAR) {
            Ok(text) if !text.trim().is_empty() => Some(sign::parse_trusted_keys(&text)?),
            _ => None,
        };
        let mut report = Report {
            command,
            key: plan.key.clone(),
            name: plan.components.name.clone(),
            scope: scopes.write.as_str().to_string(),
            backend: backend.describe(),
            components: Some(plan.components.clone()),
            namespace: namespace.name.clone(),
            ..Report::default()
        };
        if let Some(w) = widened {
            report.warn(w);
        }
        let job = Job {
            plan,
            backend,
            ns: namespace.segment(),
            namespace,
            scopes,
            policy: store.policy,
            strict: store.strict,
            level: store.compression_level,
            verbose,
            report,
            report_args,
            trouble: false,
            limits: store.limits.limits(),
            signing,
            trusted,
            refuse_secrets: store.trust.refuse_secrets,
            store_failed: false,
            replace: store.policy == Policy::Push,
            waited: None,
        };
        job.log_plan();
        Ok(job)
    }

    fn log_plan(&self) {
        let p = &self.plan;
        let paths: Vec<&str> = p.paths.iter().map(|c| c.declared.as_str()).collect();
        let mut line = if p.presets.is_empty() {
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
        line.push_str(&format!("; project {}", self.namespace.name));
        eprintln!("cachegate: {line}");
        if report::in_gitlab() || self.verbose > 0 {
            let mut lines: Vec<String> = p.components.explain().lines().map(String::from).collect();
            lines.push(format!("backend  {}", self.backend.describe()));
            lines.push(format!(
                "project  {} (from {})",
                self.namespace.name, self.namespace.source
            ));
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
            report::section("key", &format!("key {}", p.short_key()), &lines);
        }
    }

    /// Cache trouble: a warning, remembered for `--strict`.
    pub(crate) fn trouble(&mut self, msg: String) {
        self.trouble = true;
        self.report.warn(msg);
    }

    pub(crate) fn head(&self, word: &str, scope: Scope) -> String {
        format!(
            "cachegate: {word} {} {} ({})",
            self.plan.components.name,
            self.plan.short_key(),
            scope.as_str()
        )
    }

    /// Where this job's entries of its cache name live in `scope`.
    pub(crate) fn entry_dir(&self, scope: Scope) -> String {
        entry::entry_dir(&self.ns, scope, &self.plan.components.name)
    }

    /// What the objects of this job's key in `scope` start with (lease, last use).
    pub(crate) fn entry_base(&self, scope: Scope) -> String {
        entry::entry_base(&self.ns, scope, &self.plan.components.name, &self.plan.key)
    }

    pub(crate) fn manifest_object(&self, scope: Scope, key: &str) -> String {
        entry::manifest_name(&self.ns, scope, &self.plan.components.name, key)
    }

    pub fn lookup(&mut self) -> Lookup {
        if !self.policy.pulls() {
            return Lookup::Miss;
        }
        let name = self.plan.components.name.clone();
        for scope in self.scopes.read.clone() {
            let object = self.manifest_object(scope, &self.plan.key);
            match self.backend.get_small(&object) {
                Ok(bytes) => {
                    match Manifest::parse(&bytes, &self.ns, scope, &name, &self.plan.key) {
                        Ok(m) => match self.untrusted(scope, &m) {
                            None => {
                                return Lookup::Hit {
                                    scope,
                                    manifest: Box::new(m),
                                };
                            }
                            Some(why) => {
                                self.trouble(format!(
                                "not restoring the {} entry {object}: {why}; treating it as a miss",
                                scope.as_str()
                            ));
                                // Left in place it would block this job's signed save forever.
                                self.discard(scope, &object, None);
                            }
                        },
                        Err(e) => {
                            self.trouble(format!(
                                "ignoring the {} entry {object}: {e:#}",
                                scope.as_str()
                            ));
                            self.discard(scope, &object, None);
                        }
                    }
                }
                Err(StoreError::NotFound) => {}
                Err(e) => {
                    // Failing on the scope this job writes means the save would fail too; a
                    // scope it may only read says nothing about writing.
                    self.store_failed = scope == self.scopes.write;
                    self.trouble(format!(
                        "cannot look up {} in {}: {e}; treating it as a miss",
                        self.plan.short_key(),
                        self.backend.describe()
                    ));
                    return Lookup::Miss;
                }
            }
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
    /// job may write.
    fn discard(&mut self, scope: Scope, manifest: &str, archive: Option<&str>) {
        if scope != self.scopes.write || !self.policy.pushes() {
            return;
        }
        let _ = self.backend.delete(manifest);
        if let Some(a) = archive {
            let _ = self.backend.delete(a);
        }
    }

    /// Undo what an interrupted restore left beside the cached paths, before looking at them.
    pub(crate) fn recover(&mut self) {
        for t in archive::recover_interrupted(&self.plan.targets()) {
            self.report.warn(format!(
                "an earlier restore was interrupted midway; put {} back as it was",
                t.display()
            ));
        }
    }

    /// Download and unpack an entry into the cached paths (verified, swapped in whole). An
    /// archive gone between reading the manifest and fetching it is usually a refresh that
    /// swapped in a new one: read the manifest again and follow it, a few times at most.
    pub(crate) fn unpack(
        &mut self,
        scope: Scope,
        m: &Manifest,
    ) -> Result<archive::UnpackStats, UnpackError> {
        let targets = self.plan.targets();
        let mut current = m.clone();
        for _ in 0..3 {
            self.limits.check_archive_size(current.archive_size)?;
            let expected = Expected {
                digest: current.archive_blake3.clone(),
                size: current.archive_size,
            };
            match self.backend.get(&current.archive) {
                Ok(reader) => return archive::unpack(reader, &targets, &expected, self.limits),
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(UnpackError::Transfer(e.into())),
            }
            let object = self.manifest_object(scope, &current.key);
            let replaced = self
                .backend
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

    /// Restore a hit. `false` means it did not work out and the job goes on as a miss.
    pub fn restore(&mut self, scope: Scope, m: &Manifest) -> bool {
        let start = Instant::now();
        match self.unpack(scope, m) {
            Ok(stats) => {
                let secs = start.elapsed().as_secs_f64();
                let mut line = format!(
                    "{} · {} files, {} in {} from {}",
                    self.head("hit", scope),
                    report::count(stats.files),
                    report::bytes(stats.bytes),
                    report::secs(secs),
                    self.backend.describe()
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
                r.result = "hit".into();
                r.hit = true;
                r.scope = scope.as_str().into();
                r.files = Some(stats.files);
                r.bytes = Some(stats.bytes);
                r.archive_bytes = Some(stats.archive_bytes);
                r.restore_seconds = Some(secs);
                self.record_use(scope, &m.key);
                true
            }
            Err(e) => {
                let object = self.manifest_object(scope, &m.key);
                let replace = matches!(e, UnpackError::Corrupt(_))
                    && scope == self.scopes.write
                    && self.policy.pushes();
                self.trouble(format!(
                    "could not restore {} from {}: {e}; {}",
                    self.plan.short_key(),
                    self.backend.describe(),
                    if replace {
                        "the entry is removed and will be replaced"
                    } else {
                        "treating it as a miss"
                    }
                ));
                if replace {
                    self.discard(scope, &object, Some(&m.archive));
                }
                false
            }
        }
    }

    /// Note that the entry was used, for `prune --unused-for` and LRU eviction: at most one
    /// small write a day, bounded in time, never an error. Only in the scope this job may
    /// write, and never under `--policy pull` (read-only means no writes at all).
    fn record_use(&self, scope: Scope, key: &str) {
        if scope != self.scopes.write || !self.policy.pushes() {
            return;
        }
        let name = usage::object(&entry::entry_base(
            &self.ns,
            scope,
            &self.plan.components.name,
            key,
        ));
        usage::record_in_background(self.backend.clone(), name, Duration::from_secs(2));
    }

    /// Archive the cached paths and upload them. Returns whether an entry now exists.
    pub fn save(&mut self, install_seconds: Option<f64>) -> bool {
        let missing = self.plan.missing_paths();
        if !missing.is_empty() {
            self.report.result = "skipped".into();
            self.report.warn(format!(
                "nothing saved: {} {} not exist after the command (check --path or the preset)",
                missing.join(", "),
                if missing.len() == 1 { "does" } else { "do" }
            ));
            return false;
        }
        if self.store_failed {
            self.report.result = "skipped".into();
            eprintln!(
                "{} · not saved: the store failed during the lookup",
                self.head("miss", self.scopes.write)
            );
            return false;
        }
        if self.refuse_secrets {
            let found = secrets::scan(&self.plan.targets());
            if !found.is_empty() {
                self.report.result = "skipped".into();
                self.report.warn(format!(
                    "nothing saved (--refuse-secrets): the cached paths hold credential files: {}",
                    found
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                return false;
            }
        }
        let scope = self.scopes.write;
        let name = self.plan.components.name.clone();
        let manifest_object = self.manifest_object(scope, &self.plan.key);
        match self.backend.stat(&manifest_object) {
            Ok(_) if self.replace => {}
            Ok(_) => {
                eprintln!(
                    "{} · already saved by another job; not saving again",
                    self.head("exists", scope)
                );
                self.report.result = "exists".into();
                return true;
            }
            Err(StoreError::NotFound) => {}
            Err(e) => {
                self.trouble(format!(
                    "could not save {} to {}: {e}",
                    self.plan.short_key(),
                    self.backend.describe()
                ));
                return false;
            }
        }
        let start = Instant::now();
        let archive_object =
            entry::archive_name(&self.ns, scope, &name, &self.plan.key, &entry::upload_id());
        let outcome = (|| -> Result<archive::PackStats> {
            let upload = self.backend.put(&archive_object)?;
            let (upload, stats) = archive::pack(&self.plan.paths, upload, self.level)?;
            upload.finish()?;
            Ok(stats)
        })();
        let stats = match outcome {
            Ok(s) => s,
            Err(e) => {
                self.trouble(format!(
                    "could not save {} to {}: {e:#}",
                    self.plan.short_key(),
                    self.backend.describe()
                ));
                return false;
            }
        };
        for s in &stats.skipped {
            self.report
                .warn(format!("not cached (not a file, directory or link): {s}"));
        }
        for f in &stats.credentials {
            self.report.warn(format!(
                "cached a credential file: {f}; anyone who can read the cache can read it (remove it from the cached path, or pass --refuse-secrets)"
            ));
        }
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
            paths: self.plan.paths.iter().map(|p| p.declared.clone()).collect(),
            components: self.plan.components.clone(),
            created: report::unix_now(),
            creator: creator(),
            install_seconds,
            signature: None,
            namespace: Some(self.namespace.name.clone()),
        };
        if let Some(key) = &self.signing {
            manifest.signature = Some(sign::sign(key, &manifest));
        }
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        if self.replace {
            return self.swap_in(
                scope,
                &manifest_object,
                &archive_object,
                &body,
                &stats,
                start,
            );
        }
        match self.backend.create_if_absent(&manifest_object, &body) {
            Ok(()) => {}
            Err(StoreError::Exists) => {
                let _ = self.backend.delete(&archive_object);
                eprintln!(
                    "{} · another job saved it first; keeping theirs",
                    self.head("exists", scope)
                );
                self.report.result = "exists".into();
                return true;
            }
            Err(e) => {
                let _ = self.backend.delete(&archive_object);
                self.trouble(format!("could not save {}: {e}", self.plan.short_key()));
                return false;
            }
        }
        self.saved("saved", scope, &stats, start);
        true
    }

    fn saved(&mut self, word: &str, scope: Scope, stats: &archive::PackStats, start: Instant) {
        let secs = start.elapsed().as_secs_f64();
        self.report.saved = true;
        self.report.files = Some(stats.files);
        self.report.bytes = Some(stats.bytes);
        self.report.archive_bytes = Some(stats.archive_bytes);
        self.report.save_seconds = Some(secs);
        eprintln!(
            "{} · {} files, {} ({} compressed) in {} to {}",
            self.head(word, scope),
            report::count(stats.files),
            report::bytes(stats.bytes),
            report::bytes(stats.archive_bytes),
            report::secs(secs),
            self.backend.describe()
        );
    }

    /// Refresh: the new archive is complete, now swap the manifest (a plain overwrite, which
    /// every store makes atomic), so readers see the old entry or the new one, never a mix.
    /// The archive the old manifest named is then removed; a racing replacer may still be
    /// reading or swapping, so whatever is left over is an unreferenced archive for
    /// `prune`. Readers that lose the old archive mid-lookup follow the new manifest.
    fn swap_in(
        &mut self,
        scope: Scope,
        manifest_object: &str,
        archive_object: &str,
        body: &[u8],
        stats: &archive::PackStats,
        start: Instant,
    ) -> bool {
        let name = self.plan.components.name.clone();
        let previous = self.backend.get_small(manifest_object).ok().and_then(|b| {
            Manifest::parse(&b, &self.ns, scope, &name, &self.plan.key)
                .ok()
                .map(|m| m.archive)
        });
        if let Err(e) = self.backend.put_small(manifest_object, body) {
            let _ = self.backend.delete(archive_object);
            self.trouble(format!("could not save {}: {e}", self.plan.short_key()));
            return false;
        }
        if let Some(old) = previous.filter(|a| a != archive_object) {
            let _ = self.backend.delete(&old);
        }
        // A replacer that swapped after us made our archive unreachable: nobody will name
        // it again, so it goes now rather than waiting for prune.
        let now_named = self.backend.get_small(manifest_object).ok().and_then(|b| {
            Manifest::parse(&b, &self.ns, scope, &name, &self.plan.key)
                .ok()
                .map(|m| m.archive)
        });
        if now_named.as_deref().is_some_and(|a| a != archive_object) {
            let _ = self.backend.delete(archive_object);
        }
        self.saved("replaced", scope, stats, start);
        true
    }

    /// Write the report files and pick the exit code: `code` unless `--strict` and trouble.
    pub fn finish(&mut self, code: i32) -> i32 {
        finish(
            &self.report,
            self.report_args.as_ref(),
            self.strict && self.trouble,
            code,
        )
    }
}

/// Write the report files and pick the exit code: `code`, unless `strict_trouble` (cache
/// trouble under `--strict`) and `code` would hide it.
pub fn finish(report: &Report, args: Option<&ReportArgs>, strict_trouble: bool, code: i32) -> i32 {
    if let Some(args) = args
        && let Err(e) = report.write_files(args.json.as_deref(), args.dotenv.as_deref())
    {
        report::warn(&format!("{e:#}"));
    }
    let masked = code == 0 || (code == EXIT_MISS && report.command != "ensure");
    if strict_trouble && masked {
        return EXIT_TROUBLE;
    }
    code
}

pub(crate) fn creator() -> String {
    if let Ok(url) = std::env::var(crate::env_vars::CI_JOB_URL) {
        return url;
    }
    let user = std::env::var(crate::env_vars::USER).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}
