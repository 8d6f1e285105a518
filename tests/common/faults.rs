//! A fault-injecting proxy in front of a real HTTP store (nginx): it forwards each request
//! as-is, records what it forwarded, and can break ranged downloads the ways real networks
//! and servers do: ignore `Range`, cut one range short, flip a byte, or have the object
//! replaced on disk after the first range.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::gitlab_emu::{Request, Response, Server};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Drop `Range` and `If-Match`: the server answers 200 with the whole object.
    IgnoreRange,
    /// The first range after offset 0 comes back with half its bytes.
    ShortOnce,
    /// Every range after offset 0 comes back with half its bytes: a link that keeps
    /// breaking, so every retry of a part breaks too.
    ShortAlways,
    /// Every range after offset 0 has one byte flipped.
    FlipByte,
    /// The first range after offset 0 has one byte flipped; later ones arrive intact (a
    /// flaky link, not a damaged object).
    FlipOnce,
    /// After the first ranged response, the archive is rewritten in place (same size, other
    /// bytes, new mtime, hence a new ETag).
    ReplaceAfterFirst,
}

/// One request the proxy forwarded: method, path, and the `Range` and `If-Match` it carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub if_match: Option<String>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    fault: Fault,
    fired: bool,
    seen: Vec<Seen>,
}

pub struct FaultProxy {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl FaultProxy {
    /// Forward to an nginx on `127.0.0.1:upstream` serving `root`.
    pub fn start(upstream: u16, root: PathBuf) -> FaultProxy {
        Self::start_with(
            upstream,
            Arc::new(move |path: &str| {
                let file = root.join(path.trim_start_matches('/'));
                let mut bytes = std::fs::read(&file).unwrap();
                flip_middle(&mut bytes);
                std::fs::write(&file, &bytes).unwrap();
                // nginx's ETag is mtime and size: move the mtime so the ETag changes.
                let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
                std::fs::File::options()
                    .write(true)
                    .open(&file)
                    .unwrap()
                    .set_modified(later)
                    .unwrap();
            }),
        )
    }

    /// Forward to `127.0.0.1:upstream`; `replace(path)` rewrites the object at that request
    /// path (for `ReplaceAfterFirst`).
    pub fn start_with(upstream: u16, replace: Arc<dyn Fn(&str) + Send + Sync>) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let server = Server::start(Arc::new(move |req: Request| {
            let fault = st.lock().unwrap().fault;
            let ranged_late = req
                .header("range")
                .is_some_and(|r| !r.starts_with("bytes=0-"));
            let mut headers: Vec<(String, String)> = req
                .headers
                .iter()
                .filter(|(k, _)| {
                    !["connection", "content-length", "transfer-encoding"]
                        .contains(&k.to_ascii_lowercase().as_str())
                })
                .filter(|(k, _)| {
                    fault != Fault::IgnoreRange
                        || !["range", "if-match"].contains(&k.to_ascii_lowercase().as_str())
                })
                .cloned()
                .collect();
            headers.push(("Connection".into(), "close".into()));
            let mut resp = forward(upstream, &req, &headers);
            let mut s = st.lock().unwrap();
            s.seen.push(Seen {
                method: req.method.clone(),
                path: req.path.clone(),
                range: req.header("range").map(String::from),
                if_match: req.header("if-match").map(String::from),
                status: resp.status,
            });
            match fault {
                Fault::ShortOnce if ranged_late && !s.fired && resp.status == 206 => {
                    s.fired = true;
                    let half = resp.body.len() / 2;
                    resp.body.truncate(half);
                }
                Fault::ShortAlways if ranged_late && resp.status == 206 => {
                    let half = resp.body.len() / 2;
                    resp.body.truncate(half);
                }
                Fault::FlipOnce if ranged_late && !s.fired && resp.status == 206 => {
                    s.fired = true;
                    if let Some(b) = resp.body.get_mut(7) {
                        *b ^= 0x55;
                    }
                }
                Fault::FlipByte if ranged_late && resp.status == 206 => {
                    if let Some(b) = resp.body.get_mut(7) {
                        *b ^= 0x55;
                    }
                }
                Fault::ReplaceAfterFirst
                    if req.header("range").is_some() && !s.fired && resp.status == 206 =>
                {
                    s.fired = true;
                    replace(&req.path);
                }
                _ => {}
            }
            resp
        }));
        FaultProxy { server, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.state.lock().unwrap();
        s.fault = fault;
        s.fired = false;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn clear_seen(&self) {
        self.state.lock().unwrap().seen.clear();
    }

    /// GETs of archives (`.tar.zst`) forwarded so far.
    pub fn archive_gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "GET" && s.path.ends_with(".tar.zst"))
            .collect()
    }
}

/// Other bytes of the same length.
pub fn flip_middle(bytes: &mut [u8]) {
    let mid = bytes.len() / 2;
    for b in bytes.iter_mut().skip(mid).take(64) {
        *b ^= 0xff;
    }
}

/// One request to the upstream over a fresh connection, read to its end.
fn forward(port: u16, req: &Request, headers: &[(String, String)]) -> Response {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut target = req.path.clone();
    if !req.query.is_empty() {
        let q: Vec<String> = req.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        target = format!("{target}?{}", q.join("&"));
    }
    // HTTP/1.0: nginx then answers without chunked encoding and closes the connection.
    let mut head = format!("{} {target} HTTP/1.0\r\n", req.method);
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
    conn.write_all(head.as_bytes()).unwrap();
    conn.write_all(&req.body).unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut out_headers = Vec::new();
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        let (k, v) = (k.trim(), v.trim());
        match k.to_ascii_lowercase().as_str() {
            "content-length" => {
                len = v.parse::<usize>().ok();
                if req.method == "HEAD" {
                    out_headers.push((k.to_string(), v.to_string()));
                }
            }
            "connection" | "transfer-encoding" => {}
            _ => out_headers.push((k.to_string(), v.to_string())),
        }
    }
    let mut body = Vec::new();
    if req.method != "HEAD" {
        match len {
            Some(n) => {
                body.resize(n, 0);
                r.read_exact(&mut body).unwrap();
            }
            None => {
                r.read_to_end(&mut body).unwrap();
            }
        }
    }
    Response {
        status,
        headers: out_headers,
        body,
    }
}
