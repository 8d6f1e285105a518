//! stdout is data (`ls`, `prune`, `explain`, `key`, `keygen`, `presets`, `man`). A reader
//! that stops reading (`cachegate ls | head -1`) ends the output, not the command: with
//! `panic = "abort"`, `println!` would abort the process on the closed pipe. Every command
//! writes stdout through here (clippy's `disallowed-macros` keeps `print!` out), and
//! `guard_std_fds` runs first in `main`, so a closed stdout is one case for all of them.

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
        if !reader_gone(&e) {
            crate::report::warn(&format!("cannot write to stdout: {e}"));
        }
    }
}

/// Write raw bytes to stdout, as `write` does (completions, the man page).
pub fn write_bytes(bytes: &[u8]) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if !reader_gone(&e) {
            crate::report::warn(&format!("cannot write to stdout: {e}"));
        }
    }
}

/// The reader went away (`| head`), or there never was one: a stdout the caller closed
/// (`>&-`) is as deliberate as a reader that stops.
fn reader_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe || e.raw_os_error() == Some(libc::EBADF)
}

/// Give every closed standard descriptor (0, 1, 2) `/dev/null`. A process started with a
/// closed stdout would otherwise hand descriptor 1 to the first file it opens (an archive,
/// a lock), and data meant for stdout would land in that file.
pub fn guard_std_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether `fd` is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let flags = if fd == 0 {
            libc::O_RDONLY
        } else {
            libc::O_WRONLY
        };
        // SAFETY: a NUL-terminated path; the lowest free descriptor is `fd` itself, since
        // every lower one is open (checked in order).
        let got = unsafe { libc::open(c"/dev/null".as_ptr(), flags) };
        if got >= 0 && got != fd {
            // SAFETY: both descriptors are valid; dup2 onto a closed fd opens it.
            unsafe {
                libc::dup2(got, fd);
                libc::close(got);
            }
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
