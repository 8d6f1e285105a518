//! HTTP transfers shared by the `http` and `gitlab` stores: connect, stall and overall
//! timeouts, bounded retries with jitter (connection errors, 5xx, 429 with `Retry-After`),
//! redirects followed by hand so credentials only ever go to the origin they were given for,
//! and streaming uploads through a bounded pipe so an archive is never held in memory.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use reqwest::blocking::{Body, Client, Response};
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, HeaderName, HeaderValue, IF_MATCH, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED, LOCATION, RANGE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode, Url};

use super::ranged::RangeError;
use super::retry::{self, Verdict};
use super::{StoreError, StoreResult, Transfer, Upload};
use crate::pipe::{self, PipeWriter, SendError};
use crate::redact;

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Bytes an upload may have queued ahead of the network.
const PIPE_CAPACITY: usize = 1 << 20;

/// A client for one store: its credentials go to `origin` and nowhere else.
#[derive(Clone)]
pub struct Transport {
    /// Shared by the clones; `reconnect` swaps in a client with no kept-alive connections.
    client: Arc<std::sync::Mutex<Client>>,
    transfer: Transfer,
    origin: Origin,
    /// Headers that carry credentials (Authorization, JOB-TOKEN, PRIVATE-TOKEN, ...).
    auth: HeaderMap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin(String, String, Option<u16>);

impl Origin {
    fn of(url: &Url) -> Origin {
        Origin(
            url.scheme().to_string(),
            url.host_str().unwrap_or("").to_ascii_lowercase(),
            url.port_or_known_default(),
        )
    }
}

/// An HTTP client with the store's connect timeout and a connection pool of its own.
fn build_client(transfer: &Transfer) -> anyhow::Result<Client> {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let builder = || {
        Client::builder()
            .connect_timeout(transfer.connect)
            // Every request sets its own timeout: the stall bound for small requests and
            // downloads (it applies to each read), the overall bound for uploads.
            .timeout(None)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cachegate/", env!("CARGO_PKG_VERSION")))
    };
    // An image without CA certificates (debian:*-slim, an empty chroot) gives the platform
    // verifier no roots and the build fails. http:// stores need none; https:// ones then
    // fail per request (unknown issuer), which is cache trouble, not a failed job.
    builder()
        .build()
        .or_else(|_| builder().tls_certs_only(Vec::new()).build())
        .map_err(|e| anyhow!("cannot set up an HTTP client: {e}"))
}

/// A credential header; its value is registered for redaction and marked sensitive so no
/// debug output of a request shows it.
pub fn secret_header(name: &'static str, value: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    redact::register(value);
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| anyhow!("the {name} credential contains characters a header cannot carry"))?;
    v.set_sensitive(true);
    Ok((HeaderName::from_static(name), v))
}

/// `Authorization: Basic ...` for a user and password.
pub fn basic_auth(user: &str, password: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    use base64::Engine as _;
    redact::register(password);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    redact::register(&token);
    secret_header("authorization", &format!("Basic {token}"))
}

impl Transport {
    pub fn new(transfer: &Transfer, origin: &Url, auth: HeaderMap) -> anyhow::Result<Transport> {
        Ok(Transport {
            client: Arc::new(std::sync::Mutex::new(build_client(transfer)?)),
            transfer: transfer.clone(),
            origin: Origin::of(origin),
            auth,
        })
    }

    fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forget the kept-alive connections: the next request opens a new one (a second read
    /// after bytes arrived damaged must not ride the same connection).
    pub fn reconnect(&self) {
        if let Ok(fresh) = build_client(&self.transfer) {
            *self.client.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        }
    }

    /// Send a request whose body (if any) can be replayed: redirects are followed, and
    /// connection errors, 5xx and 429 are retried within the bounds. Returns the final
    /// response whatever its status; `check` maps statuses to errors.
    pub fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> StoreResult<Response> {
        let start = Instant::now();
        let deadline = start + self.transfer.overall;
        let stall = self.transfer.stall;
        // A store that accepts connections and never answers would cost every attempt a
        // whole stall timeout; after the first silence the rest of the request shares one
        // more, so no answer at all costs twice the stall timeout, whatever `--retries` is.
        let silent_until: Mutex<Option<Instant>> = Mutex::new(None);
        let silent = || *silent_until.lock().unwrap_or_else(|e| e.into_inner());
        let mut attempts = 0u32;
        let outcome = retry::Policy::new(self.transfer.retries).run(
            || {
                attempts += 1;
                let timeout = silent().map_or(stall, |until| {
                    until.saturating_duration_since(Instant::now())
                });
                match self.follow(method.clone(), url.clone(), headers, body, timeout) {
                    Ok(resp) if retryable(resp.status()) => Err(Attempt::Refused(Box::new(resp))),
                    Ok(resp) => Ok(resp),
                    Err(failure) => Err(Attempt::Failed(failure)),
                }
            },
            |e| match e {
                Attempt::Refused(resp) => {
                    retry_after(resp.headers()).map_or(Verdict::Retry, Verdict::RetryAfter)
                }
                Attempt::Failed(Failure::Transient(e)) => {
                    if is_silence(e) {
                        silent_until
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(start + 2 * stall);
                    }
                    Verdict::Retry
                }
                Attempt::Failed(Failure::Final(_)) => Verdict::Final,
            },
            |wait| {
                Instant::now() + wait < deadline
                    // An attempt with less than a quarter of a stall timeout left would be a
                    // timeout decided in advance.
                    && silent().is_none_or(|until| Instant::now() + wait + stall / 4 < until)
            },
            |_, _| {},
        );
        let e = match outcome {
            // The final response whatever its status: `check` maps it.
            Ok(resp) => return Ok(resp),
            Err(Attempt::Refused(resp)) => return Ok(*resp),
            Err(Attempt::Failed(Failure::Transient(e) | Failure::Final(e))) => e,
        };
        let tries = if attempts <= 1 {
            String::new()
        } else {
            format!(" (after {attempts} attempts)")
        };
        let msg = anyhow!(
            "{}{tries}",
            redact::redact(&format!("{method} {}: {e:#}", display_url(url)))
        );
        Err(if is_silence(&e) {
            StoreError::Timeout(msg)
        } else {
            StoreError::Other(msg)
        })
    }

    /// DELETE, where an object that is already gone counts as deleted.
    pub fn delete(&self, url: &Url) -> StoreResult<()> {
        match self.send_ok(Method::DELETE, url, &HeaderMap::new(), None) {
            Ok(_) | Err(StoreError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `send`, then map the status: 2xx is the response, everything else an error.
    pub fn send_ok(
        &self,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<&[u8]>,
    ) -> StoreResult<Response> {
        let resp = self.send(method.clone(), url, headers, body)?;
        check(&method, url, resp)
    }

    /// One attempt, following redirects. Credentials go along only while the URL stays on
    /// the store's origin: a registry that redirects to object storage must not receive
    /// them there (reqwest strips Authorization on its own, but not JOB-TOKEN and friends).
    fn follow(
        &self,
        mut method: Method,
        mut url: Url,
        headers: &HeaderMap,
        mut body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Response, Failure> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .client()
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if Origin::of(&url) == self.origin {
                req = req.headers(self.auth.clone());
            }
            if let Some(b) = body {
                req = req.body(b.to_vec());
            }
            let resp = req.send().map_err(|e| failure(e, &self.transfer))?;
            let status = resp.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            else {
                return Ok(resp);
            };
            if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        Err(Failure::Final(anyhow!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    /// Start a streaming request (PUT or POST) whose body is written through the returned
    /// upload. Not retried and redirects are not followed: the stream cannot be replayed.
    pub fn upload(&self, method: Method, url: &Url, headers: &HeaderMap) -> Box<dyn Upload> {
        let (writer, reader) = pipe::pipe(PIPE_CAPACITY);
        let mut req = self
            .client()
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .timeout(self.transfer.overall)
            .body(Body::new(reader));
        if Origin::of(url) == self.origin {
            req = req.headers(self.auth.clone());
        }
        let what = format!("{method} {}", display_url(url));
        let url = url.clone();
        let transfer = self.transfer.clone();
        let thread = std::thread::spawn(move || -> StoreResult<()> {
            let resp = req.send().map_err(|e| {
                let (Failure::Transient(why) | Failure::Final(why)) = failure(e, &transfer);
                StoreError::Other(anyhow!(redact::redact(&format!("{what}: {why:#}"))))
            })?;
            match check(&method, &url, resp) {
                Ok(_) => Ok(()),
                // Nothing to create at that place: the base URL is wrong, not a miss.
                Err(StoreError::NotFound) => Err(StoreError::Other(anyhow!(
                    "{what} answered 404 Not Found; is the --backend URL right?"
                ))),
                Err(e) => Err(e),
            }
        });
        Box::new(StreamUpload {
            writer: Some(writer.with_stall(self.transfer.stall)),
            thread: Some(thread),
        })
    }

    /// Download an object of `size` bytes (as its manifest says). Up to one chunk it is one
    /// plain GET; larger, the first request asks for the first chunk, and a server that
    /// answers 206 gets the rest as parallel ranges bound to the first response's version,
    /// while that first body streams on as the first chunk. A server that ignores `Range`
    /// (200) is read as one stream.
    /// With `chunks` (the manifest's range digests), ranges are cut to whole pieces of
    /// theirs and each is checked (`ranged::plan`).
    pub fn download(
        &self,
        url: &Url,
        size: u64,
        chunks: Option<&crate::entry::ChunkDigests>,
    ) -> StoreResult<Box<dyn Read + Send>> {
        if self.transfer.concurrency <= 1 || size <= self.transfer.chunk_size as u64 {
            let resp = self.send_ok(Method::GET, url, &HeaderMap::new(), None)?;
            return Ok(self.bounded(resp));
        }
        let (chunk, concurrency, sums) = super::ranged::plan(
            self.transfer.chunk_size as u64,
            self.transfer.concurrency,
            size,
            chunks,
        );
        let mut h = HeaderMap::new();
        h.insert(RANGE, range_header(0, chunk));
        let resp = self.send_ok(Method::GET, url, &h, None)?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Ok(self.bounded(resp));
        }
        let total = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('/').next()?.parse::<u64>().ok())
            .unwrap_or(size);
        let ranges = Arc::new(RangeGet {
            transport: self.clone(),
            url: url.clone(),
            condition: condition(resp.headers()),
        });
        Ok(super::ranged::parallel(
            ranges,
            Some(self.bounded(resp)),
            super::ranged::Split {
                total,
                chunk,
                concurrency,
                retries: self.transfer.retries,
                deadline: Instant::now() + self.transfer.overall,
            },
            sums.filter(|_| total == size),
        ))
    }

    /// Wrap a download so it cannot take longer than the overall bound.
    pub fn bounded(&self, resp: Response) -> Box<dyn Read + Send> {
        Box::new(Deadline {
            inner: resp,
            until: Instant::now() + self.transfer.overall,
            stall: self.transfer.stall,
        })
    }
}

/// `Range: bytes=start-(start+len-1)`.
fn range_header(start: u64, len: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("bytes={start}-{}", start + len - 1))
        .expect("digits and a dash are a valid header value")
}

/// What binds later ranges to the version the first response came from: its strong ETag,
/// else its Last-Modified date, else nothing (the digest check still catches a splice).
fn condition(h: &HeaderMap) -> Option<(HeaderName, HeaderValue)> {
    match (h.get(ETAG), h.get(LAST_MODIFIED)) {
        (Some(etag), _) if !etag.as_bytes().starts_with(b"W/") => Some((IF_MATCH, etag.clone())),
        (_, Some(date)) => Some((IF_UNMODIFIED_SINCE, date.clone())),
        _ => None,
    }
}

/// Ranges of one object version over HTTP.
struct RangeGet {
    transport: Transport,
    url: Url,
    condition: Option<(HeaderName, HeaderValue)>,
}

impl super::ranged::Ranges for RangeGet {
    /// `send` has retried connection errors, 5xx and 429; what is left is final, and so is
    /// anything but a 206 for the range asked (412: the archive was replaced).
    fn open(&self, start: u64, end: u64) -> Result<Box<dyn Read + Send>, RangeError> {
        let mut h = HeaderMap::new();
        h.insert(RANGE, range_header(start, end - start));
        if let Some((k, v)) = &self.condition {
            h.insert(k.clone(), v.clone());
        }
        let url = &self.url;
        let fail = |msg: String| RangeError::Final(io::Error::other(msg));
        let resp = self
            .transport
            .send(Method::GET, url, &h, None)
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::PRECONDITION_FAILED {
            return Err(fail(format!(
                "GET {} answered 412 Precondition Failed: the archive was replaced during the download, so its parts cannot be joined",
                display_url(url)
            )));
        }
        if status != StatusCode::PARTIAL_CONTENT {
            return Err(fail(match check(&Method::GET, url, resp) {
                Err(e) => e.to_string(),
                Ok(_) => format!(
                    "GET {} answered {status} to a range request it had honoured before",
                    display_url(url)
                ),
            }));
        }
        let starts_right = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with(&format!("bytes {start}-")));
        if !starts_right {
            return Err(fail(format!(
                "GET {} answered a range other than the one asked for (bytes {start}-{})",
                display_url(url),
                end - 1
            )));
        }
        Ok(self.transport.bounded(resp))
    }

    fn describe(&self) -> String {
        format!("GET {}", display_url(&self.url))
    }
    fn reconnect(&self) {
        self.transport.reconnect();
    }
}

/// A short reason for a failed request: reqwest's own message repeats the URL and
/// wraps the cause in layers; people need the cause.
fn failure(e: reqwest::Error, transfer: &Transfer) -> Failure {
    let mut root: &dyn std::error::Error = &e;
    while let Some(next) = root.source() {
        root = next;
    }
    let tls = caused_by::<rustls::Error>(&e);
    // A certificate the system does not trust will not be trusted on the next try.
    if tls {
        return Failure::Final(anyhow!(
            "TLS failed: {root} (a private CA can be given with SSL_CERT_FILE)"
        ));
    }
    // Timeouts carry an io::Error of kind TimedOut, so the final error can say which it was.
    let timeout = |why: String| anyhow::Error::from(io::Error::new(io::ErrorKind::TimedOut, why));
    let reason = if e.is_connect() && e.is_timeout() {
        timeout(format!(
            "no connection within {} s (--connect-timeout)",
            transfer.connect.as_secs()
        ))
    } else if e.is_timeout() {
        timeout(format!(
            "no answer within {} s (--stall-timeout)",
            transfer.stall.as_secs()
        ))
    } else if e.is_connect() {
        anyhow!("cannot connect: {root}")
    } else {
        anyhow!("{root}")
    };
    // A connect timeout is not retried: the kernel already resent the SYN within it, and
    // an unreachable store must cost a job one connect timeout, not several.
    if e.is_connect() && e.is_timeout() {
        Failure::Final(reason)
    } else if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() {
        Failure::Transient(reason)
    } else {
        Failure::Final(reason)
    }
}

/// A request that timed out waiting for an answer (not for a connection: that is final).
fn is_silence(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|i| i.kind() == io::ErrorKind::TimedOut)
}

/// Whether an error of type `T` is somewhere in the chain, also inside `io::Error`s (whose
/// `source` skips the error they wrap).
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<T>() {
            return true;
        }
        cur = match err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

enum Failure {
    /// Worth another attempt: the connection failed or timed out.
    Transient(anyhow::Error),
    Final(anyhow::Error),
}

/// An attempt that did not end in an answer to keep.
enum Attempt {
    /// The server answered 5xx or 429: worth another attempt, else the answer.
    Refused(Box<Response>),
    Failed(Failure),
}

fn retryable(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = parse_http_date(v)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
            Duration::from_secs(at.saturating_sub(now))
        }
    };
    Some(wait)
}

/// A URL for messages: no userinfo, no query (it may carry a presigned signature).
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}

/// Map a response status to the store's errors: 404 is a plain miss, 401/403 refused
/// credentials (never retried), anything else non-2xx is trouble.
pub fn check(method: &Method, url: &Url, resp: Response) -> StoreResult<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(StoreError::NotFound);
    }
    Err(status_error(method, url, status, &body_text(resp)))
}

/// The error for a non-2xx status other than 404, with the server's own words.
pub fn status_error(method: &Method, url: &Url, status: StatusCode, body: &str) -> StoreError {
    let what = format!("{method} {} answered {status}", display_url(url));
    let msg = anyhow!(redact::redact(&format!("{what}{}", snippet(body))));
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => StoreError::Auth(msg),
        StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => StoreError::Exists,
        _ => StoreError::Other(msg),
    }
}

/// The start of an error body.
pub fn body_text(resp: Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.take(4096).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The first line of an error body, short, for the warning.
fn snippet(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('<'))
        .unwrap_or("");
    if line.is_empty() {
        String::new()
    } else {
        format!(": {}", line.chars().take(160).collect::<String>())
    }
}

struct Deadline {
    inner: Response,
    until: Instant,
    stall: Duration,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the download took longer than --timeout",
            ));
        }
        self.inner.read(buf).map_err(|e| {
            let timed_out = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
                .is_some_and(reqwest::Error::is_timeout);
            if timed_out {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the download stalled: no data for {} s (--stall-timeout)",
                        self.stall.as_secs()
                    ),
                )
            } else {
                e
            }
        })
    }
}

/// An upload: the archive is written into the pipe the request body reads from.
struct StreamUpload {
    writer: Option<PipeWriter>,
    thread: Option<JoinHandle<StoreResult<()>>>,
}

impl StreamUpload {
    /// The request's own outcome, once its thread is done.
    fn outcome(&mut self) -> StoreResult<()> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Other(anyhow!("the upload thread panicked"))),
            None => Err(StoreError::Other(anyhow!("the upload already ended"))),
        }
    }
}

impl Write for StreamUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(writer) = &self.writer else {
            return Err(io::Error::other("the upload already ended"));
        };
        // At most the pipe's capacity per call, so one huge write cannot defeat the bound.
        let n = buf.len().min(PIPE_CAPACITY);
        match writer.send(buf[..n].to_vec()) {
            Ok(()) => Ok(n),
            Err(SendError::Stalled(stall)) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the upload stalled: no progress for {} s (--stall-timeout)",
                    stall.as_secs()
                ),
            )),
            // The server answered before the body was complete: say what it answered.
            Err(SendError::ReaderGone) => {
                self.writer = None;
                let why = match self.outcome() {
                    Err(e) => format!("{e}"),
                    Ok(()) => "the server ended the upload early".to_string(),
                };
                Err(io::Error::other(why))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for StreamUpload {
    fn finish(mut self: Box<Self>) -> StoreResult<()> {
        if let Some(w) = self.writer.take() {
            w.close();
        }
        self.outcome()
    }
}

impl Drop for StreamUpload {
    fn drop(&mut self) {
        if self.thread.take().is_some() {
            // The body errors out at its next read, so the server discards the partial
            // object. The thread is not joined: a server that stopped reading would hold
            // the job until the overall timeout, and process exit ends the request anyway.
            if let Some(w) = self.writer.take() {
                w.fail("upload abandoned".into());
            }
        }
    }
}

fn epoch_seconds(t: jiff::Timestamp) -> Option<u64> {
    u64::try_from(t.as_second()).ok()
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as in `Retry-After`, `Last-Modified`
/// and nginx's JSON directory listings.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(s.trim())
        .ok()?;
    epoch_seconds(t)
}

/// An ISO 8601 timestamp (`2019-11-27T03:37:38.711Z`), as in GitLab's API; one without an
/// offset is taken as UTC.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let t = match s.trim().parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => s
            .trim()
            .parse::<jiff::civil::DateTime>()
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()?
            .timestamp(),
    };
    epoch_seconds(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_iso8601("1994-11-06T08:49:37.711Z"), Some(784111777));
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("1994-11-06T09:49:37+01:00"), Some(784111777));
        assert_eq!(parse_iso8601("1994-11-06T08:49:37"), Some(784111777));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn urls_for_messages_carry_no_credentials() {
        let u = Url::parse("https://u:pw@host.example/a/b?X-Amz-Signature=s").unwrap();
        assert_eq!(display_url(&u), "https://host.example/a/b");
    }
}
