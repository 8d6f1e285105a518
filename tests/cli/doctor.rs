//! `cachegate doctor` on the directory store and on a real Garage: one plain line per
//! check, no secrets, exit 0 / 3 / 2.

use crate::common::garage::{self, GarageStore};
use crate::common::{Project, Store, Test, assert_no_secrets};

fn doctor<'p>(p: &'p Project, extra: &[&str]) -> Test<'p> {
    p.test().arg("doctor").args(extra)
}

#[test]
fn doctor_passes_on_the_directory_store_and_leaves_nothing() {
    let p = Project::new();
    let mut step = doctor(&p, &[]);
    for check in ["reachable", "credentials", "write", "read", "delete"] {
        step = step.stderr_contains(&format!("ok   {check}"));
    }
    step.stderr_contains("all checks passed").run();
    assert!(
        p.store_files()
            .iter()
            .all(|f| !f.contains("doctor") || f.ends_with('/')),
        "{:?}",
        p.store_files()
    );
}

#[test]
fn doctor_passes_on_garage_and_leaves_nothing() {
    let Some((p, store)) = crate::s3::garage_project() else {
        return;
    };
    doctor(&p, &[])
        .stderr_contains("all checks passed")
        .stderr_contains("ok   write")
        .run();
    assert!(store.objects().is_empty(), "{:?}", store.objects());
}

#[test]
fn doctor_says_in_plain_words_when_the_store_is_down() {
    if !garage::available() {
        return;
    }
    let server = garage::private();
    let p = Project::with_store(Box::new(GarageStore::on(server)));
    doctor(&p, &[]).run();
    server.stop();
    doctor(&p, &["--connect-timeout", "2", "--retries", "1"])
        .status(3)
        .stderr_contains("FAIL reachable")
        .stderr_contains("Connection refused")
        .stderr_contains("the store has trouble")
        .run();
}

#[test]
fn doctor_reports_refused_credentials_without_printing_them() {
    let Some((p, store)) = crate::s3::garage_project() else {
        return;
    };
    let wrong = "00000000000000000000000000000000000000000000000000000000wrong22";
    let o = doctor(&p, &[])
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .status(3)
        .stderr_contains("ok   reachable")
        .stderr_contains("FAIL credentials")
        .stderr_contains("refused")
        .run();
    assert_no_secrets(&o, &[wrong.to_string()]);
    assert_no_secrets(&o, &store.secrets());

    // No credentials at all: said so, with where they come from.
    doctor(&p, &[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .status(3)
        .stderr_contains("FAIL credentials")
        .stderr_contains("no AWS credentials found")
        .run();
}

#[test]
fn doctor_exits_2_on_a_bad_configuration_and_0_in_runner_mode() {
    let p = Project::new();
    for bad in ["s3://X", "ftp://host/x", "relative/dir"] {
        doctor(&p, &["--backend", bad])
            .status(2)
            .stderr_contains(bad)
            .run();
    }
    doctor(&p, &["--backend", "runner"])
        .stderr_contains("stores nothing")
        .run();
}
