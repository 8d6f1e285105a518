//! Faults that used to cost a job minutes or an entry (issue 21), each driven through a real
//! fault: a store that never answers, a proxy that flips a byte, a process killed mid-step.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::faults::{Fault, FaultProxy};
use crate::common::garage;
use crate::common::gitlab_emu::{Request, Response, Server};
use crate::common::{ARGS, Project, listed, one_file, tree_cmd};

#[test]
fn prune_refused_abandoned_after_alone_as_no_rule() {
    let p = Project::new();
    p.write("app.lock", "v1");
    p.test().ensure(&ARGS, &one_file()).run();
    // What a save killed between its archive and its manifest leaves: an archive no
    // manifest names.
    let archive = listed(&p)[0]["archive"].as_str().unwrap().to_string();
    let (dir, _) = archive.rsplit_once('/').unwrap();
    let orphan = format!("{dir}/{}-{}.tar.zst", "e".repeat(64), "0".repeat(32));
    fs::copy(p.store.join(&archive), p.store.join(&orphan)).unwrap();

    // Nothing at all is still no rule, and the message names the fifth.
    p.test()
        .arg("prune")
        .status(2)
        .stderr_contains("--abandoned-after AGE")
        .run();
    p.test()
        .args(["prune", "--abandoned-after", "0"])
        .stderr_lacks("needs a rule")
        .stderr_contains("deleted 0 entries and 1 abandoned upload (0 incomplete)")
        .stderr_contains("; 1 entry, ")
        .run();
    assert!(!p.store.join(&orphan).exists());
    // The entries stay: the only rule given was about abandoned uploads.
    assert_eq!(listed(&p).len(), 1);
    p.test().ensure(&ARGS, &one_file()).installs(1).run();
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "data\n");
}

/// An HTTP store on loopback that answers every request with `status` and counts them.
fn failing_server(status: u16) -> (Server, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let server = Server::start(Arc::new(move |_req: Request| {
        seen.fetch_add(1, Ordering::SeqCst);
        Response::json(status, r#"{"message":"backend down"}"#.into())
    }));
    (server, count)
}

#[test]
fn strict_said_treating_it_as_a_miss_and_then_exited_3() {
    let (server, _) = failing_server(503);
    let p = Project::new();
    p.write("app.lock", "v1");
    let backend = format!("{}/cache", server.url());
    let args = [&ARGS[..], &["--backend", &backend, "--retries", "0"]].concat();
    p.test()
        .ensure(&[&args[..], &["--strict"]].concat(), &one_file())
        .status(3)
        .stderr_contains("cannot look up")
        .stderr_contains("stopping with exit 3 (--strict)")
        .stderr_contains("cachegate: exit 3: cache trouble under --strict")
        .stderr_lacks("treating it as a miss")
        .stderr_lacks("running")
        .installs(0)
        .run();
    assert!(!p.path("out").exists());
    // Without --strict the same trouble is a miss, and says so.
    p.test()
        .ensure(&args, &one_file())
        .stderr_contains("treating it as a miss")
        .stderr_lacks("--strict")
        .installs(1)
        .run();
}

#[test]
fn path_with_a_comma_was_split_into_two_paths_on_the_command_line() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let args = ["--lock", "app.lock", "--path", "deps,v1"];
    let install = tree_cmd("mkdir -p 'deps,v1' && echo data > 'deps,v1/f'");
    p.test()
        .ensure(&args, &install)
        .stderr_contains("saved")
        .stderr_lacks("nothing saved")
        .warnings(0)
        .installs(1)
        .run();
    fs::remove_dir_all(p.path("deps,v1")).unwrap();
    p.test()
        .ensure(&args, &install)
        .stderr_contains("hit")
        .installs(1)
        .run();
    assert_eq!(fs::read_to_string(p.path("deps,v1/f")).unwrap(), "data\n");
    let o = p.test().args(["key", "--explain"]).args(args).run();
    let paths: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("path "))
        .collect();
    assert_eq!(paths, ["path     deps,v1"], "{paths:?}");

    // The variable is still a list: two paths, both cached and restored.
    let two = tree_cmd("mkdir -p out out2 && echo 1 > out/f && echo 2 > out2/f");
    let o = p
        .test()
        .args(["key", "--explain", "--lock", "app.lock"])
        .env("CACHEGATE_PATH", "out,out2")
        .run();
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("path     out\npath     out2\n"), "{text}");
    p.test()
        .ensure(&["--lock", "app.lock"], &two)
        .env("CACHEGATE_PATH", "out,out2")
        .installs(2)
        .run();
    fs::remove_dir_all(p.path("out")).unwrap();
    fs::remove_dir_all(p.path("out2")).unwrap();
    p.test()
        .ensure(&["--lock", "app.lock"], &two)
        .env("CACHEGATE_PATH", "out,out2")
        .stderr_contains("hit")
        .installs(2)
        .run();
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "1\n");
    assert_eq!(fs::read_to_string(p.path("out2/f")).unwrap(), "2\n");
    // A flag with a comma that names no file says why.
    p.test()
        .ensure(&["--lock", "app.lock,other.lock", "--path", "out"], &two)
        .status(2)
        .stderr_contains("a --lock flag is one pattern (repeat --lock for each)")
        .run();
}

/// No line cachegate printed carries a raw control character, and none but cachegate's own
/// starts like a hit.
#[track_caller]
fn one_line_per_message(err: &str) {
    assert!(
        !err.chars().any(|c| c.is_control() && c != '\n'),
        "a raw control character reached the log: {err:?}"
    );
    assert!(
        !err.lines().any(|l| l.starts_with("cachegate: hit")),
        "a value forged a hit line:\n{err}"
    );
}

#[test]
fn control_characters_in_values_reached_the_log_raw_and_could_forge_lines() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // A flag's value.
    // (No '[': that would make it a glob.)
    let forged = "x\ncachegate: hit pip 1a2b3c4d (protected) · 1 file\r\u{1b}M";
    let o = p
        .test()
        .ensure(&["--lock", "app.lock", "--path", forged], &tree_cmd("true"))
        .stderr_contains("caching x\\ncachegate: hit pip 1a2b3c4d (protected) · 1 file\\r\\u{1b}M")
        .stderr_contains("nothing saved: x\\ncachegate: hit")
        .run();
    one_line_per_message(&String::from_utf8_lossy(&o.stderr));
    let o = p
        .test()
        .args(["key", "--explain", "--lock", "app.lock", "--path", forged])
        .run();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("path     x\\ncachegate: hit"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("cachegate:")), "{out}");

    // A server's words: a store whose error page tries the same.
    let server = Server::start(Arc::new(|_req: Request| Response {
        status: 500,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: b"oops\rcachegate: hit pip 1a2b3c4d (protected)\x1b[2K\x07".to_vec(),
    }));
    let backend = format!("{}/cache", server.url());
    let o = p
        .test()
        .ensure(
            &[&ARGS[..], &["--backend", &backend, "--retries", "0"]].concat(),
            &one_file(),
        )
        .stderr_contains("answered 500 Internal Server Error: oops\\rcachegate: hit")
        .stderr_contains("\\u{1b}[2K\\u{7}")
        .warnings(1)
        .run();
    one_line_per_message(&String::from_utf8_lossy(&o.stderr));

    // The same in an error, which ends the run.
    let o = p
        .test()
        .ensure(&["--lock", "no\ncachegate: hit.lock"], &one_file())
        .status(2)
        .stderr_contains("--lock \"no\\ncachegate: hit.lock\" matches nothing")
        .run();
    one_line_per_message(&String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_10_kb_value_was_echoed_whole_in_every_message() {
    let p = Project::new();
    p.write("app.lock", "v1");
    let long = format!("deps-{}-end", "a".repeat(10_000));
    let o = p
        .test()
        .ensure(&["--lock", "app.lock", "--path", &long], &tree_cmd("true"))
        .stderr_contains("…[10009 bytes]…")
        .stderr_contains("nothing saved: deps-aaa")
        .run();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    for l in err.lines() {
        assert!(l.len() < 600, "a {} byte line: {l}", l.len());
    }
    assert!(err.contains("aaaa-end"), "the end is kept: {err}");
    let o = p
        .test()
        .ensure(&["--lock", &long], &one_file())
        .status(2)
        .stderr_contains("--lock \"deps-aaa")
        .stderr_contains("…[10009 bytes]…")
        .run();
    assert!(
        o.stderr.len() < 1500,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An entry of 12 MB that does not compress, saved straight to Garage, and the S3 URL of
/// the same store behind the nginx-style fault proxy (requests forwarded one by one).
fn s3_entry_behind_proxy() -> Option<(Project, Arc<FaultProxy>, String, Vec<u8>)> {
    let (p, store) = crate::s3::garage_project()?;
    p.write("app.lock", "v1");
    p.test().ensure(&S3_ARGS, &tree_cmd(BIG)).installs(1).run();
    let blob = fs::read(p.path("out/big")).unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    let proxy = Arc::new(FaultProxy::start_with(
        store.garage.s3_port,
        Arc::new(|_: &str| unreachable!("no replacing here")),
    ));
    let backend = format!(
        "s3://{}/{}?endpoint={}&region={}",
        garage::BUCKET,
        store.prefix,
        proxy.url(""),
        garage::REGION
    );
    Some((p, proxy, backend, blob))
}

const BIG: &str = "mkdir -p out && head -c 12000000 /dev/urandom > out/big";
const S3_ARGS: [&str; 6] = ["--lock", "app.lock", "--path", "out", "--chunk-size", "2M"];

#[test]
fn one_failed_s3_restore_printed_a_retry_line_per_part_and_attempt() {
    let Some((p, proxy, backend, blob)) = s3_entry_behind_proxy() else {
        return;
    };
    proxy.set_fault(Fault::ShortAlways);
    let o = p
        .test()
        .ensure(
            &[&S3_ARGS[..], &["--backend", &backend, "--retries", "2"]].concat(),
            &tree_cmd(BIG),
        )
        // The default verbosity, as a job runs it (the harness runs remote stores at -vvv).
        .env("CACHEGATE_VERBOSE", "0")
        .stderr_contains("could not restore")
        .installs(2)
        .run();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let retry_lines: Vec<&str> = err.lines().filter(|l| l.contains("retr")).collect();
    assert_eq!(retry_lines.len(), 1, "{err}");
    assert!(
        retry_lines[0].contains("retries (-v shows each); the last: "),
        "{err}"
    );
    // Every part was really retried: the proxy saw more than one request per range.
    assert!(
        proxy.archive_gets().len() > 12_000_000 / 2_000_000 + 2,
        "{err}"
    );

    // -v still shows each one.
    fs::remove_dir_all(p.path("out")).unwrap();
    let o = p
        .test()
        .ensure(
            &[&S3_ARGS[..], &["--backend", &backend, "--retries", "2"]].concat(),
            &tree_cmd(BIG),
        )
        .env("CACHEGATE_VERBOSE", "1")
        .installs(3)
        .run();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        err.lines().filter(|l| l.contains("retr")).count() > 2,
        "{err}"
    );
    assert!(!err.contains("-v shows each"), "{err}");

    // Without the fault the entry restores whole: nothing was wrong with it.
    proxy.set_fault(Fault::None);
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .ensure(
            &[&S3_ARGS[..], &["--backend", &backend]].concat(),
            &tree_cmd(BIG),
        )
        .stderr_contains("hit")
        .installs(3)
        .run();
    assert_eq!(fs::read(p.path("out/big")).unwrap(), blob);
}

/// An HTTP store on loopback that has nothing (404) and hangs up on every upload after
/// reading a little of its body: the network dropping the connection mid-upload.
fn store_that_drops_uploads() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cache", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                while r.read_line(&mut head).is_ok_and(|n| n > 2) {}
                let mut conn = conn;
                if head.starts_with("PUT") {
                    let mut some = vec![0u8; 64 << 10];
                    let _ = r.read_exact(&mut some);
                    // Closed with unread bytes waiting, the socket answers with a reset:
                    // the writer's next send fails.
                    return;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    url
}

#[test]
fn an_upload_cut_off_by_the_network_read_cannot_archive() {
    let url = store_that_drops_uploads();
    let p = Project::new();
    p.write("app.lock", "v1");
    let o = p
        .test()
        .ensure(
            &[&ARGS[..], &["--backend", &url, "--retries", "0"]].concat(),
            &tree_cmd("mkdir -p out && head -c 20000000 /dev/urandom > out/big"),
        )
        .stderr_contains("could not save")
        .stderr_contains("upload failed")
        .stderr_lacks("cannot archive")
        .warnings(1)
        .installs(1)
        .run();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains(&url), "names the store: {err}");
}

#[test]
fn a_feature_job_could_plant_an_unsigned_protected_entry_and_doctor_said_nothing() {
    let p = Project::new();
    p.write("app.lock", "v1");
    // A feature branch's script claims a protected ref for itself and plants a tree.
    // The same command as the real job's (so the same key), only its output differs.
    let install = tree_cmd("mkdir -p out && echo ${WHO:-real} > out/f");
    p.test()
        .env("WHO", "planted")
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "true")
        .ensure(&ARGS, &install)
        .stderr_contains("(protected)")
        .run();
    let protected_job = [("GITLAB_CI", "true"), ("CI_COMMIT_REF_PROTECTED", "true")];
    p.test()
        .arg("doctor")
        .envs(protected_job)
        .stderr_contains("all checks passed")
        .stderr_contains("CACHEGATE_TRUSTED_KEYS is not set: a job that sets CI_COMMIT_REF_PROTECTED=true itself can plant")
        .warnings(1)
        .run();
    // An unprotected job is told nothing: it cannot be fooled this way about its own scope.
    p.test()
        .arg("doctor")
        .env("GITLAB_CI", "true")
        .env("CI_COMMIT_REF_PROTECTED", "false")
        .warnings(0)
        .run();

    // With keys, the plant is a miss for the real protected job, and doctor is content.
    let o = p.test().arg("keygen").run();
    let keys = String::from_utf8_lossy(&o.stdout).into_owned();
    let (public, secret) = keys.trim().split_once('\n').unwrap();
    let signed = [
        ("CACHEGATE_TRUSTED_KEYS", public),
        ("CACHEGATE_SIGNING_KEY", secret),
    ];
    p.test()
        .arg("doctor")
        .envs(protected_job)
        .envs(signed)
        .warnings(0)
        .run();
    p.test()
        .arg("doctor")
        .envs(protected_job)
        .envs([signed[0]])
        .stderr_contains("no CACHEGATE_SIGNING_KEY: what they save is unsigned")
        .warnings(1)
        .run();
    fs::remove_dir_all(p.path("out")).unwrap();
    p.test()
        .envs(protected_job)
        .envs(signed)
        .ensure(&ARGS, &install)
        .stderr_contains("not restoring the protected entry")
        .installs(2)
        .run();
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "real\n");
}

/// A store on loopback that accepts every connection, reads the request and never answers.
/// Counts the connections.
fn silent_store() -> (String, Arc<AtomicUsize>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = conn.read(&mut buf);
                std::thread::sleep(Duration::from_secs(60));
                drop(conn);
            });
        }
    });
    (url, count)
}

#[test]
fn a_store_that_never_answers_cost_retries_plus_one_stall_timeouts() {
    let (url, connections) = silent_store();
    let p = Project::new();
    p.write("app.lock", "v1");
    // 4 attempts of 2 s each before; now the first silence and one more stall timeout.
    let args = [&ARGS[..], &["--stall-timeout", "2", "--retries", "3"]].concat();
    let start = Instant::now();
    p.test()
        .ensure(
            &[&args[..], &["--backend", &format!("{url}/cache")]].concat(),
            &one_file(),
        )
        .stderr_contains("no answer within 2 s (--stall-timeout)")
        .stderr_contains("treating it as a miss")
        .warnings(1)
        .installs(1)
        .run();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(2 * 2 + 1),
        "took {took:?}"
    );
    assert_eq!(fs::read_to_string(p.path("out/f")).unwrap(), "data\n");
    // It was retried once, within the bound, not given up at the first silence.
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    // The same for S3: the store client's own retries share the bound.
    if !garage::available() {
        return;
    }
    let store = garage::GarageStore::new();
    let backend = format!(
        "s3://{}/{}?endpoint={url}&region={}",
        garage::BUCKET,
        store.prefix,
        garage::REGION
    );
    fs::remove_dir_all(p.path("out")).unwrap();
    let start = Instant::now();
    p.test()
        .ensure(&[&args[..], &["--backend", &backend]].concat(), &one_file())
        .envs(crate::common::Store::env(&store))
        .stderr_contains("treating it as a miss")
        .warnings(1)
        .installs(2)
        .run();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2 * 2 + 2), "took {took:?}");
}

/// 6 MB that do not compress: with `ranged::ARGS`' 1 MB chunks, seven ranges.
const SIX_MB: &str = "mkdir -p out && head -c 6000000 /dev/urandom > out/blob";
use crate::ranged::ARGS as RANGED;

/// How many times each range of the archive was asked for.
fn range_counts(proxy: &FaultProxy) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for g in proxy.archive_gets() {
        *counts.entry(g.range.unwrap_or_default()).or_default() += 1;
    }
    counts
}

/// A project whose 6 MB entry (seven 1 MB ranges) is saved on nginx behind the fault proxy,
/// and where nginx keeps the store's files.
fn saved_through_proxy() -> Option<(Project, Arc<FaultProxy>, std::path::PathBuf)> {
    let store = crate::ranged::Proxied::start()?;
    let proxy = store.proxy.clone();
    let root = store.nginx.root.join("cache");
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    p.test()
        .ensure(&RANGED, &tree_cmd(SIX_MB))
        .installs(1)
        .run();
    Some((p, proxy, root))
}

#[test]
fn one_flipped_byte_in_transit_deleted_a_valid_entry() {
    let Some((p, proxy, root)) = saved_through_proxy() else {
        return;
    };
    let blob = fs::read(p.path("out/blob")).unwrap();
    // The archive's name carries its upload: a new save is a new name.
    let manifests = || {
        listed(&p)
            .iter()
            .map(|e| e["archive"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let before = manifests();
    assert_eq!(before.len(), 1);
    // A digest per 1 MB range: 7 of 16 bytes, in base64.
    let (stem, _) = before[0].rsplit_once('-').unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(format!("{stem}.json"))).unwrap()).unwrap();
    assert_eq!(manifest["chunks"]["size"], 1_000_000, "{manifest}");
    assert_eq!(
        manifest["chunks"]["blake3"].as_str().unwrap().len(),
        152,
        "{manifest}"
    );

    // One byte flipped on the way, once: that range alone is fetched again, on a new
    // connection, and the entry stays.
    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    proxy.set_fault(Fault::FlipOnce);
    p.test()
        .ensure(&RANGED, &tree_cmd(SIX_MB))
        .stderr_contains("arrived damaged; fetching that range again on a new connection")
        .stderr_lacks("reading it again")
        .stderr_contains("cachegate: hit")
        .stderr_lacks("removed")
        .warnings(0)
        .installs(1)
        .run();
    assert_eq!(fs::read(p.path("out/blob")).unwrap(), blob);
    assert_eq!(manifests(), before, "the entry is the one saved");
    let counts = range_counts(&proxy);
    assert_eq!(counts.len(), 7, "seven ranges: {counts:?}");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(twice.len(), 1, "one range fetched again: {counts:?}");
    assert_eq!(*twice[0].1, 2, "{counts:?}");
    assert!(
        !twice[0].0.starts_with("bytes=0-"),
        "the flipped one: {counts:?}"
    );

    // An entry saved before range digests: the whole archive is read again instead.
    let mut old = manifest.clone();
    old.as_object_mut().unwrap().remove("chunks");
    fs::write(
        root.join(format!("{stem}.json")),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    proxy.set_fault(Fault::FlipOnce);
    p.test()
        .ensure(&RANGED, &tree_cmd(SIX_MB))
        .stderr_contains("arrived damaged (archive digest does not match the manifest); reading it again on a new connection")
        .stderr_contains("cachegate: hit")
        .stderr_lacks("removed")
        .installs(1)
        .run();
    assert_eq!(fs::read(p.path("out/blob")).unwrap(), blob);
    assert_eq!(manifests(), before, "the entry is the one saved");
    assert!(
        range_counts(&proxy).values().all(|n| *n == 2),
        "every range twice: {:?}",
        range_counts(&proxy)
    );

    // Damaged every time it is read: the stored entry is judged bad only then.
    fs::write(
        root.join(format!("{stem}.json")),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    proxy.set_fault(Fault::FlipByte);
    p.test()
        .ensure(&RANGED, &tree_cmd(SIX_MB))
        .stderr_contains("digest does not match the manifest (read twice, on two connections)")
        .stderr_lacks("reading it again")
        .stderr_contains("the entry is removed and will be replaced")
        .installs(2)
        .run();
    assert_ne!(manifests(), before, "replaced by the new save");
}

#[test]
fn a_range_damaged_in_the_store_is_read_twice_and_the_entry_removed() {
    let Some((p, proxy, root)) = saved_through_proxy() else {
        return;
    };
    let archive = listed(&p)[0]["archive"].as_str().unwrap().to_string();
    // One byte rots on the server's disk, in the fourth range.
    let file = root.join(&archive);
    let mut bytes = fs::read(&file).unwrap();
    bytes[3_500_000] ^= 0x55;
    fs::write(&file, &bytes).unwrap();

    fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    p.test()
        .ensure(&RANGED, &tree_cmd(SIX_MB))
        .stderr_contains("bytes 3000000-3999999 of")
        .stderr_contains("arrived damaged; fetching that range again on a new connection")
        .stderr_contains("bytes 3000000-3999999 of the archive: digest does not match the manifest (read twice, on two connections)")
        .stderr_contains("the entry is removed and will be replaced")
        .stderr_lacks("reading it again")
        .installs(2)
        .run();
    let counts = range_counts(&proxy);
    assert_eq!(counts.get("bytes=3000000-3999999"), Some(&2), "{counts:?}");
    assert!(counts.values().all(|n| *n <= 2), "{counts:?}");
    assert_ne!(
        listed(&p)[0]["archive"].as_str().unwrap(),
        archive,
        "replaced by the new save"
    );
}

#[test]
fn a_kill_between_renames_left_one_path_new_and_another_old() {
    if !crate::common::require_tool("strace", "apt-get install strace") {
        return;
    }
    let p = Project::new();
    p.write("app.lock", "v1");
    let two = ["--lock", "app.lock", "--path", "data", "--path", "data2"];
    let install = tree_cmd("mkdir -p data data2 && echo new > data/f && echo new > data2/f");
    p.test().ensure(&two, &install).installs(1).run();
    // Each path's swap is two renames (the old tree aside, the new one in): kill the
    // restore with SIGKILL as it enters each of the four, for real, and let the next run
    // (a miss: the lock changed) show what its install found in place.
    for when in 1..=4 {
        p.write("data/f", "old\n").write("data2/f", "old\n");
        p.write("app.lock", "v1");
        // cachegate under strace, in the project's scrubbed environment.
        let kill = format!("-einject=rename:signal=KILL:when={when}");
        let o = p
            .test()
            .via([
                "strace",
                "-o",
                "/dev/null",
                "-f",
                "-e",
                "trace=rename",
                "-e",
                "signal=none",
                &kill,
            ])
            .verb("restore", &two, &install)
            .any_status()
            .run();
        assert!(!o.status.success(), "not killed at rename {when}: {o:?}");
        let shown = |rel: &str| fs::read_to_string(p.path(rel)).unwrap_or("missing".into());
        // What the kill left (nothing swapped yet at the first rename).
        let left = (shown("data/f"), shown("data2/f"));
        if when > 1 {
            assert_ne!(left.0, left.1, "kill {when}: the swap was cut short");
        }
        p.write("app.lock", &format!("v{}", when + 1));
        let seen = tree_cmd(
            "cat data/f data2/f > seen.txt && mkdir -p data data2 && echo new > data/f && echo new > data2/f",
        );
        let next = p.test().ensure(&two, &seen);
        let next = if when > 1 {
            next.stderr_contains("an earlier restore was interrupted midway; put")
        } else {
            next
        };
        next.run();
        assert_eq!(
            fs::read_to_string(p.path("seen.txt")).unwrap(),
            "old\nold\n",
            "after a kill at rename {when}, the next run saw both paths as they were"
        );
        let left = crate::core_loop::staging_dirs(&p.dir);
        assert!(left.is_empty(), "{left:?}");
    }
}
