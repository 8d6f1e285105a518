//! Paths as cachegate declares, matches and walks them: the one place globs are built and
//! directory trees walked, so a `--path` glob, a `--lock` glob, a workspace pattern and a
//! preset's file-name pattern all mean the same thing, and every walk keeps the same rules
//! (links are never followed; sorted walks give the same order on every machine).

use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

use crate::env_vars;

/// A cached path: how it is declared (and keyed) and where it is on this machine.
#[derive(Debug, Clone)]
pub struct CachePath {
    pub declared: String,
    pub abs: PathBuf,
    /// May be absent after the command without a warning (a workspace package's
    /// `node_modules` when everything was hoisted).
    pub optional: bool,
    /// A `--path` glob: expanded after the command for a save, its matches recorded.
    pub glob: bool,
    /// File names never archived from this path (the preset's `skip`).
    pub skip: Names,
}

/// The user's home directory, for `~/` paths; an empty `HOME` is no home.
pub fn home() -> Option<PathBuf> {
    std::env::var_os(env_vars::HOME)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A declared path on this machine: `~/` under the home directory, the rest under `dir`.
pub fn resolve(dir: &Path, declared: &str) -> PathBuf {
    if let Some(rest) = declared.strip_prefix("~/")
        && let Some(h) = home()
    {
        return h.join(rest);
    }
    dir.join(declared)
}

pub fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// A path glob: `*` and `?` stay within one path component, `**` crosses them.
pub fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).build()
}

pub fn matcher(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    glob(pattern).map(|g| g.compile_matcher())
}

/// A declared glob split at its first component with glob characters.
#[derive(Debug, PartialEq, Eq)]
pub struct Split<'a> {
    /// The literal leading components (empty for none, `/` kept for an absolute pattern).
    pub base: Vec<&'a str>,
    /// The rest, from the first component with glob characters.
    pub rest: String,
}

/// Walking starts at the literal base, so `sub/**/*.lock` does not walk the whole tree.
pub fn split_literal(pattern: &str) -> Split<'_> {
    let mut parts = pattern.split('/');
    let mut base = Vec::new();
    let mut rest = Vec::new();
    for part in parts.by_ref() {
        if has_glob_meta(part) {
            rest.push(part);
            break;
        }
        base.push(part);
    }
    rest.extend(parts);
    Split {
        base,
        rest: rest.join("/"),
    }
}

/// File-name patterns (a preset's lock names, skip list or input files): `*` matches any
/// run of characters.
#[derive(Debug, Clone, Default)]
pub struct Names(GlobSet);

impl Names {
    /// The patterns are the presets' own constants, so a bad one is a bug.
    pub fn new(patterns: &[&str]) -> Names {
        let mut set = GlobSetBuilder::new();
        for p in patterns {
            set.add(Glob::new(p).expect("a preset's file-name pattern is a valid glob"));
        }
        Names(set.build().expect("a preset's file-name patterns build"))
    }

    pub fn is_match(&self, file_name: &str) -> bool {
        self.0.is_match(file_name)
    }
}

/// A tree walked without following links (a link is an entry, its target is not walked).
pub fn walk(root: &Path) -> walkdir::WalkDir {
    walkdir::WalkDir::new(root).follow_links(false)
}

/// As `walk`, in file-name order, so what is found or archived comes out the same everywhere.
pub fn walk_sorted(root: &Path) -> walkdir::WalkDir {
    walk(root).sort_by_file_name()
}

/// A walk of the project's own files: `.gitignore` honoured (with or without a git
/// checkout), hidden files included, links not followed, in file-name order.
pub fn walk_project(root: &Path) -> ignore::WalkBuilder {
    let mut b = ignore::WalkBuilder::new(root);
    b.hidden(false)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b));
    b
}

/// What a glob matches now, in declared form, sorted. A match is not searched further (a
/// `node_modules` inside a matched `node_modules` is part of it), and `.git` is skipped.
pub fn expand(abs_of: &dyn Fn(&str) -> PathBuf, pattern: &str) -> Vec<String> {
    let split = split_literal(pattern);
    let Ok(m) = matcher(&split.rest) else {
        return Vec::new();
    };
    let base = split.base.join("/");
    let root = abs_of(if base.is_empty() { "." } else { &base });
    let mut out = Vec::new();
    let mut walk = walk_sorted(&root).min_depth(1).into_iter();
    while let Some(e) = walk.next() {
        let Ok(e) = e else { continue };
        if e.file_name() == ".git" {
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let rel = e.path().strip_prefix(&root).expect("walk stays under root");
        if m.is_match(rel) {
            let rel = rel.to_string_lossy();
            out.push(if base.is_empty() {
                rel.into_owned()
            } else {
                format!("{base}/{rel}")
            });
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
        }
    }
    out
}

/// Whether anything but directories lies at or under `path` (stops at the first).
pub fn holds_files(path: &Path) -> bool {
    walk(path)
        .into_iter()
        .flatten()
        .any(|e| !e.file_type().is_dir())
}

/// A path under a walk's root, `/`-separated whatever the platform.
pub fn slash_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_without_descending_into_matches() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().to_path_buf();
        for p in [
            "node_modules/x/node_modules/y",
            "packages/a/node_modules/z",
            "packages/b/src",
            "packages/c/node_modules",
            ".git/node_modules",
        ] {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
        let abs = |s: &str| root.join(s);
        assert_eq!(
            expand(&abs, "packages/*/node_modules"),
            ["packages/a/node_modules", "packages/c/node_modules"]
        );
        assert_eq!(
            expand(&abs, "**/node_modules"),
            [
                "node_modules",
                "packages/a/node_modules",
                "packages/c/node_modules"
            ]
        );
        assert!(expand(&abs, "nope/*/node_modules").is_empty());
        let s = split_literal("a/b/*/c");
        assert_eq!((s.base, s.rest.as_str()), (vec!["a", "b"], "*/c"));
        let s = split_literal("/abs/x/*.lock");
        assert_eq!((s.base, s.rest.as_str()), (vec!["", "abs", "x"], "*.lock"));
        assert!(glob("a/[").is_err());
    }

    /// The hand-written matcher these replace: `*` is any run of characters, even none.
    #[test]
    fn file_name_patterns_match_as_the_presets_mean() {
        let n = Names::new(&["requirements*.txt", "*.lock", "gc.properties"]);
        for yes in [
            "requirements.txt",
            "requirements-dev.txt",
            "x.lock",
            ".lock",
            "gc.properties",
        ] {
            assert!(n.is_match(yes), "{yes}");
        }
        for no in [
            "requirements.txt.bak",
            "lock",
            "gc.properties2",
            "xgc.properties",
        ] {
            assert!(!n.is_match(no), "{no}");
        }
        assert!(!Names::default().is_match("anything"));
    }
}
