//! Hostile archives restored through `cachegate ensure`. Each one is planted in a directory
//! store under a manifest with its true digest and size, so the digest check passes and the
//! extraction rules are what is tested: the install runs instead, files outside the cached
//! path keep content, mode and mtime, the existing target is untouched, no staging remains.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::scenarios::{ensure, installs};
use crate::common::tarbytes::{self, Header, Tar};
use crate::common::{ARGS, Project, stderr};

/// The install leaves an existing `out` alone, so after a rejected restore the target is
/// exactly what it was before.
fn install() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "echo run >> installs.log && if [ ! -e out ]; then mkdir -p out/sub && echo original > out/sub/f && chmod 640 out/sub/f; fi".into(),
    ]
}

/// A file's observable state: kind, content or link target, mode, mtime, link count.
type State = (String, String, u32, i64, u64);

fn snapshot(root: &Path, skip: &[PathBuf]) -> Vec<State> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == s))
    {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let body = if m.file_type().is_symlink() {
            format!("-> {}", fs::read_link(e.path()).unwrap().display())
        } else if m.is_file() {
            String::from_utf8_lossy(&fs::read(e.path()).unwrap()).into_owned()
        } else {
            "dir".into()
        };
        let rel = e.path().strip_prefix(root).unwrap().display().to_string();
        // A directory's mtime changes when an entry is added or removed in it, which must
        // not happen outside the cached path, except in the target's parent, where the
        // staging directory comes and goes by design (its listing is still compared).
        let mtime = if m.is_dir() && e.path().ends_with("project") {
            0
        } else {
            m.mtime()
        };
        out.push((rel, body, m.mode(), mtime, m.nlink()));
    }
    out
}

pub struct Site {
    pub p: Project,
}

impl Site {
    /// A project with a saved entry, a pre-existing target and sentinel files beside it,
    /// above it and in a directory elsewhere.
    pub fn new() -> Site {
        let p = Project::new();
        p.write("app.lock", "v1");
        p.test().ensure(&ARGS, &install()).run();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(981_173_106);
        for v in [
            p.path("victim"),
            p.tmp.path().join("victim"),
            p.tmp.path().join("outside/dir/victim"),
        ] {
            fs::create_dir_all(v.parent().unwrap()).unwrap();
            fs::write(&v, "do not touch").unwrap();
            fs::set_permissions(&v, fs::Permissions::from_mode(0o600)).unwrap();
            let f = fs::File::options().write(true).open(&v).unwrap();
            f.set_times(fs::FileTimes::new().set_modified(old)).unwrap();
        }
        Site { p }
    }

    fn manifest_path(&self) -> PathBuf {
        let rel = self
            .p
            .store_files()
            .into_iter()
            .find(|f| f.ends_with(".json"))
            .expect("a manifest in the store");
        self.p.store.join(rel)
    }

    /// Replace the entry's archive with `bytes`; with `fix`, the manifest gets their true
    /// size and digest (a well-formed entry with hostile content), without it the manifest
    /// keeps describing the original archive (a damaged download).
    pub fn plant(&self, bytes: &[u8], fix: bool) {
        let mpath = self.manifest_path();
        let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
        let archive = self.p.store.join(m["archive"].as_str().unwrap());
        fs::write(&archive, bytes).unwrap();
        if fix {
            m["archive_size"] = bytes.len().into();
            m["archive_blake3"] = blake3::hash(bytes).to_hex().to_string().into();
            fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        }
    }

    fn outside(&self) -> Vec<State> {
        let skip = [
            self.p.store.clone(),
            self.p.path("out"),
            self.p.path("installs.log"),
        ];
        snapshot(self.p.tmp.path(), &skip)
    }

    fn target(&self) -> Vec<State> {
        snapshot(&self.p.path("out"), &[])
    }

    /// Restore the planted entry and check it was rejected whole; returns the warning.
    pub fn rejected(&self, case: &str, extra: &[&str]) -> String {
        let outside = self.outside();
        let target = self.target();
        let runs = installs(&self.p);
        let args: Vec<&str> = ARGS.iter().chain(extra).copied().collect();
        let o = ensure(&self.p, &args, &install());
        let err = stderr(&o);
        assert!(o.status.success(), "{case}: {err}");
        assert!(err.contains("could not restore"), "{case}: {err}");
        assert_eq!(
            installs(&self.p),
            runs + 1,
            "{case}: the install must run\n{err}"
        );
        assert_eq!(
            self.outside(),
            outside,
            "{case}: something outside changed\n{err}"
        );
        assert_eq!(self.target(), target, "{case}: the target changed\n{err}");
        let staging: Vec<_> = fs::read_dir(&self.p.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".cachegate"))
            .collect();
        assert!(
            staging.is_empty(),
            "{case}: staging left behind: {staging:?}"
        );
        err
    }

    /// Plant a hostile archive with a matching manifest and expect it rejected, the
    /// warning naming `why`.
    pub fn refuses(&self, case: &str, tar: &[u8], why: &str) {
        self.refuses_with(case, &tarbytes::zst(tar), why, &[]);
    }

    pub fn refuses_with(&self, case: &str, zst: &[u8], why: &str, extra: &[&str]) {
        self.plant(zst, true);
        let err = self.rejected(case, extra);
        assert!(err.contains("entry rejected"), "{case}: {err}");
        assert!(err.contains(why), "{case}: expected {why:?} in\n{err}");
    }
}

/// A tar with the cached path's own directory entry first, then `rest`.
fn tar(rest: impl FnOnce(&mut Tar)) -> Vec<u8> {
    let mut t = Tar::new();
    t.dir("0/").file("0/ok", b"fine\n");
    rest(&mut t);
    t.finish()
}

#[test]
fn hostile_names_are_rejected_whole() {
    let s = Site::new();
    let cases: &[(&str, &[u8], &str)] = &[
        ("parent", b"0/../victim", "'..' component"),
        ("deep parent", b"0/a/../../victim", "'..' component"),
        ("bare parent", b"../victim", "outside the cached paths"),
        ("absolute", b"/tmp/victim", "is absolute"),
        ("dot", b"0/./victim", "'.' component"),
        ("double slash", b"0//victim", "'' component"),
        ("newline", b"0/vic\ntim", "control character"),
        ("carriage return", b"0/vic\rtim", "control character"),
        ("no index", b"victim", "outside the cached paths"),
        ("undeclared path", b"1/victim", "outside the cached paths"),
        (
            "leading zero index",
            b"00/victim",
            "outside the cached paths",
        ),
        ("negative index", b"-1/victim", "outside the cached paths"),
    ];
    for (case, name, why) in cases {
        let archive = tar(|t| {
            let mut h = Header::new(name, tarbytes::FILE);
            h.size = 6;
            t.entry(&h, b"pwned\n");
        });
        s.refuses(case, &archive, why);
    }
    // Names the 100-byte header field cannot carry come as GNU long names.
    let long: &[(&str, &[u8], &str)] = &[
        (
            "NUL in a long name",
            b"0/a\0/../../victim",
            "control character",
        ),
        (
            "long traversal",
            &[
                b"0/".as_slice(),
                &b"a/".repeat(60),
                &b"../".repeat(70),
                b"victim",
            ]
            .concat(),
            "'..' component",
        ),
    ];
    for (case, name, why) in long {
        let archive = tar(|t| {
            t.gnu_long(tarbytes::GNU_LONGNAME, name);
            let mut h = Header::new(b"0/innocent", tarbytes::FILE);
            h.size = 6;
            t.entry(&h, b"pwned\n");
        });
        s.refuses(case, &archive, why);
    }
    let empty = tar(|t| {
        t.entry(&Header::new(b"", tarbytes::FILE), b"");
    });
    s.refuses("empty name", &empty, "empty name");
}

#[test]
fn links_cannot_carry_writes_outside() {
    let s = Site::new();
    let victim = s.p.path("victim").display().to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "symlink then write through it",
            tar(|t| {
                t.symlink("0/up", "..").file("0/up/victim", b"pwned\n");
            }),
            "through a link",
        ),
        (
            "chained links",
            tar(|t| {
                t.symlink("0/a", ".")
                    .symlink("0/b", "a/..")
                    .symlink("0/c", "b/..")
                    .file("0/c/victim", b"pwned\n");
            }),
            "through a link",
        ),
        (
            "absolute link then a directory under it",
            tar(|t| {
                t.symlink("0/root", "/").dir("0/root/tmp/");
            }),
            "through a link",
        ),
        (
            "symlink then a directory of the same name",
            tar(|t| {
                let mut h = Header::new(b"0/d", tarbytes::DIR);
                h.mode = 0o777;
                t.symlink("0/d", "../..").entry(&h, b"");
            }),
            "appears twice",
        ),
        (
            "symlink then a file of the same name",
            tar(|t| {
                t.symlink("0/f", "../victim").file("0/f", b"pwned\n");
            }),
            "appears twice",
        ),
        (
            "the cached path itself a link",
            {
                let mut t = Tar::new();
                t.symlink("0", "../..").file("0/victim", b"pwned\n");
                t.finish()
            },
            "not a directory or file",
        ),
        (
            "hardlink to an absolute host file",
            tar(|t| {
                t.hardlink("0/h", &victim);
            }),
            "is absolute",
        ),
        (
            "hardlink escaping with ..",
            tar(|t| {
                t.hardlink("0/h", "0/../victim");
            }),
            "'..' component",
        ),
        (
            "hardlink to a path outside the archive's names",
            tar(|t| {
                t.hardlink("0/h", "victim");
            }),
            "outside the cached paths",
        ),
        (
            "hardlink to a file not yet in the archive",
            tar(|t| {
                t.hardlink("0/h", "0/later").file("0/later", b"x");
            }),
            "outside the archive's files",
        ),
        (
            "hardlink to a symlink",
            tar(|t| {
                t.symlink("0/l", "../victim").hardlink("0/h", "0/l");
            }),
            "outside the archive's files",
        ),
        (
            "hardlink to a directory",
            tar(|t| {
                t.dir("0/d/").hardlink("0/h", "0/d");
            }),
            "outside the archive's files",
        ),
        (
            "hardlink then write through it",
            tar(|t| {
                t.hardlink("0/h", "0/ok").file("0/h", b"pwned\n");
            }),
            "appears twice",
        ),
    ];
    for (case, archive, why) in &cases {
        s.refuses(case, archive, why);
    }
}

#[test]
fn devices_fifos_sparse_and_unknown_types_are_rejected() {
    let s = Site::new();
    let never = "type that caches never contain";
    for (case, kind, why) in [
        ("char device", tarbytes::CHAR_DEVICE, never),
        ("block device", tarbytes::BLOCK_DEVICE, never),
        ("fifo", tarbytes::FIFO, never),
        // The tar crate refuses sparse entries in a ustar header itself.
        ("gnu sparse", tarbytes::GNU_SPARSE, "sparse"),
        ("gnu volume header", tarbytes::GNU_VOLUME, never),
        ("unknown type", b'Z', never),
    ] {
        let archive = tar(|t| {
            t.entry(&Header::new(b"0/thing", kind), b"");
        });
        s.refuses(case, &archive, why);
    }
}

#[test]
fn pax_confusion_is_rejected() {
    let s = Site::new();
    let hidden = {
        // What a second parser would see as the next entry.
        let mut t = Tar::new();
        t.file("0/../victim", b"pwned\n");
        t.finish()[..1024].to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "PAX path overriding a safe header name into traversal",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("path", b"0/../../victim")])
                    .file("0/innocent", b"pwned\n");
            }),
            "'..' component",
        ),
        (
            "PAX path that is absolute",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("path", b"/tmp/victim")])
                    .file("0/innocent", b"pwned\n");
            }),
            "is absolute",
        ),
        (
            "PAX linkpath escaping a hardlink",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("linkpath", b"0/../victim")])
                    .hardlink("0/h", "0/ok");
            }),
            "'..' component",
        ),
        (
            "PAX size larger than the header's, swallowing the next header",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("size", b"1024")]);
                let mut h = Header::new(b"0/f", tarbytes::FILE);
                h.size = 0;
                t.entry(&h, &hidden);
            }),
            "PAX size",
        ),
        (
            "PAX size smaller than the header's, exposing a smuggled header",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("size", b"0")]);
                let mut h = Header::new(b"0/f", tarbytes::FILE);
                h.size = 1024;
                t.entry(&h, &hidden);
            }),
            "PAX size",
        ),
        (
            "PAX size that is not a number",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("size", b"12abc")]).file("0/f", b"");
            }),
            "PAX size",
        ),
        (
            "PAX value with a newline",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("path", b"0/a\n0/../../victim")])
                    .file("0/f", b"");
            }),
            "PAX",
        ),
        (
            "PAX comment with a newline",
            tar(|t| {
                t.pax(
                    tarbytes::PAX,
                    &[("comment", b"x\n30 path=0/../../victim\n")],
                )
                .file("0/f", b"");
            }),
            "PAX",
        ),
        (
            "PAX value with a carriage return",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("path", b"0/a\r")]).file("0/f", b"");
            }),
            "line break or NUL",
        ),
        (
            "PAX value with a NUL",
            tar(|t| {
                t.pax(tarbytes::PAX, &[("linkpath", b"x\0/../../victim")])
                    .symlink("0/l", "x");
            }),
            "line break or NUL",
        ),
        (
            "malformed PAX record length",
            tar(|t| {
                t.pax_raw(tarbytes::PAX, b"999 path=0/x\n").file("0/f", b"");
            }),
            "PAX",
        ),
        (
            "global PAX header",
            tar(|t| {
                t.pax(tarbytes::PAX_GLOBAL, &[("path", b"0/../victim")])
                    .file("0/f", b"");
            }),
            "global PAX header",
        ),
    ];
    for (case, archive, why) in &cases {
        s.refuses(case, archive, why);
    }
}

#[test]
fn a_workspace_symlink_as_the_target_is_never_followed() {
    let s = Site::new();
    let elsewhere = s.p.tmp.path().join("outside/dir");
    fs::remove_dir_all(s.p.path("out")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, s.p.path("out")).unwrap();
    let manifest = s.manifest_path();
    let entry = fs::read(&manifest).unwrap();
    let archive = tar(|t| {
        t.symlink("0/up", "..").file("0/up/victim", b"pwned\n");
    });
    // `rejected` snapshots the link itself as the target (walkdir does not follow it).
    s.refuses(
        "hostile archive over a symlinked target",
        &archive,
        "through a link",
    );
    assert_eq!(fs::read_link(s.p.path("out")).unwrap(), elsewhere);
    // The rejected entry is removed, and the install after it saves nothing (a symlinked
    // path is never saved, issue 19.2): the entry is put back to plant the next archive.
    fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    fs::write(&manifest, entry).unwrap();

    // A good archive replaces the link with a directory; the linked directory is untouched.
    let good = tar(|t| {
        t.file("0/new", b"restored\n");
    });
    s.plant(&tarbytes::zst(&good), true);
    let before = snapshot(&elsewhere, &[]);
    s.p.test()
        .ensure(&ARGS, &install())
        .any_status()
        .stderr_contains("cachegate: hit")
        .run();
    assert!(
        !fs::symlink_metadata(s.p.path("out"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_to_string(s.p.path("out/new")).unwrap(),
        "restored\n"
    );
    assert_eq!(snapshot(&elsewhere, &[]), before);
}

#[test]
fn setuid_setgid_sticky_and_world_writable_bits_are_stripped() {
    let s = Site::new();
    let archive = {
        let mut t = Tar::new();
        let mut root = Header::new(b"0/", tarbytes::DIR);
        root.mode = 0o1777;
        let mut sgid = Header::new(b"0/sgid/", tarbytes::DIR);
        sgid.mode = 0o2777;
        t.entry(&root, b"")
            .entry(&sgid, b"")
            .file_mode("0/suid", b"#!/bin/sh\n", 0o4755)
            .file_mode("0/sgid/bin", b"x", 0o2755)
            .file_mode("0/open", b"x", 0o777)
            .file_mode("0/big-suid", &vec![7u8; 600 << 10], 0o6777);
        t.finish()
    };
    s.plant(&tarbytes::zst(&archive), true);
    s.p.test()
        .ensure(&ARGS, &install())
        .any_status()
        .stderr_contains("cachegate: hit")
        .run();
    let mode = |rel: &str| fs::symlink_metadata(s.p.path(rel)).unwrap().mode() & 0o7777;
    assert_eq!(mode("out"), 0o775);
    assert_eq!(mode("out/sgid"), 0o775);
    assert_eq!(mode("out/suid"), 0o755);
    assert_eq!(mode("out/sgid/bin"), 0o755);
    assert_eq!(mode("out/open"), 0o775);
    assert_eq!(mode("out/big-suid"), 0o775);
}

/// zstd of `tar` with a window of 2^`log` bytes.
fn zst_window(tar: &[u8], log: u32) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.window_log(log).unwrap();
    std::io::Write::write_all(&mut e, tar).unwrap();
    e.finish().unwrap()
}

#[test]
fn bombs_and_floods_stop_at_the_limits() {
    let s = Site::new();
    // 64 MiB of zeros: a few kB compressed.
    let zeros = tar(|t| {
        t.file("0/zeros", &vec![0u8; 64 << 20]);
    });
    let bomb = tarbytes::zst(&zeros);
    assert!(bomb.len() < 64 << 10);
    s.refuses_with(
        "bytes cap",
        &bomb,
        "expands past",
        &["--max-unpacked-size", "8M"],
    );
    s.refuses_with("ratio", &bomb, "more than 2-fold", &["--max-ratio", "2"]);

    // The end-of-archive marker followed by a sea of zeros still stops at the cap.
    let mut trailing = tar(|_| {});
    trailing.resize(trailing.len() + (64 << 20), 0);
    s.refuses_with(
        "zeros after the end",
        &tarbytes::zst(&trailing),
        "expands past",
        &["--max-unpacked-size", "8M"],
    );

    s.refuses_with(
        "zeros after the end, ratio",
        &tarbytes::zst(&trailing),
        "more than 2-fold",
        &["--max-ratio", "2"],
    );

    let flood = tar(|t| {
        for i in 0..3000 {
            t.file(&format!("0/f{i}"), b"");
        }
    });
    s.refuses_with(
        "entry flood",
        &tarbytes::zst(&flood),
        "more than 1000 entries",
        &["--max-entries", "1000"],
    );

    let long_name = [b"0/".as_slice(), &b"d/".repeat(2048), b"f"].concat();
    let long = tar(|t| {
        t.gnu_long(tarbytes::GNU_LONGNAME, &long_name);
        t.file("0/short", b"x");
    });
    s.refuses("4 KiB path at the default limit", &long, "limit 4096");
    let pax_long = tar(|t| {
        t.pax(tarbytes::PAX, &[("path", &long_name)])
            .file("0/short", b"x");
    });
    s.refuses_with(
        "long PAX path",
        &tarbytes::zst(&pax_long),
        "limit 200",
        &["--max-path-length", "200"],
    );

    s.refuses_with(
        "zstd window",
        &zst_window(
            &tar(|t| {
                t.file("0/f", &vec![1u8; 1 << 20]);
            }),
            24,
        ),
        "decompress",
        &["--zstd-window-log", "20"],
    );
    s.refuses_with(
        "archive size",
        &tarbytes::zst(&tar(|_| {})),
        "over the limit of 16",
        &["--max-archive-size", "16"],
    );
}

#[test]
fn limits_take_env_twins_and_bad_values_are_usage_errors() {
    let s = Site::new();
    let flood = tar(|t| {
        for i in 0..50 {
            t.file(&format!("0/f{i}"), b"");
        }
    });
    s.plant(&tarbytes::zst(&flood), true);
    s.p.test()
        .env("CACHEGATE_MAX_ENTRIES", "10")
        .ensure(&ARGS, &install())
        .any_status()
        .stderr_contains("more than 10 entries")
        .run();
    for (flag, bad) in [
        ("--max-unpacked-size", "12X"),
        ("--max-entries", "0"),
        ("--zstd-window-log", "40"),
    ] {
        s.p.test()
            .arg("restore")
            .args(ARGS)
            .args([flag, bad])
            .status(2)
            .stderr_contains(bad)
            .run();
    }
}

fn current_archive(s: &Site) -> PathBuf {
    let rel =
        s.p.store_files()
            .into_iter()
            .find(|f| f.ends_with(".tar.zst"))
            .unwrap();
    s.p.store.join(rel)
}

#[test]
fn damaged_downloads_are_rejected_by_the_digest() {
    let s = Site::new();
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, Damage, &str); 5] = [
        (
            "truncated",
            |b| b.truncate(b.len() / 2),
            "the manifest says",
        ),
        (
            "flipped bit",
            |b| {
                let mid = b.len() / 2;
                b[mid] ^= 0x01;
            },
            "digest does not match",
        ),
        (
            "trailing bytes",
            |b| b.extend_from_slice(b"\0\0\0\0"),
            "larger than the",
        ),
        ("empty object", |b| b.clear(), "is 0 bytes"),
        (
            "an HTML page",
            |b| *b = b"<html><body>Sign in to continue</body></html>".to_vec(),
            "the manifest says",
        ),
    ];
    for (case, damage, why) in cases {
        // The manifest still describes the original archive.
        let mut bytes = fs::read(current_archive(&s)).unwrap();
        damage(&mut bytes);
        s.plant(&bytes, false);
        let err = s.rejected(case, &[]);
        assert!(err.contains(why), "{case}: expected {why:?} in\n{err}");
        assert!(err.contains("replaced"), "{case}: {err}");
    }
}

#[test]
fn a_name_a_restore_would_reject_is_never_saved() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        "mkdir -p out && echo x > 'out/line\nbreak'".to_string(),
    ];
    p.test()
        .ensure(&ARGS, &cmd)
        .stderr_contains("line break in its name")
        .run();
    assert!(
        p.store_files().iter().all(|f| !f.ends_with(".json")),
        "{:?}",
        p.store_files()
    );
}

/// Regression (fuzzer crash-35e56a3c): a GNU base-256 mtime beyond any timestamp made the
/// restore panic, which aborts the release binary mid-restore and leaves staging behind.
#[test]
fn an_mtime_past_the_end_of_time_is_rejected_not_a_crash() {
    let s = Site::new();
    let mut far = [0xffu8; 12];
    far[0] = 0x80;
    for (case, kind) in [("directory", tarbytes::DIR), ("file", tarbytes::FILE)] {
        let archive = tar(|t| {
            let mut h = Header::new(b"0/late", kind);
            h.raw_mtime = Some(far);
            t.entry(&h, b"");
        });
        s.refuses(case, &archive, "impossible mtime");
    }
}

#[path = "../fuzz/harness.rs"]
mod fuzz_harness;

/// Every fuzz seed, including each crash the fuzzer found, replayed through the fuzz
/// target's own check, so `cargo test` keeps them fixed without the nightly toolchain.
/// A panic on any thread counts: the release binary aborts on panic, mid-restore.
#[test]
fn fuzz_seeds_and_past_crashes_replay_cleanly() {
    use std::sync::{Arc, Mutex};
    let panics: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Not a failing assertion of a test running beside this one; cachegate's own code
        // may panic inside std (an overflowing time, say), so that is not filtered out.
        if !info
            .location()
            .is_some_and(|l| l.file().starts_with("tests/"))
        {
            seen.lock().unwrap().push(info.to_string());
        }
    }));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/seeds/unpack");
    let mut n = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let data = fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| fuzz_harness::run(&data));
        let found: Vec<String> = panics.lock().unwrap().drain(..).collect();
        assert!(
            r.is_ok() && found.is_empty(),
            "{} fails the fuzz check: {found:?}",
            path.display()
        );
        n += 1;
    }
    let _ = std::panic::take_hook();
    std::panic::set_hook(previous);
    assert!(n >= 10, "seeds missing from {}", dir.display());
}
