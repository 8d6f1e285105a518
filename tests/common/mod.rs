//! Shared test harness: a temporary project with its own cache store and a clean
//! environment, so tests never see the developer's or CI's CACHEGATE_* or GitLab variables.

pub mod builder;
pub mod dist;
pub mod faults;
pub mod garage;
pub mod gitlab_emu;
pub mod nginx;
pub mod scenarios;
pub mod tarbytes;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub use builder::Test;

/// The arguments most tests cache with: one lock file, one output directory.
pub const ARGS: [&str; 4] = ["--lock", "app.lock", "--path", "out"];

/// An install `sh -c` that logs each run to installs.log (see `scenarios::installs`), then
/// runs `body`.
pub fn tree_cmd(body: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo run >> installs.log && {body}"),
    ]
}

/// An install that makes one small file under `out`.
pub fn one_file() -> Vec<String> {
    tree_cmd("mkdir -p out && echo data > out/f")
}

/// What `ls --json` says about the store's entries.
pub fn listed(p: &Project) -> Vec<serde_json::Value> {
    listed_by(p.test())
}

/// What `ls --json` says, run as `step` (which can expect more of the run: no warnings).
pub fn listed_by(step: Test<'_>) -> Vec<serde_json::Value> {
    let o = step.args(["ls", "--json"]).run();
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
}

/// A loopback port nothing listens on right now, for a test server to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cache store under test: how cachegate is pointed at it, and how a test clears it.
pub trait Store {
    /// The `--backend` value (given to cachegate as CACHEGATE_BACKEND).
    fn backend(&self) -> String;
    /// Extra variables cachegate needs for this store (credentials, endpoints).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Remove every entry: the cache was cleared or evicted.
    fn clear(&self);
    /// Values that must never appear in cachegate's output, at any verbosity.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The directory store.
pub struct DirStore(pub PathBuf);

impl Store for DirStore {
    fn backend(&self) -> String {
        self.0.display().to_string()
    }
    fn clear(&self) {
        std::fs::remove_dir_all(&self.0).unwrap();
        std::fs::create_dir(&self.0).unwrap();
    }
}

pub struct Project {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// The directory store's root (used when no other store is given).
    pub store: PathBuf,
    pub home: PathBuf,
    pub remote: Option<Box<dyn Store>>,
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("project");
        let store = tmp.path().join("store");
        let home = tmp.path().join("home");
        for d in [&dir, &store, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        Project {
            tmp,
            dir,
            store,
            home,
            remote: None,
        }
    }

    /// A project whose cachegate runs use `store` instead of the directory store.
    pub fn with_store(store: Box<dyn Store>) -> Project {
        let mut p = Project::new();
        p.remote = Some(store);
        p
    }

    pub fn clear_store(&self) {
        match &self.remote {
            Some(s) => s.clear(),
            None => DirStore(self.store.clone()).clear(),
        }
    }

    /// Run a cachegate command built by `cmd`, failing the test if any of the store's
    /// secrets shows up in what it printed.
    pub fn run(&self, c: &mut Command) -> Output {
        let out = c.output().unwrap();
        self.assert_no_store_secrets(&out);
        out
    }

    /// Fails if any of the store's secrets shows up in what a cachegate run printed.
    pub fn assert_no_store_secrets(&self, out: &Output) {
        if let Some(s) = &self.remote {
            assert_no_secrets(out, &s.secrets());
        }
    }

    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// `c` (a cachegate binary, or what launches one) given the project's dir, scrubbed
    /// environment and store. Tests get it through a step (`p.test()…std_command()`).
    pub fn std_cmd_of(&self, mut c: std::process::Command) -> std::process::Command {
        c.current_dir(&self.dir).env_clear();
        for keep in ["PATH", "LANG", "TMPDIR", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(keep) {
                c.env(keep, v);
            }
        }
        c.env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg"));
        match &self.remote {
            Some(s) => {
                c.env("CACHEGATE_BACKEND", s.backend());
                for (k, v) in s.env() {
                    c.env(k, v);
                }
                // Remote stores always run at the most verbose level, so the secret check
                // in `run` sees everything cachegate could ever print.
                c.env("CACHEGATE_VERBOSE", "3");
            }
            None => {
                c.env("CACHEGATE_BACKEND", &self.store);
            }
        }
        c
    }

    /// Every file under the store, relative to it.
    pub fn store_files(&self) -> Vec<String> {
        walk(&self.store)
    }
}

pub fn walk(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// How many warning lines cachegate printed.
pub fn warnings(o: &Output) -> usize {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("cachegate: warning"))
        .count()
}

/// Fails if any secret appears in the output: plain, URL-encoded or base64.
pub fn assert_no_secrets(out: &Output, secrets: &[String]) {
    use base64::Engine as _;
    let text = format!("{}{}", stdout(out), stderr(out));
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        let forms = [
            s.clone(),
            cachegate::redact::percent_encode(s),
            base64::engine::general_purpose::STANDARD.encode(s),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s),
        ];
        for f in forms {
            assert!(
                !text.contains(&f),
                "a secret appeared in cachegate's output:\n{text}"
            );
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Under CI a test that needs an outside tool fails when the tool is missing; elsewhere it
/// skips loudly, naming what to install.
pub fn require_tool(tool: &str, install: &str) -> bool {
    require(which(tool).is_some(), tool, install)
}

/// Where a `Project`'s entries live in a store: the layout version, then the project's
/// namespace (its directory is named `project` and is no git checkout).
pub fn project_root() -> String {
    let ns = cachegate::namespace::Namespace::resolve(Some("project"), Path::new("/"))
        .unwrap()
        .segment();
    format!("{}/{ns}", cachegate::entry::LAYOUT_ROOT)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Where `tool` is on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && path.starts_with('/')).then(|| PathBuf::from(path))
}

/// Under CI a missing prerequisite fails the test; elsewhere the test skips loudly, naming
/// how to get it.
pub fn require(found: bool, what: &str, install: &str) -> bool {
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} is required under CI=true; get it with: {install}");
        }
        eprintln!("SKIPPED: {what} not found; get it with: {install}");
    }
    found
}
