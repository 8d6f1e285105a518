//! Arguments and environment turned into a validated plan: which files are fingerprinted,
//! which paths are cached and what the command gets in its environment. Every rejection here
//! is a usage error (exit 2) that names the bad value.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::key::{self, CmdInput, Components, EnvInput, LockFile, RuntimeInput};
use crate::paths::{self, CachePath, Names, has_glob_meta};
use crate::preset::{self, Preset};
use crate::preset_paths::{EnvVar, Resolved};
use crate::{echo, env_vars};

/// What the key is made from, as the user asked for it (flags and variables); the plan
/// checks every value.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Lock files, globs or directories to fingerprint.
    pub locks: Vec<String>,
    /// Paths to cache; empty for the presets' own.
    pub paths: Vec<String>,
    pub allow_outside_path: bool,
    pub name: Option<String>,
    pub key_env: Vec<String>,
    pub key_cmd: Vec<String>,
    /// The project directory; the current one when not given.
    pub dir: Option<PathBuf>,
    pub no_runtime_key: bool,
    pub salt: Option<String>,
}

/// A variable set for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandVar {
    pub name: String,
    pub value: String,
    /// cachegate set it; otherwise the user had, and the user's value is kept (and logged).
    pub ours: bool,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub components: Components,
    pub key: String,
    pub paths: Vec<CachePath>,
    /// Preset names used, for the log.
    pub presets: Vec<&'static str>,
    /// Whether the cached paths are the presets' (no `--path` replaced them).
    pub preset_paths: bool,
    /// Variables set for the command.
    pub command_env: Vec<CommandVar>,
    /// What the presets read from the tools' configuration, for the log.
    pub notes: Vec<String>,
    /// Directories made before the command runs (a preset's tool needs them to exist).
    pub create_dirs: Vec<PathBuf>,
    /// A Python preset is used: a save records which files hold the project's path, so a
    /// restore at another path can rewrite them (`relocate`).
    pub relocatable_python: bool,
}

impl Plan {
    pub fn short_key(&self) -> &str {
        &self.key[..8]
    }

    /// Where the cached paths lie on this machine now (globs as they match now).
    pub fn targets(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in &self.paths {
            if p.glob {
                out.extend(
                    paths::expand(&|d| self.abs_of(d), &p.declared)
                        .iter()
                        .map(|d| self.abs_of(d)),
                );
            } else {
                out.push(p.abs.clone());
            }
        }
        out
    }

    /// The cached paths (as declared) that do not exist, not even as a dangling link, or
    /// that are globs matching nothing; optional preset paths never count.
    pub fn missing_paths(&self) -> Vec<String> {
        crate::cached::for_save(&self.dir, &self.paths).missing
    }

    /// A declared path on this machine.
    pub fn abs_of(&self, declared: &str) -> PathBuf {
        paths::resolve(&self.dir, declared)
    }
}

/// A path to cache as the plan first gathers it.
struct Declared {
    path: String,
    optional: bool,
    /// From a preset whose tree holds its own location (a venv, a conda prefix).
    fixed: bool,
    /// From a Python preset: `relocate` rewrites such a tree for another path.
    python: bool,
    /// File names never archived from it (its preset's `skip`).
    skip: &'static [&'static str],
}

/// A preset the lock files picked, with what it settled on in this project.
struct Chosen {
    preset: &'static Preset,
    resolved: Resolved,
}

/// The lock files as fingerprinted, and the presets their names pick (sorted by name).
struct Locks {
    files: BTreeSet<LockFile>,
    presets: Vec<&'static Preset>,
}

/// What the command is given: its variables, the log's notes, the directories it needs.
#[derive(Default)]
struct CommandSetup {
    env: Vec<CommandVar>,
    notes: Vec<String>,
    create_dirs: Vec<PathBuf>,
}

pub fn plan(args: &Request, command: &[String]) -> Result<Plan> {
    let dir = project_dir(args)?;
    let env_of = |k: &str| std::env::var(k).ok();
    let locks = fingerprint_locks(&dir, &args.locks)?;
    let chosen = locks
        .presets
        .iter()
        .map(|p| {
            Ok(Chosen {
                preset: p,
                resolved: crate::preset_paths::resolve(p, &dir, &env_of)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let declared = declared_paths(args, &chosen)?;
    let paths = cache_paths(args, &dir, &declared)?;
    let fixed = fixed_paths(&dir, &declared);
    let declared: Vec<String> = declared.into_iter().map(|d| d.path).collect();
    let name = match &args.name {
        Some(n) => validate_name(n)?,
        None if !locks.presets.is_empty() => locks
            .presets
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join("-"),
        None => default_name(&declared[0]),
    };
    // The preset's variables point the tool at the preset's paths; with other --path
    // values they would send the install somewhere that is not cached.
    let setup = if args.paths.is_empty() {
        command_setup(&dir, &chosen)
    } else {
        CommandSetup::default()
    };
    let runtime = if args.no_runtime_key {
        Vec::new()
    } else {
        runtimes(&locks.presets, &dir, &env_of)
    };
    let inputs = preset_inputs(&locks.presets, &dir)?;
    let env = key_env(&args.key_env)?;
    let commands = args
        .key_cmd
        .iter()
        .map(|c| run_key_cmd(&dir, c))
        .collect::<Result<Vec<_>>>()?;
    let components = Components {
        format: key::ENTRY_FORMAT,
        name,
        paths: declared,
        fixed_paths: fixed,
        locks: locks.files.into_iter().collect(),
        command: command.to_vec(),
        platform: key::platform(),
        image: std::env::var(env_vars::CI_JOB_IMAGE)
            .ok()
            .filter(|s| !s.is_empty()),
        env,
        commands,
        runtime,
        inputs,
        // An empty variable (a CI variable defined but blank) is no salt.
        salt: args.salt.clone().filter(|s| !s.is_empty()),
    };
    let key = components.key();
    Ok(Plan {
        dir,
        key,
        components,
        paths,
        presets: locks.presets.iter().map(|p| p.name).collect(),
        preset_paths: args.paths.is_empty(),
        command_env: setup.env,
        notes: setup.notes,
        create_dirs: setup.create_dirs,
        relocatable_python: locks
            .presets
            .iter()
            .any(|p| p.runtime == preset::Runtime::Python),
    })
}

/// The project directory, checked before anything is read; a request without a lock file
/// is refused here too, before any file is looked at.
fn project_dir(args: &Request) -> Result<PathBuf> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let dir = match &args.dir {
        Some(d) => std::path::absolute(cwd.join(d))?,
        None => cwd,
    };
    if !dir.is_dir() {
        bail!("--dir {:?} is not a directory", dir.display().to_string());
    }
    if args.locks.is_empty() {
        bail!(
            "no lock file given: pass --lock FILE (for example --lock poetry.lock), or set CACHEGATE_LOCK"
        );
    }
    Ok(dir)
}

fn fingerprint_locks(dir: &Path, patterns: &[String]) -> Result<Locks> {
    let mut files = BTreeSet::new();
    let mut presets: Vec<&'static Preset> = Vec::new();
    for pattern in patterns {
        let found = resolve_lock(dir, pattern)?;
        let hashes = hash_files(&found)?;
        for (file, hash) in found.into_iter().zip(hashes) {
            let base = file.file_name().map(|n| n.to_string_lossy().to_string());
            if let Some(p) = base.as_deref().and_then(preset::for_lock_file)
                && !presets.iter().any(|q| q.name == p.name)
            {
                presets.push(p);
            }
            files.insert(LockFile {
                path: display_rel(dir, &file),
                blake3: hash,
            });
        }
    }
    // The same set of lock files is the same cache, in whatever order `--lock` named them:
    // the presets decide the name, the paths and their order, all part of the key.
    presets.sort_by_key(|p| p.name);
    Ok(Locks { files, presets })
}

/// The paths to cache: the user's `--path` values, or else the presets'.
fn declared_paths(args: &Request, chosen: &[Chosen]) -> Result<Vec<Declared>> {
    let mut declared: Vec<Declared> = Vec::new();
    if !args.paths.is_empty() {
        for p in &args.paths {
            let p = normalize_declared(p)?;
            if has_glob_meta(&p) {
                paths::glob(&p).map_err(|e| {
                    anyhow::anyhow!("--path {} is not a valid glob: {e}", echo::quoted(&p))
                })?;
            }
            if !declared.iter().any(|x| x.path == p) {
                declared.push(Declared {
                    path: p,
                    optional: false,
                    fixed: false,
                    python: false,
                    skip: &[],
                });
            }
        }
        return Ok(declared);
    }
    if chosen.is_empty() {
        bail!(
            "no --path given and no preset knows the lock file(s) {}; pass --path DIR (presets exist for {})",
            args.locks.join(", "),
            preset::known_names().join(", ")
        );
    }
    for Chosen {
        preset: p,
        resolved,
    } in chosen
    {
        for path in &resolved.paths {
            let d = normalize_declared(&path.declared)?;
            if !declared.iter().any(|x| x.path == d) {
                declared.push(Declared {
                    path: d,
                    optional: path.optional,
                    fixed: !p.relocatable,
                    python: p.runtime == preset::Runtime::Python,
                    skip: p.skip,
                });
            }
        }
    }
    Ok(declared)
}

/// The declared paths on this machine, each checked to be one a restore may replace.
fn cache_paths(args: &Request, dir: &Path, declared: &[Declared]) -> Result<Vec<CachePath>> {
    let mut out = Vec::new();
    for d in declared {
        let abs = paths::resolve(dir, &d.path);
        if abs == dir || dir.starts_with(&abs) {
            bail!(
                "--path {} is the project directory or contains it; cache a directory inside it, such as .venv",
                echo::quoted(&d.path)
            );
        }
        // The user's own --path only: a preset's paths follow the tool's own settings.
        if !args.paths.is_empty()
            && !args.allow_outside_path
            && let Some(why) = crate::outside::refusal(dir, &abs)
        {
            bail!(
                "--path {:?} is not cached: {why}; a restore there would replace it. Name a directory inside the project or a tool cache, or pass --allow-outside-path to cache it anyway",
                d.path
            );
        }
        out.push(CachePath {
            declared: d.path.clone(),
            abs,
            optional: d.optional,
            glob: has_glob_meta(&d.path),
            skip: Names::new(d.skip),
        });
    }
    for (i, a) in out.iter().enumerate() {
        for b in &out[i + 1..] {
            if !a.glob && !b.glob && (a.abs.starts_with(&b.abs) || b.abs.starts_with(&a.abs)) {
                bail!(
                    "--path {} and --path {} overlap; cache one or the other",
                    echo::quoted(&a.declared),
                    echo::quoted(&b.declared)
                );
            }
        }
    }
    Ok(out)
}

/// The cached paths whose location is part of the key: trees that only work where they
/// were built.
fn fixed_paths(dir: &Path, declared: &[Declared]) -> Vec<String> {
    let mut fixed = Vec::new();
    for d in declared {
        let abs = paths::resolve(dir, &d.path);
        // A Python preset's environment inside the project is rewritten for the path it
        // is restored at (`relocate`), so its location is not part of the key; one the user
        // named, or one outside the project, stays where it was built.
        let moves_with_project = d.fixed && d.python && abs.starts_with(dir);
        if !moves_with_project && (d.fixed || preset::looks_like_venv(&d.path)) {
            fixed.push(abs.display().to_string());
        }
    }
    fixed
}

fn command_setup(dir: &Path, chosen: &[Chosen]) -> CommandSetup {
    let mut setup = CommandSetup::default();
    for Chosen { resolved: r, .. } in chosen {
        setup.notes.extend(r.notes.iter().cloned());
        setup
            .create_dirs
            .extend(r.create.iter().map(|d| paths::resolve(dir, d)));
        for EnvVar { name, value } in &r.env {
            if setup.env.iter().any(|v| v.name == *name) {
                continue;
            }
            setup.env.push(match std::env::var(name) {
                // A value the user set wins; the log says so.
                Ok(existing) => CommandVar {
                    name: name.clone(),
                    value: existing,
                    ours: false,
                },
                Err(_) => CommandVar {
                    name: name.clone(),
                    value: value.clone(),
                    ours: true,
                },
            });
        }
    }
    setup
}

fn runtimes(
    presets: &[&Preset],
    dir: &Path,
    env_of: crate::preset_paths::Env,
) -> Vec<RuntimeInput> {
    let mut out = Vec::new();
    for p in presets {
        if let Some(r) = crate::runtime::probe(p.runtime, p.name, dir, env_of)
            && !out.contains(&r)
        {
            out.push(r);
        }
    }
    out
}

fn preset_inputs(presets: &[&Preset], dir: &Path) -> Result<Vec<LockFile>> {
    let mut out = Vec::new();
    for p in presets {
        for i in crate::inputs::collect(p.inputs, dir)? {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

fn key_env(names: &[String]) -> Result<Vec<EnvInput>> {
    names
        .iter()
        .map(|name| {
            if name.is_empty() || name.contains('=') {
                bail!(
                    "--key-env {} is not a variable name; pass the name only, e.g. --key-env PYTHON_VERSION",
                    echo::quoted(name)
                );
            }
            Ok(EnvInput {
                name: name.clone(),
                value: std::env::var(name).ok(),
            })
        })
        .collect()
}

/// Files a `--lock` pattern names: a file, a directory (walked with .gitignore honoured),
/// or a glob. Matching nothing is an error: a typo must not silently key on nothing.
fn resolve_lock(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    let nothing = || {
        let found = existing_locks(dir);
        let hint = if found.is_empty() {
            format!(
                "no lock file a preset knows is there ({})",
                preset::known_names().join(", ")
            )
        } else {
            format!("lock files there: {}", found.join(", "))
        };
        // A flag is one pattern (only CACHEGATE_LOCK is a list): `--lock a,b` was meant as two.
        let list = if pattern.contains(',') {
            "; a --lock flag is one pattern (repeat --lock for each)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "--lock {} matches nothing in {}{list}; {hint}",
            echo::quoted(pattern),
            echo::value(&dir.display().to_string())
        )
    };
    if pattern.trim().is_empty() {
        bail!("--lock \"\" is empty; name a lock file, glob or directory");
    }
    if !has_glob_meta(pattern) {
        let path = dir.join(pattern);
        let meta = std::fs::metadata(&path).map_err(|_| nothing())?;
        if meta.is_file() {
            return Ok(vec![path]);
        }
        let files = walk_files(&path, None)?;
        if files.is_empty() {
            return Err(nothing());
        }
        return Ok(files);
    }
    let split = paths::split_literal(pattern);
    let mut root = dir.to_path_buf();
    for (i, part) in split.base.iter().enumerate() {
        root.push(if i == 0 && part.is_empty() { "/" } else { part });
    }
    let glob = paths::matcher(&split.rest)
        .with_context(|| format!("--lock {} is not a valid glob", echo::quoted(pattern)))?;
    let files = walk_files(&root, Some(&|rel: &Path| glob.is_match(rel)))?;
    if files.is_empty() {
        return Err(nothing());
    }
    Ok(files)
}

/// The lock files a preset knows that exist at the top of `dir`, for a `--lock` that
/// matched nothing.
fn existing_locks(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| preset::is_lock_name(n))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

type Filter<'a> = &'a dyn Fn(&Path) -> bool;

fn walk_files(root: &Path, filter: Option<Filter>) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !root.is_dir() {
        return Ok(out);
    }
    let walker = paths::walk_project(root)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        if filter.is_none_or(|f| f(rel)) {
            out.push(entry.into_path());
        }
    }
    Ok(out)
}

/// A `--lock` directory can hold thousands of small files, where opening and reading, not
/// hashing, is the cost: more threads than cores keep several reads in flight (a few dozen
/// files are not worth the threads).
fn hash_files(files: &[PathBuf]) -> Result<Vec<String>> {
    use rayon::prelude::*;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get() * 2)
        .min(8)
        .min(files.len() / 64 + 1);
    let pool = (threads > 1)
        .then(|| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .ok()
        })
        .flatten();
    let Some(pool) = pool else {
        return files.iter().map(|f| hash_file(f)).collect();
    };
    // Every file is hashed, and the first failure in `--lock` order is the one reported.
    let hashed: Vec<Result<String>> =
        pool.install(|| files.par_iter().map(|f| hash_file(f)).collect());
    hashed.into_iter().collect()
}

fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    // Large inputs hash on every core; small ones are not worth the thread pool.
    let len = std::fs::metadata(path)?.len();
    if len > 1 << 20 {
        hasher
            .update_mmap_rayon(path)
            .with_context(|| format!("cannot read lock file {}", path.display()))?;
    } else {
        let data = std::fs::read(path)
            .with_context(|| format!("cannot read lock file {}", path.display()))?;
        hasher.update(&data);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

fn display_rel(dir: &Path, file: &Path) -> String {
    match file.strip_prefix(dir) {
        Ok(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => file.display().to_string(),
    }
}

/// Paths are keyed as written, so `./.venv/` and `.venv` must be one path; `..` is refused
/// because the declared paths are the only places a restore may write.
fn normalize_declared(p: &str) -> Result<String> {
    let trimmed = p.trim();
    if trimmed.is_empty() {
        bail!("--path \"\" is empty; name a directory to cache, such as .venv");
    }
    let (prefix, body) = match trimmed.strip_prefix("~/") {
        Some(rest) => ("~/", rest),
        None => ("", trimmed),
    };
    let path = Path::new(body);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().to_string()),
            Component::CurDir => {}
            Component::RootDir => parts.insert(0, String::new()),
            Component::ParentDir | Component::Prefix(_) => {
                bail!(
                    "--path {} contains '..'; name the directory directly (absolute paths are fine)",
                    echo::quoted(p)
                )
            }
        }
    }
    if parts.is_empty() || parts == [""] {
        bail!(
            "--path {} names the project or the root directory; name a directory inside it, such as .venv",
            echo::quoted(p)
        );
    }
    if prefix.is_empty() && parts[0].is_empty() {
        return Ok(format!("/{}", parts[1..].join("/")));
    }
    Ok(format!("{prefix}{}", parts.join("/")))
}

fn validate_name(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!(
            "--name {} is not a valid cache name; use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
            echo::quoted(name)
        );
    }
    Ok(name.to_string())
}

fn default_name(path: &str) -> String {
    let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches(['.', '_', '-']);
    if cleaned.is_empty() {
        "cache".to_string()
    } else {
        cleaned.chars().take(64).collect()
    }
}

fn run_key_cmd(dir: &Path, cmd: &str) -> Result<CmdInput> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("--key-cmd {} could not be started", echo::quoted(cmd)))?;
    if !out.status.success() {
        bail!(
            "--key-cmd {} failed ({}): {}",
            echo::quoted(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // Some tools print their version on stderr (python2, java), so both count.
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !err.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&err);
    }
    Ok(CmdInput {
        command: cmd.to_string(),
        output: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_paths_normalize() {
        assert_eq!(normalize_declared("./.venv/").unwrap(), ".venv");
        assert_eq!(normalize_declared("~/.cache/pip").unwrap(), "~/.cache/pip");
        assert_eq!(normalize_declared("/opt/x/").unwrap(), "/opt/x");
        for bad in ["", ".", "./", "../x", "a/../../b", "/"] {
            assert!(normalize_declared(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_strict() {
        assert!(validate_name("poetry-3.12_x").is_ok());
        for bad in ["", "../p", "k/", "k/./", "%2e%2e%2f", "k ", "ké", ".hidden"] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert_eq!(default_name("~/.cache/pip"), "pip");
        assert_eq!(default_name(".venv"), "venv");
    }

    #[test]
    fn lock_globs_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/req.txt"), "x").unwrap();
        std::fs::write(root.join("a/b/req.txt"), "y").unwrap();
        std::fs::write(root.join("a/b/ignored.txt"), "z").unwrap();
        std::fs::write(root.join("a/.gitignore"), "ignored.txt\n").unwrap();
        let rel = |v: Vec<PathBuf>| v.iter().map(|p| display_rel(root, p)).collect::<Vec<_>>();
        assert_eq!(rel(resolve_lock(root, "a/*.txt").unwrap()), ["a/req.txt"]);
        assert_eq!(
            rel(resolve_lock(root, "a/**/req.txt").unwrap()),
            ["a/b/req.txt", "a/req.txt"]
        );
        assert_eq!(
            rel(resolve_lock(root, "a").unwrap()),
            ["a/.gitignore", "a/b/req.txt", "a/req.txt"]
        );
        let e = resolve_lock(root, "nope/*.lock").unwrap_err().to_string();
        assert!(
            e.contains("\"nope/*.lock\"") && e.contains(&root.display().to_string()),
            "{e}"
        );
    }
}
