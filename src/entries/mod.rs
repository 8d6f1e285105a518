//! Entry handling, chosen once: `Store::entries` picks the object protocol
//! (`objects.rs`: a manifest and an archive per key in a store) or runner mode (`runner.rs`:
//! GitLab's own `cache:` carries the paths, a marker records the key). A job calls the
//! trait and never asks which one it has.

use anyhow::Result;

use crate::archive::Limits;
use crate::entry::Manifest;
use crate::exit::Ending;
use crate::paths::CachePath;
use crate::plan::Plan;
use crate::report::Report;
use crate::scope::{Scope, Scopes};
use crate::store::Store;

pub mod objects;
pub mod runner;

pub use objects::Objects;

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

/// What the object protocol is given once, for the entries of one job: whose they are and
/// how they are packed and trusted.
pub struct Settings {
    /// The project's path segment in object names, and its name for people.
    pub ns: String,
    pub project: String,
    pub scopes: Scopes,
    /// The cache name (`pip`, `node_modules`).
    pub name: String,
    /// `--policy push`: an existing entry of this key is replaced.
    pub replace: bool,
    pub level: i32,
    /// `--chunk-size`: the pieces a save records a digest of, as downloads fetch them.
    pub chunk_size: u64,
    pub limits: Limits,
    pub refuse_secrets: bool,
}

/// Where entry handling tells the job what happened: the report, and cache trouble so far
/// (for `--strict`).
pub struct Log {
    pub report: Report,
    strict: bool,
    /// Set only by `trouble`, read by the job's `finish`.
    trouble: bool,
}

impl Log {
    pub fn new(report: Report, strict: bool) -> Log {
        Log {
            report,
            strict,
            trouble: false,
        }
    }

    /// Cache trouble: a warning, remembered for `--strict`.
    pub fn trouble(&mut self, msg: String) {
        self.trouble = true;
        self.report.warn(msg);
    }

    pub fn warn(&mut self, msg: String) {
        self.report.warn(msg);
    }

    /// Whether cache trouble happened so far.
    pub fn had_trouble(&self) -> bool {
        self.trouble
    }

    pub fn strict(&self) -> bool {
        self.strict
    }

    /// What a job does about cache trouble before its install: goes on as a miss, or, under
    /// `--strict`, stops.
    pub fn as_miss(&self) -> &'static str {
        if self.strict {
            "stopping with exit 3 (--strict)"
        } else {
            "treating it as a miss"
        }
    }
}

/// The start of a summary line: `cachegate: hit pip 1a2b3c4d (protected)`.
pub fn head(plan: &Plan, word: &str, place: &str) -> String {
    format!(
        "cachegate: {word} {} {} ({place})",
        plan.components.name,
        plan.short_key(),
    )
}

/// The job's entries in `store`, handled the one way that store holds them: the object
/// protocol, or runner mode's marker (which stores nothing, so it neither signs nor
/// verifies, and needs no keys).
pub fn open(store: Store, settings: Settings) -> Result<Box<dyn Entries>> {
    Ok(match store {
        Store::Objects(g) => Box::new(Objects::new(g, settings)?),
        Store::Marker(m) => Box::new(runner::Runner {
            reads: m.reads,
            writes: m.writes,
        }),
    })
}

/// One job's entries: found, put in place, saved.
pub trait Entries {
    /// Where they live, for people: never credentials.
    fn describe(&self) -> String;

    /// What a summary line names as where an entry of `scope` is (`runner` in runner mode).
    fn place(&self, scope: Scope) -> &'static str;

    /// Whether entries live in scopes (runner mode leaves that to GitLab's cache keys).
    fn scoped(&self) -> bool;

    /// Say what is cached; `false` when the job's own plan line is the one to print.
    fn log_plan(&self, plan: &Plan) -> bool;

    /// Look the key up, in every scope this job may read, in order.
    fn lookup(&mut self, plan: &Plan, log: &mut Log) -> Lookup;

    /// Undo what an interrupted restore left beside the cached paths.
    fn recover(&self, plan: &Plan, log: &mut Log);

    /// Before the install runs on a miss.
    fn before_install(&self, plan: &Plan);

    /// Put a hit in place. `false` means it did not work out (cache trouble, reported) and
    /// the job goes on as a miss.
    fn restore(&mut self, plan: &Plan, log: &mut Log, hit: &Hit) -> bool;

    /// Whether this job may save at all (not `--policy pull`): a job that may not says so
    /// instead of checking its paths.
    fn may_save(&self) -> bool;

    /// Save `paths` (the cached paths the install produced, checked) under the plan's key.
    /// `replace`: `save --replace`, an existing entry is replaced.
    fn save(
        &mut self,
        plan: &Plan,
        log: &mut Log,
        paths: &[CachePath],
        install_seconds: Option<f64>,
        replace: bool,
    ) -> Save;

    /// `explain`: why the lookup misses, on stdout.
    fn explain(&mut self, plan: &Plan, log: &mut Log) -> Ending;

    /// The object protocol, for the miss paths that build on stored entries (single-flight,
    /// warm start); runner mode has none.
    fn objects(&mut self) -> Option<&mut Objects>;
}
