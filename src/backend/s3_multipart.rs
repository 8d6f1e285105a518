//! Incomplete multipart uploads: what an upload killed midway (SIGKILL, a cancelled job)
//! leaves in a bucket. They are invisible to listings but billed, and OpenDAL has no call
//! for them, so `prune` lists and aborts them with the two S3 requests made for it
//! (ListMultipartUploads, AbortMultipartUpload), signed by reqsign as OpenDAL signs its own.

use anyhow::anyhow;
use reqsign_aws_v4::{Credential, RequestSigner};
use reqsign_core::{Context as SignContext, OsEnv, ProvideCredentialChain, Signer};
use reqwest::Url;
use serde::Deserialize;

use super::{IncompleteUpload as Pending, StoreError, StoreResult};
use crate::redact;

/// Where the store's objects are: what `new` needs of the store's `S3Spec` (this module
/// stays below `s3`, which owns the spec).
pub struct Bucket<'a> {
    pub endpoint: Option<&'a str>,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub path_style: bool,
}

pub struct Multipart {
    client: reqwest::Client,
    signer: Signer<Credential>,
    /// The bucket's root, ending in `/`.
    bucket_url: Url,
    /// Key prefix of the store, empty or ending in `/`.
    prefix: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListResult {
    upload: Vec<UploadXml>,
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct UploadXml {
    key: String,
    upload_id: String,
    initiated: String,
}

/// Key characters S3 wants escaped in a path; `/` stays.
const KEY_ESCAPES: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

impl Multipart {
    pub fn new(
        client: reqwest::Client,
        transport: opendal::HttpTransporter,
        chain: ProvideCredentialChain<Credential>,
        spec: &Bucket<'_>,
        region: &str,
    ) -> anyhow::Result<Multipart> {
        let endpoint = spec.endpoint.map_or_else(
            || format!("https://s3.{region}.amazonaws.com"),
            str::to_string,
        );
        let mut url = Url::parse(&endpoint)
            .map_err(|e| anyhow!("endpoint {endpoint:?} is not a URL: {e}"))?;
        if spec.path_style {
            let path = format!("{}/{}/", url.path().trim_end_matches('/'), spec.bucket);
            url.set_path(&path);
        } else {
            let host = format!("{}.{}", spec.bucket, url.host_str().unwrap_or(""));
            url.set_host(Some(&host))
                .map_err(|e| anyhow!("bucket host {host:?}: {e}"))?;
            url.set_path("/");
        }
        let ctx = SignContext::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_env(OsEnv)
            .with_http_send(transport);
        Ok(Multipart {
            client,
            signer: Signer::new(ctx, chain, RequestSigner::new("s3", region)),
            bucket_url: url,
            prefix: if spec.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", spec.prefix)
            },
        })
    }

    async fn send(&self, method: reqwest::Method, url: Url) -> StoreResult<(u16, String)> {
        let req = http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str())
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(())
            .map_err(|e| StoreError::Other(e.into()))?;
        let (mut parts, ()) = req.into_parts();
        self.signer
            .sign(&mut parts, None)
            .await
            .map_err(|e| StoreError::Other(anyhow!(redact::redact(&format!("{e:#}")))))?;
        let mut rb = self.client.request(method.clone(), url.clone());
        for (k, v) in &parts.headers {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let what = format!("{method} {}", super::transport::display_url(&url));
        let resp = rb
            .send()
            .await
            .map_err(|e| StoreError::Other(anyhow!(redact::redact(&format!("{what}: {e}")))))?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(StoreError::Auth(anyhow!(redact::redact(&format!(
                "{what} answered {status}"
            )))));
        }
        Ok((status, body))
    }

    /// Every incomplete upload whose key starts with `name_prefix` (under the store's
    /// prefix), page by page (S3 answers at most 1,000 per page).
    pub async fn list(&self, name_prefix: &str) -> StoreResult<Vec<Pending>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let mut url = self.bucket_url.clone();
            url.set_query(Some("uploads"));
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("prefix", &format!("{}{name_prefix}", self.prefix));
                if let Some(k) = &key_marker {
                    q.append_pair("key-marker", k);
                }
                if let Some(u) = &id_marker {
                    q.append_pair("upload-id-marker", u);
                }
            }
            let (status, body) = self.send(reqwest::Method::GET, url.clone()).await?;
            if status != 200 {
                return Err(StoreError::Other(anyhow!(
                    "listing incomplete uploads (GET {}) answered {status}",
                    super::transport::display_url(&url)
                )));
            }
            let page: ListResult = quick_xml::de::from_str(&body).map_err(|e| {
                StoreError::Other(anyhow!("cannot read the list of incomplete uploads: {e}"))
            })?;
            for u in page.upload {
                let Some(name) = u.key.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(Pending {
                    name: name.to_string(),
                    upload_id: u.upload_id,
                    initiated: super::transport::parse_iso8601(&u.initiated),
                });
            }
            if !page.is_truncated || page.next_key_marker.is_none() {
                return Ok(out);
            }
            key_marker = page.next_key_marker;
            id_marker = page.next_upload_id_marker;
        }
    }

    /// Abort one upload: S3 deletes the parts it holds.
    pub async fn abort(&self, p: &Pending) -> StoreResult<()> {
        let key = format!("{}{}", self.prefix, p.name);
        let mut url = self.bucket_url.clone();
        let path = format!(
            "{}{}",
            url.path(),
            percent_encoding::utf8_percent_encode(&key, KEY_ESCAPES)
        );
        url.set_path(&path);
        url.query_pairs_mut().append_pair("uploadId", &p.upload_id);
        let (status, _) = self.send(reqwest::Method::DELETE, url.clone()).await?;
        match status {
            200..=299 | 404 => Ok(()),
            _ => Err(StoreError::Other(anyhow!(
                "aborting an incomplete upload (DELETE {}) answered {status}",
                super::transport::display_url(&url)
            ))),
        }
    }
}
