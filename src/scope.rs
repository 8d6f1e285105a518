//! Trust scopes. Inside GitLab CI a job writes only its own scope and reads its own, then
//! the more trusted one; outside CI everything is `local`. A scope is a fixed path segment
//! chosen from this enum, never from a user string, so no name can reach another scope.

use crate::env_vars;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Protected,
    Unprotected,
    /// Opted into with `--scope shared`: every job of the project reads and writes it.
    Shared,
}

impl Scope {
    /// The scope an object name's segment names.
    pub fn parse(s: &str) -> Option<Scope> {
        [
            Scope::Local,
            Scope::Protected,
            Scope::Unprotected,
            Scope::Shared,
        ]
        .into_iter()
        .find(|scope| scope.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Protected => "protected",
            Scope::Unprotected => "unprotected",
            Scope::Shared => "shared",
        }
    }
}

/// How far a job's scopes reach (`--scope`). Nothing lets a job write the protected scope
/// unless GitLab says its ref is protected.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScopeMode {
    /// Protected jobs read and write `protected`; unprotected jobs write `unprotected` and
    /// read it, then `protected`; outside GitLab CI, `local`
    #[default]
    Auto,
    /// Protected jobs also restore entries unprotected jobs saved (after their own)
    ReadUnprotected,
    /// Every job, protected or not, reads and writes one `shared` scope
    Shared,
}

#[derive(Debug, Clone)]
pub struct Scopes {
    pub write: Scope,
    /// In lookup order.
    pub read: Vec<Scope>,
    /// A job on a protected ref: what it restores must be trustworthy whatever the scope.
    pub protected_job: bool,
}

impl Scopes {
    pub fn from_env() -> Scopes {
        Scopes::resolve(ScopeMode::Auto).0
    }

    /// The scopes for this job, and a line for the log when `mode` widened them (or asked
    /// for something that changes nothing here).
    pub fn resolve(mode: ScopeMode) -> (Scopes, Option<String>) {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let gitlab = var(env_vars::GITLAB_CI) == "true";
        let protected = gitlab && var(env_vars::CI_COMMIT_REF_PROTECTED) == "true";
        let auto = if !gitlab {
            // A laptop reproducing CI may read what protected jobs saved (the team's bucket,
            // read-only with --policy pull); it writes only its own scope.
            Scopes {
                write: Scope::Local,
                read: vec![Scope::Local, Scope::Protected],
                protected_job: false,
            }
        } else if protected {
            Scopes {
                write: Scope::Protected,
                read: vec![Scope::Protected],
                protected_job: true,
            }
        } else {
            Scopes {
                write: Scope::Unprotected,
                read: vec![Scope::Unprotected, Scope::Protected],
                protected_job: false,
            }
        };
        match mode {
            ScopeMode::Auto => (auto, None),
            ScopeMode::ReadUnprotected if protected => (
                Scopes {
                    write: Scope::Protected,
                    read: vec![Scope::Protected, Scope::Unprotected],
                    protected_job: true,
                },
                Some(
                    "scope widened (--scope read-unprotected): this protected job also restores entries that unprotected jobs saved"
                        .into(),
                ),
            ),
            ScopeMode::ReadUnprotected => (
                auto,
                Some(
                    "--scope read-unprotected changes nothing here: it widens only protected jobs"
                        .into(),
                ),
            ),
            ScopeMode::Shared => (
                Scopes {
                    write: Scope::Shared,
                    read: vec![Scope::Shared],
                    protected_job: protected,
                },
                Some(format!(
                    "scope widened (--scope shared): protected and unprotected jobs share one cache, so {} jobs restore what any branch saved",
                    if protected { "even protected" } else { "all" }
                )),
            ),
        }
    }
}
