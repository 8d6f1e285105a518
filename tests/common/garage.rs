//! A real Garage (S3-compatible store) on free loopback ports in a temp dir: one shared by the
//! whole test binary (stopped at exit), or a private one a test may stop. Each store under
//! test gets its own prefix; the harness talks to Garage through OpenDAL with static keys,
//! never through the test process's environment.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Store, free_port, stdout};

pub const BUCKET: &str = "cachegate-test";
pub const REGION: &str = "garage";

pub struct Garage {
    pub s3_port: u16,
    pub access_key: String,
    pub secret_key: String,
    child: Mutex<Option<Child>>,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether Garage can be used here; under CI=true a missing binary fails the test.
pub fn available() -> bool {
    super::require_tool("garage", "cargo install garage --locked")
}

impl Garage {
    fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let d = dir.path().display();
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{}"
[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{}"
"#,
                hex(32),
                hex(24)
            ),
        )
        .unwrap();
        let access_key = format!("GK{}", hex(12));
        let secret_key = hex(32);
        let log = std::fs::File::create(dir.path().join("garage.log")).unwrap();
        let child = Command::new("garage")
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_CONFIG_FILE", &config)
            .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
            .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("garage starts");
        kill_at_exit(child.id());
        let g = Garage {
            s3_port: s3,
            access_key,
            secret_key,
            child: Mutex::new(Some(child)),
            config,
            _dir: dir,
        };
        g.wait_ready();
        g
    }

    /// The server every test shares, stopped when the test binary exits.
    pub fn shared() -> &'static Garage {
        static SHARED: OnceLock<&'static Garage> = OnceLock::new();
        SHARED.get_or_init(private)
    }

    fn garage_cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("garage")
            .args(args)
            .env("GARAGE_CONFIG_FILE", &self.config)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    }

    /// Ready when the node is listed and the default bucket answers S3 requests.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last;
        loop {
            let o = self.garage_cli(&["status"]);
            let up = o.status.success() && String::from_utf8_lossy(&o.stdout).contains("127.0.0.1");
            last = format!("garage status: {}{}", stdout(&o), super::stderr(&o));
            if up {
                match self.op("").list("/") {
                    Ok(_) => return,
                    Err(e) => last = format!("S3 list: {e}"),
                }
            }
            if let Some(c) = self.child.lock().unwrap().as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                let log = std::fs::read_to_string(self.config.with_file_name("garage.log"))
                    .unwrap_or_default();
                panic!("garage exited with {st}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "garage did not become ready: {last}\n{}",
                log_of(self)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Stop the server (a test's fault: the store went down).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// An OpenDAL operator on `prefix` of the test bucket, with the keys given directly.
    pub fn op(&self, prefix: &str) -> opendal::blocking::Operator {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = opendal::services::S3::default()
            .bucket(BUCKET)
            .root(&format!("/{prefix}"))
            .endpoint(&self.endpoint())
            .region(REGION)
            .access_key_id(&self.access_key)
            .secret_access_key(&self.secret_key)
            .disable_config_load()
            .disable_ec2_metadata();
        let transport = opendal::HttpTransporter::new(
            opendal_http_transport_reqwest::ReqwestTransport::new(reqwest::Client::new()),
        );
        let op = opendal::Operator::new(builder)
            .unwrap()
            .with_context(opendal::OperationContext::new().with_http_transport(transport));
        let _g = runtime().enter();
        opendal::blocking::Operator::new(op).unwrap()
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A store under test: a fresh prefix of the bucket on a Garage server.
pub struct GarageStore {
    pub garage: &'static Garage,
    pub prefix: String,
}

impl GarageStore {
    /// A fresh prefix on the shared server.
    pub fn new() -> GarageStore {
        Self::on(Garage::shared())
    }

    pub fn on(garage: &'static Garage) -> GarageStore {
        static N: AtomicUsize = AtomicUsize::new(0);
        GarageStore {
            garage,
            prefix: format!(
                "t{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst),
                hex(4)
            ),
        }
    }

    /// Another handle on the same prefix (the project owns one, the test keeps one).
    pub fn on_prefix(other: &GarageStore) -> GarageStore {
        GarageStore {
            garage: other.garage,
            prefix: other.prefix.clone(),
        }
    }

    pub fn op(&self) -> opendal::blocking::Operator {
        self.garage.op(&self.prefix)
    }

    /// Object names under this store's prefix.
    pub fn objects(&self) -> Vec<String> {
        let op = self.op();
        let mut names: Vec<String> = op
            .list_options(
                "/",
                opendal::options::ListOptions {
                    recursive: true,
                    ..Default::default()
                },
            )
            .unwrap()
            .into_iter()
            .filter(|e| e.metadata().is_file())
            .map(|e| e.path().to_string())
            .collect();
        names.sort();
        names
    }
}

impl GarageStore {
    /// Keys of the incomplete multipart uploads under this prefix, as S3's
    /// ListMultipartUploads reports them (signed with the static keys, as OpenDAL would).
    pub fn incomplete_uploads(&self) -> Vec<String> {
        use reqsign_aws_v4::{RequestSigner, StaticCredentialProvider};
        let url = format!(
            "{}/{BUCKET}/?uploads&prefix={}%2F",
            self.garage.endpoint(),
            self.prefix
        );
        let signer = reqsign_core::Signer::new(
            reqsign_core::Context::new(),
            StaticCredentialProvider::new(&self.garage.access_key, &self.garage.secret_key),
            RequestSigner::new("s3", REGION),
        );
        let (mut parts, ()) = http::Request::get(&url)
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(())
            .unwrap()
            .into_parts();
        runtime().block_on(signer.sign(&mut parts, None)).unwrap();
        let mut req = reqwest::blocking::Client::new().get(&url);
        for (k, v) in &parts.headers {
            req = req.header(k.as_str(), v.as_bytes());
        }
        let resp = req.send().unwrap();
        assert!(resp.status().is_success(), "{:?}", resp.status());
        let body = resp.text().unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }
}

impl Store for GarageStore {
    fn backend(&self) -> String {
        format!(
            "s3://{BUCKET}/{}?endpoint={}&region={REGION}",
            self.prefix,
            self.garage.endpoint()
        )
    }
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.garage.access_key.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.garage.secret_key.clone(),
            ),
        ]
    }
    fn clear(&self) {
        let op = self.op();
        for name in self.objects() {
            op.delete(&name).unwrap();
        }
        assert!(self.objects().is_empty());
    }
    fn secrets(&self) -> Vec<String> {
        vec![
            self.garage.secret_key.clone(),
            self.garage.access_key.clone(),
        ]
    }
}

/// Every server this test binary started is killed when it exits, also when a test failed
/// half-way or a server never became ready.
fn kill_at_exit(pid: u32) {
    static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    extern "C" fn kill_all() {
        for pid in PIDS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // SAFETY: kill(2) on a pid this process spawned; at worst it already exited.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
    AT_EXIT.call_once(|| {
        // SAFETY: registering a plain extern "C" function with atexit has no preconditions.
        unsafe {
            libc::atexit(kill_all);
        }
    });
    PIDS.lock().unwrap().push(pid);
}

/// A server of the test's own, which it may stop; it lives until the test binary exits.
pub fn private() -> &'static Garage {
    Box::leak(Box::new(Garage::start()))
}

pub fn log_of(g: &Garage) -> String {
    std::fs::read_to_string(Path::new(&g.config).with_file_name("garage.log")).unwrap_or_default()
}

/// What the fault proxy does to a connection.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Answer the first N connections with this status (and `Connection: close`), then
    /// relay to Garage.
    FailFirst(usize, u16),
    /// Accept, read the request, never answer.
    Stall,
}

/// A TCP proxy on a free loopback port in front of a Garage server, injecting `fault`.
/// Counts the connections it accepted.
pub struct FaultProxy {
    pub port: u16,
    pub connections: std::sync::Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(target: u16, fault: Fault) -> FaultProxy {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || match fault {
                    Fault::FailFirst(k, status) if n < k => {
                        let mut buf = [0u8; 65536];
                        let _ = client.read(&mut buf);
                        let body =
                            "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";
                        let _ = write!(
                            client,
                            "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Fault::Stall => {
                        let mut buf = [0u8; 65536];
                        let _ = client.read(&mut buf);
                        std::thread::sleep(Duration::from_secs(30));
                    }
                    Fault::FailFirst(..) => {
                        let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target))
                        else {
                            return;
                        };
                        let (mut c2, mut u2) =
                            (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        let mut upstream = upstream;
                        let t = std::thread::spawn(move || {
                            let _ = std::io::copy(&mut c2, &mut u2);
                            let _ = u2.shutdown(std::net::Shutdown::Write);
                        });
                        let _ = std::io::copy(&mut upstream, &mut client);
                        let _ = client.shutdown(std::net::Shutdown::Write);
                        let _ = t.join();
                    }
                });
            }
        });
        FaultProxy { port, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
