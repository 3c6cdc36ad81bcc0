//! Accepting connections: hyper's HTTP/1 server per connection, with the
//! timeouts of [`crate::conn`], a cap on concurrent connections, graceful
//! shutdown, and counters for `/metrics`.
//!
//! At the cap a new connection is answered at once with 503 problem+json
//! (`Retry-After: 1`) and closed, rather than left waiting in the kernel's
//! backlog: the client learns why, and the process never holds more sockets
//! than `max_connections` plus a few being turned away, so it does not run
//! out of file descriptors (the database needs some too).

use crate::config::Config;
use crate::conn::{problem_response, ConnClock, ConnIo, HeadTimer};
use crate::problem::Problem;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Connections being turned away at once (each for at most [`LINGER`]);
/// beyond that a connection over the cap is closed without an answer.
const REJECTING: usize = 64;
/// How long a turned-away connection is drained after its answer, so the
/// client reads the 503 rather than a reset.
const LINGER: Duration = Duration::from_secs(1);

/// What the HTTP layer counts (exported at `/metrics` by
/// [`crate::observability`]).
#[derive(Default)]
pub struct HttpCounters {
    pub connections_open: AtomicU64,
    pub connections_rejected: AtomicU64,
    pub request_timeouts: AtomicU64,
    pub panics: AtomicU64,
}

/// Decrements the open-connections gauge when a connection ends.
struct Open(Arc<HttpCounters>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets open
/// connections finish their requests and waits for them. Every connection
/// task is owned here and joined before this returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<Config>,
    counters: Arc<HttpCounters>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let rejecting = Arc::new(Semaphore::new(REJECTING));
    let graceful = GracefulShutdown::new();
    let mut tasks = JoinSet::new();
    let rejected = Arc::new(problem_response(&Problem::unavailable(format!(
        "the server has {} connections open, its limit (max_connections); retry shortly",
        config.max_connections
    ))));
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, typically: wait rather than spin.
                tracing::error!(error = %e, "cannot accept connections; retrying in 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            counters
                .connections_rejected
                .fetch_add(1, Ordering::Relaxed);
            if let Ok(turning_away) = Arc::clone(&rejecting).try_acquire_owned() {
                let answer = Arc::clone(&rejected);
                tasks.spawn(async move {
                    turn_away(stream, &answer).await;
                    drop(turning_away);
                });
            }
            continue;
        };
        counters.connections_open.fetch_add(1, Ordering::Relaxed);
        let open = Open(Arc::clone(&counters));
        let clock = ConnClock::new(config.idle_timeout, config.header_read_timeout);
        let io = TokioIo::new(ConnIo::new(stream, Arc::clone(&clock)));
        let conn = http1::Builder::new()
            .timer(HeadTimer(clock))
            // The value is not used: HeadTimer applies idle_timeout and
            // header_read_timeout itself. Setting one turns the timer on.
            .header_read_timeout(config.idle_timeout)
            .serve_connection(io, TowerToHyperService::new(with_peer(app.clone(), peer)));
        let conn = graceful.watch(conn);
        tasks.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop((slot, open));
        });
    }
    drop(listener);
    graceful.shutdown().await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// `app` with the connection's peer address in every request's extensions
/// (`ConnectInfo`: the survey pages' per-address rate limit).
fn with_peer(
    app: Router,
    peer: std::net::SocketAddr,
) -> tower::util::MapRequest<Router, impl FnMut(Request<Incoming>) -> Request<Incoming> + Clone> {
    tower::ServiceExt::map_request(app, move |mut req: Request<Incoming>| {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        req
    })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Errors of one connection that do not concern the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Answers `answer` (503) and closes, draining what the client sent for a
/// moment so that the answer is not lost to a reset.
async fn turn_away(mut stream: TcpStream, answer: &[u8]) {
    let drain = async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut total = 0usize;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}
