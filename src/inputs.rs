//! The files a tool checks its lock against before it installs (`npm ci` refuses a lock out
//! of step with `package.json`, `poetry install` one out of step with `pyproject.toml`).
//! A hit skips that check, so those files are part of the key, but only the fields the
//! check reads: editing `scripts` or a description must not cost a hit.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::key::LockFile;
use crate::preset::Inputs;
use crate::preset_paths;

const PACKAGE_JSON_FIELDS: &[&str] = &[
    "dependencies",
    "devDependencies",
    "optionalDependencies",
    "peerDependencies",
    "peerDependenciesMeta",
    "bundleDependencies",
    "bundledDependencies",
    "dependenciesMeta",
    "overrides",
    "resolutions",
    "workspaces",
    "pnpm",
];

/// Dotted paths into `pyproject.toml` that poetry's and uv's lock checks read.
const PYPROJECT_FIELDS: &[&str] = &[
    // The project itself is installed (editable) with its name and version, and uv's lock
    // records both for every workspace member.
    "project.name",
    "project.version",
    "project.dynamic",
    "tool.poetry.name",
    "tool.poetry.version",
    "tool.poetry.packages",
    "tool.poetry.package-mode",
    "tool.poetry.scripts",
    "project.scripts",
    "project.gui-scripts",
    "project.entry-points",
    "tool.uv.package",
    "project.dependencies",
    "project.optional-dependencies",
    "project.requires-python",
    "dependency-groups",
    "tool.poetry.dependencies",
    "tool.poetry.dev-dependencies",
    "tool.poetry.group",
    "tool.poetry.extras",
    "tool.poetry.source",
    "tool.uv.sources",
    "tool.uv.dev-dependencies",
    "tool.uv.override-dependencies",
    "tool.uv.constraint-dependencies",
    "tool.uv.index",
    "tool.uv.workspace",
];

const PIPFILE_FIELDS: &[&str] = &["packages", "dev-packages", "requires", "source"];

/// The consistency inputs of a preset in `dir`: one entry per file, the blake3 of its
/// checked fields in a canonical form. A file that does not exist contributes nothing.
pub fn collect(kind: Inputs, dir: &Path) -> Result<Vec<LockFile>> {
    let mut out = Vec::new();
    match kind {
        Inputs::None => {}
        Inputs::PackageJson => {
            let mut files = vec!["package.json".to_string()];
            files.extend(
                preset_paths::workspace_dirs(dir)?
                    .into_iter()
                    .map(|d| format!("{d}/package.json")),
            );
            for rel in files {
                let Ok(bytes) = std::fs::read(dir.join(&rel)) else {
                    continue;
                };
                let v: serde_json::Value = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{rel} is not valid JSON"))?;
                let picked: BTreeMap<&str, &serde_json::Value> = PACKAGE_JSON_FIELDS
                    .iter()
                    .filter_map(|f| v.get(*f).map(|x| (*f, x)))
                    .collect();
                out.push(digest(rel, &picked));
            }
            if let Some(i) = pnpm_workspace(dir)? {
                out.push(i);
            }
            if let Some(i) = npmrc(dir)? {
                out.push(i);
            }
            if let Some(i) = yarnrc(dir)? {
                out.push(i);
            }
        }
        Inputs::Pyproject => {
            let root = toml_fields(dir, "pyproject.toml", PYPROJECT_FIELDS, &mut out)?;
            // `uv sync --locked` checks every member against the lock; a hit must too.
            for m in preset_paths::uv_members(dir, &root.unwrap_or_default())? {
                toml_fields(
                    dir,
                    &format!("{m}/pyproject.toml"),
                    PYPROJECT_FIELDS,
                    &mut out,
                )?;
            }
        }
        Inputs::Pipfile => {
            toml_fields(dir, "Pipfile", PIPFILE_FIELDS, &mut out)?;
        }
        Inputs::Gradle => out.extend(whole_files(dir, GRADLE_FILES)?),
        Inputs::Maven => out.extend(whole_files(dir, MAVEN_FILES)?),
        Inputs::Pixi => {
            toml_fields(dir, "pixi.toml", PIXI_FIELDS, &mut out)?;
            // A pyproject.toml is pixi's manifest only when it has a `[tool.pixi…]` table.
            if std::fs::read_to_string(dir.join("pyproject.toml"))
                .is_ok_and(|t| t.contains("[tool.pixi"))
            {
                toml_fields(dir, "pyproject.toml", PIXI_PYPROJECT_FIELDS, &mut out)?;
            }
        }
        Inputs::Pubspec => pubspecs(dir, &mut out)?,
    }
    Ok(out)
}

/// Gradle declares dependencies in code, so its build files count whole.
const GRADLE_FILES: &[&str] = &[
    "*.gradle",
    "*.gradle.kts",
    "*.versions.toml",
    "gradle.properties",
    "gradle-wrapper.properties",
];

const MAVEN_FILES: &[&str] = &["pom.xml", "extensions.xml"];

/// What `pixi install --locked` checks `pixi.lock` against.
const PIXI_FIELDS: &[&str] = &[
    "workspace.channels",
    "workspace.platforms",
    "workspace.channel-priority",
    "project.channels",
    "project.platforms",
    "project.channel-priority",
    "dependencies",
    "host-dependencies",
    "build-dependencies",
    "pypi-dependencies",
    "pypi-options",
    "system-requirements",
    "feature",
    "environments",
    "target",
];

const PIXI_PYPROJECT_FIELDS: &[&str] = &[
    "project.dependencies",
    "project.optional-dependencies",
    "dependency-groups",
    "tool.pixi",
];

/// What `dart pub get --enforce-lockfile` checks `pubspec.lock` against.
const PUBSPEC_FIELDS: &[&str] = &[
    "environment",
    "dependencies",
    "dev_dependencies",
    "dependency_overrides",
    "workspace",
    "resolution",
];

/// Directories the build-file walk never enters: outputs, caches the presets fill, VCS.
const NOT_SOURCES: &[&str] = &[
    ".git",
    ".gradle",
    ".m2",
    "build",
    "target",
    "node_modules",
    ".venv",
];

/// Every file of the project (`.gitignore` honoured) whose name matches `names`, hashed whole.
fn whole_files(dir: &Path, names: &[&str]) -> Result<Vec<LockFile>> {
    let mut out = Vec::new();
    let names = crate::paths::Names::new(names);
    let walker = crate::paths::walk_project(dir)
        .max_depth(Some(12))
        .filter_entry(|e| {
            let dir = e.depth() > 0 && e.file_type().is_some_and(|t| t.is_dir());
            // A GRADLE_USER_HOME elsewhere in the project: a restored wrapper distribution
            // holds build scripts of its own.
            !(dir
                && (NOT_SOURCES.contains(&e.file_name().to_string_lossy().as_ref())
                    || e.path().join("caches/modules-2").is_dir()
                    || e.path().join("wrapper/dists").is_dir()))
        })
        .build();
    for entry in walker {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_some_and(|t| t.is_file()) || !names.is_match(&name) {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("cannot read {}", entry.path().display()))?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        out.push(LockFile {
            path: rel.to_string_lossy().into_owned(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        });
    }
    Ok(out)
}

/// The root `pubspec.yaml` and, for a pub workspace, each member's.
fn pubspecs(dir: &Path, out: &mut Vec<LockFile>) -> Result<()> {
    let Some(YamlFile { digest, doc }) = yaml_fields(dir, "pubspec.yaml", PUBSPEC_FIELDS)? else {
        return Ok(());
    };
    out.push(digest);
    for member in doc["workspace"].as_vec().into_iter().flatten() {
        let Some(m) = member.as_str() else { continue };
        let m = m.trim_end_matches('/');
        if m.split('/').any(|c| c == "..") {
            continue;
        }
        if let Some(f) = yaml_fields(dir, &format!("{m}/pubspec.yaml"), PUBSPEC_FIELDS)? {
            out.push(f.digest);
        }
    }
    Ok(())
}

/// A YAML file read for its fields.
struct YamlFile {
    /// The digest of the fields.
    digest: LockFile,
    /// The whole document (a pub workspace lists its members there).
    doc: yaml_rust2::Yaml,
}

/// The digest of `fields` of a YAML file, and the document; `None` when there is no file.
fn yaml_fields(dir: &Path, rel: &str, fields: &[&str]) -> Result<Option<YamlFile>> {
    let Some(docs) = yaml_docs(dir, rel)? else {
        return Ok(None);
    };
    let doc = docs.into_iter().next().unwrap_or(yaml_rust2::Yaml::Null);
    Ok(Some(YamlFile {
        digest: yaml_digest(rel, &doc, fields, false)?,
        doc,
    }))
}

/// The documents of a YAML file; `None` when there is no file.
fn yaml_docs(dir: &Path, rel: &str) -> Result<Option<Vec<yaml_rust2::Yaml>>> {
    let Ok(text) = std::fs::read_to_string(dir.join(rel)) else {
        return Ok(None);
    };
    yaml_rust2::YamlLoader::load_from_str(&text)
        .map(Some)
        .with_context(|| format!("{rel} is not valid YAML"))
}

/// The digest of a YAML document's `fields`, emitted canonically, and with `settings` its
/// tree-shaping settings too.
fn yaml_digest(
    rel: &str,
    doc: &yaml_rust2::Yaml,
    fields: &[&str],
    settings: bool,
) -> Result<LockFile> {
    let mut picked: BTreeMap<String, String> = BTreeMap::new();
    let mut pick = |name: String, v: &yaml_rust2::Yaml| -> Result<()> {
        let mut emitted = String::new();
        yaml_rust2::YamlEmitter::new(&mut emitted)
            .dump(v)
            .with_context(|| format!("cannot read {name} in {rel}"))?;
        picked.insert(name, emitted);
        Ok(())
    };
    for f in fields {
        let v = &doc[*f];
        if !v.is_badvalue() {
            pick((*f).to_string(), v)?;
        }
    }
    if let Some(map) = doc.as_hash().filter(|_| settings) {
        for (k, v) in map {
            if let Some(name) = k.as_str().and_then(tree_setting) {
                pick(name, v)?;
            }
        }
    }
    Ok(digest(rel.to_string(), &picked))
}

/// pnpm checks its lock against the catalogs and overrides of `pnpm-workspace.yaml` too,
/// and its settings there shape the installed tree without touching the lock.
const PNPM_WORKSPACE_FIELDS: &[&str] = &[
    "packages",
    "catalog",
    "catalogs",
    "overrides",
    "patchedDependencies",
    "packageExtensions",
];

/// Settings of npm, pnpm (`.npmrc`, `pnpm-workspace.yaml`) and yarn berry (`.yarnrc.yml`)
/// that change what an install puts on disk (layout, built packages, platforms) or whether
/// it fails, while the lock file stays byte for byte the same. Written without `-` and in
/// lower case: `.npmrc` spells them `node-linker`, the YAML files `nodeLinker`.
const TREE_SETTINGS: &[&str] = &[
    // pnpm
    "nodelinker",
    "allowbuilds",
    "onlybuiltdependencies",
    "onlybuiltdependenciesfile",
    "neverbuiltdependencies",
    "ignoredbuiltdependencies",
    "dangerouslyallowallbuilds",
    "ignorescripts",
    "sideeffectscache",
    "hoist",
    "hoistpattern",
    "publichoistpattern",
    "shamefullyhoist",
    "hoistworkspacepackages",
    "virtualstoredir",
    "virtualstoredirmaxlength",
    "modulesdir",
    "dedupepeerdependents",
    "dedupedirectdeps",
    "dedupeinjecteddeps",
    "autoinstallpeers",
    "strictpeerdependencies",
    "resolvepeersfromworkspaceroot",
    "injectworkspacepackages",
    "linkworkspacepackages",
    "sharedworkspacelockfile",
    "symlink",
    "enablemodulesdir",
    "prefersymlinkedexecutables",
    "supportedarchitectures",
    "nodeversion",
    "enginestrict",
    // npm
    "installstrategy",
    "globalstyle",
    "legacybundling",
    "installlinks",
    "legacypeerdeps",
    "strictpeerdeps",
    "omit",
    "include",
    "production",
    "only",
    "optional",
    "os",
    "cpu",
    "libc",
    // yarn berry
    "nmhoistinglimits",
    "nmmode",
    "nmselfreferences",
    "pnpmode",
    "pnpfallbackmode",
    "pnpignorepatterns",
    "enablescripts",
];

fn tree_setting(key: &str) -> Option<String> {
    let k: String = key
        .trim()
        .trim_end_matches("[]")
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    TREE_SETTINGS.contains(&k.as_str()).then_some(k)
}

/// The tree-shaping settings of the project's `.npmrc` (read by npm and pnpm): `key=value`
/// lines, `key[]=value` appending to a list.
fn npmrc(dir: &Path) -> Result<Option<LockFile>> {
    let rel = ".npmrc";
    let Ok(text) = std::fs::read_to_string(dir.join(rel)) else {
        return Ok(None);
    };
    let mut picked: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with(['#', ';']) {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if let Some(name) = tree_setting(k) {
            let v = v.trim().trim_matches(['"', '\'']).to_string();
            let list = picked.entry(name).or_default();
            if k.trim().ends_with("[]") {
                list.push(v);
            } else {
                *list = vec![v];
            }
        }
    }
    Ok(Some(digest(rel.to_string(), &picked)))
}

/// yarn berry's tree-shaping settings in `.yarnrc.yml`.
fn yarnrc(dir: &Path) -> Result<Option<LockFile>> {
    yaml_settings(dir, ".yarnrc.yml", &[])
}

/// The listed fields and the tree-shaping settings of a YAML file, emitted canonically.
fn yaml_settings(dir: &Path, rel: &str, fields: &[&str]) -> Result<Option<LockFile>> {
    let Some(docs) = yaml_docs(dir, rel)? else {
        return Ok(None);
    };
    docs.first()
        .map(|doc| yaml_digest(rel, doc, fields, true))
        .transpose()
}

fn pnpm_workspace(dir: &Path) -> Result<Option<LockFile>> {
    yaml_settings(dir, "pnpm-workspace.yaml", PNPM_WORKSPACE_FIELDS)
}

/// Digest `fields` of the TOML file `rel` into `out`; the parsed file, when it exists.
fn toml_fields(
    dir: &Path,
    rel: &str,
    fields: &[&str],
    out: &mut Vec<LockFile>,
) -> Result<Option<toml::Table>> {
    let Ok(text) = std::fs::read_to_string(dir.join(rel)) else {
        return Ok(None);
    };
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{rel} is not valid TOML"))?;
    let mut picked: BTreeMap<&str, &toml::Value> = BTreeMap::new();
    for f in fields {
        let mut parts = f.split('.');
        let mut cur = parts.next().and_then(|p| table.get(p));
        for p in parts {
            cur = cur.and_then(|c| c.get(p));
        }
        if let Some(v) = cur {
            picked.insert(f, v);
        }
    }
    out.push(digest(rel.to_string(), &picked));
    Ok(Some(table))
}

/// serde_json writes maps in key order here (no `preserve_order`), so equal content
/// gives equal bytes whatever order the file had.
fn digest<T: serde::Serialize>(path: String, picked: &T) -> LockFile {
    let canonical: serde_json::Value = serde_json::to_value(picked).expect("fields serialize");
    let bytes = serde_json::to_vec(&canonical).expect("fields serialize");
    LockFile {
        path,
        blake3: blake3::hash(&bytes).to_hex().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(kind: Inputs, dir: &Path) -> Vec<String> {
        collect(kind, dir)
            .unwrap()
            .into_iter()
            .map(|l| format!("{}@{}", l.path, l.blake3))
            .collect()
    }

    #[test]
    fn package_json_dependency_fields_count_and_scripts_do_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(
            root.join("package.json"),
            r#"{"name":"r","scripts":{"t":"x"},"workspaces":["packages/*"],"dependencies":{"a":"1"}}"#,
        )
        .unwrap();
        std::fs::create_dir_all(root.join("packages/b")).unwrap();
        std::fs::write(
            root.join("packages/b/package.json"),
            r#"{"name":"b","dependencies":{"ms":"2.0.0"}}"#,
        )
        .unwrap();
        let base = hashes(Inputs::PackageJson, root);
        assert_eq!(base.len(), 2);
        assert!(base[1].starts_with("packages/b/package.json@"), "{base:?}");

        // Reordered keys, other scripts, a new description: same inputs.
        std::fs::write(
            root.join("package.json"),
            r#"{"dependencies":{"a":"1"},"description":"d","workspaces":["packages/*"],"scripts":{"t":"y"},"name":"r"}"#,
        )
        .unwrap();
        assert_eq!(hashes(Inputs::PackageJson, root), base);

        // A dependency added in a workspace package without touching the lock: different.
        std::fs::write(
            root.join("packages/b/package.json"),
            r#"{"name":"b","dependencies":{"ms":"2.0.0","left-pad":"1"}}"#,
        )
        .unwrap();
        assert_ne!(hashes(Inputs::PackageJson, root), base);
    }

    #[test]
    fn pnpm_workspace_catalogs_count_and_comments_do_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |t: &str| std::fs::write(root.join("pnpm-workspace.yaml"), t).unwrap();
        write("packages:\n  - 'packages/*'\ncatalog:\n  lodash: ^4.17.21\n");
        let base = hashes(Inputs::PackageJson, root);
        assert_eq!(base.len(), 1, "{base:?}");
        write("# a comment\npackages:\n  - 'packages/*'\ncatalog:\n  lodash: ^4.17.21\n");
        assert_eq!(hashes(Inputs::PackageJson, root), base);
        write("packages:\n  - 'packages/*'\ncatalog:\n  lodash: ^4.17.20\n");
        assert_ne!(hashes(Inputs::PackageJson, root), base);
    }

    #[test]
    fn gradle_and_maven_build_files_count_whole_and_outputs_do_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |rel: &str, t: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        write("settings.gradle", "include 'app'\n");
        write("app/build.gradle.kts", "dependencies { }\n");
        write("gradle/libs.versions.toml", "[versions]\n");
        write(
            "gradle/wrapper/gradle-wrapper.properties",
            "distributionUrl=x\n",
        );
        // Gradle's own home in the project and build outputs are not sources.
        write(".gradle/init.gradle", "x");
        write(
            "ci/gradle-home/wrapper/dists/gradle-8/x/gradle-8/init.d/a.gradle",
            "x",
        );
        write("app/build/tmp/x.gradle", "x");
        let paths = |kind| -> Vec<String> {
            collect(kind, root)
                .unwrap()
                .into_iter()
                .map(|l| l.path)
                .collect()
        };
        assert_eq!(
            paths(Inputs::Gradle),
            [
                "app/build.gradle.kts",
                "gradle/libs.versions.toml",
                "gradle/wrapper/gradle-wrapper.properties",
                "settings.gradle"
            ]
        );
        let base = hashes(Inputs::Gradle, root);
        write(
            "app/build.gradle.kts",
            "dependencies { implementation(\"a:b:1\") }\n",
        );
        assert_ne!(hashes(Inputs::Gradle, root), base);

        write("pom.xml", "<project/>");
        write("core/pom.xml", "<project/>");
        write("target/classes/META-INF/maven/x/pom.xml", "<project/>");
        write(".m2/repository/a/b/1/pom.xml", "<project/>");
        assert_eq!(paths(Inputs::Maven), ["core/pom.xml", "pom.xml"]);
    }

    #[test]
    fn pixi_and_pubspec_dependency_tables_count() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |rel: &str, t: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        write(
            "pixi.toml",
            "[workspace]\nname='x'\nchannels=['conda-forge']\nplatforms=['linux-64']\n[dependencies]\npython='3.12.*'\n",
        );
        let base = hashes(Inputs::Pixi, root);
        write(
            "pixi.toml",
            "[workspace]\nname='x'\ndescription='d'\nchannels=['conda-forge']\nplatforms=['linux-64']\n[dependencies]\npython='3.12.*'\n[tasks]\nt='true'\n",
        );
        assert_eq!(hashes(Inputs::Pixi, root), base);
        write(
            "pixi.toml",
            "[workspace]\nname='x'\nchannels=['conda-forge']\nplatforms=['linux-64']\n[dependencies]\npython='3.13.*'\n",
        );
        assert_ne!(hashes(Inputs::Pixi, root), base);

        write(
            "pubspec.yaml",
            "name: app\nenvironment:\n  sdk: ^3.5.0\nworkspace:\n  - pkgs/a\ndependencies:\n  path: ^1.9.0\n",
        );
        write(
            "pkgs/a/pubspec.yaml",
            "name: a\nresolution: workspace\ndependencies:\n  args: ^2.5.0\n",
        );
        let base = hashes(Inputs::Pubspec, root);
        assert_eq!(base.len(), 2, "{base:?}");
        write(
            "pkgs/a/pubspec.yaml",
            "name: a\ndescription: d\nresolution: workspace\ndependencies:\n  args: ^2.5.0\n",
        );
        assert_eq!(hashes(Inputs::Pubspec, root), base);
        write(
            "pkgs/a/pubspec.yaml",
            "name: a\nresolution: workspace\ndependencies:\n  args: ^2.6.0\n",
        );
        assert_ne!(hashes(Inputs::Pubspec, root), base);
    }

    #[test]
    fn pnpm_npm_and_yarn_settings_that_shape_the_tree_count_and_others_do_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |f: &str, t: &str| std::fs::write(root.join(f), t).unwrap();
        write(
            "pnpm-workspace.yaml",
            "packages: ['p/*']\nallowBuilds:\n  esbuild: false\n",
        );
        let base = hashes(Inputs::PackageJson, root);
        write(
            "pnpm-workspace.yaml",
            "packages: ['p/*']\nallowBuilds:\n  esbuild: true\n",
        );
        let built = hashes(Inputs::PackageJson, root);
        assert_ne!(built, base);
        write(
            "pnpm-workspace.yaml",
            "packages: ['p/*']\nallowBuilds:\n  esbuild: true\nnodeLinker: hoisted\n",
        );
        assert_ne!(hashes(Inputs::PackageJson, root), built);
        write(
            "pnpm-workspace.yaml",
            "packages: ['p/*']\nallowBuilds:\n  esbuild: true\nnodeLinker: hoisted\nreporter: silent\n",
        );
        let hoisted = hashes(Inputs::PackageJson, root);

        write(
            ".npmrc",
            "registry=https://r.example/\n//r.example/:_authToken=a\n",
        );
        let npmrc = hashes(Inputs::PackageJson, root);
        assert_eq!(npmrc.len(), hoisted.len() + 1, "{npmrc:?}");
        // A rotated token or another registry mirror: the same tree.
        write(
            ".npmrc",
            "registry=https://mirror.example/\n//r.example/:_authToken=b\n",
        );
        assert_eq!(hashes(Inputs::PackageJson, root), npmrc);
        for setting in [
            "node-linker=hoisted",
            "shamefully-hoist=true",
            "only-built-dependencies[]=esbuild",
            "install-strategy=nested",
            "omit=dev",
        ] {
            write(
                ".npmrc",
                &format!("registry=https://r.example/\n{setting}\n"),
            );
            assert_ne!(hashes(Inputs::PackageJson, root), npmrc, "{setting}");
        }
        std::fs::remove_file(root.join(".npmrc")).unwrap();

        write(".yarnrc.yml", "yarnPath: .yarn/releases/y.cjs\n");
        let yarn = hashes(Inputs::PackageJson, root);
        write(".yarnrc.yml", "yarnPath: .yarn/releases/z.cjs\n");
        assert_eq!(hashes(Inputs::PackageJson, root), yarn);
        write(
            ".yarnrc.yml",
            "yarnPath: .yarn/releases/z.cjs\nnmHoistingLimits: workspaces\n",
        );
        assert_ne!(hashes(Inputs::PackageJson, root), yarn);
    }

    #[test]
    fn uv_workspace_members_dependencies_names_and_versions_count() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |f: &str, t: &str| {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        write(
            "pyproject.toml",
            "[project]\nname='root'\nversion='0.1.0'\n[tool.uv.workspace]\nmembers=['packages/*']\nexclude=['packages/skip']\n",
        );
        for m in ["a", "b", "skip"] {
            write(
                &format!("packages/{m}/pyproject.toml"),
                &format!("[project]\nname='pkg-{m}'\nversion='0.1.0'\ndescription='x'\n"),
            );
        }
        let base = hashes(Inputs::Pyproject, root);
        let files: Vec<&str> = base.iter().map(|h| h.split('@').next().unwrap()).collect();
        assert_eq!(
            files,
            [
                "pyproject.toml",
                "packages/a/pyproject.toml",
                "packages/b/pyproject.toml"
            ]
        );
        write(
            "packages/b/pyproject.toml",
            "[project]\nname='pkg-b'\nversion='0.1.0'\ndescription='y'\n",
        );
        assert_eq!(hashes(Inputs::Pyproject, root), base);
        write(
            "packages/skip/pyproject.toml",
            "[project]\nname='pkg-skip'\nversion='9'\n",
        );
        assert_eq!(hashes(Inputs::Pyproject, root), base);
        write(
            "packages/a/pyproject.toml",
            "[project]\nname='pkg-a'\nversion='0.1.0'\ndependencies=['six']\n",
        );
        let dep = hashes(Inputs::Pyproject, root);
        assert_ne!(dep, base);
        write(
            "packages/a/pyproject.toml",
            "[project]\nname='pkg-a'\nversion='0.2.0'\ndependencies=['six']\n",
        );
        assert_ne!(hashes(Inputs::Pyproject, root), dep);
        let member = hashes(Inputs::Pyproject, root);
        write(
            "pyproject.toml",
            "[project]\nname='root'\nversion='0.1.1'\n[tool.uv.workspace]\nmembers=['packages/*']\nexclude=['packages/skip']\n",
        );
        assert_ne!(hashes(Inputs::Pyproject, root), member);
    }

    #[test]
    fn pyproject_dependency_tables_count_and_the_rest_does_not() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let write = |t: &str| std::fs::write(root.join("pyproject.toml"), t).unwrap();
        write(
            "[tool.poetry]\nname='x'\ndescription='a'\n[tool.poetry.dependencies]\npython='^3.11'\nrequests='*'\n",
        );
        let base = hashes(Inputs::Pyproject, root);
        write(
            "[tool.poetry]\nname='x'\ndescription='b'\n[tool.poetry.dependencies]\nrequests='*'\npython='^3.11'\n[tool.ruff]\nline-length=99\n",
        );
        assert_eq!(hashes(Inputs::Pyproject, root), base);
        write(
            "[tool.poetry]\nname='x'\n[tool.poetry.dependencies]\npython='^3.11'\nrequests='*'\n[tool.poetry.group.dev.dependencies]\npytest='*'\n",
        );
        assert_ne!(hashes(Inputs::Pyproject, root), base);
        write("[project]\nname='x'\ndependencies=['requests']\n");
        let uv = hashes(Inputs::Pyproject, root);
        write("[project]\nname='x'\ndependencies=['requests', 'rich']\n");
        assert_ne!(hashes(Inputs::Pyproject, root), uv);
        write("[project\n");
        let e = collect(Inputs::Pyproject, root).unwrap_err().to_string();
        assert!(e.contains("pyproject.toml"), "{e}");
        assert!(collect(Inputs::Pipfile, root).unwrap().is_empty());
    }
}
