//! The project's GitLab generic package registry: zero infrastructure inside GitLab CI.
//! Object `v2/<project>/<scope>/<name>/<file>` is file `<file>` of package
//! `cachegate-v2-<scope>-<project>`, version `<name>.<key>`: the scope and the project
//! namespace make up the package name, so no cache name can reach another scope, and each
//! key is its own package version with a handful of files.
//!
//! GitLab keeps duplicate file names in a version and serves the newest, so the manifest's
//! first-writer-wins is built from claims: each writer uploads `<key>.json.claim`, and only
//! the writer whose claim is oldest (lowest file id) uploads the manifest. Readers fetch the
//! manifest by name, one request; only a winner ever writes it.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use anyhow::{Context, anyhow, bail};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, HeaderValue, RANGE};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;

use super::transport::{self, Transport};
use super::{Backend, ObjectMeta, StoreError, StoreResult, Transfer, Upload};
use crate::entry::{LAYOUT_ROOT, ObjectName, PROBE_DIR, namespace_segment, segment};
use crate::env_vars;
use crate::scope::Scope;

const SCOPES: [Scope; 3] = [Scope::Local, Scope::Protected, Scope::Unprotected];
const CLAIM: &str = ".claim";
/// A claim this much older than ours belongs to a writer that died before its manifest.
const STALE_CLAIM_SECS: u64 = 600;

pub struct GitlabBackend {
    /// `CI_API_V4_URL` with a trailing `/`.
    api: Url,
    /// The project id, URL-encoded for a path segment.
    project: String,
    project_shown: String,
    transport: Transport,
}

/// Where one object lives in the registry.
struct Location {
    package: String,
    version: String,
    file: String,
}

#[derive(Deserialize)]
struct Package {
    id: u64,
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct PackageFile {
    id: u64,
    #[serde(default)]
    package_id: u64,
    file_name: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    created_at: String,
}

fn package_name(scope: &str, namespace: &str) -> String {
    format!("{}{scope}-{namespace}", package_prefix())
}

fn package_prefix() -> String {
    format!("cachegate-{LAYOUT_ROOT}-")
}

/// The scope and namespace a package name stands for; `None` for anyone else's package.
fn parse_package(name: &str) -> Option<(Scope, &str)> {
    let rest = name.strip_prefix(&package_prefix())?;
    let (scope, ns) = rest.split_once('-')?;
    let scope = *SCOPES.iter().find(|s| s.as_str() == scope)?;
    namespace_segment(ns).then_some((scope, ns))
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// GitLab refuses `..` in a version; cache names may contain it. `+` never occurs in a
/// name or key, so a `+` between two dots encodes it reversibly.
fn encode_version(v: &str) -> String {
    v.replace("..", ".+.").replace("..", ".+.")
}

fn decode_version(v: &str) -> Option<(String, String)> {
    let plain = v.replace('+', "");
    let (name, stem) = plain.rsplit_once('.')?;
    (segment_ok(name) && segment_ok(stem)).then(|| (name.to_string(), stem.to_string()))
}

fn locate(object: &ObjectName) -> StoreResult<Location> {
    let bad = || StoreError::Other(anyhow!("invalid object name {:?}", object.to_string()));
    if !SCOPES.contains(&object.scope()) {
        return Err(bad());
    }
    // An entry's objects share one package version: `<name>.<key>`.
    let (ns, cache, stem) = match object {
        ObjectName::Probe(ns, _, id) => (ns.clone(), PROBE_DIR.to_string(), segment(id)),
        o => {
            let e = o.entry().expect("every other object belongs to an entry");
            (e.ns.clone(), segment(&e.name), segment(&e.key))
        }
    };
    // GitLab's own rule for versions is stricter than the layout's, and the namespace is
    // the one segment the layout takes as it is.
    if !namespace_segment(&ns) || !segment_ok(&cache) || !segment_ok(&stem) {
        return Err(bad());
    }
    Ok(Location {
        package: package_name(object.scope().as_str(), &ns),
        version: encode_version(&format!("{cache}.{stem}")),
        file: object.file(),
    })
}

fn io_err(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Other(e.into())
}

impl GitlabBackend {
    pub fn open(transfer: &Transfer) -> anyhow::Result<GitlabBackend> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        // An access token (project, group or personal) goes as PRIVATE-TOKEN and wins over
        // the job token, so a prune job can use one that may delete.
        let token = match (
            crate::redact::secret_env(env_vars::CACHEGATE_GITLAB_TOKEN),
            crate::redact::secret_env(env_vars::CI_JOB_TOKEN),
        ) {
            (Some(t), _) => Some(("private-token", t)),
            (None, Some(t)) => Some(("job-token", t)),
            (None, None) => None,
        };
        let (api, project) = (var(env_vars::CI_API_V4_URL), var(env_vars::CI_PROJECT_ID));
        let (Some(api), Some(project), Some((header, token))) = (&api, &project, &token) else {
            let missing: Vec<&str> = [
                (env_vars::CI_API_V4_URL, api.is_none()),
                (env_vars::CI_PROJECT_ID, project.is_none()),
                (env_vars::CI_JOB_TOKEN, token.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, gone)| gone.then_some(k))
            .collect();
            bail!(
                "--backend gitlab needs CI_API_V4_URL, CI_PROJECT_ID and CI_JOB_TOKEN (GitLab CI sets them in every job; {} may replace the job token); missing: {}",
                env_vars::CACHEGATE_GITLAB_TOKEN,
                missing.join(", ")
            );
        };
        let mut api_url = Url::parse(api.trim())
            .with_context(|| format!("{} {api:?} is not a URL", env_vars::CI_API_V4_URL))?;
        if !api_url.path().ends_with('/') {
            let p = format!("{}/", api_url.path());
            api_url.set_path(&p);
        }
        let mut auth = HeaderMap::new();
        let (k, v) = transport::secret_header(header, token)?;
        auth.insert(k, v);
        let project_shown = project.trim().to_string();
        // A `group/project` path goes into the URL as one segment, `/` escaped.
        const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.');
        let project = percent_encoding::utf8_percent_encode(&project_shown, ESCAPED).to_string();
        let transport = Transport::new(transfer, &api_url, auth)?;
        Ok(GitlabBackend {
            api: api_url,
            project,
            project_shown,
            transport,
        })
    }

    fn endpoint(&self, rest: &str) -> StoreResult<Url> {
        self.api
            .join(&format!("projects/{}/{rest}", self.project))
            .map_err(io_err)
    }

    fn file_url(&self, loc: &Location, file: &str) -> StoreResult<Url> {
        self.endpoint(&format!(
            "packages/generic/{}/{}/{file}",
            loc.package, loc.version
        ))
    }

    /// Every page of a paginated JSON list (`X-Next-Page`).
    fn pages<T: for<'de> Deserialize<'de>>(&self, mut url: Url) -> StoreResult<Vec<T>> {
        let mut out = Vec::new();
        url.query_pairs_mut().append_pair("per_page", "100");
        let mut page = "1".to_string();
        for _ in 0..10_000 {
            let mut u = url.clone();
            u.query_pairs_mut().append_pair("page", &page);
            let resp = self
                .transport
                .send_ok(Method::GET, &u, &HeaderMap::new(), None)?;
            let next = resp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .unwrap_or("")
                .to_string();
            let mut body = Vec::new();
            resp.take(64 << 20).read_to_end(&mut body).map_err(io_err)?;
            let items: Vec<T> = serde_json::from_slice(&body).map_err(|e| {
                StoreError::Other(anyhow!(
                    "{} did not answer with the expected JSON: {e}",
                    transport::display_url(&u)
                ))
            })?;
            out.extend(items);
            if next.is_empty() {
                return Ok(out);
            }
            page = next;
        }
        Err(StoreError::Other(anyhow!(
            "too many pages from the package API"
        )))
    }

    /// Generic packages whose name contains `name` (GitLab matches fuzzily).
    fn packages(&self, name: &str, version: Option<&str>) -> StoreResult<Vec<Package>> {
        let mut url = self.endpoint("packages")?;
        url.query_pairs_mut()
            .append_pair("package_type", "generic")
            .append_pair("package_name", name);
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("package_version", v);
        }
        self.pages(url)
    }

    fn files(&self, package_id: u64) -> StoreResult<Vec<PackageFile>> {
        self.pages(self.endpoint(&format!("packages/{package_id}/package_files"))?)
    }

    fn delete_file(&self, package_id: u64, file_id: u64) -> StoreResult<()> {
        self.transport
            .delete(&self.endpoint(&format!("packages/{package_id}/package_files/{file_id}"))?)
    }

    /// Upload our claim; `Exists` when the project forbids duplicate files and another
    /// writer's claim is already there (then GitLab's own check is the atomic one).
    fn claim(&self, loc: &Location) -> StoreResult<PackageFile> {
        let mut url = self.file_url(loc, &format!("{}{CLAIM}", loc.file))?;
        url.query_pairs_mut().append_pair("select", "package_file");
        let id = crate::entry::upload_id();
        let resp =
            self.transport
                .send(Method::PUT, &url, &HeaderMap::new(), Some(id.as_bytes()))?;
        let status = resp.status();
        // A namespace that forbids duplicate generic files refuses a second claim itself
        // (GitLab's own check is then the atomic one) with 400 Bad Request, as GitLab
        // documents it. `locate` has checked the names against GitLab's rules, so that is
        // the only 400 a claim can get.
        if status == StatusCode::BAD_REQUEST {
            return Err(StoreError::Exists);
        }
        if status.is_client_error() && status != StatusCode::NOT_FOUND {
            let body = transport::body_text(resp);
            return Err(transport::status_error(&Method::PUT, &url, status, &body));
        }
        let resp = transport::check(&Method::PUT, &url, resp)?;
        let mut body = Vec::new();
        resp.take(1 << 20).read_to_end(&mut body).map_err(io_err)?;
        let mut file: PackageFile = serde_json::from_slice(&body).map_err(|e| {
            StoreError::Other(anyhow!(
                "the registry did not describe the uploaded claim: {e}"
            ))
        })?;
        if file.package_id == 0 {
            return Err(StoreError::Other(anyhow!(
                "the registry did not say which package the claim went to"
            )));
        }
        file.file_name = format!("{}{CLAIM}", loc.file);
        Ok(file)
    }
}

impl Backend for GitlabBackend {
    fn reconnect(&self) {
        self.transport.reconnect();
    }

    fn describe(&self) -> String {
        format!(
            "gitlab project {} ({})",
            self.project_shown,
            transport::display_url(&self.api).trim_end_matches('/')
        )
    }

    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        let loc = locate(name)?;
        let url = self.file_url(&loc, &loc.file)?;
        // A ranged GET, not HEAD: GitLab may redirect downloads to object storage with a
        // URL presigned for GET only.
        let mut h = HeaderMap::new();
        h.insert(RANGE, HeaderValue::from_static("bytes=0-0"));
        let resp = self.transport.send_ok(Method::GET, &url, &h, None)?;
        let header = |k| {
            resp.headers()
                .get(k)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let size = if resp.status() == StatusCode::PARTIAL_CONTENT {
            header(CONTENT_RANGE).and_then(|r| r.rsplit('/').next()?.parse().ok())
        } else {
            header(CONTENT_LENGTH).and_then(|l| l.parse().ok())
        };
        Ok(size.unwrap_or(0))
    }

    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        let loc = locate(name)?;
        let url = self.file_url(&loc, &loc.file)?;
        let resp = self
            .transport
            .send_ok(Method::GET, &url, &HeaderMap::new(), None)?;
        Ok(self.transport.bounded(resp))
    }

    /// GitLab serves package files with `Range` support (from its own disk or object
    /// storage behind a redirect); where it does not, the download is one stream.
    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        _blake3: &str,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        let loc = locate(name)?;
        self.transport
            .download(&self.file_url(&loc, &loc.file)?, size, chunks)
    }

    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        let loc = locate(name)?;
        let url = self.file_url(&loc, &loc.file)?;
        Ok(self.transport.upload(Method::PUT, &url, &HeaderMap::new()))
    }

    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        let loc = locate(name)?;
        match self.stat(name) {
            Ok(_) => return Err(StoreError::Exists),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let ours = self.claim(&loc)?;
        let decided = (|| {
            let files = match self.files(ours.package_id) {
                Ok(files) => files,
                // GitLab before 16.0 does not let a job token list package files. Without
                // the list the manifest is written anyway: racing writers then resolve as
                // newest-wins, and each manifest still names its own complete archive.
                Err(StoreError::Auth(_)) => Vec::new(),
                Err(e) => return Err(e),
            };
            if files.iter().any(|f| f.file_name == loc.file) {
                return Err(StoreError::Exists);
            }
            let our_time = transport::parse_iso8601(&ours.created_at);
            let live = |f: &&PackageFile| {
                let t = transport::parse_iso8601(&f.created_at);
                !matches!((t, our_time), (Some(t), Some(o)) if t + STALE_CLAIM_SECS < o)
            };
            let first = files
                .iter()
                .filter(|f| f.file_name == ours.file_name)
                .filter(live)
                .map(|f| f.id)
                .chain([ours.id])
                .min();
            if first != Some(ours.id) {
                return Err(StoreError::Exists);
            }
            let url = self.file_url(&loc, &loc.file)?;
            self.transport
                .send_ok(Method::PUT, &url, &HeaderMap::new(), Some(data))
                .map(drop)
        })();
        // Once the manifest is there (or we lost), our claim has done its job.
        let _ = self.delete_file(ours.package_id, ours.id);
        decided
    }

    /// Every entry is its own package version, so the registry is listed as package ids
    /// per `<project>/<scope>/<name>/` directory, then one directory's files at a time.
    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let mut dirs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for pkg in self.packages(&package_prefix(), None)? {
            let Some((scope, ns)) = parse_package(&pkg.name) else {
                continue;
            };
            let Some((cache, _)) = decode_version(&pkg.version) else {
                continue;
            };
            let dir = format!("{LAYOUT_ROOT}/{ns}/{}/{cache}/", scope.as_str());
            if dir.starts_with(prefix) || prefix.starts_with(&dir) {
                dirs.entry(dir).or_default().push(pkg.id);
            }
        }
        // The directories all lie at one depth, so in their order the names come in byte
        // order as a whole.
        for (dir, ids) in dirs {
            let mut newest: HashMap<String, (u64, ObjectMeta)> = HashMap::new();
            for id in ids {
                for f in self.files(id)? {
                    let name = format!("{dir}{}", f.file_name);
                    if f.file_name.ends_with(CLAIM) || !name.starts_with(prefix) {
                        continue;
                    }
                    let meta = ObjectMeta {
                        name: name.clone(),
                        size: f.size,
                        modified: transport::parse_iso8601(&f.created_at),
                    };
                    // Duplicates: GitLab serves the newest, so that is the one that counts.
                    match newest.entry(name) {
                        Entry::Occupied(mut slot) if slot.get().0 < f.id => {
                            slot.insert((f.id, meta));
                        }
                        Entry::Occupied(_) => {}
                        Entry::Vacant(slot) => {
                            slot.insert((f.id, meta));
                        }
                    }
                }
            }
            let mut here: Vec<ObjectMeta> = newest.into_values().map(|(_, m)| m).collect();
            here.sort_by(|a, b| a.name.cmp(&b.name));
            for o in here {
                each(o)?;
            }
        }
        Ok(())
    }

    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        let loc = locate(name)?;
        let packages = self.packages(&loc.package, Some(&loc.version))?;
        for pkg in packages
            .iter()
            .filter(|p| p.name == loc.package && p.version == loc.version)
        {
            let files = self.files(pkg.id)?;
            for f in files.iter().filter(|f| f.file_name == loc.file) {
                self.delete_file(pkg.id, f.id)?;
            }
            // An emptied version is removed whole, so the registry does not fill with
            // empty packages (claims of writers that lost do not keep it alive).
            if files
                .iter()
                .all(|f| f.file_name == loc.file || f.file_name.ends_with(CLAIM))
            {
                self.transport
                    .delete(&self.endpoint(&format!("packages/{}", pkg.id))?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_valid_gitlab_names_and_back() {
        let key = "ab12".repeat(16);
        let object = |name: String| ObjectName::parse(&name).unwrap();
        let loc = locate(&object(format!(
            "v2/team-app-1a2b3c4d/protected/a..b./{key}-0011.tar.zst"
        )))
        .unwrap();
        assert_eq!(loc.package, "cachegate-v2-protected-team-app-1a2b3c4d");
        assert_eq!(
            parse_package(&loc.package),
            Some((Scope::Protected, "team-app-1a2b3c4d"))
        );
        let lease = locate(&object(format!(
            "v2/team-app-1a2b3c4d/protected/a..b./{key}.lease.3"
        )))
        .unwrap();
        assert_eq!(
            (lease.version, lease.file),
            (loc.version.clone(), format!("{key}.lease.3"))
        );
        assert!(!loc.version.contains(".."), "{}", loc.version);
        assert_eq!(
            decode_version(&loc.version),
            Some(("a..b.".to_string(), key.clone()))
        );
        assert_eq!(loc.file, format!("{key}-0011.tar.zst"));
        assert_eq!(encode_version("a...b"), "a.+.+.b");
    }

    #[test]
    fn scopes_cannot_be_forged() {
        for bad in [
            "v2/ns/evil/pip/k.json",
            "v2/ns/protected/../k.json",
            "v2/ns/unprotected/pip/../../protected/pip/k.json",
            "v2/ns/protected/pip/k.json.claim",
            "v2/ns/protected%2fx/pip/k.json",
            "v2/NS/protected/pip/k.json",
            "v1/protected/pip/k.json",
            "v2/protected/pip/k.json",
        ] {
            assert!(
                ObjectName::parse(bad).is_none_or(|o| locate(&o).is_err()),
                "{bad}"
            );
        }
        // Typed names never fail to parse; what the registry has no package for still fails.
        let shared = crate::entry::EntryName::new("ns", Scope::Shared, "pip", "k");
        assert!(locate(&shared.manifest()).is_err());
        let forged_ns = crate::entry::EntryName::new("../NS", Scope::Protected, "pip", "k");
        assert!(locate(&forged_ns.manifest()).is_err());
        for foreign in [
            "cachegate-v2-evil-ns",
            "cachegate-v2-protected",
            "cachegate-v2-protected-NS",
            "cachegate-v1-protected",
        ] {
            assert_eq!(parse_package(foreign), None, "{foreign}");
        }
    }
}
