//! Project namespaces: entries live under the project they belong to, so one bucket or
//! directory serves many projects without `explain` or a warm start reaching across them.
//! The project is `--namespace` when given, else `CI_PROJECT_PATH` inside GitLab CI, else the
//! path of the git `origin` remote (so a laptop clone finds what CI saved), else the
//! directory's name.

use std::path::Path;

use anyhow::{Result, bail};

use crate::env_vars;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The project as people know it (`group/project`), lowercased.
    pub name: String,
    /// Where it came from, for the log.
    pub source: &'static str,
}

impl Namespace {
    /// Decide this job's namespace.
    pub fn resolve(flag: Option<&str>, dir: &Path) -> Result<Namespace> {
        if let Some(f) = flag.filter(|f| !f.trim().is_empty()) {
            return Ok(Namespace {
                name: validate(f)?,
                source: "--namespace",
            });
        }
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if var(env_vars::GITLAB_CI).as_deref() == Some("true")
            && let Some(path) = var(env_vars::CI_PROJECT_PATH)
            && let Ok(name) = validate(&path)
        {
            return Ok(Namespace {
                name,
                source: env_vars::CI_PROJECT_PATH,
            });
        }
        if let Some(name) = origin_path(dir).and_then(|p| validate(&p).ok()) {
            return Ok(Namespace {
                name,
                source: "git remote origin",
            });
        }
        let base = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        Ok(Namespace {
            name: validate(&base).unwrap_or_else(|_| "default".into()),
            source: "directory name",
        })
    }

    /// The namespace as one path segment every store accepts (`[a-z0-9-]`): readable, and
    /// made unique by a digest of the full name, so `a/b-c` and `a-b/c` never share one.
    /// `group/app (from CI_PROJECT_PATH), stored under v2/group-app-1a2b3c4d/`: what a
    /// verbose log says, so an operator can scope credentials to the segment.
    pub fn describe(&self) -> String {
        format!(
            "{} (from {}), stored under {}/{}/",
            self.name,
            self.source,
            crate::entry::LAYOUT_ROOT,
            self.segment()
        )
    }

    pub fn segment(&self) -> String {
        let mut slug = String::new();
        for c in self.name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug: String = slug.trim_matches('-').chars().take(48).collect();
        let digest = blake3::hash(self.name.as_bytes()).to_hex();
        let slug = slug.trim_end_matches('-');
        if slug.is_empty() {
            format!("ns-{}", &digest[..8])
        } else {
            format!("{slug}-{}", &digest[..8])
        }
    }
}

/// GitLab routes project paths case-insensitively, so the namespace is lowercased; a name
/// that could not be a project path is refused, naming it.
fn validate(name: &str) -> Result<String> {
    let t = name.trim().trim_matches('/');
    let ok = !t.is_empty()
        && t.len() <= 255
        && t.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || "._-+".contains(c))
        });
    if !ok {
        bail!(
            "--namespace {name:?} is not a project path; use a name like group/project (letters, digits, '.', '_', '-', parts separated by '/')"
        );
    }
    Ok(t.to_lowercase())
}

/// The project path of the `origin` remote: `https://host/group/proj.git`,
/// `git@host:group/proj.git` and `ssh://git@host:22/group/proj` all give `group/proj`,
/// what `CI_PROJECT_PATH` says for the same project. Credentials in the URL are dropped
/// with the host.
fn origin_path(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", "remote.origin.url"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    remote_path(String::from_utf8_lossy(&out.stdout).trim())
}

fn remote_path(url: &str) -> Option<String> {
    let path = if let Some((_, rest)) = url.split_once("://") {
        // scheme://[user[:pass]@]host[:port]/path
        rest.split_once('/').map(|(_, p)| p)?
    } else if let Some((host, p)) = url.split_once(':')
        && !host.contains('/')
    {
        // scp-like: [user@]host:path
        p
    } else {
        url
    };
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_give_the_project_path() {
        for (url, want) in [
            ("https://gitlab.com/group/proj.git", "group/proj"),
            (
                "https://user:s3cret@gitlab.example/group/sub/proj",
                "group/sub/proj",
            ),
            ("git@gitlab.com:group/proj.git", "group/proj"),
            (
                "ssh://git@gitlab.example:2222/group/proj.git/",
                "group/proj",
            ),
            ("/srv/git/proj.git", "srv/git/proj"),
        ] {
            assert_eq!(remote_path(url).as_deref(), Some(want), "{url}");
        }
        assert_eq!(remote_path("https://host"), None);
    }

    #[test]
    fn segments_are_safe_and_distinct() {
        let ns = |n: &str| Namespace {
            name: validate(n).unwrap(),
            source: "test",
        };
        let a = ns("Group/Sub-Proj").segment();
        assert!(a.starts_with("group-sub-proj-"), "{a}");
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{a}"
        );
        assert_ne!(ns("a/b-c").segment(), ns("a-b/c").segment());
        assert_eq!(ns("A/B").segment(), ns("a/b").segment());
        assert!(ns("ü/ö").segment().starts_with("ns-"));
    }

    #[test]
    fn bad_names_are_refused_naming_them() {
        for bad in ["", "a//b", "../x", "a/./b", "a b", "x\ny"] {
            if bad.trim().is_empty() {
                continue;
            }
            let e = validate(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn flag_wins_and_directory_name_is_the_last_resort() {
        let d = tempfile::tempdir().unwrap();
        let proj = d.path().join("My.Project");
        std::fs::create_dir(&proj).unwrap();
        let n = Namespace::resolve(Some("grp/parent"), &proj).unwrap();
        assert_eq!((n.name.as_str(), n.source), ("grp/parent", "--namespace"));
        let n = Namespace::resolve(None, &proj).unwrap();
        if n.source == "directory name" {
            assert_eq!(n.name, "my.project");
        }
    }
}
