//! The `gitlab` store against the harness's emulator of GitLab's generic package registry:
//! the core scenarios, the default inside GitLab CI, the package layout, first-writer-wins
//! with duplicate file names, and the faults a job must survive green.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::ARGS;
use crate::common::gitlab_emu::{GitlabEmu, GitlabStore, Request};
use crate::common::scenarios::{ensure, installs, parallel_saves};
use crate::common::{Project, Test, listed, listed_by, stderr, warnings};
use crate::http::{ensure_with, explain_names_the_changed_lock, small_tree};

/// The registry package a `Project`'s entries of `scope` go to.
fn package(scope: &str) -> String {
    let root = crate::common::project_root();
    let (version, ns) = root.split_once('/').unwrap();
    format!("cachegate-{version}-{scope}-{ns}")
}

fn project() -> (Project, Arc<GitlabEmu>) {
    let emu = Arc::new(GitlabEmu::start());
    let p = Project::with_store(Box::new(GitlabStore(emu.clone())));
    p.write("app.lock", "v1");
    (p, emu)
}

fn run_ensure(p: &Project, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<&str> = ARGS.to_vec();
    args.extend_from_slice(extra);
    ensure(p, &args, &small_tree())
}

#[test]
fn python_venv_on_the_gitlab_registry() {
    crate::common::scenarios::python_venv(&Project::with_store(Box::new(GitlabStore(Arc::new(
        GitlabEmu::start(),
    )))));
}

#[test]
fn npm_file_dependency_on_the_gitlab_registry() {
    crate::common::scenarios::npm_file_dependency(&Project::with_store(Box::new(GitlabStore(
        Arc::new(GitlabEmu::start()),
    ))));
}

#[test]
fn inside_gitlab_ci_the_registry_is_the_default_and_the_layout_is_as_documented() {
    let (p, emu) = project();
    p.test()
        .env_remove("CACHEGATE_BACKEND")
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "false")
        .ensure(&ARGS, &small_tree())
        .stderr_contains("using this project's GitLab package registry")
        .run();
    let files = emu.files();
    // The manifest, the archive and the save's job record.
    assert_eq!(files.len(), 3, "{files:?}");
    for (name, version, file) in &files {
        assert_eq!(*name, package("unprotected"));
        let (cache, key) = version.split_once('.').unwrap();
        assert_eq!(cache, "out");
        assert_eq!(key.len(), 64);
        assert!(file.starts_with(key), "{file}");
    }
    assert!(files.iter().any(|f| f.2.ends_with(".json")));
    assert!(files.iter().any(|f| f.2.ends_with(".tar.zst")));
    assert!(files.iter().any(|f| f.2.contains(".rec.")));
    // The job token went in the JOB-TOKEN header, never in a URL.
    for r in emu.requests() {
        assert_eq!(r.header("job-token"), Some(emu.job_token.as_str()));
        assert!(!format!("{:?}", r.query).contains(&emu.job_token));
    }

    // The next job hits, with one request for the manifest and one for the archive; after
    // the restore it writes its job record (and reads no last-use record).
    emu.clear_requests();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .env_remove("CACHEGATE_BACKEND")
        .env("GITLAB_CI", "true")
        .ensure(&ARGS, &small_tree())
        .stderr_contains("cachegate: hit out")
        .installs(1)
        .run();
    let reqs = emu.requests();
    let files: Vec<&str> = reqs
        .iter()
        .map(|r| r.path.rsplit('.').next().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{reqs:?}");
    assert_eq!(files[..2], ["json", "zst"], "{reqs:?}");
    assert_eq!(reqs[2].method, "PUT");
    assert!(reqs[2].path.contains(".rec."), "{reqs:?}");
}

#[test]
fn ls_and_prune_work_and_a_token_that_cannot_delete_is_reported() {
    let (p, emu) = project();
    assert!(run_ensure(&p, &[]).status.success());
    std::thread::sleep(Duration::from_millis(1100));
    p.write("app.lock", "v2");
    assert!(run_ensure(&p, &[]).status.success());
    assert_eq!(listed(&p).len(), 2);
    explain_names_the_changed_lock(&p);

    emu.deny_delete(true);
    let o = p
        .test()
        .args(["prune", "--keep", "1"])
        .any_status()
        .stderr_contains("403")
        .run();
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    emu.deny_delete(false);
    p.test().args(["prune", "--keep", "1"]).run();
    // The kept entry: its manifest, archive and save record.
    assert_eq!(emu.files().len(), 3, "{:?}", emu.files());
}

#[test]
fn parallel_saves_leave_one_manifest_and_no_claims() {
    let (p, emu) = project();
    parallel_saves(&p, 8, &gitlab_env(&emu));
    let files = emu.files();
    let count = |suffix: &str| files.iter().filter(|f| f.2.ends_with(suffix)).count();
    assert_eq!(count(".json"), 1, "{files:?}");
    assert_eq!(count(".tar.zst"), 1, "{files:?}");
    assert_eq!(count(".claim"), 0, "{files:?}");
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.test().arg("restore").args(ARGS).run();
}

/// Another writer's claim on this project's key, `secs_ago` seconds old.
fn foreign_claim(p: &Project, emu: &GitlabEmu, secs_ago: u64) {
    let o = p.test().verb("key", &ARGS, &small_tree()).run();
    let key = String::from_utf8(o.stdout).unwrap().trim().to_string();
    emu.put_file_aged(
        &package("local"),
        &format!("out.{key}"),
        &format!("{key}.json.claim"),
        b"other-writer",
        secs_ago,
    );
}

/// The job yields to the writer that claimed its key first: green, saying so, and with no
/// manifest of its own in the registry (whose files are returned for further checks).
fn yields_to_the_first_writer(p: &Project, emu: &GitlabEmu) -> Vec<(String, String, String)> {
    p.test()
        .ensure(&ARGS, &small_tree())
        .stderr_contains("another job saved it first")
        .run();
    let files = emu.files();
    assert!(!files.iter().any(|f| f.2.ends_with(".json")), "{files:?}");
    files
}

#[test]
fn an_older_claim_wins_and_the_later_writer_keeps_theirs() {
    // Another job claimed the key first and is still uploading its manifest: this job
    // must not write a second manifest (GitLab would serve the newest).
    let (p, emu) = project();
    foreign_claim(&p, &emu, 5);
    let files = yields_to_the_first_writer(&p, &emu);
    assert!(
        !files.iter().any(|f| f.2.ends_with(".tar.zst")),
        "{files:?}"
    );
}

#[test]
fn a_duplicate_claim_the_namespace_rejects_is_another_writer_first() {
    // "Allow duplicates" off: GitLab itself refuses the second claim (400), and that
    // refusal is the atomic first-writer check, whatever words its body has.
    let (p, emu) = project();
    emu.reject_duplicates(true);
    foreign_claim(&p, &emu, 3600);
    yields_to_the_first_writer(&p, &emu);
}

#[test]
fn a_claim_left_by_a_writer_that_died_long_ago_is_ignored() {
    let (p, emu) = project();
    foreign_claim(&p, &emu, 3600);
    let o = run_ensure(&p, &[]);
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = run_ensure(&p, &[]);
    assert!(stderr(&o).contains("cachegate: hit out"), "{}", stderr(&o));
}

#[test]
fn missing_job_variables_are_a_usage_error_naming_them() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test()
        .env("CACHEGATE_BACKEND", "gitlab")
        .env("CI_API_V4_URL", "http://127.0.0.1:9/api/v4")
        .ensure(&ARGS, &small_tree())
        .status(2)
        .stderr_contains("CI_PROJECT_ID")
        .stderr_contains("CI_JOB_TOKEN")
        .installs(0)
        .run();
}

fn gitlab_env(emu: &GitlabEmu) -> Vec<(String, String)> {
    let mut env = emu.job_env();
    env.push(("CACHEGATE_BACKEND".into(), "gitlab".into()));
    env
}

#[test]
fn a_stopped_registry_is_a_quick_miss_with_one_warning() {
    let emu = GitlabEmu::start();
    let (env, secrets) = (gitlab_env(&emu), vec![emu.job_token.clone()]);
    drop(emu);
    let p = Project::new();
    p.write("app.lock", "v1");
    let start = Instant::now();
    ensure_with(&p, &env, &["--connect-timeout", "2"], &secrets)
        .status(0)
        .installs(1)
        .warnings(1)
        .run();
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_wrong_job_token_is_one_request_one_warning_and_no_secret() {
    let emu = GitlabEmu::start();
    let p = Project::new();
    p.write("app.lock", "v1");
    let wrong = "glcbt-wrong-token-value";
    let mut env = gitlab_env(&emu);
    env.push(("CI_JOB_TOKEN".into(), wrong.into()));
    ensure_with(&p, &env, &[], &[wrong.to_string(), emu.job_token.clone()])
        .status(0)
        .installs(1)
        .warnings(1)
        .stderr_contains("401")
        .run();
    assert_eq!(emu.requests().len(), 1, "401 must not be retried");
}

#[test]
fn a_private_token_replaces_the_job_token() {
    let (p, emu) = project();
    p.test()
        .env("CI_JOB_TOKEN", "glcbt-not-this-one")
        .env("CACHEGATE_GITLAB_TOKEN", &emu.private_token)
        .ensure(&ARGS, &small_tree())
        .warnings(0)
        .run();
    for r in emu.requests() {
        assert_eq!(r.header("private-token"), Some(emu.private_token.as_str()));
        assert!(r.header("job-token").is_none());
    }
}

#[test]
fn rate_limits_are_retried_after_the_time_asked_then_succeed() {
    let (p, emu) = project();
    emu.fail_next(429, Some(1), 2);
    let start = Instant::now();
    let o = run_ensure(&p, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(warnings(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times() {
    let (p, emu) = project();
    emu.fail_next(502, None, 1000);
    let o = run_ensure(&p, &["--retries", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("502"), "{}", stderr(&o));
    assert_eq!(emu.requests().len(), 3, "one try and two retries");
}

#[test]
fn an_archive_deleted_after_the_manifest_was_served_is_a_miss_and_gets_replaced() {
    let (p, emu) = project();
    assert!(run_ensure(&p, &[]).status.success());
    std::fs::remove_dir_all(p.path("out")).unwrap();
    emu.delete_archive_after_manifest(true);
    let o = run_ensure(&p, &[]);
    emu.delete_archive_after_manifest(false);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 2);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("could not restore"), "{}", stderr(&o));
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = run_ensure(&p, &[]);
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    assert_eq!(installs(&p), 2);
}

#[test]
fn downloads_redirected_to_object_storage_carry_no_token() {
    let (p, emu) = project();
    assert!(run_ensure(&p, &[]).status.success());
    emu.redirect_downloads(true);
    let private = [("CACHEGATE_GITLAB_TOKEN", emu.private_token.clone())];
    for extra_env in [&[][..], &private[..]] {
        emu.clear_requests();
        std::fs::remove_dir_all(p.path("out")).unwrap();
        p.test()
            .envs(extra_env.iter().cloned())
            // Read-only, so the hit is exactly the manifest and the archive.
            .env("CACHEGATE_POLICY", "pull")
            .ensure(&ARGS, &small_tree())
            .any_status()
            .stderr_contains("cachegate: hit")
            .stderr_lacks("s1gn4ture")
            .run();
        let blobs = emu.blob_requests();
        assert_eq!(blobs.len(), 2, "manifest and archive via object storage");
        for r in &blobs {
            assert!(r.header("job-token").is_none(), "{r:?}");
            assert!(r.header("private-token").is_none(), "{r:?}");
            assert!(r.header("authorization").is_none(), "{r:?}");
        }
        // The registry itself did get the token.
        assert!(
            emu.requests()
                .iter()
                .all(|r| r.header("job-token").is_some() || r.header("private-token").is_some())
        );
    }
}

#[test]
fn listing_follows_pagination_and_ignores_other_packages_that_match_fuzzily() {
    let (p, emu) = project();
    // GitLab's package_name filter is fuzzy: these all match "cachegate-v2-" and fill the
    // first pages; none of them is ours.
    for i in 0..130 {
        emu.put_file(
            &format!("not-cachegate-v2-local{i}"),
            "1.0.0",
            "x.json",
            b"{}",
        );
    }
    assert!(run_ensure(&p, &[]).status.success());
    let rows = listed_by(p.test().warnings(0));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let pages = emu
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/packages") && r.method == "GET")
        .count();
    assert!(pages >= 2, "only {pages} page(s) of packages were read");
}

#[test]
fn a_job_token_that_cannot_list_files_still_saves_and_hits() {
    // GitLab before 16.0: job tokens may publish and download but not list package files.
    let (p, emu) = project();
    emu.deny_job_token_file_listing(true);
    let o = run_ensure(&p, &[]);
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );
    assert_eq!(warnings(&o), 0, "{}", stderr(&o));
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = run_ensure(&p, &[]);
    assert!(stderr(&o).contains("cachegate: hit out"), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
}

#[test]
fn a_retry_after_longer_than_a_job_should_wait_is_not_waited_for() {
    let (p, emu) = project();
    emu.fail_next(503, Some(3600), 1000);
    let start = Instant::now();
    let o = run_ensure(&p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert_eq!(emu.requests().len(), 1);
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_scope_the_job_may_only_read_failing_does_not_stop_the_save() {
    let (p, emu) = project();
    emu.forbid_package(&package("protected"));
    let in_mr = |p| {
        Test::on(p)
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "false")
            .ensure(&ARGS, &small_tree())
    };
    in_mr(&p)
        .warnings(1)
        .stderr_contains("cachegate: saved out")
        .run();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    in_mr(&p)
        .stderr_contains("cachegate: hit out")
        .warnings(0)
        .run();
}

/// Save a 5 MB incompressible entry with 1 MB chunks, `concurrency` at a time, and remove
/// it from the work tree: (the ensure arguments, the install command, the saved bytes).
fn saved_large(
    p: &Project,
    concurrency: &'static str,
) -> (Vec<&'static str>, Vec<String>, Vec<u8>) {
    let big = crate::common::tree_cmd(
        "rm -rf out && mkdir out && head -c 5000000 /dev/urandom > out/blob",
    );
    let args = [
        &ARGS[..],
        &["--chunk-size", "1M", "--concurrency", concurrency][..],
    ]
    .concat();
    p.test().ensure(&args, &big).run();
    let blob = std::fs::read(p.path("out/blob")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    (args, big, blob)
}

/// A hit of what `saved_large` saved, counted from a cleared request log: the same bytes
/// come back, and five or more of the requests `seen` records for the archive were ranges
/// (returned).
fn hit_in_ranges(
    (p, emu): (&Project, &GitlabEmu),
    (args, big, blob): &(Vec<&'static str>, Vec<String>, Vec<u8>),
    seen: fn(&GitlabEmu) -> Vec<Request>,
    archive: fn(&Request) -> bool,
) -> Vec<Request> {
    emu.clear_requests();
    p.test()
        .ensure(args, big)
        .stderr_contains("cachegate: hit")
        .run();
    assert_eq!(&std::fs::read(p.path("out/blob")).unwrap(), blob);
    let ranges: Vec<Request> = seen(emu)
        .into_iter()
        .filter(|r| archive(r) && r.header("range").is_some())
        .collect();
    assert!(ranges.len() >= 5, "{ranges:?}");
    ranges
}

#[test]
fn a_large_archive_comes_from_gitlab_itself_in_ranges_bound_to_its_date() {
    // No redirect: GitLab serves the file from its own storage, with Last-Modified and no
    // ETag, so the ranges must carry If-Unmodified-Since (an If-Match would answer 412).
    let (p, emu) = project();
    let saved = saved_large(&p, "3");
    let ranges = hit_in_ranges((&p, &emu), &saved, GitlabEmu::requests, |r| {
        r.path.ends_with(".tar.zst")
    });
    assert!(emu.blob_requests().is_empty());
    let later: Vec<_> = ranges
        .iter()
        .filter(|r| !r.header("range").unwrap().starts_with("bytes=0-"))
        .collect();
    assert_eq!(later.len(), ranges.len() - 1, "{ranges:?}");
    assert!(
        later
            .iter()
            .all(|r| r.header("if-match").is_none() && r.header("if-unmodified-since").is_some()),
        "{ranges:?}"
    );
}

#[test]
fn an_archive_replaced_on_gitlab_mid_download_fails_fast_instead_of_splicing() {
    let (p, emu) = project();
    let (args, big, _) = saved_large(&p, "2");
    emu.replace_archive_after_first_range(true);
    emu.clear_requests();
    let pull = [&args[..], &["--policy", "pull"][..]].concat();
    p.test()
        .ensure(&pull, &big)
        .stderr_contains("412")
        .stderr_contains("replaced during the download")
        .installs(2)
        .run();
    // The first range and at most the ones already in flight: a 412 is not retried.
    let ranges = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".tar.zst") && r.header("range").is_some())
        .count();
    assert!(ranges <= 1 + 2, "{ranges} ranges");
}

#[test]
fn a_large_archive_comes_from_object_storage_in_ranges_bound_to_its_etag() {
    let (p, emu) = project();
    let saved = saved_large(&p, "3");
    emu.redirect_downloads(true);
    let ranges = hit_in_ranges((&p, &emu), &saved, GitlabEmu::blob_requests, |r| {
        r.path.starts_with("/blob/")
    });
    // After the first range, each names the version it came from.
    assert!(
        ranges
            .iter()
            .filter(|r| !r.header("range").unwrap().starts_with("bytes=0-"))
            .all(|r| r.header("if-match").is_some()),
        "{ranges:?}"
    );
}
