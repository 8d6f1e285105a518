//! The end-to-end scenarios of the core loop, written once and run against every store:
//! real pip into a venv and real `npm ci`, offline. Every cachegate run goes through
//! `Project::cmd`, which checks its output for the store's secrets.

use std::fs;
use std::process::Command as StdCommand;

use super::{Project, require_tool, stderr, stdout, warnings};

/// Counts how often the install really ran, from a log the command appends to.
pub fn installs(p: &Project) -> usize {
    installs_in(&p.dir)
}

/// How many times an install run in `dir` has logged itself (see `tree_cmd`).
pub fn installs_in(dir: &std::path::Path) -> usize {
    fs::read_to_string(dir.join("installs.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A wheel built by hand (this machine has no `wheel` module): package `greet`, with a
/// console script `greet`.
pub fn build_wheel(dir: &std::path::Path, version: &str) {
    build_named_wheel(dir, "greet", version);
}

/// A wheel of package `pkg` with a console script of the same name.
pub fn build_named_wheel(dir: &std::path::Path, pkg: &str, version: &str) {
    let script = r#"
import base64, hashlib, sys, zipfile, os
out, pkg, version = sys.argv[1], sys.argv[2], sys.argv[3]
files = {
    f"{pkg}/__init__.py": f"def main():\n    print('hello from {pkg} ' + VERSION)\nVERSION = %r\n" % version,
    f"{pkg}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {pkg}\nVersion: {version}\n",
    f"{pkg}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: cachegate-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    f"{pkg}-{version}.dist-info/entry_points.txt": f"[console_scripts]\n{pkg} = {pkg}:main\n",
}
record = []
for name, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append(f"{pkg}-{version}.dist-info/RECORD,,")
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(os.path.join(out, f"{pkg}-{version}-py3-none-any.whl"), "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
    z.writestr(f"{pkg}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let st = StdCommand::new("python3")
        .args(["-c", script, dir.to_str().unwrap(), pkg, version])
        .status()
        .unwrap();
    assert!(st.success());
}

pub fn pip_install_cmd(p: &Project) -> Vec<String> {
    let wheels = p.tmp.path().join("wheels");
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo run >> installs.log && python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links {} -r requirements.txt",
            wheels.display()
        ),
    ]
}

/// `cachegate ensure`, for a caller that checks the status itself.
pub fn ensure(p: &Project, args: &[&str], cmd: &[String]) -> std::process::Output {
    p.test().ensure(args, cmd).any_status().run()
}

pub fn run_greet(p: &Project) -> String {
    let out = StdCommand::new(p.path(".venv/bin/greet")).output().unwrap();
    assert!(out.status.success(), "greet failed: {}", stderr(&out));
    let imp = StdCommand::new(p.path(".venv/bin/python"))
        .args(["-c", "import greet; print(greet.VERSION)"])
        .output()
        .unwrap();
    assert!(imp.status.success(), "import failed: {}", stderr(&imp));
    stdout(&out)
}

/// pip into a venv: install, restore without installing, reinstall on a lock change and
/// when the cache was cleared (the GitLab forum thread in shared/seeds).
pub fn python_venv(p: &Project) {
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    build_wheel(&p.tmp.path().join("wheels"), "1.0");
    build_wheel(&p.tmp.path().join("wheels"), "2.0");
    p.write("requirements.txt", "greet==1.0\n");
    let cmd = pip_install_cmd(p);
    let lock = ["--lock", "requirements.txt"];

    let o = ensure(p, &lock, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(p), 1);
    assert!(
        stderr(&o).contains("preset pip: caching .venv"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("cachegate: saved pip"),
        "{}",
        stderr(&o)
    );
    assert_eq!(run_greet(p).trim(), "hello from greet 1.0");

    // A new job: the workspace has no venv, the cache has it.
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(p, &lock, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(p), 1, "the install ran on a hit: {}", stderr(&o));
    assert!(stderr(&o).contains("cachegate: hit pip"), "{}", stderr(&o));
    assert_eq!(run_greet(p).trim(), "hello from greet 1.0");

    // The lock changed: install again, and the new venv is the new version.
    p.write("requirements.txt", "greet==2.0\n");
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(p, &lock, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(p), 2);
    assert_eq!(run_greet(p).trim(), "hello from greet 2.0");

    // The cache was cleared (GitLab forum thread): the lock did not change, the install
    // must run anyway instead of the job failing on a missing venv.
    p.clear_store();
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(p, &lock, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(p), 3);
    assert_eq!(run_greet(p).trim(), "hello from greet 2.0");
}

/// Writes package-lock.json from package.json without the network (local `file:` deps only).
pub fn npm_lock(p: &Project) {
    let o = StdCommand::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(&p.dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `npm ci` with a `file:` dependency: the restored link resolves.
pub fn npm_file_dependency(p: &Project) {
    if !require_tool("npm", "apt-get install -y nodejs npm") {
        return;
    }
    p.write(
        "dep-pkg/package.json",
        r#"{"name":"dep","version":"1.0.0","main":"index.js"}"#,
    )
    .write("dep-pkg/index.js", "module.exports = 'dep ok';\n")
    .write(
        "package.json",
        r#"{"name":"app","version":"1.0.0","private":true,"dependencies":{"dep":"file:./dep-pkg"}}"#,
    );
    npm_lock(p);
    let cmd: Vec<String> = [
        "sh",
        "-c",
        "echo run >> installs.log && npm ci --offline --no-audit --no-fund",
    ]
    .map(String::from)
    .to_vec();
    let args = ["--lock", "package-lock.json"];

    let o = ensure(p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("preset npm: caching node_modules"),
        "{}",
        stderr(&o)
    );
    assert_eq!(installs(p), 1);

    fs::remove_dir_all(p.path("node_modules")).unwrap();
    let o = ensure(p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(p), 1, "npm ci ran on a hit: {}", stderr(&o));
    let link = fs::read_link(p.path("node_modules/dep")).expect("node_modules/dep is a link");
    assert_eq!(link, std::path::Path::new("../dep-pkg"));
    let node = StdCommand::new("node")
        .args(["-e", "console.log(require('dep'))"])
        .current_dir(&p.dir)
        .output()
        .unwrap();
    assert_eq!(stdout(&node).trim(), "dep ok", "{}", stderr(&node));
}

/// `n` jobs saving the same key of `out` at once (`env` on top of the project's store
/// settings): each must succeed without a warning, whoever wins.
/// Racing saves of one key leave exactly one manifest and one archive.
pub fn assert_one_entry(files: &[String]) {
    for suffix in [".json", ".tar.zst"] {
        let n = files.iter().filter(|f| f.ends_with(suffix)).count();
        assert_eq!(n, 1, "{suffix}: {files:?}");
    }
}

pub fn parallel_saves(p: &Project, n: usize, env: &[(String, String)]) {
    StdCommand::new("sh")
        .args([
            "-c",
            "mkdir -p out && head -c 300000 /dev/urandom > out/blob",
        ])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    let children: Vec<_> = (0..n)
        .map(|_| {
            p.test()
                .arg("save")
                .args(super::ARGS)
                .envs(env.iter().cloned())
                .std_command()
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(warnings(&o), 0, "{}", stderr(&o));
        p.assert_no_store_secrets(&o);
    }
}
