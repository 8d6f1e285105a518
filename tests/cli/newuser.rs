//! Regression tests for what a new user trips on (issue 19), one per defect, each named
//! after it: closed pipes, lock order, system paths, setup mistakes, help, the README's own
//! examples.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::common::{ARGS, Project, Test, one_file, stderr, stdout, tree_cmd};

/// A pipe whose reading end is already closed: every write to it fails with EPIPE, so the
/// test does not depend on when the reader goes away.
fn pipe_without_reader() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

#[test]
fn presets_json_panicked_on_a_closed_stdout() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    let commands: &[&[&str]] = &[
        &["presets", "--json"],
        &["presets"],
        &["ls"],
        &["ls", "--json"],
        &["key", "--lock", "app.lock", "--path", "out", "--explain"],
        &["key", "--lock", "app.lock", "--path", "out", "--json"],
        &["man"],
        &["completions", "bash"],
        &["keygen"],
        &["prune", "--dry-run", "--keep", "0"],
        &["explain", "--lock", "app.lock", "--path", "out"],
        &["--help"],
        &["ensure", "--help"],
        &["--version"],
    ];
    for args in commands {
        // A reader that is gone (`| head -1`), and a stdout the caller closed (`>&-`).
        for closed in [false, true] {
            let mut c = p.test().args(*args).std_command();
            c.stderr(Stdio::piped());
            if closed {
                // SAFETY: runs in the child between fork and exec, closing only its stdout.
                unsafe {
                    std::os::unix::process::CommandExt::pre_exec(&mut c, || {
                        libc::close(1);
                        Ok(())
                    });
                }
            } else {
                c.stdout(Stdio::from(pipe_without_reader()));
            }
            let out = c.output().unwrap();
            let err = stderr(&out);
            let how = if closed {
                "closed stdout"
            } else {
                "closed pipe"
            };
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{args:?} on a {how}: {:?}\n{err}",
                out.status
            );
            assert!(
                !err.contains("panicked")
                    && !err.contains("Broken pipe")
                    && !err.contains("Bad file descriptor")
                    && !err.contains("failed printing"),
                "{args:?} on a {how}:\n{err}"
            );
        }
    }
}

#[test]
fn lock_order_changed_the_cache_name_and_key() {
    let p = Project::new();
    p.write(
        "package-lock.json",
        r#"{"lockfileVersion": 3, "packages": {}}"#,
    );
    p.write("package.json", r#"{"name": "app"}"#);
    p.write("requirements.txt", "six==1.16.0\n");
    let key = |locks: [&str; 2]| {
        let o = p
            .test()
            .args([
                "key",
                "--no-runtime-key",
                "--lock",
                locks[0],
                "--lock",
                locks[1],
                "--json",
            ])
            .run();
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let ab = key(["package-lock.json", "requirements.txt"]);
    let ba = key(["requirements.txt", "package-lock.json"]);
    assert_eq!(ab["key"], ba["key"], "{ab:#}\n{ba:#}");
    assert_eq!(ab["components"]["name"], "npm-pip");
    assert_eq!(ab["components"]["paths"], ba["components"]["paths"]);
}

#[test]
fn save_replace_dropped_the_entrys_install_time() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let slow = tree_cmd("sleep 1.2 && mkdir -p out && echo data > out/f");
    p.test().ensure(&ARGS, &slow).run();
    p.test()
        .verb("restore", &ARGS, &slow)
        .stderr_contains("install 1.")
        .run();
    p.write("out/g", "more");
    p.test()
        .verb(
            "save",
            &["--replace", "--lock", "app.lock", "--path", "out"],
            &slow,
        )
        .stderr_contains("replaced")
        .run();
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .verb("restore", &ARGS, &slow)
        .stderr_contains("install 1.")
        .run();
    assert_eq!(fs::read_to_string(p.path("out/g")).unwrap(), "more");
}

#[test]
fn save_of_an_existing_key_blamed_another_job_for_the_users_own_run() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    p.test()
        .verb("save", &ARGS, &one_file())
        .stderr_contains("already saved by an earlier run here")
        .stderr_contains("--replace")
        .stderr_lacks("another job")
        .run();
    // In CI the earlier save names the job that made it.
    p.write("app.lock", "v2");
    p.test()
        .ensure(&ARGS, &one_file())
        .env("CI_JOB_URL", "https://gitlab.example/g/p/-/jobs/1")
        .run();
    p.test()
        .verb("save", &ARGS, &one_file())
        .env("CI_JOB_URL", "https://gitlab.example/g/p/-/jobs/2")
        .stderr_contains("already saved by https://gitlab.example/g/p/-/jobs/1")
        .run();
}

#[test]
fn ls_and_prune_on_a_store_that_does_not_exist_listed_it_as_empty() {
    let p = Project::new();
    let gone = p.tmp.path().join("no-such-store");
    let named = gone.display().to_string();
    for args in [&["ls"][..], &["ls", "--json"], &["prune", "--keep", "1"]] {
        p.test()
            .args(args)
            .env("CACHEGATE_BACKEND", &gone)
            .status(3)
            .stdout("")
            .stderr_contains(&named)
            .stderr_contains("does not exist")
            .run();
    }
    assert!(!gone.exists(), "listing a store must not create it");
    // An empty store that is there is an empty listing.
    p.test().args(["ls", "--json"]).stdout("[]\n").run();
}

#[test]
fn a_relative_backend_said_only_unknown_backend() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let here = p.dir.join("relstore").display().to_string();
    p.test()
        .ensure(&ARGS, &one_file())
        .env("CACHEGATE_BACKEND", "relstore")
        .status(2)
        .stderr_contains("\"relstore\"")
        .stderr_contains("a directory store needs an absolute path")
        .stderr_contains(&here)
        .installs(0)
        .run();
    p.test()
        .args(["ls", "--backend", "./relstore"])
        .status(2)
        .stderr_contains("needs an absolute path")
        .run();
}

#[test]
fn check_against_a_dead_store_read_like_a_miss() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let dead = format!("http://127.0.0.1:{}", crate::common::free_port());
    p.test()
        .verb("check", &ARGS, &one_file())
        .env("CACHEGATE_BACKEND", &dead)
        .env("CACHEGATE_RETRIES", "0")
        .status(1)
        .stderr_contains(&format!("the store {dead} is unreachable"))
        .stderr_lacks(&format!("not in {dead}"))
        .run();
    // A store that answers and lacks the key is the plain miss.
    p.test()
        .verb("check", &ARGS, &one_file())
        .status(1)
        .stderr_contains("· not in ")
        .run();
}

#[test]
fn an_unreadable_file_under_a_cached_path_named_the_directory() {
    let p = Project::new();
    p.write("app.lock", "v1");
    fs::create_dir_all(p.path("out/sub")).unwrap();
    fs::write(p.path("out/sub/locked"), "secret").unwrap();
    fs::set_permissions(p.path("out/sub/locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let mut c = p.test().arg("save").args(ARGS).std_command();
    // root reads every file: the save runs as nobody, who owns the project and its store.
    if unsafe { libc::geteuid() } == 0 {
        let nobody = 65534;
        for e in walkdir::WalkDir::new(p.tmp.path()) {
            std::os::unix::fs::lchown(e.unwrap().path(), Some(nobody), Some(nobody)).unwrap();
        }
        // SAFETY: runs in the child between fork and exec; only async-signal-safe calls.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut c, move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(nobody) != 0
                    || libc::setuid(nobody) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let o = c.output().unwrap();
    let err = stderr(&o);
    let locked = p.path("out/sub/locked").display().to_string();
    assert!(err.contains(&format!("cannot read {locked}")), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn a_symlinked_path_saved_what_every_restore_rejects() {
    let p = Project::new();
    p.write("app.lock", "v1");
    fs::create_dir_all(p.path("real")).unwrap();
    std::os::unix::fs::symlink("real", p.path("link")).unwrap();
    let args = ["--lock", "app.lock", "--path", "link"];
    let cmd = tree_cmd("echo data > link/f");
    for run in 1..=2 {
        p.test()
            .ensure(&args, &cmd)
            .stderr_contains("nothing saved: --path \"link\" is a symbolic link (to real)")
            .stderr_contains("cache --path real instead")
            .stderr_lacks("entry rejected")
            .installs(run)
            .run();
    }
    assert!(
        p.store_files().iter().all(|f| !f.ends_with(".json")),
        "{:?}",
        p.store_files()
    );
    // The directory it points to is what caches.
    let real = ["--lock", "app.lock", "--path", "real"];
    let cmd = tree_cmd("echo data > real/f");
    p.test().ensure(&real, &cmd).installs(3).run();
    fs::remove_dir_all(p.path("real")).unwrap();
    p.test()
        .ensure(&real, &cmd)
        .stderr_contains("cachegate: hit")
        .installs(3)
        .run();
    assert_eq!(fs::read_to_string(p.path("real/f")).unwrap(), "data\n");
}

#[test]
fn a_system_path_was_saved_and_swapped_without_a_word() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let system = p.tmp.path().join("etc");
    fs::create_dir_all(&system).unwrap();
    fs::write(system.join("shadow"), "root:x:...").unwrap();
    let sys = system.display().to_string();
    let cmd = tree_cmd(&format!("echo conf > {sys}/added"));
    let args = ["--lock", "app.lock", "--path", &sys];
    // Outside the project and the user's tool caches: a usage error, before anything runs.
    for verb in ["ensure", "key", "save"] {
        p.test()
            .verb(verb, &args, &cmd)
            .status(2)
            .stderr_contains(&format!("--path {sys:?} is not cached"))
            .stderr_contains("outside the project")
            .stderr_contains("--allow-outside-path")
            .installs(0)
            .run();
    }
    assert!(p.store_files().is_empty());
    // Named deliberately it caches; a restore still never replaces the directory, which
    // cachegate did not create: the install runs instead and the user's files stay.
    let mut allowed = args.to_vec();
    allowed.push("--allow-outside-path");
    p.test().ensure(&allowed, &cmd).installs(1).run();
    fs::write(system.join("mine"), "keep me").unwrap();
    p.test()
        .ensure(&allowed, &cmd)
        .stderr_contains(&format!(
            "{sys} already exists and cachegate did not create it"
        ))
        .installs(2)
        .run();
    assert_eq!(fs::read_to_string(system.join("mine")).unwrap(), "keep me");
    assert_eq!(
        fs::read_to_string(system.join("shadow")).unwrap(),
        "root:x:..."
    );
}

#[test]
fn a_tool_cache_outside_the_project_needs_no_flag_and_restores_where_cachegate_made_it() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // Under $HOME, and under a tool's own variable wherever it points.
    let cargo_home = p.tmp.path().join("cargo");
    let cargo = cargo_home.join("registry").display().to_string();
    let args = [
        "--lock",
        "app.lock",
        "--path",
        "~/.cache/tool",
        "--path",
        &cargo,
    ];
    let cmd = tree_cmd(&format!(
        "mkdir -p $HOME/.cache/tool {cargo} && echo a > $HOME/.cache/tool/a && echo b > {cargo}/b"
    ));
    p.test()
        .ensure(&args, &cmd)
        .env("CARGO_HOME", &cargo_home)
        .installs(1)
        .run();
    // The install cachegate ran made both directories: a hit may replace them.
    fs::remove_file(p.home.join(".cache/tool/a")).unwrap();
    p.test()
        .ensure(&args, &cmd)
        .env("CARGO_HOME", &cargo_home)
        .stderr_contains("cachegate: hit")
        .installs(1)
        .run();
    assert_eq!(
        fs::read_to_string(p.home.join(".cache/tool/a")).unwrap(),
        "a\n"
    );
    // Recreated by someone else (the filesystem may well hand out the same inode number):
    // no longer cachegate's, so it is left alone and the install runs.
    let tool = p.home.join(".cache/tool");
    fs::remove_dir_all(&tool).unwrap();
    fs::create_dir(&tool).unwrap();
    fs::write(tool.join("mine"), "keep me").unwrap();
    p.test()
        .ensure(&args, &cmd)
        .env("CARGO_HOME", &cargo_home)
        .stderr_contains("already exists and cachegate did not create it")
        .installs(2)
        .run();
    assert_eq!(fs::read_to_string(tool.join("mine")).unwrap(), "keep me");
    // Without the variable the same directory is a system path.
    p.test()
        .verb("key", &args, &cmd)
        .status(2)
        .stderr_contains(&format!("--path {cargo:?} is not cached"))
        .run();
    // Credentials under $HOME are no tool cache.
    p.test()
        .verb("key", &["--lock", "app.lock", "--path", "~/.ssh"], &cmd)
        .status(2)
        .stderr_contains("it holds credentials (~/.ssh)")
        .run();
}

#[test]
fn json_meant_a_file_a_flag_and_an_optional_file() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo data > out/f && echo installed");
    let parse = |o: &std::process::Output, skip: &str| -> serde_json::Value {
        let text = String::from_utf8_lossy(&o.stdout).replacen(skip, "", 1);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    // --json prints the report on stdout, after the command's own output.
    let mut args = ARGS.to_vec();
    args.push("--json");
    let o = p
        .test()
        .ensure(&args, &cmd)
        .stderr_lacks("deprecated")
        .run();
    assert_eq!(parse(&o, "installed\n")["result"], "miss");
    // --json-file - is stdout too, and never a file named "-".
    let o = p
        .test()
        .verb(
            "check",
            &["--lock", "app.lock", "--path", "out", "--json-file", "-"],
            &cmd,
        )
        .run();
    assert_eq!(parse(&o, "")["result"], "hit");
    assert!(!p.path("-").exists());
    // --json-file FILE writes FILE, stdout keeps only the command's output.
    let report = p.tmp.path().join("report.json");
    let r = report.display().to_string();
    p.test()
        .verb(
            "restore",
            &["--lock", "app.lock", "--path", "out", "--json-file", &r],
            &cmd,
        )
        .stdout("")
        .run();
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["result"], "hit");
    // The old form still writes FILE this release, and says what to write instead.
    fs::remove_file(&report).unwrap();
    p.test()
        .verb(
            "check",
            &["--lock", "app.lock", "--path", "out", "--json", &r],
            &cmd,
        )
        .stdout("")
        .stderr_contains(&format!(
            "deprecated: --json {r} writes {r} this release only; use --json-file {r}"
        ))
        .warnings(0)
        .run();
    assert!(report.exists());
    fs::remove_file(&report).unwrap();
    p.test()
        .verb("check", &["--lock", "app.lock", "--path", "out"], &cmd)
        .env("CACHEGATE_JSON", &report)
        .stderr_contains("deprecated")
        .run();
    assert!(report.exists());
    // key: the same convention.
    let o = p
        .test()
        .verb(
            "key",
            &["--lock", "app.lock", "--path", "out", "--json"],
            &cmd,
        )
        .run();
    let key = parse(&o, "")["key"].as_str().unwrap().to_string();
    let o = p
        .test()
        .verb(
            "key",
            &["--lock", "app.lock", "--path", "out", "--json-file", &r],
            &cmd,
        )
        .stderr_lacks("deprecated")
        .run();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), key);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["key"], key.as_str());
    p.test()
        .verb(
            "key",
            &[
                "--lock",
                "app.lock",
                "--path",
                "out",
                "--json",
                "--json-file",
                &r,
            ],
            &cmd,
        )
        .status(2)
        .stderr_contains("cannot be used with")
        .run();
}

#[test]
fn help_wrapped_mid_word_and_listed_options_the_command_does_not_use() {
    let commands = [
        "ensure", "restore", "save", "check", "explain", "ls", "prune", "doctor", "key", "presets",
        "man",
    ];
    for c in commands {
        let o = Test::new().args([c, "-h"]).env("COLUMNS", "80").run();
        for line in stdout(&o).lines() {
            assert!(
                line.chars().count() <= 80,
                "{c} -h: {line:?} is wider than 80"
            );
        }
    }
    let shows = |c: &str, flag: &str| {
        let o = Test::new().args([c, "--help"]).run();
        stdout(&o).contains(&format!("--{flag}"))
    };
    for c in ["restore", "check", "explain"] {
        for flag in [
            "save-on-failure",
            "replace",
            "compression-level",
            "fallback",
        ] {
            assert!(!shows(c, flag), "{c} --help lists --{flag}");
        }
    }
    assert!(shows("ensure", "save-on-failure") && !shows("ensure", "replace"));
    assert!(shows("save", "replace") && shows("save", "compression-level"));
    assert!(shows("restore", "max-archive-size"));
    for c in ["ls", "prune", "doctor"] {
        assert!(!shows(c, "chunk-size"), "{c} --help lists --chunk-size");
        assert!(shows(c, "backend"), "{c}");
    }
    assert!(!shows("key", "backend") && !shows("key", "dotenv") && shows("key", "lock"));
    // Hidden is not refused: a job's whole line still works with every command.
    let p = Project::new();
    p.write("app.lock", "v1");
    let mut line = ARGS.to_vec();
    line.extend(["--save-on-failure", "--replace", "--compression-level", "5"]);
    p.test().verb("restore", &line, &one_file()).status(1).run();
    p.test().verb("key", &line, &one_file()).run();
}

#[test]
fn ensure_help_was_39_options_under_one_heading_and_228_lines() {
    let short = Test::new()
        .args(["ensure", "-h"])
        .env("COLUMNS", "80")
        .run();
    let short = stdout(&short);
    let long = Test::new()
        .args(["ensure", "--help"])
        .env("COLUMNS", "80")
        .run();
    let long = stdout(&long);
    for (name, text) in [("-h", &short), ("--help", &long)] {
        let headings: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
            .collect();
        assert_eq!(
            headings,
            [
                "Arguments:",
                "Options:",
                "Key:",
                "Paths:",
                "Store:",
                "Transfer:",
                "Trust:",
                "Output:",
                "Single-flight and warm start:",
            ],
            "ensure {name}:\n{text}"
        );
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "ensure {name}: {line:?} is wider than 80"
            );
        }
    }
    // -h is the doc comments' first lines; what follows them is for --help only.
    let detail = "The variable takes a comma-separated list.";
    assert!(!short.contains(detail) && long.contains(detail), "{short}");
    assert!(
        short.lines().count() * 2 < long.lines().count(),
        "ensure -h is {} lines, --help {}",
        short.lines().count(),
        long.lines().count()
    );
    // Each option's short help, with its variable and default, takes at most three lines.
    let mut entries: Vec<Vec<&str>> = Vec::new();
    for line in short.lines().filter(|l| l.starts_with("  ")) {
        match entries.last_mut() {
            Some(entry) if !line.trim_start().starts_with('-') => entry.push(line),
            _ => entries.push(vec![line]),
        }
    }
    assert!(entries.len() >= 39, "{short}");
    for entry in entries {
        assert!(entry.len() <= 3, "ensure -h: {entry:#?}");
    }
}

#[test]
fn the_man_page_had_no_exit_status_environment_examples_or_command_pages() {
    let man = Test::new().arg("man").run();
    let page = stdout(&man);
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
        assert!(page.contains(section), "cachegate(1) lacks {section}");
    }
    // Every option's CACHEGATE_* twin, hidden options' too, and the credentials.
    let mut vars: Vec<String> = Vec::new();
    let cmd = cachegate::cli::command();
    for c in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
        for a in c.get_arguments() {
            if let Some(v) = a.get_env() {
                vars.push(v.to_string_lossy().into_owned());
            }
        }
    }
    vars.push("CACHEGATE_SIGNING_KEY".into());
    vars.push("CACHEGATE_HTTP_TOKEN".into());
    assert!(vars.len() > 40, "{vars:?}");
    for v in &vars {
        // roff escapes the underscore-free names as they are.
        assert!(
            page.contains(&format!("\\fB{v}\\fR")),
            "cachegate(1) lacks {v}"
        );
    }
    // One page per command, printed on its own, with its own options and examples.
    let ensure = Test::new()
        .args(["man", "ensure"])
        .stdout_contains(".TH cachegate-ensure 1")
        .run();
    let ensure = stdout(&ensure);
    assert!(
        ensure.contains("save\\-on\\-failure") && !ensure.contains("\\-\\-replace"),
        "{ensure}"
    );
    assert!(
        ensure.contains(".SH EXAMPLES") && ensure.contains("poetry install"),
        "{ensure}"
    );
    let p = Project::new();
    let dir = p.tmp.path().join("man");
    p.test().arg("man").arg("--out-dir").arg(&dir).run();
    assert_eq!(
        fs::read_to_string(dir.join("cachegate-ensure.1")).unwrap(),
        ensure
    );
    Test::new()
        .args(["man", "nope"])
        .status(2)
        .stderr_contains("no man page for \"nope\"; the commands are ensure, restore")
        .run();
    if crate::common::require_tool("man", "apt-get install -y man-db") {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} man ensure | MANWIDTH=80 man -l - 2>&1",
                assert_cmd::cargo::cargo_bin("cachegate").display()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXIT STATUS") && text.contains("ENVIRONMENT"),
            "{text}"
        );
    }
}

/// The shell blocks a `<!-- runnable -->` line marks in README.md and docs/*.md, with the
/// file and line each starts at.
fn runnable_blocks() -> Vec<(String, String)> {
    let root = crate::common::dist::repo_root();
    let mut files = vec![root.join("README.md")];
    if let Ok(docs) = fs::read_dir(root.join("docs")) {
        let mut more: Vec<_> = docs
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        more.sort();
        files.extend(more);
    }
    let mut blocks = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if lines[i].trim() == "<!-- runnable -->" {
                let fence = lines.get(i + 1).copied().unwrap_or_default();
                assert_eq!(
                    fence,
                    "```sh",
                    "{}:{}: a runnable block is a ```sh block",
                    file.display(),
                    i + 2
                );
                let end = (i + 2..lines.len())
                    .find(|&j| lines[j] == "```")
                    .unwrap_or_else(|| panic!("{}:{}: unclosed block", file.display(), i + 2));
                let name = format!("{}:{}", file.strip_prefix(&root).unwrap().display(), i + 2);
                blocks.push((name, lines[i + 2..end].join("\n") + "\n"));
                i = end;
            }
            i += 1;
        }
    }
    blocks
}

#[test]
fn the_readme_claimed_key_v_prints_the_project_segment() {
    let blocks = runnable_blocks();
    assert!(
        blocks.len() >= 2,
        "the README's runnable blocks are gone: {blocks:?}"
    );
    let bin = assert_cmd::cargo::cargo_bin("cachegate");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, script) in blocks {
        // Each block in a fresh, empty directory, as a newcomer runs it: no CACHEGATE_*
        // settings, the default store under a private XDG_CACHE_HOME.
        let p = Project::new();
        let out = std::process::Command::new("sh")
            .arg("-eu")
            .arg("-c")
            .arg(&script)
            .current_dir(&p.dir)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &p.home)
            .env("XDG_CACHE_HOME", p.tmp.path().join("xdg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: the block failed ({:?})\n{script}--- stdout\n{}--- stderr\n{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }
}

/// A component job as a project writes it, with a before_script of its own.
fn component_project(t: &std::path::Path, job: &str, inputs: &str) -> std::path::PathBuf {
    let (proj, bin, dist) = (t.join("proj"), t.join("bin"), t.join("dist"));
    for d in [&proj.join("templates"), &bin, &dist, &t.join("home")] {
        fs::create_dir_all(d).unwrap();
    }
    let root = crate::common::dist::repo_root();
    fs::copy(
        root.join("templates/cachegate.yml"),
        proj.join("templates/cachegate.yml"),
    )
    .unwrap();
    // An older cachegate in the image, and a release folder whose install.sh installs the
    // cachegate under test, saying which version it was asked for.
    fs::write(bin.join("cachegate"), "#!/bin/sh\necho 'cachegate 0.0.9'\n").unwrap();
    fs::set_permissions(bin.join("cachegate"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        dist.join("install.sh"),
        format!(
            "cp {} \"$CACHEGATE_INSTALL_DIR/cachegate\" && echo \"install.sh: installed $CACHEGATE_VERSION\"\n",
            assert_cmd::cargo::cargo_bin("cachegate").display()
        ),
    )
    .unwrap();
    fs::write(
        proj.join(".gitlab-ci.yml"),
        format!(
            "include:\n  - local: templates/cachegate.yml\n    inputs:\n      download_url: file://{}\n      install_dir: {}\n{inputs}\n{job}",
            dist.display(),
            bin.display()
        ),
    )
    .unwrap();
    crate::dist::git_project(&proj);
    proj
}

#[test]
fn a_jobs_own_before_script_dropped_the_components_install() {
    let Some(gcl) = crate::common::dist::gitlab_ci_local() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let job = "own:
  extends: .cachegate
  before_script:
    - !reference [.cachegate-install, before_script]
    - echo \"own before_script ran\"
  script:
    - echo \"have=$(cachegate --version) policy=${CACHEGATE_POLICY-unset} strict=${CACHEGATE_STRICT-unset}\"
";
    let proj = component_project(t, job, "      policy: pull\n      strict: true\n");
    let out = crate::dist::pipeline(&gcl, &proj, &t.join("home"));
    let version = env!("CARGO_PKG_VERSION");
    // No version input: the component's own version is installed over the older one.
    assert!(
        out.contains(&format!("install.sh: installed {version}")),
        "{out}"
    );
    assert!(out.contains("own before_script ran"), "{out}");
    assert!(
        out.contains(&format!("have=cachegate {version} policy=pull strict=true")),
        "{out}"
    );
    // The install already ran, so the after_script has nothing to say.
    assert!(!out.contains("did not install cachegate"), "{out}");
    // Without the reference the job fails, and the log says why and what to write.
    let tmp = tempfile::tempdir().unwrap();
    let dropped = "dropped:
  extends: .cachegate
  before_script:
    - echo \"own before_script only\"
  script:
    - cachegate --version
";
    let proj = component_project(tmp.path(), dropped, "");
    let o = std::process::Command::new(&gcl)
        .current_dir(&proj)
        .env("HOME", tmp.path().join("home"))
        .args(["--force-shell-executor", "--no-color"])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("the job's own before_script replaced the one of .cachegate")
            && text.contains("!reference [.cachegate-install, before_script]"),
        "{text}"
    );
    // The defaults export nothing.
    let job = "plain:
  extends: .cachegate
  script:
    - echo \"policy=${CACHEGATE_POLICY-unset} strict=${CACHEGATE_STRICT-unset}\"
";
    let tmp = tempfile::tempdir().unwrap();
    let proj = component_project(tmp.path(), job, "");
    let out = crate::dist::pipeline(&gcl, &proj, &tmp.path().join("home"));
    assert!(out.contains("policy=unset strict=unset"), "{out}");
    // A value outside an input's options is refused before any job runs, naming it.
    let tmp = tempfile::tempdir().unwrap();
    let proj = component_project(tmp.path(), job, "      policy: bogus\n");
    let o = std::process::Command::new(&gcl)
        .current_dir(&proj)
        .env("HOME", tmp.path().join("home"))
        .args(["--force-shell-executor", "--no-color", "--list"])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("`bogus` cannot be used"), "{text}");
}

#[test]
fn the_components_version_defaulted_to_latest_and_the_readme_missed_inputs() {
    let root = crate::common::dist::repo_root();
    let template = fs::read_to_string(root.join("templates/cachegate.yml")).unwrap();
    let (spec, _) = template.split_once("\n---\n").unwrap();
    let inputs: Vec<&str> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("    ")?.strip_suffix(':'))
        .filter(|l| !l.starts_with(' '))
        .collect();
    assert!(
        inputs.contains(&"local_tier_max_size") && inputs.contains(&"strict"),
        "{inputs:?}"
    );
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    for i in &inputs {
        assert!(
            readme.contains(&format!("| `{i}` |")),
            "the README's input table lacks {i}"
        );
    }
    // Every input says its type; the version's default is the component's own.
    let typed = spec.matches("\n      type: ").count();
    assert_eq!(typed, inputs.len(), "{spec}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(spec.contains(&format!("default: \"{version}\"")), "{spec}");
}

/// A project with one entry of `mb` megabytes of incompressible data under `out`.
fn big_entry(mb: usize) -> Project {
    let p = Project::new();
    p.write("app.lock", "v1");
    let made = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("mkdir -p out && head -c {mb}000000 /dev/urandom > out/big"),
        ])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    assert!(made.success());
    p.test().arg("save").args(ARGS).run();
    fs::remove_dir_all(p.path("out")).unwrap();
    p
}

#[test]
fn a_long_restore_was_silent_in_a_ci_log() {
    let p = big_entry(30);
    // The interval is 10 s; a shorter one shows the lines within a test's time.
    let o = p
        .test()
        .arg("restore")
        .args(ARGS)
        .env("CI", "true")
        .env("CACHEGATE_PROGRESS_INTERVAL", "0.001")
        .stderr_contains("cachegate: restoring · ")
        .stderr_contains(" of 30 MB (")
        .stderr_contains("/s · ")
        .stderr_contains("cachegate: hit out")
        .run();
    let err = stderr(&o);
    assert!(!err.contains(['\r', '\x1b']), "{err:?}");
    // At the default interval a quick restore prints its summary line alone.
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .arg("restore")
        .args(ARGS)
        .env("CI", "true")
        .stderr_lacks("restoring")
        .run();
}

#[test]
fn the_restore_bar_was_81_columns_and_wrapped_at_80() {
    // A pane narrower than the old fixed-width bar line (about 77 columns at 8 MB).
    let columns = 60;
    if !crate::common::require_tool("tmux", "apt-get install -y tmux") {
        return;
    }
    let p = big_entry(8);
    let line = crate::terminal::cachegate_line(&p, "CACHEGATE_PROGRESS_DELAY=0", "restore");
    let log =
        crate::terminal::in_tmux_sized(&p, &format!("echo @@1@@ && {line} && echo @@2@@"), columns);
    let drawn = log
        .split("@@1@@")
        .nth(1)
        .unwrap()
        .split("@@2@@")
        .next()
        .unwrap();
    assert!(drawn.contains("restoring ["), "{drawn:?}");
    // Each drawing of the bar, without its control sequences, fits the pane.
    let plain: String = {
        let mut out = String::new();
        let mut chars = drawn.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                // CSI: ESC [ params final-byte
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for d in chars.by_ref() {
                        if d.is_ascii_alphabetic() {
                            break;
                        }
                    }
                }
                continue;
            }
            out.push(c);
        }
        out
    };
    for seg in plain
        .split(['\r', '\n'])
        .filter(|s| s.contains("restoring ["))
    {
        let n = seg.chars().count();
        assert!(n <= usize::from(columns), "{n} columns: {seg:?}");
    }
}

#[test]
fn ls_and_prune_on_a_bucket_that_does_not_exist_listed_it_as_empty() {
    let Some((p, _)) = crate::s3::garage_project() else {
        return;
    };
    let g = crate::common::garage::Garage::shared();
    let region = crate::common::garage::REGION;
    let missing = format!(
        "s3://no-such-bucket/x?endpoint={}&region={region}",
        g.endpoint()
    );
    for args in [&["ls"][..], &["prune", "--keep", "1"]] {
        p.test()
            .args(args)
            .arg("--backend")
            .arg(&missing)
            .status(3)
            .stdout("")
            .stderr_contains("the bucket \"no-such-bucket\" does not exist")
            .run();
    }
    // The bucket that is there, with nothing under the prefix yet, is an empty listing.
    p.test().args(["ls", "--json"]).stdout("[]\n").run();
}
