//! An entry is an archive plus a manifest that describes it. The manifest is written last
//! and only if absent, so it is the commit point: a reader that finds one finds a complete
//! archive, and the first complete writer of a key wins.
//!
//! Object names: `v1/<scope>/<name>/<key>.json` for the manifest and
//! `v1/<scope>/<name>/<key>-<upload id>.tar.zst` for the archive. The upload id keeps two
//! racing writers from overwriting each other's archive before one of them commits.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::key::{Components, ENTRY_FORMAT};
use crate::scope::Scope;

pub const LAYOUT_ROOT: &str = "v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub name: String,
    pub scope: String,
    /// Object name of the archive.
    pub archive: String,
    pub archive_size: u64,
    pub archive_blake3: String,
    pub files: u64,
    pub bytes: u64,
    pub paths: Vec<String>,
    pub components: Components,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub creator: String,
    pub install_seconds: Option<f64>,
    #[serde(default)]
    pub signature: Option<String>,
}

pub fn entry_dir(scope: Scope, name: &str) -> String {
    format!("{LAYOUT_ROOT}/{}/{name}/", scope.as_str())
}

pub fn manifest_name(scope: Scope, name: &str, key: &str) -> String {
    format!("{}{key}.json", entry_dir(scope, name))
}

pub fn archive_name(scope: Scope, name: &str, key: &str, upload_id: &str) -> String {
    format!("{}{key}-{upload_id}.tar.zst", entry_dir(scope, name))
}

/// A fresh id for an upload: unique enough that two jobs never pick the same one.
pub fn upload_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = blake3::Hasher::new();
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&std::env::var("CI_JOB_ID").unwrap_or_default().into_bytes());
    h.finalize().to_hex()[..16].to_string()
}

impl Manifest {
    /// Parse a manifest and check that it describes this key in this place; anything else
    /// is a corrupt or planted entry.
    pub fn parse(bytes: &[u8], scope: Scope, name: &str, key: &str) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).context("manifest is not valid JSON")?;
        if m.format != ENTRY_FORMAT {
            bail!(
                "manifest has format {}, this cachegate reads {ENTRY_FORMAT}",
                m.format
            );
        }
        if m.key != key || m.components.key() != key {
            bail!("manifest describes another key");
        }
        let dir = entry_dir(scope, name);
        let own = m.archive.strip_prefix(&dir).is_some_and(|rest| {
            !rest.contains('/') && rest.starts_with(key) && rest.ends_with(".tar.zst")
        });
        if !own {
            bail!(
                "manifest points at an archive outside its entry ({:?})",
                m.archive
            );
        }
        if m.paths.len() != m.components.paths.len() {
            bail!(
                "manifest lists {} paths, its key {}",
                m.paths.len(),
                m.components.paths.len()
            );
        }
        Ok(m)
    }
}
