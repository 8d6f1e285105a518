//! Signed entries (a reader with trusted keys restores a protected entry only when a
//! trusted key signed it) and credential files (warned about, or refused, on save).

use std::fs;
use std::process::Output;

use crate::common::ARGS;
use crate::common::scenarios::installs;
use crate::common::{Project, assert_no_secrets, stderr, stdout};
use crate::scopes::project;

struct Keys {
    public: String,
    secret: String,
}

fn keygen(p: &Project) -> Keys {
    let o = p.test().arg("keygen").run();
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("cachegate-ed25519:"), "{out}");
    assert!(lines[1].starts_with("cachegate-ed25519-secret:"), "{out}");
    // GitLab can mask it: one line of base64 characters plus ':'.
    assert!(
        lines[1]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=:-".contains(&b))
    );
    assert!(!stderr(&o).contains(lines[1]));
    Keys {
        public: lines[0].into(),
        secret: lines[1].into(),
    }
}

/// `ensure` as a GitLab job at the most verbose level; the signing key never shows.
fn job(p: &Project, protected: bool, env: &[(&str, &str)]) -> Output {
    let mut env = env.to_vec();
    env.push(("CACHEGATE_VERBOSE", "3"));
    let o = crate::scopes::job(p, protected, &env);
    let secrets: Vec<String> = env
        .iter()
        .filter(|(k, _)| *k == "CACHEGATE_SIGNING_KEY")
        .flat_map(|(_, v)| [v.to_string(), v.split_once(':').unwrap().1.to_string()])
        .collect();
    assert_no_secrets(&o, &secrets);
    o
}

fn file_ending(p: &Project, suffix: &str) -> std::path::PathBuf {
    p.store.join(
        p.store_files()
            .into_iter()
            .find(|f| f.ends_with(suffix))
            .unwrap(),
    )
}

fn manifest(p: &Project) -> serde_json::Value {
    serde_json::from_slice(&fs::read(file_ending(p, ".json")).unwrap()).unwrap()
}

fn set_manifest(p: &Project, m: &serde_json::Value) {
    fs::write(
        file_ending(p, ".json"),
        serde_json::to_vec_pretty(m).unwrap(),
    )
    .unwrap();
}

/// A reader with trusted keys misses, saying `why`, and runs the install.
fn misses(p: &Project, protected: bool, trusted: &str, why: &str) {
    let _ = fs::remove_dir_all(p.path("out"));
    let runs = installs(p);
    let o = job(p, protected, &[("CACHEGATE_TRUSTED_KEYS", trusted)]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("cachegate: miss"), "{why}: {err}");
    assert!(err.contains(why), "expected {why:?} in\n{err}");
    assert_eq!(installs(p), runs + 1, "{why}");
}

fn hits(p: &Project, protected: bool, trusted: &str) {
    let _ = fs::remove_dir_all(p.path("out"));
    let runs = installs(p);
    let o = job(p, protected, &[("CACHEGATE_TRUSTED_KEYS", trusted)]);
    assert!(stderr(&o).contains("cachegate: hit"), "{}", stderr(&o));
    assert_eq!(installs(p), runs);
}

/// A project with an entry saved by a protected job holding `keys`' signing key.
fn signed(keys: &Keys) -> Project {
    let p = project();
    let o = job(&p, true, &[("CACHEGATE_SIGNING_KEY", &keys.secret)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(manifest(&p)["signature"].as_str().is_some());
    p
}

#[test]
fn a_properly_signed_entry_is_a_hit_for_protected_and_unprotected_readers() {
    let keys = keygen(&project());
    let other = keygen(&project());
    let p = signed(&keys);
    hits(&p, true, &keys.public);
    // Several trusted keys, separated by commas, spaces or newlines.
    hits(&p, false, &format!("{}, \n{}", other.public, keys.public));
}

#[test]
fn tampering_untrusted_keys_and_unsigned_entries_are_misses_with_a_reason() {
    let keys = keygen(&project());
    let attacker = keygen(&project());

    // The archive swapped, the manifest left alone: the digest catches it.
    let p = signed(&keys);
    let archive = file_ending(&p, ".tar.zst");
    let mut bytes = fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&archive, &bytes).unwrap();
    misses(&p, false, &keys.public, "digest does not match");

    // The archive swapped and the manifest's digest updated to match: the signature
    // catches it.
    let p = signed(&keys);
    let archive = file_ending(&p, ".tar.zst");
    let evil = zstd::encode_all(&b"not the real thing"[..], 3).unwrap();
    fs::write(&archive, &evil).unwrap();
    let mut m = manifest(&p);
    m["archive_size"] = evil.len().into();
    m["archive_blake3"] = blake3::hash(&evil).to_hex().to_string().into();
    set_manifest(&p, &m);
    misses(
        &p,
        false,
        &keys.public,
        "signature does not match its contents",
    );

    // Another signed field altered.
    let p = signed(&keys);
    let mut m = manifest(&p);
    m["paths"] = serde_json::json!(["elsewhere"]);
    set_manifest(&p, &m);
    misses(
        &p,
        false,
        &keys.public,
        "signature does not match its contents",
    );

    // Signed by a key nobody trusts (an attacker's own key): named in the warning.
    let p = project();
    job(&p, true, &[("CACHEGATE_SIGNING_KEY", &attacker.secret)]);
    misses(
        &p,
        false,
        &keys.public,
        &format!(
            "signed by {}, which is not in CACHEGATE_TRUSTED_KEYS",
            attacker.public
        ),
    );

    // Garbage in the signature field.
    let p = signed(&keys);
    let mut m = manifest(&p);
    m["signature"] = "ed25519:AAAA:BBBB".into();
    set_manifest(&p, &m);
    misses(&p, false, &keys.public, "signature is malformed");

    // Unsigned: a protected reader misses, removes it (it may write there) and saves
    // its own; the next protected reader hits the new, signed entry.
    let p = project();
    job(&p, true, &[]);
    misses(&p, false, &keys.public, "it is not signed");
    let _ = fs::remove_dir_all(p.path("out"));
    let o = job(
        &p,
        true,
        &[
            ("CACHEGATE_TRUSTED_KEYS", &keys.public),
            ("CACHEGATE_SIGNING_KEY", &keys.secret),
        ],
    );
    assert!(stderr(&o).contains("it is not signed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("saved"), "{}", stderr(&o));
    hits(&p, true, &keys.public);
}

#[test]
fn range_digests_are_signed_apart_and_altering_them_is_a_miss() {
    let keys = keygen(&project());
    let p = project();
    // 3 MB that do not compress, in 1 MB ranges: the manifest has a digest per range.
    let args = [&ARGS[..], &["--chunk-size", "1M"]].concat();
    let run = |env: &[(&str, &str)]| {
        let _ = fs::remove_dir_all(p.path("out"));
        let o = p
            .test()
            .env("GITLAB_CI", "true")
            .env("CI_COMMIT_REF_PROTECTED", "true")
            .envs(env.iter().copied())
            .ensure(
                &args,
                &crate::common::tree_cmd("mkdir -p out && head -c 3000000 /dev/urandom > out/blob"),
            )
            .any_status()
            .run();
        stderr(&o)
    };
    run(&[("CACHEGATE_SIGNING_KEY", &keys.secret)]);
    let m = manifest(&p);
    assert!(m["chunks"]["signature"].as_str().is_some(), "{m}");
    let err = run(&[("CACHEGATE_TRUSTED_KEYS", &keys.public)]);
    assert!(err.contains("cachegate: hit"), "{err}");

    // Other digests with the manifest's own signature intact: they could steer which
    // ranges are judged damaged, so the entry is not trusted.
    let mut altered = m.clone();
    let digests = m["chunks"]["blake3"].as_str().unwrap();
    altered["chunks"]["blake3"] = format!("AAAA{}", &digests[4..]).into();
    set_manifest(&p, &altered);
    let err = run(&[("CACHEGATE_TRUSTED_KEYS", &keys.public)]);
    assert!(
        err.contains("its range digests are not signed by the key that signed it"),
        "{err}"
    );

    // Without them it is an entry as cachegate wrote it before range digests: trusted.
    let mut old = m.clone();
    old.as_object_mut().unwrap().remove("chunks");
    set_manifest(&p, &old);
    let err = run(&[("CACHEGATE_TRUSTED_KEYS", &keys.public)]);
    assert!(err.contains("cachegate: hit"), "{err}");
}

#[test]
fn unprotected_entries_need_no_signature_for_unprotected_readers() {
    let keys = keygen(&project());
    let p = project();
    job(&p, false, &[]);
    hits(&p, false, &keys.public);
    // A protected job that widened to read them still requires a signature.
    let _ = fs::remove_dir_all(p.path("out"));
    let o = job(
        &p,
        true,
        &[
            ("CACHEGATE_TRUSTED_KEYS", &keys.public),
            ("CACHEGATE_SCOPE", "read-unprotected"),
        ],
    );
    assert!(stderr(&o).contains("it is not signed"), "{}", stderr(&o));

    // So does a protected job sharing one scope with every branch.
    let p = project();
    job(&p, false, &[("CACHEGATE_SCOPE", "shared")]);
    let _ = fs::remove_dir_all(p.path("out"));
    let o = job(
        &p,
        true,
        &[
            ("CACHEGATE_TRUSTED_KEYS", &keys.public),
            ("CACHEGATE_SCOPE", "shared"),
        ],
    );
    assert!(stderr(&o).contains("it is not signed"), "{}", stderr(&o));
    assert!(stderr(&o).contains("cachegate: miss"), "{}", stderr(&o));
}

#[test]
fn bad_keys_are_usage_errors_that_never_echo_a_secret() {
    let p = project();
    let keys = keygen(&p);
    let bad_secret = "cachegate-ed25519-secret:c2VjcmV0LXZhbHVlLW5vdC1hLWtleQ==";
    let o = job(&p, true, &[("CACHEGATE_SIGNING_KEY", bad_secret)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("CACHEGATE_SIGNING_KEY"),
        "{}",
        stderr(&o)
    );
    assert_eq!(installs(&p), 0);

    let o = job(
        &p,
        true,
        &[("CACHEGATE_TRUSTED_KEYS", "cachegate-ed25519:short")],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("\"cachegate-ed25519:short\""),
        "{}",
        stderr(&o)
    );

    // The secret line pasted where the public one belongs: refused, and not echoed.
    let o = job(&p, true, &[("CACHEGATE_TRUSTED_KEYS", &keys.secret)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!stderr(&o).contains(&keys.secret), "{}", stderr(&o));
}

#[test]
fn credential_files_are_named_on_save_and_refused_when_asked() {
    let cases = [
        (
            ".npmrc",
            "//registry.npmjs.org/:_authToken=npm_s3cr3tTok3nValue\n",
            "npm_s3cr3t",
        ),
        (".npmrc", "_password=aHVudGVyMg==\n", "aHVudGVy"),
        (
            ".pypirc",
            "[pypi]\nusername = __token__\npassword = pypi-s3cr3tTok3nValue\n",
            "pypi-s3cr3t",
        ),
        (
            ".git-credentials",
            "https://user:s3cr3tTok3nValue@example.com\n",
            "s3cr3t",
        ),
        (
            ".netrc",
            "machine example.com login me password s3cr3tTok3nValue\n",
            "s3cr3t",
        ),
    ];
    for (file, content, secret_part) in cases {
        // The install copies it from outside, so the command line does not carry it.
        let make = format!(
            "echo run >> installs.log && mkdir -p out/sub && cp ../credential out/sub/{file}"
        );
        let cmd = vec!["sh".to_string(), "-c".to_string(), make];

        // Warned about, naming the file, never its contents.
        let p = project();
        fs::write(p.tmp.path().join("credential"), content).unwrap();
        p.test()
            .ensure(&ARGS, &cmd)
            .stderr_contains(&format!("out/sub/{file}"))
            .stderr_contains("credential")
            // Never the contents.
            .stderr_lacks(secret_part)
            .run();
        assert!(
            p.store_files().iter().any(|f| f.ends_with(".json")),
            "{file}: not saved"
        );

        // Refused: the job stays green, nothing is saved, the warning says why.
        let p = project();
        fs::write(p.tmp.path().join("credential"), content).unwrap();
        p.test()
            .env("CACHEGATE_REFUSE_SECRETS", "true")
            .ensure(&ARGS, &cmd)
            .stderr_contains("nothing saved (--refuse-secrets)")
            .stderr_contains(file)
            .stderr_lacks(secret_part)
            .run();
        assert!(p.store_files().is_empty(), "{file}: {:?}", p.store_files());
    }

    // An .npmrc that only names a variable holds no secret.
    let p = project();
    let mut args = vec!["--refuse-secrets"];
    args.extend(ARGS);
    p.test()
        .ensure(
            &args,
            &[
                "sh",
                "-c",
                "mkdir -p out && echo '//registry.npmjs.org/:_authToken=${NPM_TOKEN}' > out/.npmrc",
            ],
        )
        .any_status()
        .stderr_lacks("credential")
        .run();
    assert!(!p.store_files().is_empty());
}
