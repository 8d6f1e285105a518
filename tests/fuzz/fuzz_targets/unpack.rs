//! Fuzz the restore path: raw bytes go through `archive::unpack` into a sandboxed
//! workspace, and whatever happens, nothing outside the two cached paths may change and
//! no staging directory may remain. A rejected archive must leave both targets as they were.
#![no_main]

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cachegate::archive::{Expected, Limits, unpack};
use libfuzzer_sys::fuzz_target;

/// Small limits keep each run fast; the limits themselves are part of what is tested.
const LIMITS: Limits = Limits {
    max_archive: 16 << 20,
    max_entries: 2_000,
    max_bytes: 8 << 20,
    max_path: 4096,
    max_ratio: 1000,
    window_log_max: 22,
};

/// What a file looked like, compared before and after: content, mode, mtime, link count
/// (a hardlink from the restored tree would raise it), link target.
fn snapshot(root: &Path) -> Vec<(PathBuf, u32, i64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for e in walk(root) {
        let m = fs::symlink_metadata(&e).unwrap();
        let body = if m.file_type().is_symlink() {
            fs::read_link(&e).unwrap().into_os_string().into_encoded_bytes()
        } else if m.is_file() {
            fs::read(&e).unwrap()
        } else {
            Vec::new()
        };
        out.push((e, m.mode(), m.mtime(), m.nlink(), body));
    }
    out
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            let mut kids: Vec<PathBuf> = fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// Recompute the checksum of every header a tar reader would visit, so the fuzzer spends
/// its time on entry contents rather than on guessing checksums.
fn fix_checksums(tar: &mut [u8]) {
    let mut off = 0;
    while off + 512 <= tar.len() {
        let h = &mut tar[off..off + 512];
        if h.iter().all(|&b| b == 0) {
            off += 512;
            continue;
        }
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        let field = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(field.as_bytes());
        let size = std::str::from_utf8(&h[124..136])
            .ok()
            .and_then(|s| u64::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok())
            .unwrap_or(0);
        let kind = h[156];
        let data = if matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') { 0 } else { size };
        off = off.saturating_add(512).saturating_add(data.div_ceil(512).saturating_mul(512) as usize);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let compressed = match mode % 3 {
        0 => rest.to_vec(),
        1 => zstd::encode_all(rest, 1).unwrap(),
        _ => {
            let mut tar = rest.to_vec();
            fix_checksums(&mut tar);
            zstd::encode_all(&tar[..], 1).unwrap()
        }
    };

    let outer = tempfile::tempdir().unwrap();
    let outside = outer.path().join("outside");
    let ws = outer.path().join("ws");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("secret"), "keep me").unwrap();
    fs::write(outside.join("dir/file"), "keep me too").unwrap();
    fs::create_dir_all(ws.join("a/sub")).unwrap();
    fs::write(ws.join("a/sub/old"), "previous tree").unwrap();
    // A workspace symlink as a cached path: it must be replaced, never written through.
    std::os::unix::fs::symlink("../outside", ws.join("b")).unwrap();
    let before_outside = snapshot(&outside);
    let before_a = snapshot(&ws.join("a"));

    let expected = Expected {
        digest: blake3::hash(&compressed).to_hex().to_string(),
        size: compressed.len() as u64,
    };
    let targets = [ws.join("a"), ws.join("b")];
    let result = unpack(Box::new(Cursor::new(compressed)), &targets, &expected, LIMITS);

    assert_eq!(names(outer.path()), ["outside", "ws"], "something was created beside the workspace");
    assert_eq!(names(&ws), ["a", "b"], "staging left behind or a stray entry in the workspace");
    assert_eq!(snapshot(&outside), before_outside, "a file outside the cached paths changed");
    match result {
        Ok(_) => {
            for t in &targets {
                let m = fs::symlink_metadata(t).unwrap();
                assert!(!m.file_type().is_symlink(), "{} was restored as a symlink", t.display());
            }
        }
        Err(_) => {
            assert_eq!(snapshot(&ws.join("a")), before_a, "a rejected archive changed the target");
            assert_eq!(fs::read_link(ws.join("b")).unwrap(), Path::new("../outside"));
        }
    }
});
