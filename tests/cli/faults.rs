//! Faults that used to cost a job minutes or an entry (issue 21), each driven through a real
//! fault: a store that never answers, a proxy that flips a byte, a process killed mid-step.

use std::fs;

use crate::common::{ARGS, Project, tree_cmd};

fn one_file() -> Vec<String> {
    tree_cmd("mkdir -p out && echo data > out/f")
}

/// What `ls --json` says about the store's entries.
fn listed(p: &Project) -> Vec<serde_json::Value> {
    let o = p.test().args(["ls", "--json"]).run();
    serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()
}

#[test]
fn prune_refused_abandoned_after_alone_as_no_rule() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    // What a save killed between its archive and its manifest leaves: an archive no
    // manifest names.
    let archive = listed(&p)[0]["archive"].as_str().unwrap().to_string();
    let (dir, _) = archive.rsplit_once('/').unwrap();
    let orphan = format!("{dir}/{}-{}.tar.zst", "e".repeat(64), "0".repeat(32));
    fs::copy(p.store.join(&archive), p.store.join(&orphan)).unwrap();

    // Nothing at all is still no rule, and the message names the fifth.
    p.test()
        .arg("prune")
        .status(2)
        .stderr_contains("--abandoned-after AGE")
        .run();
    p.test()
        .args(["prune", "--abandoned-after", "0"])
        .stderr_lacks("needs a rule")
        .stderr_contains("deleted 0 entries and 1 abandoned upload (0 incomplete)")
        .stderr_contains("; 1 entry, ")
        .run();
    assert!(!p.store.join(&orphan).exists());
    // The entries stay: the only rule given was about abandoned uploads.
    assert_eq!(listed(&p).len(), 1);
    p.test().ensure(&ARGS, &one_file()).installs(1).run();
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "data\n");
}
