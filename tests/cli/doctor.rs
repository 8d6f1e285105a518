//! `cachegate doctor` on the directory store and on a real Garage: one plain line per
//! check, no secrets, exit 0 / 3 / 2.

use crate::common::garage::{self, GarageStore};
use crate::common::{Project, Store, assert_no_secrets, stderr};

fn doctor(p: &Project, extra: &[&str]) -> std::process::Output {
    p.run(p.cmd().arg("doctor").args(extra))
}

#[test]
fn doctor_passes_on_the_directory_store_and_leaves_nothing() {
    let p = Project::new();
    let o = doctor(&p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for check in ["reachable", "credentials", "write", "read", "delete"] {
        assert!(
            stderr(&o).contains(&format!("ok   {check}")),
            "{check}: {}",
            stderr(&o)
        );
    }
    assert!(stderr(&o).contains("all checks passed"), "{}", stderr(&o));
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
    let o = doctor(&p, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("all checks passed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("ok   write"), "{}", stderr(&o));
    assert!(store.objects().is_empty(), "{:?}", store.objects());
}

#[test]
fn doctor_says_in_plain_words_when_the_store_is_down() {
    if !garage::available() {
        return;
    }
    let server = garage::private();
    let p = Project::with_store(Box::new(GarageStore::on(server)));
    assert_eq!(doctor(&p, &[]).status.code(), Some(0));
    server.stop();
    let o = doctor(&p, &["--connect-timeout", "2", "--retries", "1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("FAIL reachable"), "{}", stderr(&o));
    assert!(stderr(&o).contains("Connection refused"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the store has trouble"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn doctor_reports_refused_credentials_without_printing_them() {
    let Some((p, store)) = crate::s3::garage_project() else {
        return;
    };
    let wrong = "00000000000000000000000000000000000000000000000000000000wrong22";
    let o = p.run(p.cmd().env("AWS_SECRET_ACCESS_KEY", wrong).arg("doctor"));
    assert_no_secrets(&o, &[wrong.to_string()]);
    assert_no_secrets(&o, &store.secrets());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("ok   reachable"), "{}", stderr(&o));
    assert!(stderr(&o).contains("FAIL credentials"), "{}", stderr(&o));
    assert!(stderr(&o).contains("refused"), "{}", stderr(&o));

    // No credentials at all: said so, with where they come from.
    let o = p.run(
        p.cmd()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .arg("doctor"),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("FAIL credentials"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no AWS credentials found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn doctor_exits_2_on_a_bad_configuration_and_0_in_runner_mode() {
    let p = Project::new();
    for bad in ["s3://X", "ftp://host/x", "relative/dir"] {
        let o = doctor(&p, &["--backend", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(bad), "{}", stderr(&o));
    }
    let o = doctor(&p, &["--backend", "runner"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("stores nothing"), "{}", stderr(&o));
}
