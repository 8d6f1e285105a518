//! An emulator of GitLab's generic package registry API (GitLab cannot run here), written
//! from the documented API: generic upload/download, the packages and package-files lists
//! with GitLab's pagination headers, deletes, JOB-TOKEN/PRIVATE-TOKEN auth and GitLab's JSON
//! error bodies. Hooks inject the faults the tests need; a second listener plays the object
//! storage GitLab redirects downloads to, and records what it was sent.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Store;

/// One request as the emulator saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: String) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into_bytes(),
        }
    }
    fn message(status: u16, text: &str) -> Response {
        Response::json(status, format!(r#"{{"message":"{status} {text}"}}"#))
    }
    fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A tiny HTTP/1.1 server on a free loopback port: one request per connection.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &h);
                });
            }
        });
        Server { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(conn: TcpStream, handler: &Handler) -> std::io::Result<()> {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let req = Request {
        method: method.clone(),
        path: path.to_string(),
        query,
        headers,
        body,
    };
    let resp = handler(req);
    let mut out = conn;
    let reason = match resp.status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    // A HEAD answer may carry the length of the body it stands for.
    if !resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    out.write_all(head.as_bytes())?;
    if method != "HEAD" {
        out.write_all(&resp.body)?;
    }
    out.flush()
}

/// What object storage answers a GET: `If-Match` against the ETag (412 when it differs) and
/// a single `Range: bytes=a-b` (206 with `Content-Range`), else the whole object.
fn ranged(req: &Request, etag: &str, data: &[u8]) -> Response {
    if req.header("if-match").is_some_and(|m| m != etag) {
        return Response::empty(412);
    }
    let mut headers = vec![("ETag".to_string(), etag.to_string())];
    let range = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .filter(|(a, b)| a <= b && *a < data.len());
    match range {
        Some((a, b)) => {
            let b = b.min(data.len() - 1);
            headers.push((
                "Content-Range".into(),
                format!("bytes {a}-{b}/{}", data.len()),
            ));
            Response {
                status: 206,
                headers,
                body: data[a..=b].to_vec(),
            }
        }
        None => Response {
            status: 200,
            headers,
            body: data.to_vec(),
        },
    }
}

/// What GitLab answers for a package file it serves from its own storage: Workhorse hands
/// the file to Go's `http.ServeContent`, which sends `Last-Modified` from the file and no
/// ETag, checks `If-Match` (with no ETag only `*` matches, anything else is 412), else
/// `If-Unmodified-Since`, drops `Range` when `If-Range` does not match (an ETag never does,
/// a date must equal `Last-Modified`), and answers one range with 206 and `Content-Range`
/// (416 when it starts past the end). Several ranges at once (a multipart/byteranges answer)
/// are not emulated: cachegate asks for one.
fn serve_content(req: &Request, modified: u64, data: &[u8]) -> Response {
    let date = |s: &str| {
        jiff::fmt::rfc2822::DateTimeParser::new()
            .parse_timestamp(s.trim())
            .ok()
            .map(|t| t.as_second() as u64)
    };
    if let Some(im) = req.header("if-match") {
        if !im.split(',').any(|t| t.trim() == "*") {
            return Response::empty(412);
        }
    } else if let Some(ius) = req.header("if-unmodified-since").and_then(date)
        && modified > ius
    {
        return Response::empty(412);
    }
    let last_modified = jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&jiff::Timestamp::from_second(modified as i64).unwrap())
        .unwrap();
    let mut headers = vec![
        (
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        ),
        ("Accept-Ranges".into(), "bytes".into()),
        ("Last-Modified".into(), last_modified),
    ];
    let if_range_holds = req
        .header("if-range")
        .is_none_or(|ir| date(ir) == Some(modified));
    let len = data.len();
    let spec = req
        .header("range")
        .filter(|_| if_range_holds)
        .and_then(|r| r.strip_prefix("bytes="))
        .filter(|r| !r.contains(','));
    let Some(spec) = spec else {
        return Response {
            status: 200,
            headers,
            body: data.to_vec(),
        };
    };
    let (a, b) = spec.trim().split_once('-').unwrap_or((spec, ""));
    let (start, end) = match (a.parse::<usize>().ok(), b.parse::<usize>().ok()) {
        (None, Some(n)) => (len.saturating_sub(n), len),
        (Some(s), None) if b.is_empty() => (s, len),
        (Some(s), Some(e)) if s <= e => (s, (e + 1).min(len)),
        _ => return Response::message(400, "invalid range"),
    };
    if start >= len {
        headers.push(("Content-Range".into(), format!("bytes */{len}")));
        return Response {
            status: 416,
            headers,
            body: Vec::new(),
        };
    }
    headers.push((
        "Content-Range".into(),
        format!("bytes {start}-{}/{len}", end - 1),
    ));
    Response {
        status: 206,
        headers,
        body: data[start..end].to_vec(),
    }
}

/// Form decoding of a query value: `+` is a space, then percent escapes.
fn decode(s: &str) -> String {
    s.split('+')
        .map(|part| percent_encoding::percent_decode_str(part).decode_utf8_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Debug, Clone)]
struct Package {
    id: u64,
    name: String,
    version: String,
    created_at: String,
}

#[derive(Debug, Clone)]
struct File {
    id: u64,
    package_id: u64,
    file_name: String,
    data: Vec<u8>,
    created_at: String,
    /// Seconds since the epoch: the stored file's mtime, sent as `Last-Modified`.
    modified: u64,
}

/// A fault to answer the next matching requests with.
#[derive(Debug, Clone)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub times: usize,
}

#[derive(Default)]
struct State {
    packages: Vec<Package>,
    files: Vec<File>,
    next_id: u64,
    requests: Vec<Request>,
    blob_requests: Vec<Request>,
    faults: VecDeque<Fault>,
    deny_delete: bool,
    /// Job tokens may not list package files (GitLab before 16.0).
    deny_job_token_file_listing: bool,
    /// Generic packages of this name answer 403.
    forbidden_package: Option<String>,
    /// The namespace rejects duplicate generic files ("Allow duplicates" off): a second
    /// file of one name in a package version answers as GitLab documents it, 400.
    reject_duplicates: bool,
    redirect_downloads: bool,
    /// After a manifest is served, delete the archive it points to (a concurrent prune).
    delete_archive_after_manifest: bool,
    /// After the first range of an archive is served, rewrite the archive (a racing save):
    /// other bytes, a later mtime.
    replace_archive_after_first_range: bool,
}

pub const PROJECT: &str = "4242";

pub struct GitlabEmu {
    pub api: Server,
    /// Plays object storage: downloads may be redirected here, with a presigned query. Held
    /// only so it serves as long as the emulator lives.
    _blobs: Server,
    state: Arc<Mutex<State>>,
    pub job_token: String,
    pub private_token: String,
}

fn now_iso() -> String {
    iso_ago(0)
}

/// GitLab's timestamp format for `secs_ago` seconds before now.
fn iso_ago(secs_ago: u64) -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = d.as_secs() - secs_ago;
    let (days, rem) = (secs / 86400, secs % 86400);
    // civil-from-days
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

fn valid_version(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("..")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+.-".contains(&b))
}

fn package_json(p: &Package) -> String {
    format!(
        r#"{{"id":{},"name":"{}","version":"{}","package_type":"generic","status":"default","created_at":"{}","tags":[]}}"#,
        p.id, p.name, p.version, p.created_at
    )
}

fn file_json(f: &File) -> String {
    format!(
        r#"{{"id":{},"package_id":{},"created_at":"{}","file_name":"{}","size":{},"file_md5":null,"file_sha1":null,"file_sha256":null}}"#,
        f.id,
        f.package_id,
        f.created_at,
        f.file_name,
        f.data.len()
    )
}

/// A page of `items` with GitLab's pagination headers (`X-Next-Page` empty on the last).
fn paginate(req: &Request, items: Vec<String>) -> Response {
    let per_page: usize = req
        .param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page: usize = req
        .param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(per_page).max(1);
    let body: Vec<String> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let mut resp = Response::json(200, format!("[{}]", body.join(",")));
    let link = |p: usize, rel: &str| {
        format!(
            "<http://gitlab.example{}?page={p}&per_page={per_page}>; rel=\"{rel}\"",
            req.path
        )
    };
    let mut links = vec![link(1, "first"), link(pages, "last")];
    if page < pages {
        links.insert(0, link(page + 1, "next"));
    }
    resp.headers.extend([
        ("X-Page".into(), page.to_string()),
        ("X-Per-Page".into(), per_page.to_string()),
        ("X-Total".into(), total.to_string()),
        ("X-Total-Pages".into(), pages.to_string()),
        ("X-Next-Page".into(), next),
        (
            "X-Prev-Page".into(),
            if page > 1 {
                (page - 1).to_string()
            } else {
                String::new()
            },
        ),
        ("Link".into(), links.join(", ")),
    ]);
    resp
}

impl GitlabEmu {
    pub fn start() -> GitlabEmu {
        let state = Arc::new(Mutex::new(State {
            next_id: 1,
            ..State::default()
        }));
        let job_token = format!("glcbt-{}", random_hex());
        let private_token = format!("glpat-{}", random_hex());
        let blob_state = state.clone();
        let blobs = Server::start(Arc::new(move |req: Request| {
            let mut st = blob_state.lock().unwrap();
            st.blob_requests.push(req.clone());
            let id: Option<u64> = req.path.strip_prefix("/blob/").and_then(|i| i.parse().ok());
            match id.and_then(|id| st.files.iter().find(|f| f.id == id)) {
                Some(f) if req.param("X-Amz-Signature").is_some() => {
                    ranged(&req, &format!("\"{}-{}\"", f.id, f.data.len()), &f.data)
                }
                Some(_) => Response::empty(403),
                None => Response::empty(404),
            }
        }));
        let api_state = state.clone();
        let (jt, pt) = (job_token.clone(), private_token.clone());
        let blobs_url = blobs.url();
        let api = Server::start(Arc::new(move |req: Request| {
            let mut st = api_state.lock().unwrap();
            st.requests.push(req.clone());
            route(&mut st, &req, &jt, &pt, &blobs_url)
        }));
        GitlabEmu {
            api,
            _blobs: blobs,
            state,
            job_token,
            private_token,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/v4", self.api.url())
    }

    /// Variables GitLab CI would set in a job of this project.
    pub fn job_env(&self) -> Vec<(String, String)> {
        vec![
            ("CI_API_V4_URL".into(), self.api_url()),
            ("CI_PROJECT_ID".into(), PROJECT.into()),
            ("CI_JOB_TOKEN".into(), self.job_token.clone()),
        ]
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
    pub fn blob_requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().blob_requests.clone()
    }
    pub fn clear_requests(&self) {
        let mut st = self.state.lock().unwrap();
        st.requests.clear();
        st.blob_requests.clear();
    }
    pub fn clear(&self) {
        let mut st = self.state.lock().unwrap();
        st.packages.clear();
        st.files.clear();
    }
    /// Answer the next `times` API requests with `status`.
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>, times: usize) {
        self.state.lock().unwrap().faults.push_back(Fault {
            status,
            retry_after,
            times,
        });
    }
    pub fn deny_delete(&self, deny: bool) {
        self.state.lock().unwrap().deny_delete = deny;
    }
    pub fn deny_job_token_file_listing(&self, deny: bool) {
        self.state.lock().unwrap().deny_job_token_file_listing = deny;
    }
    pub fn reject_duplicates(&self, on: bool) {
        self.state.lock().unwrap().reject_duplicates = on;
    }
    pub fn forbid_package(&self, name: &str) {
        self.state.lock().unwrap().forbidden_package = Some(name.into());
    }
    pub fn redirect_downloads(&self, on: bool) {
        self.state.lock().unwrap().redirect_downloads = on;
    }
    pub fn replace_archive_after_first_range(&self, on: bool) {
        self.state.lock().unwrap().replace_archive_after_first_range = on;
    }
    pub fn delete_archive_after_manifest(&self, on: bool) {
        self.state.lock().unwrap().delete_archive_after_manifest = on;
    }
    /// (package name, version, file name) of every stored file, oldest first.
    pub fn files(&self) -> Vec<(String, String, String)> {
        let st = self.state.lock().unwrap();
        st.files
            .iter()
            .map(|f| {
                let p = st.packages.iter().find(|p| p.id == f.package_id).unwrap();
                (p.name.clone(), p.version.clone(), f.file_name.clone())
            })
            .collect()
    }
    /// Store a file as another writer would (for duplicate and race tests).
    pub fn put_file(&self, name: &str, version: &str, file: &str, data: &[u8]) {
        self.put_file_aged(name, version, file, data, 0);
    }
    /// `put_file`, as if uploaded `secs_ago` seconds ago.
    pub fn put_file_aged(&self, name: &str, version: &str, file: &str, data: &[u8], secs_ago: u64) {
        let mut st = self.state.lock().unwrap();
        let id = store_file(&mut st, name, version, file, data.to_vec()).id;
        if let Some(f) = st.files.iter_mut().find(|f| f.id == id) {
            f.created_at = iso_ago(secs_ago);
            f.modified -= secs_ago;
        }
    }
}

pub fn random_hex() -> String {
    let mut b = [0u8; 12];
    getrandom_fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_fill(b: &mut [u8]) {
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    f.read_exact(b).unwrap();
}

fn store_file(st: &mut State, name: &str, version: &str, file: &str, data: Vec<u8>) -> File {
    let pkg_id = match st
        .packages
        .iter()
        .find(|p| p.name == name && p.version == version)
    {
        Some(p) => p.id,
        None => {
            let id = st.next_id;
            st.next_id += 1;
            st.packages.push(Package {
                id,
                name: name.into(),
                version: version.into(),
                created_at: now_iso(),
            });
            id
        }
    };
    let f = File {
        id: st.next_id,
        package_id: pkg_id,
        file_name: file.into(),
        data,
        created_at: now_iso(),
        modified: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    };
    st.next_id += 1;
    st.files.push(f.clone());
    f
}

fn route(
    st: &mut State,
    req: &Request,
    job_token: &str,
    private_token: &str,
    blobs: &str,
) -> Response {
    if let Some(f) = st.faults.front_mut() {
        f.times -= 1;
        let mut resp = Response::message(f.status, "Fault");
        if let Some(s) = f.retry_after {
            resp.headers.push(("Retry-After".into(), s.to_string()));
        }
        if f.times == 0 {
            st.faults.pop_front();
        }
        return resp;
    }
    let authed = req.header("JOB-TOKEN") == Some(job_token)
        || req.header("PRIVATE-TOKEN") == Some(private_token);
    if !authed {
        return Response::message(401, "Unauthorized");
    }
    let Some(rest) = req.path.strip_prefix("/api/v4/projects/") else {
        return Response::json(404, r#"{"error":"404 Not Found"}"#.into());
    };
    let seg: Vec<String> = rest.split('/').map(decode).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    if seg[0] != PROJECT {
        return Response::message(404, "Project Not Found");
    }
    if let ["packages", "generic", name, ..] = &seg[1..]
        && st.forbidden_package.as_deref() == Some(*name)
    {
        return Response::message(403, "Forbidden");
    }
    match (req.method.as_str(), &seg[1..]) {
        ("PUT", ["packages", "generic", name, version, file]) => {
            if !valid_name(name) {
                return Response::json(400, r#"{"error":"package_name is invalid"}"#.into());
            }
            if !valid_version(version) {
                return Response::json(400, r#"{"error":"package_version is invalid"}"#.into());
            }
            if !valid_name(file) {
                return Response::json(400, r#"{"error":"file_name is invalid"}"#.into());
            }
            let duplicate = st.reject_duplicates
                && st.packages.iter().any(|p| {
                    p.name == *name
                        && p.version == *version
                        && st
                            .files
                            .iter()
                            .any(|f| f.package_id == p.id && f.file_name == *file)
                });
            if duplicate {
                return Response::json(
                    400,
                    r#"{"message":"400 Bad request - Duplicate package is not allowed"}"#.into(),
                );
            }
            let f = store_file(st, name, version, file, req.body.clone());
            if req.param("select") == Some("package_file") {
                Response::json(200, file_json(&f))
            } else {
                Response::message(201, "Created")
            }
        }
        ("GET" | "HEAD", ["packages", "generic", name, version, file]) => {
            let Some(pkg) = st
                .packages
                .iter()
                .find(|p| p.name == *name && p.version == *version)
            else {
                return Response::message(404, "Package Not Found");
            };
            // Duplicates: the newest file of that name is the one served.
            let Some(f) = st
                .files
                .iter()
                .filter(|f| f.package_id == pkg.id && f.file_name == *file)
                .max_by_key(|f| f.id)
                .cloned()
            else {
                return Response::message(404, "Package Not Found");
            };
            if st.delete_archive_after_manifest && file.ends_with(".json") {
                let pid = pkg.id;
                st.files
                    .retain(|g| !(g.package_id == pid && g.file_name.ends_with(".tar.zst")));
            }
            if st.redirect_downloads {
                return Response {
                    status: 302,
                    headers: vec![(
                        "Location".into(),
                        format!(
                            "{blobs}/blob/{}?X-Amz-Expires=600&X-Amz-Signature=s1gn4ture{}",
                            f.id, f.id
                        ),
                    )],
                    body: Vec::new(),
                };
            }
            let resp = serve_content(req, f.modified, &f.data);
            if st.replace_archive_after_first_range
                && resp.status == 206
                && file.ends_with(".tar.zst")
            {
                st.replace_archive_after_first_range = false;
                if let Some(g) = st.files.iter_mut().find(|g| g.id == f.id) {
                    g.data.iter_mut().for_each(|b| *b ^= 0x55);
                    g.modified += 10;
                }
            }
            resp
        }
        ("GET", ["packages"]) => {
            let name = req.param("package_name").unwrap_or("").to_lowercase();
            let version = req.param("package_version");
            let items = st
                .packages
                .iter()
                .filter(|_| req.param("package_type").is_none_or(|t| t == "generic"))
                .filter(|p| p.name.to_lowercase().contains(&name))
                .filter(|p| version.is_none_or(|v| p.version == v))
                .map(package_json)
                .collect();
            paginate(req, items)
        }
        ("GET", ["packages", id, "package_files"]) => {
            if st.deny_job_token_file_listing && req.header("JOB-TOKEN").is_some() {
                return Response::message(403, "Forbidden");
            }
            let id: u64 = id.parse().unwrap_or(0);
            if !st.packages.iter().any(|p| p.id == id) {
                return Response::message(404, "Not found");
            }
            let items = st
                .files
                .iter()
                .filter(|f| f.package_id == id)
                .map(file_json)
                .collect();
            paginate(req, items)
        }
        ("DELETE", ["packages", id]) => {
            if st.deny_delete {
                return Response::message(403, "Forbidden");
            }
            let id: u64 = id.parse().unwrap_or(0);
            if !st.packages.iter().any(|p| p.id == id) {
                return Response::message(404, "Not found");
            }
            st.packages.retain(|p| p.id != id);
            st.files.retain(|f| f.package_id != id);
            Response::empty(204)
        }
        ("DELETE", ["packages", id, "package_files", fid]) => {
            if st.deny_delete {
                return Response::message(403, "Forbidden");
            }
            let (id, fid): (u64, u64) = (id.parse().unwrap_or(0), fid.parse().unwrap_or(0));
            let before = st.files.len();
            st.files.retain(|f| !(f.package_id == id && f.id == fid));
            if st.files.len() == before {
                return Response::message(404, "Not found");
            }
            Response::empty(204)
        }
        _ => Response::json(404, r#"{"error":"404 Not Found"}"#.into()),
    }
}

/// The emulator as a cachegate store: `--backend gitlab` with a job's variables.
pub struct GitlabStore(pub Arc<GitlabEmu>);

impl Store for GitlabStore {
    fn backend(&self) -> String {
        "gitlab".into()
    }
    fn env(&self) -> Vec<(String, String)> {
        self.0.job_env()
    }
    fn clear(&self) {
        self.0.clear();
    }
    fn secrets(&self) -> Vec<String> {
        vec![self.0.job_token.clone(), self.0.private_token.clone()]
    }
}
