//! A progress bar on stderr for a restore or a save that takes a while (bytes, rate, ETA).
//!
//! Only for people at a terminal: when stderr is not a terminal, or inside CI (`CI` or
//! `GITLAB_CI` set), nothing is drawn and the summary line stays the only output. The bar
//! stays hidden for its first second (`CACHEGATE_PROGRESS_DELAY`), so quick restores look the
//! same as before, and it is cleared when done so the summary line replaces it.

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::env_vars;

const DEFAULT_DELAY: Duration = Duration::from_secs(1);
// Sizes in the same decimal units as the summary line (report::bytes).
const KNOWN: &str =
    "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}";
const UNKNOWN: &str = "{msg} {decimal_bytes} {decimal_bytes_per_sec}";

/// One transfer's bar, cleared when dropped (the summary line then takes its place).
pub struct Progress {
    counter: Counter,
}

/// A handle that counts bytes into the bar; readers each hold one.
#[derive(Clone)]
struct Counter {
    bar: ProgressBar,
    // When the hidden bar starts drawing; None once this handle has checked, or never.
    show_at: Option<Instant>,
}

impl Counter {
    fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if let Some(at) = self.show_at {
            if Instant::now() >= at {
                self.show_at = None;
                if self.bar.is_hidden() {
                    self.bar.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
        }
    }
}

fn wanted() -> bool {
    io::stderr().is_terminal()
        && std::env::var_os(env_vars::CI).is_none()
        && std::env::var_os(env_vars::GITLAB_CI).is_none()
}

fn delay() -> Duration {
    std::env::var(env_vars::CACHEGATE_PROGRESS_DELAY)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_DELAY, Duration::from_secs_f64)
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

impl Progress {
    /// A bar for `total` bytes (`None`: not known yet), labelled `what`.
    fn new(what: &str, total: Option<u64>) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        bar.set_style(style(if total.is_some() { KNOWN } else { UNKNOWN }));
        bar.set_message(what.to_string());
        Progress {
            counter: Counter {
                bar,
                show_at: wanted().then(|| Instant::now() + delay()),
            },
        }
    }

    fn enabled(&self) -> bool {
        self.counter.show_at.is_some()
    }

    /// A restore of an archive of `size` bytes, counted as they are downloaded.
    pub fn restore(size: u64) -> Progress {
        Progress::new("restoring", Some(size))
    }

    /// A save of `roots`, counted in file content bytes as they are read. The total is
    /// counted on a thread of its own, and only when the bar can show, so the archive is not
    /// held up by the count.
    pub fn save(roots: Vec<PathBuf>) -> Progress {
        let p = Progress::new("saving", None);
        if p.enabled() {
            let bar = p.counter.bar.clone();
            std::thread::spawn(move || {
                let total: u64 = roots.iter().map(|r| content_bytes(r)).sum();
                bar.set_length(total);
                bar.set_style(style(KNOWN));
            });
        }
        p
    }

    /// `read`, counting what passes through.
    pub fn reader<R: Read>(&self, read: R) -> ProgressReader<R> {
        ProgressReader {
            inner: read,
            counter: self.counter.clone(),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.counter.bar.finish_and_clear();
    }
}

fn content_bytes(root: &Path) -> u64 {
    walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

pub struct ProgressReader<R> {
    inner: R,
    counter: Counter,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.inc(n as u64);
        Ok(n)
    }
}
