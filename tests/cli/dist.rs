//! Distribution: the static release binary in `dist/` (from `scripts/release.sh`), `install.sh`
//! against a local HTTP server, the GitLab CI/CD component run by gitlab-ci-local, and
//! reproducing CI's key on a laptop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command as StdCommand, Output};

use crate::common::dist::{Chroot, FileServer, asset, dist, gitlab_ci_local, repo_root, toolbox};
use crate::common::garage::{self, GarageStore};
use crate::common::nginx::NginxStore;
use crate::common::scenarios::{build_wheel, installs_in};
use crate::common::{Project, Store, Test, require, require_tool, stderr, stdout};

fn run(c: &mut StdCommand) -> Output {
    c.output().unwrap()
}

#[test]
fn release_binary_is_static() {
    let Some(dist) = dist() else { return };
    let bin = dist.join(asset());
    let file = stdout(&run(StdCommand::new("file").arg(&bin)));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    assert!(!file.contains("dynamically linked"), "{file}");
    let ldd = run(StdCommand::new("ldd").arg(&bin));
    let ldd = stdout(&ldd) + &stderr(&ldd);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "{ldd}"
    );
    let sums = fs::read_to_string(dist.join(format!("{}.sha256", asset()))).unwrap();
    let check = run(StdCommand::new("sha256sum")
        .args(["-c", "--strict"])
        .arg(dist.join(format!("{}.sha256", asset())))
        .current_dir(&dist));
    assert!(check.status.success(), "{sums}: {}", stderr(&check));
    Test::new()
        .binary(&bin)
        .arg("--version")
        .stdout(&format!("cachegate {}\n", env!("CARGO_PKG_VERSION")))
        .run();
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    require(root, "root (chroot needs it)", "run the tests as root")
}

/// `cachegate CMD` for the tree `chroot_round_trip` makes, against `backend`.
fn chroot_args<'a>(cmd: &'a str, backend: &'a str) -> Vec<&'a str> {
    vec![
        cmd,
        "--dir",
        "/work",
        "--backend",
        backend,
        "--lock",
        "app.lock",
        "--path",
        "out",
        "--",
        "/bin/absent",
    ]
}

/// Save, restore and a hit through `ensure`, by the static binary alone in an empty root (no
/// shell, no libraries, no NSS modules), against `backend` as seen from inside the root.
fn chroot_round_trip(root: &Chroot, backend: &str, env: &[(&str, &str)], secrets: &[String]) {
    let r = root.root.path();
    let files = root.files();
    assert!(!files.iter().any(|f| f.starts_with("lib")), "{files:?}");
    fs::write(r.join("work/app.lock"), "v1").unwrap();
    fs::create_dir_all(r.join("work/out/sub")).unwrap();
    fs::write(r.join("work/out/sub/f"), "data").unwrap();
    let step = |cmd: &str| {
        root.test()
            .args(chroot_args(cmd, backend))
            .envs(env.iter().copied())
            .secrets(secrets)
    };
    step("save").stderr_contains("cachegate: saved").run();
    fs::remove_dir_all(r.join("work/out")).unwrap();
    step("restore").run();
    assert_eq!(
        fs::read_to_string(r.join("work/out/sub/f")).unwrap(),
        "data"
    );
    // A hit does not run the command (the root holds nothing to run).
    fs::remove_dir_all(r.join("work/out")).unwrap();
    step("ensure").stderr_contains("cachegate: hit").run();
    assert!(r.join("work/out/sub/f").is_file());
}

#[test]
fn static_binary_saves_and_restores_in_an_empty_chroot() {
    let Some(dist) = dist() else { return };
    if !is_root() {
        return;
    }
    let root = Chroot::new(&dist.join(asset()), &["127.0.0.1 localhost"]);
    chroot_round_trip(&root, "/store", &[], &[]);
    assert!(
        root.root
            .path()
            .join(format!("store/{}/local", root_of("work")))
            .is_dir()
    );
}

/// The static binary alone in an empty root (no CA bundle, no NSS modules) saves to and
/// restores from nginx by a host name only the root's /etc/hosts knows.
#[test]
fn static_binary_in_an_empty_chroot_uses_an_http_store_by_host_name() {
    let Some(dist) = dist() else { return };
    if !is_root() {
        return;
    }
    let Some(store) = NginxStore::start() else {
        return;
    };
    let root = Chroot::new(&dist.join(asset()), &["127.0.0.1 cachegate-test.internal"]);
    let env = store.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let backend = format!("http://cachegate-test.internal:{}/cache", store.nginx.port);
    chroot_round_trip(&root, &backend, &env, &store.secrets());
    let log = store.nginx.access_log();
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("PUT /cache/{}/local/", root_of("work")))),
        "{log:?}"
    );
    assert!(
        crate::common::walk(&store.nginx.root)
            .iter()
            .any(|f| f.ends_with(".tar.zst")),
        "nothing stored in nginx"
    );

    // A name the root cannot resolve is cache trouble: a miss with a warning, never an error.
    let r = root.root.path();
    fs::remove_dir_all(r.join("work/out")).unwrap();
    let unknown = format!("http://absent.internal:{}/cache", store.nginx.port);
    root.test()
        .args(chroot_args("restore", &unknown))
        .envs(env.iter().copied())
        .env("CACHEGATE_RETRIES", "0")
        .status(1)
        .stderr_contains("warning")
        .run();
    assert!(!r.join("work/out").exists());
}

/// The same against S3 (Garage), its endpoint named by a host name from the root's /etc/hosts
/// (not `<bucket>.…`: OpenDAL takes such an endpoint for virtual-host style and strips it):
/// the OpenDAL client also builds without CA certificates and resolves through glibc's
/// built-in `files` module.
#[test]
fn static_binary_in_an_empty_chroot_uses_an_s3_store_by_host_name() {
    let Some(dist) = dist() else { return };
    if !is_root() || !garage::available() {
        return;
    }
    let store = GarageStore::new();
    let root = Chroot::new(&dist.join(asset()), &["127.0.0.1 garage.internal"]);
    let env = store.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let backend = store
        .backend()
        .replace("//127.0.0.1:", "//garage.internal:");
    assert!(backend.contains("//garage.internal:"), "{backend}");
    chroot_round_trip(&root, &backend, &env, &store.secrets());
    let objects = store.objects();
    assert!(
        objects.iter().any(|o| o.ends_with(".tar.zst")),
        "{objects:?}"
    );
}

/// `sh install.sh` with PATH limited to `path` (or the normal PATH), installing into a fresh
/// dir under `tmp`.
fn install(tmp: &Path, url: &str, path: Option<&Path>) -> (Output, std::path::PathBuf) {
    let bin = tmp.join("bin");
    let mut c = StdCommand::new(crate::common::which("sh").unwrap());
    c.arg(repo_root().join("install.sh"))
        .env_clear()
        .env("HOME", tmp.join("home"))
        .env("TMPDIR", tmp)
        .env("CACHEGATE_DOWNLOAD_URL", url)
        .env("CACHEGATE_INSTALL_DIR", &bin)
        .env(
            "PATH",
            path.map(|p| p.as_os_str().to_owned())
                .or_else(|| std::env::var_os("PATH"))
                .unwrap(),
        );
    (run(&mut c), bin)
}

/// Tools install.sh needs besides a downloader and a checksum tool.
const BASE_TOOLS: &[&str] = &[
    "sh", "uname", "mktemp", "rm", "cut", "cp", "chmod", "mv", "mkdir",
];

#[test]
fn install_sh_installs_over_http_and_file_urls_with_curl_or_wget() {
    let Some(dist) = dist() else { return };
    for t in ["curl", "wget", "shasum"] {
        if !require_tool(t, &format!("apt-get install -y {t}")) {
            return;
        }
    }
    let server = FileServer::start(&dist);
    let file_url = format!("file://{}", dist.display());
    // (downloader and checksum tools on PATH, URL)
    let cases: [(&[&str], &str); 4] = [
        (&["curl", "sha256sum"], &server.url),
        (&["wget", "sha256sum"], &server.url),
        (&["wget", "sha256sum"], &file_url),
        (&["curl", "shasum"], &file_url),
    ];
    for (tools, url) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let path = toolbox(&tmp.path().join("path"), &[BASE_TOOLS, tools].concat());
        let (o, bin) = install(tmp.path(), url, Some(&path));
        let what = format!("{tools:?} {url}: {}", stderr(&o));
        assert!(o.status.success(), "{what}");
        let want = format!("cachegate {}", env!("CARGO_PKG_VERSION"));
        Test::new()
            .binary(bin.join("cachegate"))
            .arg("--version")
            .stdout(&format!("{want}\n"))
            .run();
        assert!(stderr(&o).contains(&format!("installed {want}")), "{what}");
        // The PATH hint names the dir, since the test did not put it on PATH.
        assert!(stderr(&o).contains("is not on PATH"), "{what}");
        assert_eq!(fs::read_dir(&bin).unwrap().count(), 1, "{what}");
    }
}

#[test]
fn install_sh_refuses_a_tampered_checksum_and_installs_nothing() {
    let Some(dist) = dist() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    fs::create_dir(&served).unwrap();
    fs::copy(dist.join(asset()), served.join(asset())).unwrap();
    let sha = format!("{}.sha256", asset());
    let good = fs::read_to_string(dist.join(&sha)).unwrap();
    let flipped = if good.starts_with('0') { "1" } else { "0" };
    fs::write(served.join(&sha), format!("{flipped}{}", &good[1..])).unwrap();

    let server = FileServer::start(&served);
    let (o, bin) = install(tmp.path(), &server.url, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing installed"), "{}", stderr(&o));
    assert!(!bin.exists(), "the install dir was created");
    // No checksum published at all: refused as well.
    fs::remove_file(served.join(&sha)).unwrap();
    let (o, bin) = install(tmp.path(), &server.url, None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("could not download {}/{sha}", server.url)),
        "{}",
        stderr(&o)
    );
    assert!(!bin.exists(), "the install dir was created");
    // Its temp dir is gone too.
    let left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cachegate-install")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn install_sh_without_curl_or_wget_says_so() {
    let Some(dist) = dist() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let path = toolbox(
        &tmp.path().join("path"),
        &[BASE_TOOLS, &["sha256sum"]].concat(),
    );
    let server = FileServer::start(&dist);
    let (o, bin) = install(tmp.path(), &server.url, Some(&path));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("neither curl nor wget is installed"),
        "{}",
        stderr(&o)
    );
    assert!(!bin.exists());
}

#[test]
fn shell_scripts_are_shellcheck_clean() {
    if !require_tool("shellcheck", "apt-get install -y shellcheck") {
        return;
    }
    let o = run(StdCommand::new("shellcheck")
        .args(["install.sh", "scripts/release.sh", ".ci/run"])
        .current_dir(repo_root()));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // The component's before_script runs in whatever shell the image has: POSIX sh.
    let template = fs::read_to_string(repo_root().join("templates/cachegate.yml")).unwrap();
    let (_, job) = template
        .split_once("\n---\n")
        .expect("spec: inputs, then ---");
    let (_, block) = job.split_once("    - |\n").expect("a before_script block");
    let mut script = String::from("#!/bin/sh\n");
    // The block ends where its indentation does (the `.cachegate` job follows it).
    for line in block
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("      "))
    {
        script += line.strip_prefix("      ").unwrap_or(line);
        script += "\n";
    }
    for input in [
        "version",
        "download_url",
        "backend",
        "install_dir",
        "local_tier",
        "local_tier_max_size",
        "metrics",
        "policy",
        "strict",
    ] {
        script = script.replace(&format!("$[[ inputs.{input} ]]"), "value");
    }
    assert!(!script.contains("$[["), "{script}");
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("before_script.sh"), &script).unwrap();
    let o = run(StdCommand::new("shellcheck")
        .args(["--shell=sh", "before_script.sh"])
        .current_dir(tmp.path()));
    assert!(o.status.success(), "{}", stdout(&o));
    // install.sh is POSIX sh, checked as such.
    let o = run(StdCommand::new("shellcheck")
        .args(["--shell=sh", "install.sh"])
        .current_dir(repo_root()));
    assert!(o.status.success(), "{}", stdout(&o));
}

/// A laptop computes CI's key once it sets the one CI-only component, and `key --explain`
/// says which one that is.
#[test]
fn a_laptop_gets_the_ci_key_by_setting_the_job_image() {
    let p = Project::new();
    p.write("poetry.lock", "content");
    let key = |env: &[(&str, &str)]| {
        let o = p
            .test()
            .verb("key", &["--lock", "poetry.lock"], &["poetry", "install"])
            .envs(env.iter().copied())
            .run();
        stdout(&o).trim().to_string()
    };
    let ci = [
        ("GITLAB_CI", "true"),
        ("CI", "true"),
        ("CI_COMMIT_REF_PROTECTED", "true"),
        ("CI_JOB_URL", "https://gitlab.example.com/g/p/-/jobs/1"),
        ("CI_JOB_IMAGE", "python:3.12"),
    ];
    let laptop = key(&[]);
    assert_ne!(key(&ci), laptop);
    assert_eq!(key(&ci), key(&[("CI_JOB_IMAGE", "python:3.12")]));

    let explain = p
        .test()
        .verb(
            "key",
            &["--explain", "--lock", "poetry.lock"],
            &["poetry", "install"],
        )
        .any_status()
        .run();
    let explain = stdout(&explain);
    let image = explain.lines().find(|l| l.starts_with("image")).unwrap();
    assert!(image.contains("export CI_JOB_IMAGE="), "{explain}");
    assert!(explain.contains(&laptop), "{explain}");
}

/// One pipeline run by gitlab-ci-local; returns its output.
pub(crate) fn pipeline(gcl: &Path, proj: &Path, home: &Path) -> String {
    let mut c = StdCommand::new(gcl);
    c.current_dir(proj)
        .env("HOME", home)
        .args(["--force-shell-executor", "--no-color"])
        // A protected (main-branch) pipeline inside GitLab: the scope a laptop reads below.
        .args(["--variable", "GITLAB_CI=true"])
        .args(["--variable", "CI_COMMIT_REF_PROTECTED=true"]);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CACHEGATE_")) {
        c.env_remove(k);
    }
    let o = run(&mut c);
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "gitlab-ci-local failed:\n{text}");
    text
}

/// Make `dir` what gitlab-ci-local needs: a git repo with a commit and an `origin` remote.
pub(crate) fn git_project(dir: &Path) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/group/proj.git",
        ],
        &["add", "-A"],
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "init",
        ],
        &["update-ref", "refs/remotes/origin/main", "HEAD"],
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    ] {
        let o = run(StdCommand::new("git").args(args).current_dir(dir));
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    }
}

/// The include forms other than `local:`: `remote:` with inputs (GitLab versions without the
/// CI/CD catalog) and `component:` (the catalog form; gitlab-ci-local resolves a component of
/// the project itself at `$CI_COMMIT_SHA` from the checkout, as GitLab does). A pinned version
/// replaces a different installed binary, and an empty `backend` exports nothing.
#[test]
fn gitlab_ci_local_includes_the_component_remotely_and_from_the_catalog() {
    let Some(dist) = dist() else { return };
    let Some(gcl) = gitlab_ci_local() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (proj, bin, home) = (
        tmp.path().join("proj"),
        tmp.path().join("bin"),
        tmp.path().join("home"),
    );
    for d in [&proj.join("templates"), &home] {
        fs::create_dir_all(d).unwrap();
    }
    fs::copy(
        repo_root().join("templates/cachegate.yml"),
        proj.join("templates/cachegate.yml"),
    )
    .unwrap();
    let server = FileServer::start(&dist);
    let version = env!("CARGO_PKG_VERSION");
    let ci = |include: &str| {
        let yml = format!(
            "include:
  - {include}
    inputs:
      version: {version}
      download_url: {url}
      install_dir: {bin}

job:
  extends: .cachegate
  script:
    - echo \"backend=${{CACHEGATE_BACKEND-unset}} on=$(command -v cachegate)\"
",
            url = server.url,
            bin = bin.display(),
        );
        fs::write(proj.join(".gitlab-ci.yml"), yml).unwrap();
    };
    ci(&format!("remote: {}/cachegate.yml", server.url));
    git_project(&proj);
    let forms = [
        format!("remote: {}/cachegate.yml", server.url),
        "component: $CI_SERVER_FQDN/group/proj/cachegate@$CI_COMMIT_SHA".to_string(),
    ];
    for include in forms {
        ci(&include);
        // An older cachegate already in the install dir.
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("cachegate"), "#!/bin/sh\necho 'cachegate 0.0.9'\n").unwrap();
        fs::set_permissions(bin.join("cachegate"), fs::Permissions::from_mode(0o755)).unwrap();
        let out = pipeline(&gcl, &proj, &home);
        assert!(
            out.contains("install.sh: installed cachegate"),
            "{include}: {out}"
        );
        let on = format!("backend=unset on={}/cachegate", bin.display());
        assert!(out.contains(&on), "{include}: {out}");
        Test::new()
            .binary(bin.join("cachegate"))
            .arg("--version")
            .stdout(&format!("cachegate {version}\n"))
            .run();
        // The right version is there now: not downloaded again.
        let out = pipeline(&gcl, &proj, &home);
        assert!(!out.contains("install.sh:"), "{include}: {out}");
        assert!(out.contains(&on), "{include}: {out}");
    }
}

/// The component as a project includes it, run by a real GitLab CI interpreter: install the
/// binary from a served dist/, miss and install with real pip, restore in a clean workspace,
/// install again when the lock changes; and a laptop reads what CI saved.
#[test]
fn gitlab_ci_local_runs_the_component_install_restore_and_lock_change() {
    let Some(dist) = dist() else { return };
    let Some(gcl) = gitlab_ci_local() else { return };
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (proj, store, bin, wheels, home) = (
        t.join("proj"),
        t.join("store"),
        t.join("bin"),
        t.join("wheels"),
        t.join("home"),
    );
    let tier = t.join("tier");
    for d in [&proj, &store, &home] {
        fs::create_dir_all(d).unwrap();
    }
    build_wheel(&wheels, "1.0");
    build_wheel(&wheels, "2.0");
    let server = FileServer::start(&dist);

    fs::create_dir(proj.join("templates")).unwrap();
    fs::copy(
        repo_root().join("templates/cachegate.yml"),
        proj.join("templates/cachegate.yml"),
    )
    .unwrap();
    fs::write(proj.join("requirements.txt"), "greet==1.0\n").unwrap();
    let install = format!(
        "sh -c 'echo run >> {log} && python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links {wheels} -r requirements.txt'",
        log = t.join("installs.log").display(),
        wheels = wheels.display()
    );
    fs::write(
        proj.join(".gitlab-ci.yml"),
        format!(
            "include:
  - local: templates/cachegate.yml
    inputs:
      download_url: {url}
      backend: {store}
      install_dir: {bin}
      local_tier: {tier}

deps:
  extends: .cachegate
  script:
    - cachegate ensure --lock requirements.txt -- {install}
    - .venv/bin/greet
    - echo \"ci-key=$(cachegate key --lock requirements.txt -- {install})\"
",
            url = server.url,
            store = store.display(),
            bin = bin.display(),
            tier = tier.display(),
        ),
    )
    .unwrap();
    git_project(&proj);
    let installs = || installs_in(t);

    // 1: a fresh runner: install.sh fetches the binary, the cache misses, pip runs.
    let out = pipeline(&gcl, &proj, &home);
    assert!(out.contains("install.sh: installed cachegate"), "{out}");
    assert!(out.contains("cachegate: miss pip"), "{out}");
    assert!(out.contains("cachegate: saved pip"), "{out}");
    assert!(out.contains("hello from greet 1.0"), "{out}");
    assert_eq!(installs(), 1);
    assert!(
        // gitlab-ci-local derives CI_PROJECT_PATH from the origin remote, as a laptop does.
        walk_has(&store, &format!("{}/protected/pip/", root_of("group/proj"))),
        "{:?}",
        crate::common::walk(&store)
    );
    // The component's local_tier input: the save went into the tier too.
    assert!(
        walk_has(&tier, &format!("{}/protected/pip/", root_of("group/proj"))),
        "{:?}",
        crate::common::walk(&tier)
    );

    // A laptop computes the key the job printed, in the same checkout, outside CI.
    let ci_key = out
        .lines()
        .filter_map(|l| l.split("ci-key=").nth(1))
        .map(str::trim)
        .find(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("no key printed:\n{out}"))
        .to_string();
    let script = install.trim_start_matches("sh -c '").trim_end_matches('\'');
    let laptop = || {
        Test::new()
            .binary(dist.join(asset()))
            .dir(&proj)
            .env("HOME", &home)
    };
    laptop()
        .verb(
            "key",
            &["--lock", "requirements.txt"],
            &["sh", "-c", script],
        )
        .stdout(&format!("{ci_key}\n"))
        .run();

    // 2: a new job in a clean workspace on a fresh runner: restored, pip does not run.
    fs::remove_dir_all(proj.join(".venv")).unwrap();
    fs::remove_dir_all(&bin).unwrap();
    let out = pipeline(&gcl, &proj, &home);
    assert!(out.contains("install.sh: installed cachegate"), "{out}");
    assert!(out.contains("cachegate: hit pip"), "{out}");
    assert!(out.contains("hello from greet 1.0"), "{out}");
    assert_eq!(installs(), 1, "pip ran on a hit:\n{out}");

    // 3: the lock changed; the binary is already there, so it is not downloaded again.
    fs::write(proj.join("requirements.txt"), "greet==2.0\n").unwrap();
    fs::remove_dir_all(proj.join(".venv")).unwrap();
    let out = pipeline(&gcl, &proj, &home);
    assert!(!out.contains("install.sh:"), "{out}");
    assert!(out.contains("cachegate: miss pip"), "{out}");
    assert!(out.contains("hello from greet 2.0"), "{out}");
    assert_eq!(installs(), 2);

    // A laptop restores what the protected pipeline saved, read-only (README recipe).
    fs::remove_dir_all(proj.join(".venv")).unwrap();
    let before = crate::common::walk(&store);
    let store_arg = store.display().to_string();
    laptop()
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "true")
        .ensure(
            &[
                "--backend",
                &store_arg,
                "--policy",
                "pull",
                "--lock",
                "requirements.txt",
            ],
            &["sh", "-c", script],
        )
        .stderr_contains("cachegate: hit pip")
        .run();
    assert_eq!(installs(), 2);
    assert_eq!(
        crate::common::walk(&store),
        before,
        "a pull run wrote to the store"
    );
}

/// Where the entries of project `ns` live in a store.
fn root_of(ns: &str) -> String {
    let seg = cachegate::namespace::Namespace::resolve(Some(ns), Path::new("/"))
        .unwrap()
        .segment();
    format!("{}/{seg}", cachegate::entry::LAYOUT_ROOT)
}

fn walk_has(root: &Path, prefix: &str) -> bool {
    crate::common::walk(root)
        .iter()
        .any(|f| f.starts_with(prefix))
}

/// GitLab's shell runners build one project at several paths (`/builds/<token>/<slot>/...`):
/// a job at the second path hits the entry saved at the first, and the restored venv runs
/// there (its console script, pip, the activate script).
#[test]
fn gitlab_ci_local_shell_jobs_at_two_build_paths_share_one_python_entry() {
    let Some(gcl) = gitlab_ci_local() else { return };
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (store, home) = (t.join("store"), t.join("home"));
    fs::create_dir_all(&home).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("cachegate");
    let mut outs = Vec::new();
    for slot in ["0", "1"] {
        let proj = t.join(format!("builds/tok/{slot}/group/proj"));
        fs::create_dir_all(&proj).unwrap();
        build_wheel(&proj.join("wheels"), "1.0");
        fs::write(proj.join("requirements.txt"), "greet==1.0\n").unwrap();
        fs::write(
            proj.join(".gitlab-ci.yml"),
            format!(
                "deps:
  variables:
    CACHEGATE_BACKEND: {store}
  script:
    - {bin} ensure --lock requirements.txt -- sh -c 'echo run >> {log} && python3 -m venv .venv && .venv/bin/pip install -q --no-index --find-links wheels -r requirements.txt'
    - .venv/bin/greet
    - . .venv/bin/activate && echo \"venv=$VIRTUAL_ENV\" && python -m pip list 2>/dev/null | grep greet
",
                store = store.display(),
                bin = bin.display(),
                log = t.join("installs.log").display(),
            ),
        )
        .unwrap();
        git_project(&proj);
        let out = pipeline(&gcl, &proj, &home);
        assert!(out.contains("hello from greet 1.0"), "{out}");
        assert!(
            out.contains(&format!("venv={}/.venv", proj.display())),
            "{out}"
        );
        outs.push(out);
    }
    assert!(outs[0].contains("cachegate: saved pip"), "{}", outs[0]);
    assert!(outs[1].contains("cachegate: hit pip"), "{}", outs[1]);
    assert_eq!(installs_in(t), 1, "the second path did not install");
}
