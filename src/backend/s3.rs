//! An S3-compatible bucket (AWS, Garage, MinIO, Ceph, R2) through OpenDAL, as sccache does.
//! Credentials come from the standard AWS chain; every credential the chain loads is
//! registered for redaction before it signs anything, so no error path can print it.

use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use http::StatusCode;
use opendal::layers::TimeoutLayer;
use opendal::options::WriteOptions;
use opendal::{ErrorKind, HttpTransporter, OperationContext, Operator};
use reqsign_aws_v4::{
    AssumeRoleWithWebIdentityCredentialProvider, Credential, DefaultCredentialProvider,
};
use reqsign_core::{Context as SignContext, ProvideCredential, ProvideCredentialChain};

use super::ranged::RangeError;
use super::{Backend, ObjectMeta, StoreError, StoreResult, Transfer, Upload};
use crate::entry::ObjectName;
use crate::{env_vars, redact};

/// S3 refuses multipart parts under 5 MiB (all but the last).
const MIN_PART_SIZE: usize = 5 << 20;

/// A parsed `s3://bucket/prefix?endpoint=…&region=…&path_style=true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// Object prefix without leading or trailing slashes; may be empty.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing: on when an endpoint is given, unless `path_style=false`.
    pub path_style: bool,
}

impl S3Spec {
    /// `rest` is what follows `s3://`.
    pub fn parse(rest: &str) -> Result<S3Spec> {
        let whole = format!("s3://{rest}");
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.contains('@') {
            bail!(
                "backend {:?} carries credentials; give them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a web identity instead",
                redact::redact(&whole)
            );
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !bucket_ok {
            bail!(
                "backend {whole:?}: {bucket:?} is not a bucket name (3-63 lowercase letters, digits, '-' or '.'); expected s3://bucket/prefix?endpoint=URL&region=REGION"
            );
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
        {
            bail!(
                "backend {whole:?}: the prefix {prefix:?} has an empty, '.' or '..' segment; use a plain path such as s3://{bucket}/ci-cache"
            );
        }
        let mut spec = S3Spec {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: None,
            path_style: false,
        };
        let mut path_style = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)
                .with_context(|| format!("backend {whole:?}: the value of {k} is not valid"))?;
            match k {
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        bail!(
                            "backend {whole:?}: endpoint {v:?} must start with http:// or https://"
                        );
                    }
                    if v[v.find("://").unwrap_or(0) + 3..]
                        .split('/')
                        .next()
                        .is_some_and(|a| a.contains('@'))
                    {
                        bail!(
                            "backend {:?}: the endpoint carries credentials; give them in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead",
                            redact::redact(&whole)
                        );
                    }
                    spec.endpoint = Some(v.trim_end_matches('/').to_string());
                }
                "region" if !v.is_empty() => spec.region = Some(v),
                "path_style" => {
                    path_style = Some(match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => bail!("backend {whole:?}: path_style={v:?}; use true or false"),
                    })
                }
                _ => bail!(
                    "backend {whole:?}: unknown parameter {k:?}; accepted: endpoint, region, path_style"
                ),
            }
        }
        spec.path_style = path_style.unwrap_or(spec.endpoint.is_some());
        Ok(spec)
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Strict where the crate is lenient: a `%` without two hex digits is a typo to report,
/// not text to pass on.
fn percent_decode(s: &str) -> Result<String> {
    let stray = s.match_indices('%').any(|(i, _)| {
        !s.get(i + 1..i + 3)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if stray {
        bail!("bad %-escape");
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| anyhow!("not UTF-8"))
}

/// One runtime for the process: OpenDAL is async underneath, cachegate is not.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cachegate-s3")
            .enable_all()
            .build()
            .expect("tokio runtime starts")
    })
}

fn block<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Set when the credential chain found nothing, so every signed request fails before it is
/// sent: those failures are `StoreError::NoCredentials`, whatever OpenDAL calls them.
static NO_CREDENTIALS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn no_credentials() -> bool {
    NO_CREDENTIALS.load(std::sync::atomic::Ordering::Relaxed)
}

/// The AWS chain, with every credential it yields registered for redaction.
#[derive(Debug)]
struct Registering(ProvideCredentialChain<Credential>);

impl ProvideCredential for Registering {
    type Credential = Credential;

    async fn provide_credential(
        &self,
        ctx: &SignContext,
    ) -> reqsign_core::Result<Option<Credential>> {
        let cred = self.0.provide_credential(ctx).await?;
        NO_CREDENTIALS.store(cred.is_none(), std::sync::atomic::Ordering::Relaxed);
        if let Some(c) = &cred {
            redact::register(&c.access_key_id);
            redact::register(&c.secret_access_key);
            if let Some(t) = &c.session_token {
                redact::register(t);
            }
        }
        Ok(cred)
    }
}

/// Registers the credentials found in the environment and builds the chain: environment,
/// profiles, web identity (`AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, or the token
/// itself in `CACHEGATE_S3_WEB_IDENTITY_TOKEN`), ECS, instance metadata.
fn credential_chain() -> Result<Registering> {
    for name in [
        env_vars::AWS_ACCESS_KEY_ID,
        env_vars::AWS_SECRET_ACCESS_KEY,
        env_vars::AWS_SESSION_TOKEN,
    ] {
        redact::secret_env(name);
    }
    if let Ok(file) = std::env::var(env_vars::AWS_WEB_IDENTITY_TOKEN_FILE)
        && let Ok(token) = std::fs::read_to_string(file)
    {
        redact::register(token.trim());
    }
    let mut builder = DefaultCredentialProvider::builder();
    if let Some(token) = redact::secret_env(env_vars::CACHEGATE_S3_WEB_IDENTITY_TOKEN) {
        if std::env::var(env_vars::AWS_ROLE_ARN).is_err() {
            bail!(
                "{} is set but {} is not: name the role the token assumes",
                env_vars::CACHEGATE_S3_WEB_IDENTITY_TOKEN,
                env_vars::AWS_ROLE_ARN
            );
        }
        builder = builder.web_identity(
            AssumeRoleWithWebIdentityCredentialProvider::new()
                .with_web_identity_token_file(token_file(token.trim())?),
        );
    }
    Ok(Registering(
        ProvideCredentialChain::new().push(builder.build()),
    ))
}

/// The web-identity chain reads its token from a file: write it once to a file only this
/// user can read, removed when the process exits.
fn token_file(token: &str) -> Result<std::path::PathBuf> {
    static FILE: OnceLock<std::path::PathBuf> = OnceLock::new();
    extern "C" fn remove_token_file() {
        if let Some(p) = FILE.get() {
            let _ = std::fs::remove_file(p);
        }
    }
    if let Some(p) = FILE.get() {
        return Ok(p.clone());
    }
    // tempfile creates files with mode 0600.
    let mut f = tempfile::Builder::new()
        .prefix("cachegate-web-identity-")
        .tempfile()
        .context("cannot write the web identity token to a temporary file")?;
    f.write_all(token.as_bytes())
        .context("cannot write the web identity token to a temporary file")?;
    let (_, path) = f
        .keep()
        .context("cannot keep the web identity token file")?;
    let _ = FILE.set(path.clone());
    // SAFETY: registering a plain extern "C" function with atexit has no preconditions.
    unsafe {
        libc::atexit(remove_token_file);
    }
    Ok(path)
}

pub struct S3Backend {
    spec: S3Spec,
    op: Operator,
    overall: Duration,
    concurrency: usize,
    chunk: usize,
    retries: u32,
    multipart: super::s3_multipart::Multipart,
}

impl S3Backend {
    pub fn open(spec: &S3Spec, transfer: &Transfer) -> Result<S3Backend> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(transfer.connect)
                .read_timeout(transfer.stall)
        };
        // No CA certificates in the image (debian:*-slim, an empty chroot): an http://
        // endpoint needs none, and https:// then fails per request as cache trouble.
        let client = builder()
            .build()
            .or_else(|_| builder().tls_certs_only(Vec::new()).build())
            .context("cannot set up the HTTP client")?;
        let transport = HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::new(client.clone()),
        );
        let mut builder = opendal::services::S3::default()
            .bucket(&spec.bucket)
            .root(&format!("/{}", spec.prefix))
            .credential_provider_chain(ProvideCredentialChain::new().push(credential_chain()?));
        if let Some(e) = &spec.endpoint {
            builder = builder.endpoint(e);
        }
        // Signing needs a region: the URL's, else the environment's, else us-east-1
        // (S3-compatible stores accept any).
        let region = spec
            .region
            .clone()
            .or_else(|| std::env::var(env_vars::AWS_REGION).ok())
            .or_else(|| std::env::var(env_vars::AWS_DEFAULT_REGION).ok())
            .unwrap_or_else(|| "us-east-1".into());
        builder = builder.region(&region);
        if !spec.path_style {
            builder = builder.enable_virtual_host_style();
        }
        let multipart = super::s3_multipart::Multipart::new(
            client,
            transport.clone(),
            ProvideCredentialChain::new().push(credential_chain()?),
            &super::s3_multipart::Bucket {
                endpoint: spec.endpoint.as_deref(),
                bucket: &spec.bucket,
                prefix: &spec.prefix,
                path_style: spec.path_style,
            },
            &region,
        )?;
        let op = Operator::new(builder)
            .map_err(|e| anyhow!("backend {}: {}", spec.describe(), short(&e)))?
            .with_context(OperationContext::new().with_http_transport(transport))
            // Timeout inside retry: each attempt is bounded, the retry state survives.
            .layer(
                TimeoutLayer::new()
                    .with_timeout(transfer.connect + transfer.stall)
                    .with_io_timeout(transfer.stall),
            )
            .layer(
                super::retry::Policy::new(transfer.retries)
                    .opendal_layer()
                    .with_notify(|ev: opendal::layers::RetryEvent<'_>| {
                        super::retry_log::note(&format!(
                            "{} failed ({}); retry {} in {:.1} s",
                            ev.op,
                            short(ev.err),
                            ev.attempt,
                            ev.retry_after.as_secs_f64()
                        ));
                    }),
            )
            // And one bound outside the retries: a store that accepts connections and never
            // answers costs one more stall timeout at most, not one per retry.
            .layer(
                TimeoutLayer::new()
                    .with_timeout(transfer.connect + 2 * transfer.stall)
                    .with_io_timeout(2 * transfer.stall),
            );
        Ok(S3Backend {
            spec: spec.clone(),
            op,
            overall: transfer.overall,
            concurrency: transfer.concurrency,
            chunk: transfer.chunk_size,
            retries: transfer.retries,
            multipart,
        })
    }
}

/// An OpenDAL error in a few plain words: the HTTP status and the server's code and
/// message when there was a response, the cause when there was none. Never the request
/// headers; redacted.
fn detail(e: &opendal::Error) -> String {
    let status = http_status(e);
    let field = |name: &str| {
        let m = e.message();
        let start = m.find(&format!("{name}: \""))? + name.len() + 3;
        let end = m[start..].find('"')? + start;
        Some(m[start..end].to_string()).filter(|s| !s.is_empty())
    };
    let mut out = match status {
        Some(s) => {
            let mut o = format!("HTTP {}", s.as_u16());
            if let Some(code) = field("code") {
                o.push_str(&format!(" {code}"));
            }
            if let Some(msg) = field("message") {
                o.push_str(&format!(": {msg}"));
            }
            o
        }
        None => e.message().to_string(),
    };
    let mut source = std::error::Error::source(e);
    let mut causes: Vec<String> = Vec::new();
    while let Some(s) = source {
        let t = s.to_string();
        if !causes.iter().any(|c| c.contains(&t)) {
            causes.push(t);
        }
        source = s.source();
    }
    if let Some(last) = causes.last() {
        out.push_str(&format!(": {last}"));
    }
    if no_credentials() {
        out.push_str(
            " (no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity with AWS_ROLE_ARN and CACHEGATE_S3_WEB_IDENTITY_TOKEN)",
        );
    }
    redact::redact(&out)
}

/// The HTTP status of the response an error came from, from the `response` context
/// OpenDAL attaches to every error made of a response (it has no accessor for its context,
/// only its Display shows it).
fn http_status(e: &opendal::Error) -> Option<StatusCode> {
    let full = e.to_string();
    let at = full.find("response: ")?;
    let rest = &full[at..];
    let digits = rest.get(rest.find("status: ")? + 8..)?.get(..3)?;
    StatusCode::from_bytes(digits.as_bytes()).ok()
}

/// `detail` with what kind of failure it was in front.
fn short(e: &opendal::Error) -> String {
    let kind = match e.kind() {
        ErrorKind::NotFound => "not found",
        ErrorKind::PermissionDenied => "access denied",
        ErrorKind::ConfigInvalid => "bad configuration",
        ErrorKind::RateLimited => "rate limited",
        ErrorKind::ConditionNotMatch => "condition not met",
        _ => return detail(e),
    };
    format!("{kind} ({})", detail(e))
}

fn store_error(e: opendal::Error) -> StoreError {
    match e.kind() {
        ErrorKind::NotFound => StoreError::NotFound,
        ErrorKind::AlreadyExists | ErrorKind::ConditionNotMatch => StoreError::Exists,
        _ if no_credentials() => StoreError::NoCredentials(anyhow!(detail(&e))),
        // StoreError::Auth says "access denied" itself.
        ErrorKind::PermissionDenied => StoreError::Auth(anyhow!(detail(&e))),
        // OpenDAL's S3 service calls only 403 PermissionDenied; a 401 (a store that wants
        // credentials it was not given, as Garage answers) is refused credentials too.
        _ if http_status(&e) == Some(StatusCode::UNAUTHORIZED) => {
            StoreError::Auth(anyhow!(detail(&e)))
        }
        _ => StoreError::Other(anyhow!(short(&e))),
    }
}

fn io_error(e: opendal::Error) -> io::Error {
    io::Error::other(short(&e))
}

/// OpenDAL's std reader wraps its error in an `io::Error`: unwrap it, so it is shortened
/// and redacted like every other.
fn unwrap_io(e: io::Error) -> StoreError {
    let kind = e.kind();
    match e.into_inner().map(|i| i.downcast::<opendal::Error>()) {
        Some(Ok(oe)) => store_error(*oe),
        Some(Err(other)) => StoreError::Other(anyhow!(redact::redact(&other.to_string()))),
        None => StoreError::Other(io::Error::from(kind).into()),
    }
}

/// Streams the object; gives up once the whole transfer has taken longer than `overall`.
struct S3Reader {
    inner: opendal::blocking::StdReader,
    /// The first bytes, read when the download was opened.
    head: io::Cursor<Vec<u8>>,
    deadline: Instant,
}

impl S3Reader {
    /// OpenDAL sends the request on the first read: make it here (up to `first` bytes), so
    /// a refusal or a missing object shows when the download is opened, not midway.
    fn open(
        mut inner: opendal::blocking::StdReader,
        first: u64,
        overall: Duration,
    ) -> io::Result<S3Reader> {
        let mut head = vec![0u8; first.min(64 << 10) as usize];
        let n = inner.read(&mut head)?;
        head.truncate(n);
        Ok(S3Reader {
            inner,
            head: io::Cursor::new(head),
            deadline: Instant::now() + overall,
        })
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "download took longer than --timeout",
            ));
        }
        let _g = runtime().enter();
        self.inner.read(buf).map_err(range_error)
    }
}

/// A read error of a download, in plain words; a failed `If-Match` says what it means.
fn range_error(e: io::Error) -> io::Error {
    let replaced = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<opendal::Error>())
        .is_some_and(|oe| oe.kind() == ErrorKind::ConditionNotMatch);
    if replaced {
        io::Error::other(
            "the archive was replaced during the download (HTTP 412 on If-Match), so its parts cannot be joined",
        )
    } else {
        io::Error::other(unwrap_io(e).to_string())
    }
}

/// Ranges of one object version: each a GET of its own with `If-Match` on the ETag the HEAD
/// saw (the retry layer retries the request; `ranged` takes up a body that breaks off).
struct S3Ranges {
    op: opendal::blocking::Operator,
    name: String,
    etag: Option<String>,
    overall: Duration,
}

impl super::ranged::Ranges for S3Ranges {
    fn open(&self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, RangeError> {
        let _g = runtime().enter();
        let opts = opendal::options::ReaderOptions {
            if_match: self.etag.clone(),
            ..Default::default()
        };
        let inner = self
            .op
            .reader_options(&self.name, opts)
            .and_then(|r| r.into_std_read(start..end))
            .map_err(|e| RangeError::Final(io_error(e)))?;
        // A refusal of the request itself is final.
        let reader = S3Reader::open(inner, end - start, self.overall)
            .map_err(|e| RangeError::Final(range_error(e)))?;
        Ok(Box::new(reader))
    }

    fn describe(&self) -> String {
        format!("GET {}", self.name)
    }
}

/// A multipart upload with several parts in flight; invisible until `finish`, aborted
/// (its parts deleted) when dropped unfinished.
struct S3Upload {
    writer: Option<opendal::Writer>,
    buf: Vec<u8>,
    deadline: Instant,
}

impl S3Upload {
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "upload took longer than --timeout",
            ));
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(1 << 20));
        let w = self.writer.as_mut().expect("writer present until finish");
        block(w.write(data)).map_err(io_error)
    }
}

impl Write for S3Upload {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 1 << 20 {
            self.flush_buf()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        self.flush_buf().map_err(|e| StoreError::Other(e.into()))?;
        let mut w = self.writer.take().expect("writer present until finish");
        match block(w.close()) {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = block(w.abort());
                Err(store_error(e))
            }
        }
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if let Some(mut w) = self.writer.take() {
            let _ = block(w.abort());
        }
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    fn stat(&self, name: &ObjectName) -> StoreResult<u64> {
        let meta = block(self.op.stat(&name.to_string())).map_err(store_error)?;
        Ok(meta.content_length())
    }

    fn get(&self, name: &ObjectName) -> StoreResult<Box<dyn Read + Send>> {
        let _g = runtime().enter();
        let blocking = opendal::blocking::Operator::new(self.op.clone()).map_err(store_error)?;
        // An unbounded range without chunking is one GET, no HEAD first.
        let inner = blocking
            .reader(&name.to_string())
            .and_then(|r| r.into_std_read(..))
            .map_err(store_error)?;
        // A missing object is `NotFound` (a broken entry) rather than a failed transfer.
        let reader = S3Reader::open(inner, u64::MAX, self.overall).map_err(unwrap_io)?;
        Ok(Box::new(reader))
    }

    /// A large archive through `ranged`: a HEAD gives the size and ETag, then
    /// `--concurrency` ranged GETs of `--chunk-size` are in flight, delivered in order, each
    /// taken up again where it broke off, and each bound to that ETag (`If-Match`), so an
    /// object replaced midway fails with 412 instead of splicing two versions.
    fn get_archive(
        &self,
        name: &ObjectName,
        size: u64,
        _blake3: &str,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        if self.concurrency <= 1 || size <= self.chunk as u64 {
            return self.get(name);
        }
        let (chunk, concurrency, sums) =
            super::ranged::plan(self.chunk as u64, self.concurrency, size, chunks);
        let meta = block(self.op.stat(&name.to_string())).map_err(store_error)?;
        let _g = runtime().enter();
        let ranges = Arc::new(S3Ranges {
            op: opendal::blocking::Operator::new(self.op.clone()).map_err(store_error)?,
            name: name.to_string(),
            etag: meta.etag().map(str::to_string),
            overall: self.overall,
        });
        Ok(super::ranged::parallel(
            ranges,
            None,
            super::ranged::Split {
                total: meta.content_length(),
                chunk,
                concurrency,
                retries: self.retries,
                deadline: Instant::now() + self.overall,
            },
            sums.filter(|_| meta.content_length() == size),
        ))
    }

    fn get_small(&self, name: &ObjectName) -> StoreResult<Vec<u8>> {
        let buf = block(self.op.read(&name.to_string())).map_err(store_error)?;
        Ok(buf.to_vec())
    }

    fn put(&self, name: &ObjectName) -> StoreResult<Box<dyn Upload>> {
        // OpenDAL holds the part being filled and one queued besides those uploading: with
        // two fewer uploading, `--concurrency` parts are all the memory a save takes, as
        // `--concurrency` chunks are all a download holds.
        let opts = WriteOptions {
            concurrent: self.concurrency.saturating_sub(2).max(1),
            chunk: Some(self.chunk.max(MIN_PART_SIZE)),
            ..Default::default()
        };
        let writer = block(self.op.writer_options(&name.to_string(), opts)).map_err(store_error)?;
        Ok(Box::new(S3Upload {
            writer: Some(writer),
            buf: Vec::with_capacity(1 << 20),
            deadline: Instant::now() + self.overall,
        }))
    }

    /// `If-None-Match: *` makes this atomic where the server honours it (AWS S3, MinIO,
    /// R2, Ceph). Servers that ignore the header (Garage 2.x) would overwrite instead, so
    /// the object is checked first (HEAD) and read back after: if it holds another
    /// writer's bytes, that writer won. The race left is two writers that both pass the
    /// HEAD and whose PUTs both land before either reads back; then the later one wins,
    /// the earlier one's archive is left unreferenced (`prune` removes it), and readers
    /// see one complete entry or the other, never a partial one.
    fn create_if_absent(&self, name: &ObjectName, data: &[u8]) -> StoreResult<()> {
        match self.stat(name) {
            Ok(_) => return Err(StoreError::Exists),
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let opts = WriteOptions {
            if_not_exists: true,
            ..Default::default()
        };
        block(
            self.op
                .write_options(&name.to_string(), data.to_vec(), opts),
        )
        .map_err(store_error)?;
        match self.get_small(name) {
            Ok(back) if back == data => Ok(()),
            Ok(_) => Err(StoreError::Exists),
            Err(e) => Err(e),
        }
    }

    /// OpenDAL's lister fetches a page (1,000 keys) at a time as the iteration needs it, in
    /// S3's key order.
    fn list_each(
        &self,
        prefix: &str,
        each: &mut dyn FnMut(ObjectMeta) -> StoreResult<()>,
    ) -> StoreResult<()> {
        // OpenDAL lists "directories": list from the deepest one the prefix names.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let opts = opendal::options::ListOptions {
            recursive: true,
            ..Default::default()
        };
        let _g = runtime().enter();
        let blocking = opendal::blocking::Operator::new(self.op.clone()).map_err(store_error)?;
        for entry in blocking.lister_options(dir, opts).map_err(store_error)? {
            let e = entry.map_err(store_error)?;
            if !e.metadata().is_file() || !e.path().starts_with(prefix) {
                continue;
            }
            each(ObjectMeta {
                name: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e
                    .metadata()
                    .last_modified()
                    .map(|t| t.into_inner().as_second().max(0) as u64),
            })?;
        }
        Ok(())
    }

    /// S3 answers a listing of a missing prefix with an empty page, of a missing bucket
    /// with 404 NoSuchBucket.
    fn check_root(&self) -> StoreResult<()> {
        let _g = runtime().enter();
        let blocking = opendal::blocking::Operator::new(self.op.clone()).map_err(store_error)?;
        let opts = opendal::options::ListOptions {
            limit: Some(1),
            ..Default::default()
        };
        let first = blocking
            .lister_options("", opts)
            .and_then(|mut l| l.next().transpose());
        match first {
            Ok(_) => Ok(()),
            // OpenDAL calls NoSuchBucket a bad configuration; it is, and this one is named.
            Err(e) if e.kind() == ErrorKind::NotFound || detail(&e).contains("NoSuchBucket") => {
                Err(StoreError::Other(anyhow!(
                    "the bucket {:?} does not exist at this endpoint (404); create it, or point --backend at an existing bucket",
                    self.spec.bucket
                )))
            }
            Err(e) => Err(store_error(e)),
        }
    }

    fn delete(&self, name: &ObjectName) -> StoreResult<()> {
        match block(self.op.delete(&name.to_string())) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    fn incomplete_uploads(&self, prefix: &str) -> StoreResult<Vec<super::IncompleteUpload>> {
        block(self.multipart.list(prefix))
    }

    fn abort_upload(&self, upload: &super::IncompleteUpload) -> StoreResult<()> {
        block(self.multipart.abort(upload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OpenDAL error as its S3 service makes one of a response with `status`.
    fn answered(status: u16, message: &str) -> opendal::Error {
        let (parts, ()) = http::Response::builder()
            .status(status)
            .body(())
            .unwrap()
            .into_parts();
        opendal::Error::new(ErrorKind::Unexpected, message)
            .with_context("service_operation", "read")
            .with_context("response", format!("{parts:?}"))
    }

    #[test]
    fn a_401_is_refused_credentials_whatever_the_kind_opendal_gave_it() {
        let e = answered(401, "status: 500 in the server's words");
        assert_eq!(http_status(&e), Some(StatusCode::UNAUTHORIZED));
        assert!(detail(&e).starts_with("HTTP 401"), "{}", detail(&e));
        assert!(matches!(store_error(e), StoreError::Auth(_)));
        assert!(matches!(
            store_error(answered(500, "")),
            StoreError::Other(_)
        ));
        assert_eq!(
            http_status(&opendal::Error::new(ErrorKind::Unexpected, "no answer")),
            None
        );
    }

    #[test]
    fn parses_bucket_prefix_and_options() {
        let s =
            S3Spec::parse("ci-cache/cg/x/?endpoint=http%3A%2F%2F127.0.0.1%3A3900&region=garage")
                .unwrap();
        assert_eq!(s.bucket, "ci-cache");
        assert_eq!(s.prefix, "cg/x");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.region.as_deref(), Some("garage"));
        assert!(s.path_style, "an endpoint implies path style");
        assert_eq!(s.describe(), "s3://ci-cache/cg/x");

        let s = S3Spec::parse("bucket").unwrap();
        assert_eq!((s.prefix.as_str(), s.path_style), ("", false));
        assert!(S3Spec::parse("bucket?path_style=true").unwrap().path_style);
        assert!(
            !S3Spec::parse("bucket?endpoint=https://e&path_style=false")
                .unwrap()
                .path_style
        );
    }

    #[test]
    fn rejects_bad_values_naming_them() {
        for (bad, says) in [
            ("B", "\"B\" is not a bucket name"),
            ("bucket/a/../b", "'..'"),
            ("bucket?endpoint=ftp://x", "must start with http"),
            ("bucket?colour=blue", "unknown parameter \"colour\""),
            ("bucket?path_style=maybe", "path_style=\"maybe\""),
            ("bucket?region=eu%zz", "the value of region is not valid"),
            ("bucket?region=eu%4", "the value of region is not valid"),
            ("AKIA:secret@bucket/x", "carries credentials"),
            (
                "bucket?endpoint=https://AKIA:secret@host",
                "carries credentials",
            ),
        ] {
            let err = S3Spec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("secret@"), "{err}");
        }
    }
}
