//! Arguments and environment turned into a validated plan: which files are fingerprinted,
//! which paths are cached and what the command gets in its environment. Every rejection here
//! is a usage error (exit 2) that names the bad value.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use globset::GlobBuilder;

use crate::cli::KeyArgs;
use crate::config::home;
use crate::key::{self, CmdInput, Components, EnvInput, LockFile};
use crate::preset;
use crate::{echo, env_vars};

/// A cached path: how it is declared (and keyed) and where it is on this machine.
#[derive(Debug, Clone)]
pub struct CachePath {
    pub declared: String,
    pub abs: PathBuf,
    /// May be absent after the command without a warning (a workspace package's
    /// `node_modules` when everything was hoisted).
    pub optional: bool,
    /// A `--path` glob: expanded after the command for a save, its matches recorded.
    pub glob: bool,
    /// File names never archived from this path (the preset's `skip`).
    pub skip: &'static [&'static str],
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
    /// Variables set for the command, as (name, value, whether cachegate set it).
    pub command_env: Vec<(String, String, bool)>,
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
                    crate::cached::expand(&|d| self.abs_of(d), &p.declared)
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
        crate::cached::for_save(self).1
    }

    /// A declared path on this machine.
    pub fn abs_of(&self, declared: &str) -> PathBuf {
        resolve_path(&self.dir, declared)
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
}

pub fn plan(args: &KeyArgs, command: &[String]) -> Result<Plan> {
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

    let env_of = |k: &str| std::env::var(k).ok();
    let mut locks = BTreeSet::new();
    let mut presets: Vec<&'static preset::Preset> = Vec::new();
    for pattern in &args.locks {
        let files = resolve_lock(&dir, pattern)?;
        let hashes = hash_files(&files)?;
        for (file, hash) in files.into_iter().zip(hashes) {
            let base = file.file_name().map(|n| n.to_string_lossy().to_string());
            if let Some(p) = base.as_deref().and_then(preset::for_lock_file)
                && !presets.iter().any(|q| q.name == p.name)
            {
                presets.push(p);
            }
            locks.insert(LockFile {
                path: display_rel(&dir, &file),
                blake3: hash,
            });
        }
    }

    // The same set of lock files is the same cache, in whatever order `--lock` named them:
    // the presets decide the name, the paths and their order, all part of the key.
    presets.sort_by_key(|p| p.name);

    let mut declared: Vec<Declared> = Vec::new();
    let mut skips: Vec<(String, &'static [&'static str])> = Vec::new();
    let mut fixed = Vec::new();
    let mut resolved = Vec::new();
    for p in &presets {
        let r = crate::layout::resolve(p, &dir, &env_of)?;
        resolved.push((*p, r));
    }
    if args.paths.is_empty() {
        if presets.is_empty() {
            bail!(
                "no --path given and no preset knows the lock file(s) {}; pass --path DIR (presets exist for {})",
                args.locks.join(", "),
                preset::known_names().join(", ")
            );
        }
        for (p, r) in &resolved {
            for path in &r.paths {
                let d = normalize_declared(&path.declared)?;
                if !declared.iter().any(|x| x.path == d) {
                    skips.push((d.clone(), p.skip));
                    declared.push(Declared {
                        path: d,
                        optional: path.optional,
                        fixed: !p.relocatable,
                        python: p.runtime == preset::Runtime::Python,
                    });
                }
            }
        }
    } else {
        for p in &args.paths {
            let p = normalize_declared(p)?;
            if crate::cached::has_glob_meta(&p) {
                crate::cached::validate_glob(&p).map_err(anyhow::Error::msg)?;
            }
            if !declared.iter().any(|x| x.path == p) {
                declared.push(Declared {
                    path: p,
                    optional: false,
                    fixed: false,
                    python: false,
                });
            }
        }
    }

    let mut paths = Vec::new();
    for Declared {
        path: d,
        optional,
        fixed: unmovable,
        python,
    } in &declared
    {
        let abs = resolve_path(&dir, d);
        if abs == dir || dir.starts_with(&abs) {
            bail!(
                "--path {} is the project directory or contains it; cache a directory inside it, such as .venv",
                echo::quoted(d)
            );
        }
        // The user's own --path only: a preset's paths follow the tool's own settings.
        if !args.paths.is_empty()
            && !args.allow_outside_path
            && let Some(why) = crate::outside::refusal(&dir, &abs)
        {
            bail!(
                "--path {d:?} is not cached: {why}; a restore there would replace it. Name a directory inside the project or a tool cache, or pass --allow-outside-path to cache it anyway"
            );
        }
        // A Python preset's environment inside the project is rewritten for the path it
        // is restored at (`relocate`), so its location is not part of the key; one the user
        // named, or one outside the project, stays where it was built.
        let moves_with_project = *unmovable && *python && abs.starts_with(&dir);
        if !moves_with_project && (*unmovable || preset::looks_like_venv(d)) {
            fixed.push(abs.display().to_string());
        }
        paths.push(CachePath {
            declared: d.clone(),
            abs,
            optional: *optional,
            glob: crate::cached::has_glob_meta(d),
            skip: skips.iter().find(|(x, _)| x == d).map_or(&[], |(_, s)| s),
        });
    }
    let declared: Vec<String> = declared.into_iter().map(|d| d.path).collect();
    for (i, a) in paths.iter().enumerate() {
        for b in &paths[i + 1..] {
            if !a.glob && !b.glob && (a.abs.starts_with(&b.abs) || b.abs.starts_with(&a.abs)) {
                bail!(
                    "--path {} and --path {} overlap; cache one or the other",
                    echo::quoted(&a.declared),
                    echo::quoted(&b.declared)
                );
            }
        }
    }

    let name = match &args.name {
        Some(n) => validate_name(n)?,
        None if !presets.is_empty() => presets.iter().map(|p| p.name).collect::<Vec<_>>().join("-"),
        None => default_name(&declared[0]),
    };

    let mut command_env = Vec::new();
    let mut notes = Vec::new();
    let mut create_dirs = Vec::new();
    for (_, r) in &resolved {
        // The preset's variables point the tool at the preset's paths; with other --path
        // values they would send the install somewhere that is not cached.
        if !args.paths.is_empty() {
            continue;
        }
        notes.extend(r.notes.iter().cloned());
        create_dirs.extend(r.create.iter().map(|d| resolve_path(&dir, d)));
        for (var, value) in &r.env {
            if command_env
                .iter()
                .any(|(n, _, _): &(String, String, bool)| n == var)
            {
                continue;
            }
            match std::env::var(var) {
                // A value the user set wins; the log says so.
                Ok(existing) => command_env.push((var.to_string(), existing, false)),
                Err(_) => command_env.push((var.to_string(), value.clone(), true)),
            }
        }
    }
    let mut runtime = Vec::new();
    let mut inputs = Vec::new();
    for p in &presets {
        if !args.no_runtime_key
            && let Some(r) = crate::runtime::probe(p.runtime, p.name, &dir, &env_of)
            && !runtime.contains(&r)
        {
            runtime.push(r);
        }
        for i in crate::inputs::collect(p.inputs, &dir)? {
            if !inputs.contains(&i) {
                inputs.push(i);
            }
        }
    }

    let env = args
        .key_env
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
        .collect::<Result<Vec<_>>>()?;
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
        locks: locks.into_iter().collect(),
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
        presets: presets.iter().map(|p| p.name).collect(),
        preset_paths: args.paths.is_empty(),
        command_env,
        notes,
        create_dirs,
        relocatable_python: presets.iter().any(|p| p.runtime == preset::Runtime::Python),
    })
}

use crate::cached::has_glob_meta;

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
    // Walk from the longest literal prefix so `sub/**/*.lock` does not walk the whole tree.
    let mut base = PathBuf::new();
    let mut rest = Vec::new();
    for (i, part) in pattern.split('/').enumerate() {
        if rest.is_empty() && !has_glob_meta(part) {
            if i == 0 && part.is_empty() {
                base.push("/");
            } else {
                base.push(part);
            }
        } else {
            rest.push(part);
        }
    }
    let root = dir.join(&base);
    let glob = GlobBuilder::new(&rest.join("/"))
        .literal_separator(true)
        .build()
        .with_context(|| format!("--lock {} is not a valid glob", echo::quoted(pattern)))?
        .compile_matcher();
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
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_name(|a, b| a.cmp(b))
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
/// hashing, is the cost: several threads keep several reads in flight.
fn hash_files(files: &[PathBuf]) -> Result<Vec<String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get() * 2)
        .min(8)
        .min(files.len() / 64 + 1);
    if threads <= 1 {
        return files.iter().map(|f| hash_file(f)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut hashed: Vec<(usize, Result<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = files.get(i) else { break };
                        mine.push((i, hash_file(f)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("hashing thread panicked"))
            .collect()
    });
    hashed.sort_unstable_by_key(|(i, _)| *i);
    hashed.into_iter().map(|(_, h)| h).collect()
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

fn resolve_path(dir: &Path, declared: &str) -> PathBuf {
    if let Some(rest) = declared.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    dir.join(declared)
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
