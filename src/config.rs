//! Where entries go: the backend a flag, the environment or the defaults name.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::backend::BackendSpec;
use crate::env_vars;

/// Where entries go when `--backend` is not given.
pub fn backend_spec(flag: Option<&str>) -> Result<BackendSpec> {
    if let Some(s) = flag.filter(|s| !s.trim().is_empty()) {
        return BackendSpec::parse(s);
    }
    // Inside GitLab CI the project's package registry needs no setup at all.
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if std::env::var(env_vars::GITLAB_CI).is_ok_and(|v| v == "true")
        && [
            env_vars::CI_API_V4_URL,
            env_vars::CI_PROJECT_ID,
            env_vars::CI_JOB_TOKEN,
        ]
        .iter()
        .all(|k| set(k))
    {
        eprintln!(
            "cachegate: no backend configured; using this project's GitLab package registry (--backend gitlab)"
        );
        return Ok(BackendSpec::Gitlab);
    }
    let base = std::env::var_os(env_vars::XDG_CACHE_HOME)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| crate::paths::home().map(|h| h.join(".cache")));
    match base {
        Some(b) => Ok(BackendSpec::Dir(b.join("cachegate"))),
        None => bail!(
            "no backend configured and neither XDG_CACHE_HOME nor HOME is set; pass --backend /abs/path or set CACHEGATE_BACKEND"
        ),
    }
}
