//! One client connection: the socket wrapped with the timeouts hyper does not
//! have, and hyper's own error answers turned into problem+json.
//!
//! hyper's HTTP/1 server has a single timer, "header read": it starts when
//! the connection waits for a request head (on connect and after each
//! response) and ends when the head is complete. We give it a [`HeadTimer`]
//! that splits that wait in two: up to `idle_timeout` for the first byte of
//! the next request (the keep-alive idle timeout), then `header_read_timeout`
//! from that byte for the rest of the head. The socket wrapper ([`ConnIo`])
//! tells the timer when the first byte came, and closes the connection when
//! a response write has waited `idle_timeout` for a client that does not
//! read. Hand-written because no crate offers these on hyper 1; the timer is
//! hyper's public `Timer` trait, the wrapper tokio's IO traits.
//!
//! hyper answers requests it cannot parse itself (400, 414 URI too long,
//! 431 header fields too large) with an empty body; while a head is awaited,
//! the wrapper replaces such an answer with the same status as problem+json.

use crate::problem::Problem;
use axum::http::StatusCode;
use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Timing state shared by a connection's socket wrapper and head timer.
pub(crate) struct ConnClock {
    idle: Duration,
    header: Duration,
    /// A request head is awaited (a [`HeadSleep`] of this generation lives).
    awaiting_head: AtomicBool,
    generation: AtomicU64,
    /// A byte of the awaited head has come.
    head_started: AtomicBool,
    /// The connection's one timer, moved to each head's deadline: moving a
    /// registered tokio timer later is a compare-and-swap, where a new
    /// timer per request would take the timer wheel's lock twice.
    sleep: Mutex<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl ConnClock {
    pub(crate) fn new(idle: Duration, header: Duration) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            idle,
            header,
            awaiting_head: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            head_started: AtomicBool::new(false),
            sleep: Mutex::new(None),
        })
    }

    fn arm(&self) -> u64 {
        self.head_started.store(false, Ordering::Relaxed);
        self.awaiting_head.store(true, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn disarm(&self, generation: u64) {
        if self.generation.load(Ordering::Relaxed) == generation {
            self.awaiting_head.store(false, Ordering::Relaxed);
        }
    }

    fn awaiting_head(&self) -> bool {
        self.awaiting_head.load(Ordering::Relaxed)
    }

    fn saw_bytes(&self) {
        if self.awaiting_head() {
            self.head_started.store(true, Ordering::Relaxed);
        }
    }
}

/// hyper's timer for one connection (hyper uses it only for the request
/// head; see the module documentation).
#[derive(Clone)]
pub(crate) struct HeadTimer(pub(crate) Arc<ConnClock>);

impl Timer for HeadTimer {
    fn sleep(&self, _duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.head_sleep()
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        self.head_sleep()
    }
}

impl HeadTimer {
    fn head_sleep(&self) -> Pin<Box<dyn Sleep>> {
        let clock = Arc::clone(&self.0);
        let generation = clock.arm();
        Box::pin(HeadSleep {
            clock,
            generation,
            idle_deadline: None,
            header_deadline: None,
        })
    }
}

/// Fires `idle` after it was armed if no byte came, otherwise `header`
/// after the first byte. hyper polls it as soon as it is armed (when no
/// head is buffered), and again after each read that leaves the head
/// incomplete, so the time of those polls stands for the time of arming
/// and of the first byte.
struct HeadSleep {
    clock: Arc<ConnClock>,
    generation: u64,
    idle_deadline: Option<Instant>,
    header_deadline: Option<Instant>,
}

impl Future for HeadSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (idle, header) = (self.clock.idle, self.clock.header);
        let idle_deadline = *self
            .idle_deadline
            .get_or_insert_with(|| Instant::now() + idle);
        let deadline = if self.clock.head_started.load(Ordering::Relaxed) {
            *self
                .header_deadline
                .get_or_insert_with(|| Instant::now() + header)
        } else {
            idle_deadline
        };
        let mut slot = self.clock.sleep.lock().unwrap_or_else(|e| e.into_inner());
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        self.clock.disarm(self.generation);
    }
}

/// The socket of one connection (see the module documentation).
pub(crate) struct ConnIo<T> {
    inner: T,
    clock: Arc<ConnClock>,
    /// Runs while a write waits for the client to read.
    write_stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A problem+json answer that replaced hyper's empty one, and how much
    /// of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> ConnIo<T> {
    pub(crate) fn new(inner: T, clock: Arc<ConnClock>) -> Self {
        ConnIo {
            inner,
            clock,
            write_stall: None,
            replacement: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> ConnIo<T> {
    /// A write is pending: after `idle_timeout` of that, the connection fails.
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let idle = self.clock.idle;
        let sleep = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read the response",
        ))
    }

    fn write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.stalled(cx).map(Err),
        }
    }

    #[inline]
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacement.is_none() {
            return Poll::Ready(Ok(()));
        }
        self.drain_replacement_slow(cx)
    }

    #[cold]
    fn drain_replacement_slow(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, at)) = self.replacement.take() {
            if at >= bytes.len() {
                break;
            }
            match self.write_inner(cx, &bytes[at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.replacement = Some((bytes, at + n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.replacement = Some((bytes, at));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// When `buf` is hyper's own empty error answer, queues the problem+json
    /// one instead and reports `buf` as written.
    fn replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if !self.clock.awaiting_head() {
            return None;
        }
        let status = automatic_error(buf)?;
        self.replacement = Some((problem_response(&parse_error_problem(status)), 0));
        Some(match self.drain_replacement(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.saw_bytes();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain_replacement(cx))?;
        if let Some(done) = this.replace(cx, buf) {
            return done;
        }
        this.write_inner(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain_replacement(cx))?;
        if let [only] = bufs {
            if let Some(done) = this.replace(cx, only) {
                return done;
            }
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.write_stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => this.stalled(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.drain_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The status of hyper's automatic answer to a request it could not parse
/// (`HTTP/1.1 400|414|431 …` with `content-length: 0` and nothing after the
/// head), if `buf` is one.
fn automatic_error(buf: &[u8]) -> Option<StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => StatusCode::BAD_REQUEST,
        b"414 " => StatusCode::URI_TOO_LONG,
        b"431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_ends = buf.ends_with(b"\r\n\r\n")
        && buf.windows(4).position(|w| w == b"\r\n\r\n") == Some(buf.len() - 4);
    let empty = buf
        .windows(19)
        .any(|w| w.eq_ignore_ascii_case(b"\r\ncontent-length: 0"));
    (head_ends && empty).then_some(status)
}

fn parse_error_problem(status: StatusCode) -> Problem {
    match status {
        StatusCode::URI_TOO_LONG => Problem::new(
            status,
            "uri-too-long",
            "URI too long",
            "the request target is longer than the server accepts (65,534 bytes)",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Problem::new(
            status,
            "headers-too-large",
            "Request header fields too large",
            "the request head is larger than the server accepts (about 400 KiB)",
        ),
        _ => Problem::new(
            status,
            "malformed-request",
            "Malformed request",
            "the request line or a header could not be parsed as HTTP/1.1 (check the URL for spaces or control characters)",
        ),
    }
}

/// A whole HTTP/1.1 answer carrying `problem`, closing the connection.
pub(crate) fn problem_response(problem: &Problem) -> Vec<u8> {
    let status = problem.status();
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        out.push_str("retry-after: 1\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hypers_empty_error_answers() {
        let cases: &[(&[u8], Option<u16>)] = &[
            (b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 08:00:00 GMT\r\n\r\n", Some(414)),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n", Some(400)),
            (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n", Some(431)),
            // Our own answers have bodies.
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n", None),
            (b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}", None),
            (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", None),
            (b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", None),
            (b"{\"a\": 1}", None),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                automatic_error(bytes).map(|s| s.as_u16()),
                *want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn problem_answers_are_complete_http_messages() {
        let bytes = problem_response(&parse_error_problem(StatusCode::URI_TOO_LONG));
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("content-type: application/problem+json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 414);
    }
}
