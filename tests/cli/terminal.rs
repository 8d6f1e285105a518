//! What a person at a terminal gets: the progress bar (driven through a real terminal, tmux,
//! and absent when stderr is a file or inside CI), shell completions that load in bash, and
//! the man page.

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use crate::common::{ARGS, Project, Test, require_tool, stdout};

/// A tmux server of the test's own (its socket in the project's temp dir), running `script`
/// in a shell; everything the pane shows, control sequences included, is logged from the
/// first byte. Returns the log once `script` has printed `END`.
fn in_tmux(p: &Project, script: &str) -> String {
    in_tmux_sized(p, script, 200)
}

/// `in_tmux` in a pane `columns` wide.
pub(crate) fn in_tmux_sized(p: &Project, script: &str, columns: u16) -> String {
    let cols = columns.to_string();
    let sock = p.tmp.path().join("tmux.sock");
    let log = p.tmp.path().join("pane.log");
    let tmux = |args: &[&str]| {
        let o = StdCommand::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "tmux {args:?}: {o:?}");
    };
    // The script waits for the go signal, so the log is attached before it prints anything.
    let sock_q = sh_quote(&sock);
    let body = format!("tmux -S {sock_q} wait-for go; {script}; echo END; sleep 60");
    tmux(&[
        "new-session",
        "-d",
        "-x",
        &cols,
        "-y",
        "50",
        "sh",
        "-c",
        &body,
    ]);
    tmux(&["pipe-pane", "-o", &format!("cat >> {}", sh_quote(&log))]);
    tmux(&["wait-for", "-S", "go"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("END") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    tmux(&["kill-server"]);
    assert!(text.contains("END"), "the script never finished:\n{text}");
    text
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// A cachegate command line for the shell in tmux: only these variables, so neither the
/// developer's nor CI's environment (CI=true) reaches it unless a step sets it; TERM is
/// the one tmux gives the pane.
pub(crate) fn cachegate_line(p: &Project, env: &str, verb: &str) -> String {
    let bin = assert_cmd::cargo::cargo_bin("cachegate");
    format!(
        "cd {dir} && env -i PATH=/usr/bin:/bin TERM=\"$TERM\" HOME={home} CACHEGATE_BACKEND={store} {env} {bin} {verb} {args}",
        dir = sh_quote(&p.dir),
        home = sh_quote(&p.home),
        store = sh_quote(&p.store),
        bin = sh_quote(&bin),
        args = ARGS.join(" "),
    )
}

/// The part of the pane log between two markers the script echoed.
fn between<'a>(log: &'a str, from: &str, to: &str) -> &'a str {
    let start = log
        .find(from)
        .unwrap_or_else(|| panic!("no {from} in\n{log}"))
        + from.len();
    let end = log[start..]
        .find(to)
        .unwrap_or_else(|| panic!("no {to} in\n{log}"))
        + start;
    &log[start..end]
}

#[test]
fn a_restore_or_save_on_a_terminal_draws_a_progress_bar_and_a_pipe_or_ci_gets_none() {
    if !require_tool("tmux", "apt-get install -y tmux") {
        return;
    }
    let p = Project::new();
    p.write("app.lock", "v1");
    // Incompressible, so the restore reads many chunks of the archive.
    let made = StdCommand::new("sh")
        .args([
            "-c",
            "mkdir -p out && head -c 8000000 /dev/urandom > out/big",
        ])
        .current_dir(&p.dir)
        .status()
        .unwrap();
    assert!(made.success());
    p.test().arg("save").args(ARGS).run();
    let saved = std::fs::read(p.path("out/big")).unwrap();
    let restore = |env: &str| cachegate_line(&p, env, "restore");
    let err = p.tmp.path().join("stderr.txt");
    let script = [
        "echo @@1@@".to_string(),
        "rm -rf out".into(),
        restore("CACHEGATE_PROGRESS_DELAY=0"),
        "echo @@2@@".into(),
        "rm -rf out".into(),
        format!(
            "{} 2>{}",
            restore("CACHEGATE_PROGRESS_DELAY=0"),
            sh_quote(&err)
        ),
        "echo @@3@@".into(),
        "rm -rf out".into(),
        restore("CACHEGATE_PROGRESS_DELAY=0 CI=true"),
        "echo @@4@@".into(),
        // A GitLab job writes its own scope, so this one saves (with nothing to restore).
        cachegate_line(
            &p,
            "CACHEGATE_PROGRESS_DELAY=0 GITLAB_CI=true CI_COMMIT_REF_PROTECTED=false",
            "save",
        ),
        "echo @@5@@".into(),
        "rm -rf out".into(),
        // Without the delay set to 0, a bar waits a while before it shows.
        restore("CACHEGATE_PROGRESS_DELAY=600"),
        "echo @@6@@".into(),
        "rm -rf ../store/v2".into(),
        cachegate_line(&p, "CACHEGATE_PROGRESS_DELAY=0", "save"),
        "echo @@7@@".into(),
    ]
    .join(" && ");
    let log = in_tmux(&p, &script);

    let bar = between(&log, "@@1@@", "@@2@@");
    for shown in ["restoring [", " MB/8.", "MB/s", "ETA", "cachegate: hit out"] {
        assert!(bar.contains(shown), "no {shown:?} on the terminal:\n{bar}");
    }
    // Cleared when done: the summary line is drawn over the bar's line.
    assert!(bar.contains("\r\x1b[2Kcachegate: hit"), "{bar:?}");

    // Into a file: the same lines as ever, no bar, no control characters.
    let piped = std::fs::read_to_string(&err).unwrap();
    assert!(
        piped
            .lines()
            .last()
            .unwrap()
            .starts_with("cachegate: hit out"),
        "{piped}"
    );
    assert!(
        !piped.contains("restoring") && !piped.contains(['\r', '\x1b']),
        "{piped:?}"
    );
    assert!(
        !between(&log, "@@2@@", "@@3@@").contains("restoring"),
        "{log}"
    );
    for (from, to, why) in [
        ("@@3@@", "@@4@@", "CI=true"),
        ("@@5@@", "@@6@@", "a restore quicker than the delay"),
    ] {
        let part = between(&log, from, to);
        assert!(!part.contains("restoring"), "{why}: {part}");
        assert!(part.contains("cachegate: hit out"), "{why}: {part}");
    }
    let gitlab = between(&log, "@@4@@", "@@5@@");
    assert!(!gitlab.contains("saving"), "GITLAB_CI=true: {gitlab}");
    assert!(gitlab.contains("cachegate: saved out"), "{gitlab}");
    let save = between(&log, "@@6@@", "@@7@@");
    for shown in ["saving ", "MB/s", "cachegate: saved out"] {
        assert!(
            save.contains(shown),
            "no {shown:?} on the terminal:\n{save}"
        );
    }
    assert_eq!(std::fs::read(p.path("out/big")).unwrap(), saved);
}

#[test]
fn bash_completions_load_and_complete_subcommands() {
    let bin = assert_cmd::cargo::cargo_bin("cachegate");
    let o = StdCommand::new("bash")
        .arg("-c")
        .arg(r#"source <("$0" completions bash) && complete -p cachegate && COMP_WORDS=(cachegate ens) COMP_CWORD=1 && _cachegate cachegate ens cachegate && echo "${COMPREPLY[*]}""#)
        .arg(&bin)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("complete -o bashdefault -o default -o nosort -F _cachegate cachegate"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == "ensure"), "{out}");
}

#[test]
fn zsh_and_fish_completions_and_the_man_pages_name_every_command() {
    let commands = [
        "ensure",
        "restore",
        "save",
        "check",
        "explain",
        "ls",
        "prune",
        "keygen",
        "doctor",
        "key",
        "completions",
        "man",
    ];
    let zsh = Test::new().args(["completions", "zsh"]).run();
    assert!(stdout(&zsh).starts_with("#compdef cachegate"));
    let fish = Test::new().args(["completions", "fish"]).run();
    let man = Test::new()
        .arg("man")
        .stdout_contains(".TH cachegate 1")
        .run();
    let p = Project::new();
    let dir = p.tmp.path().join("man");
    p.test()
        .arg("man")
        .arg("--out-dir")
        .arg(&dir)
        .stdout("")
        .run();
    for c in commands {
        assert!(
            stdout(&fish).contains(&format!("-a \"{c}\"")),
            "fish lacks {c}"
        );
        assert!(stdout(&zsh).contains(&format!("'{c}:")), "zsh lacks {c}");
        assert!(
            stdout(&man).contains(&format!("cachegate\\-{c}(1)")),
            "cachegate(1) lacks {c}"
        );
        let page = std::fs::read_to_string(dir.join(format!("cachegate-{c}.1"))).unwrap();
        assert!(page.contains(&format!("cachegate {c}")), "{page}");
    }
    assert_eq!(std::fs::read(dir.join("cachegate.1")).unwrap(), man.stdout);
    Test::new()
        .args(["completions", "tcsh"])
        .status(2)
        .stderr_contains("possible values: bash, zsh, fish")
        .run();
}
