//! Retries as the log shows them. A parallel download retries a broken part on top of the
//! store client's own request retries, so one failed restore could print dozens of lines;
//! at the default verbosity the first retry of a step is shown as it happens and the rest
//! are counted into one summary line when the step ends. `-v` shows every retry.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static SHOW_ALL: AtomicBool = AtomicBool::new(false);

/// Retries since the last summary, and the latest one's words.
static NOTED: Mutex<(u64, String)> = Mutex::new((0, String::new()));

/// Show every retry (`-v`), not only the first of a step.
pub fn show_all(on: bool) {
    SHOW_ALL.store(on, Ordering::Relaxed);
}

/// A retry about to happen, in words (`GET …: timed out; retrying that part in 0.2 s`).
pub fn note(what: &str) {
    let line = crate::echo::line(&crate::redact::redact(what)).into_owned();
    let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    noted.0 += 1;
    if noted.0 == 1 || SHOW_ALL.load(Ordering::Relaxed) {
        eprintln!("cachegate: {line}");
    }
    noted.1 = line;
}

/// End of a step (a restore, a save, a command): the retries not shown, as one line.
pub fn summarize() {
    let (count, last) = std::mem::take(&mut *NOTED.lock().unwrap_or_else(|e| e.into_inner()));
    if count > 1 && !SHOW_ALL.load(Ordering::Relaxed) {
        eprintln!(
            "cachegate: {} more {} after the one above (-v shows each); the last: {last}",
            count - 1,
            if count == 2 { "retry" } else { "retries" }
        );
    }
}
