//! End-to-end tests of the core loop on the directory backend: the real binary, real
//! package managers (pip into a venv, npm), offline.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command as StdCommand;

use crate::common::scenarios::installs;
use crate::common::{self as common, ARGS, Project, Test, listed, stderr, stdout, tree_cmd};

#[test]
fn python_venv_installs_once_restores_and_reinstalls_on_change_or_cleared_cache() {
    common::scenarios::python_venv(&Project::new());
}

#[test]
fn npm_ci_with_a_file_dependency_restores_the_link() {
    common::scenarios::npm_file_dependency(&Project::new());
}

const MAKE_OUT: &str = "rm -rf out && mkdir -p out/sub && echo data > out/sub/f && chmod 750 out/sub/f && ln -s /usr/bin/env out/env-link && ln -s sub/f out/rel-link";

#[test]
fn modes_mtimes_and_links_round_trip() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(&format!(
        "{MAKE_OUT} && touch -d 2001-02-03T04:05:06 out/sub/f"
    ));
    p.test().ensure(&ARGS, &cmd).run();
    let before = fs::metadata(p.path("out/sub/f")).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test().ensure(&ARGS, &cmd).installs(1).run();
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
    p.test().ensure(&ARGS, &cmd).run();

    // A stale tree with an extra file: replaced whole.
    p.write("out/stale", "old");
    p.test().ensure(&ARGS, &cmd).run();
    assert!(!p.path("out/stale").exists());

    // The target is a link to a directory elsewhere: the link is replaced, the directory
    // it pointed to is untouched.
    let elsewhere = p.tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("keep"), "mine").unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, p.path("out")).unwrap();
    p.test().ensure(&ARGS, &cmd).installs(1).run();
    assert!(
        !fs::symlink_metadata(p.path("out"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(common::walk(&elsewhere), ["keep"]);
    assert_eq!(fs::read_to_string(elsewhere.join("keep")).unwrap(), "mine");
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
    p.test()
        .ensure(&["--lock", "poetry.lock"], &tree_cmd("true"))
        .status(2)
        .stderr_contains("\"poetry.lock\"")
        .stderr_contains(&p.dir.display().to_string())
        .installs(0)
        .run();
    p.test()
        .ensure(&["--lock", "sub/*.lock"], &tree_cmd("true"))
        .status(2)
        .stderr_contains("\"sub/*.lock\"")
        .run();
}

#[test]
fn an_unknown_backend_is_a_usage_error_listing_accepted_forms() {
    Test::new()
        .write("app.lock", "v1")
        .ensure(
            &[&ARGS[..], &["--backend", "ftp://cache.example/x"]].concat(),
            &tree_cmd("true"),
        )
        .status(2)
        .stderr_contains("\"ftp://cache.example/x\"")
        .stderr_contains("/abs/path")
        .installs(0)
        .run();
}

#[test]
fn missing_and_failing_commands_keep_their_status_and_save_nothing() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test()
        .ensure(&ARGS, &["no-such-command-cachegate"])
        .status(127)
        .stderr_contains("no-such-command-cachegate")
        .run();
    p.test()
        .ensure(&ARGS, &tree_cmd("mkdir -p out && exit 3"))
        .status(3)
        .run();
    assert!(p.store_files().is_empty(), "{:?}", p.store_files());

    // --save-on-failure saves what the failed command left (a file: an entry of empty
    // directories is never saved).
    p.test()
        .ensure(
            &[&ARGS[..], &["--save-on-failure"]].concat(),
            &tree_cmd("mkdir -p out && touch out/partial && exit 3"),
        )
        .status(3)
        .run();
    // The manifest, the archive and the save's job record.
    assert_eq!(p.store_files().len(), 3, "{:?}", p.store_files());
}

#[test]
fn an_unwritable_store_warns_and_the_job_succeeds_unless_strict() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // A store under a regular file cannot be created, even by root.
    let blocker = p.tmp.path().join("blocker");
    fs::write(&blocker, "").unwrap();
    let store = blocker.join("cache");
    let args = [&ARGS[..], &["--backend", store.to_str().unwrap()]].concat();
    let o = p
        .test()
        .ensure(&args, &tree_cmd(MAKE_OUT))
        .stderr_contains("warning")
        .stderr_contains("cannot look up")
        .stderr_contains("not saved")
        .installs(1)
        .run();
    // One warning: the lookup already failed, so the save is not tried again.
    let err = stderr(&o);
    assert_eq!(err.matches("warning:").count(), 1, "{err}");
    assert!(p.path("out/sub/f").exists());

    p.test()
        .ensure(&[&args[..], &["--strict"]].concat(), &tree_cmd(MAKE_OUT))
        .status(3)
        .run();
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
        let cmd = tree_cmd(&format!(
            "{MAKE_OUT} && head -c 200000 /dev/urandom > out/blob"
        ));
        p.test().ensure(&ARGS, &cmd).run();
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

        // The install must run.
        p.test()
            .ensure(&ARGS, &cmd)
            .stderr_contains("warning")
            .stderr_contains("could not restore")
            .installs(2)
            .run();
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
        p.test()
            .ensure(&ARGS, &cmd)
            .any_status()
            .stderr_contains("cachegate: hit")
            .installs(2)
            .run();
    }
}

#[test]
fn a_path_the_command_did_not_create_warns_and_saves_nothing() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test()
        .ensure(
            &["--lock", "app.lock", "--path", "build"],
            &tree_cmd("true"),
        )
        .stderr_contains("warning")
        .stderr_contains("build")
        .run();
    assert!(p.store_files().is_empty());
}

#[test]
fn check_answers_without_downloading() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(MAKE_OUT);
    p.test().verb("check", &ARGS, &cmd).status(1).run();
    p.test().ensure(&ARGS, &cmd).run();
    p.test().verb("check", &ARGS, &cmd).status(0).run();
    // With the archive gone, check still answers from the manifest alone; stdout is for
    // data only.
    fs::remove_file(archive_file(&p)).unwrap();
    p.test()
        .verb("check", &ARGS, &cmd)
        .status(0)
        .stdout("")
        .run();
}

#[test]
fn restore_and_save_use_the_key_ensure_uses() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(MAKE_OUT);
    p.test().verb("restore", &ARGS, &cmd).status(1).run();
    StdCommand::new("sh")
        .args(["-c", MAKE_OUT])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    p.test().verb("save", &ARGS, &cmd).status(0).run();
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test().verb("restore", &ARGS, &cmd).status(0).run();
    assert!(p.path("out/sub/f").exists());
    // ensure with the same arguments hits what save wrote.
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&ARGS, &cmd)
        .any_status()
        .stderr_contains("cachegate: hit")
        .installs(0)
        .run();
}

fn key_of(p: &Project, extra: &[&str], env: &[(&str, &str)]) -> String {
    let o = p
        .test()
        .arg("key")
        .args(ARGS)
        .args(extra)
        .envs(env.iter().copied())
        .run();
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
    let o = p
        .test()
        .arg("key")
        .env("CACHEGATE_LOCK", "app.lock")
        .env("CACHEGATE_PATH", "out")
        .any_status()
        .run();
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
    let mut explain = p
        .test()
        .args([
            "key",
            "--explain",
            "--lock",
            "requirements.txt",
            "--key-env",
            "PYV",
            "--key-cmd",
            "echo tool 1.2",
            // A venv the user names keeps its location in the key (the preset's own moves
            // with the project: `relocate`).
            "--path",
            ".venv",
        ])
        .args(["--", "pip", "install"])
        .env("PYV", "3.12")
        .env("CI_JOB_IMAGE", "python:3.12");
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
        explain = explain.stdout_contains(needle);
    }
    explain.run();
    let o = p
        .test()
        .args(["key", "--json", "--lock", "requirements.txt"])
        .any_status()
        .run();
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
    p.test().ensure(&pull, &cmd).run();
    assert!(p.store_files().is_empty());
    assert!(
        fs::read_to_string(&dotenv)
            .unwrap()
            .contains("CACHEGATE_HIT=false")
    );

    p.test().ensure(&args, &cmd).run();
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["result"], "miss");
    assert_eq!(r["saved"], true);
    assert_eq!(r["command_status"], 0);

    fs::remove_dir_all(p.path("out")).unwrap();
    let o = p.test().ensure(&args, &cmd).any_status().run();
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
    p.test().ensure(&push, &cmd).run();
    assert_eq!(installs(&p), 3);
}

#[test]
fn gitlab_runs_get_collapsible_sections_and_scopes() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test()
        .ensure(&ARGS, &tree_cmd(MAKE_OUT))
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "false")
        .stderr_contains("section_start:")
        .stderr_contains("section_end:")
        .run();
    assert!(
        p.store_files()
            .iter()
            .all(|f| f.starts_with(&format!("{}/unprotected/", common::project_root()))),
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
    common::scenarios::assert_one_entry(&files);
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test().arg("restore").args(ARGS).run();
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
        p.test()
            .ensure(&[&["--lock", "app.lock"][..], &args].concat(), &["true"])
            .status(2)
            .stderr_contains(needle)
            .run();
    }
    p.test()
        .ensure(&["--lock", "app.lock"], &["true"])
        .status(2)
        .stderr_contains("--path")
        .run();
}

#[test]
fn explain_names_what_changed_since_the_newest_entry() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(MAKE_OUT);
    p.test()
        .verb("explain", &ARGS, &cmd)
        .status(1)
        .stdout_contains("no entry of cache \"out\" exists")
        .run();
    p.test().ensure(&ARGS, &cmd).run();
    p.test().verb("explain", &ARGS, &cmd).status(0).run();
    p.write("app.lock", "v2");
    p.test()
        .verb("explain", &ARGS, &cmd)
        .status(1)
        .stdout_contains("locks: app.lock@")
        .stdout_contains("newest entry")
        .run();
}

#[test]
fn ls_and_prune_manage_the_store() {
    let p = Project::new();
    for v in ["v1", "v2", "v3"] {
        // Entries are ordered by their creation second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        p.write("app.lock", v);
        p.test().ensure(&ARGS, &tree_cmd(MAKE_OUT)).run();
    }
    let rows = listed(&p);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "out");

    let o = p.test().args(["prune", "--keep", "1", "--dry-run"]).run();
    assert_eq!(
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("would delete"))
            .count(),
        2
    );
    // Three entries: a manifest, an archive and a save record each.
    assert_eq!(p.store_files().len(), 9);
    p.test().args(["prune", "--keep", "1"]).run();
    assert_eq!(p.store_files().len(), 3, "{:?}", p.store_files());
    // The newest one is the one kept: v3 still hits.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&ARGS, &tree_cmd(MAKE_OUT))
        .any_status()
        .stderr_contains("cachegate: hit")
        .run();

    p.test().arg("prune").status(2).run();
}

/// One synthetic entry of `prune_over_many_cache_names_*`, and what the rules see of it.
struct Synthetic {
    scope: &'static str,
    name: String,
    key8: String,
    last_use: u64,
    size: u64,
    files: Vec<String>,
}

/// `ls` and `prune` used to hold every entry of the store and sort them all; they now walk
/// it one cache name at a time (with `--max-size` weighed in passes before). Over many
/// entries in several cache names and two scopes, with last-use records, a planted
/// manifest, orphans and leftovers, the result must be exactly what one global sort by
/// last use decides.
#[test]
fn prune_over_many_cache_names_dooms_exactly_what_one_global_sort_would() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &tree_cmd(MAKE_OUT)).run();
    let real = listed(&p);
    let manifest = real[0]["manifest"].as_str().unwrap().to_string();
    let template: serde_json::Value =
        serde_json::from_slice(&fs::read(p.store.join(&manifest)).unwrap()).unwrap();
    let (dir, _) = manifest.rsplit_once('/').unwrap();
    let (local, _) = dir.rsplit_once('/').unwrap();
    let (ns_root, _) = local.rsplit_once('/').unwrap();
    fs::remove_dir_all(p.store.join(dir)).unwrap();
    let now = common::unix_now();
    let write = |rel: &str, data: &[u8]| {
        let path = p.store.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    };
    let mut entries = Vec::new();
    for i in 0..90u64 {
        let scope = if i % 4 == 3 { "unprotected" } else { "local" };
        let name = format!("n{}", i % 5);
        let key = format!("{i:08x}{}", "a".repeat(56));
        let at = format!("{ns_root}/{scope}/{name}/{key}");
        let archive = format!("{at}-{}.tar.zst", "0".repeat(16));
        let created = now - 3600 * (2 + i);
        let size = 1000 + (i * 37) % 500;
        let mut m = template.clone();
        m["key"] = key.clone().into();
        m["name"] = name.clone().into();
        m["scope"] = scope.into();
        m["archive"] = archive.clone().into();
        m["archive_size"] = size.into();
        m["created"] = created.into();
        write(&format!("{at}.json"), &serde_json::to_vec(&m).unwrap());
        write(&archive, b"\x28\xb5\x2f\xfd\x00\x00\x00\x00");
        let mut files = vec![format!("{at}.json"), archive];
        // Some old entries were restored lately: they outrank newer ones.
        let mut last_use = created;
        if i % 7 == 0 {
            last_use = now - 60 * (i + 1);
            let used = serde_json::json!({"last_used": last_use, "hit_days": 2});
            write(&format!("{at}.used"), used.to_string().as_bytes());
            files.push(format!("{at}.used"));
        }
        entries.push(Synthetic {
            scope,
            name,
            key8: key[..8].to_string(),
            last_use,
            size,
            files,
        });
    }
    // A manifest planted in n1 naming the archive of n2's most recently used entry: it is
    // an entry of n1 (the oldest), but only its manifest is ever deleted.
    let target = entries
        .iter()
        .filter(|e| e.scope == "local" && e.name == "n2")
        .max_by_key(|e| e.last_use)
        .unwrap();
    let victim = target.files[1].clone();
    let planted = format!("{ns_root}/local/n1/{}.json", "f".repeat(64));
    let mut m = template.clone();
    m["key"] = "f".repeat(64).into();
    m["name"] = "n1".into();
    m["archive"] = victim.clone().into();
    m["archive_size"] = 7.into();
    m["created"] = (now - 400 * 86_400).into();
    write(&planted, &serde_json::to_vec(&m).unwrap());
    entries.push(Synthetic {
        scope: "local",
        name: "n1".into(),
        key8: "ffffffff".into(),
        last_use: now - 400 * 86_400,
        size: 7,
        files: vec![planted],
    });
    // What no entry owns: abandoned archives, a last-use record of a gone entry, a lease
    // from two days ago; and an object above the layout's depth, which is no entry's.
    let mut leftovers = Vec::new();
    for i in 0..3 {
        let o = format!(
            "{ns_root}/local/n3/{}{i}-{}.tar.zst",
            "e".repeat(63),
            "1".repeat(16)
        );
        write(&o, b"");
        leftovers.push(o);
    }
    let gone = format!("{ns_root}/unprotected/n4/{}.used", "d".repeat(64));
    write(&gone, b"{\"last_used\": 1, \"hit_days\": 1}");
    let lease = format!("{ns_root}/local/n0/{}.lease.1", "c".repeat(64));
    write(&lease, b"{}");
    let two_days = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    fs::File::options()
        .write(true)
        .open(p.store.join(&lease))
        .unwrap()
        .set_modified(two_days)
        .unwrap();
    leftovers.extend([gone, lease]);
    let stray = "v2/stray.tar.zst";
    write(stray, b"");

    // ls: every entry once, grouped by cache name, most recently used first within each.
    let rows = listed(&p);
    assert_eq!(rows.len(), entries.len());
    let mut groups: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r["scope"].to_string(), r["name"].to_string()))
        .collect();
    groups.dedup();
    assert_eq!(groups.len(), 10, "{groups:?}");
    for w in rows.windows(2) {
        if (&w[0]["scope"], &w[0]["name"]) == (&w[1]["scope"], &w[1]["name"]) {
            let used = |r: &serde_json::Value| {
                r["last_used"]
                    .as_u64()
                    .unwrap_or(0)
                    .max(r["created"].as_u64().unwrap())
            };
            assert!(used(&w[0]) > used(&w[1]), "{} before {}", w[0], w[1]);
        }
    }
    let planted_row = rows.iter().find(|r| r["key"] == "f".repeat(64)).unwrap();
    assert_eq!(planted_row["archive"], "");

    // The oracle: one global sort by last use, most recent first; per cache name and
    // scope, --keep counts; --max-size keeps the longest run of survivors that fits.
    let doomed_by = |keep: Option<usize>, max: Option<u64>, scope: Option<&str>| {
        let mut order: Vec<&Synthetic> = entries
            .iter()
            .filter(|e| scope.is_none_or(|s| e.scope == s))
            .collect();
        order.sort_by_key(|e| std::cmp::Reverse(e.last_use));
        let mut seen: std::collections::HashMap<(&str, &str), usize> = Default::default();
        let (mut kept, mut full) = (0u64, false);
        let mut doomed = std::collections::BTreeSet::new();
        for e in order {
            let n = seen.entry((e.scope, &e.name)).or_default();
            *n += 1;
            if keep.is_some_and(|k| *n > k) {
                doomed.insert(e.key8.clone());
                continue;
            }
            if max.is_some_and(|m| full || kept + e.size > m) {
                full = true;
                doomed.insert(e.key8.clone());
                continue;
            }
            kept += e.size;
        }
        doomed
    };
    let would = |args: &[&str]| {
        let o = p.test().arg("prune").args(args).arg("--dry-run").run();
        stdout(&o)
            .lines()
            .filter(|l| l.starts_with("would delete ") && !l.contains("abandoned upload"))
            .map(|l| l.split(' ').nth(5).unwrap().to_string())
            .collect::<std::collections::BTreeSet<String>>()
    };
    // The bytes of the 25 most recently used of what --keep 4 keeps, plus a little: the
    // 26th no longer fits.
    let survivors_of_keep = {
        let doomed = doomed_by(Some(4), None, None);
        let mut s: Vec<&Synthetic> = entries
            .iter()
            .filter(|e| !doomed.contains(&e.key8))
            .collect();
        s.sort_by_key(|e| std::cmp::Reverse(e.last_use));
        s
    };
    let max: u64 = survivors_of_keep[..25].iter().map(|e| e.size).sum::<u64>() + 5;
    let max_s = max.to_string();
    let all_bytes: u64 = entries.iter().map(|e| e.size).sum();
    let cases: Vec<(Vec<&str>, std::collections::BTreeSet<String>)> = vec![
        (vec!["--keep", "2"], doomed_by(Some(2), None, None)),
        (
            vec!["--max-size", "30000"],
            doomed_by(None, Some(30_000), None),
        ),
        (
            vec!["--keep", "4", "--max-size", &max_s],
            doomed_by(Some(4), Some(max), None),
        ),
        (
            vec!["--scope", "unprotected", "--max-size", "9000"],
            doomed_by(None, Some(9000), Some("unprotected")),
        ),
    ];
    for (args, expected) in &cases {
        assert!(
            !expected.is_empty() && expected.len() < entries.len(),
            "{args:?}"
        );
        assert_eq!(&would(args), expected, "{args:?}");
    }
    let everything = all_bytes.to_string();
    assert!(would(&["--max-size", &everything]).is_empty());

    // The real run deletes exactly those entries, every file of each, and what no entry
    // owns; the archive the planted manifest named stays with its entry.
    let (args, doomed) = &cases[2];
    p.test()
        .arg("prune")
        .args(args)
        .args(["--abandoned-after", "0", "--concurrency", "16"])
        .stderr_contains(&format!(
            "deleted {} entries and 3 abandoned uploads (0 incomplete)",
            doomed.len()
        ))
        .run();
    assert!(doomed.contains("ffffffff"));
    let mut kept: Vec<String> = entries
        .iter()
        .filter(|e| !doomed.contains(&e.key8))
        .flat_map(|e| e.files.clone())
        .chain([stray.to_string()])
        .collect();
    kept.sort();
    assert!(kept.contains(&victim));
    assert_eq!(p.store_files(), kept);
}

/// Hundreds of entries, deleted concurrently: exactly the ones the rules doom go, every
/// file of each, and nothing else.
#[test]
fn prune_deletes_exactly_the_doomed_entries_of_hundreds() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &tree_cmd(MAKE_OUT)).run();
    let real = listed(&p);
    let manifest = real[0]["manifest"].as_str().unwrap();
    let template: serde_json::Value =
        serde_json::from_slice(&fs::read(p.store.join(manifest)).unwrap()).unwrap();
    let (root, _) = manifest.rsplit_once('/').unwrap();
    let (scope_dir, _) = root.rsplit_once('/').unwrap();
    let now = common::unix_now();
    let write = |rel: &str, data: &[u8]| {
        let path = p.store.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    };
    let (entries, names) = (300u64, 3u64);
    let mut kept = p.store_files();
    for i in 0..entries {
        let (key, name) = (format!("{i:064x}"), format!("n{}", i % names));
        let archive = format!("{scope_dir}/{name}/{key}-{}.tar.zst", "0".repeat(32));
        let mut m = template.clone();
        m["key"] = key.clone().into();
        m["name"] = name.clone().into();
        m["archive"] = archive.clone().into();
        m["created"] = (now - 10 - i).into();
        let at = format!("{scope_dir}/{name}/{key}.json");
        write(&at, &serde_json::to_vec(&m).unwrap());
        write(&archive, b"\x28\xb5\x2f\xfd\x00\x00\x00\x00");
        // --keep 20: the 20 newest of each name stay.
        if i / names < 20 {
            kept.extend([at, archive]);
        }
    }
    let orphans = 12;
    for i in 0..orphans {
        write(
            &format!(
                "{scope_dir}/n0/{:064x}-{}.tar.zst",
                1000 + i,
                "1".repeat(32)
            ),
            b"",
        );
    }
    let rules = ["prune", "--keep", "20", "--abandoned-after", "0"];
    let doomed = entries - 20 * names;

    let before = p.store_files();
    let o = p
        .test()
        .args(rules)
        .arg("--dry-run")
        .stderr_contains(&format!(
            "would delete {doomed} entries and {orphans} abandoned uploads (0 incomplete)"
        ))
        .run();
    // What is deleted, without its age: a minute may turn between the two runs.
    let what = |l: &str| l.split(" (").next().unwrap_or(l).to_string();
    let would: Vec<String> = stdout(&o).lines().map(what).collect();
    assert_eq!(would.len() as u64, doomed + orphans);
    assert_eq!(p.store_files(), before, "a dry run deleted something");

    let o = p
        .test()
        .args(rules)
        .args(["--concurrency", "32"])
        .stderr_contains(&format!(
            "deleted {doomed} entries and {orphans} abandoned uploads (0 incomplete)"
        ))
        .run();
    // The same lines, in the same order, as the dry run promised.
    let did: Vec<String> = stdout(&o)
        .lines()
        .map(|l| what(&l.replacen("deleted", "would delete", 1)))
        .collect();
    assert_eq!(did, would);
    kept.sort();
    assert_eq!(p.store_files(), kept);
}

#[test]
fn preset_variables_follow_the_preset_paths_only() {
    let p = Project::new();
    p.write("Cargo.lock", "# empty\n");
    p.test()
        .args(["check", "--lock", "Cargo.lock"])
        .any_status()
        .stderr_contains("command env CARGO_HOME=")
        .run();
    // With another --path, CARGO_HOME would send downloads somewhere not cached.
    p.test()
        .args(["check", "--lock", "Cargo.lock", "--path", "target"])
        .any_status()
        .stderr_lacks("CARGO_HOME")
        .run();
}

#[test]
fn a_laptop_restores_what_protected_jobs_saved_but_never_writes_there() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd(MAKE_OUT);
    p.test()
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "true")
        .ensure(&ARGS, &cmd)
        .installs(1)
        .run();

    // The install does not run on a hit.
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&[&ARGS[..], &["--policy", "pull"]].concat(), &cmd)
        .stderr_contains("hit out")
        .stderr_contains("(protected)")
        .installs(1)
        .run();

    // A miss on the laptop saves into its own scope, never into protected.
    p.write("app.lock", "v2");
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test().ensure(&ARGS, &cmd).run();
    let files = p.store_files();
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with(&format!("{}/protected/", common::project_root())))
            .count(),
        // The protected job's manifest, archive and save record: the laptop's hit under
        // --policy pull wrote no record.
        3,
        "{files:?}"
    );
    assert_eq!(
        files
            .iter()
            .filter(|f| f.starts_with(&format!("{}/local/", common::project_root())))
            .count(),
        3,
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

pub(crate) fn staging_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
    let args = ARGS;
    p.test().arg("save").args(args).run();
    let saved = common::walk(&p.path("out"));

    fs::remove_dir_all(p.path("out")).unwrap();
    p.write("out/stale", "previous");

    // SIGKILL while the restore is extracting into its staging directory.
    let mut child = p
        .test()
        .arg("restore")
        .args(args)
        .std_command()
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
    p.test()
        .arg("restore")
        .args(args)
        .env("CACHEGATE_BACKEND", &empty)
        .status(1)
        .stderr_contains("interrupted")
        .stderr_contains("out back")
        .run();
    assert_eq!(fs::read_to_string(p.path("out/stale")).unwrap(), "previous");
    assert!(staging_dirs(&p.dir).is_empty());

    p.test().arg("restore").args(args).run();
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
    let args = ARGS;
    let install = ["--", "sh", "-c", "mkdir -p out && echo installed > out/f"];
    p.test().arg("save").args(args).args(install).run();
    let saved = p.store_files();

    // Restoring 12 MB into a 4 MB workspace: the extraction runs out of space.
    let small = SmallDisk::mount(p.tmp.path().join("small"), "4m");
    fs::write(small.0.join("app.lock"), "v1").unwrap();
    p.test()
        .dir(&small.0)
        // Another directory is another project unless told otherwise.
        .env("CACHEGATE_NAMESPACE", "project")
        .arg("ensure")
        .args(args)
        .args(install)
        .stderr_contains("No space left")
        .run();
    assert_eq!(
        fs::read_to_string(small.0.join("out/f")).unwrap(),
        "installed\n"
    );
    assert!(staging_dirs(&small.0).is_empty());
    // Local trouble is not a bad entry: it stays in the store for the next job, which
    // records one install run (the key was saved already).
    let now = p.store_files();
    let added: Vec<&String> = now.iter().filter(|f| !saved.contains(f)).collect();
    assert!(saved.iter().all(|f| now.contains(f)), "{now:?}");
    assert!(
        added.len() == 1 && added[0].contains(".rec.") && added[0].contains(".m."),
        "{added:?}"
    );

    // Saving 12 MB into a 2 MB store: skipped with a warning, nothing half-written left.
    let disk = SmallDisk::mount(p.tmp.path().join("tiny-store"), "2m");
    p.test()
        .ensure(&args, &["true"])
        .env("CACHEGATE_BACKEND", &disk.0)
        .stderr_contains("could not save")
        .stderr_contains("No space left")
        .run();
    assert_eq!(common::walk(&disk.0), Vec::<String>::new());
    p.test()
        .arg("ensure")
        .args(args)
        .args(["--strict", "--backend"])
        .arg(&disk.0)
        .args(["--", "true"])
        .status(3)
        .run();
}
