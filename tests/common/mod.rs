//! Shared test harness: a temporary project with its own cache store and a clean
//! environment, so tests never see the developer's or CI's CACHEGATE_* or GitLab variables.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

pub struct Project {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub store: PathBuf,
    pub home: PathBuf,
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

    /// `cachegate` in the project dir with a scrubbed environment and the dir backend.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("cachegate").unwrap();
        c.current_dir(&self.dir).env_clear();
        for keep in ["PATH", "LANG", "TMPDIR", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(keep) {
                c.env(keep, v);
            }
        }
        c.env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.tmp.path().join("xdg"))
            .env("CACHEGATE_BACKEND", &self.store);
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

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Under CI a test that needs an outside tool fails when the tool is missing; elsewhere it
/// skips loudly, naming what to install.
pub fn require_tool(tool: &str, install: &str) -> bool {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required under CI=true; install it with: {install}");
        }
        eprintln!("SKIPPED: {tool} not found; install it with: {install}");
    }
    found
}
