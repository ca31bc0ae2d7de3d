//! What the `sandflow` binary prints, and what happens when nobody reads it any more.
//!
//! Rust's `println!` panics when its reader has gone (`sandflow dags list | head -n 1`: "failed
//! printing to stdout: Broken pipe", exit 101). Commands print through [`outln!`] and [`errln!`]
//! instead: a closed pipe ends the command quietly with exit 0, as `head` expects, and any other
//! failure to write ends it with a one-line reason. The long-running `standalone` prints through
//! [`sayln!`], which drops what cannot be written: a server never dies because its output went away.
//!
//! Text that came from files, plugins or users (ids, reasons, notes, logs) passes through
//! [`sandflow_core::text::clean`] before it reaches a terminal.

use std::fmt;
use std::io::{self, Write};

/// Which stream.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Standard output: results.
    Out,
    /// Standard error: logs, progress, reasons.
    Err,
}

/// Writes `args` (and a newline when `newline`) for a command. A reader that went away ends the
/// process quietly; another write error ends it with exit 1.
pub fn command(stream: Stream, args: fmt::Arguments<'_>, newline: bool) {
    if let Err(e) = write(stream, args, newline) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let _ = writeln!(io::stderr(), "sandflow: could not write the output: {e}");
        std::process::exit(1);
    }
}

/// Writes `args` and a newline for a server: what cannot be written is dropped.
pub fn server(stream: Stream, args: fmt::Arguments<'_>) {
    let _ = write(stream, args, true);
}

fn write(stream: Stream, args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
    fn to(mut w: impl Write, args: fmt::Arguments<'_>, newline: bool) -> io::Result<()> {
        w.write_fmt(args)?;
        if newline {
            w.write_all(b"\n")?;
        }
        w.flush()
    }
    match stream {
        Stream::Out => to(io::stdout().lock(), args, newline),
        Stream::Err => to(io::stderr().lock(), args, newline),
    }
}

/// `println!` for commands: see the module's documentation.
macro_rules! outln {
    () => { $crate::out::command($crate::out::Stream::Out, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::command($crate::out::Stream::Out, format_args!($($arg)*), true) };
}

/// `print!` for commands.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::command($crate::out::Stream::Out, format_args!($($arg)*), false) };
}

/// `eprintln!` for commands.
macro_rules! errln {
    () => { $crate::out::command($crate::out::Stream::Err, format_args!(""), true) };
    ($($arg:tt)*) => { $crate::out::command($crate::out::Stream::Err, format_args!($($arg)*), true) };
}

/// `eprint!` for commands.
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::command($crate::out::Stream::Err, format_args!($($arg)*), false) };
}

/// `println!` for a server: what cannot be written is dropped.
macro_rules! sayln {
    ($($arg:tt)*) => { $crate::out::server($crate::out::Stream::Out, format_args!($($arg)*)) };
}

pub(crate) use {err, errln, out, outln, sayln};
