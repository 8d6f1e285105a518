//! The `http(s)://` store against a real nginx (WebDAV): the core scenarios, the layout
//! operators see, first-writer-wins, and the faults a job must survive green.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::gitlab_emu::{Response, Server};
use crate::common::nginx::{Nginx, NginxStore, Options};
use crate::common::scenarios::{installs, parallel_saves};
use crate::common::{
    ARGS, Project, Test, assert_no_secrets, listed, stderr, stdout, tree_cmd, walk, warnings,
};

/// A layout name for the tests that drive the HTTP backend directly.
fn object(name: &str) -> cachegate::entry::ObjectName {
    cachegate::entry::ObjectName::parse(name).expect("a layout name")
}

/// The install the store tests cache: a small fresh tree.
pub(crate) fn small_tree() -> Vec<String> {
    tree_cmd("rm -rf out && mkdir -p out/sub && echo data > out/sub/f")
}

/// A project without a Store: the fault tests point cachegate at broken places on purpose.
fn project() -> Project {
    let p = Project::new();
    p.write("app.lock", "v1");
    p
}

/// An `ensure` step with these variables at the most verbose level; none of `secrets` may
/// show. Cache trouble never fails the job, so it expects status 0 unless told.
pub(crate) fn ensure_with<'p>(
    p: &'p Project,
    env: &[(String, String)],
    extra: &[&str],
    secrets: &[String],
) -> Test<'p> {
    let args: Vec<&str> = ARGS.iter().chain(extra).copied().collect();
    p.test()
        .envs(env.iter().cloned())
        .env("CACHEGATE_VERBOSE", "3")
        .secrets(secrets)
        .ensure(&args, &small_tree())
}

fn ensure_at<'p>(p: &'p Project, url: &str, token: &str, extra: &[&str]) -> Test<'p> {
    let env = [
        ("CACHEGATE_BACKEND".to_string(), url.to_string()),
        ("CACHEGATE_HTTP_TOKEN".to_string(), token.to_string()),
    ];
    ensure_with(p, &env, extra, &[token.to_string()])
}

#[test]
fn python_venv_on_nginx() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    crate::common::scenarios::python_venv(&Project::with_store(Box::new(store)));
}

#[test]
fn npm_file_dependency_on_nginx() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    crate::common::scenarios::npm_file_dependency(&Project::with_store(Box::new(store)));
}

#[test]
fn entries_land_under_the_base_url_and_ls_prune_work() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let root = store.nginx.root.clone();
    let log = store.nginx.dir.path().join("logs/access.log");
    let requests = || fs::read_to_string(&log).unwrap_or_default().lines().count();
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &small_tree()).run();
    let files = walk(&root);
    // The manifest, the archive and the save's job record.
    assert_eq!(files.len(), 3, "{files:?}");
    let dir = format!("cache/{}/local/out/", crate::common::project_root());
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(&dir) && f.ends_with(".json"))
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(&dir) && f.ends_with(".tar.zst"))
    );

    fs::remove_dir_all(p.path("out")).unwrap();
    let before = requests();
    p.test()
        .ensure(&ARGS, &small_tree())
        .any_status()
        .stderr_contains("cachegate: hit out")
        .run();
    assert_eq!(installs(&p), 1);
    assert_eq!(
        requests() - before,
        3,
        "a hit is the manifest and the archive, then its job record written"
    );

    // A second entry, then ls lists both through nginx's JSON listing, prune keeps one.
    p.write("app.lock", "v2");
    std::thread::sleep(Duration::from_millis(1100));
    p.test().ensure(&ARGS, &small_tree()).run();
    let rows = listed(&p);
    assert_eq!(rows.len(), 2, "{rows:?}");
    explain_names_the_changed_lock(&p);
    p.test().args(["prune", "--keep", "1"]).run();
    assert_eq!(walk(&root).len(), 3, "{:?}", walk(&root));
}

/// `explain` lists the store to find the newest entry and names the lock that changed.
pub(crate) fn explain_names_the_changed_lock(p: &Project) {
    p.write("app.lock", "changed");
    let o = p
        .test()
        .verb("explain", &ARGS, &small_tree())
        .status(1)
        .run();
    let text = stdout(&o);
    assert!(
        text.contains("locks: app.lock@") && text.contains("newest entry"),
        "{text}"
    );
}

#[test]
fn parallel_saves_of_one_key_leave_exactly_one_manifest() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let root = store.nginx.root.clone();
    let (url, token) = (crate::common::Store::backend(&store), store.token.clone());
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    let env = [
        ("CACHEGATE_BACKEND".to_string(), url),
        ("CACHEGATE_HTTP_TOKEN".to_string(), token),
    ];
    parallel_saves(&p, 8, &env);
    let files = walk(&root);
    crate::common::scenarios::assert_one_entry(&files);
    assert!(!files.iter().any(|f| f.contains(".tmp-")), "{files:?}");
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test().arg("restore").args(ARGS).run();
}

#[test]
fn a_stopped_server_is_a_quick_miss_with_one_warning() {
    let Some(mut nginx) = Nginx::start(Options::default()) else {
        return;
    };
    let url = nginx.url("/cache");
    nginx.stop();
    let p = project();
    let start = Instant::now();
    let o = ensure_at(&p, &url, "tok-stopped-server", &["--connect-timeout", "2"]).run();
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot look up"), "{}", stderr(&o));
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_server_that_never_answers_is_cut_at_the_stall_timeout() {
    // Accepts connections, never answers: the stall timeout bounds each attempt.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cache", listener.local_addr().unwrap());
    let p = project();
    let start = Instant::now();
    let o = ensure_at(
        &p,
        &url,
        "tok-silent-server",
        &["--stall-timeout", "1", "--retries", "1"],
    )
    .run();
    let took = start.elapsed();
    drop(listener);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn wrong_credentials_are_one_request_one_warning_and_no_secret() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let url = crate::common::Store::backend(&store);
    let p = project();
    let o = ensure_at(&p, &url, "tok-wrong-credential", &[])
        .status(0)
        .installs(1)
        .warnings(1)
        .stderr_contains("401")
        .run();
    assert_no_secrets(&o, std::slice::from_ref(&store.token));
    let log = store.nginx.access_log();
    assert_eq!(log.len(), 1, "401 must not be retried: {log:?}");

    // Basic auth with a wrong password: the same, and neither value is printed.
    let basic = [
        ("CACHEGATE_BACKEND".to_string(), url.clone()),
        ("CACHEGATE_HTTP_USER".into(), "ci-user".into()),
        ("CACHEGATE_HTTP_PASSWORD".into(), "pa55-wrong-basic".into()),
    ];
    let secrets = ["pa55-wrong-basic".into(), "ci-user:pa55-wrong-basic".into()];
    ensure_with(&p, &basic, &[], &secrets)
        .stderr_contains("401")
        .run();

    // Credentials in the URL itself: used, and masked wherever the URL is shown.
    let in_url = url.replace("http://", "http://ci-user:pa55-in-the-url@");
    ensure_with(
        &p,
        &[("CACHEGATE_BACKEND".into(), in_url)],
        &[],
        &["pa55-in-the-url".into()],
    )
    .status(0)
    .stderr_contains("401")
    .run();
}

#[test]
fn a_base_url_that_does_not_exist_warns_once_and_installs() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let url = store.nginx.url("/missing/cache");
    let p = project();
    let o = ensure_at(&p, &url, &store.token, &[])
        .status(0)
        .installs(1)
        .warnings(1)
        .run();
    assert!(
        stderr(&o).contains("could not save") && stderr(&o).contains("404"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_archive_gone_after_the_lookup_is_a_miss_and_the_entry_is_replaced() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let root = store.nginx.root.clone();
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &small_tree()).run();
    let archive = walk(&root)
        .into_iter()
        .find(|f| f.ends_with(".tar.zst"))
        .unwrap();
    fs::remove_file(root.join(&archive)).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = p.test().ensure(&ARGS, &small_tree()).status(0).run();
    assert_eq!(installs(&p), 2);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("could not restore"), "{}", stderr(&o));
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(&ARGS, &small_tree())
        .any_status()
        .stderr_contains("cachegate: hit")
        .run();
    assert_eq!(installs(&p), 2);
}

#[test]
fn a_busy_server_is_retried_a_bounded_number_of_times_honouring_retry_after() {
    let Some(store) = NginxStore::start() else {
        return;
    };
    let url = store.nginx.url("/busy/cache");
    let p = project();
    let start = Instant::now();
    let o = ensure_at(&p, &url, &store.token, &["--retries", "2"]).run();
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("503"), "{}", stderr(&o));
    let log = store.nginx.access_log();
    assert_eq!(log.len(), 3, "one try and two retries: {log:?}");
    // Two waits of Retry-After: 1.
    assert!(took >= Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_cross_host_redirect_does_not_carry_the_token() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let other = Server::start(std::sync::Arc::new(move |req| {
        record.lock().unwrap().push(req);
        Response::json(404, "{}".into())
    }));
    let Some(nginx) = Nginx::start(Options {
        redirect_to: Some(other.url()),
        ..Options::default()
    }) else {
        return;
    };
    let url = nginx.url("/elsewhere/cache");
    let p = project();
    ensure_at(&p, &url, "tok-must-stay-home", &[])
        .status(0)
        .run();
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty(), "the redirect was not followed");
    for req in seen.iter() {
        assert!(
            req.header("authorization").is_none(),
            "the token followed a redirect to another host: {req:?}"
        );
    }
    // nginx itself (the configured origin) did get it.
    assert!(!nginx.access_log().is_empty());
}

/// The backend itself, on an nginx without auth (no environment needed).
fn open(url: &str, stall_secs: u64) -> Box<dyn cachegate::backend::Backend> {
    let transfer = cachegate::backend::Transfer {
        stall: Duration::from_secs(stall_secs),
        ..Default::default()
    };
    cachegate::backend::BackendSpec::parse(url)
        .unwrap()
        .open(&transfer)
        .unwrap()
}

#[test]
fn uploads_stream_are_invisible_until_finished_and_dropped_ones_leave_nothing() {
    use cachegate::backend::StoreError;
    use std::io::Write;
    let Some(nginx) = Nginx::start(Options::default()) else {
        return;
    };
    let b = open(&nginx.url("/c"), 60);
    let chunk = vec![7u8; 256 << 10];
    let mut up = b.put(&object("v2/ns/local/x/a-1.tar.zst")).unwrap();
    for _ in 0..12 {
        up.write_all(&chunk).unwrap();
    }
    assert!(matches!(
        b.stat(&object("v2/ns/local/x/a-1.tar.zst")),
        Err(StoreError::NotFound)
    ));
    drop(up);
    std::thread::sleep(Duration::from_millis(200));
    assert!(matches!(
        b.stat(&object("v2/ns/local/x/a-1.tar.zst")),
        Err(StoreError::NotFound)
    ));
    assert!(walk(&nginx.root).is_empty(), "{:?}", walk(&nginx.root));

    let mut up = b.put(&object("v2/ns/local/x/a-2.tar.zst")).unwrap();
    for _ in 0..12 {
        up.write_all(&chunk).unwrap();
    }
    up.finish().unwrap();
    assert_eq!(
        b.stat(&object("v2/ns/local/x/a-2.tar.zst")).unwrap(),
        12 * (256 << 10)
    );

    b.create_if_absent(&object("v2/ns/local/x/a.json"), b"first")
        .unwrap();
    assert!(matches!(
        b.create_if_absent(&object("v2/ns/local/x/a.json"), b"second"),
        Err(StoreError::Exists)
    ));
    assert_eq!(
        b.get_small(&object("v2/ns/local/x/a.json")).unwrap(),
        b"first"
    );
    let names: Vec<String> = b.list("v2/").unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["v2/ns/local/x/a-2.tar.zst", "v2/ns/local/x/a.json"]);
    b.delete(&object("v2/ns/local/x/a.json")).unwrap();
    b.delete(&object("v2/ns/local/x/a.json")).unwrap();
    assert!(matches!(
        b.stat(&object("v2/ns/local/x/a.json")),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn an_upload_the_server_stops_reading_is_cut_at_the_stall_timeout_with_bounded_memory() {
    use std::io::Write;
    // Accepts, reads nothing: the kernel buffers fill, then the bounded pipe, then the
    // writer waits no longer than the stall timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/c", listener.local_addr().unwrap());
    let hold = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let b = open(&url, 1);
    let mut up = b.put(&object("v2/ns/local/x/a-1.tar.zst")).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let start = Instant::now();
    let mut written = 0usize;
    let err = loop {
        match up.write_all(&chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
        assert!(written < 256 << 20, "the upload never pushed back");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    drop(up);
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(hold);
}

#[test]
fn an_unreachable_server_costs_one_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so connecting
    // hangs as it does for a firewalled host.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0);
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    unsafe {
        assert_eq!(libc::bind(fd, (&raw const addr).cast(), len), 0);
        assert_eq!(libc::listen(fd, 0), 0);
        let mut got = len;
        libc::getsockname(fd, (&raw mut addr).cast(), &mut got);
    }
    let port = u16::from_be(addr.sin_port);
    let fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(
                &([127, 0, 0, 1], port).into(),
                Duration::from_millis(300),
            )
            .ok()
        })
        .collect();
    let url = format!("http://127.0.0.1:{port}/cache");
    let p = project();
    let start = Instant::now();
    let o = ensure_at(&p, &url, "tok-unreachable", &["--connect-timeout", "2"]).run();
    let took = start.elapsed();
    drop(fillers);
    unsafe { libc::close(fd) };
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(installs(&p), 1);
    assert_eq!(warnings(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("--connect-timeout"), "{}", stderr(&o));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "took {took:?}"
    );
}

/// A server that answers every request with headers promising a large body, then sends
/// `drip` bytes every `every` (never finishing).
fn slow_server(every: Duration) -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cache", listener.local_addr().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n{");
                while !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(every);
                    if conn.write_all(b" ").is_err() {
                        break;
                    }
                }
            });
        }
    });
    (url, stop)
}

#[test]
fn a_download_that_stalls_or_drags_on_is_cut_by_the_stall_and_overall_timeouts() {
    // Stalls after the first byte: cut after --stall-timeout.
    let (url, stop) = slow_server(Duration::from_secs(30));
    let p = project();
    let start = Instant::now();
    ensure_at(&p, &url, "tok-stalled", &["--stall-timeout", "1"])
        .stderr_contains("--stall-timeout")
        .status(0)
        .installs(1)
        .warnings(1)
        .run();
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);

    // A byte every 100 ms never stalls, but the whole transfer is cut at --timeout.
    let (url, stop) = slow_server(Duration::from_millis(100));
    let p = project();
    let start = Instant::now();
    ensure_at(&p, &url, "tok-dragging", &["--timeout", "2"])
        .status(0)
        .installs(1)
        .warnings(1)
        .stderr_contains("--timeout")
        .run();
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn https_works_with_the_system_trust_store_and_refuses_an_unknown_ca() {
    let Some(nginx) = Nginx::start(Options {
        tls: true,
        ..Options::default()
    }) else {
        return;
    };
    let url = nginx.url("/cache");
    let p = project();
    let trust = [
        ("CACHEGATE_BACKEND".to_string(), url.clone()),
        (
            "SSL_CERT_FILE".to_string(),
            nginx.ca_cert().display().to_string(),
        ),
    ];
    let o = ensure_with(&p, &trust, &[], &[]).run();
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );
    assert_eq!(warnings(&o), 0, "{}", stderr(&o));
    fs::remove_dir_all(p.path("out")).unwrap();
    ensure_with(&p, &trust, &[], &[])
        .stderr_contains("cachegate: hit out")
        .run();

    // Without the CA the certificate is refused: a warning and a miss, never a silent pass.
    fs::remove_dir_all(p.path("out")).unwrap();
    ensure_with(&p, &trust[..1], &[], &[])
        .status(0)
        .installs(2)
        .warnings(1)
        .stderr_contains("TLS failed")
        .stderr_lacks("attempts")
        .run();
}

#[test]
fn a_read_only_token_restores_but_cannot_save() {
    let (writer, reader) = ("Bearer tok-writes-cache", "Bearer tok-only-reads");
    let Some(nginx) = Nginx::start(Options {
        authorization: Some(writer.into()),
        read_only: Some(reader.into()),
        ..Options::default()
    }) else {
        return;
    };
    let url = nginx.url("/cache");
    let p = project();
    let as_token = |t: &str| {
        vec![
            ("CACHEGATE_BACKEND".to_string(), url.clone()),
            (
                "CACHEGATE_HTTP_TOKEN".to_string(),
                t.trim_start_matches("Bearer ").to_string(),
            ),
        ]
    };
    let secrets = ["tok-writes-cache".to_string(), "tok-only-reads".to_string()];
    let o = ensure_with(&p, &as_token(writer), &[], &secrets).run();
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );

    fs::remove_dir_all(p.path("out")).unwrap();
    ensure_with(&p, &as_token(reader), &["--policy", "pull"], &secrets)
        .stderr_contains("cachegate: hit out")
        .warnings(0)
        .run();

    p.write("app.lock", "v2");
    let o = ensure_with(&p, &as_token(reader), &[], &secrets)
        .status(0)
        .installs(2)
        .warnings(1)
        .run();
    assert!(
        stderr(&o).contains("could not save") && stderr(&o).contains("403"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn without_webdav_move_the_manifest_is_a_conditional_put() {
    use cachegate::backend::StoreError;
    let Some(nginx) = Nginx::start(Options {
        no_move: true,
        ..Options::default()
    }) else {
        return;
    };
    let b = open(&nginx.url("/c"), 60);
    b.create_if_absent(&object("v2/ns/local/x/a.json"), b"first")
        .unwrap();
    // The cheap check before writing still sees the first manifest.
    assert!(matches!(
        b.create_if_absent(&object("v2/ns/local/x/a.json"), b"second"),
        Err(StoreError::Exists)
    ));
    assert_eq!(
        b.get_small(&object("v2/ns/local/x/a.json")).unwrap(),
        b"first"
    );
    // No temp object is left behind by the refused MOVE.
    assert_eq!(walk(&nginx.root), ["c/v2/ns/local/x/a.json"]);
    let moves = nginx
        .access_log()
        .iter()
        .filter(|l| l.starts_with("MOVE"))
        .count();
    assert_eq!(moves, 1, "MOVE is tried once, then not again");
}

#[test]
fn basic_auth_from_the_environment_or_the_url_works_and_is_never_printed() {
    use base64::Engine as _;
    let (user, password) = ("ci-user", "p@ss w0rd/secret");
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let Some(nginx) = Nginx::start(Options {
        authorization: Some(header),
        ..Options::default()
    }) else {
        return;
    };
    let p = project();
    let secrets = [password.to_string()];
    let env = [
        ("CACHEGATE_BACKEND".to_string(), nginx.url("/cache")),
        ("CACHEGATE_HTTP_USER".to_string(), user.to_string()),
        ("CACHEGATE_HTTP_PASSWORD".to_string(), password.to_string()),
    ];
    let o = ensure_with(&p, &env, &[], &secrets).run();
    assert!(
        stderr(&o).contains("cachegate: saved out"),
        "{}",
        stderr(&o)
    );

    fs::remove_dir_all(p.path("out")).unwrap();
    let in_url = nginx
        .url("/cache")
        .replace("http://", "http://ci-user:p%40ss%20w0rd%2Fsecret@");
    ensure_with(
        &p,
        &[("CACHEGATE_BACKEND".to_string(), in_url)],
        &[],
        &secrets,
    )
    .stderr_contains("cachegate: hit out")
    .stderr_lacks("p%40ss")
    .run();
}
