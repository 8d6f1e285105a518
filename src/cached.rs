//! The concrete paths behind the declared ones. A `--path` glob is expanded after the
//! command ran, for a save, and the matches are recorded in the manifest; a restore puts
//! back exactly what the manifest lists, once each listed path is shown to be one the
//! declared paths allow. Optional preset paths (a workspace package's `node_modules`) may
//! simply be absent.

use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};

use crate::plan::{CachePath, Plan};

pub fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn matcher(pattern: &str) -> Option<GlobMatcher> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// Check a declared glob once, at plan time, so a bad one is a usage error.
pub fn validate_glob(pattern: &str) -> Result<(), String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|_| ())
        .map_err(|e| {
            format!(
                "--path {} is not a valid glob: {e}",
                crate::echo::quoted(pattern)
            )
        })
}

/// Split a declared pattern into its literal leading directories and the rest.
fn literal_base(pattern: &str) -> (String, String) {
    let mut base = Vec::new();
    let mut parts = pattern.split('/');
    let mut rest = Vec::new();
    for part in parts.by_ref() {
        if has_glob_meta(part) {
            rest.push(part);
            break;
        }
        base.push(part);
    }
    rest.extend(parts);
    (base.join("/"), rest.join("/"))
}

/// What a glob matches now, in declared form, sorted. A match is not searched further (a
/// `node_modules` inside a matched `node_modules` is part of it), and `.git` is skipped.
pub fn expand(abs_of: &dyn Fn(&str) -> PathBuf, pattern: &str) -> Vec<String> {
    let (base, rest) = literal_base(pattern);
    let Some(m) = matcher(&rest) else {
        return Vec::new();
    };
    let root = abs_of(if base.is_empty() { "." } else { &base });
    let mut out = Vec::new();
    let mut walk = walkdir::WalkDir::new(&root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
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

fn concrete(plan: &Plan, declared: String, optional: bool) -> CachePath {
    CachePath {
        abs: plan.abs_of(&declared),
        declared,
        optional,
        glob: false,
        skip: &[],
    }
}

/// Whether anything but directories lies at or under `path` (stops at the first).
pub fn holds_files(path: &Path) -> bool {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .any(|e| !e.file_type().is_dir())
}

/// What a save archives, and the declared paths that are missing (nothing saved then).
pub fn for_save(plan: &Plan) -> (Vec<CachePath>, Vec<String>) {
    let mut paths: Vec<CachePath> = Vec::new();
    let mut missing = Vec::new();
    for p in &plan.paths {
        if p.glob {
            let found = expand(&|d| plan.abs_of(d), &p.declared);
            if found.is_empty() && !p.optional {
                missing.push(p.declared.clone());
            }
            paths.extend(found.into_iter().map(|d| concrete(plan, d, true)));
        } else if std::fs::symlink_metadata(&p.abs).is_ok() {
            paths.push(p.clone());
        } else if !p.optional {
            missing.push(p.declared.clone());
        }
    }
    // A literal path and a glob may name the same tree, or one inside the other.
    let mut kept: Vec<CachePath> = Vec::new();
    for p in paths {
        if !kept.iter().any(|k| p.abs.starts_with(&k.abs)) {
            kept.retain(|k| !k.abs.starts_with(&p.abs));
            kept.push(p);
        }
    }
    (kept, missing)
}

/// A path in declared form with no `.`, `..` or empty components.
fn clean(s: &str) -> bool {
    let body = s
        .strip_prefix("~/")
        .or_else(|| s.strip_prefix('/'))
        .unwrap_or(s);
    !body
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
}

/// The targets of a restore: the manifest's paths, each one a declared path or a match of a
/// declared glob. Anything else means the manifest is not for this plan.
pub fn for_restore(plan: &Plan, saved: &[String]) -> Result<Vec<CachePath>, String> {
    let globs: Vec<GlobMatcher> = plan
        .paths
        .iter()
        .filter(|p| p.glob)
        .filter_map(|p| matcher(&p.declared))
        .collect();
    let mut out: Vec<CachePath> = Vec::new();
    for s in saved {
        let literal = plan.paths.iter().any(|p| !p.glob && p.declared == *s);
        if !clean(s) || !(literal || globs.iter().any(|g| g.is_match(Path::new(s)))) {
            return Err(format!(
                "it lists {s:?}, which is not one of the cached paths"
            ));
        }
        let c = concrete(plan, s.clone(), !literal);
        if c.abs == plan.dir || plan.dir.starts_with(&c.abs) {
            return Err(format!("it lists {s:?}, which contains the project"));
        }
        if out
            .iter()
            .any(|o| o.abs.starts_with(&c.abs) || c.abs.starts_with(&o.abs))
        {
            return Err(format!("it lists {s:?} twice or nested"));
        }
        out.push(c);
    }
    Ok(out)
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
        assert_eq!(literal_base("a/b/*/c"), ("a/b".into(), "*/c".into()));
        assert!(validate_glob("a/[").is_err());
    }
}
