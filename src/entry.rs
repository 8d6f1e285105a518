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

/// A user string as exactly one path segment: bytes outside `[A-Za-z0-9_.-]`, a leading
/// `.` and `%` itself become `%XX`, so `..`, `/`, `%2e%2e%2f` and the like stay inside one
/// segment, and different strings never share one. Cache names are validated to the safe
/// set already and keys are hex; this holds the layout even if that ever changes.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

pub fn entry_dir(scope: Scope, name: &str) -> String {
    entry_dir_raw(scope.as_str(), &segment(name))
}

/// An entry directory from segments already in object-name form (as listed).
pub fn entry_dir_raw(scope: &str, name: &str) -> String {
    format!("{LAYOUT_ROOT}/{scope}/{name}/")
}

pub fn manifest_name(scope: Scope, name: &str, key: &str) -> String {
    format!("{}{}.json", entry_dir(scope, name), segment(key))
}

pub fn archive_name(scope: Scope, name: &str, key: &str, upload_id: &str) -> String {
    format!(
        "{}{}-{}.tar.zst",
        entry_dir(scope, name),
        segment(key),
        segment(upload_id)
    )
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
    h.update(
        &std::env::var(crate::env_vars::CI_JOB_ID)
            .unwrap_or_default()
            .into_bytes(),
    );
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
        if m.scope != scope.as_str() || m.name != name {
            bail!(
                "manifest describes {:?} in scope {:?}, not {name:?} in {:?}",
                m.name,
                m.scope,
                scope.as_str()
            );
        }
        let dir = entry_dir(scope, name);
        let own = m.archive.strip_prefix(&dir).is_some_and(|rest| {
            !rest.contains('/') && rest.starts_with(&segment(key)) && rest.ends_with(".tar.zst")
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
