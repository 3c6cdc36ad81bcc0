//! Everything the commands print goes through here: [`outln!`] and
//! [`out!`] for standard output, [`errln!`] for standard error, [`Stdout`]
//! for output written in pieces (exports).
//!
//! A standard output closed by its reader (`commonlab flags list | head -1`)
//! is not an error and never a panic: what would have been printed is
//! dropped, an export stops writing ([`StdoutClosed`]), and the command
//! exits as it would have: 0 when it succeeded (not the 141 of a process
//! killed by `SIGPIPE`, so `set -o pipefail` scripts that stop reading
//! early do not fail), 1 when what it did failed (an import with rejected
//! events, a validation with errors). A closed standard error is ignored.

use anyhow::anyhow;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output found it closed by its reader.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The error that stops an export whose reader closed standard output;
/// `main` exits 0 on it, quietly.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether a write to standard output found it closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn note(e: &std::io::Error) {
    if e.kind() == ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Writes `args` to standard output. A closed standard output drops them
/// (see the module's documentation); any other failure is an error.
pub fn print(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    if closed() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            note(&e);
            Ok(())
        }
        Err(e) => Err(anyhow!("cannot write to standard output: {e}")),
    }
}

/// Writes `args` to standard error, ignoring failure (nowhere to report it).
pub fn eprint(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` through [`print`]: `outln!(...)?`.
macro_rules! outln {
    () => {
        $crate::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`print`]: `out!(...)?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print(format_args!($($arg)*))
    };
}

/// `eprintln!` that cannot panic: a closed standard error is ignored.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::eprint(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};

/// Pretty JSON on a line of its own.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)
}

/// A time as the tables show it: `2027-01-05T12:00:00Z`.
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Standard output for writing in pieces, buffered; a write after its
/// reader closed it fails (so an export stops) and is remembered, and
/// [`Stdout::finish`] turns the export's result into [`StdoutClosed`].
pub struct Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>);

impl Stdout {
    pub fn new() -> Self {
        Stdout(std::io::BufWriter::new(std::io::stdout().lock()))
    }

    /// Flushes, and gives `result` unless the reader closed standard
    /// output while it was written ([`StdoutClosed`] then).
    pub fn finish<T, E: Into<anyhow::Error>>(mut self, result: Result<T, E>) -> anyhow::Result<T> {
        let flushed = self.flush();
        if closed() {
            return Err(StdoutClosed.into());
        }
        let value = result.map_err(Into::into)?;
        flushed.map_err(|e| anyhow!("cannot write to standard output: {e}"))?;
        Ok(value)
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).inspect_err(note)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().inspect_err(note)
    }
}
