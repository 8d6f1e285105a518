//! Trust scopes: an unprotected job can never write where a protected job reads, whatever
//! name or key string it is given, and widening a scope is deliberate and logged.

use std::collections::HashSet;
use std::fs;
use std::process::Output;

use cachegate::entry;
use cachegate::scope::Scope;

use crate::common::project_root;
use crate::common::scenarios::installs;
use crate::common::{ARGS, Project, stderr};

pub fn install() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo run >> installs.log && mkdir -p out && echo built > out/f".into(),
    ]
}

/// `ensure` as a GitLab job on a protected or unprotected ref, with extra env.
pub fn job(p: &Project, protected: bool, env: &[(&str, &str)]) -> Output {
    p.test()
        .env("GITLAB_CI", "true")
        .env(
            "CI_COMMIT_REF_PROTECTED",
            if protected { "true" } else { "false" },
        )
        .envs(env.iter().copied())
        .ensure(&ARGS, &install())
        .any_status()
        .run()
}

pub fn project() -> Project {
    let p = Project::new();
    p.write("app.lock", "v1");
    p
}

fn fresh_out(p: &Project) {
    let _ = fs::remove_dir_all(p.path("out"));
}

#[test]
fn an_unprotected_entry_is_never_restored_by_a_protected_job() {
    let p = project();
    assert!(job(&p, false, &[]).status.success());
    assert!(
        p.store_files()
            .iter()
            .all(|f| f.starts_with(&format!("{}/unprotected/", project_root())))
    );
    fresh_out(&p);
    let o = job(&p, true, &[]);
    assert!(stderr(&o).contains("cachegate: miss"), "{}", stderr(&o));
    assert_eq!(installs(&p), 2);
    // Its own save went to the protected scope, beside the unprotected one.
    assert!(
        p.store_files()
            .iter()
            .any(|f| f.starts_with(&format!("{}/protected/", project_root())))
    );
}

#[test]
fn a_protected_entry_is_restored_by_an_unprotected_job() {
    let p = project();
    assert!(job(&p, true, &[]).status.success());
    fresh_out(&p);
    let o = job(&p, false, &[]);
    let err = stderr(&o);
    assert!(
        err.contains("cachegate: hit") && err.contains("(protected)"),
        "{err}"
    );
    assert_eq!(installs(&p), 1);
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "built\n");
}

#[test]
fn widening_is_deliberate_and_logged() {
    // A protected job that opts in to read unprotected entries after its own.
    let p = project();
    assert!(job(&p, false, &[]).status.success());
    fresh_out(&p);
    let o = job(&p, true, &[("CACHEGATE_SCOPE", "read-unprotected")]);
    let err = stderr(&o);
    assert!(
        err.contains("cachegate: hit") && err.contains("(unprotected)"),
        "{err}"
    );
    assert!(
        err.contains("warning: scope widened (--scope read-unprotected)"),
        "{err}"
    );
    assert_eq!(installs(&p), 1);

    // On an unprotected job the option changes nothing, and says so.
    let o = job(&p, false, &[("CACHEGATE_SCOPE", "read-unprotected")]);
    assert!(
        stderr(&o).contains("changes nothing here"),
        "{}",
        stderr(&o)
    );

    // One shared scope: what an unprotected job saves, a protected job restores.
    let p = project();
    p.test()
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "false")
        .ensure(&[&["--scope", "shared"][..], &ARGS].concat(), &install())
        .any_status()
        .stderr_contains("scope widened (--scope shared)")
        .run();
    assert!(
        p.store_files()
            .iter()
            .all(|f| f.starts_with(&format!("{}/shared/", project_root())))
    );
    fresh_out(&p);
    let o = job(&p, true, &[("CACHEGATE_SCOPE", "shared")]);
    let err = stderr(&o);
    assert!(
        err.contains("cachegate: hit") && err.contains("(shared)"),
        "{err}"
    );
    assert!(
        err.contains("even protected jobs restore what any branch saved"),
        "{err}"
    );

    // Without the option a protected job does not see the shared scope.
    fresh_out(&p);
    let o = job(&p, true, &[]);
    assert!(stderr(&o).contains("cachegate: miss"), "{}", stderr(&o));

    // Writing the protected scope cannot be chosen.
    p.test()
        .args(["restore", "--scope", "protected"])
        .args(ARGS)
        .status(2)
        .stderr_contains("protected")
        .run();
}

/// Hostile cache names and key strings: the fixed ones from security.md and a
/// deterministic stream of generated ones built from the same dangerous pieces.
fn hostile_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        "k-protected",
        "k/",
        "k/./",
        "../p/k",
        "../protected/k",
        "%2e%2e%2f",
        "%2e%2e%2fprotected",
        "k ",
        " k",
        "ключ",
        "k\u{202e}detcetorp",
        "..",
        ".",
        "",
        "/",
        "v1/protected/k",
        "k\\..\\protected",
        "protected",
        "k%2fprotected",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let pieces = [
        "..",
        ".",
        "/",
        "%2e",
        "%2f",
        "%2E%2E",
        "-protected",
        "protected",
        "unprotected",
        " ",
        "\t",
        "é",
        "\u{202e}",
        "\\",
        "k",
        "%",
        "~",
        "*",
        "v1",
        "\n",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..200 {
        let mut s = String::new();
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        for _ in 0..(1 + (state >> 60) as usize) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(pieces[(state >> 33) as usize % pieces.len()]);
        }
        out.push(s);
    }
    out
}

fn unescape(seg: &str) -> String {
    // A lone `%` is the empty string; otherwise every `%` starts a `%XX` escape.
    if seg == "%" {
        return String::new();
    }
    let mut out = Vec::new();
    let mut rest = seg.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(&tail[..2]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn no_name_or_key_string_builds_an_object_in_another_scope() {
    let mut seen = HashSet::new();
    // The namespace segment is built from a validated project path, never taken as given.
    let ns = cachegate::namespace::Namespace::resolve(Some("team/app"), std::path::Path::new("/"))
        .unwrap()
        .segment();
    for s in hostile_strings() {
        for scope in [Scope::Unprotected, Scope::Local, Scope::Shared] {
            for object in [
                entry::manifest_name(&ns, scope, &s, &s),
                entry::archive_name(&ns, scope, &s, &s, &s),
                entry::entry_dir(&ns, scope, &s) + "x",
            ] {
                let parts: Vec<&str> = object.split('/').collect();
                assert_eq!(parts.len(), 5, "{s:?} -> {object:?}");
                assert_eq!(
                    parts[..3],
                    ["v2", ns.as_str(), scope.as_str()],
                    "{s:?} -> {object:?}"
                );
                for p in &parts {
                    assert!(
                        !p.is_empty() && *p != "." && *p != ".." && !p.starts_with('.'),
                        "{s:?} -> {object:?}"
                    );
                    assert!(
                        p.bytes().all(|b| b.is_ascii_graphic()),
                        "{s:?} -> {object:?}"
                    );
                }
            }
        }
        // The name's segment round-trips, so distinct names never share a directory.
        let dir = entry::entry_dir(&ns, Scope::Unprotected, &s);
        let seg = dir.split('/').nth(3).unwrap();
        assert_eq!(unescape(seg), s, "{s:?} -> {dir:?}");
        seen.insert(seg.to_string());
    }
    let distinct: HashSet<String> = hostile_strings().into_iter().collect();
    assert_eq!(seen.len(), distinct.len());
}

#[test]
fn hostile_names_and_key_values_from_an_unprotected_job_stay_in_its_scope() {
    let p = project();
    fs::create_dir_all(p.path("out")).unwrap();
    fs::write(p.path("out/f"), "x").unwrap();
    let mut saved = 0;
    for s in hostile_strings().iter().filter(|s| !s.contains('\0')) {
        // As a cache name: either refused as a usage error naming it, or saved in scope.
        let o = p
            .test()
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "false")
            .arg("save")
            .arg(format!("--name={s}"))
            .args(ARGS)
            // Either is right; the match below says which it was.
            .any_status()
            .run();
        match o.status.code() {
            Some(0) => saved += 1,
            Some(2) => assert!(stderr(&o).contains("--name"), "{s:?}: {}", stderr(&o)),
            other => panic!("{s:?}: exit {other:?}: {}", stderr(&o)),
        }
        // As the value of a key variable: always saved, always in scope.
        let o = p
            .test()
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "false")
            .env("HOSTILE", s)
            .args(["save", "--key-env", "HOSTILE"])
            .args(ARGS)
            .run();
        assert!(
            stderr(&o).contains("saved") || stderr(&o).contains("exists"),
            "{s:?}"
        );
    }
    assert!(saved > 0, "no hostile name was accepted at all");
    let files = p.store_files();
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        assert!(
            f.starts_with(&format!("{}/unprotected/", project_root())),
            "{f:?} escaped the unprotected scope"
        );
        assert_eq!(f.split('/').count(), 5, "{f:?}");
    }
    let top: Vec<_> = fs::read_dir(&p.store)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(top, ["v2"]);
    let scopes: Vec<_> = fs::read_dir(p.store.join(project_root()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(scopes, ["unprotected"]);
}

#[test]
fn a_planted_manifest_cannot_steer_ls_or_prune_into_another_scope() {
    let p = project();
    assert!(job(&p, true, &[]).status.success());
    let files = p.store_files();
    let real: serde_json::Value = serde_json::from_slice(
        &fs::read(
            p.store
                .join(files.iter().find(|f| f.ends_with(".json")).unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    // Manifests an unprotected job could write: claiming the protected scope and name,
    // pointing at the protected archive, newest or oldest, with a key that is not hex.
    let evil_dir = p.store.join(format!("{}/unprotected/evil", project_root()));
    fs::create_dir_all(&evil_dir).unwrap();
    for (i, created) in [1u64, 4_000_000_000, 4_000_000_001].iter().enumerate() {
        let mut m = real.clone();
        m["scope"] = "protected".into();
        m["created"] = (*created).into();
        // Byte 8 falls inside a character: slicing there used to panic `ls`.
        m["key"] = "aéééééééééé".into();
        fs::write(
            evil_dir.join(format!("k{i}.json")),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
    }
    let o = p.test().arg("ls").run();
    let listing = crate::common::stdout(&o);
    assert_eq!(listing.matches("unprotected").count(), 3, "{listing}");

    for rule in [["--keep", "1"], ["--older-than", "1"]] {
        p.test()
            .arg("prune")
            .args(rule)
            .stderr_contains("outside its entry")
            .run();
        for f in &files {
            assert!(
                p.store.join(f).exists(),
                "{rule:?} deleted the protected {f}"
            );
        }
    }
    fresh_out(&p);
    let o = job(&p, true, &[]);
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
}
