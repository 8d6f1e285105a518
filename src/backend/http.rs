//! A plain HTTP server that speaks GET/HEAD/PUT/DELETE (nginx WebDAV, Artifactory or Nexus
//! raw repositories): object `v1/...` lives at `<base URL>/v1/...`. The manifest's
//! first-writer-wins is a WebDAV `MOVE` with `Overwrite: F` where the server has it, else a
//! `PUT` with `If-None-Match: *`.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow, bail};
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue, IF_NONE_MATCH};
use reqwest::{Method, StatusCode, Url};

use super::transport::{self, Transport};
use super::{Backend, ObjectMeta, StoreError, StoreResult, Transfer, Upload};
use crate::entry::ObjectName;
use crate::env_vars;

pub struct HttpBackend {
    /// Always ends in `/`, never carries userinfo.
    base: Url,
    transport: Transport,
    /// Cleared once the server refuses `MOVE`, so it is not asked again.
    webdav_move: AtomicBool,
}

impl HttpBackend {
    pub fn open(url: &str, transfer: &Transfer) -> anyhow::Result<HttpBackend> {
        let mut base =
            Url::parse(url).with_context(|| format!("--backend {url:?} is not a URL"))?;
        let mut auth = HeaderMap::new();
        // Credentials in the URL work, but the environment is the better place for them.
        if !base.username().is_empty() {
            let password = percent_decode(base.password().unwrap_or(""));
            let (k, v) = transport::basic_auth(&percent_decode(base.username()), &password)?;
            auth.insert(k, v);
            let _ = base.set_username("");
            let _ = base.set_password(None);
        }
        if let Some(token) = crate::redact::secret_env(env_vars::CACHEGATE_HTTP_TOKEN) {
            let (k, v) = transport::secret_header("authorization", &format!("Bearer {token}"))?;
            auth.insert(k, v);
        } else if let Some(user) = std::env::var(env_vars::CACHEGATE_HTTP_USER)
            .ok()
            .filter(|u| !u.is_empty())
        {
            let Some(password) = crate::redact::secret_env(env_vars::CACHEGATE_HTTP_PASSWORD)
            else {
                bail!(
                    "{} is set but {} is not; set both for basic auth, or {} for a bearer token",
                    env_vars::CACHEGATE_HTTP_USER,
                    env_vars::CACHEGATE_HTTP_PASSWORD,
                    env_vars::CACHEGATE_HTTP_TOKEN
                );
            };
            let (k, v) = transport::basic_auth(&user, &password)?;
            auth.insert(k, v);
        }
        if base.query().is_some() || base.fragment().is_some() {
            bail!(
                "--backend {:?} has a query or fragment; give the base URL only, such as https://cache.example.com/cachegate",
                transport::display_url(&base)
            );
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let transport = Transport::new(transfer, &base, auth)?;
        Ok(HttpBackend {
            base,
            transport,
            webdav_move: AtomicBool::new(true),
        })
    }

    fn url(&self, name: &ObjectName) -> StoreResult<Url> {
        self.url_of(&name.to_string())
    }

    /// The URL of an object or a listed directory.
    fn url_of(&self, name: &str) -> StoreResult<Url> {
        // `%` is the layout's escape; in a URL it would be one too, so it stays out.
        if !crate::entry::safe_object_name(name) || name.contains('%') {
            return Err(StoreError::Other(anyhow!("invalid object name {name:?}")));
        }
        self.base
            .join(name)
            .map_err(|e| StoreError::Other(anyhow!("invalid object name {name:?}: {e}")))
    }

    /// PUT to a hidden temp name, then MOVE onto `dest` only if nothing is there: nginx
    /// checks and renames inside one request, so two writers cannot both succeed.
    fn move_if_absent(&self, dest: &Url, data: &[u8]) -> StoreResult<Option<()>> {
        let dir_end = dest.path().rfind('/').unwrap_or(0);
        let file = &dest.path()[dir_end + 1..];
        let temp = dest
            .join(&format!(".tmp-{}-{file}", crate::entry::upload_id()))
            .map_err(|e| StoreError::Other(e.into()))?;
        self.transport
            .send_ok(Method::PUT, &temp, &HeaderMap::new(), Some(data))?;
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("destination"),
            HeaderValue::from_str(dest.as_str()).map_err(|e| StoreError::Other(e.into()))?,
        );
        h.insert(
            HeaderName::from_static("overwrite"),
            HeaderValue::from_static("F"),
        );
        let method = Method::from_bytes(b"MOVE").expect("MOVE is a valid method");
        let resp = self.transport.send(method.clone(), &temp, &h, None);
        let unsupported = matches!(&resp, Ok(r) if matches!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED | StatusCode::BAD_REQUEST
        ));
        let result = match resp {
            _ if unsupported => None,
            Ok(r) => Some(transport::check(&method, &temp, r).map(drop)),
            Err(e) => Some(Err(e)),
        };
        if !matches!(result, Some(Ok(()))) {
            let _ = self.transport.delete(&temp);
        }
        result.transpose()
    }

    /// Every file under `dir` whose name starts with `prefix`, in byte order of the whole
    /// name, from nginx's `autoindex_format json`, one directory's listing held at a time
    /// (plus those of its parents): `ls` and `prune` walk a store of any size this way.
    fn walk_dir(
        &self,
        dir: &str,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let url = if dir.is_empty() {
            self.base.clone()
        } else {
            self.url_of(dir.trim_end_matches('/'))?;
            self.base
                .join(dir)
                .map_err(|e| StoreError::Other(e.into()))?
        };
        let resp = match self
            .transport
            .send_ok(Method::GET, &url, &HeaderMap::new(), None)
        {
            Ok(r) => r,
            Err(StoreError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut body = Vec::new();
        resp.take(64 << 20)
            .read_to_end(&mut body)
            .map_err(|e| StoreError::Other(e.into()))?;
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|_| {
            StoreError::Other(anyhow!(
                "{} did not answer with a JSON directory listing; listing needs `autoindex on; autoindex_format json;` (see the README)",
                transport::display_url(&url)
            ))
        })?;
        drop(body);
        let mut here: Vec<Listed> = items
            .into_iter()
            .filter_map(|item| {
                let name = item["name"].as_str()?;
                if name.starts_with('.') || name.contains('/') {
                    return None;
                }
                match item["type"].as_str()? {
                    // A directory sorts as its name plus `/`, so whole names come in byte
                    // order, as S3 lists them (`pip-x/…` before `pip/…`).
                    "directory" => Some(Listed::Dir(format!("{dir}{name}/"))),
                    "file" => Some(Listed::File(ObjectMeta {
                        name: format!("{dir}{name}"),
                        size: item["size"].as_u64().unwrap_or(0),
                        modified: item["mtime"].as_str().and_then(transport::parse_http_date),
                    })),
                    _ => None,
                }
            })
            .filter(|l| match l {
                Listed::Dir(d) => d.starts_with(prefix) || prefix.starts_with(d.as_str()),
                Listed::File(o) => o.name.starts_with(prefix),
            })
            .collect();
        here.sort_by(|a, b| a.name().cmp(b.name()));
        for l in here {
            match l {
                Listed::Dir(d) => self.walk_dir(&d, prefix, each)?,
                Listed::File(o) => each(o)?,
            }
        }
        Ok(())
    }
}

/// One line of a directory listing.
enum Listed {
    /// Its full name, ending in `/`.
    Dir(String),
    File(ObjectMeta),
}

impl Listed {
    fn name(&self) -> &str {
        match self {
            Listed::Dir(d) => d,
            Listed::File(o) => &o.name,
        }
    }
}

/// URL userinfo as typed: `p%40ss` is the password `p@ss`.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl Backend for HttpBackend {
    fn reconnect(&self) {
        self.transport.reconnect();
    }

    fn describe(&self) -> String {
        transport::display_url(&self.base)
            .trim_end_matches('/')
            .to_string()
    }

    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        let url = self.url(name)?;
        let resp = self
            .transport
            .send_ok(Method::HEAD, &url, &HeaderMap::new(), None)?;
        Ok(resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0))
    }

    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        let url = self.url(name)?;
        let resp = self
            .transport
            .send_ok(Method::GET, &url, &HeaderMap::new(), None)?;
        Ok(self.transport.bounded(resp))
    }

    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        _blake3: &str,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        self.transport.download(&self.url(name)?, size, chunks)
    }

    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        let url = self.url(name)?;
        Ok(self.transport.upload(Method::PUT, &url, &HeaderMap::new()))
    }

    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        let url = self.url(name)?;
        match self.stat(name) {
            Ok(_) => return Err(StoreError::Exists),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if self.webdav_move.load(Ordering::Relaxed) {
            match self.move_if_absent(&url, data)? {
                Some(()) => return Ok(()),
                None => self.webdav_move.store(false, Ordering::Relaxed),
            }
        }
        // No MOVE: a conditional PUT, atomic where the server honours If-None-Match.
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        self.transport
            .send_ok(Method::PUT, &url, &h, Some(data))
            .map(drop)
    }

    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        self.walk_dir(dir, prefix, each)
    }

    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        let url = self.url(name)?;
        self.transport.delete(&url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%2Fw%3Ard"), "p@ss/w:rd");
        assert_eq!(percent_decode("plain%"), "plain%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
