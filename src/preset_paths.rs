//! What a preset caches in this project, read from the tool's own configuration: npm, yarn,
//! pnpm and bun workspaces, yarn berry's `.yarnrc.yml`, the virtualenv poetry, uv or pipenv
//! will really use, and Cargo's download caches. A setting the user made is honoured, never
//! overridden: the variables a preset sets only fill in what the user left unset.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use globset::GlobSetBuilder;

use crate::paths;
use crate::preset::{EnvValue, Layout, Preset};

/// A path the preset caches, as declared (relative to the project, absolute, or `~/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresetPath {
    pub declared: String,
    /// May be absent after the install without a warning (a workspace package whose
    /// dependencies were all hoisted has no `node_modules`).
    pub optional: bool,
}

/// A variable a preset sets for the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

impl EnvVar {
    fn new(name: impl Into<String>, value: impl Into<String>) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The paths and the variables for the command a preset settles on in this project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub paths: Vec<PresetPath>,
    /// Variables for the command; a variable the user set keeps the user's value.
    pub env: Vec<EnvVar>,
    /// What the tool's configuration decided, for the log.
    pub notes: Vec<String>,
    /// Directories (as declared) the command needs to exist before it runs.
    pub create: Vec<String>,
}

impl Resolved {
    /// A path to cache, as declared; an `optional` one may be absent after the install.
    fn cache(&mut self, declared: impl Into<String>, optional: bool) {
        self.paths.push(PresetPath {
            declared: declared.into(),
            optional,
        });
    }
}

/// The environment as the preset sees it (a closure, so tests need no process state).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn resolve(p: &Preset, dir: &Path, env: Env) -> Result<Resolved> {
    let mut r = Resolved::default();
    match p.layout {
        Layout::Fixed => {
            preset_defaults(p, dir, &mut r);
        }
        Layout::NodeWorkspaces => {
            preset_fixed(p, &mut r);
            workspace_modules(dir, &mut r)?;
        }
        Layout::Yarn => {
            if is_yarn_berry(dir) {
                yarn_berry(dir, env, &mut r)?;
            } else {
                preset_fixed(p, &mut r);
                workspace_modules(dir, &mut r)?;
            }
        }
        Layout::Poetry => poetry(p, dir, env, &mut r)?,
        Layout::Uv => uv(p, dir, env, &mut r),
        Layout::Pipenv => pipenv(p, dir, env, &mut r),
        Layout::Cargo => cargo(p, dir, env, &mut r),
        Layout::Gradle => gradle(p, dir, env, &mut r),
        Layout::Maven => maven(p, dir, env, &mut r),
        Layout::Terraform => terraform(p, dir, env, &mut r),
        Layout::Conda => {
            preset_defaults(p, dir, &mut r);
            r.notes.push(format!(
                "environments under {} hold their prefix (conda rewrote it into scripts and \
                 binaries), so the key holds that location: another checkout path is a miss",
                dir.join(p.paths[0]).display()
            ));
        }
        Layout::Dart => dart(p, dir, env, &mut r),
    }
    Ok(r)
}

/// The preset's own variables for the command, its relative paths made absolute.
fn preset_env(p: &Preset, dir: &Path, r: &mut Resolved) {
    for (var, value) in p.env {
        let v = match value {
            EnvValue::Literal(v) => v.to_string(),
            EnvValue::Abs(rel) => dir.join(rel).display().to_string(),
            EnvValue::AbsAfter(flag, rel) => format!("{flag}{}", dir.join(rel).display()),
        };
        r.env.push(EnvVar::new(*var, v));
    }
}

/// The preset as its table stands: its own paths and its variables for the command.
fn preset_defaults(p: &Preset, dir: &Path, r: &mut Resolved) {
    preset_fixed(p, r);
    preset_env(p, dir, r);
}

/// The preset's own paths, as its table lists them.
fn preset_fixed(p: &Preset, r: &mut Resolved) {
    for d in p.paths {
        r.cache(*d, false);
    }
}

/// uv's environment: `UV_PROJECT_ENVIRONMENT` when the user set it.
fn uv(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    match env("UV_PROJECT_ENVIRONMENT").filter(|v| !v.is_empty()) {
        Some(v) => {
            r.notes.push(format!(
                "UV_PROJECT_ENVIRONMENT={v} is the environment uv uses"
            ));
            r.cache(v, false);
        }
        None => {
            preset_defaults(p, dir, r);
        }
    }
}

/// pipenv's environment: in the project unless `PIPENV_VENV_IN_PROJECT` turns that off.
fn pipenv(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    let in_project = env("PIPENV_VENV_IN_PROJECT").map(|v| truthy(&v));
    if in_project == Some(false) {
        let home = env("WORKON_HOME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "~/.local/share/virtualenvs".into());
        // Every project of the user shares WORKON_HOME: only this one's
        // environment is cached, named as pipenv names it (with a digest of the
        // Pipfile's path, so another checkout path is another key).
        let own = format!(
            "{}/{}",
            home.trim_end_matches('/'),
            pipenv_env_name(dir, env)
        );
        r.notes.push(format!(
                "PIPENV_VENV_IN_PROJECT is off: pipenv keeps its environments in {home}; caching this project's, {own}, named after this checkout's path, so a checkout at another path is another entry (PIPENV_VENV_IN_PROJECT set to 1 shares one)"
            ));
        r.cache(own, false);
    } else {
        preset_defaults(p, dir, r);
    }
}

/// Cargo's download caches: under `CARGO_HOME` when the user set it.
fn cargo(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    match env("CARGO_HOME").filter(|v| !v.is_empty()) {
        Some(home) => {
            let home = home.trim_end_matches('/').to_string();
            r.notes
                .push(format!("CARGO_HOME={home}: caching its download caches"));
            for sub in ["registry", "git"] {
                r.cache(format!("{home}/{sub}"), sub == "git");
            }
        }
        None => {
            preset_fixed(p, r);
            // A project without git dependencies has no .cargo/git.
            r.paths[1].optional = true;
            preset_env(p, dir, r);
        }
    }
}

/// Gradle's dependency cache and wrapper dists: under `GRADLE_USER_HOME` when set.
fn gradle(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    match user_dir(dir, env, "GRADLE_USER_HOME") {
        Some(home) => {
            r.notes.push(format!(
                "GRADLE_USER_HOME={home}: caching its dependency cache and wrapper dists"
            ));
            for (sub, optional) in [("caches/modules-2", false), ("wrapper/dists", true)] {
                r.cache(format!("{home}/{sub}"), optional);
            }
        }
        None => {
            preset_fixed(p, r);
            // Only projects built through the wrapper have its dists.
            r.paths[1].optional = true;
            preset_env(p, dir, r);
        }
    }
}

/// Maven's local repository, wherever the user's settings put it.
fn maven(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    match maven_repo(dir, env) {
        Some(Setting { path, why }) => {
            r.notes.push(why);
            r.cache(path, false);
        }
        None => {
            preset_defaults(p, dir, r);
        }
    }
}

/// Terraform's plugin cache (`TF_PLUGIN_CACHE_DIR` when set), made before `init` runs.
fn terraform(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    match user_dir(dir, env, "TF_PLUGIN_CACHE_DIR") {
        Some(d) => {
            r.notes.push(format!(
                "TF_PLUGIN_CACHE_DIR={d}: caching that plugin cache"
            ));
            r.cache(d, false);
        }
        None => {
            preset_defaults(p, dir, r);
        }
    }
    r.create.push(r.paths[0].declared.clone());
}

/// pub's cache (`PUB_CACHE` when set), `.dart_tool` and what flutter writes beside it.
fn dart(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) {
    r.notes.push(
        "pub's .dart_tool/package_config.json names packages by absolute path, so the \
             key holds the location: another checkout path is a miss"
            .into(),
    );
    match user_dir(dir, env, "PUB_CACHE") {
        Some(d) => {
            r.notes
                .push(format!("PUB_CACHE={d}: caching that pub cache"));
            r.cache(d, false);
            r.cache(p.paths[1], false);
        }
        None => {
            preset_defaults(p, dir, r);
        }
    }
    // What `flutter pub get` writes beside `.dart_tool` (absent for plain Dart).
    for f in [".flutter-plugins-dependencies", ".flutter-plugins"] {
        r.cache(f, true);
    }
}

/// A directory variable the user set, without its trailing slash.
fn user_dir(dir: &Path, env: Env, var: &str) -> Option<String> {
    env(var)
        .filter(|v| !v.trim().is_empty())
        .map(|v| in_project(dir, v.trim_end_matches('/')))
}

/// A path inside the project as a relative one: `GRADLE_USER_HOME=$CI_PROJECT_DIR/.gradle`
/// names another absolute path in every runner slot, and the key must not differ for that.
fn in_project(dir: &Path, path: &str) -> String {
    match Path::new(path).strip_prefix(dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.to_string(),
    }
}

/// A setting of the tool's that moves a cached path, and the log line that says so.
struct Setting {
    path: String,
    why: String,
}

/// The local repository the user chose, and why: `-Dmaven.repo.local` in the project's
/// `.mvn/maven.config` (command-line flags, which win) or in `MAVEN_OPTS`. A `MAVEN_OPTS`
/// without it means `~/.m2/repository`, since the preset's value would not be used.
fn maven_repo(dir: &Path, env: Env) -> Option<Setting> {
    const FLAG: &str = "-Dmaven.repo.local=";
    let find = |text: &str| {
        text.split_whitespace()
            .find_map(|a| a.strip_prefix(FLAG))
            .map(|v| in_project(dir, v.trim_matches('"').trim_end_matches('/')))
            .filter(|v| !v.is_empty())
    };
    if let Some(repo) = std::fs::read_to_string(dir.join(".mvn/maven.config"))
        .ok()
        .and_then(|t| find(&t))
    {
        return Some(Setting {
            why: format!(".mvn/maven.config sets maven.repo.local={repo}"),
            path: repo,
        });
    }
    let opts = env("MAVEN_OPTS")?;
    Some(match find(&opts) {
        Some(repo) => Setting {
            why: format!("MAVEN_OPTS sets maven.repo.local={repo}"),
            path: repo,
        },
        None => Setting {
            path: "~/.m2/repository".into(),
            why: "MAVEN_OPTS is set without -Dmaven.repo.local, so Maven uses ~/.m2/repository; \
             add -Dmaven.repo.local=$CI_PROJECT_DIR/.m2/repository to keep it in the project"
                .into(),
        },
    })
}

/// pipenv's `virtualenv_name`: `PIPENV_CUSTOM_VENV_NAME`, else the project directory's name
/// (characters a shell would trip on as `_`, 42 at most), `-`, the first 8 characters of
/// the urlsafe base64 of the first 6 bytes of the sha256 of the Pipfile's path, and
/// `-$PIPENV_PYTHON` when that is set.
fn pipenv_env_name(dir: &Path, env: Env) -> String {
    if let Some(custom) = env("PIPENV_CUSTOM_VENV_NAME").filter(|v| !v.is_empty()) {
        return custom;
    }
    let base = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = env_name(&base, " &$`!*@\"()[]\\\r\n\t", &dir.join("Pipfile"));
    if let Some(py) = env("PIPENV_PYTHON").filter(|v| !v.is_empty()) {
        name.push_str(&format!("-{py}"));
    }
    name
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The workspace package directories of a Node project: `workspaces` in `package.json`
/// (an array, or `{ "packages": [...] }`) and `packages` in `pnpm-workspace.yaml`, each a
/// directory with a `package.json`, relative to `dir`, sorted.
pub fn workspace_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut patterns: Vec<String> = Vec::new();
    if let Some(pkg) = read_json(&dir.join("package.json"))? {
        let ws = match &pkg["workspaces"] {
            serde_json::Value::Array(a) => a.clone(),
            serde_json::Value::Object(o) => o
                .get("packages")
                .and_then(|p| p.as_array())
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        patterns.extend(ws.iter().filter_map(|v| v.as_str().map(String::from)));
    }
    let pnpm = dir.join("pnpm-workspace.yaml");
    if let Ok(text) = std::fs::read_to_string(&pnpm) {
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .with_context(|| format!("{} is not valid YAML", pnpm.display()))?;
        if let Some(list) = docs.first().and_then(|d| d["packages"].as_vec()) {
            patterns.extend(list.iter().filter_map(|v| v.as_str().map(String::from)));
        }
    }
    expand_workspaces(dir, &patterns, "package.json")
}

/// The member directories of a uv workspace (`[tool.uv.workspace]` `members` minus
/// `exclude`, each a directory with a `pyproject.toml`), relative to `dir`, sorted.
pub fn uv_members(dir: &Path, pyproject: &toml::Table) -> Result<Vec<String>> {
    let Some(ws) = pyproject
        .get("tool")
        .and_then(|t| t.get("uv"))
        .and_then(|u| u.get("workspace"))
    else {
        return Ok(Vec::new());
    };
    let list = |k: &str| -> Vec<String> {
        ws.get(k)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut patterns = list("members");
    patterns.extend(list("exclude").into_iter().map(|e| format!("!{e}")));
    expand_workspaces(dir, &patterns, "pyproject.toml")
}

fn expand_workspaces(dir: &Path, patterns: &[String], marker: &str) -> Result<Vec<String>> {
    let mut include = GlobSetBuilder::new();
    let mut exclude = GlobSetBuilder::new();
    let mut any = false;
    let mut depth = 0usize;
    for raw in patterns {
        let (neg, pat) = match raw.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, raw.as_str()),
        };
        let pat = pat.trim().trim_start_matches("./").trim_end_matches('/');
        if pat.is_empty() || pat.starts_with('/') || pat.split('/').any(|s| s == "..") {
            continue;
        }
        let glob = paths::glob(pat)
            .with_context(|| format!("workspace pattern {raw:?} is not a valid glob"))?;
        if neg {
            exclude.add(glob);
        } else {
            any = true;
            depth = if pat.contains("**") {
                usize::MAX
            } else {
                depth.max(pat.split('/').count())
            };
            include.add(glob);
        }
    }
    if !any {
        return Ok(Vec::new());
    }
    let include = include.build()?;
    let exclude = exclude.build()?;
    let mut out = Vec::new();
    let walker = paths::walk_sorted(dir)
        .min_depth(1)
        .max_depth(depth.min(16))
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name();
            n != "node_modules" && n != ".git" && n != ".venv"
        });
    for e in walker.flatten() {
        if !e.file_type().is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).expect("walk stays under dir");
        if include.is_match(rel) && !exclude.is_match(rel) && e.path().join(marker).is_file() {
            out.push(paths::slash_rel(dir, e.path()));
        }
    }
    Ok(out)
}

fn workspace_modules(dir: &Path, r: &mut Resolved) -> Result<()> {
    let dirs = workspace_dirs(dir)?;
    if !dirs.is_empty() {
        r.notes.push(format!(
            "workspaces: {} (each one's node_modules)",
            dirs.join(", ")
        ));
    }
    for d in dirs {
        r.cache(format!("{d}/node_modules"), true);
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not valid JSON", path.display())),
        Err(_) => Ok(None),
    }
}

/// A berry lock file starts with a `__metadata` block; yarn 1's never has one.
fn is_yarn_berry(dir: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4096];
    let n = std::fs::File::open(dir.join("yarn.lock"))
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    String::from_utf8_lossy(&head[..n]).contains("__metadata:")
}

/// A `.yarnrc.yml` setting, with yarn's own precedence: the `YARN_*` variable first.
fn yarnrc(doc: &yaml_rust2::Yaml, env: Env, var: &str, key: &str) -> Option<String> {
    if let Some(v) = env(var).filter(|v| !v.is_empty()) {
        return Some(v);
    }
    let v = &doc[key];
    v.as_str()
        .map(String::from)
        .or_else(|| v.as_bool().map(|b| b.to_string()))
}

fn yarn_berry(dir: &Path, env: Env, r: &mut Resolved) -> Result<()> {
    let rc = dir.join(".yarnrc.yml");
    let doc = match std::fs::read_to_string(&rc) {
        Ok(text) => yaml_rust2::YamlLoader::load_from_str(&text)
            .with_context(|| format!("{} is not valid YAML", rc.display()))?
            .into_iter()
            .next()
            .unwrap_or(yaml_rust2::Yaml::Null),
        Err(_) => yaml_rust2::Yaml::Null,
    };
    let linker = yarnrc(&doc, env, "YARN_NODE_LINKER", "nodeLinker").unwrap_or("pnp".into());
    let global = yarnrc(&doc, env, "YARN_ENABLE_GLOBAL_CACHE", "enableGlobalCache");
    let rel = |p: String| p.trim_start_matches("./").trim_end_matches('/').to_string();
    let cache = match global.as_deref().map(truthy) {
        Some(true) => {
            let folder = yarnrc(&doc, env, "YARN_GLOBAL_FOLDER", "globalFolder")
                .unwrap_or_else(|| "~/.yarn/berry".into());
            format!("{}/cache", folder.trim_end_matches('/'))
        }
        other => {
            // Left unset, yarn 4 keeps packages in a cache shared by every project on the
            // machine; the project's own cache folder is what a CI cache can carry.
            if other.is_none() {
                r.env.push(EnvVar::new("YARN_ENABLE_GLOBAL_CACHE", "false"));
            }
            rel(yarnrc(&doc, env, "YARN_CACHE_FOLDER", "cacheFolder")
                .unwrap_or_else(|| ".yarn/cache".into()))
        }
    };
    r.notes.push(format!(
        "yarn berry, nodeLinker {linker}, package cache {cache}"
    ));
    let mut add = |d: String, optional: bool| r.cache(d, optional);
    // A directory first: runner mode keeps its marker in the first path.
    let pnp = linker == "pnp";
    if pnp {
        add(cache, false);
        add(".pnp.cjs".into(), false);
        add(".pnp.loader.mjs".into(), true);
    } else {
        add("node_modules".into(), false);
        add(cache, false);
    }
    add(
        rel(
            yarnrc(&doc, env, "YARN_PNP_UNPLUGGED_FOLDER", "pnpUnpluggedFolder")
                .unwrap_or_else(|| ".yarn/unplugged".into()),
        ),
        true,
    );
    add(
        rel(
            yarnrc(&doc, env, "YARN_INSTALL_STATE_PATH", "installStatePath")
                .unwrap_or_else(|| ".yarn/install-state.gz".into()),
        ),
        true,
    );
    if !pnp {
        workspace_modules(dir, r)?;
    }
    Ok(())
}

fn read_toml(path: &Path) -> Result<Option<toml::Table>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map(Some)
            .with_context(|| format!("{} is not valid TOML", path.display())),
        Err(_) => Ok(None),
    }
}

/// Poetry's settings, most specific first: `POETRY_*` variables, the project's
/// `poetry.toml`, the user's `config.toml` (in `POETRY_CONFIG_DIR`, else XDG's config home).
fn poetry(p: &Preset, dir: &Path, env: Env, r: &mut Resolved) -> Result<()> {
    let config_dir = env("POETRY_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| xdg_home(env, "XDG_CONFIG_HOME", ".config").map(|x| x.join("pypoetry")));
    let mut files = vec![read_toml(&dir.join("poetry.toml"))?];
    if let Some(c) = config_dir {
        files.push(read_toml(&c.join("config.toml"))?);
    }
    let setting = |var: &str, key: &str| -> Option<String> {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            return Some(v);
        }
        files.iter().flatten().find_map(|t| {
            let v = t.get("virtualenvs")?.get(key)?;
            v.as_str()
                .map(String::from)
                .or_else(|| v.as_bool().map(|b| b.to_string()))
        })
    };
    let in_project = setting("POETRY_VIRTUALENVS_IN_PROJECT", "in-project").map(|v| truthy(&v));
    let venvs = setting("POETRY_VIRTUALENVS_PATH", "path")
        .unwrap_or_else(|| "{cache-dir}/virtualenvs".into())
        .replace(
            "{cache-dir}",
            poetry_cache_dir(&files, env).trim_end_matches('/'),
        );
    // Poetry uses an environment it already made for this project (`poetry lock` makes one)
    // before it would make `.venv`, whatever in-project says, unless `.venv` exists.
    if in_project != Some(false)
        && !dir.join(".venv").exists()
        && let Some(existing) = existing_poetry_env(dir, &venvs, env)?
    {
        r.notes.push(format!(
            "poetry already has an environment for this project, {existing}, and uses it"
        ));
        r.cache(existing, false);
        return Ok(());
    }
    if in_project != Some(false) {
        for d in p.paths {
            r.cache(d.to_string(), false);
        }
        for (var, value) in p.env {
            if let EnvValue::Literal(v) = value {
                r.env.push(EnvVar::new(*var, *v));
            }
        }
        return Ok(());
    }
    // The directory is shared by every project of this user: only this project's
    // environment is cached, and its name holds a digest of the project path, so the key
    // (which holds the declared path) tells one checkout from another.
    let own = format!(
        "{}/{}-py*",
        venvs.trim_end_matches('/'),
        poetry_env_base(dir)?
    );
    r.notes.push(format!(
        "poetry keeps its virtualenvs in {venvs} (virtualenvs.in-project is false); caching this project's, {own}, named after this checkout's path, so a checkout at another path is another entry (POETRY_VIRTUALENVS_IN_PROJECT set to true shares one)"
    ));
    r.cache(own, false);
    Ok(())
}

/// `$VAR` when it is set to an absolute path (what XDG and platformdirs accept), else
/// `~/<fallback>`.
fn xdg_home(env: Env, var: &str, fallback: &str) -> Option<PathBuf> {
    env(var)
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(fallback)))
}

/// Poetry's `cache-dir`: `POETRY_CACHE_DIR`, then `cache-dir` in `poetry.toml` or the user's
/// `config.toml`, then platformdirs' user cache dir (`$XDG_CACHE_HOME/pypoetry`), as
/// `poetry config cache-dir` prints it.
fn poetry_cache_dir(files: &[Option<toml::Table>], env: Env) -> String {
    if let Some(v) = env("POETRY_CACHE_DIR").filter(|v| !v.is_empty()) {
        return v;
    }
    if let Some(v) = files
        .iter()
        .flatten()
        .find_map(|t| t.get("cache-dir")?.as_str().map(String::from))
    {
        return v;
    }
    match env("XDG_CACHE_HOME").filter(|v| v.starts_with('/')) {
        Some(x) => format!("{}/pypoetry", x.trim_end_matches('/')),
        None => "~/.cache/pypoetry".into(),
    }
}

/// The name poetry gives this project's environments before the `-py<X.Y>` suffix:
/// `<name>-<first 8 of urlsafe base64 sha256 of the project path>`.
fn poetry_env_base(dir: &Path) -> Result<String> {
    let pyproject = read_toml(&dir.join("pyproject.toml"))?.unwrap_or_default();
    let name = pyproject
        .get("project")
        .and_then(|p| p.get("name"))
        .or_else(|| pyproject.get("tool")?.get("poetry")?.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("non-package-mode");
    // Poetry's canonical package name (runs of `-_.` as one `-`, lowercase), then its
    // sanitizing of characters a directory name should not hold.
    let mut canonical = String::new();
    for c in name.to_lowercase().chars() {
        if "-_.".contains(c) {
            if !canonical.ends_with('-') {
                canonical.push('-');
            }
        } else {
            canonical.push(c);
        }
    }
    Ok(env_name(&canonical, " $`!*@\"\\\r\n\t", dir))
}

/// How poetry and pipenv name an environment kept outside the project: `name` with the
/// characters each avoids as `_`, 42 at most, `-`, and the first 8 characters of the urlsafe
/// base64 of the sha256 of `path` (the project directory or its Pipfile).
fn env_name(name: &str, avoided: &str, path: &Path) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let clean: String = name
        .chars()
        .map(|c| if avoided.contains(c) { '_' } else { c })
        .take(42)
        .collect();
    let digest = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
    let hash = base64::engine::general_purpose::URL_SAFE.encode(&digest[..6]);
    format!("{clean}-{hash}")
}

/// The environment poetry made for the project in `dir` earlier, in its virtualenvs
/// directory: `<name>-<first 8 of urlsafe base64 sha256 of the project path>-py<X.Y>`.
/// When several Pythons have one, poetry's `envs.toml` says which is in use.
fn existing_poetry_env(dir: &Path, venvs: &str, env: Env) -> Result<Option<String>> {
    let venvs_abs = match venvs.strip_prefix("~/") {
        Some(rest) => match env("HOME") {
            Some(h) => PathBuf::from(h).join(rest),
            None => return Ok(None),
        },
        None => dir.join(venvs),
    };
    if !venvs_abs.is_dir() {
        return Ok(None);
    }
    let base = poetry_env_base(dir)?;
    let mut found: Vec<String> = std::fs::read_dir(&venvs_abs)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.strip_prefix(&base).is_some_and(|r| r.starts_with("-py")))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let chosen = match found.len() {
        0 => return Ok(None),
        1 => found.pop(),
        _ => read_toml(&venvs_abs.join("envs.toml"))?.and_then(|t| {
            let minor = t.get(&base)?.get("minor")?.as_str()?.to_string();
            found
                .into_iter()
                .find(|n| n.ends_with(&format!("-py{minor}")))
        }),
    };
    Ok(chosen.map(|n| format!("{}/{n}", venvs.trim_end_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::for_lock_file;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn paths(r: &Resolved) -> Vec<(&str, bool)> {
        r.paths
            .iter()
            .map(|p| (p.declared.as_str(), p.optional))
            .collect()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn npm_workspaces_array_and_object_forms_and_negation() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(
            root,
            "package.json",
            r#"{"workspaces":["packages/*","!packages/skip"]}"#,
        );
        for w in ["packages/a", "packages/b", "packages/skip"] {
            write(root, &format!("{w}/package.json"), "{}");
        }
        // Not a package: no package.json.
        std::fs::create_dir_all(root.join("packages/docs")).unwrap();
        write(root, "packages/a/node_modules/x/package.json", "{}");
        let r = resolve(for_lock_file("package-lock.json").unwrap(), root, &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [
                ("node_modules", false),
                ("packages/a/node_modules", true),
                ("packages/b/node_modules", true)
            ]
        );
        write(
            root,
            "package.json",
            r#"{"workspaces":{"packages":["packages/a"]}}"#,
        );
        assert_eq!(workspace_dirs(root).unwrap(), ["packages/a"]);
    }

    #[test]
    fn pnpm_workspace_yaml_globs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        write(
            root,
            "pnpm-workspace.yaml",
            "packages:\n  - 'apps/**'\n  - libs/*\n  - '!**/test/**'\n",
        );
        for w in [
            "apps/web",
            "apps/nested/api",
            "libs/core",
            "apps/web/test/fixture",
        ] {
            write(root, &format!("{w}/package.json"), "{}");
        }
        assert_eq!(
            workspace_dirs(root).unwrap(),
            ["apps/nested/api", "apps/web", "libs/core"]
        );
        write(root, "pnpm-workspace.yaml", "packages: [\n");
        let e = workspace_dirs(root).unwrap_err().to_string();
        assert!(e.contains("pnpm-workspace.yaml"), "{e}");
    }

    #[test]
    fn yarn_classic_is_node_modules_and_berry_follows_yarnrc() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let yarn = for_lock_file("yarn.lock").unwrap();
        write(root, "yarn.lock", "# yarn lockfile v1\n");
        assert_eq!(
            paths(&resolve(yarn, root, &no_env).unwrap()),
            [("node_modules", false)]
        );

        write(root, "yarn.lock", "__metadata:\n  version: 8\n");
        let r = resolve(yarn, root, &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [
                (".yarn/cache", false),
                (".pnp.cjs", false),
                (".pnp.loader.mjs", true),
                (".yarn/unplugged", true),
                (".yarn/install-state.gz", true)
            ]
        );
        // The global cache is yarn 4's default; the project's own is what gets cached.
        assert_eq!(r.env, [EnvVar::new("YARN_ENABLE_GLOBAL_CACHE", "false")]);

        write(
            root,
            ".yarnrc.yml",
            "nodeLinker: node-modules\ncacheFolder: ./ci-cache/\nenableGlobalCache: false\n",
        );
        write(root, "package.json", r#"{"workspaces":["pkgs/*"]}"#);
        write(root, "pkgs/a/package.json", "{}");
        let r = resolve(yarn, root, &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [
                ("node_modules", false),
                ("ci-cache", false),
                (".yarn/unplugged", true),
                (".yarn/install-state.gz", true),
                ("pkgs/a/node_modules", true)
            ]
        );
        assert!(r.env.is_empty());

        write(
            root,
            ".yarnrc.yml",
            "enableGlobalCache: true\nglobalFolder: /opt/yarn\n",
        );
        let r = resolve(yarn, root, &no_env).unwrap();
        assert!(paths(&r).contains(&("/opt/yarn/cache", false)), "{r:?}");
        let env = |k: &str| (k == "YARN_NODE_LINKER").then(|| "node-modules".to_string());
        let r = resolve(yarn, root, &env).unwrap();
        assert_eq!(r.paths[0].declared, "node_modules");
    }

    #[test]
    fn cargo_caches_downloads_under_its_home() {
        let d = tempfile::tempdir().unwrap();
        let cargo = for_lock_file("Cargo.lock").unwrap();
        let r = resolve(cargo, d.path(), &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [(".cargo/registry", false), (".cargo/git", true)]
        );
        assert_eq!(r.env[0].name, "CARGO_HOME");
        assert_eq!(PathBuf::from(&r.env[0].value), d.path().join(".cargo"));
        let env = |k: &str| (k == "CARGO_HOME").then(|| "/ch/".to_string());
        let r = resolve(cargo, d.path(), &env).unwrap();
        assert_eq!(paths(&r), [("/ch/registry", false), ("/ch/git", true)]);
        assert!(r.env.is_empty());
    }

    #[test]
    fn gradle_maven_terraform_and_dart_follow_the_users_variables() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let abs = |rel: &str| root.join(rel).display().to_string();
        let gradle = for_lock_file("build.gradle").unwrap();
        let r = resolve(gradle, root, &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [
                (".gradle/caches/modules-2", false),
                (".gradle/wrapper/dists", true)
            ]
        );
        assert_eq!(r.env, [EnvVar::new("GRADLE_USER_HOME", abs(".gradle"))]);
        // GitLab's advice, `$CI_PROJECT_DIR/.gradle`: the same relative paths as the default.
        let env = |k: &str| (k == "GRADLE_USER_HOME").then(|| abs(".gradle/"));
        let r = resolve(gradle, root, &env).unwrap();
        assert_eq!(r.paths[0].declared, ".gradle/caches/modules-2");
        let env = |k: &str| (k == "GRADLE_USER_HOME").then(|| "/gh/".to_string());
        let r = resolve(gradle, root, &env).unwrap();
        assert_eq!(
            paths(&r),
            [("/gh/caches/modules-2", false), ("/gh/wrapper/dists", true)]
        );
        assert!(r.env.is_empty());

        let maven = for_lock_file("pom.xml").unwrap();
        let r = resolve(maven, root, &no_env).unwrap();
        assert_eq!(paths(&r), [(".m2/repository", false)]);
        let opts = format!("-Dmaven.repo.local={}", abs(".m2/repository"));
        assert_eq!(r.env, [EnvVar::new("MAVEN_OPTS", opts)]);
        let env = |k: &str| (k == "MAVEN_OPTS").then(|| "-Xmx1g -Dmaven.repo.local=/r/".into());
        assert_eq!(paths(&resolve(maven, root, &env).unwrap()), [("/r", false)]);
        // Other options only: Maven's default repository is where it will go.
        let env = |k: &str| (k == "MAVEN_OPTS").then(|| "-Xmx1g".to_string());
        let r = resolve(maven, root, &env).unwrap();
        assert_eq!(paths(&r), [("~/.m2/repository", false)]);
        assert!(r.notes[0].contains("-Dmaven.repo.local"), "{r:?}");
        let in_dir =
            |k: &str| (k == "MAVEN_OPTS").then(|| format!("-Dmaven.repo.local={}", abs("m2")));
        assert_eq!(
            paths(&resolve(maven, root, &in_dir).unwrap()),
            [("m2", false)]
        );
        write(
            root,
            ".mvn/maven.config",
            "-B\n-Dmaven.repo.local=ci/repo\n",
        );
        assert_eq!(
            paths(&resolve(maven, root, &env).unwrap()),
            [("ci/repo", false)]
        );

        let tf = for_lock_file(".terraform.lock.hcl").unwrap();
        let r = resolve(tf, root, &no_env).unwrap();
        assert_eq!(paths(&r), [(".terraform.d/plugin-cache", false)]);
        assert_eq!(r.create, [".terraform.d/plugin-cache"]);
        assert_eq!(
            r.env,
            [EnvVar::new(
                "TF_PLUGIN_CACHE_DIR",
                abs(".terraform.d/plugin-cache")
            )]
        );
        let env = |k: &str| (k == "TF_PLUGIN_CACHE_DIR").then(|| "/tfc".to_string());
        let r = resolve(tf, root, &env).unwrap();
        assert_eq!(paths(&r), [("/tfc", false)]);
        assert_eq!(r.create, ["/tfc"]);

        let dart = for_lock_file("pubspec.lock").unwrap();
        let r = resolve(dart, root, &no_env).unwrap();
        assert_eq!(
            paths(&r),
            [
                (".pub-cache", false),
                (".dart_tool", false),
                (".flutter-plugins-dependencies", true),
                (".flutter-plugins", true)
            ]
        );
        assert_eq!(r.env, [EnvVar::new("PUB_CACHE", abs(".pub-cache"))]);
        let env = |k: &str| (k == "PUB_CACHE").then(|| "/pc".to_string());
        let r = resolve(dart, root, &env).unwrap();
        assert_eq!(&paths(&r)[..2], [("/pc", false), (".dart_tool", false)]);
        assert!(r.env.is_empty());
    }

    #[test]
    fn poetry_uses_the_environment_it_already_made_for_the_project() {
        let envs = tempfile::tempdir().unwrap();
        let venvs = envs.path().display().to_string();
        // What poetry 2.5 named for this path (urlsafe base64 of its sha256, 8 characters).
        let dir = Path::new("/cachegate-no-such-project");
        assert_eq!(existing_poetry_env(dir, &venvs, &no_env).unwrap(), None);
        for v in ["3.11", "3.12"] {
            std::fs::create_dir(envs.path().join(format!("non-package-mode-c-1-MxJ9-py{v}")))
                .unwrap();
        }
        std::fs::create_dir(envs.path().join("other-c-1-MxJ9-py3.11")).unwrap();
        // Two Pythons: envs.toml says which one poetry uses.
        assert_eq!(existing_poetry_env(dir, &venvs, &no_env).unwrap(), None);
        std::fs::write(
            envs.path().join("envs.toml"),
            "[non-package-mode-c-1-MxJ9]\nminor = \"3.12\"\npatch = \"3.12.1\"\n",
        )
        .unwrap();
        assert_eq!(
            existing_poetry_env(dir, &venvs, &no_env).unwrap(),
            Some(format!("{venvs}/non-package-mode-c-1-MxJ9-py3.12"))
        );
        let env = |k: &str| (k == "POETRY_VIRTUALENVS_PATH").then(|| venvs.clone());
        let r = resolve(for_lock_file("poetry.lock").unwrap(), dir, &env).unwrap();
        assert_eq!(
            paths(&r),
            [(
                format!("{venvs}/non-package-mode-c-1-MxJ9-py3.12").as_str(),
                false
            )]
        );
        assert!(r.env.is_empty(), "{r:?}");
    }

    #[test]
    fn poetry_cache_dir_follows_poetry_cache_dir_then_config_then_xdg() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let poetry = for_lock_file("poetry.lock").unwrap();
        let own = poetry_env_base(root).unwrap();
        let off = |k: &str, extra: &[(&str, &str)]| -> Option<String> {
            if k == "POETRY_VIRTUALENVS_IN_PROJECT" {
                return Some("false".into());
            }
            extra
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let cached = |extra: &[(&str, &str)]| {
            let env = |k: &str| off(k, extra);
            resolve(poetry, root, &env).unwrap().paths[0]
                .declared
                .clone()
        };
        assert_eq!(
            cached(&[]),
            format!("~/.cache/pypoetry/virtualenvs/{own}-py*")
        );
        assert_eq!(
            cached(&[("XDG_CACHE_HOME", "/xdg/")]),
            format!("/xdg/pypoetry/virtualenvs/{own}-py*")
        );
        // platformdirs ignores a relative XDG_CACHE_HOME.
        assert_eq!(
            cached(&[("XDG_CACHE_HOME", "rel")]),
            format!("~/.cache/pypoetry/virtualenvs/{own}-py*")
        );
        let home = root.join("home");
        write(
            &home,
            ".config/pypoetry/config.toml",
            "cache-dir = \"/cfg\"\n",
        );
        let h = home.display().to_string();
        assert_eq!(
            cached(&[("HOME", &h), ("XDG_CACHE_HOME", "/xdg")]),
            format!("/cfg/virtualenvs/{own}-py*")
        );
        assert_eq!(
            cached(&[("HOME", &h), ("POETRY_CACHE_DIR", "/pcd")]),
            format!("/pcd/virtualenvs/{own}-py*")
        );
        write(root, "cfgdir/config.toml", "cache-dir = \"/other\"\n");
        let c = root.join("cfgdir").display().to_string();
        assert_eq!(
            cached(&[("HOME", &h), ("POETRY_CONFIG_DIR", &c)]),
            format!("/other/virtualenvs/{own}-py*")
        );
    }

    fn python_pipenv_name(pipfile: &str, base: &str) -> String {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import base64, hashlib, re, sys; n = re.sub(r'[ &$`!*@\"()\\[\\]\\\\\\r\\n\\t]', '_', sys.argv[2])[0:42]; h = base64.urlsafe_b64encode(hashlib.sha256(sys.argv[1].encode()).digest()[:6]).decode()[:8]; print(n + '-' + h)",
                pipfile,
                base,
            ])
            .output()
            .expect("python3 runs");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn python_tools_use_the_environment_the_user_chose() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let poetry = for_lock_file("poetry.lock").unwrap();
        let r = resolve(poetry, root, &no_env).unwrap();
        assert_eq!(paths(&r), [(".venv", false)]);
        assert_eq!(
            r.env,
            [EnvVar::new("POETRY_VIRTUALENVS_IN_PROJECT", "true")]
        );

        let env = |k: &str| match k {
            "POETRY_VIRTUALENVS_IN_PROJECT" => Some("false".to_string()),
            "POETRY_VIRTUALENVS_PATH" => Some("/envs".to_string()),
            _ => None,
        };
        let r = resolve(poetry, root, &env).unwrap();
        let own = poetry_env_base(root).unwrap();
        assert_eq!(paths(&r), [(format!("/envs/{own}-py*").as_str(), false)]);
        assert!(r.env.is_empty(), "the user's setting is not overridden");

        write(
            root,
            "poetry.toml",
            "[virtualenvs]\nin-project = false\npath = \"{cache-dir}/v\"\n",
        );
        let env = |k: &str| (k == "POETRY_CACHE_DIR").then(|| "/pc".to_string());
        let r = resolve(poetry, root, &env).unwrap();
        assert_eq!(paths(&r), [(format!("/pc/v/{own}-py*").as_str(), false)]);

        let uv = for_lock_file("uv.lock").unwrap();
        let env = |k: &str| (k == "UV_PROJECT_ENVIRONMENT").then(|| "/work/env".to_string());
        let r = resolve(uv, root, &env).unwrap();
        assert_eq!(paths(&r), [("/work/env", false)]);
        assert!(r.env.is_empty());

        let pipenv = for_lock_file("Pipfile.lock").unwrap();
        let env = |k: &str| match k {
            "PIPENV_VENV_IN_PROJECT" => Some("0".to_string()),
            "WORKON_HOME" => Some("/wh".to_string()),
            _ => None,
        };
        let own = format!("/wh/{}", pipenv_env_name(root, &no_env));
        assert_eq!(
            paths(&resolve(pipenv, root, &env).unwrap()),
            [(own.as_str(), false)]
        );
        // What pipenv itself names the environment of /srv/my app/Pipfile.
        assert_eq!(
            pipenv_env_name(Path::new("/srv/my app"), &no_env),
            python_pipenv_name("/srv/my app/Pipfile", "my app")
        );
        assert_eq!(
            paths(&resolve(pipenv, root, &no_env).unwrap()),
            [(".venv", false)]
        );
    }
}
