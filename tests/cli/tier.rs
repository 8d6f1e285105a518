//! The local tier (`--local-tier DIR`) in front of nginx, through the request-counting proxy:
//! a remote hit fills the tier while it streams, the next hit needs nothing from the remote,
//! and the tier never lets an unprotected job's entry reach a protected job.

use std::fs;

use crate::common::{ARGS, Project, tree_cmd, walk};
use crate::ranged::Proxied;

fn install() -> Vec<String> {
    tree_cmd("rm -rf out && mkdir out && head -c 3000000 /dev/urandom > out/blob")
}

fn setup() -> Option<(
    Project,
    std::sync::Arc<crate::common::faults::FaultProxy>,
    String,
)> {
    let store = Proxied::start()?;
    let proxy = store.proxy.clone();
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    let tier = p.tmp.path().join("tier").display().to_string();
    Some((p, proxy, tier))
}

#[test]
fn a_remote_hit_fills_the_tier_and_the_next_hit_reads_nothing_remote() {
    let Some((p, proxy, tier)) = setup() else {
        return;
    };
    // Saved by a job without the tier: only the remote has it.
    p.test().ensure(&ARGS, &install()).installs(1).run();
    let blob = fs::read(p.path("out/blob")).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    assert!(walk(std::path::Path::new(&tier)).is_empty());

    proxy.clear_seen();
    p.test()
        .env("CACHEGATE_LOCAL_TIER", &tier)
        .ensure(&ARGS, &install())
        .stderr_contains("cachegate: hit")
        .stderr_lacks("from local tier")
        .installs(1)
        .run();
    assert_eq!(fs::read(p.path("out/blob")).unwrap(), blob);
    assert_eq!(proxy.archive_gets().len(), 1, "{:?}", proxy.seen());
    let in_tier = walk(std::path::Path::new(&tier));
    assert!(
        in_tier.iter().any(|f| f.ends_with(".json"))
            && in_tier.iter().any(|f| f.ends_with(".tar.zst")),
        "{in_tier:?}"
    );

    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    p.test()
        .env("CACHEGATE_LOCAL_TIER", &tier)
        .ensure(&ARGS, &install())
        .stderr_contains("cachegate: hit")
        .stderr_contains(&format!("from local tier {tier} (in front of http://"))
        .installs(1)
        .run();
    assert_eq!(fs::read(p.path("out/blob")).unwrap(), blob);
    // Its one request writes its job record, so `stats` on the remote counts the hit.
    let seen = proxy.seen();
    assert!(
        seen.len() == 1 && seen[0].method == "PUT" && seen[0].path.contains(".rec."),
        "{seen:?}"
    );
}

#[test]
fn a_damaged_tier_archive_is_replaced_from_the_remote_not_restored() {
    let Some((p, proxy, tier)) = setup() else {
        return;
    };
    let with_tier = || {
        p.test()
            .env("CACHEGATE_LOCAL_TIER", &tier)
            .ensure(&ARGS, &install())
    };
    with_tier().installs(1).run();
    let blob = fs::read(p.path("out/blob")).unwrap();
    let archive = walk(std::path::Path::new(&tier))
        .into_iter()
        .find(|f| f.ends_with(".tar.zst"))
        .expect("the save went into the tier too");
    let path = std::path::Path::new(&tier).join(&archive);
    let mut bytes = fs::read(&path).unwrap();
    crate::common::faults::flip_middle(&mut bytes);
    fs::write(&path, &bytes).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    with_tier()
        .stderr_contains("cachegate: hit")
        .installs(1)
        .warnings(0)
        .run();
    assert_eq!(fs::read(p.path("out/blob")).unwrap(), blob);
    assert_eq!(proxy.archive_gets().len(), 1, "fetched from the remote");
    assert_ne!(
        fs::read(&path).unwrap(),
        bytes,
        "the tier copy was replaced"
    );
}

#[test]
fn a_protected_job_never_restores_an_unprotected_entry_through_the_tier() {
    let Some((p, proxy, tier)) = setup() else {
        return;
    };
    let job = |protected: bool| {
        p.test()
            .env("GITLAB_CI", "true")
            .env(
                "CI_COMMIT_REF_PROTECTED",
                if protected { "true" } else { "false" },
            )
            .env("CACHEGATE_LOCAL_TIER", &tier)
            .ensure(&ARGS, &install())
    };
    job(false).installs(1).run();
    // A job on the same machine copies the unprotected entry to where the protected scope's
    // entry would be, in the tier it can write.
    let root = std::path::Path::new(&tier);
    for f in walk(root) {
        let planted = root.join(f.replace("/unprotected/", "/protected/"));
        fs::create_dir_all(planted.parent().unwrap()).unwrap();
        fs::copy(root.join(&f), planted).unwrap();
    }
    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    job(true)
        .stderr_contains("cachegate: miss")
        .installs(2)
        .run();
    // The protected lookup asked the remote, which has no such entry.
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.path.contains("/protected/") && s.status == 404),
        "{:?}",
        proxy.seen()
    );
}
