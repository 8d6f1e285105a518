//! A progress bar on stderr for a restore or a save that takes a while (bytes, rate, ETA).
//!
//! The bar is for people at a terminal, as wide as the terminal. When stderr is not a
//! terminal, or inside CI (`CI` or `GITLAB_CI` set), nothing is drawn; a transfer that goes
//! on prints a plain line every 10 s instead (bytes so far, rate), so a long restore is not
//! silent in a CI log, and a quick one leaves only the summary line. The bar stays hidden for
//! its first second (`CACHEGATE_PROGRESS_DELAY`), so quick restores look the same as before,
//! and it is cleared when done so the summary line replaces it.

use std::io::{self, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::env_vars;

const DEFAULT_DELAY: Duration = Duration::from_secs(1);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
// Sizes in the same decimal units as the summary line (report::bytes). The bar takes what
// the terminal's width leaves, so the line never wraps.
const KNOWN: &str =
    "{msg} [{wide_bar}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}";
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
    // Where no bar is drawn: the plain lines, shared by every handle.
    plain: Option<Arc<Plain>>,
}

/// Plain progress lines for a log: what, and when the next one is due.
struct Plain {
    what: &'static str,
    start: Instant,
    interval: Duration,
    next: Mutex<Instant>,
}

impl Plain {
    fn tick(&self, bar: &ProgressBar) {
        let now = Instant::now();
        {
            let Ok(mut next) = self.next.lock() else {
                return;
            };
            if now < *next {
                return;
            }
            *next = now + self.interval;
        }
        let done = bar.position();
        let secs = now.duration_since(self.start).as_secs_f64();
        let of = match bar.length() {
            Some(total) if total > 0 => format!(
                " of {} ({}%)",
                crate::report::bytes(total),
                done.saturating_mul(100) / total
            ),
            _ => String::new(),
        };
        let rate = if secs > 0.0 {
            crate::report::bytes((done as f64 / secs) as u64)
        } else {
            "-".into()
        };
        eprintln!(
            "cachegate: {} · {}{of} · {rate}/s · {}",
            self.what,
            crate::report::bytes(done),
            crate::report::secs(secs)
        );
    }
}

impl Counter {
    fn inc(&mut self, n: u64) {
        self.bar.inc(n);
        if let Some(p) = &self.plain {
            p.tick(&self.bar);
        }
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

/// Seconds from a hidden variable, or `default`.
fn seconds(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(default, Duration::from_secs_f64)
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

impl Progress {
    /// A bar for `total` bytes (`None`: not known yet), labelled `what`.
    fn new(what: &'static str, total: Option<u64>) -> Progress {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        bar.set_style(style(if total.is_some() { KNOWN } else { UNKNOWN }));
        bar.set_message(what.to_string());
        let drawn = wanted();
        let plain = (!drawn).then(|| {
            let interval = seconds(env_vars::CACHEGATE_PROGRESS_INTERVAL, DEFAULT_INTERVAL);
            let start = Instant::now();
            Arc::new(Plain {
                what,
                start,
                interval,
                next: Mutex::new(start + interval),
            })
        });
        Progress {
            counter: Counter {
                bar,
                show_at: drawn.then(|| {
                    Instant::now() + seconds(env_vars::CACHEGATE_PROGRESS_DELAY, DEFAULT_DELAY)
                }),
                plain,
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
    crate::paths::walk(root)
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
