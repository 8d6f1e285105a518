//! What a lock file's name says about where its tool installs, so
//! `cachegate ensure --lock poetry.lock -- poetry install` needs no `--path`.

/// How a preset's environment variable gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvValue {
    Literal(&'static str),
    /// The absolute path of the preset's first cache path (tools that insist on absolute paths).
    AbsPath,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub paths: &'static [&'static str],
    pub env: &'static [(&'static str, EnvValue)],
    /// The cached tree embeds its own absolute location (Python virtualenvs), so it only
    /// works where it was built; the key then includes that location.
    pub relocatable: bool,
}

use EnvValue::{AbsPath, Literal};

const PRESETS: &[(&str, Preset)] = &[
    (
        "poetry.lock",
        Preset {
            name: "poetry",
            paths: &[".venv"],
            env: &[("POETRY_VIRTUALENVS_IN_PROJECT", Literal("true"))],
            relocatable: false,
        },
    ),
    (
        "uv.lock",
        Preset {
            name: "uv",
            paths: &[".venv"],
            env: &[("UV_PROJECT_ENVIRONMENT", Literal(".venv"))],
            relocatable: false,
        },
    ),
    (
        "Pipfile.lock",
        Preset {
            name: "pipenv",
            paths: &[".venv"],
            env: &[("PIPENV_VENV_IN_PROJECT", Literal("1"))],
            relocatable: false,
        },
    ),
    (
        "requirements*.txt",
        Preset {
            name: "pip",
            paths: &[".venv"],
            env: &[],
            relocatable: false,
        },
    ),
    (
        "package-lock.json",
        Preset {
            name: "npm",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "npm-shrinkwrap.json",
        Preset {
            name: "npm",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "yarn.lock",
        Preset {
            name: "yarn",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "pnpm-lock.yaml",
        Preset {
            name: "pnpm",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "bun.lock",
        Preset {
            name: "bun",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "bun.lockb",
        Preset {
            name: "bun",
            paths: &["node_modules"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "Gemfile.lock",
        Preset {
            name: "bundler",
            paths: &["vendor/bundle"],
            env: &[("BUNDLE_PATH", Literal("vendor/bundle"))],
            relocatable: true,
        },
    ),
    (
        "composer.lock",
        Preset {
            name: "composer",
            paths: &["vendor"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "go.sum",
        Preset {
            name: "go",
            paths: &[".go/pkg/mod"],
            env: &[("GOMODCACHE", AbsPath), ("GOFLAGS", Literal("-modcacherw"))],
            relocatable: true,
        },
    ),
    (
        "Cargo.lock",
        Preset {
            name: "cargo",
            paths: &[".cargo"],
            env: &[("CARGO_HOME", AbsPath)],
            relocatable: true,
        },
    ),
    (
        "mix.lock",
        Preset {
            name: "mix",
            paths: &["deps"],
            env: &[],
            relocatable: true,
        },
    ),
    (
        "packages.lock.json",
        Preset {
            name: "nuget",
            paths: &[".nuget/packages"],
            env: &[("NUGET_PACKAGES", AbsPath)],
            relocatable: true,
        },
    ),
];

/// The preset for a lock file, judged by its file name alone.
pub fn for_lock_file(file_name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|(pattern, _)| matches(pattern, file_name))
        .map(|(_, p)| p)
}

/// The lock file names presets know, for error messages.
pub fn known_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(p, _)| *p).collect()
}

/// Whether a path a user named looks like a Python virtualenv, which cannot be moved.
pub fn looks_like_venv(path: &str) -> bool {
    let base = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path);
    matches!(base, ".venv" | "venv" | ".virtualenv" | "virtualenv")
}

/// Why a warm start would be wasted on this command: it deletes the cached tree before
/// installing (`npm ci` removes `node_modules` first), so restoring one only costs time.
pub fn discards_tree(command: &[String]) -> Option<String> {
    let tool = command.first()?.rsplit('/').next()?;
    let sub = command[1..].iter().find(|a| !a.starts_with('-'))?;
    match (tool, sub.as_str()) {
        ("npm", "ci" | "clean-install" | "ic" | "install-clean" | "isntall-clean") => Some(
            format!("`npm {sub}` deletes node_modules before it installs"),
        ),
        _ => None,
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_names_pick_presets() {
        let cases = [
            ("poetry.lock", "poetry", ".venv"),
            ("requirements.txt", "pip", ".venv"),
            ("requirements-dev.txt", "pip", ".venv"),
            ("package-lock.json", "npm", "node_modules"),
            ("pnpm-lock.yaml", "pnpm", "node_modules"),
            ("Gemfile.lock", "bundler", "vendor/bundle"),
            ("go.sum", "go", ".go/pkg/mod"),
            ("Cargo.lock", "cargo", ".cargo"),
            ("packages.lock.json", "nuget", ".nuget/packages"),
        ];
        for (file, name, path) in cases {
            let p = for_lock_file(file).unwrap_or_else(|| panic!("{file}"));
            assert_eq!((p.name, p.paths[0]), (name, path), "{file}");
        }
        assert!(for_lock_file("requirements").is_none());
        assert!(for_lock_file("lock.txt").is_none());
    }

    #[test]
    fn npm_ci_discards_the_tree_and_npm_install_does_not() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert!(discards_tree(&argv("npm ci")).is_some());
        assert!(discards_tree(&argv("/usr/bin/npm --silent clean-install")).is_some());
        for keeps in [
            "npm install",
            "pnpm install --frozen-lockfile",
            "poetry install",
            "sh -c npm",
        ] {
            assert_eq!(discards_tree(&argv(keeps)), None, "{keeps}");
        }
    }

    #[test]
    fn python_presets_are_not_relocatable() {
        assert!(!for_lock_file("uv.lock").unwrap().relocatable);
        assert!(for_lock_file("yarn.lock").unwrap().relocatable);
        assert!(looks_like_venv("sub/.venv/"));
        assert!(!looks_like_venv("node_modules"));
    }
}
