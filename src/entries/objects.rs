//! The object protocol: per key, an archive and then a manifest naming it (first writer
//! wins), in the scopes a job may read and write, signed and verified when keys are set.
//! It works over the policy-gated store, so nothing here checks the policy again.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Entries, Hit, Log, Lookup, Save, Settings, Skip, head};
use crate::archive::{self, Expected, UnpackError, UnpackStats};
use crate::backend::{Backend, StoreError, StoreResult, ranged};
use crate::entry::{self, EntryName, Manifest, ObjectName};
use crate::exit::Ending;
use crate::paths::CachePath;
use crate::plan::Plan;
use crate::scope::{Scope, Scopes};
use crate::store::Gated;
use crate::{echo, env_vars, key, records, redact, report, secrets, sign};

pub struct Objects {
    store: Gated,
    s: Settings,
    /// Signs the manifests this job writes (`CACHEGATE_SIGNING_KEY`).
    signing: Option<ed25519_dalek::SigningKey>,
    /// When set, entries this job must trust need a signature by one of these.
    trusted: Option<Vec<ed25519_dalek::VerifyingKey>>,
    /// The manifest found for this key whose entry did not fit this machine: this job's
    /// save replaces it (as `--policy push` does).
    replace_unfit: Option<ObjectName>,
}

impl Objects {
    /// The entries of `settings` in `store`, with the keys from the environment.
    pub fn new(store: Gated, settings: Settings) -> Result<Objects> {
        Ok(Objects {
            store,
            s: settings,
            signing: signing_key()?,
            trusted: trusted_keys()?,
            replace_unfit: None,
        })
    }

    /// The gated store itself, for single-flight's lease.
    pub fn store(&self) -> &Gated {
        &self.store
    }

    pub fn scopes(&self) -> &Scopes {
        &self.s.scopes
    }

    /// The project's path segment in object names.
    pub fn ns(&self) -> &str {
        &self.s.ns
    }

    /// The project's name, for people.
    pub fn project(&self) -> &str {
        &self.s.project
    }

    /// The entry of `key` under this job's project and cache name, in `scope`.
    pub fn entry_name(&self, scope: Scope, key: &str) -> EntryName {
        EntryName::new(&self.s.ns, scope, &self.s.name, key)
    }

    /// Where this job's entries of its cache name live in `scope`.
    pub fn entry_dir(&self, scope: Scope) -> String {
        self.entry_name(scope, "").dir()
    }

    fn manifest_object(&self, scope: Scope, key: &str) -> ObjectName {
        self.entry_name(scope, key).manifest()
    }

    /// Why an entry must not be restored when trusted keys are set: protected entries, and
    /// anything a protected job restores, need a signature by a trusted key.
    pub fn untrusted(&self, scope: Scope, m: &Manifest) -> Option<String> {
        let trusted = self.trusted.as_ref()?;
        if scope != Scope::Protected && !self.s.scopes.protected_job {
            return None;
        }
        sign::verify(trusted, m).err().map(|e| format!("{e:#}"))
    }

    /// Remove a broken entry so the next save can replace it, but only in the scope this
    /// job writes (the store refuses under `--policy pull`). Whether it is gone.
    fn discard(&self, scope: Scope, manifest: &ObjectName, archive: Option<&ObjectName>) -> bool {
        if scope != self.s.scopes.write || self.store.delete(manifest).is_err() {
            return false;
        }
        if let Some(a) = archive {
            let _ = self.store.delete(a);
        }
        true
    }

    /// What the lookup in `scope` makes of a manifest read: the hit, or why not.
    fn judge(
        &self,
        plan: &Plan,
        log: &Log,
        scope: Scope,
        object: &ObjectName,
        bytes: &[u8],
    ) -> Result<Manifest, String> {
        match Manifest::parse(bytes, &self.s.ns, scope, &self.s.name, &plan.key) {
            Ok(m) if m.files == 0 => Err(format!(
                "not restoring the {} entry {object}: it holds no files, so the install did not produce what it caches; treating it as a miss",
                scope.as_str()
            )),
            Ok(m) => match self.untrusted(scope, &m) {
                None => Ok(m),
                Some(why) => Err(format!(
                    "not restoring the {} entry {object}: {why}; {}",
                    scope.as_str(),
                    log.as_miss()
                )),
            },
            Err(e) => Err(format!(
                "ignoring the {} entry {object}: {e:#}; {}",
                scope.as_str(),
                log.as_miss()
            )),
        }
    }

    /// Download and unpack an entry into the cached paths (verified, swapped in whole). An
    /// archive gone between reading the manifest and fetching it is usually a refresh that
    /// swapped in a new one: read the manifest again and follow it, a few times at most.
    pub fn unpack(
        &self,
        plan: &Plan,
        scope: Scope,
        m: &Manifest,
    ) -> Result<UnpackStats, UnpackError> {
        let mut current = m.clone();
        for _ in 0..3 {
            // The manifest's paths (a glob's matches), each one the key declares.
            let targets: Vec<std::path::PathBuf> =
                crate::cached::for_restore(&plan.dir, &plan.paths, &current.paths)
                    .map_err(UnpackError::Corrupt)?
                    .into_iter()
                    .map(|c| c.abs)
                    .collect();
            untouchable(plan, &targets)?;
            self.s.limits.check_archive_size(current.archive_size)?;
            // `Manifest::parse` accepted only a manifest that names its own archive.
            let Some(archive_object) = current.archive.known() else {
                break;
            };
            match self.fetch(archive_object, &current) {
                Ok(reader) => return self.unpack_read(plan, &current, &targets, reader),
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(UnpackError::Transfer(e.into())),
            }
            let object = self.manifest_object(scope, &current.key);
            let replaced = self
                .store
                .get_small(&object)
                .ok()
                .and_then(|b| {
                    Manifest::parse(&b, &self.s.ns, scope, &current.name, &current.key).ok()
                })
                .filter(|n| n.archive != current.archive && self.untrusted(scope, n).is_none());
            match replaced {
                Some(n) => current = n,
                None => break,
            }
        }
        Err(UnpackError::Corrupt("its archive is missing".into()))
    }

    fn fetch(
        &self,
        archive: &ObjectName,
        m: &Manifest,
    ) -> StoreResult<Box<dyn std::io::Read + Send>> {
        self.store.get_archive(
            archive,
            m.archive_size,
            &m.archive_blake3,
            m.chunks.as_ref(),
        )
    }

    /// Unpack what `reader` brings; an archive damaged in transit is read once more.
    fn unpack_read(
        &self,
        plan: &Plan,
        current: &Manifest,
        targets: &[std::path::PathBuf],
        reader: Box<dyn std::io::Read + Send>,
    ) -> Result<UnpackStats, UnpackError> {
        let expected = Expected {
            digest: current.archive_blake3.clone(),
            size: current.archive_size,
        };
        let fits = |staged: &[std::path::PathBuf]| {
            crate::fit::check(staged, targets, &current.paths, &current.links)?;
            crate::relocate::apply(current.relocation.as_ref(), staged, &plan.dir)
        };
        let unpack =
            |reader| archive::unpack_checked(reader, targets, &expected, self.s.limits, &fits);
        let why = match unpack(reader) {
            // A range checked against its digest was fetched again already.
            Err(UnpackError::Corrupt(why)) if !why.ends_with(ranged::READ_TWICE) => why,
            done => return done,
        };
        // A byte flipped in transit looks just like a damaged entry: read it again on a new
        // connection before judging the stored one.
        eprintln!(
            "cachegate: the archive of {} arrived damaged ({}); reading it again on a new connection",
            plan.short_key(),
            echo::value(&why)
        );
        self.store.reconnect();
        let archive = current
            .archive
            .known()
            .ok_or_else(|| UnpackError::Corrupt("its archive is missing".into()))?;
        let again = self
            .fetch(archive, current)
            .map_err(|e| UnpackError::Transfer(e.into()))?;
        match unpack(again) {
            Err(UnpackError::Corrupt(twice)) if !twice.ends_with(ranged::READ_TWICE) => Err(
                UnpackError::Corrupt(format!("{twice} {}", ranged::READ_TWICE)),
            ),
            done => done,
        }
    }

    /// A restore that worked: say so, fill the report, record the hit.
    fn restored(
        &self,
        plan: &Plan,
        log: &mut Log,
        scope: Scope,
        m: &Manifest,
        stats: &UnpackStats,
        secs: f64,
    ) {
        // After the restore: a local tier says whether the archive came from disk.
        let mut line = format!(
            "{} · {}, {} in {} from {}",
            head(plan, "hit", scope.as_str()),
            report::files(stats.files),
            report::bytes(stats.bytes),
            report::secs(secs),
            self.store.describe(),
        );
        if let Some(install) = m.install_seconds {
            line.push_str(&format!(" · {}", report::saved_phrase(install, secs)));
            log.report.entry_install_seconds = Some(install);
            log.report.saved_seconds = Some(install - secs);
        }
        // Single-flight: the job waited for another's save, which this restores.
        if let (Some(leader), Some(waited)) = (&log.report.waited_for, log.report.waited_seconds) {
            line.push_str(&format!(" · waited {} for {leader}", report::secs(waited)));
        }
        eprintln!("{line}");
        let r = &mut log.report;
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
    }

    /// A restore that did not work out: why, and what becomes of the entry.
    fn not_restored(
        &mut self,
        plan: &Plan,
        log: &mut Log,
        scope: Scope,
        m: &Manifest,
        e: UnpackError,
    ) {
        let short = plan.short_key();
        match e {
            UnpackError::Tracked(files) => log.warn(format!(
                "not restoring {short}: the repository tracks files in the cached paths ({files}), which a restore would replace; running the install instead"
            )),
            UnpackError::Foreign(paths) => log.warn(format!(
                "not restoring {short}: {paths} already exists and cachegate did not create it, so a restore would replace someone else's files; running the install instead (remove it once to let cachegate restore it)"
            )),
            UnpackError::Unfit(why) => {
                let object = self.manifest_object(scope, &m.key);
                log.warn(format!(
                    "not restoring {short}: the entry does not fit this machine: {why}; running the install (the entry stays for the machines it fits)"
                ));
                // The key could not tell this machine from the one that saved the entry,
                // so this machine's verified save must win for its next run.
                if scope == self.s.scopes.write {
                    self.replace_unfit = Some(object);
                }
            }
            e => {
                let object = self.manifest_object(scope, &m.key);
                let replaced = matches!(e, UnpackError::Corrupt(_))
                    && self.discard(scope, &object, m.archive.known());
                log.trouble(format!(
                    "could not restore {short} from {}: {e}; {}",
                    self.store.describe(),
                    if replaced {
                        "the entry is removed and will be replaced"
                    } else {
                        log.as_miss()
                    }
                ));
            }
        }
    }

    /// Leave this job's record beside the entry (`records.rs`): bounded in time, never an
    /// error. Only in the scope this job writes (the gate refuses it under `--policy pull`:
    /// read-only means no writes at all); a hit on another scope's entry is recorded in this
    /// job's scope, under the entry's key.
    fn record(&self, key: &str, record: &records::Record) {
        records::write_in_background(
            std::sync::Arc::new(self.store.clone()),
            &self.entry_name(self.s.scopes.write, key),
            record,
            Duration::from_secs(2),
        );
    }

    /// Pack and upload the archive, then commit the manifest (first writer wins).
    fn upload(
        &self,
        plan: &Plan,
        log: &mut Log,
        paths: &[CachePath],
        install_seconds: Option<f64>,
        replace: bool,
    ) -> Save {
        let scope = self.s.scopes.write;
        let describe = self.store.describe();
        let short = plan.short_key().to_string();
        let entry = self.entry_name(scope, &plan.key);
        let manifest_object = entry.manifest();
        let replacing = self
            .replace_unfit
            .as_ref()
            .is_some_and(|o| *o == manifest_object);
        let install_seconds = match self.kept_install_seconds(
            plan,
            &manifest_object,
            install_seconds,
            replace || replacing,
        ) {
            Ok(s) => s,
            Err(done) => return done,
        };
        let start = Instant::now();
        let archive_object = entry.archive(&entry::upload_id());
        let packed = (|| -> Result<archive::PackStats> {
            let upload = self.store.put(&archive_object).context("upload failed")?;
            let (upload, stats) = archive::pack(paths, upload, self.s.level, self.s.chunk_size)?;
            upload.finish().context("upload failed")?;
            Ok(stats)
        })();
        let stats = match packed {
            Ok(s) => s,
            Err(e) => return Save::Failed(format!("could not save {short} to {describe}: {e:#}")),
        };
        let manifest = self.manifest(plan, paths, &archive_object, &stats, install_seconds);
        let body = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        let committed = if replace || replacing {
            self.swap_in(plan, &manifest_object, &archive_object, &body)
        } else {
            self.store.create_if_absent(&manifest_object, &body)
        };
        match committed {
            Ok(()) => {}
            Err(StoreError::Exists) => {
                let _ = self.store.delete(&archive_object);
                eprintln!(
                    "{} · another job saved it first; keeping theirs",
                    head(plan, "exists", scope.as_str())
                );
                return Save::Exists;
            }
            Err(e) => {
                let _ = self.store.delete(&archive_object);
                return Save::Failed(format!("could not save {short}: {e}"));
            }
        }
        saved(
            plan,
            log,
            &stats,
            start.elapsed().as_secs_f64(),
            replace,
            scope,
            &describe,
        );
        Save::Saved
    }

    /// Before a save: whether an entry of this key is there already (`Err`: the save ends
    /// so), and the install time to record. A replaced entry keeps what only its first
    /// save could measure: how long the install took (`save --replace` runs none), so later
    /// hits still say "saved ~N s".
    fn kept_install_seconds(
        &self,
        plan: &Plan,
        manifest_object: &ObjectName,
        install_seconds: Option<f64>,
        replace: bool,
    ) -> Result<Option<f64>, Save> {
        match self.store.stat(manifest_object) {
            Ok(_) if replace => Ok(install_seconds.or_else(|| {
                self.existing(plan, manifest_object)
                    .and_then(|m| m.install_seconds)
            })),
            Ok(_) => {
                eprintln!(
                    "{} · already saved{}; not saving again (--replace overwrites it)",
                    head(plan, "exists", self.s.scopes.write.as_str()),
                    self.existing(plan, manifest_object)
                        .map(|m| saved_by(&m))
                        .unwrap_or_default()
                );
                Err(Save::Exists)
            }
            Err(StoreError::NotFound) => Ok(install_seconds),
            Err(e) => Err(Save::Failed(format!(
                "could not save {} to {}: {e}",
                plan.short_key(),
                self.store.describe()
            ))),
        }
    }

    /// The manifest of a packed archive, signed when a signing key is set.
    fn manifest(
        &self,
        plan: &Plan,
        paths: &[CachePath],
        archive_object: &ObjectName,
        stats: &archive::PackStats,
        install_seconds: Option<f64>,
    ) -> Manifest {
        let mut manifest = Manifest {
            format: key::ENTRY_FORMAT,
            key: plan.key.clone(),
            name: self.s.name.clone(),
            scope: self.s.scopes.write.into(),
            archive: archive_object.clone().into(),
            archive_size: stats.archive_bytes,
            archive_blake3: stats.digest.clone(),
            files: stats.files,
            bytes: stats.bytes,
            paths: paths.iter().map(|p| p.declared.clone()).collect(),
            components: plan.components.clone(),
            created: report::unix_now(),
            creator: creator(),
            install_seconds,
            signature: None,
            links: stats.links.clone(),
            namespace: Some(self.s.project.clone()),
            relocation: plan
                .relocatable_python
                .then(|| crate::relocate::scan(paths, &plan.dir)),
            chunks: stats.chunks.clone(),
        };
        if let Some(key) = &self.signing {
            manifest.signature = Some(sign::sign(key, &manifest));
            if let Some(c) = &mut manifest.chunks {
                c.signature = Some(sign::sign_chunks(key, &manifest.archive_blake3, c));
            }
        }
        manifest
    }

    /// Refresh: the new archive is complete, now swap the manifest (a plain overwrite, which
    /// every store makes atomic), so readers see the old entry or the new one, never a mix.
    /// The archive the old manifest named is then removed; readers that lose it mid-lookup
    /// follow the new manifest (`unpack`). Racing replacers: the last swap stands, and a
    /// replacer that finds another's manifest after its own swap removes its now unnamed
    /// archive; what a race still leaves is an unreferenced archive for `prune`.
    fn swap_in(
        &self,
        plan: &Plan,
        manifest_object: &ObjectName,
        archive_object: &ObjectName,
        body: &[u8],
    ) -> StoreResult<()> {
        let named = || {
            self.existing(plan, manifest_object)
                .and_then(|m| m.archive.known().cloned())
        };
        let previous = named();
        self.store.put_small(manifest_object, body)?;
        if let Some(old) = previous.filter(|a| a != archive_object) {
            let _ = self.store.delete(&old);
        }
        if named().is_some_and(|a| a != *archive_object) {
            let _ = self.store.delete(archive_object);
        }
        Ok(())
    }

    /// The entry of this key already in the write scope, if it is one this job can read.
    fn existing(&self, plan: &Plan, manifest_object: &ObjectName) -> Option<Manifest> {
        let b = self.store.peek(manifest_object).ok()?;
        Manifest::parse(&b, &self.s.ns, self.s.scopes.write, &self.s.name, &plan.key).ok()
    }

    /// The newest manifest of this cache name in the scopes this job reads.
    fn newest(&self) -> Result<Option<(u64, Scope, ObjectName)>, String> {
        let mut newest: Option<(u64, Scope, ObjectName)> = None;
        for scope in self.s.scopes.read.clone() {
            let objects = self
                .store
                .list(&self.entry_dir(scope))
                .map_err(|e| format!("cannot list {}: {e}", self.store.describe()))?;
            for o in objects {
                let Some(manifest @ ObjectName::Manifest(_)) = o.object() else {
                    continue;
                };
                let t = o.modified.unwrap_or(0);
                if newest.as_ref().is_none_or(|(nt, _, _)| t > *nt) {
                    newest = Some((t, scope, manifest));
                }
            }
        }
        Ok(newest)
    }
}

impl Entries for Objects {
    fn describe(&self) -> String {
        self.store.describe()
    }

    fn place(&self, scope: Scope) -> &'static str {
        scope.as_str()
    }

    fn scoped(&self) -> bool {
        true
    }

    fn log_plan(&self, _: &Plan) -> bool {
        false
    }

    fn lookup(&mut self, plan: &Plan, log: &mut Log) -> Lookup {
        // Under `--policy push` the gate answers "not found" for every scope.
        for scope in self.s.scopes.read.clone() {
            let object = self.manifest_object(scope, &plan.key);
            let why = match self.store.get_small(&object) {
                Ok(bytes) => match self.judge(plan, log, scope, &object, &bytes) {
                    Ok(m) => {
                        return Lookup::Hit(Hit::Entry {
                            scope,
                            manifest: Box::new(m),
                        });
                    }
                    Err(why) => why,
                },
                Err(StoreError::NotFound) => continue,
                Err(e) => {
                    log.trouble(format!(
                        "cannot look up {} in {}: {e}; {}",
                        plan.short_key(),
                        self.store.describe(),
                        log.as_miss()
                    ));
                    // Failing on the scope this job writes means the save would fail too; a
                    // scope it may only read says nothing about writing.
                    return Lookup::Unavailable {
                        writes_too: scope == self.s.scopes.write,
                    };
                }
            };
            log.trouble(why);
            // Left in place it would block this job's save (a signed one too) forever.
            self.discard(scope, &object, None);
        }
        Lookup::Miss
    }

    fn recover(&self, plan: &Plan, log: &mut Log) {
        for t in archive::recover_interrupted(&plan.targets()) {
            log.warn(format!(
                "an earlier restore was interrupted midway; put {} back as it was",
                t.display()
            ));
        }
    }

    fn before_install(&self, _: &Plan) {}

    fn restore(&mut self, plan: &Plan, log: &mut Log, hit: &Hit) -> bool {
        let Hit::Entry { scope, manifest } = hit else {
            return false;
        };
        let (scope, m) = (*scope, manifest.as_ref());
        let start = Instant::now();
        let unpacked = self.unpack(plan, scope, m);
        crate::backend::retry_log::summarize();
        match unpacked {
            Ok(stats) => {
                let secs = start.elapsed().as_secs_f64();
                self.restored(plan, log, scope, m, &stats, secs);
                true
            }
            Err(e) => {
                self.not_restored(plan, log, scope, m, e);
                false
            }
        }
    }

    fn may_save(&self) -> bool {
        self.store.writes()
    }

    fn save(
        &mut self,
        plan: &Plan,
        log: &mut Log,
        paths: &[CachePath],
        install_seconds: Option<f64>,
        replace: bool,
    ) -> Save {
        if self.s.refuse_secrets {
            let found: Vec<String> = secrets::scan(&plan.targets())
                .iter()
                .map(|f| f.to_string())
                .collect();
            if !found.is_empty() {
                log.warn(format!(
                    "nothing saved (--refuse-secrets): the cached paths hold credential files: {}",
                    found.join(", ")
                ));
                return Save::Skipped(Skip::Secrets(found));
            }
        }
        let outcome = self.upload(plan, log, paths, install_seconds, self.s.replace || replace);
        match &outcome {
            Save::Failed(why) => log.trouble(why.clone()),
            Save::Saved => {
                let r = &log.report;
                let (secs, bytes) = (r.save_seconds.unwrap_or(0.0), r.archive_bytes.unwrap_or(0));
                let rec = records::Record::new(records::Kind::Saved, install_seconds, secs, bytes);
                self.record(&plan.key, &rec);
            }
            Save::Exists => {
                let rec = records::Record::new(records::Kind::Missed, install_seconds, 0.0, 0);
                self.record(&plan.key, &rec);
            }
            Save::Skipped(_) => {}
        }
        outcome
    }

    fn explain(&mut self, plan: &Plan, log: &mut Log) -> Ending {
        let (name, short, describe) =
            (self.s.name.clone(), plan.short_key(), self.store.describe());
        if let Lookup::Hit(Hit::Entry { scope, manifest }) = self.lookup(plan, log) {
            crate::outln!(
                "hit: {name} {short} is in {describe} ({}), saved by {}",
                scope.as_str(),
                manifest.creator
            );
            return Ending::Done;
        }
        let newest = match self.newest() {
            Ok(n) => n,
            Err(why) => {
                log.trouble(why);
                return Ending::Miss;
            }
        };
        crate::outln!(
            "miss: no entry for {name} {short} in {describe} (project {}, read scopes: {})",
            self.s.project,
            self.s
                .scopes
                .read
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let Some((_, scope, object)) = newest else {
            crate::outln!(
                "no entry of cache {name:?} exists at all in project {}: the cache is empty, was cleared, or was never saved (another project's entries are not compared; --namespace NAME reads another project's)",
                self.s.project
            );
            return Ending::Miss;
        };
        let other = self
            .store
            .get_small(&object)
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        match other {
            Some(m) => explain_newest(plan, &name, scope, &m),
            None => crate::outln!("newest entry {object} cannot be read"),
        }
        Ending::Miss
    }

    fn objects(&mut self) -> Option<&mut Objects> {
        Some(self)
    }
}

/// A restore replaces the target trees whole: what git tracks there, or what cachegate did
/// not create, must not go.
fn untouchable(plan: &Plan, targets: &[std::path::PathBuf]) -> Result<(), UnpackError> {
    let tracked = crate::fit::tracked(&plan.dir, targets);
    if !tracked.is_empty() {
        let mut shown: Vec<&str> = tracked.iter().take(5).map(String::as_str).collect();
        let more = format!("and {} more", tracked.len().saturating_sub(5));
        if tracked.len() > 5 {
            shown.push(&more);
        }
        return Err(UnpackError::Tracked(shown.join(", ")));
    }
    let foreign = crate::outside::foreign(&plan.dir, targets);
    if !foreign.is_empty() {
        let shown: Vec<String> = foreign.iter().map(|p| p.display().to_string()).collect();
        return Err(UnpackError::Foreign(shown.join(", ")));
    }
    Ok(())
}

/// `explain`'s comparison with the newest entry of the cache name.
fn explain_newest(plan: &Plan, name: &str, scope: Scope, m: &Manifest) {
    let age = report::unix_now().saturating_sub(m.created);
    crate::outln!(
        "newest entry: {name} {} ({}), saved {} ago by {}",
        key::short(&m.key),
        scope.as_str(),
        report::secs(age as f64),
        crate::echo::value(&m.creator)
    );
    let diff = plan.components.diff(&m.components);
    if diff.is_empty() {
        crate::outln!("its components are the same; it was saved by another cachegate version");
    } else {
        crate::outln!("what differs (theirs -> yours):");
        for d in diff {
            crate::outln!("  {}", crate::echo::line(&d.to_string()));
        }
    }
}

/// A save that worked: its warnings, the report, the line.
fn saved(
    plan: &Plan,
    log: &mut Log,
    stats: &archive::PackStats,
    secs: f64,
    replace: bool,
    scope: Scope,
    describe: &str,
) {
    for s in &stats.skipped {
        log.warn(format!("not cached (not a file, directory or link): {s}"));
    }
    for f in &stats.credentials {
        log.warn(format!(
            "cached a credential file: {f}; anyone who can read the cache can read it (remove it from the cached path, or pass --refuse-secrets)"
        ));
    }
    let r = &mut log.report;
    r.saved = true;
    r.files = Some(stats.files);
    r.bytes = Some(stats.bytes);
    r.archive_bytes = Some(stats.archive_bytes);
    r.save_seconds = Some(secs);
    eprintln!(
        "{} · {}, {} ({} compressed) in {} to {describe}",
        head(
            plan,
            if replace { "replaced" } else { "saved" },
            scope.as_str()
        ),
        report::files(stats.files),
        report::bytes(stats.bytes),
        report::bytes(stats.archive_bytes),
        report::secs(secs),
    );
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
