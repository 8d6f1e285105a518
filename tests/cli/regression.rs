//! Regression tests, one per defect, each named after the defect it pins (as ripgrep's
//! `tests/regression.rs`): the name says what went wrong, the body shows it cannot again.

use std::path::PathBuf;
use std::process::Command as StdCommand;

use crate::common::dist::repo_root;
use crate::common::{require, stderr};

/// `scripts/release.sh` took the binary from `target/` even when `CARGO_TARGET_DIR` put the
/// build elsewhere, so it failed (or shipped a stale binary) for anyone with a shared target
/// dir. Run against this test's own target dir, it must ship exactly the binary built there,
/// and the man pages with it.
#[test]
fn release_sh_ignored_cargo_target_dir() {
    // This binary runs from <target>/debug/deps; the release build sits beside it.
    let target_dir: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let built = target_dir.join(&triple).join("release/cachegate");
    // Building a release takes minutes; .ci/run has built it (scripts/release.sh) by now.
    if !require(
        built.is_file(),
        &format!("a release build in {}", target_dir.display()),
        "CARGO_TARGET_DIR=<this target dir> scripts/release.sh",
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let dist = out.path().join("dist");
    let o = StdCommand::new(repo_root().join("scripts/release.sh"))
        .arg(&dist)
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shipped = dist.join(format!("cachegate-linux-{}", std::env::consts::ARCH));
    assert!(
        std::fs::read(&shipped).unwrap() == std::fs::read(&built).unwrap(),
        "{} is not the binary built in {}",
        shipped.display(),
        built.display()
    );
    let page = std::fs::read_to_string(dist.join("man/cachegate.1")).unwrap();
    assert!(page.contains(".TH cachegate 1"), "{page}");
    assert!(dist.join("man/cachegate-ensure.1").is_file());
}
