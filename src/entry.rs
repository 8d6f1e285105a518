//! An entry is an archive plus a manifest that describes it. The manifest is written last
//! and only if absent, so it is the commit point: a reader that finds one finds a complete
//! archive, and the first complete writer of a key wins.
//!
//! Object names: `v2/<project>/<scope>/<name>/<key>.json` for the manifest and
//! `v2/<project>/<scope>/<name>/<key>-<upload id>.tar.zst` for the archive. The upload id
//! keeps two racing writers from overwriting each other's archive before one of them
//! commits. Beside them: `<key>.lease.<n>` (single-flight), `<key>.used` (last use, as
//! cachegate before job records wrote it) and `<key>.rec.<fields>` (one job's record).
//! `<project>` is the project namespace (`Namespace::segment`); `v1` had none, and its
//! entries are simply not found.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::key::{Components, ENTRY_FORMAT};
use crate::scope::Scope;

pub const LAYOUT_ROOT: &str = "v2";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub name: String,
    /// The scope the manifest says it was saved in (checked against where it lies).
    pub scope: AsWritten<Scope>,
    /// The archive's object, as the manifest names it.
    pub archive: AsWritten<ObjectName>,
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
    /// Links leaving the cached trees that resolved when this entry was saved; a restore
    /// checks they resolve on the restoring machine too.
    #[serde(default)]
    pub links: Vec<crate::fit::OutsideLink>,
    /// The project the entry belongs to, as people know it (the path says it as a segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Where a Python environment was saved and which of its files hold that path, so a
    /// restore at another path can rewrite them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relocation: Option<crate::relocate::Relocation>,
    /// A digest per range of the archive, so a range damaged in transit can be fetched
    /// again alone. Entries saved before these existed have none (and readers before them
    /// ignore the field): the whole archive is read again instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkDigests>,
}

/// Bytes of each range digest kept: enough to tell which range arrived damaged; whether
/// the archive is the one saved is still decided by its whole, full-length digest.
pub const CHUNK_DIGEST_BYTES: usize = 16;

/// The blake3 of each `size`-byte piece of the archive (the last may be shorter), as the
/// saving job wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkDigests {
    /// The saving job's `--chunk-size`: readers with the same one verify each range.
    pub size: u64,
    /// The first `CHUNK_DIGEST_BYTES` of each piece's blake3, concatenated, in base64
    /// (5.5 kB for 1 GB in 4 MiB pieces).
    pub blake3: String,
    /// The signing key's signature over these (`sign::sign_chunks`): the manifest's own
    /// signature covers only what readers before chunk digests check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl ChunkDigests {
    pub fn new(size: u64, sums: &[[u8; CHUNK_DIGEST_BYTES]]) -> ChunkDigests {
        use base64::Engine as _;
        ChunkDigests {
            size,
            blake3: base64::engine::general_purpose::STANDARD.encode(sums.concat()),
            signature: None,
        }
    }

    /// The digests, when they are well-formed for an archive of `total` bytes (one per
    /// piece); `None` for anything else, which is then read as a manifest without them.
    pub fn decode(&self, total: u64) -> Option<Vec<[u8; CHUNK_DIGEST_BYTES]>> {
        use base64::Engine as _;
        if self.size == 0 {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.blake3)
            .ok()?;
        let sums: Vec<[u8; CHUNK_DIGEST_BYTES]> = raw
            .chunks_exact(CHUNK_DIGEST_BYTES)
            .map(|c| c.try_into().expect("exact chunks"))
            .collect();
        (raw.len() % CHUNK_DIGEST_BYTES == 0 && sums.len() as u64 == total.div_ceil(self.size))
            .then_some(sums)
    }
}

/// A typed field of a manifest as it was read: the value when its text is one, else the text
/// itself. Manifests are JSON anyone who can write the store may have planted or damaged;
/// such a field makes the manifest refused by `Manifest::parse` (and quoted in the refusal)
/// rather than unreadable, and it serializes back to the same JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsWritten<T> {
    Known(T),
    Unknown(String),
}

/// What an `AsWritten` field can hold: read from and written as one string.
pub trait Textual: Sized {
    fn from_text(s: &str) -> Option<Self>;
    fn text(&self) -> String;
}

impl Textual for Scope {
    fn from_text(s: &str) -> Option<Scope> {
        Scope::parse(s)
    }
    fn text(&self) -> String {
        self.as_str().to_string()
    }
}

impl Textual for ObjectName {
    fn from_text(s: &str) -> Option<ObjectName> {
        ObjectName::parse(s)
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

impl<T> AsWritten<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            AsWritten::Known(t) => Some(t),
            AsWritten::Unknown(_) => None,
        }
    }
}

impl<T: Textual> From<T> for AsWritten<T> {
    fn from(t: T) -> Self {
        AsWritten::Known(t)
    }
}

impl<T: Textual> std::fmt::Display for AsWritten<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsWritten::Known(t) => f.write_str(&t.text()),
            AsWritten::Unknown(s) => f.write_str(s),
        }
    }
}

impl<T: Textual> Serialize for AsWritten<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de, T: Textual> Deserialize<'de> for AsWritten<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(T::from_text(&s).map_or(AsWritten::Unknown(s), AsWritten::Known))
    }
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

/// Where an entry lives (uv's `CacheEntry`): project, scope, cache name and key. The one
/// formatter of object names is here, and `ObjectName::parse` the one parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryName {
    /// The project namespace as its segment (`Namespace::segment`: `[a-z0-9-]`).
    pub ns: String,
    pub scope: Scope,
    pub name: String,
    pub key: String,
}

/// One object of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    /// `v2/<project>/<scope>/<name>/<key>.json`: the entry's commit point.
    Manifest(EntryName),
    /// `v2/<project>/<scope>/<name>/<key>-<upload id>.tar.zst`: one upload of its archive.
    Archive(EntryName, String),
    /// `…/<key>.used`: when the entry was last restored.
    Usage(EntryName),
    /// `…/<key>.lease.<n>`: generation `n` of the single-flight lease.
    Lease(EntryName, u32),
    /// `…/<key>.rec.<fields>`: what one job did with the entry (`records.rs` spells the
    /// fields out).
    Record(EntryName, String),
    /// `v2/<project>/<scope>/.doctor/<id>`: `doctor`'s probe, removed right away.
    Probe(String, Scope, String),
}

pub const PROBE_DIR: &str = ".doctor";
const MANIFEST_EXT: &str = ".json";
const ARCHIVE_EXT: &str = ".tar.zst";
const USAGE_EXT: &str = ".used";
const LEASE_EXT: &str = ".lease.";
const RECORD_EXT: &str = ".rec.";

impl EntryName {
    pub fn new(ns: &str, scope: Scope, name: &str, key: &str) -> EntryName {
        EntryName {
            ns: ns.to_string(),
            scope,
            name: name.to_string(),
            key: key.to_string(),
        }
    }

    /// `v2/<project>/<scope>/<name>/`: every object of every key of this cache name.
    pub fn dir(&self) -> String {
        format!(
            "{LAYOUT_ROOT}/{}/{}/{}/",
            self.ns,
            self.scope.as_str(),
            segment(&self.name)
        )
    }

    /// What every object of this key starts with.
    fn base(&self) -> String {
        format!("{}{}", self.dir(), segment(&self.key))
    }

    pub fn manifest(&self) -> ObjectName {
        ObjectName::Manifest(self.clone())
    }

    pub fn usage(&self) -> ObjectName {
        ObjectName::Usage(self.clone())
    }

    pub fn lease(&self, generation: u32) -> ObjectName {
        ObjectName::Lease(self.clone(), generation)
    }

    /// `fields` as `records.rs` formats them (safe characters only).
    pub fn record(&self, fields: &str) -> ObjectName {
        ObjectName::Record(self.clone(), fields.to_string())
    }

    pub fn archive(&self, upload_id: &str) -> ObjectName {
        ObjectName::Archive(self.clone(), upload_id.to_string())
    }

    /// Whether `object` is an upload of this entry's archive: a manifest may only name an
    /// archive beside it, so a planted one cannot steer a restore or a prune elsewhere.
    pub fn owns_archive(&self, object: &ObjectName) -> bool {
        matches!(object, ObjectName::Archive(e, _) if e == self)
    }
}

impl ObjectName {
    /// Parse an object name as listed; `None` for anything that is not one of the layout's
    /// (another root, an unknown scope, a segment that is not as the formatter writes it).
    pub fn parse(object: &str) -> Option<ObjectName> {
        let [root, ns, scope, dir, file] = object.split('/').collect::<Vec<_>>()[..] else {
            return None;
        };
        if root != LAYOUT_ROOT
            || !namespace_segment(ns)
            || !safe_segment(dir)
            || !safe_segment(file)
        {
            return None;
        }
        let ns = ns.to_string();
        let scope = Scope::parse(scope)?;
        if dir == PROBE_DIR {
            return Some(ObjectName::Probe(ns, scope, unsegment(file)?));
        }
        let name = unsegment(dir)?;
        let entry = |key: &str| -> Option<EntryName> {
            Some(EntryName {
                ns: ns.clone(),
                scope,
                name: name.clone(),
                key: unsegment(key)?,
            })
        };
        if let Some(key) = file.strip_suffix(MANIFEST_EXT) {
            return Some(ObjectName::Manifest(entry(key)?));
        }
        if let Some(key) = file.strip_suffix(USAGE_EXT) {
            return Some(ObjectName::Usage(entry(key)?));
        }
        if let Some((key, n)) = file.rsplit_once(LEASE_EXT) {
            // Digits only, as the formatter writes them (no sign, no leading zeros).
            let generation: u32 = n.parse().ok().filter(|g: &u32| g.to_string() == n)?;
            return Some(ObjectName::Lease(entry(key)?, generation));
        }
        if let Some((key, fields)) = file.split_once(RECORD_EXT) {
            if fields.is_empty() || fields.contains('%') {
                return None;
            }
            return Some(ObjectName::Record(entry(key)?, fields.to_string()));
        }
        let (key, id) = file.strip_suffix(ARCHIVE_EXT)?.split_once('-')?;
        Some(ObjectName::Archive(entry(key)?, unsegment(id)?))
    }

    /// The last segment, the object's file name within its directory.
    pub fn file(&self) -> String {
        let name = self.to_string();
        let (_, file) = name
            .rsplit_once('/')
            .expect("every object name has a directory");
        file.to_string()
    }

    pub fn scope(&self) -> Scope {
        match self {
            ObjectName::Manifest(e)
            | ObjectName::Archive(e, _)
            | ObjectName::Usage(e)
            | ObjectName::Lease(e, _)
            | ObjectName::Record(e, _) => e.scope,
            ObjectName::Probe(_, scope, _) => *scope,
        }
    }

    /// The entry the object belongs to (not for doctor's probe).
    pub fn entry(&self) -> Option<&EntryName> {
        match self {
            ObjectName::Manifest(e)
            | ObjectName::Archive(e, _)
            | ObjectName::Usage(e)
            | ObjectName::Lease(e, _)
            | ObjectName::Record(e, _) => Some(e),
            ObjectName::Probe(..) => None,
        }
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ObjectName::Manifest(e) => write!(f, "{}{MANIFEST_EXT}", e.base()),
            ObjectName::Archive(e, id) => write!(
                f,
                "{}{}-{}{ARCHIVE_EXT}",
                e.dir(),
                segment(&e.key),
                segment(id)
            ),
            ObjectName::Usage(e) => write!(f, "{}{USAGE_EXT}", e.base()),
            ObjectName::Lease(e, n) => write!(f, "{}{LEASE_EXT}{n}", e.base()),
            ObjectName::Record(e, fields) => write!(f, "{}{RECORD_EXT}{fields}", e.base()),
            ObjectName::Probe(ns, scope, id) => write!(
                f,
                "{LAYOUT_ROOT}/{ns}/{}/{PROBE_DIR}/{}",
                scope.as_str(),
                segment(id)
            ),
        }
    }
}

/// The `v2/<project>/<scope>/<name>/` a listed object at the layout's depth or deeper lies
/// in: the group `ls` and `prune` walk it in (with the slash: it is a list prefix). In name
/// order the objects of one group are contiguous and the groups ascend. `None` for an
/// object above that depth, which is no entry's.
pub fn group_of(name: &str) -> Option<&str> {
    let (end, _) = name.match_indices('/').nth(3)?;
    Some(&name[..=end])
}

/// The scope a group (`group_of`) lies in.
pub fn group_scope(group: &str) -> Option<Scope> {
    group.split('/').nth(2).and_then(Scope::parse)
}

/// A segment as the formatter writes it: not empty, not `.` or `..`, and only bytes that
/// need no escaping in a path or a URL. Backends check every name against this too, as the
/// last line of defence for nothing landing outside their root.
pub fn safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b))
}

/// A namespace segment as `Namespace::segment` writes it: `[a-z0-9-]`, not empty.
pub fn namespace_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether every segment of an object name is safe (`safe_segment`).
pub fn safe_object_name(name: &str) -> bool {
    !name.is_empty() && name.split('/').all(safe_segment)
}

/// The inverse of `segment`.
fn unsegment(s: &str) -> Option<String> {
    let text = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    (segment(&text) == s).then(|| text.into_owned())
}

/// `v2/<project>/<scope>/<name>/`, as a listing prefix.
pub fn entry_dir(ns: &str, scope: Scope, name: &str) -> String {
    EntryName::new(ns, scope, name, "").dir()
}

pub fn manifest_name(ns: &str, scope: Scope, name: &str, key: &str) -> String {
    EntryName::new(ns, scope, name, key).manifest().to_string()
}

pub fn archive_name(ns: &str, scope: Scope, name: &str, key: &str, upload_id: &str) -> String {
    EntryName::new(ns, scope, name, key)
        .archive(upload_id)
        .to_string()
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
    pub fn parse(bytes: &[u8], ns: &str, scope: Scope, name: &str, key: &str) -> Result<Manifest> {
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
        if m.scope.known() != Some(&scope) || m.name != name {
            bail!(
                "manifest describes {:?} in scope {:?}, not {name:?} in {:?}",
                m.name,
                m.scope.to_string(),
                scope.as_str()
            );
        }
        if m.archive_of(&EntryName::new(ns, scope, name, key))
            .is_none()
        {
            bail!(
                "manifest points at an archive outside its entry ({:?})",
                m.archive.to_string()
            );
        }
        // Which saved paths may be restored where is the plan's to judge (globs and
        // optional workspace paths save fewer or more paths than the key declares).
        Ok(m)
    }

    /// The archive, when it is an upload of `at`'s: a manifest may only name an archive
    /// beside it, so a planted one cannot steer a restore or a prune elsewhere.
    pub fn archive_of(&self, at: &EntryName) -> Option<&ObjectName> {
        self.archive.known().filter(|a| at.owns_archive(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_parse_back_to_what_formatted_them() {
        let ns = "team-app-1a2b3c4d";
        let e = EntryName::new(ns, Scope::Protected, "poetry", &"ab".repeat(32));
        let m = ObjectName::Manifest(e.clone());
        let a = ObjectName::Archive(e.clone(), "00ff".into());
        let u = ObjectName::Usage(e.clone());
        let l = ObjectName::Lease(e.clone(), 12);
        let p = ObjectName::Probe(ns.into(), Scope::Local, "9f3c".into());
        let r = ObjectName::Record(e.clone(), "1764633600.h.41000.1900.5000.00ff".into());
        for o in [m, a, u, l, p, r] {
            assert_eq!(ObjectName::parse(&o.to_string()), Some(o.clone()), "{o}");
        }
        assert!(e.owns_archive(&e.archive("1234")));
        let other = EntryName::new(ns, Scope::Unprotected, "poetry", &e.key);
        assert!(!e.owns_archive(&other.archive("1234")));
        let elsewhere = EntryName::new("other-9f9f9f9f", Scope::Protected, "poetry", &e.key);
        assert!(!e.owns_archive(&elsewhere.archive("1234")));
        assert!(!e.owns_archive(&e.manifest()));
        // An escaped segment round-trips.
        let odd = EntryName::new(ns, Scope::Local, ".hidden name", "k");
        assert_eq!(
            ObjectName::parse(&odd.manifest().to_string()),
            Some(ObjectName::Manifest(odd))
        );
    }

    #[test]
    fn objects_group_by_project_scope_and_name() {
        let e = EntryName::new("team-app", Scope::Local, "pip", "k");
        for o in [e.manifest(), e.archive("1"), e.usage(), e.lease(3)] {
            let name = o.to_string();
            assert_eq!(group_of(&name), Some("v2/team-app/local/pip/"), "{o}");
            assert_eq!(group_scope(group_of(&name).unwrap()), Some(Scope::Local));
        }
        assert_eq!(
            group_of("v2/team-app/local/pip/sub/x"),
            Some("v2/team-app/local/pip/")
        );
        assert_eq!(group_of("v2/team-app/local/pip"), None);
        assert_eq!(group_of("v2/junk.tar.zst"), None);
    }

    /// The manifest's typed fields are the same JSON strings as before they were typed, and
    /// one naming what the layout does not know still reads (and is refused by `parse`).
    #[test]
    fn typed_manifest_fields_keep_the_stored_json() {
        let e = EntryName::new("ns", Scope::Protected, "pip", "k");
        for (scope, archive) in [
            ("protected", e.archive("00ff").to_string()),
            ("evil", "../../etc/passwd".to_string()),
        ] {
            let json = serde_json::json!({"scope": scope, "archive": archive});
            #[derive(Serialize, Deserialize)]
            struct Fields {
                scope: AsWritten<Scope>,
                archive: AsWritten<ObjectName>,
            }
            let f: Fields = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(f.scope.known().is_some(), scope == "protected");
            assert_eq!(f.archive.known().is_some(), scope == "protected");
            assert_eq!(serde_json::to_value(&f).unwrap(), json);
        }
    }

    #[test]
    fn names_outside_the_layout_do_not_parse() {
        for bad in [
            "v1/local/pip/k.json",
            "v2/local/pip/k.json",
            "v2/ns/evil/pip/k.json",
            "v2/NS/local/pip/k.json",
            "v2/n%2fs/local/pip/k.json",
            "v2/ns/local/../k.json",
            "v2/ns/local/pip/k.json.claim",
            "v2/ns/local/pip/k.tar.zst",
            "v2/ns/local/pip/sub/k.json",
            "v2/ns/local/p%2fx/k.json",
            "v2/ns/local/pip/%6B.json",
            "v2/ns/local/pip/k.lease.01",
            "v2/ns/local/pip/k.lease.-1",
            "v2/ns/local/pip/k.lease.",
            "v2/ns/local/pip/k.rec.",
        ] {
            assert_eq!(ObjectName::parse(bad), None, "{bad}");
        }
    }
}
