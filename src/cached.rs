//! The concrete paths behind the declared ones. A `--path` glob is expanded after the
//! command ran, for a save, and the matches are recorded in the manifest; a restore puts
//! back exactly what the manifest lists, once each listed path is shown to be one the
//! declared paths allow. Optional preset paths (a workspace package's `node_modules`) may
//! simply be absent.

use std::path::{Path, PathBuf};

use globset::GlobMatcher;

use crate::paths::{self, CachePath, Names};

fn concrete(dir: &Path, declared: String, optional: bool) -> CachePath {
    CachePath {
        abs: paths::resolve(dir, &declared),
        declared,
        optional,
        glob: false,
        skip: Names::default(),
    }
}

/// What a save archives.
#[derive(Debug)]
pub struct ToSave {
    pub paths: Vec<CachePath>,
    /// The declared paths that are missing (nothing is saved then).
    pub missing: Vec<String>,
}

/// What a save of the declared paths of the project at `dir` archives.
pub fn for_save(dir: &Path, declared: &[CachePath]) -> ToSave {
    let abs_of = |d: &str| -> PathBuf { paths::resolve(dir, d) };
    let mut found_paths: Vec<CachePath> = Vec::new();
    let mut missing = Vec::new();
    for p in declared {
        if p.glob {
            let found = paths::expand(&abs_of, &p.declared);
            if found.is_empty() && !p.optional {
                missing.push(p.declared.clone());
            }
            found_paths.extend(found.into_iter().map(|d| concrete(dir, d, true)));
        } else if std::fs::symlink_metadata(&p.abs).is_ok() {
            found_paths.push(p.clone());
        } else if !p.optional {
            missing.push(p.declared.clone());
        }
    }
    // A literal path and a glob may name the same tree, or one inside the other.
    let mut kept: Vec<CachePath> = Vec::new();
    for p in found_paths {
        if !kept.iter().any(|k| p.abs.starts_with(&k.abs)) {
            kept.retain(|k| !k.abs.starts_with(&p.abs));
            kept.push(p);
        }
    }
    ToSave {
        paths: kept,
        missing,
    }
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
pub fn for_restore(
    dir: &Path,
    declared: &[CachePath],
    saved: &[String],
) -> Result<Vec<CachePath>, String> {
    let globs: Vec<GlobMatcher> = declared
        .iter()
        .filter(|p| p.glob)
        .filter_map(|p| paths::matcher(&p.declared).ok())
        .collect();
    let mut out: Vec<CachePath> = Vec::new();
    for s in saved {
        let literal = declared.iter().any(|p| !p.glob && p.declared == *s);
        if !clean(s) || !(literal || globs.iter().any(|g| g.is_match(Path::new(s)))) {
            return Err(format!(
                "it lists {s:?}, which is not one of the cached paths"
            ));
        }
        let c = concrete(dir, s.clone(), !literal);
        if c.abs == dir || dir.starts_with(&c.abs) {
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
