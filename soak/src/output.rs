//! Every line `soak` prints goes through here, so a closed pipe (`soak score X | head`) is
//! quiet and correct: `println!` would panic (exit 101) on `EPIPE`.
//!
//! Rust starts every program with `SIGPIPE` ignored, so a write to a closed pipe returns
//! `BrokenPipe` instead of killing the process — which `soak` wants: a `soak run` whose
//! output reader went away must still stop its nodes and seal its proof. So `SIGPIPE` stays
//! ignored, and the printing paths treat `BrokenPipe` as "nobody reads this any more": the
//! stream is marked closed, later writes to it are skipped, and the command finishes with its
//! own exit code (the verdict, under `set -o pipefail`). Any other write error is reported once
//! on stderr. `soak/clippy.toml` forbids the std printing macros in this crate so nothing
//! bypasses this module; exit 101 is left to real bugs (panics).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static STDOUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Writes `args` (plus a newline when `newline`) to `stream`, handling a closed pipe as
/// described in the module docs. Never panics.
pub fn write(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    let closed = match stream {
        Stream::Stdout => &STDOUT_CLOSED,
        Stream::Stderr => &STDERR_CLOSED,
    };
    if closed.load(Ordering::Relaxed) {
        return;
    }
    let result = match stream {
        Stream::Stdout => write_to(&mut io::stdout().lock(), args, newline),
        Stream::Stderr => write_to(&mut io::stderr().lock(), args, newline),
    };
    match result {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            closed.store(true, Ordering::Relaxed)
        }
        Err(err) => {
            // Reported once; stderr errors have nowhere to go.
            if stream == Stream::Stdout && !STDOUT_FAILED.swap(true, Ordering::Relaxed) {
                write(
                    Stream::Stderr,
                    format_args!("soak: cannot write to stdout: {err}"),
                    true,
                );
            }
        }
    }
}

/// Writes raw bytes to stdout (e.g. a remote log), with the same closed-pipe handling.
pub fn stdout_bytes(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Err(err) => write(
            Stream::Stderr,
            format_args!("soak: cannot write to stdout: {err}"),
            true,
        ),
    }
}

fn write_to(out: &mut dyn Write, args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    out.write_fmt(args)?;
    if newline {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => { $crate::output::write($crate::output::Stream::Stdout, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stdout, format_args!($($arg)*), true) };
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stdout, format_args!($($arg)*), false) };
}

/// `eprintln!` that survives a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::write($crate::output::Stream::Stderr, format_args!($($arg)*), true) };
}

pub(crate) use {errln, out, outln};
