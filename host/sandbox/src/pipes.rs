//! Capped in-memory pipes for a guest's stdout (the result) and stderr (the log).
//!
//! wasmtime-wasi's `MemoryOutputPipe` has a hard cap but cannot tell "the guest wrote too much" from
//! "the guest failed", and on the preview1 path it answers a full buffer with a zero-length write.
//! These pipes record what happened: stdout past its cap traps the guest at once (the try's outcome is
//! "output too large" and host memory stays bounded); stderr past its cap keeps the head, counts what
//! it dropped and lets the guest go on, so a chatty plugin still finishes.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What a pipe does with bytes past its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhenFull {
    /// Fail the write (and, through preview2, trap the guest).
    Fail,
    /// Keep the head, drop the rest, count it.
    Truncate,
}

/// The error a guest's stdout write fails with once the cap is passed.
#[derive(Debug, thiserror::Error)]
#[error("stdout is over its limit of {0} bytes")]
pub(crate) struct OutputLimitExceeded(pub usize);

#[derive(Debug)]
struct State {
    buffer: BytesMut,
    dropped: u64,
    /// For a timestamped pipe: the next byte starts a line.
    line_start: bool,
}

/// The prefix of a log line: when it was written, RFC 3339 in UTC with milliseconds.
pub(crate) fn stamp() -> String {
    format!("{} ", humantime::format_rfc3339_millis(std::time::SystemTime::now()))
}

/// A shared, capped buffer; clones write to the same buffer.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    when_full: WhenFull,
    timestamps: bool,
    state: Arc<Mutex<State>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize, when_full: WhenFull) -> Self {
        let state = State { buffer: BytesMut::new(), dropped: 0, line_start: true };
        CappedPipe { cap, when_full, timestamps: false, state: Arc::new(Mutex::new(state)) }
    }

    /// A pipe that prefixes every line with the time it was written (for logs).
    pub(crate) fn timestamped(mut self) -> Self {
        self.timestamps = true;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffer inconsistent: recover it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends what fits; returns `false` when some bytes did not fit.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut state = self.lock();
        if !self.timestamps {
            return Self::append_raw(self.cap, &mut state, bytes);
        }
        let mut all_fit = true;
        let stamp = stamp();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if state.line_start {
                all_fit &= Self::append_raw(self.cap, &mut state, stamp.as_bytes());
            }
            all_fit &= Self::append_raw(self.cap, &mut state, line);
            state.line_start = line.ends_with(b"\n");
        }
        all_fit
    }

    fn append_raw(cap: usize, state: &mut State, bytes: &[u8]) -> bool {
        let room = cap.saturating_sub(state.buffer.len());
        let taken = bytes.len().min(room);
        state.buffer.extend_from_slice(&bytes[..taken]);
        let rest = bytes.len() - taken;
        state.dropped += rest as u64;
        rest == 0
    }

    /// Writes bytes of the host's own (a v2 plugin's `host.log` line), capped as the guest's are.
    pub(crate) fn write_host(&self, bytes: &[u8]) {
        self.append(bytes);
    }

    /// Bytes that were written past the cap and not kept.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// What was kept.
    pub(crate) fn contents(&self) -> Bytes {
        self.lock().buffer.clone().freeze()
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much a guest may write in one go; the cap is enforced on the write itself.
const WRITE_PERMIT: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) || self.when_full == WhenFull::Truncate {
            Ok(())
        } else {
            Err(StreamError::Trap(OutputLimitExceeded(self.cap).into()))
        }
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.append(buf) || self.when_full == WhenFull::Truncate {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(OutputLimitExceeded(self.cap))))
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_pipe_keeps_the_head_and_counts_the_rest() {
        let pipe = CappedPipe::new(4, WhenFull::Truncate);
        let mut writer = pipe.clone();
        assert!(OutputStream::write(&mut writer, Bytes::from_static(b"abc")).is_ok());
        assert!(OutputStream::write(&mut writer, Bytes::from_static(b"defg")).is_ok());
        assert_eq!(&pipe.contents()[..], b"abcd");
        assert_eq!(pipe.dropped(), 3);
    }

    #[test]
    fn timestamped_pipe_prefixes_each_line() {
        let pipe = CappedPipe::new(1000, WhenFull::Truncate).timestamped();
        let mut writer = pipe.clone();
        OutputStream::write(&mut writer, Bytes::from_static(b"one\ntw")).unwrap();
        OutputStream::write(&mut writer, Bytes::from_static(b"o\nthree\n")).unwrap();
        let text = String::from_utf8(pipe.contents().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        for (line, want) in lines.iter().zip(["one", "two", "three"]) {
            let (time, rest) = line.split_once(' ').unwrap();
            assert!(humantime::parse_rfc3339(time).is_ok(), "{line}");
            assert_eq!(rest, want);
        }
    }

    #[test]
    fn failing_pipe_refuses_writes_past_the_cap() {
        let pipe = CappedPipe::new(4, WhenFull::Fail);
        let mut writer = pipe.clone();
        assert!(OutputStream::write(&mut writer, Bytes::from_static(b"abcd")).is_ok());
        assert!(OutputStream::write(&mut writer, Bytes::from_static(b"e")).is_err());
        assert_eq!(pipe.dropped(), 1);
    }
}
