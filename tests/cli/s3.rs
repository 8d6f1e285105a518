//! The S3 store against a real Garage on loopback: the core scenarios at the most verbose
//! level with the secret check on, the layout in the bucket, racing writers, and the
//! faults a remote store brings (server down, refused credentials, missing bucket, an
//! archive gone between lookup and download).

use std::time::{Duration, Instant};

use crate::common::garage::{self, GarageStore};
use crate::common::scenarios::{ensure, installs, parallel_saves};
use crate::common::{ARGS, Project, stderr, tree_cmd, warnings};

/// A project on a fresh prefix of the shared Garage, and a handle on that prefix.
pub fn garage_project() -> Option<(Project, GarageStore)> {
    if !garage::available() {
        return None;
    }
    let store = GarageStore::new();
    Some((
        Project::with_store(Box::new(GarageStore::on_prefix(&store))),
        store,
    ))
}

#[test]
fn s3_python_venv_installs_once_restores_and_reinstalls() {
    if let Some((p, _)) = garage_project() {
        crate::common::scenarios::python_venv(&p);
    }
}

#[test]
fn s3_npm_ci_with_a_file_dependency_restores_the_link() {
    if let Some((p, _)) = garage_project() {
        crate::common::scenarios::npm_file_dependency(&p);
    }
}

#[test]
fn s3_multipart_upload_round_trips_and_lays_out_entries_as_documented() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    // 20 MB of incompressible bytes: several 5 MiB parts.
    let cmd =
        tree_cmd("mkdir -p out && head -c 20000000 /dev/urandom > out/big && echo hi > out/small");
    let args = ARGS;
    p.test().ensure(&args, &cmd).run();
    let before = std::fs::read(p.path("out/big")).unwrap();
    // v2/<project>/<scope>/<name>/<key>.json, .../<key>-<upload id>.tar.zst and the save's
    // job record .../<key>.rec.<fields>
    let objects = store.objects();
    assert_eq!(objects.len(), 3, "{objects:?}");
    let dir = format!("{}/local/out/", crate::common::project_root());
    let manifest = objects.iter().find(|o| o.ends_with(".json")).unwrap();
    let key = manifest
        .strip_prefix(&dir)
        .and_then(|k| k.strip_suffix(".json"))
        .unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o.starts_with(&format!("{dir}{key}-")) && o.ends_with(".tar.zst")),
        "{objects:?}"
    );

    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = p.test().ensure(&args, &cmd).run();
    assert!(stderr(&o).contains("cachegate: hit out"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("from s3://{}/{}", garage::BUCKET, store.prefix)),
        "{}",
        stderr(&o)
    );
    assert_eq!(installs(&p), 1);
    assert!(std::fs::read(p.path("out/big")).unwrap() == before);

    // ls and prune work on the bucket too.
    p.test()
        .arg("ls")
        .stdout_contains("local")
        .stdout_contains("out")
        .run();
    p.test().args(["prune", "--keep", "0"]).run();
    assert!(store.objects().is_empty(), "{:?}", store.objects());
}

#[test]
fn s3_racing_saves_of_one_key_leave_exactly_one_entry() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    std::fs::create_dir_all(p.path("out")).unwrap();
    std::fs::write(p.path("out/f"), "data").unwrap();
    parallel_saves(&p, 6, &[]);
    let manifests: Vec<_> = store
        .objects()
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{:?}", store.objects());
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.test().arg("restore").args(ARGS).run();
    assert_eq!(std::fs::read_to_string(p.path("out/f")).unwrap(), "data");
}

#[test]
fn s3_server_stopped_is_a_quick_miss_with_one_warning() {
    if !garage::available() {
        return;
    }
    let server = garage::private();
    let store = GarageStore::on(server);
    let p = Project::with_store(Box::new(GarageStore::on_prefix(&store)));
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    let args = [
        "--lock",
        "app.lock",
        "--path",
        "out",
        "--connect-timeout",
        "2",
    ];
    p.test().ensure(&args, &cmd).run();
    server.stop();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let start = Instant::now();
    let o = ensure(&p, &args, &cmd);
    let took = start.elapsed();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(installs(&p), 2, "{}", stderr(&o));
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot look up"), "{}", stderr(&o));
    assert!(stderr(&o).contains("not saved"), "{}", stderr(&o));
    // Connect timeout plus the bounded, jittered retries: well under the 10 s default.
    assert!(took < Duration::from_secs(2 + 1), "took {took:?}");
    // --strict turns the trouble into exit 3.
    let mut strict = args.to_vec();
    strict.push("--strict");
    p.test().ensure(&strict, &cmd).status(3).run();
}

#[test]
fn s3_wrong_credentials_are_refused_once_without_printing_them() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    let args = ARGS;
    let wrong = "0000000000000000000000000000000000000000000000000000000000wrong1";
    let o = p
        .test()
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .secrets(&[wrong.to_string()])
        .ensure(&args, &cmd)
        .installs(1)
        .warnings(1)
        .stderr_contains("access denied")
        .stderr_contains("HTTP 403")
        .run();
    assert!(
        !stderr(&o).contains("retry"),
        "a 403 was retried: {}",
        stderr(&o)
    );
    assert!(store.objects().is_empty());

    // An unknown access key id: Garage echoes it in its message; it is masked.
    let unknown = "GK0123456789abcdef01234567";
    p.test()
        .env("AWS_ACCESS_KEY_ID", unknown)
        .secrets(&[unknown.to_string()])
        .verb("check", &ARGS, &cmd)
        .status(1)
        .stderr_contains("access denied")
        .run();
}

#[test]
fn s3_a_bucket_that_does_not_exist_is_a_miss_that_says_so() {
    let Some((p, _)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    let backend = format!(
        "s3://no-such-bucket/x?endpoint={}&region={}",
        garage::Garage::shared().endpoint(),
        garage::REGION
    );
    p.test()
        .ensure(&[&["--backend", &backend][..], &ARGS].concat(), &cmd)
        .installs(1)
        .warnings(1)
        .stderr_contains("NoSuchBucket")
        .run();
}

#[test]
fn s3_an_archive_deleted_between_lookup_and_download_is_a_miss_then_replaced() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    let args = ARGS;
    p.test().ensure(&args, &cmd).run();
    // The lookup finds it.
    p.test().verb("check", &args, &cmd).run();

    // Another job's prune (or a lifecycle rule) removes the archive after the lookup.
    let archive = store
        .objects()
        .into_iter()
        .find(|n| n.ends_with(".tar.zst"))
        .unwrap();
    store.op().delete(&archive).unwrap();

    std::fs::remove_dir_all(p.path("out")).unwrap();
    let o = p.test().ensure(&args, &cmd).run();
    assert_eq!(installs(&p), 2, "{}", stderr(&o));
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("could not restore"), "{}", stderr(&o));
    let leftovers: Vec<_> = std::fs::read_dir(&p.dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The broken entry was replaced: the next job hits.
    std::fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&args, &cmd)
        .any_status()
        .stderr_contains("cachegate: hit out")
        .run();
    assert_eq!(installs(&p), 2);
}

#[test]
fn s3_web_identity_token_is_never_printed_and_needs_a_role() {
    let Some((p, _)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwcm9qZWN0X3BhdGgifQ.c2lnbmF0dXJlLXNlY3JldA";
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    p.test()
        .env("CACHEGATE_S3_WEB_IDENTITY_TOKEN", token)
        .secrets(&[token.to_string()])
        .verb("check", &ARGS, &cmd)
        .status(2)
        .stderr_contains("AWS_ROLE_ARN")
        .run();

    // With a role named, the chain is set up; the static keys still come first here
    // (Garage has no STS), and the token appears nowhere.
    // The token file cachegate writes for the chain is gone when it exits.
    let tmp = p.tmp.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    p.test()
        .env("CACHEGATE_S3_WEB_IDENTITY_TOKEN", token)
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci-cache")
        .env("TMPDIR", &tmp)
        .secrets(&[token.to_string()])
        .ensure(&ARGS, &cmd)
        .stderr_contains("saved out")
        .run();
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn s3_bad_backend_urls_are_usage_errors_naming_the_value() {
    let p = Project::new();
    p.write("app.lock", "v1");
    for (url, says) in [
        ("s3://Bad_Bucket/x", "is not a bucket name"),
        ("s3://bucket/x?colour=blue", "unknown parameter \"colour\""),
        (
            "s3://bucket/x?endpoint=localhost:9000",
            "must start with http",
        ),
    ] {
        p.test()
            .args(["check", "--backend", url])
            .args(ARGS)
            .status(2)
            .stderr_contains(says)
            .run();
    }
}

/// The store's URL with the endpoint pointed at a fault proxy.
fn through(store: &GarageStore, port: u16) -> String {
    format!(
        "s3://{}/{}?endpoint=http://127.0.0.1:{port}&region={}",
        garage::BUCKET,
        store.prefix,
        garage::REGION
    )
}

#[test]
fn s3_503_and_429_are_retried_with_backoff_and_bounded() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && echo x > out/f");
    let args = ARGS;

    // Two failures, three retries: the job sees no trouble at all.
    for status in [503, 429] {
        let proxy =
            garage::FaultProxy::start(store.garage.s3_port, garage::Fault::FailFirst(2, status));
        let backend = through(&store, proxy.port);
        // A protected job looks up one scope only: one request, so the count below is exact
        // (a second lookup may or may not reuse the pooled connection).
        let o = p
            .test()
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "true")
            .verb(
                "check",
                &[&["--backend", &backend, "--retries", "3"][..], &args].concat(),
                &cmd,
            )
            .status(1)
            .warnings(0)
            .run();
        assert_eq!(stderr(&o).matches("; retry ").count(), 2, "{}", stderr(&o));
        assert_eq!(proxy.connections(), 3);
    }

    // More failures than retries: one warning, the install runs, the job is green.
    let proxy = garage::FaultProxy::start(store.garage.s3_port, garage::Fault::FailFirst(100, 503));
    let backend = through(&store, proxy.port);
    p.test()
        .ensure(
            &[&["--backend", &backend, "--retries", "2"][..], &args].concat(),
            &cmd,
        )
        .installs(1)
        .warnings(1)
        .stderr_contains("HTTP 503")
        .run();
    assert_eq!(
        proxy.connections(),
        3,
        "1 try + 2 retries, and no save attempt"
    );
}

#[test]
fn s3_a_stalled_server_is_cut_by_the_stall_timeout() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    let proxy = garage::FaultProxy::start(store.garage.s3_port, garage::Fault::Stall);
    let start = Instant::now();
    p.test()
        .args(["check", "--backend", &through(&store, proxy.port)])
        .args(["--stall-timeout", "2", "--retries", "0"])
        .args(ARGS)
        .status(1)
        .warnings(1)
        .run();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2 + 2), "took {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "took {took:?}: cut before the stall timeout"
    );
}

#[test]
fn s3_an_upload_killed_midway_leaves_no_entry_and_prune_aborts_its_multipart_upload() {
    let Some((p, store)) = garage_project() else {
        return;
    };
    p.write("app.lock", "v1");
    // One 5 MiB part at a time, so the upload is still running when the job is killed.
    let mut child = p
        .test()
        .ensure(
            &[&ARGS[..], &["--concurrency", "1", "--chunk-size", "5M"]].concat(),
            &tree_cmd("mkdir -p out && head -c 150000000 /dev/urandom > out/big"),
        )
        .std_command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while store.incomplete_uploads().is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no multipart upload started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();

    let pending = store.incomplete_uploads();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(pending[0].ends_with(".tar.zst"), "{pending:?}");
    assert!(
        store.objects().is_empty(),
        "no visible entry: {:?}",
        store.objects()
    );
    p.test()
        .arg("ls")
        .any_status()
        .stderr_contains("0 entries")
        .run();

    // Younger than --abandoned-after (24 h by default): it may be a live upload, kept.
    p.test().args(["prune", "--keep", "5"]).run();
    assert_eq!(store.incomplete_uploads().len(), 1);

    p.test()
        .args(["prune", "--keep", "5", "--abandoned-after", "0"])
        .stdout_contains("aborted incomplete upload v2/")
        .stdout_contains("/local/out/")
        .run();
    assert!(
        store.incomplete_uploads().is_empty(),
        "{:?}",
        store.incomplete_uploads()
    );
}

/// An entry of 12 MB that does not compress, saved straight to Garage; then `ensure` runs
/// again through the request-counting proxy, restoring in 4 MiB ranges, two at a time.
fn s3_saved_then_through_proxy(
    fault: crate::common::faults::Fault,
) -> Option<(
    Project,
    GarageStore,
    std::sync::Arc<crate::common::faults::FaultProxy>,
    std::process::Output,
)> {
    use crate::common::faults::FaultProxy;
    let (p, store) = garage_project()?;
    p.write("app.lock", "v1");
    let cmd = tree_cmd("mkdir -p out && head -c 12000000 /dev/urandom > out/big");
    let args = [
        "--lock",
        "app.lock",
        "--path",
        "out",
        "--chunk-size",
        "4M",
        "--policy",
        "pull-push",
    ];
    let o = ensure(&p, &args, &cmd);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(p.path("out/big")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    let op = store.op();
    let prefix = format!("/{}/{}/", garage::BUCKET, store.prefix);
    let proxy = std::sync::Arc::new(FaultProxy::start_with(
        store.garage.s3_port,
        std::sync::Arc::new(move |path: &str| {
            let name = path.strip_prefix(&prefix).unwrap();
            let mut bytes = op.read(name).unwrap().to_vec();
            crate::common::faults::flip_middle(&mut bytes);
            op.write(name, bytes).unwrap();
        }),
    ));
    proxy.set_fault(fault);
    let backend = format!(
        "s3://{}/{}?endpoint={}&region={}",
        garage::BUCKET,
        store.prefix,
        proxy.url(""),
        garage::REGION
    );
    let o = p
        .test()
        .env("CACHEGATE_BACKEND", backend)
        // Two in flight: the third range goes out after the replacement.
        .ensure(
            &[&args[..6], &["--concurrency", "2", "--policy", "pull"]].concat(),
            &cmd,
        )
        .run();
    if fault == crate::common::faults::Fault::None {
        assert_eq!(std::fs::read(p.path("out/big")).unwrap(), before);
    }
    Some((p, store, proxy, o))
}

#[test]
fn s3_a_large_archive_comes_in_concurrent_ranges_bound_to_its_etag() {
    let Some((p, _store, proxy, o)) =
        s3_saved_then_through_proxy(crate::common::faults::Fault::None)
    else {
        return;
    };
    assert_eq!(installs(&p), 1, "a hit: {}", stderr(&o));
    let gets = proxy.archive_gets();
    assert!(gets.len() >= 3, "{gets:?}");
    assert!(
        gets.iter()
            .all(|g| g.range.is_some() && g.if_match.is_some() && g.status == 206),
        "{gets:?}"
    );
}

#[test]
fn s3_an_archive_replaced_mid_download_fails_fast_instead_of_splicing() {
    let Some((p, _store, proxy, o)) =
        s3_saved_then_through_proxy(crate::common::faults::Fault::ReplaceAfterFirst)
    else {
        return;
    };
    let err = stderr(&o);
    assert!(err.contains("replaced during the download"), "{err}");
    assert_eq!(installs(&p), 2, "a miss: {err}");
    let gets = proxy.archive_gets();
    assert!(gets.iter().any(|g| g.status == 412), "{gets:?}");
    assert!(gets.len() <= 8, "a 412 is not retried: {gets:?}");
}
