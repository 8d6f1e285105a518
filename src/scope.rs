//! Trust scopes. Inside GitLab CI a job writes only its own scope and reads its own, then
//! the more trusted one; outside CI everything is `local`. A scope is a fixed path segment
//! chosen from this enum, never from a user string, so no name can reach another scope.

use crate::env_vars;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Protected,
    Unprotected,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Protected => "protected",
            Scope::Unprotected => "unprotected",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Scopes {
    pub write: Scope,
    /// In lookup order.
    pub read: Vec<Scope>,
}

impl Scopes {
    pub fn from_env() -> Scopes {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        if var(env_vars::GITLAB_CI) != "true" {
            return Scopes {
                write: Scope::Local,
                read: vec![Scope::Local],
            };
        }
        if var(env_vars::CI_COMMIT_REF_PROTECTED) == "true" {
            Scopes {
                write: Scope::Protected,
                read: vec![Scope::Protected],
            }
        } else {
            Scopes {
                write: Scope::Unprotected,
                read: vec![Scope::Unprotected, Scope::Protected],
            }
        }
    }
}
