//! What a lock file's name says about where its tool installs, so
//! `cachegate ensure --lock poetry.lock -- poetry install` needs no `--path`.
//!
//! Each tool is one entry of `PRESETS`: the lock files it writes, what it installs into,
//! the variables that point it there, the runtime its tree depends on and the files it
//! checks its lock against. Where a tool's own configuration can move what it installs
//! (workspaces, yarn berry's linker, a user's virtualenv settings), `preset_paths` reads it.

use std::sync::LazyLock;

use serde::Serialize;

use crate::paths::Names;

/// How a preset's environment variable gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvValue {
    Literal(&'static str),
    /// This path under the project directory, made absolute (tools that insist on
    /// absolute paths).
    Abs(&'static str),
    /// A flag followed by such an absolute path, for a variable that carries options
    /// (`MAVEN_OPTS=-Dmaven.repo.local=<dir>/.m2/repository`).
    AbsAfter(&'static str, &'static str),
}

/// What the cached tree needs from the machine to work, probed into the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    None,
    /// The interpreter a virtualenv links to: implementation, version and resolved path.
    Python,
    /// Native addons are built for one Node ABI (`process.versions.modules`).
    Node,
    /// Gems with native extensions are built for one Ruby.
    Ruby,
    /// The JVM's major version (`JAVA_HOME`'s java, else the one on `PATH`), which Gradle
    /// and Maven resolve and compile for.
    Jvm,
    /// The Dart SDK: pub records its version in `.dart_tool` and checks it on every run.
    Dart,
}

/// The files a tool checks its lock against before installing (`npm ci`, `poetry install`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Inputs {
    None,
    /// The dependency fields of the root and every workspace `package.json`.
    PackageJson,
    /// The dependency tables of `pyproject.toml`.
    Pyproject,
    /// The package sections of `Pipfile`.
    Pipfile,
    /// Gradle's build scripts, version catalogs, `gradle.properties` and wrapper properties,
    /// whole (dependencies are declared in code): a changed one is a miss.
    Gradle,
    /// Every `pom.xml` of the project (modules too) and `.mvn/extensions.xml`, whole.
    Maven,
    /// The dependency, feature and workspace tables of `pixi.toml` / `[tool.pixi]`.
    Pixi,
    /// The dependency sections of `pubspec.yaml` (and of each workspace member's).
    Pubspec,
}

/// Which tool configuration decides what is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The preset's paths, as listed.
    Fixed,
    /// `node_modules` of the root and of every workspace package.
    NodeWorkspaces,
    /// Like `NodeWorkspaces`, and yarn berry (a `yarn.lock` with `__metadata`) follows
    /// `.yarnrc.yml`.
    Yarn,
    /// The environment poetry will use (`POETRY_VIRTUALENVS_IN_PROJECT`, `virtualenvs.path`).
    Poetry,
    /// `UV_PROJECT_ENVIRONMENT` when the user set it.
    Uv,
    /// `PIPENV_VENV_IN_PROJECT` / `WORKON_HOME`.
    Pipenv,
    /// `CARGO_HOME` when the user set it: its download caches, never its config.
    Cargo,
    /// `GRADLE_USER_HOME` when the user set it: its dependency cache and wrapper dists.
    Gradle,
    /// `-Dmaven.repo.local` from `.mvn/maven.config` or `MAVEN_OPTS` when the user set it.
    Maven,
    /// `TF_PLUGIN_CACHE_DIR` when the user set it; the directory is made before the command
    /// runs (Terraform ignores a plugin cache that does not exist).
    Terraform,
    /// `PUB_CACHE` when the user set it, with the project's `.dart_tool`.
    Dart,
    /// The preset's paths, which hold their own prefix: the log says the location is keyed.
    Conda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Preset {
    pub name: &'static str,
    /// Lock file names this preset is picked for (`*` matches any run of characters).
    pub locks: &'static [&'static str],
    pub paths: &'static [&'static str],
    pub env: &'static [(&'static str, EnvValue)],
    /// The cached tree embeds its own absolute location (Python virtualenvs, conda
    /// prefixes, pub's package config), so it only works where it was built. A Python
    /// preset's environment inside the project is rewritten for another path (`relocate`);
    /// every other such tree has its location in the key.
    pub relocatable: bool,
    pub runtime: Runtime,
    pub inputs: Inputs,
    pub layout: Layout,
    /// File names (`*` matches any run of characters) never archived from the preset's
    /// paths: lock and bookkeeping files the tool says not to copy between machines.
    pub skip: &'static [&'static str],
}

use EnvValue::{Abs, AbsAfter, Literal};

const fn node(name: &'static str, locks: &'static [&'static str], layout: Layout) -> Preset {
    Preset {
        name,
        locks,
        paths: &["node_modules"],
        env: &[],
        relocatable: true,
        runtime: Runtime::Node,
        inputs: Inputs::PackageJson,
        layout,
        skip: &[],
    }
}

const fn plain(
    name: &'static str,
    locks: &'static [&'static str],
    paths: &'static [&'static str],
    env: &'static [(&'static str, EnvValue)],
) -> Preset {
    Preset {
        name,
        locks,
        paths,
        env,
        relocatable: true,
        runtime: Runtime::None,
        inputs: Inputs::None,
        layout: Layout::Fixed,
        skip: &[],
    }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "poetry",
        locks: &["poetry.lock"],
        paths: &[".venv"],
        env: &[("POETRY_VIRTUALENVS_IN_PROJECT", Literal("true"))],
        relocatable: false,
        runtime: Runtime::Python,
        inputs: Inputs::Pyproject,
        layout: Layout::Poetry,
        skip: &[],
    },
    Preset {
        name: "uv",
        locks: &["uv.lock"],
        paths: &[".venv"],
        env: &[("UV_PROJECT_ENVIRONMENT", Literal(".venv"))],
        relocatable: false,
        runtime: Runtime::Python,
        inputs: Inputs::Pyproject,
        layout: Layout::Uv,
        skip: &[],
    },
    Preset {
        name: "pipenv",
        locks: &["Pipfile.lock"],
        paths: &[".venv"],
        env: &[("PIPENV_VENV_IN_PROJECT", Literal("1"))],
        relocatable: false,
        runtime: Runtime::Python,
        inputs: Inputs::Pipfile,
        layout: Layout::Pipenv,
        skip: &[],
    },
    Preset {
        name: "pip",
        locks: &["requirements*.txt"],
        paths: &[".venv"],
        env: &[],
        relocatable: false,
        runtime: Runtime::Python,
        inputs: Inputs::None,
        layout: Layout::Fixed,
        skip: &[],
    },
    node(
        "npm",
        &["package-lock.json", "npm-shrinkwrap.json"],
        Layout::NodeWorkspaces,
    ),
    node("yarn", &["yarn.lock"], Layout::Yarn),
    node("pnpm", &["pnpm-lock.yaml"], Layout::NodeWorkspaces),
    node("bun", &["bun.lock", "bun.lockb"], Layout::NodeWorkspaces),
    Preset {
        runtime: Runtime::Ruby,
        ..plain(
            "bundler",
            &["Gemfile.lock"],
            &["vendor/bundle"],
            &[("BUNDLE_PATH", Literal("vendor/bundle"))],
        )
    },
    plain("composer", &["composer.lock"], &["vendor"], &[]),
    plain(
        "go",
        &["go.sum"],
        &[".go/pkg/mod"],
        &[
            ("GOMODCACHE", Abs(".go/pkg/mod")),
            ("GOFLAGS", Literal("-modcacherw")),
        ],
    ),
    Preset {
        layout: Layout::Cargo,
        ..plain(
            "cargo",
            &["Cargo.lock"],
            // The download caches only: `.cargo/config.toml` is the user's and often tracked.
            &[".cargo/registry", ".cargo/git"],
            &[("CARGO_HOME", Abs(".cargo"))],
        )
    },
    plain("mix", &["mix.lock"], &["deps"], &[]),
    plain(
        "nuget",
        &["packages.lock.json"],
        &[".nuget/packages"],
        &[("NUGET_PACKAGES", Abs(".nuget/packages"))],
    ),
    Preset {
        runtime: Runtime::Jvm,
        inputs: Inputs::Gradle,
        layout: Layout::Gradle,
        // Gradle's own advice for copying a dependency cache: leave out its lock files and
        // gc.properties. The wrapper's `.lck` files are its download locks.
        skip: &["*.lock", "gc.properties", "*.lck"],
        ..plain(
            "gradle",
            &[
                "*gradle.lockfile",
                "*.gradle",
                "*.gradle.kts",
                "*.versions.toml",
                "gradle-wrapper.properties",
            ],
            // As GitLab's docs advise: GRADLE_USER_HOME in the project. Never its daemon
            // logs, native files or the caches Gradle rebuilds per version.
            &[".gradle/caches/modules-2", ".gradle/wrapper/dists"],
            &[("GRADLE_USER_HOME", Abs(".gradle"))],
        )
    },
    Preset {
        runtime: Runtime::Jvm,
        inputs: Inputs::Maven,
        layout: Layout::Maven,
        // Which repository each file came from (`_remote.repositories`): restored where
        // that repository has another id (a mirror, another settings.xml), `mvn -o` refuses
        // the files. Failed-download markers would stop Maven trying again.
        skip: &[
            "_remote.repositories",
            "*.lastUpdated",
            "resolver-status.properties",
        ],
        ..plain(
            "maven",
            &["pom.xml"],
            &[".m2/repository"],
            &[(
                "MAVEN_OPTS",
                AbsAfter("-Dmaven.repo.local=", ".m2/repository"),
            )],
        )
    },
    Preset {
        // conda rewrites its prefix into scripts and binaries at install time.
        relocatable: false,
        inputs: Inputs::Pixi,
        layout: Layout::Conda,
        ..plain("pixi", &["pixi.lock"], &[".pixi/envs"], &[])
    },
    Preset {
        relocatable: false,
        layout: Layout::Conda,
        ..plain(
            "conda",
            &[
                "conda-lock.yml",
                "conda-*.lock",
                "environment.yml",
                "environment.yaml",
            ],
            &[".conda/envs"],
            &[("CONDA_ENVS_PATH", Abs(".conda/envs"))],
        )
    },
    Preset {
        layout: Layout::Terraform,
        ..plain(
            "terraform",
            &[".terraform.lock.hcl"],
            // The plugin cache only: `.terraform/` holds the backend's state and settings.
            &[".terraform.d/plugin-cache"],
            &[("TF_PLUGIN_CACHE_DIR", Abs(".terraform.d/plugin-cache"))],
        )
    },
    Preset {
        // `.dart_tool/package_config.json` names each package by its absolute path.
        relocatable: false,
        runtime: Runtime::Dart,
        inputs: Inputs::Pubspec,
        layout: Layout::Dart,
        ..plain(
            "dart",
            &["pubspec.lock"],
            &[".pub-cache", ".dart_tool"],
            &[("PUB_CACHE", Abs(".pub-cache"))],
        )
    },
];

/// Each preset's lock file names, compiled once, in the order of `PRESETS`.
static LOCK_NAMES: LazyLock<Vec<Names>> =
    LazyLock::new(|| PRESETS.iter().map(|p| Names::new(p.locks)).collect());

/// The preset for a lock file, judged by its file name alone.
pub fn for_lock_file(file_name: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .zip(LOCK_NAMES.iter())
        .find(|(_, names)| names.is_match(file_name))
        .map(|(p, _)| p)
}

/// The lock file names presets know, for error messages.
pub fn known_names() -> Vec<&'static str> {
    PRESETS
        .iter()
        .flat_map(|p| p.locks.iter().copied())
        .collect()
}

/// Whether a file name is one a preset knows, for suggesting lock files that exist.
pub fn is_lock_name(file_name: &str) -> bool {
    for_lock_file(file_name).is_some()
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

impl Runtime {
    pub fn describe(self) -> &'static str {
        match self {
            Runtime::None => "-",
            Runtime::Python => "python: implementation, version, resolved path",
            Runtime::Node => "node: ABI (process.versions.modules), major version",
            Runtime::Ruby => "ruby: engine and version",
            Runtime::Jvm => "jvm: major version (JAVA_HOME, else java on PATH)",
            Runtime::Dart => "dart: SDK version",
        }
    }
}

impl Inputs {
    pub fn describe(self) -> &'static str {
        match self {
            Inputs::None => "-",
            Inputs::PackageJson => {
                "dependency fields of every workspace package.json; tree-shaping settings of \
                 pnpm-workspace.yaml, .npmrc, .yarnrc.yml"
            }
            Inputs::Pyproject => {
                "name, version and dependency tables of pyproject.toml and of every uv \
                 workspace member's"
            }
            Inputs::Pipfile => "package sections of Pipfile",
            Inputs::Gradle => {
                "every build script, version catalog, gradle.properties and wrapper properties (whole)"
            }
            Inputs::Maven => "every pom.xml and .mvn/extensions.xml (whole)",
            Inputs::Pixi => "dependency, feature and workspace tables of pixi.toml / [tool.pixi]",
            Inputs::Pubspec => "dependency sections of pubspec.yaml and its workspace members'",
        }
    }
}

impl Layout {
    /// What the tool's configuration changes, for `cachegate presets`.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Fixed => "",
            Layout::NodeWorkspaces => "plus each workspace package's node_modules",
            Layout::Yarn => {
                "plus each workspace package's node_modules; yarn berry: what .yarnrc.yml's \
                 nodeLinker, cacheFolder and enableGlobalCache say"
            }
            Layout::Poetry => {
                "or this project's environment in virtualenvs.path when POETRY_VIRTUALENVS_IN_PROJECT / poetry.toml say not in-project"
            }
            Layout::Uv => "or UV_PROJECT_ENVIRONMENT when set",
            Layout::Pipenv => {
                "or this project's environment in WORKON_HOME when PIPENV_VENV_IN_PROJECT is off"
            }
            Layout::Cargo => "under CARGO_HOME when set; never config.toml",
            Layout::Gradle => {
                "under GRADLE_USER_HOME when set; never *.lock, gc.properties or daemon/"
            }
            Layout::Maven => {
                "or -Dmaven.repo.local from .mvn/maven.config / MAVEN_OPTS; never _remote.repositories or *.lastUpdated"
            }
            Layout::Terraform => {
                "or TF_PLUGIN_CACHE_DIR when set, made before the command; never .terraform/"
            }
            Layout::Conda => "keyed on their location: conda writes the prefix into them",
            Layout::Dart => {
                "plus .flutter-plugins* when flutter writes them; the pub cache under PUB_CACHE when set"
            }
        }
    }
}

/// One line per preset for `cachegate presets`, and the README's table (Markdown rows).
pub fn table_rows() -> Vec<[String; 6]> {
    PRESETS
        .iter()
        .map(|p| {
            let env = p
                .env
                .iter()
                .map(|(k, v)| match v {
                    Literal(v) => format!("{k}={v}"),
                    Abs(p) => format!("{k}=<dir>/{p}"),
                    AbsAfter(flag, p) => format!("{k}={flag}<dir>/{p}"),
                })
                .collect::<Vec<_>>()
                .join(" ");
            let mut paths = p.paths.join(", ");
            if !p.layout.describe().is_empty() {
                paths.push_str(&format!(" ({})", p.layout.describe()));
            }
            [
                p.name.to_string(),
                p.locks.join(", "),
                paths,
                if env.is_empty() { "-".into() } else { env },
                p.runtime.describe().to_string(),
                p.inputs.describe().to_string(),
            ]
        })
        .collect()
}

/// The presets for people, one block each (`cachegate presets`).
pub fn text_table() -> String {
    let mut out = String::new();
    for row in table_rows() {
        out.push_str(&format!("{}\n", row[0]));
        for (label, value) in TABLE_HEADER.iter().zip(&row).skip(1) {
            out.push_str(&format!("  {label:<20}{value}\n"));
        }
    }
    out
}

pub const TABLE_HEADER: [&str; 6] = [
    "preset",
    "lock file",
    "cached paths",
    "variables set",
    "runtime in the key",
    "consistency inputs",
];

/// The presets table as Markdown, exactly as the README holds it.
pub fn markdown_table() -> String {
    let mut out = format!("| {} |\n", TABLE_HEADER.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(TABLE_HEADER.len())));
    for row in table_rows() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 1 || i == 3 {
                    if c == "-" {
                        c.clone()
                    } else {
                        c.split(if i == 1 { ", " } else { " " })
                            .map(|s| format!("`{s}`"))
                            .collect::<Vec<_>>()
                            .join(if i == 1 { ", " } else { " " })
                    }
                } else {
                    c.replace('|', "\\|")
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
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
            ("npm-shrinkwrap.json", "npm", "node_modules"),
            ("pnpm-lock.yaml", "pnpm", "node_modules"),
            ("bun.lockb", "bun", "node_modules"),
            ("Gemfile.lock", "bundler", "vendor/bundle"),
            ("go.sum", "go", ".go/pkg/mod"),
            ("Cargo.lock", "cargo", ".cargo/registry"),
            ("packages.lock.json", "nuget", ".nuget/packages"),
            ("build.gradle.kts", "gradle", ".gradle/caches/modules-2"),
            ("pom.xml", "maven", ".m2/repository"),
            ("pixi.lock", "pixi", ".pixi/envs"),
            (
                ".terraform.lock.hcl",
                "terraform",
                ".terraform.d/plugin-cache",
            ),
            ("pubspec.lock", "dart", ".pub-cache"),
        ];
        for (file, name, path) in cases {
            let p = for_lock_file(file).unwrap_or_else(|| panic!("{file}"));
            assert_eq!((p.name, p.paths[0]), (name, path), "{file}");
        }
        assert!(for_lock_file("requirements").is_none());
        assert!(for_lock_file("lock.txt").is_none());
    }

    #[test]
    fn cargo_caches_downloads_and_never_its_config() {
        let p = for_lock_file("Cargo.lock").unwrap();
        assert_eq!(p.paths, [".cargo/registry", ".cargo/git"]);
        assert!(!p.paths.contains(&".cargo"));
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
    fn python_presets_are_not_relocatable_and_probe_python() {
        assert!(!for_lock_file("uv.lock").unwrap().relocatable);
        assert!(for_lock_file("yarn.lock").unwrap().relocatable);
        assert!(looks_like_venv("sub/.venv/"));
        assert!(!looks_like_venv("node_modules"));
        // Python virtualenvs, and the trees that embed their prefix (conda's rewriting,
        // pub's package config), are keyed on their location.
        for p in PRESETS {
            let embeds_location =
                p.runtime == Runtime::Python || ["pixi", "conda", "dart"].contains(&p.name);
            assert_eq!(!p.relocatable, embeds_location, "{}", p.name);
        }
    }

    #[test]
    fn jvm_terraform_conda_and_dart_lock_files_pick_their_presets() {
        let cases = [
            ("build.gradle", "gradle"),
            ("settings.gradle.kts", "gradle"),
            ("gradle.lockfile", "gradle"),
            ("buildscript-gradle.lockfile", "gradle"),
            ("libs.versions.toml", "gradle"),
            ("gradle-wrapper.properties", "gradle"),
            ("pom.xml", "maven"),
            ("pixi.lock", "pixi"),
            ("conda-lock.yml", "conda"),
            ("conda-linux-64.lock", "conda"),
            ("environment.yml", "conda"),
            (".terraform.lock.hcl", "terraform"),
            ("pubspec.lock", "dart"),
        ];
        for (file, name) in cases {
            assert_eq!(for_lock_file(file).map(|p| p.name), Some(name), "{file}");
        }
        // Still no preset: `--path` is needed, as before.
        for none in [
            "build.gradle.bak",
            "gradle.properties",
            "pubspec.yaml",
            "main.tf",
        ] {
            assert!(for_lock_file(none).is_none(), "{none}");
        }
        let jvm: Vec<_> = PRESETS
            .iter()
            .filter(|p| p.runtime == Runtime::Jvm)
            .map(|p| p.name)
            .collect();
        assert_eq!(jvm, ["gradle", "maven"]);
    }

    /// What Gradle and Maven say must not travel between machines stays out of the entry;
    /// nothing a tool needs is skipped.
    #[test]
    fn gradle_and_maven_skip_their_lock_and_origin_files_only() {
        let skipped = |patterns: &[&str], name: &str| Names::new(patterns).is_match(name);
        let gradle = for_lock_file("build.gradle").unwrap();
        for name in ["modules-2.lock", "gc.properties", "gradle-8.5-bin.zip.lck"] {
            assert!(skipped(gradle.skip, name), "{name}");
        }
        for name in [
            "commons-lang3-3.12.0.jar",
            "gradle-8.5-bin.zip.ok",
            "descriptor.bin",
        ] {
            assert!(!skipped(gradle.skip, name), "{name}");
        }
        assert!(gradle.paths.iter().all(|p| !p.contains("daemon")));
        let maven = for_lock_file("pom.xml").unwrap();
        for name in [
            "_remote.repositories",
            "commons-lang3-3.12.0.jar.lastUpdated",
            "resolver-status.properties",
        ] {
            assert!(skipped(maven.skip, name), "{name}");
        }
        for name in ["commons-lang3-3.12.0.jar", "commons-lang3-3.12.0.pom.sha1"] {
            assert!(!skipped(maven.skip, name), "{name}");
        }
        // Terraform's working directory holds the backend's state: never a cached path.
        let tf = for_lock_file(".terraform.lock.hcl").unwrap();
        assert!(tf.paths.iter().all(|p| !p.starts_with(".terraform/")));
        for p in PRESETS
            .iter()
            .filter(|p| !["gradle", "maven"].contains(&p.name))
        {
            assert!(p.skip.is_empty(), "{}", p.name);
        }
    }

    /// The README's table is this data: `CACHEGATE_BLESS=1 cargo test --lib readme`
    /// rewrites it after a preset changes.
    #[test]
    fn readme_presets_table_is_generated_from_the_presets() {
        const START: &str = "<!-- presets table: generated from src/preset.rs -->\n";
        const END: &str = "<!-- end of presets table -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (head, rest) = readme
            .split_once(START)
            .expect("README has the table markers");
        let (table, tail) = rest
            .split_once(END)
            .expect("README has the table end marker");
        let want = markdown_table();
        if table != want {
            if std::env::var("CACHEGATE_BLESS").is_ok_and(|v| v == "1") {
                std::fs::write(path, format!("{head}{START}{want}{END}{tail}")).unwrap();
            } else {
                panic!("README presets table is stale (CACHEGATE_BLESS=1 rewrites it):\n{want}");
            }
        }
    }

    #[test]
    fn every_preset_has_one_entry_and_a_table_row() {
        let mut names: Vec<_> = PRESETS.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), PRESETS.len());
        let md = markdown_table();
        for p in PRESETS {
            assert!(md.contains(&format!("| {} |", p.name)), "{md}");
        }
        assert_eq!(md.lines().count(), PRESETS.len() + 2);
    }
}
