//! The files a tool checks its lock against before it installs (`npm ci` refuses a lock out
//! of step with `package.json`, `poetry install` one out of step with `pyproject.toml`).
//! A hit skips that check, so those files are part of the key, but only the fields the
//! check reads: editing `scripts` or a description must not cost a hit.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::key::LockFile;
use crate::layout;
use crate::preset::Inputs;

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
                layout::workspace_dirs(dir)?
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
        }
        Inputs::Pyproject => toml_fields(dir, "pyproject.toml", PYPROJECT_FIELDS, &mut out)?,
        Inputs::Pipfile => toml_fields(dir, "Pipfile", PIPFILE_FIELDS, &mut out)?,
    }
    Ok(out)
}

/// pnpm checks its lock against the catalogs and overrides of `pnpm-workspace.yaml` too.
const PNPM_WORKSPACE_FIELDS: &[&str] = &[
    "packages",
    "catalog",
    "catalogs",
    "overrides",
    "patchedDependencies",
    "packageExtensions",
];

fn pnpm_workspace(dir: &Path) -> Result<Option<LockFile>> {
    let rel = "pnpm-workspace.yaml";
    let Ok(text) = std::fs::read_to_string(dir.join(rel)) else {
        return Ok(None);
    };
    let docs = yaml_rust2::YamlLoader::load_from_str(&text)
        .with_context(|| format!("{rel} is not valid YAML"))?;
    let Some(doc) = docs.first() else {
        return Ok(None);
    };
    let mut picked: BTreeMap<&str, String> = BTreeMap::new();
    for f in PNPM_WORKSPACE_FIELDS {
        let v = &doc[*f];
        if v.is_badvalue() {
            continue;
        }
        let mut emitted = String::new();
        yaml_rust2::YamlEmitter::new(&mut emitted)
            .dump(v)
            .with_context(|| format!("cannot read {f} in {rel}"))?;
        picked.insert(f, emitted);
    }
    Ok(Some(digest(rel.to_string(), &picked)))
}

fn toml_fields(dir: &Path, rel: &str, fields: &[&str], out: &mut Vec<LockFile>) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(dir.join(rel)) else {
        return Ok(());
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
    Ok(())
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
