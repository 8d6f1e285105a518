//! stdout is data (`ls`, `prune`, `explain`, `key`, `keygen`). A reader that stops reading
//! (`cachegate ls | head -1`) ends the output, not the command: with `panic = "abort"`,
//! `println!` would abort the process on the closed pipe.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The reader of stdout went away; nothing more is written.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout; a closed pipe silences the rest, any other failure is a warning once.
pub fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            crate::report::warn(&format!("cannot write to stdout: {e}"));
        }
    }
}

/// `println!` for data on stdout.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for data on stdout.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}
