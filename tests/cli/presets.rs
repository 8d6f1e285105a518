//! Hits you can trust on real layouts (issue 11): the real tools, offline, on local
//! packages (`npm pack` tarballs, wheels built here, a local Cargo registry), and after each
//! hit the environment is used the way the project would use it: `npm ls`, `require`,
//! `import`, `cargo build`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use crate::common::scenarios::{build_wheel, installs};
use crate::common::{Project, require, stderr, stdout, tree_cmd};

/// Where `.ci/run` installs pnpm, yarn berry, uv and poetry.
fn tools_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/cachegate-ci")
}

/// PATH with the tools `.ci/run` installs in front.
fn tools_path() -> String {
    let t = tools_dir();
    format!(
        "{}:{}:{}",
        t.join("node_modules/.bin").display(),
        t.join("py/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn need(tool: &str) -> bool {
    let found = tools_path()
        .split(':')
        .any(|d| Path::new(d).join(tool).is_file());
    require(
        found,
        tool,
        "bash .ci/run (installs it into ~/.cache/cachegate-ci)",
    )
}

/// Run a shell script in `dir` with the tools on PATH and `env`; it must succeed.
pub(crate) fn sh(dir: &Path, env: &[(&str, &str)], script: &str) -> String {
    let out = StdCommand::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .env("PATH", tools_path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn cmd(s: &str) -> Vec<String> {
    tree_cmd(s)
}

/// A project that shares `p`'s store, holding a copy of `p`'s files without `skip`: the
/// next job's fresh checkout.
pub(crate) fn fresh_copy(p: &Project, skip: &[&str]) -> Project {
    let mut q = Project::new();
    q.store = p.store.clone();
    sh(&p.dir, &[], &format!("cp -a . {}", q.dir.display()));
    for s in skip {
        sh(&q.dir, &[], &format!("rm -rf {s}"));
    }
    q
}

/// `dep-<v>.tgz` made by `npm pack`: package `dep` whose main exports `dep <v>`.
fn dep_tarballs(root: &Path) -> (PathBuf, PathBuf) {
    for v in ["1.0.0", "2.0.0"] {
        let src = root.join(format!("dep-src-{v}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("package.json"),
            format!(r#"{{"name":"dep","version":"{v}","main":"index.js"}}"#),
        )
        .unwrap();
        fs::write(
            src.join("index.js"),
            format!("module.exports = 'dep {v}';\n"),
        )
        .unwrap();
        sh(
            &src,
            &[],
            "npm pack --silent --pack-destination .. >/dev/null",
        );
    }
    (root.join("dep-1.0.0.tgz"), root.join("dep-2.0.0.tgz"))
}

const NPM_OFFLINE: &str = "npm ci --offline --no-audit --no-fund";

/// npm records `file:` tarballs relative to the project, so they live inside it: a fresh
/// copy finds them where the lock says.
fn npm_workspace(p: &Project) {
    dep_tarballs(&p.path("tarballs"));
    p.write(
        "package.json",
        r#"{"name":"root","private":true,"workspaces":["packages/*"],"scripts":{"t":"true"},"dependencies":{"dep":"file:tarballs/dep-2.0.0.tgz"}}"#,
    )
    .write(
        "packages/a/package.json",
        r#"{"name":"a","version":"1.0.0","dependencies":{"dep":"file:../../tarballs/dep-2.0.0.tgz"}}"#,
    )
    .write(
        "packages/b/package.json",
        r#"{"name":"b","version":"1.0.0","dependencies":{"dep":"file:../../tarballs/dep-1.0.0.tgz"}}"#,
    );
    sh(
        &p.dir,
        &[],
        "npm install --package-lock-only --offline --no-audit --no-fund",
    );
}

#[test]
fn npm_workspaces_restore_the_nested_conflicting_version() {
    if !need("npm") {
        return;
    }
    let p = Project::new();
    npm_workspace(&p);
    let lock = ["--lock", "package-lock.json"];
    p.test()
        .ensure(&lock, &cmd(NPM_OFFLINE))
        .stderr_contains("packages/b/node_modules")
        .stderr_contains("cachegate: saved npm")
        .installs(1)
        .run();
    assert!(
        p.path("packages/b/node_modules/dep").is_dir(),
        "npm nests b's dep"
    );

    let q = fresh_copy(
        &p,
        &["node_modules", "packages/*/node_modules", "installs.log"],
    );
    q.test()
        .ensure(&lock, &cmd(NPM_OFFLINE))
        .stderr_contains("cachegate: hit npm")
        .installs(0)
        .warnings(0)
        .run();
    sh(&q.dir, &[], "npm ls --all --offline >/dev/null");
    let nested = sh(
        &q.path("packages/b"),
        &[],
        "node -p \"require('dep/package.json').version\"",
    );
    assert_eq!(nested.trim(), "1.0.0");
    let hoisted = sh(&q.path("packages/a"), &[], "node -p \"require('dep')\"");
    assert_eq!(hoisted.trim(), "dep 2.0.0");
}

#[test]
fn a_package_json_changed_without_its_lock_is_not_a_hit() {
    if !need("npm") {
        return;
    }
    let p = Project::new();
    npm_workspace(&p);
    let lock = ["--lock", "package-lock.json"];
    p.test().ensure(&lock, &cmd(NPM_OFFLINE)).installs(1).run();

    // Scripts are not what `npm ci` checks: still a hit.
    let root = fs::read_to_string(p.path("package.json")).unwrap();
    p.write(
        "package.json",
        &root.replace(r#""t":"true""#, r#""t":"false""#),
    );
    p.test()
        .ensure(&lock, &cmd(NPM_OFFLINE))
        .stderr_contains("cachegate: hit npm")
        .installs(1)
        .run();

    // A dependency added to a workspace package only: `npm ci` must get to say no.
    let b = fs::read_to_string(p.path("packages/b/package.json")).unwrap();
    p.write(
        "packages/b/package.json",
        &b.replace(
            r#""dependencies":{"#,
            r#""dependencies":{"left-pad":"1.3.0","#,
        ),
    );
    let o = p
        .test()
        .ensure(&lock, &cmd(NPM_OFFLINE))
        .any_status()
        .stderr_lacks("cachegate: hit")
        .installs(2)
        .run();
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("npm error"), "{}", stderr(&o));
}

/// Writes the pnpm project's lock offline from `store`, removes what that install made
/// (`made`, as `rm -rf` takes it), and returns the frozen install a job runs.
fn pnpm_locked(p: &Project, store: &Path, made: &str) -> String {
    sh(
        &p.dir,
        &[("HOME", p.home.to_str().unwrap())],
        &format!(
            "pnpm install --offline --store-dir {} && rm -rf {made}",
            store.display()
        ),
    );
    format!(
        "pnpm install --offline --frozen-lockfile --store-dir {}",
        store.display()
    )
}

#[test]
fn pnpm_workspace_packages_resolve_their_dependencies_after_a_hit() {
    if !need("pnpm") {
        return;
    }
    let p = Project::new();
    let (v1, v2) = dep_tarballs(p.tmp.path());
    let store = p.tmp.path().join("pnpm-store");
    p.write("package.json", r#"{"name":"root","private":true}"#)
        .write("pnpm-workspace.yaml", "packages:\n  - 'packages/*'\n")
        .write(
            "packages/a/package.json",
            &format!(
                r#"{{"name":"a","version":"1.0.0","main":"index.js","dependencies":{{"dep":"file:{}"}}}}"#,
                v2.display()
            ),
        )
        .write("packages/a/index.js", "module.exports = require('dep');\n")
        .write(
            "packages/b/package.json",
            &format!(
                r#"{{"name":"b","version":"1.0.0","dependencies":{{"dep":"file:{}","a":"workspace:*"}}}}"#,
                v1.display()
            ),
        );
    let install = pnpm_locked(&p, &store, "node_modules packages/*/node_modules");
    let lock = ["--lock", "pnpm-lock.yaml"];
    let env = [("PATH", tools_path())];
    p.test()
        .ensure(&lock, &cmd(&install))
        .envs(env.clone())
        .stderr_contains("workspaces: packages/a, packages/b")
        .installs(1)
        .run();

    let q = fresh_copy(
        &p,
        &["node_modules", "packages/*/node_modules", "installs.log"],
    );
    q.test()
        .ensure(&lock, &cmd(&install))
        .envs(env)
        .stderr_contains("cachegate: hit pnpm")
        .installs(0)
        .warnings(0)
        .run();
    let home = [("HOME", q.home.to_str().unwrap())];
    let got = sh(
        &q.dir,
        &home,
        "pnpm -r --reporter=silent exec node -e \"console.log(process.cwd().split('/').pop(), require('dep'))\"",
    );
    assert!(
        got.contains("a dep 2.0.0") && got.contains("b dep 1.0.0"),
        "{got}"
    );
    let a = sh(&q.path("packages/b"), &home, "node -p \"require('a')\"");
    assert_eq!(a.trim(), "dep 2.0.0");
}

fn yarn_berry(linker: Option<&str>) {
    if !need("yarn") {
        return;
    }
    let p = Project::new();
    let (_, v2) = dep_tarballs(p.tmp.path());
    p.write(
        "package.json",
        &format!(
            r#"{{"name":"app","private":true,"dependencies":{{"dep":"file:{}"}}}}"#,
            v2.display()
        ),
    )
    .write("yarn.lock", "");
    if let Some(l) = linker {
        p.write(".yarnrc.yml", &format!("nodeLinker: {l}\n"));
    }
    let home = p.home.to_str().unwrap().to_string();
    let yarn_env = [
        ("HOME", home.as_str()),
        ("YARN_ENABLE_TELEMETRY", "0"),
        ("YARN_ENABLE_NETWORK", "0"),
    ];
    // The lock file, made once the way a developer would (CI=true makes yarn immutable by
    // default); the install artifacts go.
    sh(
        &p.dir,
        &yarn_env,
        "YARN_ENABLE_GLOBAL_CACHE=false yarn install --no-immutable && rm -rf .yarn .pnp.* node_modules",
    );
    let lock = ["--lock", "yarn.lock"];
    let install = cmd("yarn install --immutable");
    let env = [
        ("PATH", tools_path()),
        ("YARN_ENABLE_TELEMETRY", "0".into()),
        ("YARN_ENABLE_NETWORK", "0".into()),
    ];
    let shown = format!("nodeLinker {}", linker.unwrap_or("pnp"));
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains(&shown)
        .stderr_contains("YARN_ENABLE_GLOBAL_CACHE=false")
        .stderr_contains("cachegate: saved yarn")
        .installs(1)
        .warnings(0)
        .run();

    let q = fresh_copy(
        &p,
        &[
            ".yarn",
            ".pnp.cjs",
            ".pnp.loader.mjs",
            "node_modules",
            "installs.log",
        ],
    );
    q.test()
        .ensure(&lock, &install)
        .envs(env)
        .stderr_contains("cachegate: hit yarn")
        .installs(0)
        .warnings(0)
        .run();
    let home = q.home.to_str().unwrap().to_string();
    let got = sh(
        &q.dir,
        &[
            ("HOME", home.as_str()),
            ("YARN_ENABLE_TELEMETRY", "0"),
            ("YARN_ENABLE_NETWORK", "0"),
        ],
        "yarn node -e \"console.log(require('dep'))\"",
    );
    assert_eq!(got.trim(), "dep 2.0.0");
}

#[test]
fn yarn_berry_pnp_is_cached_and_requires_work_after_a_hit() {
    yarn_berry(None);
}

#[test]
fn yarn_berry_node_modules_linker_is_cached_and_requires_work_after_a_hit() {
    yarn_berry(Some("node-modules"));
}

fn git(dir: &Path, args: &str) -> String {
    sh(
        dir,
        &[
            ("GIT_AUTHOR_NAME", "t"),
            ("GIT_AUTHOR_EMAIL", "t@example.invalid"),
            ("GIT_COMMITTER_NAME", "t"),
            ("GIT_COMMITTER_EMAIL", "t@example.invalid"),
        ],
        &format!("git {args}"),
    )
}

/// A local Cargo registry holding crate `dep` 0.1.0, as `.crate` file and index entry.
fn local_registry(root: &Path, env: &[(&str, &str)]) -> PathBuf {
    let src = root.join("dep-src");
    fs::create_dir_all(src.join("src")).unwrap();
    fs::write(
        src.join("Cargo.toml"),
        "[package]\nname = \"dep\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(
        src.join("src/lib.rs"),
        "pub fn hi() -> &'static str { \"hi from dep\" }\n",
    )
    .unwrap();
    let reg = root.join("registry");
    fs::create_dir_all(reg.join("index/3/d")).unwrap();
    sh(
        &src,
        env,
        &format!(
            "cargo package --offline --no-verify --allow-dirty -q && cp target/package/dep-0.1.0.crate {reg} && \
             sum=$(sha256sum {reg}/dep-0.1.0.crate | cut -d' ' -f1) && \
             printf '{{\"name\":\"dep\",\"vers\":\"0.1.0\",\"deps\":[],\"cksum\":\"%s\",\"features\":{{}},\"yanked\":false}}\\n' $sum > {reg}/index/3/d/dep",
            reg = reg.display()
        ),
    );
    reg
}

#[test]
fn cargo_keeps_a_committed_cargo_config_and_builds_offline_after_a_hit() {
    if !require(
        crate::common::which("cargo").is_some() && crate::common::which("git").is_some(),
        "cargo and git",
        "rustup and apt-get install git",
    ) {
        return;
    }
    let p = Project::new();
    // rustup's proxies find their toolchains from the real home, not the test's.
    let rustup = std::env::var("RUSTUP_HOME")
        .unwrap_or_else(|_| format!("{}/.rustup", std::env::var("HOME").unwrap()));
    let scratch_home = p.tmp.path().join("cargo-scratch").display().to_string();
    let scratch_target = p.tmp.path().join("dep-src/target").display().to_string();
    let scratch = [
        ("RUSTUP_HOME", rustup.as_str()),
        ("CARGO_HOME", scratch_home.as_str()),
        ("CARGO_TARGET_DIR", scratch_target.as_str()),
    ];
    let reg = local_registry(p.tmp.path(), &scratch);
    let config = format!(
        "# committed: where this project's crates come from\n[source.crates-io]\nreplace-with = \"local\"\n[source.local]\nlocal-registry = \"{}\"\n",
        reg.display()
    );
    p.write(
        "Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\ndep = \"0.1\"\n",
    )
    .write("src/main.rs", "fn main() { println!(\"{}\", dep::hi()); }\n")
    .write(".cargo/config.toml", &config)
    .write(".gitignore", "/target\n/.cargo/*\n!/.cargo/config.toml\n/installs.log\n");
    let cargo_home = p.path(".cargo").display().to_string();
    let home = [
        ("RUSTUP_HOME", rustup.as_str()),
        ("CARGO_HOME", cargo_home.as_str()),
    ];
    sh(&p.dir, &home, "cargo generate-lockfile --offline -q");
    git(&p.dir, "init -q");
    git(&p.dir, "add -A");
    git(&p.dir, "commit -q -m init");
    let fetch = cmd("cargo fetch --offline");
    let lock = ["--lock", "Cargo.lock"];
    // One project for both jobs, as CI_PROJECT_PATH says in GitLab (the clone's origin
    // would name another).
    p.test()
        .ensure(&lock, &fetch)
        .env("RUSTUP_HOME", &rustup)
        .env("CACHEGATE_NAMESPACE", "group/app")
        .stderr_contains("caching .cargo/registry, .cargo/git")
        .stderr_contains("cachegate: saved cargo")
        .installs(1)
        .run();

    // The next job's checkout: a clone, with the committed config and nothing else.
    let mut q = Project::new();
    q.store = p.store.clone();
    fs::remove_dir(&q.dir).unwrap();
    git(
        p.tmp.path(),
        &format!("clone -q {} {}", p.dir.display(), q.dir.display()),
    );
    q.test()
        .ensure(&lock, &fetch)
        .env("RUSTUP_HOME", &rustup)
        .env("CACHEGATE_NAMESPACE", "group/app")
        .stderr_contains("cachegate: hit cargo")
        .installs(0)
        .warnings(0)
        .run();
    assert_eq!(git(&q.dir, "status --porcelain"), "");
    assert_eq!(
        fs::read_to_string(q.path(".cargo/config.toml")).unwrap(),
        config
    );
    let (q_home, q_target) = (
        q.path(".cargo").display().to_string(),
        q.path("target").display().to_string(),
    );
    let qhome = [
        ("RUSTUP_HOME", rustup.as_str()),
        ("CARGO_HOME", q_home.as_str()),
        ("CARGO_TARGET_DIR", q_target.as_str()),
    ];
    let built = sh(&q.dir, &qhome, "cargo run --offline -q");
    assert_eq!(built.trim(), "hi from dep");
}

fn pyenv_root() -> Option<PathBuf> {
    let root = std::env::var("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".pyenv"));
    root.join("versions").is_dir().then_some(root)
}

/// The newest installed pyenv version of `minor` (e.g. "3.12" -> "3.12.1").
fn pyenv_version(root: &Path, minor: &str) -> Option<String> {
    fs::read_dir(root.join("versions"))
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.strip_prefix(minor).is_some_and(|r| r.starts_with('.')))
        .max()
}

/// The venv install, with the interpreter `.python-version` names (or `$PY` when set).
fn venv_install(p: &Project) -> Vec<String> {
    cmd(&format!(
        "${{PY:-$PYENV_ROOT/versions/$(cat .python-version)/bin/python}} -m venv .venv && .venv/bin/pip install -q --no-index --find-links {} -r requirements.txt",
        p.tmp.path().join("wheels").display()
    ))
}

fn imports_greet(p: &Project) -> String {
    sh(
        &p.dir,
        &[],
        ".venv/bin/python -c 'import greet, sys; print(greet.VERSION, sys.version_info[1])'",
    )
}

#[test]
fn a_venv_built_with_one_python_is_not_restored_for_another() {
    let Some(root) = pyenv_root() else {
        require(false, "pyenv", "pyenv with Pythons 3.12 and 3.13");
        return;
    };
    let (Some(v12), Some(v13)) = (pyenv_version(&root, "3.12"), pyenv_version(&root, "3.13"))
    else {
        require(false, "pyenv 3.12 and 3.13", "pyenv install 3.12 3.13");
        return;
    };
    let p = Project::new();
    build_wheel(&p.tmp.path().join("wheels"), "1.0");
    p.write("requirements.txt", "greet==1.0\n")
        .write(".python-version", &format!("{v12}\n"));
    let lock = ["--lock", "requirements.txt"];
    let env = [("PYENV_ROOT", root.to_str().unwrap())];
    p.test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .installs(1)
        .run();
    let key12 = p
        .test()
        .args(["key", "--explain", "--lock", "requirements.txt"])
        .envs(env)
        .stdout_contains(&format!("runtime  python cpython-{v12} "))
        .run();
    fs::remove_dir_all(p.path(".venv")).unwrap();
    p.test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .stderr_contains("cachegate: hit pip")
        .installs(1)
        .run();
    assert_eq!(imports_greet(&p).trim(), "1.0 12");

    // The project moves to 3.13, the lock stays: the 3.12 venv must not come back.
    p.write(".python-version", &format!("{v13}\n"));
    fs::remove_dir_all(p.path(".venv")).unwrap();
    p.test()
        .args(["explain", "--lock", "requirements.txt"])
        .envs(env)
        .status(1)
        .stdout_contains(&format!("runtime: python cpython-{v12}"))
        .run();
    p.test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .stderr_contains("cachegate: miss pip")
        .installs(2)
        .run();
    assert_eq!(imports_greet(&p).trim(), "1.0 13");
    assert!(stdout(&key12).contains("runtime"));

    // --no-runtime-key: one key for both, as before.
    let key = |v: &str| {
        p.write(".python-version", &format!("{v}\n"));
        stdout(
            &p.test()
                .args(["key", "--no-runtime-key", "--lock", "requirements.txt"])
                .envs(env)
                .run(),
        )
    };
    assert_eq!(key(&v12), key(&v13));
}

#[test]
fn a_venv_whose_interpreter_is_gone_is_a_miss_and_this_machines_save_wins() {
    let Some(root) = pyenv_root() else {
        require(false, "pyenv", "pyenv with Python 3.12");
        return;
    };
    let Some(v12) = pyenv_version(&root, "3.12") else {
        require(false, "pyenv 3.12", "pyenv install 3.12");
        return;
    };
    let p = Project::new();
    build_wheel(&p.tmp.path().join("wheels"), "1.0");
    p.write("requirements.txt", "greet==1.0\n")
        .write(".python-version", &format!("{v12}\n"));
    // An interpreter only the first machine has (a uv-downloaded Python, another image).
    let interp = p.tmp.path().join("interp");
    fs::create_dir_all(&interp).unwrap();
    std::os::unix::fs::symlink(
        root.join("versions").join(&v12).join("bin/python3"),
        interp.join("python3"),
    )
    .unwrap();
    let lock = ["--lock", "requirements.txt"];
    let py = interp.join("python3");
    let env = [("PYENV_ROOT", root.to_str().unwrap())];
    p.test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .env("PY", py.as_os_str())
        .stderr_contains("cachegate: saved pip")
        .installs(1)
        .run();
    assert!(
        fs::read_link(p.path(".venv/bin/python3"))
            .unwrap()
            .starts_with(&interp)
    );

    fs::remove_dir_all(&interp).unwrap();
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = p
        .test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .stderr_contains("does not fit this machine")
        .stderr_contains(".venv/bin/python3 -> ")
        .stderr_contains("dangling")
        .stderr_contains("cachegate: saved pip")
        .installs(2)
        .warnings(1)
        .run();
    assert!(!stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    assert_eq!(imports_greet(&p).trim(), "1.0 12");

    // This machine's verified entry replaced the unfit one: the next job is a hit.
    fs::remove_dir_all(p.path(".venv")).unwrap();
    p.test()
        .ensure(&lock, &venv_install(&p))
        .envs(env)
        .stderr_contains("cachegate: hit pip")
        .installs(2)
        .warnings(0)
        .run();
    assert_eq!(imports_greet(&p).trim(), "1.0 12");
    let manifests = p
        .store_files()
        .into_iter()
        .filter(|f| f.ends_with(".json"))
        .count();
    let archives = p
        .store_files()
        .into_iter()
        .filter(|f| f.ends_with(".tar.zst"))
        .count();
    assert_eq!((manifests, archives), (1, 1), "{:?}", p.store_files());
}

#[test]
fn a_user_set_uv_project_environment_is_what_gets_cached() {
    if !need("uv") {
        return;
    }
    let p = Project::new();
    build_wheel(&p.path("wheels"), "1.0");
    p.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"greet==1.0\"]\n\n[tool.uv]\npackage = false\n",
    );
    let uv_env = [
        ("UV_PYTHON_DOWNLOADS", "never"),
        ("UV_NO_CACHE", "1"),
        ("HOME", p.home.to_str().unwrap()),
    ];
    sh(
        &p.dir,
        &uv_env,
        "uv lock --offline --no-index --find-links wheels -q",
    );
    let venv = p.tmp.path().join("uv-envs/app");
    let install = cmd("uv sync --offline --no-index --find-links wheels --frozen -q");
    let lock = ["--lock", "uv.lock"];
    let env = [
        ("PATH", tools_path()),
        ("UV_PYTHON_DOWNLOADS", "never".into()),
        ("UV_NO_CACHE", "1".into()),
        ("UV_PROJECT_ENVIRONMENT", venv.display().to_string()),
    ];
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains(&format!("caching {}", venv.display()))
        .stderr_contains("cachegate: saved uv")
        .installs(1)
        .run();
    assert!(!p.path(".venv").exists(), "uv used the user's environment");
    fs::remove_dir_all(&venv).unwrap();
    p.test()
        .ensure(&lock, &install)
        .envs(env)
        .stderr_contains("cachegate: hit uv")
        .installs(1)
        .warnings(0)
        .run();
    let got = sh(
        &p.dir,
        &[],
        &format!(
            "{}/bin/python -c 'import greet; print(greet.VERSION)'",
            venv.display()
        ),
    );
    assert_eq!(got.trim(), "1.0");
}

#[test]
fn poetry_virtualenvs_outside_the_project_are_what_gets_cached() {
    if !need("poetry") {
        return;
    }
    let p = Project::new();
    build_wheel(&p.path("wheels"), "1.0");
    p.write(
        "pyproject.toml",
        "[tool.poetry]\npackage-mode = false\n\n[tool.poetry.dependencies]\npython = \">=3.10\"\ngreet = { path = \"wheels/greet-1.0-py3-none-any.whl\" }\n",
    );
    let envs = p.tmp.path().join("poetry-envs");
    let poetry_env = [
        ("HOME", p.home.to_str().unwrap()),
        ("POETRY_VIRTUALENVS_IN_PROJECT", "false"),
        ("POETRY_VIRTUALENVS_PATH", envs.to_str().unwrap()),
    ];
    sh(&p.dir, &poetry_env, "poetry lock -q");
    let install = cmd("poetry install -q");
    let lock = ["--lock", "poetry.lock"];
    let env = [
        ("PATH", tools_path()),
        ("POETRY_VIRTUALENVS_IN_PROJECT", "false".into()),
        ("POETRY_VIRTUALENVS_PATH", envs.display().to_string()),
    ];
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains(&format!("caching {}", envs.display()))
        .stderr_lacks("POETRY_VIRTUALENVS_IN_PROJECT=true")
        .stderr_contains("cachegate: saved poetry")
        .installs(1)
        .run();
    assert!(!p.path(".venv").exists());
    fs::remove_dir_all(&envs).unwrap();
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: hit poetry")
        .installs(1)
        .warnings(0)
        .run();
    let got = sh(
        &p.dir,
        &poetry_env,
        "poetry run python -c 'import greet; print(greet.VERSION)'",
    );
    assert_eq!(got.trim(), "1.0");
}

#[test]
fn a_restore_never_replaces_files_the_repository_tracks() {
    if !require(
        crate::common::which("git").is_some(),
        "git",
        "apt-get install git",
    ) {
        return;
    }
    let p = Project::new();
    p.write("app.lock", "v1")
        .write("out/tracked.txt", "committed\n")
        .write(".gitignore", "installs.log\nout/gen\n");
    git(&p.dir, "init -q");
    git(&p.dir, "add -A");
    git(&p.dir, "commit -q -m init");
    let args = ["--lock", "app.lock", "--path", "out"];
    let make = cmd("mkdir -p out && echo generated > out/gen");
    p.test().ensure(&args, &make).installs(1).run();
    fs::remove_file(p.path("out/gen")).unwrap();
    // Committed since the entry was saved.
    p.write("out/tracked.txt", "committed again\n");
    git(&p.dir, "commit -q -am again");

    // The next job: a restore would replace out/, tracked.txt included.
    let o = p
        .test()
        .ensure(&args, &make)
        .stderr_contains("out/tracked.txt")
        .stderr_contains("tracks")
        .stderr_lacks("cachegate: hit")
        .warnings(1)
        .installs(2)
        .run();
    assert_eq!(
        fs::read_to_string(p.path("out/tracked.txt")).unwrap(),
        "committed again\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(git(&p.dir, "status --porcelain"), "");
}

#[test]
fn path_globs_save_and_restore_every_match() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "packages/*/node_modules"];
    let make = cmd(
        "for w in a b c; do mkdir -p packages/$w/node_modules/m && echo $w > packages/$w/node_modules/m/f; done",
    );
    p.write("packages/d/package.json", "{}");
    p.test()
        .ensure(&args, &make)
        .stderr_contains("cachegate: saved")
        .installs(1)
        .run();
    for w in ["a", "b", "c"] {
        fs::remove_dir_all(p.path(&format!("packages/{w}/node_modules"))).unwrap();
    }
    p.test()
        .ensure(&args, &make)
        .stderr_contains("cachegate: hit")
        .installs(1)
        .warnings(0)
        .run();
    for w in ["a", "b", "c"] {
        assert_eq!(
            fs::read_to_string(p.path(&format!("packages/{w}/node_modules/m/f"))).unwrap(),
            format!("{w}\n")
        );
    }
    assert!(!p.path("packages/d/node_modules").exists());

    // A glob that matches nothing after the command: the usual warning, nothing saved.
    let none = ["--lock", "app.lock", "--path", "nothing/*/here"];
    p.test()
        .ensure(&none, &cmd("true"))
        .stderr_contains("nothing saved: nothing/*/here does not exist")
        .warnings(1)
        .installs(2)
        .run();
    assert_eq!(installs(&p), 2);
}

#[test]
fn presets_lists_every_preset_on_stdout_and_as_json() {
    let t = crate::common::Test::new()
        .args(["presets"])
        .stdout_contains("cargo\n  lock file           Cargo.lock\n  cached paths        .cargo/registry, .cargo/git")
        .stdout_contains("runtime in the key  node: ABI")
        .stdout_contains("consistency inputs  name, version and dependency tables of pyproject.toml")
        .run();
    for p in cachegate::preset::PRESETS {
        assert!(
            stdout(&t).contains(&format!("{}\n  lock file", p.name)),
            "{}",
            p.name
        );
    }
    let j = crate::common::Test::new().args(["presets", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(&stdout(&j)).unwrap();
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), cachegate::preset::PRESETS.len());
    let yarn = list.iter().find(|p| p["name"] == "yarn").unwrap();
    assert_eq!(yarn["locks"][0], "yarn.lock");
    assert_eq!(yarn["runtime"], "node");
    assert_eq!(yarn["inputs"], "package_json");
}

#[test]
fn a_lock_that_matches_nothing_suggests_the_lock_files_that_exist() {
    let p = Project::new();
    p.write("package-lock.json", "{}").write("Cargo.lock", "");
    p.test()
        .ensure(&["--lock", "poetry.lock"], &cmd("true"))
        .status(2)
        .stderr_contains("\"poetry.lock\" matches nothing")
        .stderr_contains("lock files there: Cargo.lock, package-lock.json")
        .installs(0)
        .run();
}

#[test]
fn key_explain_shows_the_node_runtime_and_workspace_inputs() {
    if !need("node") {
        return;
    }
    let p = Project::new();
    p.write("package-lock.json", "{}")
        .write(
            "package.json",
            r#"{"workspaces":["packages/*"],"dependencies":{"x":"1"}}"#,
        )
        .write("packages/a/package.json", r#"{"name":"a"}"#);
    let o = p
        .test()
        .args(["key", "--explain", "--lock", "package-lock.json"])
        .stdout_contains("runtime  node abi ")
        .stdout_contains("input    package.json blake3:")
        .stdout_contains("input    packages/a/package.json blake3:")
        .stdout_contains("path     packages/a/node_modules")
        .run();
    let off = p
        .test()
        .args([
            "key",
            "--explain",
            "--no-runtime-key",
            "--lock",
            "package-lock.json",
        ])
        .stdout_lacks("runtime")
        .run();
    assert_ne!(stdout(&o).lines().next(), stdout(&off).lines().next());
}

#[test]
fn a_manifest_listing_a_path_the_key_does_not_declare_is_not_restored() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "packages/*/node_modules"];
    let make = cmd("mkdir -p packages/a/node_modules && echo a > packages/a/node_modules/f");
    p.test().ensure(&args, &make).installs(1).run();
    // Someone who can write the store points the entry elsewhere.
    let manifest = p
        .store_files()
        .into_iter()
        .find(|f| f.ends_with(".json"))
        .unwrap();
    let path = p.store.join(&manifest);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        text.replace("\"packages/a/node_modules\"", "\"src\""),
    )
    .unwrap();
    p.write("src/main.js", "keep me\n");
    fs::remove_dir_all(p.path("packages/a/node_modules")).unwrap();
    p.test()
        .ensure(&args, &make)
        .stderr_contains("it lists \"src\", which is not one of the cached paths")
        .stderr_lacks("cachegate: hit")
        .installs(2)
        .run();
    assert_eq!(
        fs::read_to_string(p.path("src/main.js")).unwrap(),
        "keep me\n"
    );
}

/// A poetry project of its own on `home`'s shared virtualenvs (poetry's default, under
/// XDG_CACHE_HOME), depending on the wheel `pkg`.
fn poetry_out_of_project(p: &Project, pkg: &str, xdg: &Path) -> Vec<(&'static str, String)> {
    crate::common::scenarios::build_named_wheel(&p.path("wheels"), pkg, "1.0");
    p.write(
        "pyproject.toml",
        &format!(
            "[tool.poetry]\npackage-mode = false\n\n[tool.poetry.dependencies]\npython = \">=3.10\"\n{pkg} = {{ path = \"wheels/{pkg}-1.0-py3-none-any.whl\" }}\n"
        ),
    );
    let env = vec![
        ("PATH", tools_path()),
        ("HOME", p.home.display().to_string()),
        ("XDG_CACHE_HOME", xdg.display().to_string()),
        ("POETRY_VIRTUALENVS_IN_PROJECT", "false".into()),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sh(&p.dir, &refs, "poetry lock -q");
    env
}

fn poetry_imports(p: &Project, env: &[(&'static str, String)], pkg: &str) -> String {
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sh(
        &p.dir,
        &refs,
        &format!("poetry run python -c 'import {pkg}; print({pkg}.VERSION)'"),
    )
}

#[test]
fn poetry_out_of_project_hit_never_replaces_another_projects_venv_nor_hits_at_another_path() {
    if !need("poetry") {
        return;
    }
    let a = Project::new();
    let mut b = Project::new();
    b.store = a.store.clone();
    b.home = a.home.clone();
    let xdg = a.tmp.path().join("shared-xdg");
    let a_env = poetry_out_of_project(&a, "greet", &xdg);
    let b_env = poetry_out_of_project(&b, "other", &xdg);
    let install = cmd("poetry install -q");
    let lock = ["--lock", "poetry.lock"];
    let venvs = xdg.join("pypoetry/virtualenvs");
    a.test()
        .ensure(&lock, &install)
        .envs(a_env.clone())
        .stderr_contains(&format!("caching this project's, {}", venvs.display()))
        // The hit/miss line's preset note says why another checkout path misses.
        .stderr_contains("so a checkout at another path is another entry")
        .stderr_contains("cachegate: saved poetry")
        .installs(1)
        .run();
    b.test()
        .ensure(&lock, &install)
        .envs(b_env.clone())
        .stderr_contains("cachegate: saved poetry")
        .installs(1)
        .run();
    let envs_of = || {
        let mut v: Vec<String> = fs::read_dir(&venvs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let both = envs_of();
    assert_eq!(both.len(), 2, "{both:?}");

    // A's environment is lost (a cleaned runner); its hit brings back A's alone and leaves
    // B's in place.
    let a_venv = sh(
        &a.dir,
        &a_env
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
        "poetry env info -p",
    );
    fs::remove_dir_all(a_venv.trim()).unwrap();
    a.test()
        .ensure(&lock, &install)
        .envs(a_env.clone())
        .stderr_contains("cachegate: hit poetry")
        .installs(1)
        .warnings(0)
        .run();
    assert_eq!(envs_of(), both);
    assert_eq!(poetry_imports(&a, &a_env, "greet").trim(), "1.0");
    assert_eq!(poetry_imports(&b, &b_env, "other").trim(), "1.0");

    // The same project cloned at another path: poetry would look for another venv name,
    // so this is a miss that installs, never a hit that leaves poetry an empty venv.
    let c = fresh_copy(&a, &["installs.log"]);
    c.test()
        .ensure(&lock, &install)
        .envs(a_env.clone())
        .stderr_contains("cachegate: miss poetry")
        .installs(1)
        .run();
    assert_eq!(poetry_imports(&c, &a_env, "greet").trim(), "1.0");
}

#[test]
fn poetry_with_xdg_cache_home_saves_its_venv_and_an_empty_entry_is_never_a_hit() {
    if !need("poetry") {
        return;
    }
    let p = Project::new();
    let xdg = p.tmp.path().join("xdg-cache");
    let env = poetry_out_of_project(&p, "greet", &xdg);
    let install = cmd("poetry install -q");
    let lock = ["--lock", "poetry.lock"];
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_lacks("does not exist")
        .stderr_contains("cachegate: saved poetry")
        .installs(1)
        .warnings(0)
        .run();
    let venvs = xdg.join("pypoetry/virtualenvs");
    fs::remove_dir_all(&venvs).unwrap();
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: hit poetry")
        .installs(1)
        .run();
    assert_eq!(poetry_imports(&p, &env, "greet").trim(), "1.0");

    // A command that leaves only an empty directory where the tree should be: nothing is
    // saved, and the next run installs again.
    let q = Project::new();
    q.write("app.lock", "1");
    let args = ["--lock", "app.lock", "--path", "out"];
    q.test()
        .ensure(&args, &cmd("mkdir -p out/empty"))
        .stderr_contains("nothing saved: out holds no files after the command")
        .installs(1)
        .warnings(1)
        .run();
    q.test()
        .ensure(&args, &cmd("mkdir -p out/empty"))
        .stderr_contains("cachegate: miss")
        .installs(2)
        .run();
}

/// A uv workspace: a root that is no package, members `pkg-a` and `pkg-b` (uv's own build
/// backend, which uv runs without downloading anything) and the local wheel `greet`.
fn uv_workspace(p: &Project) -> Vec<(&'static str, String)> {
    build_wheel(&p.path("wheels"), "1.0");
    p.write(
        "pyproject.toml",
        "[project]\nname = \"root\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"pkg-a\", \"pkg-b\", \"greet==1.0\"]\n\n[tool.uv]\npackage = false\n\n[tool.uv.sources]\npkg-a = { workspace = true }\npkg-b = { workspace = true }\n\n[tool.uv.workspace]\nmembers = [\"packages/*\"]\n",
    );
    for m in ["a", "b"] {
        p.write(
            &format!("packages/pkg-{m}/pyproject.toml"),
            &format!("[project]\nname = \"pkg-{m}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\n\n[build-system]\nrequires = [\"uv_build>=0.8,<0.20\"]\nbuild-backend = \"uv_build\"\n"),
        )
        .write(
            &format!("packages/pkg-{m}/src/pkg_{m}/__init__.py"),
            &format!("X = '{m}'\n"),
        );
    }
    let env = vec![
        ("PATH", tools_path()),
        ("UV_PYTHON_DOWNLOADS", "never".into()),
        ("UV_NO_CACHE", "1".into()),
        ("UV_OFFLINE", "1".into()),
        ("UV_NO_INDEX", "1".into()),
        ("UV_FIND_LINKS", p.path("wheels").display().to_string()),
        ("HOME", p.home.display().to_string()),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sh(&p.dir, &refs, "uv lock -q");
    env
}

fn sh_env(dir: &Path, env: &[(&'static str, String)], script: &str) -> String {
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sh(dir, &refs, script)
}

#[test]
fn uv_workspace_restored_at_another_path_is_in_sync_and_an_edited_member_misses() {
    if !need("uv") {
        return;
    }
    let p = Project::new();
    let env = uv_workspace(&p);
    let install = cmd("uv sync --locked -q");
    let lock = ["--lock", "uv.lock"];
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: saved uv")
        .installs(1)
        .run();
    let after_install = sh_env(&p.dir, &env, "uv sync --locked --dry-run 2>&1");
    assert!(
        after_install.contains("Would make no changes"),
        "{after_install}"
    );

    // The next job checks the project out at another path (another runner slot) and later.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let q = fresh_copy(&p, &[".venv", "installs.log"]);
    q.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: hit uv")
        .installs(0)
        .warnings(0)
        .run();
    let dry = sh_env(&q.dir, &env, "uv sync --locked --dry-run 2>&1");
    assert!(dry.contains("Would make no changes"), "{dry}");
    let ran = sh_env(
        &q.dir,
        &env,
        "uv run --frozen python -c 'import pkg_a, pkg_b, greet; print(pkg_a.X, pkg_b.X, greet.VERSION, pkg_a.__file__)' 2>&1",
    );
    assert!(!ran.contains("Installed"), "uv run reinstalled: {ran}");
    assert!(
        ran.contains(&format!(
            "a b 1.0 {}/packages/pkg-a/src/pkg_a/__init__.py",
            q.dir.display()
        )),
        "{ran}"
    );
    let listed = sh_env(&q.dir, &env, "uv pip list 2>&1");
    for want in ["greet", "pkg-a", "pkg-b"] {
        assert!(listed.contains(want), "{listed}");
    }
    assert!(!listed.contains(&p.dir.display().to_string()), "{listed}");

    // A member gains a dependency without re-locking: `uv sync --locked` refuses, and so
    // must the cache (no hit that turns the job green).
    q.write(
        "packages/pkg-a/pyproject.toml",
        "[project]\nname = \"pkg-a\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"greet\"]\n\n[build-system]\nrequires = [\"uv_build>=0.8,<0.20\"]\nbuild-backend = \"uv_build\"\n",
    );
    fs::remove_dir_all(q.path(".venv")).unwrap();
    let o = q
        .test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .any_status()
        .stderr_contains("cachegate: miss uv")
        .installs(1)
        .run();
    assert!(!o.status.success(), "{}", stderr(&o));
}

/// The wheels are in the project, named relatively: the command is part of the key.
fn pip_venv_install(extra: &str) -> Vec<String> {
    cmd(&format!(
        "python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links wheels -r requirements.txt{extra}"
    ))
}

#[test]
fn a_pip_venv_restored_at_another_path_runs_its_scripts_there() {
    let p = Project::new();
    build_wheel(&p.path("wheels"), "1.0");
    p.write("requirements.txt", "greet==1.0\n");
    let lock = ["--lock", "requirements.txt"];
    p.test()
        .ensure(&lock, &pip_venv_install(""))
        .stderr_contains("cachegate: saved pip")
        .installs(1)
        .run();
    let key = |p: &Project| stdout(&p.test().args(["key", "--lock", "requirements.txt"]).run());
    let q = fresh_copy(&p, &[".venv", "installs.log"]);
    assert_eq!(key(&p), key(&q), "the location is not in the key");
    q.test()
        .ensure(&lock, &pip_venv_install(""))
        .stderr_contains("cachegate: hit pip")
        .installs(0)
        .warnings(0)
        .run();
    fs::remove_dir_all(&p.dir).unwrap();
    let ran = sh(
        &q.dir,
        &[],
        ". .venv/bin/activate && echo \"$VIRTUAL_ENV\" && greet && python -m pip list --disable-pip-version-check 2>&1 | grep greet && python -c 'import greet, sys; print(sys.prefix)'",
    );
    let venv = q.path(".venv").display().to_string();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [
            venv.as_str(),
            "hello from greet 1.0",
            "greet      1.0",
            venv.as_str()
        ],
        "{ran}"
    );
    let cfg = fs::read_to_string(q.path(".venv/pyvenv.cfg")).unwrap();
    assert!(cfg.contains(&venv), "{cfg}");
}

#[test]
fn a_venv_holding_its_path_in_a_binary_file_misses_at_another_path_saying_which() {
    let p = Project::new();
    build_wheel(&p.path("wheels"), "1.0");
    p.write("requirements.txt", "greet==1.0\n");
    let lock = ["--lock", "requirements.txt"];
    // What a compiled extension with an absolute rpath looks like to a scan.
    let ext = " && printf 'ELF\\000%s/.venv/lib' \"$PWD\" > .venv/lib/ext.so";
    p.test()
        .ensure(&lock, &pip_venv_install(ext))
        .stderr_contains("cachegate: saved pip")
        .installs(1)
        .run();
    let q = fresh_copy(&p, &[".venv", "installs.log"]);
    q.test()
        .ensure(&lock, &pip_venv_install(ext))
        .stderr_contains(&format!(
            "it was saved at {} and .venv/lib/ext.so (a binary file) holds that path",
            p.dir.display()
        ))
        .stderr_lacks("cachegate: hit")
        .installs(1)
        .warnings(1)
        .run();
    let ran = sh(&q.dir, &[], ".venv/bin/greet");
    assert_eq!(ran.trim(), "hello from greet 1.0");
}

#[test]
fn a_poetry_project_installed_editable_hits_at_another_path_and_poetry_run_uses_it() {
    if !need("poetry") {
        return;
    }
    let p = Project::new();
    build_wheel(&p.path("wheels"), "1.0");
    p.write(
        "pyproject.toml",
        "[project]\nname = \"app\"\nversion = \"0.1.0\"\nrequires-python = \">=3.10\"\ndependencies = [\"greet\"]\n\n[project.scripts]\napp = \"app:main\"\n\n[tool.poetry]\npackages = [{ include = \"app\", from = \"src\" }]\n\n[tool.poetry.dependencies]\ngreet = { path = \"wheels/greet-1.0-py3-none-any.whl\" }\n\n[build-system]\nrequires = [\"poetry-core>=2.0\"]\nbuild-backend = \"poetry.core.masonry.api\"\n",
    )
    .write(
        "src/app/__init__.py",
        "import greet\ndef main():\n    print('app', greet.VERSION, __file__)\n",
    );
    let env = vec![
        ("PATH", tools_path()),
        ("HOME", p.home.display().to_string()),
        (
            "XDG_CACHE_HOME",
            p.tmp.path().join("xdg").display().to_string(),
        ),
    ];
    // Locking makes an environment; one outside the project would be poetry's choice later.
    sh_env(
        &p.dir,
        &env,
        "POETRY_VIRTUALENVS_IN_PROJECT=true poetry lock -q && rm -rf .venv",
    );
    let install = cmd("poetry install -q");
    let lock = ["--lock", "poetry.lock"];
    p.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: saved poetry")
        .installs(1)
        .run();
    let q = fresh_copy(&p, &[".venv", "installs.log"]);
    fs::remove_dir_all(&p.dir).unwrap();
    let mut qenv = env.clone();
    qenv.push(("POETRY_VIRTUALENVS_IN_PROJECT", "true".into()));
    q.test()
        .ensure(&lock, &install)
        .envs(env.clone())
        .stderr_contains("cachegate: hit poetry")
        .installs(0)
        .warnings(0)
        .run();
    let ran = sh_env(
        &q.dir,
        &qenv,
        "poetry env info -p && poetry run app && poetry run python -c 'import app; print(app.__file__)'",
    );
    let src = q.path("src/app/__init__.py").display().to_string();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        [
            q.path(".venv").display().to_string(),
            format!("app 1.0 {src}"),
            src.clone()
        ],
        "{ran}"
    );
    // Nothing to install: poetry sees the restored environment as its own.
    let again = sh_env(&q.dir, &qenv, "poetry install 2>&1");
    assert!(
        again.contains("No dependencies to install or update"),
        "{again}"
    );
}

#[test]
fn pnpm_node_linker_set_in_pnpm_workspace_yaml_is_a_miss_not_the_isolated_tree() {
    if !need("pnpm") {
        return;
    }
    let p = Project::new();
    let (_, v2) = dep_tarballs(p.tmp.path());
    let store = p.tmp.path().join("pnpm-store");
    p.write(
        "package.json",
        &format!(
            r#"{{"name":"root","private":true,"dependencies":{{"dep":"file:{}"}}}}"#,
            v2.display()
        ),
    )
    .write("pnpm-workspace.yaml", "packages: []\n");
    let install = pnpm_locked(&p, &store, "node_modules");
    let lock = ["--lock", "pnpm-lock.yaml"];
    let env = [("PATH", tools_path())];
    p.test()
        .ensure(&lock, &cmd(&install))
        .envs(env.clone())
        .stderr_contains("cachegate: saved pnpm")
        .installs(1)
        .run();
    assert!(
        fs::symlink_metadata(p.path("node_modules/dep"))
            .unwrap()
            .is_symlink()
    );

    // The lock is byte for byte the same; the layout asked for is not.
    let before = fs::read(p.path("pnpm-lock.yaml")).unwrap();
    p.write("pnpm-workspace.yaml", "packages: []\nnodeLinker: hoisted\n");
    fs::remove_dir_all(p.path("node_modules")).unwrap();
    p.test()
        .ensure(&lock, &cmd(&install))
        .envs(env)
        .stderr_contains("cachegate: miss pnpm")
        .installs(2)
        .run();
    assert_eq!(fs::read(p.path("pnpm-lock.yaml")).unwrap(), before);
    let dep = fs::symlink_metadata(p.path("node_modules/dep")).unwrap();
    assert!(
        dep.is_dir() && !dep.is_symlink(),
        "hoisted: a real directory"
    );
    let got = sh(&p.dir, &[], "node -p \"require('dep')\"");
    assert_eq!(got.trim(), "dep 2.0.0");
}
