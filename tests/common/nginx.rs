//! A real nginx with WebDAV PUT/DELETE/MOVE and JSON directory listings, as the README tells
//! users to configure it, on a free loopback port in a temp dir; killed on drop. Optional
//! pieces for fault tests: a bearer token it demands, a location that always answers 503,
//! and one that redirects to another server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Store, free_port, require_tool};

#[derive(Default, Clone)]
pub struct Options {
    /// Demand `Authorization: <this>` on every request.
    pub authorization: Option<String>,
    /// Also accept `Authorization: <this>`, for GET and HEAD only (as the README shows).
    pub read_only: Option<String>,
    /// Where `/elsewhere/...` redirects to (another server), keeping the path.
    pub redirect_to: Option<String>,
    /// Serve HTTPS with a certificate from a throwaway CA (`Nginx::ca_cert`).
    pub tls: bool,
    /// Leave WebDAV MOVE out, as on a server that only has PUT and DELETE.
    pub no_move: bool,
}

pub struct Nginx {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub port: u16,
    tls: bool,
    child: Option<Child>,
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &str| {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("openssl {args}"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args}");
    };
    run(
        "req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=cachegate-test-ca",
    );
    run("req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf",
    );
}

impl Nginx {
    /// `None` (after a loud message) when nginx is missing outside CI.
    pub fn start(opts: Options) -> Option<Nginx> {
        if !require_tool("nginx", "apt-get install -y nginx-light") {
            return None;
        }
        if opts.tls && !require_tool("openssl", "apt-get install -y openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let port = free_port();
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        // The README's access map: the writing token may do everything, the read-only one
        // GET and HEAD; anything else is refused.
        let (access_map, auth) = match &opts.authorization {
            Some(w) => {
                let mut rules: Vec<String> = ["GET", "HEAD", "PUT", "MOVE", "DELETE"]
                    .iter()
                    .map(|m| format!("\"{w}:{m}\" 0;"))
                    .collect();
                if let Some(r) = &opts.read_only {
                    rules.extend(["GET", "HEAD"].iter().map(|m| format!("\"{r}:{m}\" 0;")));
                    rules.extend(
                        ["PUT", "MOVE", "DELETE"]
                            .iter()
                            .map(|m| format!("\"{r}:{m}\" 2;")),
                    );
                }
                (
                    format!(
                        "map \"$http_authorization:$request_method\" $cachegate_denied {{ default 1; {} }}",
                        rules.join(" ")
                    ),
                    "if ($cachegate_denied = 1) { return 401; } if ($cachegate_denied = 2) { return 403; }"
                        .to_string(),
                )
            }
            None => (String::new(), String::new()),
        };
        let redirect = opts
            .redirect_to
            .as_ref()
            .map(|to| format!("location /elsewhere/ {{ return 307 {to}$request_uri; }}"))
            .unwrap_or_default();
        let listen = if opts.tls {
            make_certs(dir.path());
            format!(
                "listen 127.0.0.1:{port} ssl; ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;"
            )
        } else {
            format!("listen 127.0.0.1:{port};")
        };
        let methods = if opts.no_move {
            "PUT DELETE"
        } else {
            "PUT DELETE MOVE"
        };
        let conf = format!(
            r#"daemon off;
{user}
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 256; }}
http {{
  log_format plain '$request_method $uri $status';
  access_log {d}/logs/access.log plain;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  {access_map}
  server {{
    {listen}
    root {d}/root;
    {auth}
    location / {{
      dav_methods {methods};
      create_full_put_path on;
      client_max_body_size 0;
      autoindex on;
      autoindex_format json;
    }}
    location /missing/ {{ return 404; }}
    location /busy/ {{ add_header Retry-After 1 always; return 503; }}
    {redirect}
  }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let n = Nginx {
            dir,
            root,
            port,
            tls: opts.tls,
            child: Some(child),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(n.dir.path().join("logs/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(n)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// The CA that signed an HTTPS nginx's certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `METHOD /uri STATUS` per request served so far.
    pub fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("logs/access.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: nginx's fast shutdown, workers included.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// nginx as a cachegate store: `http://127.0.0.1:PORT/cache`, with a bearer token.
pub struct NginxStore {
    pub nginx: Nginx,
    pub token: String,
}

impl NginxStore {
    pub fn start() -> Option<NginxStore> {
        let token = format!("tok-{}", super::gitlab_emu::random_hex());
        let nginx = Nginx::start(Options {
            authorization: Some(format!("Bearer {token}")),
            ..Options::default()
        })?;
        Some(NginxStore { nginx, token })
    }
}

impl Store for NginxStore {
    fn backend(&self) -> String {
        self.nginx.url("/cache")
    }
    fn env(&self) -> Vec<(String, String)> {
        vec![("CACHEGATE_HTTP_TOKEN".into(), self.token.clone())]
    }
    fn clear(&self) {
        let _ = std::fs::remove_dir_all(self.nginx.root.join("cache"));
    }
    fn secrets(&self) -> Vec<String> {
        vec![self.token.clone()]
    }
}
