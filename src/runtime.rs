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
    /// `python`, `node`, `ruby`, `jvm` or `dart`.
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
        Runtime::Node => ("node", node(dir, env)),
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
        Runtime::Jvm => ("jvm", jvm(dir, env)),
        Runtime::Dart => (
            "dart",
            run_probe(dir, find_on_path("dart", env), "dart", &["--version"]),
        ),
    };
    Some(RuntimeInput {
        runtime: runtime.into(),
        value,
    })
}

/// `NODE_MODULE_VERSION` of each Node major (node's `src/node_version.h`): `node --version`
/// answers before V8 starts, a few ms instead of tens for `process.versions.modules`,
/// which is asked only for a major not listed here.
const NODE_ABI: &[(u32, u32)] = &[
    (12, 72),
    (13, 79),
    (14, 83),
    (15, 88),
    (16, 93),
    (17, 102),
    (18, 108),
    (19, 111),
    (20, 115),
    (21, 120),
    (22, 127),
    (23, 131),
    (24, 137),
    (25, 141),
];

const NODE_FULL_PROBE: &str = "process.stdout.write('abi '+process.versions.modules+' node '+process.versions.node.split('.')[0])";

fn node(dir: &Path, env: Env) -> String {
    let Some(exe) = find_on_path("node", env) else {
        return absent("node");
    };
    let major = quick_version(dir, &exe).and_then(|v| {
        v.trim()
            .strip_prefix('v')?
            .split('.')
            .next()?
            .parse::<u32>()
            .ok()
    });
    if let Some((major, abi)) = major.and_then(|m| NODE_ABI.iter().find(|(n, _)| *n == m)) {
        return format!("abi {abi} node {major}");
    }
    run_probe(dir, Some(exe), "node", &["-e", NODE_FULL_PROBE])
}

/// The major version of the java Gradle and Maven run: `JAVA_HOME`'s, else `PATH`'s.
/// `java -version` answers on stderr, as `openjdk version "17.0.15"` or `"1.8.0_392"`.
fn jvm(dir: &Path, env: Env) -> String {
    let exe = env("JAVA_HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| is_executable(p))
        .or_else(|| find_on_path("java", env));
    let Some(exe) = exe else {
        return absent("java");
    };
    let out = Command::new(&exe)
        .arg("-version")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output();
    let text = out
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    match java_major(&text) {
        Some(major) => format!("major {major}"),
        None => format!("unusable ({} did not answer the probe)", exe.display()),
    }
}

fn java_major(version_output: &str) -> Option<u32> {
    let (_, rest) = version_output.split_once(" version \"")?;
    let v = rest.split('"').next()?;
    let mut parts = v.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

const PYTHON_FULL_PROBE: &str = "import sys, os, platform; sys.stdout.write(platform.python_implementation().lower() + '-' + platform.python_version() + ' ' + os.path.realpath(sys.executable))";

/// The interpreter the tool will use: `UV_PYTHON` (uv), the project's `.python-version`
/// (pyenv's, which uv and pyenv shims honour), then `python3` on `PATH`. A native binary
/// answers `--version` in a few ms and its resolved path is read here; anything else (a
/// wrapper script) is asked the long way.
fn python(preset: &str, dir: &Path, env: Env) -> String {
    let Interpreter { exe, asked } = find_python(preset, dir, env);
    let Some(exe) = exe else {
        return absent(&asked);
    };
    let real = std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
    if is_native(&real)
        && let Some(out) = quick_version(dir, &real)
        && let Some(v) = out.lines().next().and_then(|l| l.strip_prefix("Python "))
    {
        let implementation = if out.contains("PyPy") {
            "pypy"
        } else {
            "cpython"
        };
        return format!("{implementation}-{} {}", v.trim(), real.display());
    }
    run_probe(
        dir,
        Some(exe),
        &asked,
        &["-I", "-S", "-c", PYTHON_FULL_PROBE],
    )
}

/// An executable the kernel runs directly (ELF, Mach-O), not a script that picks one.
fn is_native(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| {
            magic == *b"\x7fELF"
                || matches!(
                    u32::from_le_bytes(magic),
                    0xfeed_facf | 0xcefa_edfe | 0xcafe_babe | 0xbeba_feca
                )
        })
}

/// `exe --version`, stdout and stderr together (python2 answers on stderr).
fn quick_version(dir: &Path, exe: &Path) -> Option<String> {
    let out = Command::new(exe)
        .arg("--version")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

fn absent(name: &str) -> String {
    format!("absent ({name} not found; nothing probed)")
}

/// The first version line of a pyenv-style version file in `dir` or above it.
fn version_file(dir: &Path) -> Option<String> {
    dir.ancestors().find_map(|d| {
        std::fs::read_to_string(d.join(".python-version"))
            .ok()?
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
    })
}

fn pyenv_root(env: Env) -> Option<PathBuf> {
    env("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
}

/// What a pyenv shim would run, without running the shim (a shell script that costs more
/// than everything else a hit does): `PYENV_VERSION`, else pyenv's global version file.
fn through_pyenv_shim(found: &Path, env: Env) -> Option<PathBuf> {
    let root = pyenv_root(env)?;
    if found.parent()? != root.join("shims") {
        return None;
    }
    let global = || {
        std::fs::read_to_string(root.join("version"))
            .ok()?
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
    };
    let v = env("PYENV_VERSION").or_else(global)?;
    let v = v.split(':').next()?.trim().to_string();
    let exe = root.join("versions").join(v).join("bin/python3");
    exe.is_file().then_some(exe)
}

/// The interpreter a Python tool will run, as asked for and as found.
struct Interpreter {
    exe: Option<PathBuf>,
    /// What was asked for (a version, a path, `python3`), for the log when it is absent.
    asked: String,
}

fn find_python(preset: &str, dir: &Path, env: Env) -> Interpreter {
    let request = if preset == "uv" {
        env("UV_PYTHON").filter(|v| !v.trim().is_empty())
    } else {
        // pyenv's own precedence: the variable before the file.
        env("PYENV_VERSION").filter(|v| !v.trim().is_empty() && v.trim() != "system")
    };
    let request = request.or_else(|| version_file(dir));
    let Some(req) = request else {
        let found = find_on_path("python3", env);
        let resolved = found.as_deref().and_then(|f| through_pyenv_shim(f, env));
        return Interpreter {
            exe: resolved.or(found),
            asked: "python3".into(),
        };
    };
    if req.contains('/') {
        let p = if Path::new(&req).is_absolute() {
            PathBuf::from(&req)
        } else {
            dir.join(&req)
        };
        return Interpreter {
            exe: p.is_file().then_some(p),
            asked: req,
        };
    }
    // A pyenv version name ("3.12.1", or "3.12" for the newest 3.12.x installed).
    if let Some(root) = pyenv_root(env) {
        let versions = root.join("versions");
        let exact = versions.join(&req).join("bin/python");
        if exact.is_file() {
            return Interpreter {
                exe: Some(exact),
                asked: req,
            };
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
            return Interpreter {
                exe: Some(versions.join(v).join("bin/python")),
                asked: req,
            };
        }
    }
    let numeric = req
        .trim_start_matches("python")
        .trim_start_matches("cpython-");
    Interpreter {
        exe: find_on_path(&format!("python{numeric}"), env),
        asked: format!("python{numeric}"),
    }
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
        return absent(name);
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
    fn java_majors_from_old_and_new_version_lines() {
        let cases = [
            (
                "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime",
                Some(17),
            ),
            ("java version \"1.8.0_392\"\nJava(TM) SE", Some(8)),
            (
                "Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version \"21\" 2023-09-19",
                Some(21),
            ),
            ("openjdk version \"25-ea\" 2025-09-16", Some(25)),
            ("no java here", None),
        ];
        for (text, want) in cases {
            assert_eq!(java_major(text), want, "{text}");
        }
        let env = |k: &str| std::env::var(k).ok();
        if find_on_path("java", &env).is_some() {
            let d = tempfile::tempdir().unwrap();
            let got = jvm(d.path(), &env);
            assert!(got.starts_with("major "), "{got}");
        }
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
        let exe = find_python("pip", &proj, &env).exe;
        assert_eq!(exe.unwrap(), root.join("versions/3.12.10/bin/python"));
        std::fs::write(proj.join(".python-version"), "3.13.0\n").unwrap();
        assert_eq!(
            find_python("poetry", &proj, &env).exe.unwrap(),
            root.join("versions/3.13.0/bin/python")
        );
        // uv reads UV_PYTHON first.
        let env = env_of(vec![
            ("PYENV_ROOT", root.display().to_string()),
            ("UV_PYTHON", "3.12.1".into()),
        ]);
        assert_eq!(
            find_python("uv", &proj, &env).exe.unwrap(),
            root.join("versions/3.12.1/bin/python")
        );
        assert_eq!(
            find_python("pip", &proj, &env).exe.unwrap(),
            root.join("versions/3.13.0/bin/python")
        );
    }

    /// The quick answers (`--version`, the ABI table) are what the long probe would say.
    #[test]
    fn quick_probes_agree_with_asking_the_runtime() {
        let env = |k: &str| std::env::var(k).ok();
        let d = tempfile::tempdir().unwrap();
        if let Some(n) = find_on_path("node", &env) {
            let full = run_probe(d.path(), Some(n), "node", &["-e", NODE_FULL_PROBE]);
            assert_eq!(node(d.path(), &env), full);
        }
        let Some(py) = find_python("pip", d.path(), &env).exe else {
            return;
        };
        let full = run_probe(
            d.path(),
            Some(py),
            "python3",
            &["-I", "-S", "-c", PYTHON_FULL_PROBE],
        );
        assert_eq!(python("pip", d.path(), &env), full);
    }

    #[test]
    fn pyenv_shims_are_resolved_without_running_them() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("pyenv");
        std::fs::create_dir_all(root.join("shims")).unwrap();
        std::fs::create_dir_all(root.join("versions/3.12.1/bin")).unwrap();
        std::fs::write(root.join("versions/3.12.1/bin/python3"), "").unwrap();
        std::fs::write(root.join("version"), "3.12.1\n").unwrap();
        let shim = root.join("shims/python3");
        std::fs::write(&shim, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let proj = d.path().join("p/sub");
        std::fs::create_dir_all(&proj).unwrap();
        let path = root.join("shims").display().to_string();
        let pr = root.display().to_string();
        let env = |k: &str| match k {
            "PATH" => Some(path.clone()),
            "PYENV_ROOT" => Some(pr.clone()),
            _ => None,
        };
        assert_eq!(
            find_python("pip", &proj, &env).exe.unwrap(),
            root.join("versions/3.12.1/bin/python3")
        );
        // A version file above the project counts, as it does for pyenv.
        std::fs::create_dir_all(root.join("versions/3.13.0/bin")).unwrap();
        std::fs::write(root.join("versions/3.13.0/bin/python"), "").unwrap();
        std::fs::write(d.path().join("p/.python-version"), "3.13.0\n").unwrap();
        assert_eq!(
            find_python("pip", &proj, &env).exe.unwrap(),
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
