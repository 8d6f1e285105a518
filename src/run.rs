//! The commands: look the key up, restore on a hit, run and save on a miss. Cache trouble
//! becomes a warning and a miss (exit 3 under `--strict`); only the wrapped command's own
//! status or a usage error ends a job red.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;

use crate::archive::{self, Expected, Limits, UnpackError};
use crate::backend::{Backend, StoreError};
use crate::cli::{Policy, ReportArgs, StoreArgs};
use crate::config::{self, Plan};
use crate::entry::{self, Manifest};
use crate::key::{self, shell_words};
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
        let backend = spec.open(&store.transfer.transfer())?;
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
    fn trouble(&mut self, msg: String) {
        self.trouble = true;
        self.report.warn(msg);
    }

    fn head(&self, word: &str, scope: Scope) -> String {
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
    fn recover(&mut self) {
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
            Ok(()) => match self.backend.get_archive(&m.archive, m.archive_size) {
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
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

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

/// Run the install and record its status and duration in the report.
pub(crate) fn run_install(plan: &Plan, cmd: &[String], report: &mut Report) -> (i32, f64) {
    let start = Instant::now();
    let status = run_command(plan, cmd);
    let secs = start.elapsed().as_secs_f64();
    report.command_status = Some(status);
    report.install_seconds = Some(secs);
    (status, secs)
}

/// Run the install with inherited stdio and the preset's variables; its exit status as a
/// shell would report it.
fn run_command(plan: &Plan, cmd: &[String]) -> i32 {
    let mut c = Command::new(&cmd[0]);
    c.args(&cmd[1..]).current_dir(&plan.dir);
    for (k, v, ours) in &plan.command_env {
        if *ours {
            c.env(k, v);
        }
    }
    match c.status() {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("cachegate: command not found: {}", cmd[0]);
            127
        }
        Err(e) => {
            eprintln!("cachegate: cannot run {}: {e}", cmd[0]);
            126
        }
    }
}

/// Why a lookup misses: compare this key's components with the newest entry of the same
/// cache name. Prints on stdout (it is the answer asked for); exit 0 on a hit, 1 on a miss.
pub fn explain(mut job: Job) -> i32 {
    let name = job.plan.components.name.clone();
    let short = job.plan.short_key().to_string();
    if let Lookup::Hit { scope, manifest } = job.lookup() {
        println!(
            "hit: {name} {short} is in {} ({}), saved by {}",
            job.backend.describe(),
            scope.as_str(),
            manifest.creator
        );
        return job.finish(0);
    }
    let mut newest: Option<(u64, Scope, String)> = None;
    for scope in job.scopes.read.clone() {
        match job.backend.list(&entry::entry_dir(scope, &name)) {
            Ok(objects) => {
                for o in objects.into_iter().filter(|o| o.name.ends_with(".json")) {
                    let t = o.modified.unwrap_or(0);
                    if newest.as_ref().is_none_or(|(nt, _, _)| t > *nt) {
                        newest = Some((t, scope, o.name));
                    }
                }
            }
            Err(e) => {
                job.trouble(format!("cannot list {}: {e}", job.backend.describe()));
                return job.finish(EXIT_MISS);
            }
        }
    }
    println!(
        "miss: no entry for {name} {short} in {} (read scopes: {})",
        job.backend.describe(),
        job.scopes
            .read
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some((_, scope, object)) = newest else {
        println!(
            "no entry of cache {name:?} exists at all: the cache is empty, was cleared, or was never saved"
        );
        return job.finish(EXIT_MISS);
    };
    let other = job
        .backend
        .get_small(&object)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
    match other {
        Some(m) => {
            let age = report::unix_now().saturating_sub(m.created);
            println!(
                "newest entry: {name} {} ({}), saved {} ago by {}",
                key::short(&m.key),
                scope.as_str(),
                report::secs(age as f64),
                m.creator
            );
            let diff = job.plan.components.diff(&m.components);
            if diff.is_empty() {
                println!("its components are the same; it was saved by another cachegate version");
            } else {
                println!("what differs (theirs -> yours):");
                for d in diff {
                    println!("  {d}");
                }
            }
        }
        None => println!("newest entry {object} cannot be read"),
    }
    job.finish(EXIT_MISS)
}

/// One stored entry, as `ls` and `prune` see it.
struct Listed {
    manifest: String,
    archive: String,
    scope: String,
    name: String,
    key: String,
    files: u64,
    bytes: u64,
    archive_bytes: u64,
    created: u64,
    creator: String,
}

fn list_entries(backend: &dyn Backend) -> Result<(Vec<Listed>, Vec<crate::backend::ObjectMeta>)> {
    let objects = backend.list(&format!("{}/", entry::LAYOUT_ROOT))?;
    let mut entries = Vec::new();
    for o in objects.iter().filter(|o| o.name.ends_with(".json")) {
        let Ok(bytes) = backend.get_small(&o.name) else {
            continue;
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            report::warn(&format!("{} is not a readable manifest", o.name));
            continue;
        };
        // Where a manifest lies decides its scope and name, not what it says, and it may
        // only name an archive beside it: a manifest planted in one scope must not steer
        // prune into deleting another scope's entries.
        let [_, scope, name, _] = o.name.split('/').collect::<Vec<_>>()[..] else {
            continue;
        };
        let dir = entry::entry_dir_raw(scope, name);
        let own = m
            .archive
            .strip_prefix(&dir)
            .is_some_and(|r| !r.contains('/') && r.ends_with(".tar.zst"));
        if !own {
            report::warn(&format!(
                "{} names an archive outside its entry ({:?}); only the manifest is managed",
                o.name, m.archive
            ));
        }
        entries.push(Listed {
            manifest: o.name.clone(),
            archive: if own { m.archive } else { String::new() },
            scope: scope.to_string(),
            name: name.to_string(),
            key: m.key,
            files: m.files,
            bytes: m.bytes,
            archive_bytes: m.archive_size,
            created: m.created,
            creator: m.creator,
        });
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.created));
    Ok((entries, objects))
}

fn age(created: u64) -> String {
    let s = report::unix_now().saturating_sub(created);
    match s {
        0..3600 => format!("{}m", s / 60),
        3600..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub fn ls(backend: &dyn Backend, json: bool) -> Result<i32> {
    let (entries, _) = list_entries(backend)?;
    if json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "scope": e.scope, "name": e.name, "key": e.key, "files": e.files,
                    "bytes": e.bytes, "archive_bytes": e.archive_bytes, "created": e.created,
                    "creator": e.creator, "manifest": e.manifest, "archive": e.archive,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    println!(
        "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6}  creator",
        "scope", "name", "key", "files", "stored", "age"
    );
    for e in &entries {
        println!(
            "{:<12} {:<16} {:<9} {:>9} {:>9} {:>6}  {}",
            e.scope,
            e.name,
            key::short(&e.key),
            report::count(e.files),
            report::bytes(e.archive_bytes),
            age(e.created),
            e.creator
        );
    }
    let total: u64 = entries.iter().map(|e| e.archive_bytes).sum();
    eprintln!(
        "cachegate: {} entries, {} in {}",
        entries.len(),
        report::bytes(total),
        backend.describe()
    );
    Ok(0)
}

pub struct PruneRules {
    pub older_than_days: Option<u64>,
    pub keep: Option<usize>,
    pub max_size: Option<u64>,
    /// An unfinished upload older than this is abandoned (`--abandoned-after`).
    pub abandoned_after_secs: u64,
    pub dry_run: bool,
}

/// Delete entries by age, per-name count and total size (oldest first), plus archives
/// that no manifest references and that are old enough to be abandoned uploads.
pub fn prune(backend: &dyn Backend, rules: &PruneRules) -> Result<i32> {
    let (entries, objects) = list_entries(backend)?;
    let now = report::unix_now();
    let mut doomed: Vec<&Listed> = Vec::new();
    let mut per_name: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut kept_size = 0u64;
    // Newest first: an entry survives only if every rule lets it.
    for e in &entries {
        let n = per_name.entry((&e.scope, &e.name)).or_default();
        *n += 1;
        let too_old = rules
            .older_than_days
            .is_some_and(|d| now.saturating_sub(e.created) > d * 86_400);
        let too_many = rules.keep.is_some_and(|k| *n > k);
        let too_big = rules
            .max_size
            .is_some_and(|m| kept_size + e.archive_bytes > m);
        if too_old || too_many || too_big {
            doomed.push(e);
        } else {
            kept_size += e.archive_bytes;
        }
    }
    let referenced: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.archive.as_str()).collect();
    let orphans: Vec<&crate::backend::ObjectMeta> = objects
        .iter()
        .filter(|o| o.name.ends_with(".tar.zst") && !referenced.contains(o.name.as_str()))
        .filter(|o| {
            o.modified
                .is_some_and(|m| now.saturating_sub(m) > rules.abandoned_after_secs)
        })
        .collect();
    // An upload still running is younger than the bound, so only dead ones are aborted.
    let incomplete: Vec<crate::backend::IncompleteUpload> = backend
        .incomplete_uploads(&format!("{}/", entry::LAYOUT_ROOT))?
        .into_iter()
        .filter(|u| {
            u.initiated
                .is_some_and(|t| now.saturating_sub(t) > rules.abandoned_after_secs)
        })
        .collect();
    let verb = if rules.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let mut freed = 0;
    for e in &doomed {
        if !rules.dry_run {
            // Manifest first: the entry disappears atomically for readers.
            backend.delete(&e.manifest)?;
            if !e.archive.is_empty() {
                backend.delete(&e.archive)?;
            }
        }
        freed += e.archive_bytes;
        println!(
            "{verb} {} {} {} ({}, {} old)",
            e.scope,
            e.name,
            key::short(&e.key),
            report::bytes(e.archive_bytes),
            age(e.created)
        );
    }
    for o in &orphans {
        if !rules.dry_run {
            backend.delete(&o.name)?;
        }
        freed += o.size;
        println!(
            "{verb} abandoned upload {} ({})",
            o.name,
            report::bytes(o.size)
        );
    }
    let aborted = if rules.dry_run {
        "would abort"
    } else {
        "aborted"
    };
    for u in &incomplete {
        if !rules.dry_run {
            backend.abort_upload(u)?;
        }
        println!(
            "{aborted} incomplete upload {} ({} old)",
            u.name,
            age(u.initiated.unwrap_or(now))
        );
    }
    eprintln!(
        "cachegate: {verb} {} entries and {} abandoned uploads ({} incomplete), {} freed; {} entries, {} kept",
        doomed.len(),
        orphans.len() + incomplete.len(),
        incomplete.len(),
        report::bytes(freed),
        entries.len() - doomed.len(),
        report::bytes(kept_size)
    );
    Ok(0)
}
