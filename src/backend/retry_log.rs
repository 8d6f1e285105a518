//! Retries as the log shows them. A parallel download retries a broken part on top of the
//! store client's own request retries, so one failed restore could print dozens of lines;
//! at the default verbosity a step's retries are counted into one summary line when the step
//! ends. `-v` shows every retry as it happens.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static SHOW_ALL: AtomicBool = AtomicBool::new(false);

/// Retries since the last summary, and the latest one's words.
static NOTED: Mutex<(u64, String)> = Mutex::new((0, String::new()));

/// Show every retry as it happens (`-v`), not only the step's summary.
pub fn show_all(on: bool) {
    SHOW_ALL.store(on, Ordering::Relaxed);
}

/// A retry about to happen, in words (`GET …: timed out; retrying that part in 0.2 s`).
pub fn note(what: &str) {
    let line = crate::echo::line(&crate::redact::redact(what)).into_owned();
    let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    noted.0 += 1;
    if SHOW_ALL.load(Ordering::Relaxed) {
        eprintln!("cachegate: {line}");
    }
    noted.1 = line;
}

/// End of a step (a restore, a save, a command): its retries, as one line.
pub fn summarize() {
    let (count, last) = std::mem::take(&mut *NOTED.lock().unwrap_or_else(|e| e.into_inner()));
    if count > 0 && !SHOW_ALL.load(Ordering::Relaxed) {
        eprintln!(
            "cachegate: {count} {} (-v shows each); the last: {last}",
            if count == 1 { "retry" } else { "retries" }
        );
    }
}
