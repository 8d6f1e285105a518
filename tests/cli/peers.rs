//! Beyond the peers: warm starts, single-flight, refresh, salt, project namespaces, time
//! saved and last use. Each scenario is written once and run against every store: the
//! directory, S3 on Garage, HTTP on nginx and the GitLab emulator.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::gitlab_emu::{GitlabEmu, GitlabStore};
use crate::common::nginx::NginxStore;
use crate::common::scenarios::{build_named_wheel, installs, installs_in, npm_lock};
use crate::common::{Project, Test, listed, require_tool, stderr, stdout};
use crate::stats::stats_count_parallel_jobs_and_prune;

/// Every job of these scenarios shares one project namespace, wherever its directory is.
const NS: &str = "team/app";
/// Short single-flight settings, so the scenarios take seconds, not minutes.
const FLIGHT: [&str; 6] = ["--wait", "60", "--lease", "2", "--poll", "1"];

/// A job directory of its own (parallel jobs must not share a workspace), using the
/// project's store.
pub(crate) fn job_dir(p: &Project, name: &str) -> PathBuf {
    let d = p.tmp.path().join("jobs").join(name);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("app.lock"), "v1").unwrap();
    d
}

/// A step in job directory `dir`, in the scenarios' namespace.
fn in_dir<'p>(p: &'p Project, dir: &Path) -> Test<'p> {
    p.test().dir(dir).env("CACHEGATE_NAMESPACE", NS)
}

/// An install that writes the same token into two files, so a restore that mixed two
/// entries shows, and logs each run.
fn tree_cmd() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo run >> installs.log && sleep ${SLEEP:-0} && rm -rf out && mkdir -p out && echo ${TOKEN:-t} > out/a && head -c 50000 /dev/urandom > out/blob && echo ${TOKEN:-t} > out/b".into(),
    ]
}

const TREE: [&str; 4] = ["--lock", "app.lock", "--path", "out"];

pub(crate) fn ensure_in<'p>(
    p: &'p Project,
    dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Test<'p> {
    let args: Vec<&str> = TREE.iter().chain(extra).copied().collect();
    in_dir(p, dir)
        .ensure(&args, &tree_cmd())
        .envs(env.iter().copied())
}

/// Run `step` whatever its status: the scenarios check what the status means themselves.
pub(crate) fn run(step: Test<'_>) -> Output {
    step.any_status().run()
}

/// Start `step` and leave it running; its output is piped.
pub(crate) fn spawn(step: Test<'_>) -> std::process::Child {
    spawn_command(step.std_command())
}

fn spawn_command(mut c: StdCommand) -> std::process::Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub(crate) fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}",
        o.status.code(),
        stderr(o)
    );
}

// ---------------------------------------------------------------- scenarios

/// Warm start with a real pip venv: a lock that gains one package restores the old venv,
/// pip installs only the new package, the new entry is saved and the next run hits; a
/// different interpreter rules the warm start out.
pub fn warm_start_pip(p: &Project) {
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    let wheels = p.tmp.path().join("wheels");
    build_named_wheel(&wheels, "greet", "1.0");
    build_named_wheel(&wheels, "extra", "1.0");
    let py = |version: &str| {
        // python3 on PATH decides the interpreter, as in a job's image.
        let bin = p.tmp.path().join(format!("py{version}"));
        fs::create_dir_all(&bin).unwrap();
        let real = crate::common::which("python3").unwrap();
        let target = match version {
            "default" => real,
            v => PathBuf::from(std::env::var("HOME").unwrap())
                .join(format!(".pyenv/versions/{v}/bin/python3")),
        };
        let link = bin.join("python3");
        if !link.exists() {
            std::os::unix::fs::symlink(&target, &link).unwrap();
        }
        format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
    };
    let cmd: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "echo run >> installs.log && python3 -m venv .venv && .venv/bin/pip install --no-index --find-links {} -r requirements.txt",
            wheels.display()
        ),
    ];
    let report = p.tmp.path().join("warm.json");
    let ensure = |path: &str| {
        p.test()
            .env("PATH", path)
            .env("CACHEGATE_JSON", &report)
            .env("CACHEGATE_FALLBACK", "true")
            .ensure(
                &[
                    "--lock",
                    "requirements.txt",
                    "--key-cmd",
                    "python3 -c 'import sys; print(sys.version)'",
                ],
                &cmd,
            )
            .any_status()
            .run()
    };
    let default = py("default");

    p.write("requirements.txt", "greet==1.0\n");
    let o = ensure(&default);
    assert_ok(&o);
    assert!(stderr(&o).contains("no earlier entry"), "{}", stderr(&o));
    assert_eq!(installs(p), 1);

    // The lock gains one package; the job starts from an empty workspace.
    p.write("requirements.txt", "greet==1.0\nextra==1.0\n");
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(&default);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("cachegate: warm pip"), "{err}");
    assert!(err.contains("lock files differ"), "{err}");
    let out = stdout(&o);
    assert!(
        out.contains("Requirement already satisfied: greet==1.0"),
        "pip did not start from the restored venv:\n{out}\n{err}"
    );
    assert!(out.contains("Successfully installed extra-1.0"), "{out}");
    assert!(
        !out.contains("Successfully installed extra-1.0 greet"),
        "{out}"
    );
    assert!(err.contains("cachegate: saved pip"), "{err}");
    assert_eq!(installs(p), 2);
    // The report names the entry the warm start used: the first one.
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    let listed = listed(p);
    let oldest = listed
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(oldest.len(), 2);
    assert!(
        oldest.contains(&r["warm"]["key"].as_str().unwrap()),
        "{r:#}"
    );
    assert_ne!(r["warm"]["key"], r["key"], "{r:#}");
    assert_eq!(
        r["warm"]["differs"],
        serde_json::json!(["lock files"]),
        "{r:#}"
    );
    let imp = StdCommand::new(p.path(".venv/bin/python"))
        .args([
            "-c",
            "import greet, extra; print(greet.VERSION, extra.VERSION)",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&imp).trim(), "1.0 1.0", "{}", stderr(&imp));

    // The next job hits the new entry.
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(&default);
    assert_ok(&o);
    assert!(stderr(&o).contains("cachegate: hit pip"), "{}", stderr(&o));
    assert_eq!(installs(p), 2);

    // Another interpreter: the venv would not work, so no warm start, a cold install.
    let other = ["3.12.1", "3.13.0", "3.10.13"].into_iter().find(|v| {
        PathBuf::from(std::env::var("HOME").unwrap())
            .join(format!(".pyenv/versions/{v}/bin/python3"))
            .exists()
    });
    if !crate::common::require(
        other.is_some(),
        "a second Python (pyenv 3.10-3.13)",
        "pyenv install 3.12",
    ) {
        return;
    }
    p.write("requirements.txt", "greet==1.0\n");
    fs::remove_dir_all(p.path(".venv")).unwrap();
    let o = ensure(&py(other.unwrap()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(!err.contains("cachegate: warm"), "{err}");
    assert!(
        err.contains("key-cmd"),
        "the log names what ruled it out: {err}"
    );
    assert!(
        stdout(&o).contains("Successfully installed greet-1.0"),
        "{}",
        stdout(&o)
    );
    assert_eq!(installs(p), 3);
}

/// Eight parallel jobs miss one key; the install takes 5 seconds: exactly one installs,
/// seven wait and restore, all exit 0.
pub fn single_flight(p: &Project) {
    let dirs: Vec<PathBuf> = (0..8).map(|i| job_dir(p, &format!("j{i}"))).collect();
    let jobs: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let url = format!("https://gitlab.example/team/app/-/jobs/{i}");
            spawn(ensure_in(
                p,
                d,
                &FLIGHT,
                &[("SLEEP", "5"), ("CI_JOB_URL", url.as_str())],
            ))
        })
        .collect();
    let outs: Vec<Output> = jobs
        .into_iter()
        .map(|j| j.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert_ok(o);
    }
    let total: usize = dirs.iter().map(|d| installs_in(d)).sum();
    assert_eq!(
        total,
        1,
        "{:#?}",
        outs.iter().map(stderr).collect::<Vec<_>>()
    );
    let waited: Vec<String> = outs
        .iter()
        .map(stderr)
        .filter(|e| e.contains("cachegate: hit") && e.contains("waited"))
        .collect();
    assert_eq!(waited.len(), 7, "{waited:#?}");
    assert!(
        waited
            .iter()
            .all(|e| e.contains("for https://gitlab.example/team/app/-/jobs/")),
        "{waited:#?}"
    );
    for d in &dirs {
        assert_eq!(fs::read_to_string(d.join("out/a")).unwrap(), "t\n");
    }
    assert_eq!(listed(p).len(), 1);
}

/// The leader is killed with SIGKILL mid-install: a waiter takes over once the lease
/// expires, and there is one entry at the end.
pub fn single_flight_leader_killed(p: &Project) {
    let lead = job_dir(p, "leader");
    let mut c = ensure_in(p, &lead, &FLIGHT, &[("SLEEP", "60")]).std_command();
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut leader = spawn_command(c);
    let start = Instant::now();
    while installs_in(&lead) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the leader never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dirs: Vec<PathBuf> = (0..3).map(|i| job_dir(p, &format!("w{i}"))).collect();
    let waiters: Vec<_> = dirs
        .iter()
        .map(|d| spawn(ensure_in(p, d, &FLIGHT, &[("SLEEP", "1")])))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // The whole process group: cachegate and the install it runs.
    unsafe { libc::kill(-(leader.id() as i32), libc::SIGKILL) };
    let _ = leader.wait();
    let outs: Vec<Output> = waiters
        .into_iter()
        .map(|w| w.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        assert_ok(o);
    }
    let errs: Vec<String> = outs.iter().map(stderr).collect();
    let total: usize = dirs.iter().map(|d| installs_in(d)).sum();
    assert_eq!(total, 1, "{errs:#?}");
    assert_eq!(
        errs.iter()
            .filter(|e| e.contains("its lease expired"))
            .count(),
        1,
        "{errs:#?}"
    );
    assert_eq!(
        errs.iter().filter(|e| e.contains("cachegate: hit")).count(),
        2,
        "{errs:#?}"
    );
    assert_eq!(listed(p).len(), 1);
}

/// The leader's command fails: one waiter takes over and installs, the others restore.
pub fn single_flight_leader_fails(p: &Project) {
    // One command line for all, so one key; it fails only where FAIL is set.
    let cmd = [
        "sh",
        "-c",
        "echo run >> installs.log && sleep 2 && if [ -n \"$FAIL\" ]; then exit 7; fi && mkdir -p out && echo t > out/a && echo t > out/b",
    ];
    let job = |dir: &Path, env: &[(&str, &str)]| {
        let args: Vec<&str> = TREE.iter().chain(&FLIGHT).copied().collect();
        spawn(in_dir(p, dir).ensure(&args, &cmd).envs(env.iter().copied()))
    };
    let lead = job_dir(p, "failing");
    let leader = job(&lead, &[("FAIL", "1")]);
    let start = Instant::now();
    while installs_in(&lead) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the leader never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dirs: Vec<PathBuf> = (0..3).map(|i| job_dir(p, &format!("f{i}"))).collect();
    let waiters: Vec<_> = dirs.iter().map(|d| job(d, &[])).collect();
    let o = leader.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let errs: Vec<String> = waiters
        .into_iter()
        .map(|w| {
            let o = w.wait_with_output().unwrap();
            assert_ok(&o);
            stderr(&o)
        })
        .collect();
    let total: usize = dirs.iter().map(|d| installs_in(d)).sum();
    assert_eq!(total, 1, "{errs:#?}");
    assert_eq!(
        errs.iter()
            .filter(|e| e.contains("(it saved nothing)"))
            .count(),
        1,
        "{errs:#?}"
    );
    assert_eq!(
        errs.iter().filter(|e| e.contains("cachegate: hit")).count(),
        2,
        "{errs:#?}"
    );
    assert_eq!(listed(p).len(), 1);
}

/// 20 parallel refreshes (`--policy push`) of one key while 100 restores run: every
/// restore gets one complete, verified entry, there is one manifest at the end, and prune
/// leaves no archive that no manifest names.
pub fn refresh_under_load(p: &Project) {
    let seed = job_dir(p, "seed");
    ensure_in(p, &seed, &[], &[("TOKEN", "seed")]).run();
    let tokens: Vec<String> = (0..20).map(|i| format!("push{i}")).collect();
    let pushers: Vec<_> = tokens
        .iter()
        .map(|t| {
            let d = job_dir(p, t);
            spawn(ensure_in(
                p,
                &d,
                &["--policy", "push"],
                &[("TOKEN", t.as_str())],
            ))
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let d = job_dir(p, &format!("reader{r}"));
            let base = in_dir(p, &d)
                .verb("restore", &TREE, &tree_cmd())
                .std_command();
            let program = base.get_program().to_owned();
            let args: Vec<_> = base.get_args().map(|a| a.to_owned()).collect();
            let envs: Vec<_> = base
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
                .collect();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for _ in 0..25 {
                    let _ = fs::remove_dir_all(d.join("out"));
                    let o = StdCommand::new(&program)
                        .args(&args)
                        .env_clear()
                        .envs(envs.iter().map(|(k, v)| (k, v)))
                        .current_dir(&d)
                        .output()
                        .unwrap();
                    assert!(o.status.success(), "restore missed:\n{}", stderr(&o));
                    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
                    let a = fs::read_to_string(d.join("out/a")).unwrap();
                    let b = fs::read_to_string(d.join("out/b")).unwrap();
                    assert_eq!(a, b, "a restore mixed two entries");
                    seen.push(a.trim().to_string());
                }
                seen
            })
        })
        .collect();
    for c in pushers {
        let o = c.wait_with_output().unwrap();
        assert_ok(&o);
        assert!(
            stderr(&o).contains("replaced") || stderr(&o).contains("cachegate: saved"),
            "{}",
            stderr(&o)
        );
    }
    let mut seen = Vec::new();
    for r in readers {
        seen.extend(r.join().expect("a reader failed"));
    }
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter().all(|t| t == "seed" || tokens.contains(t)),
        "{seen:?}"
    );
    let entries = listed(p);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let kept = entries[0]["archive"].as_str().unwrap().to_string();

    let prune = |dry: bool| {
        let step = p
            .test()
            .args(["prune", "--abandoned-after", "0", "--older-than", "1"]);
        if dry { step.arg("--dry-run") } else { step }
            .any_status()
            .run()
    };
    let o = prune(true);
    assert_ok(&o);
    let o = prune(false);
    assert_ok(&o);
    let o = prune(true);
    assert!(
        !stdout(&o).contains("abandoned upload"),
        "orphans left after prune:\n{}",
        stdout(&o)
    );
    let entries = listed(p);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["archive"].as_str().unwrap(), kept);
    // And the survivor is complete.
    let d = job_dir(p, "after");
    in_dir(p, &d).verb("restore", &TREE, &tree_cmd()).run();
    assert_eq!(
        fs::read_to_string(d.join("out/a")).unwrap(),
        fs::read_to_string(d.join("out/b")).unwrap()
    );
}

/// `--salt` / `CACHEGATE_SALT` is a key component: a new salt misses, the same salt hits.
pub fn salt(p: &Project) {
    let d = job_dir(p, "salt");
    ensure_in(p, &d, &[], &[]).run();
    fs::remove_dir_all(d.join("out")).unwrap();
    let o = run(ensure_in(p, &d, &["--salt", "2"], &[]));
    assert_ok(&o);
    assert_eq!(installs_in(&d), 2, "a new salt must miss: {}", stderr(&o));
    fs::remove_dir_all(d.join("out")).unwrap();
    let o = run(ensure_in(p, &d, &[], &[("CACHEGATE_SALT", "2")]));
    assert_ok(&o);
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    assert_eq!(installs_in(&d), 2);
    let o = run(in_dir(p, &d)
        .args(["key", "--explain", "--salt", "2"])
        .args(TREE));
    assert!(stdout(&o).contains("salt     2"), "{}", stdout(&o));
}

/// Two projects with one cache name in one store: `explain` and the warm start stay in
/// their own project; `--namespace` shares deliberately.
pub fn namespaces(p: &Project) {
    if !require_tool("git", "apt-get install -y git") {
        return;
    }
    let project = |name: &str, remote: &str, lock: &str| {
        let d = p.tmp.path().join(name).join("checkout");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("app.lock"), lock).unwrap();
        for args in [vec!["init", "-q"], vec!["remote", "add", "origin", remote]] {
            let st = StdCommand::new("git")
                .args(&args)
                .current_dir(&d)
                .status()
                .unwrap();
            assert!(st.success());
        }
        d
    };
    let a = project("a", "https://gitlab.example/team/alpha.git", "alpha 1");
    let b = project("b", "git@gitlab.example:team/beta.git", "beta 1");
    let cmd = |dir: &Path, sub: &str, extra: &[&str]| {
        let args: Vec<&str> = TREE.iter().chain(extra).copied().collect();
        p.test().dir(dir).verb(sub, &args, &tree_cmd())
    };
    let o = run(cmd(&a, "ensure", &[]));
    assert_ok(&o);
    assert!(stderr(&o).contains("team/alpha"), "{}", stderr(&o));

    // beta never saw an entry of its own: explain must not diff against alpha's.
    let o = run(cmd(&b, "explain", &[]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("no entry of cache \"out\" exists"),
        "{}",
        stdout(&o)
    );
    // Nor does a warm start cross over.
    let o = run(cmd(&b, "ensure", &["--fallback"]));
    assert_ok(&o);
    assert!(!stderr(&o).contains("cachegate: warm"), "{}", stderr(&o));
    assert!(stderr(&o).contains("team/beta"), "{}", stderr(&o));

    // A fork reading its parent's cache asks for it.
    let o = run(cmd(&b, "explain", &["--namespace", "team/alpha"]));
    assert!(stdout(&o).contains("lock"), "{}", stdout(&o));
    assert!(stdout(&o).contains("newest entry"), "{}", stdout(&o));
    let listed = listed(p);
    assert_eq!(listed.len(), 2);
    let mut spaces: Vec<&str> = listed
        .iter()
        .map(|e| e["namespace"].as_str().unwrap())
        .collect();
    spaces.sort();
    assert_eq!(spaces, ["team/alpha", "team/beta"]);
}

/// The time a hit saved, in the summary line, the JSON report and the dotenv file.
pub fn time_saved(p: &Project) {
    let d = job_dir(p, "saved");
    ensure_in(p, &d, &[], &[("SLEEP", "2")]).run();
    fs::remove_dir_all(d.join("out")).unwrap();
    let json = d.join("report.json");
    let dotenv = d.join("cache.env");
    let o = run(ensure_in(
        p,
        &d,
        &[
            "--json",
            json.to_str().unwrap(),
            "--dotenv",
            dotenv.to_str().unwrap(),
        ],
        &[],
    ));
    assert_ok(&o);
    let line = stderr(&o)
        .lines()
        .find(|l| l.starts_with("cachegate: hit"))
        .unwrap_or_default()
        .to_string();
    // `… · saved ~2 s: install 2.0 s, restore 0.1 s`, the product page's shape.
    let nums: Vec<f64> = line
        .split(" · saved ~")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"))
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    let [saved_line, install, restore] = nums[..] else {
        panic!("{line}")
    };
    assert!(
        line.contains(": install ") && line.contains(", restore "),
        "{line}"
    );
    assert!((2.0..3.0).contains(&install), "{line}");
    assert!((saved_line - (install - restore)).abs() <= 0.5, "{line}");
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    let saved = report["saved_seconds"].as_f64().unwrap();
    assert!((1.0..3.0).contains(&saved), "{report:#}");
    assert!(
        report["entry_install_seconds"].as_f64().unwrap() >= 2.0,
        "{report:#}"
    );
    let env = fs::read_to_string(&dotenv).unwrap();
    let v: f64 = env
        .lines()
        .find_map(|l| l.strip_prefix("CACHEGATE_SAVED_SECONDS="))
        .unwrap_or_else(|| panic!("{env}"))
        .parse()
        .unwrap();
    assert!((saved - v).abs() < 0.1, "{env}");
}

/// Three hits in a day write the last use once; `ls` shows install time, hits and last
/// use.
pub fn last_use(p: &Project) {
    let d = job_dir(p, "used");
    ensure_in(p, &d, &[], &[("SLEEP", "1")]).run();
    let e = &listed(p)[0];
    assert!(e["last_used"].is_null(), "{e:#}");
    assert_eq!(e["hit_days"], 0);
    for _ in 0..3 {
        fs::remove_dir_all(d.join("out")).unwrap();
        let o = run(ensure_in(p, &d, &[], &[]));
        assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    }
    let e = &listed(p)[0];
    // Hits count the days with one: three on one day are one.
    assert_eq!(e["hit_days"], 1, "{e:#}");
    let used = e["last_used"].as_u64().unwrap();
    assert!(crate::common::unix_now() - used < 120, "{e:#}");
    assert!(e["install_seconds"].as_f64().unwrap() >= 1.0, "{e:#}");
    let o = p.test().arg("ls").any_status().run();
    let table = stdout(&o);
    for col in ["install", "hits", "last use"] {
        assert!(table.lines().next().unwrap().contains(col), "{table}");
    }
}

// ------------------------------------------------------------------- per store

fn dir() -> Project {
    Project::new()
}

fn garage() -> Option<Project> {
    crate::s3::garage_project().map(|(p, _)| p)
}

fn nginx() -> Option<Project> {
    NginxStore::start().map(|s| Project::with_store(Box::new(s)))
}

fn gitlab() -> Project {
    Project::with_store(Box::new(GitlabStore(Arc::new(GitlabEmu::start()))))
}

macro_rules! every_store {
    ($($scenario:ident),* $(,)?) => {
        mod on_dir { $( #[test] fn $scenario() { super::$scenario(&super::dir()); } )* }
        mod on_s3 { $( #[test] fn $scenario() { if let Some(p) = super::garage() { super::$scenario(&p); } } )* }
        mod on_http { $( #[test] fn $scenario() { if let Some(p) = super::nginx() { super::$scenario(&p); } } )* }
        mod on_gitlab { $( #[test] fn $scenario() { super::$scenario(&super::gitlab()); } )* }
    };
}

every_store!(
    warm_start_pip,
    single_flight,
    single_flight_leader_killed,
    single_flight_leader_fails,
    prune_scope,
    keep_counts_each_name_when_one_name_starts_another,
    refresh_under_load,
    salt,
    namespaces,
    time_saved,
    last_use,
    stats_count_parallel_jobs_and_prune,
);

// ------------------------------------------------------- store-specific checks

/// Three hits: the registry sees three uploads of job records, one each, no read of a
/// last-use record, and a hit (even with `--fallback` set) never lists packages.
#[test]
fn three_hits_write_three_job_records_and_read_no_last_use_from_the_gitlab_registry() {
    let emu = Arc::new(GitlabEmu::start());
    let p = Project::with_store(Box::new(GitlabStore(emu.clone())));
    let d = job_dir(&p, "used");
    ensure_in(&p, &d, &[], &[]).run();
    emu.clear_requests();
    for _ in 0..3 {
        fs::remove_dir_all(d.join("out")).unwrap();
        let o = run(ensure_in(&p, &d, &["--fallback"], &[]));
        assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    }
    let reqs = emu.requests();
    let shown = || {
        reqs.iter()
            .map(|r| (&r.method, &r.path))
            .collect::<Vec<_>>()
    };
    let record_puts = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains(".rec."))
        .count();
    assert_eq!(record_puts, 3, "{:#?}", shown());
    assert!(
        !reqs.iter().any(|r| r.path.ends_with(".used")),
        "{:#?}",
        shown()
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/packages")),
        "a hit listed the registry"
    );
}

#[test]
fn three_hits_write_three_job_records_and_read_no_last_use_from_nginx() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let log = store.nginx.dir.path().join("logs/access.log");
    let p = Project::with_store(Box::new(store));
    let d = job_dir(&p, "used");
    ensure_in(&p, &d, &[], &[]).run();
    for _ in 0..3 {
        fs::remove_dir_all(d.join("out")).unwrap();
        let o = run(ensure_in(&p, &d, &[], &[]));
        assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    }
    let log = fs::read_to_string(&log).unwrap();
    let writes = log
        .lines()
        .filter(|l| l.starts_with("PUT ") && l.contains(".rec."))
        .count();
    // The miss's save record, then one per hit.
    assert_eq!(writes, 4, "{log}");
    assert!(!log.contains(".used"), "{log}");
}

/// Rewrite what a directory store holds for one entry, as time would have: `created` (in
/// the manifest) and the last use (in its record) set `days` back.
fn age_entry(p: &Project, manifest: &str, created_days: u64, used_days: Option<u64>) {
    let now = crate::common::unix_now();
    let path = p.store.join(manifest);
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    m["created"] = (now - created_days * 86_400).into();
    fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let used = p.store.join(manifest.replace(".json", ".used"));
    if let Some(days) = used_days {
        let rec = serde_json::json!({"last_used": now - days * 86_400, "hit_days": 3});
        fs::write(used, rec.to_string()).unwrap();
    }
}

fn prune(p: &Project, args: &[&str]) -> Output {
    p.test().arg("prune").args(args).run()
}

fn keys(p: &Project) -> Vec<String> {
    let mut k: Vec<String> = listed(p)
        .iter()
        .map(|e| e["key"].as_str().unwrap()[..8].to_string())
        .collect();
    k.sort();
    k
}

#[test]
fn prune_unused_for_deletes_exactly_the_entries_nobody_restored_lately() {
    let p = Project::new();
    let d = job_dir(&p, "unused");
    let mut made = Vec::new();
    for v in ["a", "b", "c", "d"] {
        fs::write(d.join("app.lock"), v).unwrap();
        ensure_in(&p, &d, &[], &[]).run();
        let newest = listed(&p)
            .into_iter()
            .find(|e| {
                !made
                    .iter()
                    .any(|(_, m): &(String, String)| m == e["manifest"].as_str().unwrap())
            })
            .unwrap();
        made.push((
            newest["key"].as_str().unwrap()[..8].to_string(),
            newest["manifest"].as_str().unwrap().to_string(),
        ));
    }
    // a: saved long ago, restored today; b: saved long ago, never restored;
    // c: saved today; d: saved and last restored long ago.
    age_entry(&p, &made[0].1, 30, Some(0));
    age_entry(&p, &made[1].1, 30, None);
    age_entry(&p, &made[3].1, 30, Some(10));
    let doomed = [made[1].0.clone(), made[3].0.clone()];
    let before = crate::common::walk(&p.store);

    let o = prune(&p, &["--unused-for", "7", "--dry-run"]);
    let out = stdout(&o);
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("would delete"))
            .count(),
        2,
        "{out}"
    );
    for k in &doomed {
        assert!(out.contains(k.as_str()), "{out}");
    }
    assert_eq!(
        crate::common::walk(&p.store),
        before,
        "a dry run deleted something"
    );

    let o = prune(&p, &["--unused-for", "7"]);
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("deleted"))
            .count(),
        2
    );
    let mut kept = vec![made[0].0.clone(), made[2].0.clone()];
    kept.sort();
    assert_eq!(keys(&p), kept);
    // Nothing of the deleted entries is left behind, their last-use records included.
    let files = crate::common::walk(&p.store);
    assert!(
        !files
            .iter()
            .any(|f| doomed.iter().any(|k| f.contains(k.as_str()))),
        "{files:#?}"
    );
}

/// `prune --scope` applies the rules to one scope only; a dry run first deletes nothing.
pub fn prune_scope(p: &Project) {
    let d = job_dir(p, "scoped");
    let job = |protected: Option<&str>, lock: &str| {
        fs::write(d.join("app.lock"), lock).unwrap();
        let env: Vec<(&str, &str)> = match protected {
            Some(v) => vec![("GITLAB_CI", "true"), ("CI_COMMIT_REF_PROTECTED", v)],
            None => vec![],
        };
        ensure_in(p, &d, &[], &env).run();
    };
    job(Some("true"), "p1");
    job(Some("false"), "u1");
    job(Some("false"), "u2");
    job(None, "l1");
    let scopes = |p: &Project| {
        let mut s: Vec<String> = listed(p)
            .iter()
            .map(|e| e["scope"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(
        scopes(p),
        ["local", "protected", "unprotected", "unprotected"]
    );
    // --older-than 0 means saved before this second.
    std::thread::sleep(Duration::from_millis(1100));

    let o = prune(
        p,
        &["--scope", "unprotected", "--older-than", "0", "--dry-run"],
    );
    let out = stdout(&o);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("would delete"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines.iter().all(|l| l.contains(" unprotected ")), "{out}");
    assert_eq!(scopes(p).len(), 4);

    prune(p, &["--scope", "unprotected", "--older-than", "0"]);
    assert_eq!(scopes(p), ["local", "protected"]);
    p.test()
        .args(["prune", "--scope", "feature", "--keep", "1"])
        .status(2)
        .stderr_contains("feature")
        .run();
}

/// A store walked in the wrong order splits the `pip` group around `pip-x` (`-` sorts
/// before `/`): `--keep 1` then keeps one of each name, the newest, on every store.
pub fn keep_counts_each_name_when_one_name_starts_another(p: &Project) {
    let d = job_dir(p, "names");
    let names = ["pip", "pip-x", "pip.x"];
    let save = |lock: &str| {
        fs::write(d.join("app.lock"), lock).unwrap();
        for name in names {
            ensure_in(p, &d, &["--name", name], &[]).run();
        }
    };
    let keys = |p: &Project| -> Vec<(String, String)> {
        let mut k: Vec<(String, String)> = listed(p)
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().into(),
                    e["key"].as_str().unwrap().into(),
                )
            })
            .collect();
        k.sort();
        k
    };
    save("v1");
    let old = keys(p);
    assert_eq!(old.len(), 3, "{old:?}");
    // --keep ranks by time of use, to the second.
    std::thread::sleep(Duration::from_millis(1100));
    save("v2");
    assert_eq!(keys(p).len(), 6);

    prune(p, &["--keep", "1"]);
    let kept = keys(p);
    let kept_names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kept_names, ["pip", "pip-x", "pip.x"], "{kept:?}");
    assert!(kept.iter().all(|k| !old.contains(k)), "{kept:?} {old:?}");
}

/// `npm ci` deletes node_modules first, so a warm start is skipped, said once.
#[test]
fn warm_start_is_skipped_for_npm_ci() {
    if !require_tool("npm", "apt-get install -y nodejs npm") {
        return;
    }
    let p = Project::new();
    p.write("dep-pkg/package.json", r#"{"name":"dep","version":"1.0.0"}"#)
        .write(
            "package.json",
            r#"{"name":"app","version":"1.0.0","private":true,"dependencies":{"dep":"file:./dep-pkg"}}"#,
        );
    npm_lock(&p);
    let ensure = |p: &Project| {
        p.test()
            .ensure(
                &["--fallback", "--lock", "package-lock.json"],
                &["npm", "ci", "--offline", "--no-audit", "--no-fund"],
            )
            .any_status()
            .run()
    };
    assert_ok(&ensure(&p));
    p.write(
        "dep-pkg/package.json",
        r#"{"name":"dep","version":"1.0.1"}"#,
    );
    npm_lock(&p);
    let o = ensure(&p);
    assert_ok(&o);
    let err = stderr(&o);
    assert_eq!(
        err.matches("`npm ci` deletes node_modules").count(),
        1,
        "{err}"
    );
    assert!(!err.contains("cachegate: warm"), "{err}");
}

#[test]
fn keep_and_max_size_evict_the_least_recently_used_first() {
    let p = Project::new();
    let d = job_dir(&p, "lru");
    let mut made = Vec::new();
    for v in ["old-but-used", "new-but-idle"] {
        fs::write(d.join("app.lock"), v).unwrap();
        ensure_in(&p, &d, &[], &[]).run();
        let e = listed(&p)
            .into_iter()
            .find(|e| {
                !made
                    .iter()
                    .any(|(_, m): &(String, String)| m == e["manifest"].as_str().unwrap())
            })
            .unwrap();
        made.push((
            e["key"].as_str().unwrap()[..8].to_string(),
            e["manifest"].as_str().unwrap().to_string(),
        ));
    }
    // The older entry was saved 20 days ago but restored today; the newer one, saved 10
    // days ago, never since.
    age_entry(&p, &made[0].1, 20, Some(0));
    age_entry(&p, &made[1].1, 10, None);
    // Room for all but one byte of the two: exactly one must go, the least recently used.
    let total: u64 = listed(&p)
        .iter()
        .map(|e| e["archive_bytes"].as_u64().unwrap())
        .sum();
    let room = (total - 1).to_string();
    for rule in [["--keep", "1"], ["--max-size", room.as_str()]] {
        let o = prune(&p, &[&rule[..], &["--dry-run"]].concat());
        let out = stdout(&o);
        let doomed: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("would delete"))
            .collect();
        assert_eq!(doomed.len(), 1, "{rule:?}: {out}");
        assert!(doomed[0].contains(made[1].0.as_str()), "{rule:?}: {out}");
    }
    prune(&p, &["--keep", "1"]);
    assert_eq!(keys(&p), [made[0].0.clone()]);
}

/// Runner mode keeps no objects, so single-flight and warm starts are no-ops there: inside
/// CI (where waiting is on by default) the install runs at once and nothing is written
/// anywhere but the marker.
#[test]
fn runner_mode_neither_waits_nor_warm_starts() {
    let p = Project::new();
    let d = job_dir(&p, "runner");
    let args: Vec<&str> = ["--backend", "runner"]
        .iter()
        .chain(&TREE)
        .copied()
        .collect();
    let o = run(in_dir(&p, &d)
        .env("CI", "true")
        .env("CACHEGATE_FALLBACK", "true")
        .ensure(&args, &tree_cmd()));
    assert_ok(&o);
    let err = stderr(&o);
    assert!(
        !err.contains("single flight") && !err.contains("warm"),
        "{err}"
    );
    assert_eq!(installs_in(&d), 1);
    assert!(
        crate::common::walk(&p.store).is_empty(),
        "runner mode wrote to a store"
    );
}

/// A warm start looks in the job's own scope first, then in the protected one, as lookups do.
#[test]
fn warm_start_prefers_the_jobs_own_scope_then_protected() {
    let p = Project::new();
    let d = job_dir(&p, "order");
    let report = d.join("report.json");
    let job = |protected: &str, lock: &str, extra: &[&str]| {
        fs::write(d.join("app.lock"), lock).unwrap();
        let env = [
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_REF_PROTECTED", protected),
        ];
        let _ = fs::remove_dir_all(d.join("out"));
        let o = run(ensure_in(&p, &d, extra, &env));
        assert_ok(&o);
        o
    };
    let json = ["--fallback", "--json", report.to_str().unwrap()];
    job("false", "mine", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    job("true", "main's, newer", &[]);
    let mine = |p: &Project| {
        listed(p)
            .into_iter()
            .find(|e| e["scope"] == "unprotected")
            .unwrap()["key"]
            .clone()
    };
    let before = mine(&p);
    let o = job("false", "changed", &json);
    assert!(stderr(&o).contains("cachegate: warm"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["warm"]["scope"], "unprotected", "{r:#}");
    assert_eq!(r["warm"]["key"], before, "{r:#}");
    // A protected job reads only its own scope: main's entry, never a branch's.
    let o = job("true", "changed again", &json);
    assert!(stderr(&o).contains("cachegate: warm"), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["warm"]["scope"], "protected", "{r:#}");
}
