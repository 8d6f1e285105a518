//! One cache job: the store, the scopes and the plan, looked up, restored and saved. Cache
//! trouble becomes a warning and a miss (exit 3 under `--strict`); only the wrapped command's
//! own status or a usage error ends a job red. The commands that drive a job are in
//! `ensure.rs`; `explain.rs` reads through one too.

use std::time::Instant;

use anyhow::Result;

use crate::archive::{self, Expected, Limits, UnpackError};
use crate::backend::{Backend, StoreError};
use crate::cli::{Policy, ReportArgs, StoreArgs};
use crate::config;
use crate::entry::{self, Manifest};
use crate::key;
use crate::plan::Plan;
use crate::report::{self, Report};
use crate::scope::{Scope, Scopes};
use crate::{redact, secrets, sign};

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
    pub backend: Box<dyn Backend>,
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
        let mut backend = spec.open(&store.transfer.transfer())?;
        if let Some(dir) = &store.local_tier {
            backend = crate::backend::tier::open(dir.clone(), backend, store.local_tier_max_size);
        }
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
            ..Report::default()
        };
        if let Some(w) = widened {
            report.warn(w);
        }
        let job = Job {
            plan,
            backend,
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
        eprintln!("cachegate: {line}");
        if report::in_gitlab() || self.verbose > 0 {
            let mut lines: Vec<String> = p.components.explain().lines().map(String::from).collect();
            lines.push(format!("backend  {}", self.backend.describe()));
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

    pub fn lookup(&mut self) -> Lookup {
        if !self.policy.pulls() {
            return Lookup::Miss;
        }
        let name = self.plan.components.name.clone();
        for scope in self.scopes.read.clone() {
            let object = entry::manifest_name(scope, &name, &self.plan.key);
            match self.backend.get_small(&object) {
                Ok(bytes) => match Manifest::parse(&bytes, scope, &name, &self.plan.key) {
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
                },
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
    fn untrusted(&self, scope: Scope, m: &Manifest) -> Option<String> {
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

    /// Restore a hit. `false` means it did not work out and the job goes on as a miss.
    pub fn restore(&mut self, scope: Scope, m: &Manifest) -> bool {
        let start = Instant::now();
        let targets = self.plan.targets();
        let expected = Expected {
            digest: m.archive_blake3.clone(),
            size: m.archive_size,
        };
        let result = match self.limits.check_archive_size(m.archive_size) {
            Err(e) => Err(e),
            Ok(()) => match self
                .backend
                .get_archive(&m.archive, m.archive_size, &m.archive_blake3)
            {
                Ok(reader) => archive::unpack(reader, &targets, &expected, self.limits),
                Err(StoreError::NotFound) => {
                    Err(UnpackError::Corrupt("its archive is missing".into()))
                }
                Err(e) => Err(UnpackError::Transfer(e.into())),
            },
        };
        match result {
            Ok(stats) => {
                let secs = start.elapsed().as_secs_f64();
                eprintln!(
                    "{} · {} files, {} in {} from {}",
                    self.head("hit", scope),
                    report::count(stats.files),
                    report::bytes(stats.bytes),
                    report::secs(secs),
                    self.backend.describe()
                );
                let r = &mut self.report;
                r.result = "hit".into();
                r.hit = true;
                r.scope = scope.as_str().into();
                r.files = Some(stats.files);
                r.bytes = Some(stats.bytes);
                r.archive_bytes = Some(stats.archive_bytes);
                r.restore_seconds = Some(secs);
                true
            }
            Err(e) => {
                let object = entry::manifest_name(scope, &m.name, &m.key);
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
        let manifest_object = entry::manifest_name(scope, &name, &self.plan.key);
        match self.backend.stat(&manifest_object) {
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
        let archive_object = entry::archive_name(scope, &name, &self.plan.key, &entry::upload_id());
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
        };
        if let Some(key) = &self.signing {
            manifest.signature = Some(sign::sign(key, &manifest));
        }
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
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
        let secs = start.elapsed().as_secs_f64();
        self.report.saved = true;
        self.report.files = Some(stats.files);
        self.report.bytes = Some(stats.bytes);
        self.report.archive_bytes = Some(stats.archive_bytes);
        self.report.save_seconds = Some(secs);
        eprintln!(
            "{} · {} files, {} ({} compressed) in {} to {}",
            self.head("saved", scope),
            report::count(stats.files),
            report::bytes(stats.bytes),
            report::bytes(stats.archive_bytes),
            report::secs(secs),
            self.backend.describe()
        );
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

fn creator() -> String {
    if let Ok(url) = std::env::var(crate::env_vars::CI_JOB_URL) {
        return url;
    }
    let user = std::env::var(crate::env_vars::USER).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}
