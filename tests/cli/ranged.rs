//! Parallel ranged downloads against a real nginx, through a proxy that counts requests and
//! injects the faults real servers and networks have: no Range support, a range cut short,
//! bytes damaged in transit, an archive replaced mid-download.

use std::sync::Arc;

use crate::common::faults::{Fault, FaultProxy};
use crate::common::nginx::{Nginx, Options};
use crate::common::{Project, Store, Test};

/// nginx behind the fault proxy, as a cachegate store.
pub(crate) struct Proxied {
    pub nginx: Nginx,
    pub proxy: Arc<FaultProxy>,
}

impl Proxied {
    /// `None` (after a loud message) when nginx is missing outside CI.
    pub fn start() -> Option<Proxied> {
        let nginx = Nginx::start(Options::default())?;
        let proxy = Arc::new(FaultProxy::start(nginx.port, nginx.root.clone()));
        Some(Proxied { nginx, proxy })
    }
}

impl Store for Proxied {
    fn backend(&self) -> String {
        self.proxy.url("/cache")
    }
    fn clear(&self) {
        let _ = std::fs::remove_dir_all(self.nginx.root.join("cache"));
    }
}

/// `--chunk-size 1M` below.
const CHUNK: u64 = 1_000_000;

/// 6 MB that do not compress: with 1 MB chunks the archive is seven ranges.
const CMD: &str = "echo run >> installs.log && (cat out/marker 2>/dev/null || echo none) >> seen.log && rm -rf out && mkdir out && head -c 6000000 /dev/urandom > out/blob";
pub(crate) const ARGS: [&str; 8] = [
    "--lock",
    "app.lock",
    "--path",
    "out",
    "--chunk-size",
    "1M",
    "--concurrency",
    "4",
];

/// `ensure` with the arguments above, then `extra`, caching what `CMD` makes.
fn ensure<'p>(p: &'p Project, extra: &[&str]) -> Test<'p> {
    let args: Vec<&str> = ARGS.iter().chain(extra).copied().collect();
    p.test().ensure(&args, &["sh", "-c", CMD])
}

/// A project whose entry is saved; the proxy's log starts empty.
fn saved() -> Option<(Project, Arc<FaultProxy>, Vec<u8>)> {
    let store = Proxied::start()?;
    let proxy = store.proxy.clone();
    let p = Project::with_store(Box::new(store));
    p.write("app.lock", "v1");
    ensure(&p, &[]).run();
    let blob = std::fs::read(p.path("out/blob")).unwrap();
    std::fs::remove_dir_all(p.path("out")).unwrap();
    proxy.clear_seen();
    Some((p, proxy, blob))
}

#[test]
fn a_large_archive_comes_in_parallel_ranges_bound_to_its_etag() {
    let Some((p, proxy, blob)) = saved() else {
        return;
    };
    ensure(&p, &[]).installs(1).run();
    assert_eq!(std::fs::read(p.path("out/blob")).unwrap(), blob);
    let gets = proxy.archive_gets();
    assert!(gets.len() >= 6, "{gets:?}");
    assert!(gets.iter().all(|g| g.status == 206), "{gets:?}");
    let first = &gets[0];
    assert_eq!(first.range.as_deref(), Some("bytes=0-999999"));
    assert!(first.if_match.is_none());
    // Every later range names the version the first answer came from.
    let mut starts: Vec<&str> = gets[1..]
        .iter()
        .map(|g| {
            assert!(g.if_match.is_some(), "{g:?}");
            g.range.as_deref().unwrap()
        })
        .collect();
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), gets.len() - 1, "no range fetched twice");
}

#[test]
fn a_server_that_ignores_range_still_restores_in_one_stream() {
    let Some((p, proxy, blob)) = saved() else {
        return;
    };
    proxy.set_fault(Fault::IgnoreRange);
    ensure(&p, &[]).installs(1).run();
    assert_eq!(std::fs::read(p.path("out/blob")).unwrap(), blob);
    let gets = proxy.archive_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].status, 200);
}

#[test]
fn a_range_cut_short_once_is_retried_and_the_restore_succeeds() {
    let Some((p, proxy, blob)) = saved() else {
        return;
    };
    proxy.set_fault(Fault::ShortOnce);
    ensure(&p, &[])
        .installs(1)
        .stderr_contains("retrying that part")
        .run();
    assert_eq!(std::fs::read(p.path("out/blob")).unwrap(), blob);
    // The range cut short is taken up where it broke off: one request more, for its rest.
    let ranges: Vec<(u64, u64)> = proxy
        .archive_gets()
        .into_iter()
        .filter_map(|g| {
            let range = g.range?;
            let (a, b) = range.strip_prefix("bytes=")?.split_once('-')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    let chunks = blob_chunks(&ranges);
    assert_eq!(ranges.len(), chunks + 1, "{ranges:?}");
    let resumed: Vec<_> = ranges
        .iter()
        .filter(|(a, b)| ranges.iter().any(|(c, d)| d == b && c < a))
        .collect();
    assert_eq!(resumed.len(), 1, "{ranges:?}");
    assert_ne!(resumed[0].0 % CHUNK, 0, "{ranges:?}");
}

/// How many chunks the ranges cover: the ones that start on a chunk boundary.
fn blob_chunks(ranges: &[(u64, u64)]) -> usize {
    ranges.iter().filter(|(a, _)| a % CHUNK == 0).count()
}

#[test]
fn a_range_with_wrong_bytes_fails_the_digest_and_nothing_is_swapped_in() {
    let Some((p, proxy, _)) = saved() else {
        return;
    };
    p.write("out/marker", "before");
    proxy.set_fault(Fault::FlipByte);
    ensure(&p, &["--policy", "pull"])
        .stderr_contains("digest does not match")
        .installs(2)
        .run();
    // What the install command found in place: the tree as it was, nothing half-restored.
    let seen = std::fs::read_to_string(p.path("seen.log")).unwrap();
    assert_eq!(seen.lines().last(), Some("before"), "{seen}");
}

#[test]
fn an_archive_replaced_mid_download_fails_fast_instead_of_splicing() {
    let Some((p, proxy, _)) = saved() else {
        return;
    };
    p.write("out/marker", "before");
    proxy.set_fault(Fault::ReplaceAfterFirst);
    ensure(&p, &["--policy", "pull"])
        .stderr_contains("412")
        .stderr_contains("replaced")
        .installs(2)
        .run();
    let seen = std::fs::read_to_string(p.path("seen.log")).unwrap();
    assert_eq!(seen.lines().last(), Some("before"), "{seen}");
    // The first range plus at most the ones already in flight: no retries of a 412.
    let gets = proxy.archive_gets();
    assert!(gets.len() <= 1 + 4, "{gets:?}");
    assert!(gets.iter().skip(1).any(|g| g.status == 412), "{gets:?}");
}
