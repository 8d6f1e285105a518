//! The runtime a cached tree depends on, probed the way the tool finds it, for the key: a
//! virtualenv links to one interpreter, native Node addons are built for one ABI, gems for
//! one Ruby. A probe runs one short process, and none at all when the program is absent:
//! then the component says so, which is itself part of the key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::preset::Runtime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RuntimeInput {
    /// `python`, `node` or `ruby`.
    pub runtime: String,
    /// What the probe found (`cpython-3.12.1 /usr/bin/python3.12`), or why there is nothing.
    pub value: String,
}

pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Probe the runtime of a preset. `uv` reads `UV_PYTHON` before `.python-version`.
pub fn probe(kind: Runtime, preset: &str, dir: &Path, env: Env) -> Option<RuntimeInput> {
    let (runtime, value) = match kind {
        Runtime::None => return None,
        Runtime::Python => ("python", python(preset, dir, env)),
        Runtime::Node => (
            "node",
            run_probe(
                dir,
                find_on_path("node", env),
                "node",
                &[
                    "-e",
                    "process.stdout.write('abi '+process.versions.modules+' node '+process.versions.node.split('.')[0])",
                ],
            ),
        ),
        Runtime::Ruby => (
            "ruby",
            run_probe(
                dir,
                find_on_path("ruby", env),
                "ruby",
                &[
                    "-e",
                    "print RUBY_ENGINE, '-', RUBY_VERSION, ' ', RUBY_PLATFORM",
                ],
            ),
        ),
    };
    Some(RuntimeInput {
        runtime: runtime.into(),
        value,
    })
}

/// The interpreter the tool will use: `UV_PYTHON` (uv), the project's `.python-version`
/// (pyenv's, which uv and pyenv shims honour), then `python3` on `PATH`.
fn python(preset: &str, dir: &Path, env: Env) -> String {
    let (exe, asked) = find_python(preset, dir, env);
    run_probe(
        dir,
        exe,
        &asked,
        &[
            "-I",
            "-S",
            "-c",
            "import sys, os, platform; sys.stdout.write(platform.python_implementation().lower() + '-' + platform.python_version() + ' ' + os.path.realpath(sys.executable))",
        ],
    )
}

fn find_python(preset: &str, dir: &Path, env: Env) -> (Option<PathBuf>, String) {
    let request = if preset == "uv" {
        env("UV_PYTHON").filter(|v| !v.trim().is_empty())
    } else {
        None
    };
    let request = request.or_else(|| {
        std::fs::read_to_string(dir.join(".python-version"))
            .ok()?
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
    });
    let Some(req) = request else {
        return (find_on_path("python3", env), "python3".into());
    };
    if req.contains('/') {
        let p = if Path::new(&req).is_absolute() {
            PathBuf::from(&req)
        } else {
            dir.join(&req)
        };
        return (p.is_file().then_some(p), req);
    }
    // A pyenv version name ("3.12.1", or "3.12" for the newest 3.12.x installed).
    let root = env("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = root {
        let versions = root.join("versions");
        let exact = versions.join(&req).join("bin/python");
        if exact.is_file() {
            return (Some(exact), req);
        }
        let newest = std::fs::read_dir(&versions).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| {
                    n.strip_prefix(req.as_str())
                        .is_some_and(|r| r.starts_with('.'))
                })
                .max_by_key(|n| version_tuple(n))
        });
        if let Some(v) = newest {
            return (Some(versions.join(v).join("bin/python")), req);
        }
    }
    let numeric = req
        .trim_start_matches("python")
        .trim_start_matches("cpython-");
    (
        find_on_path(&format!("python{numeric}"), env),
        format!("python{numeric}"),
    )
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// `name` as the shell would find it on `PATH`.
pub fn find_on_path(name: &str, env: Env) -> Option<PathBuf> {
    let path = env("PATH")?;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn run_probe(dir: &Path, exe: Option<PathBuf>, name: &str, args: &[&str]) -> String {
    let Some(exe) = exe else {
        return format!("absent ({name} not found; nothing probed)");
    };
    let out = Command::new(&exe)
        .args(args)
        // pyenv and nodenv shims pick the version from files in the working directory.
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        }
        _ => format!("unusable ({} did not answer the probe)", exe.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn absent_programs_are_named_not_probed() {
        let d = tempfile::tempdir().unwrap();
        let env = env_of(vec![("PATH", d.path().display().to_string())]);
        let r = probe(Runtime::Node, "npm", d.path(), &env).unwrap();
        assert_eq!(r.runtime, "node");
        assert!(r.value.starts_with("absent (node not found"), "{r:?}");
        let r = probe(Runtime::Python, "pip", d.path(), &env).unwrap();
        assert!(r.value.starts_with("absent (python3"), "{r:?}");
        assert!(probe(Runtime::None, "go", d.path(), &env).is_none());
    }

    #[test]
    fn python_version_files_pick_pyenv_versions() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("pyenv");
        for v in ["3.12.1", "3.12.10", "3.13.0"] {
            let bin = root.join("versions").join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("python"), "").unwrap();
        }
        let proj = d.path().join("p");
        std::fs::create_dir_all(&proj).unwrap();
        std::fs::write(proj.join(".python-version"), "# pinned\n3.12\n").unwrap();
        let env = env_of(vec![("PYENV_ROOT", root.display().to_string())]);
        let (exe, _) = find_python("pip", &proj, &env);
        assert_eq!(exe.unwrap(), root.join("versions/3.12.10/bin/python"));
        std::fs::write(proj.join(".python-version"), "3.13.0\n").unwrap();
        assert_eq!(
            find_python("poetry", &proj, &env).0.unwrap(),
            root.join("versions/3.13.0/bin/python")
        );
        // uv reads UV_PYTHON first.
        let env = env_of(vec![
            ("PYENV_ROOT", root.display().to_string()),
            ("UV_PYTHON", "3.12.1".into()),
        ]);
        assert_eq!(
            find_python("uv", &proj, &env).0.unwrap(),
            root.join("versions/3.12.1/bin/python")
        );
        assert_eq!(
            find_python("pip", &proj, &env).0.unwrap(),
            root.join("versions/3.13.0/bin/python")
        );
    }

    #[test]
    fn a_real_python_reports_implementation_version_and_path() {
        let env = |k: &str| std::env::var(k).ok();
        let Some(py) = find_on_path("python3", &env) else {
            return;
        };
        let d = tempfile::tempdir().unwrap();
        let v = python("pip", d.path(), &env);
        let (which, path) = v
            .split_once(' ')
            .unwrap_or_else(|| panic!("{v} from {py:?}"));
        assert!(
            which.starts_with("cpython-3.") || which.starts_with("pypy-"),
            "{v}"
        );
        assert!(
            Path::new(path).is_absolute() && Path::new(path).is_file(),
            "{v}"
        );
    }
}
