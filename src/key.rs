//! The cache key: every input that decides whether a cached tree is still the right one,
//! serialized canonically and hashed with blake3. The serialization starts with a version
//! string that changes whenever its meaning changes, so old entries simply stop matching.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use crate::runtime::RuntimeInput;

/// Bump when the key's serialization or the entry format changes.
pub const KEY_SCHEMA: &str = "cachegate-key-v1";
/// Version of the archive + manifest format; part of the key.
pub const ENTRY_FORMAT: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Components {
    pub format: u32,
    pub name: String,
    /// Cached paths as declared, relative to the project dir unless absolute.
    pub paths: Vec<String>,
    /// Absolute locations of paths that cannot move (virtualenvs).
    pub fixed_paths: Vec<String>,
    /// Lock files: path relative to the project dir, and the blake3 of the content.
    pub locks: Vec<LockFile>,
    pub command: Vec<String>,
    pub platform: Platform,
    /// `CI_JOB_IMAGE`, when set.
    pub image: Option<String>,
    pub env: Vec<EnvInput>,
    pub commands: Vec<CmdInput>,
    /// What the presets probed: the interpreter a venv links to, the Node ABI.
    #[serde(default)]
    pub runtime: Vec<RuntimeInput>,
    /// The files the tool checks its lock against, by the blake3 of the checked fields.
    #[serde(default)]
    pub inputs: Vec<LockFile>,
    /// `--salt`: bumping it invalidates every entry of the cache without deleting any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockFile {
    pub path: String,
    pub blake3: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub libc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnvInput {
    pub name: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CmdInput {
    pub command: String,
    pub output: String,
}

impl Components {
    pub fn key(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(KEY_SCHEMA.as_bytes());
        hasher.update(b"\n");
        hasher.update(&serde_json::to_vec(self).expect("components serialize"));
        hasher.finalize().to_hex().to_string()
    }

    /// One line per component, for `key --explain` and the log.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: &str| {
            let _ = writeln!(out, "{label:<9}{}", crate::echo::line(value));
        };
        line("key", &self.key());
        line(
            "schema",
            &format!("{KEY_SCHEMA}, entry format {}", self.format),
        );
        line("name", &self.name);
        for p in &self.paths {
            line("path", &crate::echo::value(p));
        }
        for p in &self.fixed_paths {
            line(
                "location",
                &format!("{p} (a virtualenv only works where it was built)"),
            );
        }
        for l in &self.locks {
            line("lock", &format!("{} blake3:{}", l.path, &l.blake3[..16]));
        }
        line("command", &shell_words(&self.command));
        line(
            "platform",
            &format!(
                "{} {} {}",
                self.platform.os, self.platform.arch, self.platform.libc
            ),
        );
        line(
            "image",
            // Only GitLab sets CI_JOB_IMAGE, so this is the component a laptop misses.
            self.image.as_deref().unwrap_or(
                "- (CI_JOB_IMAGE not set; a GitLab job with an image has it: \
                 export CI_JOB_IMAGE=<the job's image> to compute that job's key here)",
            ),
        );
        for e in &self.env {
            match &e.value {
                Some(v) => line("env", &format!("{}={v}", e.name)),
                None => line("env", &format!("{} (unset)", e.name)),
            }
        }
        for c in &self.commands {
            line("key-cmd", &format!("{} => {}", c.command, c.output));
        }
        for r in &self.runtime {
            line("runtime", &format!("{} {}", r.runtime, r.value));
        }
        for i in &self.inputs {
            line(
                "input",
                &format!(
                    "{} blake3:{} (what the install checks the lock against)",
                    i.path,
                    short(&i.blake3)
                ),
            );
        }
        if let Some(salt) = &self.salt {
            line("salt", salt);
        }
        out
    }

    /// Whether an entry saved under `other` can seed a warm start of this key: only the
    /// lock files, the manifests checked against them and the command may differ, everything that decides whether the tree works
    /// here (platform, image, location, runtime probes, salt) must be equal. `Ok` names what
    /// differs; `Err` lists what rules it out.
    pub fn warm_diff(&self, other: &Components) -> Result<Vec<&'static str>, Vec<String>> {
        let mut differs = Vec::new();
        if self.locks != other.locks {
            differs.push("lock files");
        }
        if self.command != other.command {
            differs.push("command");
        }
        // The manifests the tool checks its lock against (package.json, pyproject.toml) change
        // together with the lock when a dependency is added, so they may differ as the lock may.
        if self.inputs != other.inputs {
            differs.push("dependency manifests");
        }
        // Everything else compared by value, so a component added later blocks a warm start
        // until someone decides it may differ.
        let mut theirs = other.clone();
        theirs.locks = self.locks.clone();
        theirs.command = self.command.clone();
        theirs.inputs = self.inputs.clone();
        if theirs != *self {
            return Err(self.diff(other));
        }
        Ok(differs)
    }

    /// Names of the components that differ, for explaining a miss.
    pub fn diff(&self, other: &Components) -> Vec<String> {
        let mut out = Vec::new();
        let mut cmp = |label: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{label}: {b} -> {a}"));
            }
        };
        cmp("format", self.format.to_string(), other.format.to_string());
        cmp("paths", self.paths.join(" "), other.paths.join(" "));
        cmp(
            "location",
            self.fixed_paths.join(" "),
            other.fixed_paths.join(" "),
        );
        let locks = |c: &Components| {
            c.locks
                .iter()
                .map(|l| format!("{}@{}", l.path, short(&l.blake3)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        cmp("locks", locks(self), locks(other));
        let inputs = |c: &Components| {
            c.inputs
                .iter()
                .map(|l| format!("{}@{}", l.path, short(&l.blake3)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        cmp("inputs", inputs(self), inputs(other));
        let runtime = |c: &Components| {
            c.runtime
                .iter()
                .map(|r| format!("{} {}", r.runtime, r.value))
                .collect::<Vec<_>>()
                .join("; ")
        };
        cmp("runtime", runtime(self), runtime(other));
        cmp(
            "command",
            shell_words(&self.command),
            shell_words(&other.command),
        );
        cmp(
            "platform",
            format!("{:?}", self.platform),
            format!("{:?}", other.platform),
        );
        cmp(
            "image",
            format!("{:?}", self.image),
            format!("{:?}", other.image),
        );
        cmp("env", format!("{:?}", self.env), format!("{:?}", other.env));
        cmp(
            "key-cmd",
            format!("{:?}", self.commands),
            format!("{:?}", other.commands),
        );
        cmp(
            "salt",
            self.salt.clone().unwrap_or_default(),
            other.salt.clone().unwrap_or_default(),
        );
        out
    }
}

/// Join argv for display the way a shell user would type it.
/// The first 8 characters of a key or digest, for people. What an old manifest or marker
/// says may be anything, so this never slices inside a character or past the end.
pub fn short(key: &str) -> &str {
    key.char_indices().nth(8).map_or(key, |(i, _)| &key[..i])
}

pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The machine's OS, CPU and C library; the libc of the system, not of this binary.
pub fn platform() -> Platform {
    Platform {
        os: std::env::consts::OS.to_string(),
        arch: std::env::consts::ARCH.to_string(),
        libc: detect_libc(),
    }
}

fn detect_libc() -> String {
    if std::env::consts::OS != "linux" {
        return "-".to_string();
    }
    let musl = std::fs::read_dir("/lib")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("ld-musl-"))
        })
        .unwrap_or(false);
    if musl {
        return "musl".to_string();
    }
    // getconf is part of glibc itself, so it reports the system's version.
    if let Ok(out) = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .stderr(std::process::Stdio::null())
        .output()
        && out.status.success()
    {
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !v.is_empty() {
            return v;
        }
    }
    "unknown".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Components {
        Components {
            format: ENTRY_FORMAT,
            name: "poetry".into(),
            paths: vec![".venv".into()],
            fixed_paths: vec!["/builds/p/.venv".into()],
            locks: vec![LockFile {
                path: "poetry.lock".into(),
                blake3: "ab".repeat(32),
            }],
            command: vec!["poetry".into(), "install".into()],
            platform: Platform {
                os: "linux".into(),
                arch: "x86_64".into(),
                libc: "glibc 2.36".into(),
            },
            image: None,
            env: vec![],
            commands: vec![],
            runtime: vec![RuntimeInput {
                runtime: "python".into(),
                value: "cpython-3.12.1 /usr/bin/python3.12".into(),
            }],
            inputs: vec![LockFile {
                path: "pyproject.toml".into(),
                blake3: "ef".repeat(32),
            }],
            salt: None,
        }
    }

    #[test]
    fn same_inputs_same_key_and_every_component_counts() {
        let base = sample();
        assert_eq!(base.key(), sample().key());
        assert_eq!(base.key().len(), 64);
        let changes: Vec<fn(&mut Components)> = vec![
            |c| c.format += 1,
            |c| c.name.push('x'),
            |c| c.paths.push("x".into()),
            |c| c.fixed_paths.clear(),
            |c| c.locks[0].blake3 = "cd".repeat(32),
            |c| c.locks[0].path = "sub/poetry.lock".into(),
            |c| c.command.push("--with=dev".into()),
            |c| c.platform.os = "macos".into(),
            |c| c.platform.arch = "aarch64".into(),
            |c| c.platform.libc = "musl".into(),
            |c| c.image = Some("python:3.12".into()),
            |c| {
                c.env.push(EnvInput {
                    name: "X".into(),
                    value: None,
                })
            },
            |c| {
                c.commands.push(CmdInput {
                    command: "python3 --version".into(),
                    output: "Python 3.11.7".into(),
                })
            },
            |c| c.runtime[0].value = "cpython-3.13.0 /usr/bin/python3.13".into(),
            |c| c.runtime.clear(),
            |c| c.inputs[0].blake3 = "01".repeat(32),
            |c| c.salt = Some("2".into()),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut c = sample();
            change(&mut c);
            assert_ne!(c.key(), base.key(), "change {i} did not change the key");
            assert!(
                !c.diff(&base).is_empty() || i == 1,
                "change {i} not in diff"
            );
        }
    }

    #[test]
    fn warm_start_only_across_locks_and_command() {
        let base = sample();
        let mut lock = sample();
        lock.locks[0].blake3 = "cd".repeat(32);
        lock.command.push("--with=dev".into());
        assert_eq!(lock.warm_diff(&base), Ok(vec!["lock files", "command"]));
        // A dependency added to package.json changes the lock and the manifest together.
        let mut manifest = lock.clone();
        manifest.inputs.push(LockFile {
            path: "package.json".into(),
            blake3: "ef".repeat(32),
        });
        assert_eq!(
            manifest.warm_diff(&base),
            Ok(vec!["lock files", "command", "dependency manifests"])
        );
        let blockers: Vec<fn(&mut Components)> = vec![
            |c| c.platform.libc = "musl".into(),
            |c| c.image = Some("python:3.13".into()),
            |c| c.fixed_paths = vec!["/elsewhere/.venv".into()],
            |c| c.paths.push("x".into()),
            |c| c.salt = Some("2".into()),
            |c| c.runtime[0].value = "cpython-3.13.0 /usr/bin/python3.13".into(),
            |c| {
                c.commands.push(CmdInput {
                    command: "python3 --version".into(),
                    output: "Python 3.13.0".into(),
                })
            },
        ];
        for (i, change) in blockers.iter().enumerate() {
            let mut c = lock.clone();
            change(&mut c);
            let why = c
                .warm_diff(&base)
                .expect_err(&format!("change {i} allowed"));
            assert!(!why.is_empty(), "change {i}");
        }
    }

    #[test]
    fn no_salt_keeps_the_key_a_salt_changes_it() {
        let mut c = sample();
        let plain = c.key();
        c.salt = Some("2026-12".into());
        assert_ne!(c.key(), plain);
        c.salt = None;
        assert_eq!(c.key(), plain);
    }

    #[test]
    fn explain_names_every_component() {
        let text = sample().explain();
        for label in [
            "key", "schema", "name", "path", "location", "lock", "command", "platform", "image",
            "runtime", "input",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(label)),
                "{label} missing:\n{text}"
            );
        }
    }

    #[test]
    fn short_never_slices_inside_a_character_or_past_the_end() {
        assert_eq!(short("0123456789abcdef"), "01234567");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééé"), "éééééééé");
    }

    #[test]
    fn shell_words_quotes_only_when_needed() {
        let argv = ["sh", "-c", "a && b", ""].map(String::from);
        assert_eq!(shell_words(&argv), "sh -c 'a && b' ''");
    }
}
