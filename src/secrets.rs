//! Credential files that must not end up in a cache anyone on the project can read: an
//! `.npmrc` with an auth token, `.pypirc` with a password, `.git-credentials`, `.netrc`.
//! Findings name the file and the reason, never what is in it.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Finding {
    pub path: PathBuf,
    pub why: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.why)
    }
}

/// Whether the file at `path` (a regular file) is a credential file, and why. Only files
/// with one of the known names are read at all.
pub fn check(path: &Path) -> Option<Finding> {
    let name = path.file_name()?.to_str()?;
    let why = match name {
        ".npmrc" => has_key(path, |k| {
            let k = k.rsplit(':').next().unwrap_or(k);
            matches!(k, "_authToken" | "_auth" | "_password")
        })
        .then_some("an npm auth token or password")?,
        ".pypirc" => has_key(path, |k| k == "password").then_some("a PyPI password")?,
        ".git-credentials" => non_empty(path).then_some("git credentials")?,
        ".netrc" | "_netrc" => non_empty(path).then_some("netrc logins")?,
        _ => return None,
    };
    Some(Finding {
        path: path.to_path_buf(),
        why,
    })
}

fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// An ini-style `key = value` line whose key matches and whose value is a literal: a value
/// that only names an environment variable (`${NPM_TOKEN}`) holds no secret.
fn has_key(path: &Path, key: impl Fn(&str) -> bool) -> bool {
    let Ok(text) = std::fs::read(path) else {
        return false;
    };
    String::from_utf8_lossy(&text).lines().any(|line| {
        let Some((k, v)) = line.split_once('=') else {
            return false;
        };
        let v = v.trim();
        let env_only = v.starts_with("${") && v.ends_with('}') && !v[2..].contains('$');
        key(k.trim()) && !v.is_empty() && !env_only
    })
}

/// Every credential file under `roots`, without following links.
pub fn scan(roots: &[PathBuf]) -> Vec<Finding> {
    roots
        .iter()
        .flat_map(|r| crate::paths::walk(r))
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| check(e.path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npmrc_needs_a_literal_token() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".npmrc");
        std::fs::write(&p, "//registry.npmjs.org/:_authToken=${NPM_TOKEN}\n").unwrap();
        assert!(check(&p).is_none());
        std::fs::write(
            &p,
            "registry=https://r.example\n//r.example/:_authToken=abc\n",
        )
        .unwrap();
        assert_eq!(check(&p).unwrap().why, "an npm auth token or password");
        std::fs::write(&p, "_auth = dXNlcjpwYXNz\n").unwrap();
        assert!(check(&p).is_some());
        let other = d.path().join("npmrc");
        std::fs::write(&other, "_authToken=abc\n").unwrap();
        assert!(check(&other).is_none());
    }
}
