//! Regression tests, one per defect, each named after the defect it pins (as ripgrep's
//! `tests/regression.rs`): the name says what went wrong, the body shows it cannot again.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::process::Stdio;

use crate::common::dist::repo_root;
use crate::common::gitlab_emu::GitlabEmu;
use crate::common::{ARGS, Project, free_port, listed, one_file, require, stderr};

#[test]
fn key_and_explain_refused_options_that_ensure_accepts() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let json = p.tmp.path().join("report.json");
    let dotenv = p.tmp.path().join("report.env");
    let store = p.store.display().to_string();
    // An ensure line as a CI job writes it, every kind of option in it.
    let mut line: Vec<&str> = ARGS.to_vec();
    line.extend([
        "--backend",
        &store,
        "--policy",
        "pull-push",
        "--strict",
        "--compression-level",
        "5",
        "--scope",
        "auto",
        "--refuse-secrets",
        "--max-archive-size",
        "1GB",
        "--max-unpacked-size",
        "2G",
        "--max-entries",
        "1000",
        "--connect-timeout",
        "5",
        "--retries",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--dotenv",
        dotenv.to_str().unwrap(),
        "--save-on-failure",
    ]);
    p.test().ensure(&line, &one_file()).run();
    let plain = p.test().verb("key", &ARGS, &one_file()).run();
    let key = String::from_utf8(plain.stdout).unwrap();
    assert_eq!(key.trim().len(), 64, "{key}");
    // The same line with the command swapped: the same key, printed the same way.
    p.test()
        .verb("key", &line, &one_file())
        .stdout(&key)
        .stderr_lacks("unexpected argument")
        .run();
    let mut explain_line = line.clone();
    explain_line.push("--explain");
    p.test()
        .verb("key", &explain_line, &one_file())
        .stdout_contains("app.lock")
        .run();
    p.test()
        .verb("explain", &line, &one_file())
        .stdout_contains("hit: out")
        .run();
}

#[test]
fn save_with_policy_pull_uploaded() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.write("out/f", "data");
    let o = p
        .test()
        .verb(
            "save",
            &[&ARGS[..], &["--policy", "pull"]].concat(),
            &[] as &[&str],
        )
        .stderr_contains("not saved")
        .run();
    assert!(p.store_files().is_empty(), "{}", stderr(&o));
    // A save the policy allows does upload: the store above was empty for the right reason.
    p.test().verb("save", &ARGS, &[] as &[&str]).run();
    assert!(!p.store_files().is_empty());
}

#[test]
fn runner_mode_restore_with_policy_push_reported_a_hit() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let runner = ["--backend", "runner"];
    let args = [&ARGS[..], &runner].concat();
    p.test().ensure(&args, &one_file()).run();
    // The marker is current: a restore that may read hits...
    p.test()
        .verb("restore", &args, &one_file())
        .stderr_contains("hit out")
        .run();
    // ...and one that must never restore does not.
    let push = [&args[..], &["--policy", "push"]].concat();
    p.test()
        .verb("restore", &push, &one_file())
        .status(1)
        .stderr_lacks("hit out")
        .run();
    p.test().verb("check", &push, &one_file()).status(1).run();
}

#[test]
fn gitlab_ci_without_a_backend_named_the_registry_twice() {
    let emu = GitlabEmu::start();
    let p = Project::new();
    p.write("app.lock", "v1");
    let o = p
        .test()
        .env_remove("CACHEGATE_BACKEND")
        .env("GITLAB_CI", "true")
        .envs(emu.job_env())
        .ensure(&ARGS, &one_file())
        .run();
    let said = "using this project's GitLab package registry";
    assert_eq!(stderr(&o).matches(said).count(), 1, "{}", stderr(&o));
    assert!(!emu.requests().is_empty(), "the registry was not used");
}

#[test]
fn ls_into_a_closed_pipe_panicked() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    // Enough entries that the listing outgrows the pipe: cachegate is still writing when
    // the reader goes away. Copies of one manifest list as entries of their own.
    let manifest = p
        .store_files()
        .into_iter()
        .find(|f| f.ends_with(".json"))
        .unwrap();
    let dir = p.store.join(&manifest);
    let dir = dir.parent().unwrap();
    let body = fs::read(p.store.join(&manifest)).unwrap();
    for i in 0..3000 {
        fs::write(dir.join(format!("{i:064x}.json")), &body).unwrap();
    }
    // stderr goes to a file: a pipe nobody reads while the test waits on stdout could fill.
    let err_path = p.tmp.path().join("ls.stderr");
    let mut child = p
        .test()
        .arg("ls")
        .std_command()
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here, as `head -1` exits.
    let status = child.wait().unwrap();
    assert!(first.starts_with("scope"), "{first}");
    let err = fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn prune_max_size_refused_units_every_other_size_option_takes() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    p.test()
        .args(["prune", "--max-size", "100M"])
        .stderr_contains("deleted 0 entries")
        .run();
    assert_eq!(listed(&p).len(), 1);
    // Sizes are taken in the units they are shown in: the entry's own size, as shown,
    // rounded down, is too small to keep it.
    let bytes = listed(&p)[0]["archive_bytes"].as_u64().unwrap();
    assert!(bytes < 1000, "{bytes}");
    p.test()
        .args([
            "prune",
            "--dry-run",
            "--max-size",
            &format!("{}B", bytes - 1),
        ])
        .stdout_contains(&format!("({bytes} B,"))
        .run();
    p.test()
        .args(["prune", "--max-size", "0.001kB", "--older-than", "36h"])
        .stdout_contains("deleted")
        .run();
    assert!(listed(&p).is_empty());
}

#[test]
fn store_failures_in_ls_and_prune_were_usage_errors() {
    let p = Project::new();
    let down = format!("http://127.0.0.1:{}/cache", free_port());
    for sub in [&["ls"][..], &["prune", "--keep", "1"]] {
        p.test()
            .args(sub)
            .args(["--backend", &down, "--retries", "0"])
            .status(3)
            .stderr_contains("127.0.0.1")
            .run();
    }
}

#[test]
fn ls_printed_a_table_head_or_an_open_array_for_a_store_that_refused_the_listing() {
    let p = Project::new();
    let down = format!("http://127.0.0.1:{}/cache", free_port());
    for json in [&[][..], &["--json"]] {
        p.test()
            .args(["ls", "--backend", &down, "--retries", "0"])
            .args(json)
            .status(3)
            .stdout("")
            .run();
    }
    // An empty store that answers still gets its head and a valid array.
    p.test().args(["ls"]).stdout_contains("scope").run();
    assert!(listed(&p).is_empty());
}

#[test]
fn doctor_created_a_missing_directory_and_passed() {
    let p = Project::new();
    let nope = p.home.join("nope");
    p.test()
        .args(["doctor", "--backend", nope.to_str().unwrap()])
        .status(3)
        .stderr_contains("does not exist")
        .stderr_lacks("all checks passed")
        .run();
    assert!(!nope.exists(), "doctor created {}", nope.display());
}

#[test]
fn one_file_was_counted_as_1_files() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test()
        .ensure(&ARGS, &one_file())
        .stderr_contains("· 1 file,")
        .stderr_lacks("1 files")
        .run();
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&ARGS, &one_file())
        .stderr_contains("· 1 file,")
        .stderr_lacks("1 files")
        .run();
}

#[test]
fn ls_and_prune_counted_1_entry_as_1_entries() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    p.test()
        .arg("ls")
        .stderr_contains("cachegate: 1 entry,")
        .stderr_lacks("1 entries")
        .run();
    // An archive no manifest names: one abandoned upload.
    let archive = listed(&p)[0]["archive"].as_str().unwrap().to_string();
    let (dir, _) = archive.rsplit_once('/').unwrap();
    let orphan = format!("{dir}/{}-{}.tar.zst", "f".repeat(64), "0".repeat(32));
    fs::copy(p.store.join(&archive), p.store.join(&orphan)).unwrap();
    p.write("app.lock", "v2");
    p.test().ensure(&ARGS, &one_file()).run();
    p.test()
        .args(["prune", "--keep", "1", "--abandoned-after", "0"])
        .stderr_contains("deleted 1 entry and 1 abandoned upload (0 incomplete)")
        .stderr_contains("; 1 entry, ")
        .stderr_lacks("1 entries")
        .stderr_lacks("1 abandoned uploads")
        .run();
    assert!(!p.store.join(&orphan).exists());
    assert_eq!(listed(&p).len(), 1);
}

#[test]
fn preset_was_named_when_path_replaced_its_paths() {
    let p = Project::new();
    p.write("yarn.lock", "# yarn lockfile v1\n");
    p.test()
        .ensure(&["--lock", "yarn.lock", "--path", "out"], &one_file())
        .stderr_contains("cachegate: caching out")
        .stderr_lacks("preset yarn")
        .run();
}

#[test]
fn creator_was_unknown_when_user_is_unset() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // The harness clears the environment: USER is not set.
    p.test().env_remove("USER").ensure(&ARGS, &one_file()).run();
    let name = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let name = String::from_utf8(name.stdout).unwrap();
    let creator = listed(&p)[0]["creator"].as_str().unwrap().to_string();
    assert!(
        creator.starts_with(&format!("{}@", name.trim())),
        "{creator}"
    );
}

/// `scripts/release.sh` took the binary from `target/` even when `CARGO_TARGET_DIR` put the
/// build elsewhere, so it failed (or shipped a stale binary) for anyone with a shared target
/// dir. Run against this test's own target dir, it must ship exactly the binary built there,
/// and the man pages with it.
#[test]
fn release_sh_ignored_cargo_target_dir() {
    // This binary runs from <target>/debug/deps; the release build sits beside it.
    let target_dir: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let built = target_dir.join(&triple).join("release/cachegate");
    // Building a release takes minutes; .ci/run has built it (scripts/release.sh) by now.
    if !require(
        built.is_file(),
        &format!("a release build in {}", target_dir.display()),
        "CARGO_TARGET_DIR=<this target dir> scripts/release.sh",
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let dist = out.path().join("dist");
    let o = StdCommand::new(repo_root().join("scripts/release.sh"))
        .arg(&dist)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shipped = dist.join(format!("cachegate-linux-{}", std::env::consts::ARCH));
    assert!(
        std::fs::read(&shipped).unwrap() == std::fs::read(&built).unwrap(),
        "{} is not the binary built in {}",
        shipped.display(),
        built.display()
    );
    let page = std::fs::read_to_string(dist.join("man/cachegate.1")).unwrap();
    assert!(page.contains(".TH cachegate 1"), "{page}");
    assert!(dist.join("man/cachegate-ensure.1").is_file());
}
