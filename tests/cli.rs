//! End-to-end tests of the core loop on the directory backend: the real binary, real
//! package managers (pip into a venv, npm), offline.

mod common;
#[path = "cli/dist.rs"]
mod dist;
#[path = "cli/gitlab.rs"]
mod gitlab;
#[path = "cli/hostile.rs"]
mod hostile;
#[path = "cli/http.rs"]
mod http;
#[path = "cli/ranged.rs"]
mod ranged;
#[path = "cli/scopes.rs"]
mod scopes;
#[path = "cli/signing.rs"]
mod signing;

#[path = "cli/doctor.rs"]
mod doctor;
#[path = "cli/runner.rs"]
mod runner;
#[path = "cli/s3.rs"]
mod s3;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command as StdCommand;

use common::{Project, stderr, stdout};

use common::scenarios::{ensure, installs};

#[test]
fn python_venv_installs_once_restores_and_reinstalls_on_change_or_cleared_cache() {
    common::scenarios::python_venv(&Project::new());
}

#[test]
fn npm_ci_with_a_file_dependency_restores_the_link() {
    common::scenarios::npm_file_dependency(&Project::new());
}

fn tree_cmd(body: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("echo run >> installs.log && {body}"),
    ]
}

const MAKE_OUT: &str = "rm -rf out && mkdir -p out/sub && echo data > out/sub/f && chmod 750 out/sub/f && ln -s /usr/bin/env out/env-link && ln -s sub/f out/rel-link";

#[test]
fn modes_mtimes_and_links_round_trip() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(&format!(
        "{MAKE_OUT} && touch -d 2001-02-03T04:05:06 out/sub/f"
    ));
    let args = ["--lock", "app.lock", "--path", "out"];
    assert!(ensure(&p, &args, &cmd).status.success());
    let before = fs::metadata(p.path("out/sub/f")).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(&p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    let after = fs::metadata(p.path("out/sub/f")).unwrap();
    assert_eq!(after.permissions().mode() & 0o7777, 0o750);
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    assert_eq!(
        fs::read_link(p.path("out/env-link")).unwrap(),
        std::path::Path::new("/usr/bin/env")
    );
    assert_eq!(
        fs::read_link(p.path("out/rel-link")).unwrap(),
        std::path::Path::new("sub/f")
    );
    assert_eq!(
        fs::read_to_string(p.path("out/rel-link")).unwrap(),
        "data\n"
    );
}

#[test]
fn a_stale_target_is_replaced_and_a_symlinked_target_is_not_followed() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(MAKE_OUT);
    let args = ["--lock", "app.lock", "--path", "out"];
    assert!(ensure(&p, &args, &cmd).status.success());

    // A stale tree with an extra file: replaced whole.
    p.write("out/stale", "old");
    let o = ensure(&p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.path("out/stale").exists());

    // The target is a link to a directory elsewhere: the link is replaced, the directory
    // it pointed to is untouched.
    let elsewhere = p.tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("keep"), "mine").unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, p.path("out")).unwrap();
    let o = ensure(&p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !fs::symlink_metadata(p.path("out"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(common::walk(&elsewhere), ["keep"]);
    assert_eq!(fs::read_to_string(elsewhere.join("keep")).unwrap(), "mine");
    assert_eq!(installs(&p), 1);
    let leftovers: Vec<_> = fs::read_dir(&p.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".cachegate"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn a_lock_that_matches_nothing_is_a_usage_error_naming_pattern_and_dir() {
    let p = Project::new();
    let o = ensure(&p, &["--lock", "poetry.lock"], &tree_cmd("true"));
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("\"poetry.lock\""), "{err}");
    assert!(err.contains(&p.dir.display().to_string()), "{err}");
    assert_eq!(installs(&p), 0);
    let o = ensure(&p, &["--lock", "sub/*.lock"], &tree_cmd("true"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("\"sub/*.lock\""));
}

#[test]
fn an_unknown_backend_is_a_usage_error_listing_accepted_forms() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let o = ensure(
        &p,
        &[
            "--lock",
            "app.lock",
            "--path",
            "out",
            "--backend",
            "ftp://cache.example/x",
        ],
        &tree_cmd("true"),
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("\"ftp://cache.example/x\"") && err.contains("/abs/path"),
        "{err}"
    );
    assert_eq!(installs(&p), 0);
}

#[test]
fn missing_and_failing_commands_keep_their_status_and_save_nothing() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "out"];
    let o = ensure(&p, &args, &["no-such-command-cachegate".to_string()]);
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains("no-such-command-cachegate"),
        "{}",
        stderr(&o)
    );
    let o = ensure(&p, &args, &tree_cmd("mkdir -p out && exit 3"));
    assert_eq!(o.status.code(), Some(3));
    assert!(p.store_files().is_empty(), "{:?}", p.store_files());

    // --save-on-failure saves what the failed command left.
    let o = ensure(
        &p,
        &["--lock", "app.lock", "--path", "out", "--save-on-failure"],
        &tree_cmd("mkdir -p out && exit 3"),
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(p.store_files().len(), 2, "{:?}", p.store_files());
}

#[test]
fn an_unwritable_store_warns_and_the_job_succeeds_unless_strict() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // A store under a regular file cannot be created, even by root.
    let blocker = p.tmp.path().join("blocker");
    fs::write(&blocker, "").unwrap();
    let store = blocker.join("cache");
    let args = [
        "--lock",
        "app.lock",
        "--path",
        "out",
        "--backend",
        store.to_str().unwrap(),
    ];
    let o = ensure(&p, &args, &tree_cmd(MAKE_OUT));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // One warning: the lookup already failed, so the save is not tried again.
    assert!(
        err.contains("warning") && err.contains("cannot look up") && err.contains("not saved"),
        "{err}"
    );
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert_eq!(installs(&p), 1);
    assert!(p.path("out/sub/f").exists());

    let mut strict = args.to_vec();
    strict.push("--strict");
    let o = ensure(&p, &strict, &tree_cmd(MAKE_OUT));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

fn archive_file(p: &Project) -> std::path::PathBuf {
    let name = p
        .store_files()
        .into_iter()
        .find(|f| f.ends_with(".tar.zst"))
        .expect("an archive in the store");
    p.store.join(name)
}

#[test]
fn a_corrupted_or_truncated_entry_is_a_miss_and_gets_replaced() {
    for damage in ["flip", "truncate", "trailing"] {
        let p = Project::new();
        p.write("app.lock", "v1");
        let args = ["--lock", "app.lock", "--path", "out"];
        let cmd = tree_cmd(&format!(
            "{MAKE_OUT} && head -c 200000 /dev/urandom > out/blob"
        ));
        assert!(ensure(&p, &args, &cmd).status.success());
        let archive = archive_file(&p);
        let mut bytes = fs::read(&archive).unwrap();
        match damage {
            "flip" => {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
            }
            "truncate" => bytes.truncate(bytes.len() / 2),
            _ => bytes.extend_from_slice(b"<html>oops</html>"),
        }
        fs::write(&archive, bytes).unwrap();

        let o = ensure(&p, &args, &cmd);
        assert!(o.status.success(), "{damage}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("warning") && err.contains("could not restore"),
            "{damage}: {err}"
        );
        assert_eq!(installs(&p), 2, "{damage}: the install must run");
        assert!(
            !fs::read_dir(&p.dir)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(".cachegate")),
            "{damage}: staging left behind"
        );
        // The bad entry was replaced by a good one: the next job hits.
        assert!(archive_file(&p) != archive, "{damage}: entry not replaced");
        fs::remove_dir_all(p.path("out")).unwrap();
        let o = ensure(&p, &args, &cmd);
        assert!(
            stderr(&o).contains("cachegate: hit"),
            "{damage}: {}",
            stderr(&o)
        );
        assert_eq!(installs(&p), 2);
    }
}

#[test]
fn a_path_the_command_did_not_create_warns_and_saves_nothing() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let o = ensure(
        &p,
        &["--lock", "app.lock", "--path", "build"],
        &tree_cmd("true"),
    );
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(err.contains("warning") && err.contains("build"), "{err}");
    assert!(p.store_files().is_empty());
}

#[test]
fn check_answers_without_downloading() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "out"];
    let cmd = tree_cmd(MAKE_OUT);
    let check = |p: &Project| {
        p.cmd()
            .arg("check")
            .args(args)
            .arg("--")
            .args(&cmd)
            .output()
            .unwrap()
    };
    assert_eq!(check(&p).status.code(), Some(1));
    assert!(ensure(&p, &args, &cmd).status.success());
    assert_eq!(check(&p).status.code(), Some(0));
    // With the archive gone, check still answers from the manifest alone.
    fs::remove_file(archive_file(&p)).unwrap();
    let o = check(&p);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "stdout is for data only");
}

#[test]
fn restore_and_save_use_the_key_ensure_uses() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "out"];
    let cmd = tree_cmd(MAKE_OUT);
    let run = |verb: &str| {
        p.cmd()
            .arg(verb)
            .args(args)
            .arg("--")
            .args(&cmd)
            .output()
            .unwrap()
    };
    assert_eq!(run("restore").status.code(), Some(1));
    StdCommand::new("sh")
        .args(["-c", MAKE_OUT])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    assert_eq!(run("save").status.code(), Some(0));
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = run("restore");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(p.path("out/sub/f").exists());
    // ensure with the same arguments hits what save wrote.
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(&p, &args, &cmd);
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    assert_eq!(installs(&p), 0);
}

fn key_of(p: &Project, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = p.cmd();
    c.arg("key")
        .args(["--lock", "app.lock", "--path", "out"])
        .args(extra);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).trim().to_string();
    assert_eq!(key.len(), 64, "{key}");
    key
}

#[test]
fn the_key_is_stable_and_every_component_changes_it() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let base = key_of(&p, &[], &[]);
    assert_eq!(base, key_of(&p, &[], &[]));
    // Flags and their CACHEGATE_ variables are the same input.
    let mut c = p.cmd();
    let o = c
        .arg("key")
        .env("CACHEGATE_LOCK", "app.lock")
        .env("CACHEGATE_PATH", "out")
        .output()
        .unwrap();
    assert_eq!(stdout(&o).trim(), base);

    type Variant<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);
    let variants: Vec<Variant> = vec![
        (vec!["--name", "other"], vec![]),
        (vec!["--path", "out2"], vec![]),
        (vec!["--", "npm", "ci"], vec![]),
        (
            vec!["--key-env", "TOOL_VERSION"],
            vec![("TOOL_VERSION", "1")],
        ),
        (vec!["--key-cmd", "echo 3.12"], vec![]),
        (vec![], vec![("CI_JOB_IMAGE", "python:3.12")]),
    ];
    let mut seen = vec![base.clone()];
    for (args, env) in variants {
        let k = key_of(&p, &args, &env);
        assert!(
            !seen.contains(&k),
            "{args:?} {env:?} did not change the key"
        );
        seen.push(k);
    }
    let a = key_of(&p, &["--key-env", "TOOL_VERSION"], &[("TOOL_VERSION", "1")]);
    let b = key_of(&p, &["--key-env", "TOOL_VERSION"], &[("TOOL_VERSION", "2")]);
    assert_ne!(a, b);
    p.write("app.lock", "v2");
    assert_ne!(key_of(&p, &[], &[]), base, "lock content");
}

#[test]
fn key_explain_and_json_show_every_component() {
    let p = Project::new();
    p.write("requirements.txt", "greet==1.0\n");
    let o = p
        .cmd()
        .args([
            "key",
            "--explain",
            "--lock",
            "requirements.txt",
            "--key-env",
            "PYV",
            "--key-cmd",
            "echo tool 1.2",
        ])
        .args(["--", "pip", "install"])
        .env("PYV", "3.12")
        .env("CI_JOB_IMAGE", "python:3.12")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "key ",
        "schema",
        "name     pip",
        "path     .venv",
        "location",
        "lock     requirements.txt blake3:",
        "command  pip install",
        "platform linux",
        "image    python:3.12",
        "env      PYV=3.12",
        "key-cmd  echo tool 1.2 => tool 1.2",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let o = p
        .cmd()
        .args(["key", "--json", "--lock", "requirements.txt"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["key"].as_str().unwrap().len(), 64);
    assert_eq!(v["components"]["name"], "pip");
    assert_eq!(v["components"]["locks"][0]["path"], "requirements.txt");
}

#[test]
fn reports_and_policies() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let json = p.tmp.path().join("r.json");
    let dotenv = p.tmp.path().join("r.env");
    let cmd = tree_cmd(MAKE_OUT);
    let args = [
        "--lock",
        "app.lock",
        "--path",
        "out",
        "--json",
        json.to_str().unwrap(),
        "--dotenv",
        dotenv.to_str().unwrap(),
    ];
    // pull: runs on a miss, never saves.
    let mut pull = args.to_vec();
    pull.extend(["--policy", "pull"]);
    assert!(ensure(&p, &pull, &cmd).status.success());
    assert!(p.store_files().is_empty());
    assert!(
        fs::read_to_string(&dotenv)
            .unwrap()
            .contains("CACHEGATE_HIT=false")
    );

    assert!(ensure(&p, &args, &cmd).status.success());
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["result"], "miss");
    assert_eq!(r["saved"], true);
    assert_eq!(r["command_status"], 0);

    fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(&p, &args, &cmd);
    let line = stderr(&o);
    let summary = line
        .lines()
        .find(|l| l.starts_with("cachegate: hit"))
        .unwrap();
    assert!(
        summary.contains("files")
            && summary.contains(" in ")
            && summary.contains(&p.store.display().to_string()),
        "{summary}"
    );
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["result"], "hit");
    assert_eq!(r["files"], 3);
    let env = fs::read_to_string(&dotenv).unwrap();
    assert!(
        env.contains("CACHEGATE_HIT=true") && env.contains("CACHEGATE_KEY="),
        "{env}"
    );

    // push: never restores, always runs.
    let mut push = args.to_vec();
    push.extend(["--policy", "push"]);
    assert!(ensure(&p, &push, &cmd).status.success());
    assert_eq!(installs(&p), 3);
}

#[test]
fn gitlab_runs_get_collapsible_sections_and_scopes() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let o = p
        .cmd()
        .args(["ensure", "--lock", "app.lock", "--path", "out", "--"])
        .args(tree_cmd(MAKE_OUT))
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "false")
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("section_start:") && err.contains("section_end:"),
        "{err}"
    );
    assert!(
        p.store_files()
            .iter()
            .all(|f| f.starts_with("v1/unprotected/")),
        "{:?}",
        p.store_files()
    );
}

#[test]
fn parallel_saves_of_one_key_leave_exactly_one_entry() {
    let p = Project::new();
    p.write("app.lock", "v1");
    common::scenarios::parallel_saves(&p, 12, &[]);
    let files = p.store_files();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".json")).count(),
        1,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".tar.zst")).count(),
        1,
        "{files:?}"
    );
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = p
        .cmd()
        .args(["restore", "--lock", "app.lock", "--path", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_option_values_name_the_value() {
    let p = Project::new();
    p.write("app.lock", "v1");
    for (args, needle) in [
        (vec!["--path", "../x"], "\"../x\""),
        (vec!["--path", "."], "\".\""),
        (vec!["--name", "a/b", "--path", "out"], "\"a/b\""),
        (vec!["--key-env", "A=B", "--path", "out"], "\"A=B\""),
        (vec!["--compression-level", "40", "--path", "out"], "40"),
        (vec!["--key-cmd", "exit 4", "--path", "out"], "\"exit 4\""),
    ] {
        let o = p
            .cmd()
            .args(["ensure", "--lock", "app.lock"])
            .args(&args)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    let o = p
        .cmd()
        .args(["ensure", "--lock", "app.lock"])
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--path"), "{}", stderr(&o));
}

#[test]
fn explain_names_what_changed_since_the_newest_entry() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "out"];
    let explain = |p: &Project| {
        p.cmd()
            .arg("explain")
            .args(args)
            .arg("--")
            .args(tree_cmd(MAKE_OUT))
            .output()
            .unwrap()
    };
    let o = explain(&p);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("no entry of cache \"out\" exists"),
        "{}",
        stdout(&o)
    );
    assert!(ensure(&p, &args, &tree_cmd(MAKE_OUT)).status.success());
    assert_eq!(explain(&p).status.code(), Some(0));
    p.write("app.lock", "v2");
    let o = explain(&p);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(
        text.contains("locks: app.lock@") && text.contains("newest entry"),
        "{text}"
    );
}

#[test]
fn ls_and_prune_manage_the_store() {
    let p = Project::new();
    for v in ["v1", "v2", "v3"] {
        // Entries are ordered by their creation second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        p.write("app.lock", v);
        assert!(
            ensure(
                &p,
                &["--lock", "app.lock", "--path", "out"],
                &tree_cmd(MAKE_OUT)
            )
            .status
            .success()
        );
    }
    let o = p.cmd().args(["ls", "--json"]).output().unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[0]["name"], "out");

    let o = p
        .cmd()
        .args(["prune", "--keep", "1", "--dry-run"])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("would delete"))
            .count(),
        2
    );
    assert_eq!(p.store_files().len(), 6);
    let o = p.cmd().args(["prune", "--keep", "1"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(p.store_files().len(), 2, "{:?}", p.store_files());
    // The newest one is the one kept: v3 still hits.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(
        &p,
        &["--lock", "app.lock", "--path", "out"],
        &tree_cmd(MAKE_OUT),
    );
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));

    let o = p.cmd().arg("prune").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn preset_variables_follow_the_preset_paths_only() {
    let p = Project::new();
    p.write("Cargo.lock", "# empty\n");
    let o = p.run(p.cmd().args(["check", "--lock", "Cargo.lock"]));
    assert!(
        stderr(&o).contains("command env CARGO_HOME="),
        "{}",
        stderr(&o)
    );
    // With another --path, CARGO_HOME would send downloads somewhere not cached.
    let o = p.run(
        p.cmd()
            .args(["check", "--lock", "Cargo.lock", "--path", "target"]),
    );
    assert!(!stderr(&o).contains("CARGO_HOME"), "{}", stderr(&o));
}

#[test]
fn a_laptop_restores_what_protected_jobs_saved_but_never_writes_there() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "out"];
    let cmd = tree_cmd(MAKE_OUT);
    let o = p.run(
        p.cmd()
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "true")
            .arg("ensure")
            .args(args)
            .arg("--")
            .args(&cmd),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);

    fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(&p, &[&args[..], &["--policy", "pull"]].concat(), &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("hit out"), "{}", stderr(&o));
    assert!(stderr(&o).contains("(protected)"), "{}", stderr(&o));
    assert_eq!(installs(&p), 1, "the install ran on a hit");

    // A miss on the laptop saves into its own scope, never into protected.
    p.write("app.lock", "v2");
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = ensure(&p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = p.store_files();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with("v1/protected/"))
            .count(),
        2,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("v1/local/")).count(),
        2,
        "{files:?}"
    );
}

/// Files that zstd cannot shrink, so restoring them takes long enough to be interrupted.
fn write_noise(dir: &std::path::Path, files: usize, size: usize) {
    fs::create_dir_all(dir).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..files {
        let mut buf = Vec::with_capacity(size);
        while buf.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        fs::write(dir.join(format!("f{i:04}")), buf).unwrap();
    }
}

fn staging_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".cachegate-staging-")
        })
        .map(|e| e.path())
        .collect()
}

#[test]
fn a_restore_killed_midway_leaves_the_previous_tree_and_the_next_run_recovers() {
    let p = Project::new();
    p.write("app.lock", "v1");
    write_noise(&p.path("out"), 160, 1 << 20);
    let args = ["--lock", "app.lock", "--path", "out"];
    let o = p.run(p.cmd().arg("save").args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    let saved = common::walk(&p.path("out"));

    fs::remove_dir_all(p.path("out")).unwrap();
    p.write("out/stale", "previous");

    // SIGKILL while the restore is extracting into its staging directory.
    let mut child = p
        .std_cmd()
        .arg("restore")
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Once the staging dir has its note saying which target it is for: extraction is next.
    let noted = |d: &std::path::Path| staging_dirs(d).iter().any(|s| s.join("target").exists());
    while !noted(&p.dir) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the restore finished before it could be killed; make the tree bigger"
    );
    assert_eq!(common::walk(&p.path("out")), ["stale"]);
    assert_eq!(fs::read_to_string(p.path("out/stale")).unwrap(), "previous");
    let left = staging_dirs(&p.dir);
    assert_eq!(left.len(), 1, "{left:?}");

    // The worst moment: killed between moving the old tree aside and renaming the new one in.
    fs::rename(p.path("out"), left[0].join("old")).unwrap();
    let empty = p.tmp.path().join("empty-store");
    fs::create_dir(&empty).unwrap();
    let o = p.run(
        p.cmd()
            .arg("restore")
            .args(args)
            .env("CACHEGATE_BACKEND", &empty),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("interrupted") && stderr(&o).contains("out back"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read_to_string(p.path("out/stale")).unwrap(), "previous");
    assert!(staging_dirs(&p.dir).is_empty());

    let o = p.run(p.cmd().arg("restore").args(args));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(common::walk(&p.path("out")), saved);
    assert!(staging_dirs(&p.dir).is_empty());
}

/// A small tmpfs, unmounted when dropped: a disk that fills up on cue.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: std::path::PathBuf, size: &str) -> SmallDisk {
        fs::create_dir_all(&at).unwrap();
        let o = StdCommand::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount tmpfs: {}", stderr(&o));
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = StdCommand::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_miss_or_a_skipped_save_and_never_fails_the_job() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !common::require(
        root,
        "root (mounting a small tmpfs needs it)",
        "run the tests as root",
    ) {
        return;
    }
    let p = Project::new();
    p.write("app.lock", "v1");
    write_noise(&p.path("out"), 12, 1 << 20);
    let args = ["--lock", "app.lock", "--path", "out"];
    let install = ["--", "sh", "-c", "mkdir -p out && echo installed > out/f"];
    let o = p.run(p.cmd().arg("save").args(args).args(install));
    assert!(o.status.success(), "{}", stderr(&o));
    let saved = p.store_files();

    // Restoring 12 MB into a 4 MB workspace: the extraction runs out of space.
    let small = SmallDisk::mount(p.tmp.path().join("small"), "4m");
    fs::write(small.0.join("app.lock"), "v1").unwrap();
    let o = p.run(
        p.cmd()
            .current_dir(&small.0)
            .arg("ensure")
            .args(args)
            .args(install),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(
        fs::read_to_string(small.0.join("out/f")).unwrap(),
        "installed\n"
    );
    assert!(staging_dirs(&small.0).is_empty());
    // Local trouble is not a bad entry: it stays in the store for the next job.
    assert_eq!(p.store_files(), saved);

    // Saving 12 MB into a 2 MB store: skipped with a warning, nothing half-written left.
    let disk = SmallDisk::mount(p.tmp.path().join("tiny-store"), "2m");
    let o = p.run(
        p.cmd()
            .arg("ensure")
            .args(args)
            .env("CACHEGATE_BACKEND", &disk.0)
            .args(["--", "true"]),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("could not save") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(common::walk(&disk.0), Vec::<String>::new());
    let o = p.run(
        p.cmd()
            .arg("ensure")
            .args(args)
            .args(["--strict", "--backend"])
            .arg(&disk.0)
            .args(["--", "true"]),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}
