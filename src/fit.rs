//! Whether a restored tree fits this project and this machine, checked before it is swapped
//! in: it must not replace files the repository tracks, and the links that leave it (a
//! venv's `bin/python -> /usr/bin/python3.12`, a workspace link `node_modules/a ->
//! ../packages/a`) must resolve here as they did when the entry was saved.

use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// Most outside links one manifest records; a tree with more is still saved, only the
/// first ones are checked on restore.
const MAX_LINKS: usize = 20_000;

/// A symlink that leaves its cached tree and resolved when the entry was saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutsideLink {
    /// `<index of the cached path>/<path inside it>`, as in the archive.
    pub path: String,
    pub target: String,
}

/// Remove `.` and resolve `..` lexically; `None` when `..` climbs above `base`'s root.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where a link at `root/rel` pointing at `target` ends up, lexically.
fn destination(root: &Path, rel: &Path, target: &Path) -> PathBuf {
    if target.is_absolute() {
        return lexical(target);
    }
    let at = root.join(rel);
    lexical(&at.parent().unwrap_or(root).join(target))
}

/// Record a link found while saving the tree at `root`, if it leaves the tree and resolves.
pub fn note_link(
    links: &mut Vec<OutsideLink>,
    index: usize,
    root: &Path,
    rel: &Path,
    target: &Path,
) {
    if links.len() >= MAX_LINKS || destination(root, rel, target).starts_with(root) {
        return;
    }
    if std::fs::metadata(root.join(rel)).is_err() {
        // Dangling already where it was built: nothing a restore could be blamed for.
        return;
    }
    links.push(OutsideLink {
        path: format!("{index}/{}", rel.display()),
        target: target.display().to_string(),
    });
}

/// Check staged trees (one per target, manifest order) before the swap. The error names
/// the first thing that does not fit, for the warning.
pub fn check(
    staged: &[PathBuf],
    targets: &[PathBuf],
    names: &[String],
    links: &[OutsideLink],
) -> Result<(), String> {
    // Where a path will be once swapped in, read from where it is staged now.
    let here = |p: &Path| -> PathBuf {
        for (s, t) in staged.iter().zip(targets) {
            if let Ok(rest) = p.strip_prefix(t) {
                return s.join(rest);
            }
        }
        p.to_path_buf()
    };
    for l in links {
        let Some((index, rel)) = l.path.split_once('/') else {
            continue;
        };
        let Some(i) = index.parse::<usize>().ok().filter(|i| *i < targets.len()) else {
            continue;
        };
        let dest = destination(&targets[i], Path::new(rel), Path::new(&l.target));
        if std::fs::metadata(here(&dest)).is_err() {
            return Err(format!(
                "the link {}/{rel} -> {} is dangling on this machine",
                names.get(i).map_or("?", |n| n.as_str()),
                l.target
            ));
        }
    }
    for (i, s) in staged.iter().enumerate() {
        let mut cfgs = vec![s.join("pyvenv.cfg")];
        // A directory of virtualenvs (poetry's virtualenvs.path, pipenv's WORKON_HOME).
        if let Ok(d) = std::fs::read_dir(s) {
            cfgs.extend(d.flatten().map(|e| e.path().join("pyvenv.cfg")));
        }
        for cfg in cfgs {
            let Ok(text) = std::fs::read_to_string(&cfg) else {
                continue;
            };
            let home = text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "home").then(|| v.trim().to_string())
            });
            if let Some(home) = home
                && !Path::new(&home).is_dir()
            {
                let inside = cfg.strip_prefix(s).unwrap_or(&cfg);
                return Err(format!(
                    "{}/{} names the interpreter home {home}, which does not exist on this machine",
                    names.get(i).map_or("?", |n| n.as_str()),
                    inside.display()
                ));
            }
        }
    }
    Ok(())
}

/// Files git tracks under `targets` (inside the work tree of `dir`), relative to `dir`.
/// Not a git checkout, or no git: nothing to protect that git knows of.
pub fn tracked(dir: &Path, targets: &[PathBuf]) -> Vec<String> {
    if !dir.ancestors().any(|a| a.join(".git").exists()) {
        return Vec::new();
    }
    let specs: Vec<&Path> = targets
        .iter()
        .filter_map(|t| t.strip_prefix(dir).ok())
        .filter(|r| !r.as_os_str().is_empty())
        .collect();
    if specs.is_empty() {
        return Vec::new();
    }
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["ls-files", "-z", "--"])
        .args(&specs)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => o
            .stdout
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_leaving_the_tree_are_noted_when_they_resolve() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("nm");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(d.path().join("pkg")).unwrap();
        let mut links = Vec::new();
        for (rel, target) in [
            ("sub/inside", "../sub"),
            ("out", "../pkg"),
            ("abs", "/"),
            ("gone", "../missing"),
        ] {
            symlink(target, root.join(rel)).unwrap();
            note_link(&mut links, 1, &root, Path::new(rel), Path::new(target));
        }
        let got: Vec<_> = links.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(got, ["1/out", "1/abs"]);
    }

    #[test]
    fn a_dangling_interpreter_does_not_fit() {
        let d = tempfile::tempdir().unwrap();
        let staged = d.path().join("stage");
        let target = d.path().join("proj/.venv");
        std::fs::create_dir_all(staged.join("bin")).unwrap();
        let links = vec![OutsideLink {
            path: "0/bin/python".into(),
            target: d.path().join("interp/python3").display().to_string(),
        }];
        let names = vec![".venv".to_string()];
        let (staged, target) = (vec![staged], vec![target]);
        let e = check(&staged, &target, &names, &links).unwrap_err();
        assert!(
            e.contains(".venv/bin/python -> ") && e.contains("dangling"),
            "{e}"
        );
        std::fs::create_dir_all(d.path().join("interp")).unwrap();
        std::fs::write(d.path().join("interp/python3"), "").unwrap();
        check(&staged, &target, &names, &links).unwrap();

        std::fs::write(staged[0].join("pyvenv.cfg"), "home = /nonexistent/bin\n").unwrap();
        let e = check(&staged, &target, &names, &links).unwrap_err();
        assert!(e.contains("/nonexistent/bin"), "{e}");
    }

    #[test]
    fn links_into_another_cached_path_are_checked_in_its_staged_tree() {
        let d = tempfile::tempdir().unwrap();
        let (s0, s1) = (d.path().join("s0"), d.path().join("s1"));
        std::fs::create_dir_all(s0.join(".pnpm/lodash")).unwrap();
        std::fs::create_dir_all(&s1).unwrap();
        let targets = [
            d.path().join("p/node_modules"),
            d.path().join("p/packages/a/node_modules"),
        ];
        let names = ["node_modules".to_string(), "packages/a/node_modules".into()];
        let link = |t: &str| OutsideLink {
            path: "1/lodash".into(),
            target: t.into(),
        };
        let ok = [link("../../../node_modules/.pnpm/lodash")];
        check(&[s0.clone(), s1.clone()], &targets, &names, &ok).unwrap();
        let bad = [link("../../../node_modules/.pnpm/nope")];
        assert!(check(&[s0, s1], &targets, &names, &bad).is_err());
    }

    #[test]
    fn tracked_files_under_a_target_are_found() {
        if Command::new("git").arg("--version").output().is_err() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let git = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::create_dir_all(dir.join(".cargo/registry")).unwrap();
        std::fs::write(dir.join(".cargo/config.toml"), "").unwrap();
        std::fs::write(dir.join(".cargo/registry/x"), "").unwrap();
        git(&["add", ".cargo/config.toml"]);
        assert!(tracked(dir, &[dir.join(".cargo/registry")]).is_empty());
        assert_eq!(tracked(dir, &[dir.join(".cargo")]), [".cargo/config.toml"]);
        let plain = tempfile::tempdir().unwrap();
        assert!(tracked(plain.path(), &[plain.path().join("x")]).is_empty());
    }
}
