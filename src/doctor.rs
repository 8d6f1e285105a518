//! `cachegate doctor`: is the configured store usable from here? One line per check, in
//! plain words, through `redact`; it writes, reads back and removes a small probe object in
//! the scope this job would write, so it needs no more rights than a save does.

use std::time::Instant;

use crate::backend::{Backend, BackendSpec, StoreError, Transfer};
use crate::entry::ObjectName;
use crate::exit::Ending;
use crate::redact;
use crate::report;
use crate::scope::{Scope, Scopes};
use crate::store::{Policy, Store};

fn line(ok: bool, check: &str, detail: &str) {
    let mark = if ok { "ok  " } else { "FAIL" };
    eprintln!("cachegate: {mark} {check:<12} {}", redact::redact(detail));
}

/// A probe where this directory's jobs would save: the same project and scope, so doctor
/// needs no more rights than a save.
fn probe_name(scope: Scope) -> ObjectName {
    let mut r = [0u8; 8];
    // A clock-derived fallback is unique enough for a probe that is removed right away.
    if getrandom::fill(&mut r).is_err() {
        r = (report::unix_now() ^ u64::from(std::process::id())).to_le_bytes();
    }
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let ns = crate::namespace::Namespace::resolve(None, &dir)
        .map(|n| n.segment())
        .unwrap_or_else(|_| "default".into());
    ObjectName::Probe(ns, scope, hex)
}

/// Opens the store (a bad configuration is an error: exit 2) and runs the checks: done when
/// all pass, trouble (exit 3) when the store has trouble.
pub fn run(backend: Option<&str>, transfer: &Transfer) -> anyhow::Result<Ending> {
    let spec = &crate::config::backend_spec(backend)?;
    // Doctor checks, it does not create: a directory store that is not there is reported,
    // where a job would make it on its first save.
    if let BackendSpec::Dir(path) = spec
        && !path.is_dir()
    {
        line(
            false,
            "reachable",
            &format!(
                "{} does not exist (or is not a directory); create it (mkdir -p) or point --backend at the cache directory",
                path.display()
            ),
        );
        return Ok(Ending::Trouble);
    }
    match Store::open(spec, transfer, Policy::PullPush)?.into_objects() {
        None => {
            eprintln!(
                "cachegate: ok   {:<12} runner mode stores nothing: GitLab's cache: carries the paths, so there is no store to check",
                "backend"
            );
            Ok(Ending::Done)
        }
        Some(backend) => Ok(check(&backend)),
    }
}

/// The checks, for any backend.
pub fn check(backend: &dyn Backend) -> Ending {
    let scope = Scopes::from_env().write;
    eprintln!(
        "cachegate: doctor: checking {} (writes go to scope {})",
        backend.describe(),
        scope.as_str()
    );
    warn_unsigned_protected(scope);
    let probe = probe_name(scope);
    let failed = |check: &str, detail: String| {
        line(false, check, &detail);
        eprintln!(
            "cachegate: doctor: the store has trouble; jobs will run their installs and not cache"
        );
        Ending::Trouble
    };

    // A missing object answers "not found" only when the store is up and the credentials
    // were accepted: it tells reachability and credentials apart in one cheap request.
    let start = Instant::now();
    match backend.stat(&probe) {
        Err(StoreError::NotFound) => {
            line(
                true,
                "reachable",
                &format!(
                    "the store answered in {}",
                    report::secs(start.elapsed().as_secs_f64())
                ),
            );
            line(true, "credentials", "accepted");
        }
        Ok(_) => {
            line(true, "reachable", "the store answered");
            line(true, "credentials", "accepted");
        }
        Err(StoreError::Auth(e)) => {
            line(true, "reachable", "the store answered");
            return failed(
                "credentials",
                format!("refused ({e:#}); check the access key, secret or role"),
            );
        }
        // Credentials that could not even be loaded fail before any request is sent.
        Err(StoreError::NoCredentials(e)) => {
            return failed("credentials", format!("{e:#}"));
        }
        Err(e) => return failed("reachable", format!("no: {e}")),
    }

    let mut body = format!("cachegate doctor probe {probe}\n").into_bytes();
    body.extend_from_slice(&[0u8, 255, 10, 13]);
    match backend.create_if_absent(&probe, &body) {
        Ok(()) => line(true, "write", &format!("wrote {probe}")),
        Err(e) => return failed("write", format!("cannot write {probe}: {e}")),
    }
    let read = backend.get_small(&probe);
    // Remove the probe whatever the read gave, so doctor leaves nothing behind.
    let removed = backend
        .delete(&probe)
        .and_then(|()| match backend.stat(&probe) {
            Err(StoreError::NotFound) => Ok(()),
            Ok(_) => Err(StoreError::Other(anyhow::anyhow!("it is still there"))),
            Err(e) => Err(e),
        });
    match read {
        Ok(b) if b == body => line(true, "read", "read it back intact"),
        Ok(b) => {
            return failed(
                "read",
                format!(
                    "read back {} bytes that differ from the {} written",
                    b.len(),
                    body.len()
                ),
            );
        }
        Err(e) => return failed("read", format!("cannot read {probe} back: {e}")),
    }
    match removed {
        Ok(()) => line(true, "delete", "removed it"),
        Err(e) => return failed("delete", format!("cannot remove {probe}: {e}")),
    }
    eprintln!("cachegate: doctor: all checks passed");
    Ending::Done
}

/// Any job can set `CI_COMMIT_REF_PROTECTED=true` in its own script, so the protected scope
/// keeps honest jobs apart but stops no one: only signatures do. Writing it with no trusted
/// keys means protected jobs restore whatever such a job planted.
fn warn_unsigned_protected(scope: Scope) {
    if scope != Scope::Protected {
        return;
    }
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    if !set(crate::sign::TRUSTED_KEYS_VAR) {
        report::warn(&format!(
            "jobs here write the protected scope, and {} is not set: a job that sets \
             CI_COMMIT_REF_PROTECTED=true itself can plant an entry that protected jobs restore; \
             only signed entries are trustworthy (cachegate keygen; README, Trust and safety)",
            crate::sign::TRUSTED_KEYS_VAR
        ));
    } else if !set(crate::sign::SIGNING_KEY_VAR) {
        report::warn(&format!(
            "jobs here write the protected scope with {} set but no {}: what they save is \
             unsigned, and readers that trust the keys will not restore it",
            crate::sign::TRUSTED_KEYS_VAR,
            crate::sign::SIGNING_KEY_VAR
        ));
    }
}
