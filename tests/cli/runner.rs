//! Runner mode: GitLab's own `cache:` carries the paths, played here by the test (it copies
//! the cached path away after a job and back before the next); cachegate keeps only the
//! marker and decides hit or miss from it.

use std::fs;
use std::path::Path;
use std::process::Command as StdCommand;

use crate::common::scenarios::{build_wheel, pip_install_cmd, run_greet};
use crate::common::{Project, Test, require_tool, stderr, stdout};

const MARKER: &str = ".venv/.cachegate-runner";

/// `cachegate <sub>` in runner mode, keyed by requirements.txt.
fn runner<'p>(p: &'p Project, sub: &str, cmd: &[String]) -> Test<'p> {
    p.test().verb(
        sub,
        &["--backend", "runner", "--lock", "requirements.txt"],
        cmd,
    )
}

/// GitLab's cache: after the job, archive the path; before the next, extract it.
fn cp(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let st = StdCommand::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn runner_mode_hits_on_a_current_marker_and_reinstalls_on_change_or_stale_marker() {
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    let p = Project::new();
    let wheels = p.tmp.path().join("wheels");
    build_wheel(&wheels, "1.0");
    build_wheel(&wheels, "2.0");
    p.write("requirements.txt", "greet==1.0\n");
    let cmd = pip_install_cmd(&p);
    let gitlab_cache = p.tmp.path().join("gitlab-cache");

    // Job 1: GitLab restored nothing. The install runs and the marker is written.
    runner(&p, "ensure", &cmd)
        .installs(1)
        .stderr_contains("miss pip")
        .stderr_contains("GitLab restored no cache")
        .stderr_contains("saved pip")
        .run();
    let key = stdout(
        &p.test()
            .verb("key", &["--lock", "requirements.txt"], &cmd)
            .run(),
    );
    assert!(
        fs::read_to_string(p.path(MARKER))
            .unwrap()
            .contains(&format!("key {}", key.trim())),
        "the marker records the key"
    );
    assert!(p.store_files().is_empty(), "runner mode stores nothing");
    cp(&p.path(".venv"), &gitlab_cache);

    // Job 2: GitLab restores .venv; cachegate sees a current marker and skips pip.
    fs::remove_dir_all(p.path(".venv")).unwrap();
    cp(&gitlab_cache, &p.path(".venv"));
    for sub in ["check", "restore"] {
        runner(&p, sub, &cmd).stderr_contains("hit pip").run();
    }
    runner(&p, "ensure", &cmd)
        .stderr_contains("hit pip")
        .installs(1)
        .run();
    assert_eq!(run_greet(&p).trim(), "hello from greet 1.0");

    // Job 3: the lock changed, GitLab restores the old .venv (a `key: files:` cache
    // would have missed; a fixed key restores the stale tree): reinstall.
    p.write("requirements.txt", "greet==2.0\n");
    fs::remove_dir_all(p.path(".venv")).unwrap();
    cp(&gitlab_cache, &p.path(".venv"));
    for sub in ["check", "restore"] {
        runner(&p, sub, &cmd)
            .status(1)
            .stderr_contains("was built for key")
            .run();
    }
    runner(&p, "ensure", &cmd).installs(2).run();
    assert_eq!(run_greet(&p).trim(), "hello from greet 2.0");
    cp(&p.path(".venv"), &gitlab_cache);

    // Job 4: the cache holds a tree without a marker (saved by a job without cachegate).
    fs::remove_file(gitlab_cache.join(".cachegate-runner")).unwrap();
    fs::remove_dir_all(p.path(".venv")).unwrap();
    cp(&gitlab_cache, &p.path(".venv"));
    runner(&p, "ensure", &cmd)
        .stderr_contains("has no cachegate marker")
        .installs(3)
        .run();

    // A failed install leaves no marker, so the next job does not trust the tree.
    fs::remove_dir_all(p.path(".venv")).unwrap();
    p.write("requirements.txt", "greet==9.9\n");
    let o = runner(&p, "ensure", &cmd).any_status().run();
    assert!(!o.status.success());
    assert!(!p.path(MARKER).exists(), "{}", stderr(&o));

    // `save` writes the marker for the tree in place.
    p.write("requirements.txt", "greet==1.0\n");
    runner(&p, "ensure", &cmd).run();
    fs::remove_file(p.path(MARKER)).unwrap();
    runner(&p, "save", &[]).run();
    runner(&p, "check", &[]).run();
}

#[test]
fn runner_mode_has_no_listing_or_pruning() {
    let p = Project::new();
    for sub in [&["ls"][..], &["prune", "--keep", "1"]] {
        p.test()
            .args(sub)
            .args(["--backend", "runner"])
            .status(2)
            .stderr_contains("stores nothing")
            .run();
    }
}

/// A store restore rewrites a venv for a new checkout path; GitLab's cache does not, so a
/// venv it carries to another path (another runner slot) must be a miss, never a hit whose
/// scripts name the old path.
#[test]
fn runner_mode_venv_carried_to_another_checkout_path_is_a_miss() {
    if !require_tool("python3", "apt-get install -y python3 python3-venv") {
        return;
    }
    let p = Project::new();
    build_wheel(&p.tmp.path().join("wheels"), "1.0");
    p.write("requirements.txt", "greet==1.0\n");
    let cmd = pip_install_cmd(&p);
    runner(&p, "ensure", &cmd)
        .stderr_contains("saved pip")
        .run();
    // The same project in another slot, with GitLab's cache putting the .venv back there.
    let mut q = Project::new();
    q.dir = q.tmp.path().join("slot1/project");
    fs::create_dir_all(&q.dir).unwrap();
    fs::copy(p.path("requirements.txt"), q.path("requirements.txt")).unwrap();
    cp(&p.path(".venv"), &q.path(".venv"));
    runner(&q, "ensure", &cmd)
        .stderr_contains(&format!(
            ".venv was built at {}, and GitLab's cache does not rewrite",
            p.dir.display()
        ))
        // The install ran at the new path.
        .installs(1)
        .run();
    let imp = StdCommand::new(q.path(".venv/bin/python"))
        .args(["-c", "import greet; print(greet.VERSION)"])
        .output()
        .unwrap();
    assert_eq!(stdout(&imp).trim(), "1.0", "{}", stderr(&imp));
}
