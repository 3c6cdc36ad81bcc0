//! The HTTP layer under hostile or broken clients: timeouts, the connection
//! cap, parse errors, panics, failed authentication, context limits.
//!
//! Slow clients are raw sockets sending a byte at a time. No test asserts a
//! duration: each asserts that the server gave up on the client long before
//! the client would have finished (a 100-byte head at one byte per 100 ms
//! against a 300 ms timeout), and bounds its own wait so that a server
//! without the timeout fails the test instead of hanging it.

use super::*;
use commonlab_server::{build_state, layers, routes, start_app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod limits;

/// Long enough that only a missing timeout reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

/// A server on `db` with `change` made to the test settings.
async fn start_config(db: &TestDb, change: impl FnOnce(&mut Config)) -> Harness {
    Harness::on(db).config(change).start().await
}

async fn connect(h: &Harness) -> TcpStream {
    TcpStream::connect(h.server.addr).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset), within
/// [`PATIENCE`]; what it sent before. `None` if it kept the connection open.
async fn until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `bytes` one at a time, `gap` apart, watching for the server to
/// answer or close. Returns what the server sent and how many bytes went
/// out before it closed; `None` if every byte went out and the server still
/// had not closed.
async fn dribble(stream: &mut TcpStream, bytes: &[u8], gap: Duration) -> Option<(Vec<u8>, usize)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    for (i, b) in bytes.iter().enumerate() {
        if stream.write_all(std::slice::from_ref(b)).await.is_err() {
            return Some((got, i));
        }
        // The gap is spent waiting for the server.
        match tokio::time::timeout(gap, stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, i + 1)),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                // An answer came: read it to the end (the server closes).
                return Some((
                    until_closed(stream)
                        .await
                        .map_or(got.clone(), |rest| [got, rest].concat()),
                    i + 1,
                ));
            }
        }
    }
    None
}

/// Status line, headers (lower-cased) and body of one raw answer.
fn parse_answer(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body not JSON ({e}): {body:?}"))
    };
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn idle_connections_are_closed() {
    both_backends(|db| async move {
        let h = start_config(&db, |c| {
            c.idle_timeout = Duration::from_millis(300);
            c.header_read_timeout = Duration::from_secs(60);
        })
        .await;
        // A connection that never sends a byte.
        let mut silent = connect(&h).await;
        assert!(
            until_closed(&mut silent).await.is_some(),
            "an idle connection was kept open"
        );
        // A keep-alive connection after its request.
        let mut kept = connect(&h).await;
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut kept)
            .await
            .expect("an idle keep-alive connection was kept open");
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&got)
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn slow_request_heads_are_dropped() {
    both_backends(|db| async move {
        let h = start_config(&db, |c| {
            // A long idle timeout: the head's own timeout must apply.
            c.idle_timeout = Duration::from_secs(60);
            c.header_read_timeout = Duration::from_millis(300);
        })
        .await;
        let head = format!(
            "GET /healthz HTTP/1.1\r\nhost: t\r\nx-pad: {}\r\n\r\n",
            "a".repeat(150)
        );
        let mut slow = connect(&h).await;
        let (_, sent) = dribble(&mut slow, head.as_bytes(), Duration::from_millis(100))
            .await
            .expect("a head sent one byte per 100 ms was waited for to its end");
        assert!(sent < head.len());
        // Health is unaffected, and a prompt client is served.
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn slow_request_bodies_get_408_problem_json() {
    both_backends(|db| async move {
        let h = start_config(&db, |c| {
                c.request_timeout = Duration::from_millis(500);
            })
        .await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let body = format!("{{\"context\": {{\"pad\": \"{}\"}}}}", "a".repeat(150));
        let mut slow = connect(&h).await;
        slow.write_all(
            format!(
                "POST /ofrep/v1/evaluate/flags/new-editor HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {sdk}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (answer, sent) = dribble(&mut slow, body.as_bytes(), Duration::from_millis(100))
            .await
            .expect("a body sent one byte per 100 ms was waited for to its end");
        assert!(sent < body.len());
        let (status, head, problem) = parse_answer(&answer);
        assert_eq!(status, 408, "{head}");
        assert!(head.contains("content-type: application/problem+json"), "{head}");
        assert_eq!(problem["status"], 408);
        assert!(problem["detail"].as_str().unwrap().contains("request_timeout"));
        let metrics = h.req(Method::GET, "/metrics", None).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("commonlab_http_request_timeouts_total 1"), "{metrics}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_dropped() {
    both_backends(|db| async move {
        let h = start_config(&db, |c| {
            c.idle_timeout = Duration::from_millis(300);
        })
        .await;
        let one = h
            .req(Method::GET, "/openapi.json", None)
            .send()
            .await
            .unwrap();
        let size = one.bytes().await.unwrap().len();
        // Far more answers than the socket buffers hold (a few MB), asked
        // for at once and never read.
        let n = 1 + 32 * 1024 * 1024 / size;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut greedy = socket.connect(h.server.addr).await.unwrap();
        let request = b"GET /openapi.json HTTP/1.1\r\nhost: t\r\n\r\n".repeat(n);
        let (mut rd, mut wr) = greedy.split();
        let write = async {
            // The server stops reading once it cannot write: this may not finish.
            let _ = wr.write_all(&request).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), write).await;
        // Not reading, for several times idle_timeout.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Now read: a server that waited for us would send all n answers
        // and keep the connection open.
        let mut total = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let closed = loop {
            match tokio::time::timeout(PATIENCE, rd.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(k)) => total += k,
            }
        };
        assert!(
            closed && total < n * size,
            "read {total} of {} bytes; closed: {closed}",
            n * size
        );
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn connections_over_the_cap_get_503_and_health_recovers() {
    both_backends(|db| async move {
        let h = start_config(&db, |c| {
            c.max_connections = 3;
            c.idle_timeout = Duration::from_secs(1);
        })
        .await;
        // Three idle connections take every slot (they are accepted in order).
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(connect(&h).await);
        }
        let mut fourth = connect(&h).await;
        fourth
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut fourth)
            .await
            .expect("no answer at the cap");
        let (status, head, problem) = parse_answer(&answer);
        assert_eq!(status, 503, "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(problem["detail"]
            .as_str()
            .unwrap()
            .contains("max_connections"));
        // The idle ones are dropped after idle_timeout; health answers again.
        for mut c in idle {
            assert!(until_closed(&mut c).await.is_some(), "idle connection kept");
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = h
                .req(Method::GET, "/healthz", None)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "health did not recover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let metrics = h
            .req(Method::GET, "/metrics", None)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("commonlab_http_connections_rejected_total 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("commonlab_http_connections_open 1"),
            "{metrics}"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn malformed_and_too_long_urls_get_problem_json() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        // A path segment that is not UTF-8 once percent-decoded (axum's
        // rejection was text/plain).
        let resp = h
            .req(Method::GET, "/api/v1/flags/%FF%FE", Some(&h.admin))
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::BAD_REQUEST).await;
        assert!(p["type"].as_str().unwrap().ends_with("/bad-request"), "{p}");
        // A target longer than hyper accepts (its answer had no body).
        let mut raw = connect(&h).await;
        let long = format!(
            "GET /healthz?pad={} HTTP/1.1\r\nhost: t\r\n\r\n",
            "a".repeat(70_000)
        );
        raw.write_all(long.as_bytes()).await.unwrap();
        let answer = until_closed(&mut raw).await.expect("no answer");
        let (status, head, p) = parse_answer(&answer);
        assert_eq!(status, 414, "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert!(
            p["type"].as_str().unwrap().ends_with("/uri-too-long"),
            "{p}"
        );
        // A request line that is not HTTP (a space in the target).
        let mut raw = connect(&h).await;
        raw.write_all(b"GET /healthz x HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = until_closed(&mut raw).await.expect("no answer");
        let (status, head, p) = parse_answer(&answer);
        assert_eq!(status, 400, "{head}");
        assert!(
            head.contains("content-type: application/problem+json"),
            "{head}"
        );
        assert_eq!(p["status"], 400);
        // The server serves on.
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_problem_json() {
    both_backends(|db| async move {
        let store = db.connect_another().await;
        let state = build_state(store, Config::new(fresh_study_key()), Clock::System)
            .await
            .unwrap();
        let extra = axum::Router::new().route(
            "/panic",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("the engine broke");
                }
            }),
        );
        let app = layers::with_layers(routes().merge(extra), state.clone());
        let server = start_app("127.0.0.1:0".parse().unwrap(), state, app)
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        let http = reqwest::Client::new();
        let resp = http.get(format!("{base}/panic")).send().await.unwrap();
        let p = problem(resp, StatusCode::INTERNAL_SERVER_ERROR).await;
        assert!(!p["detail"].as_str().unwrap().contains("engine"), "{p}");
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("commonlab_http_panics_total 1"),
            "{metrics}"
        );
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn readiness_reflects_the_database() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let resp = h.req(Method::GET, "/readyz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.server.state.store.close().await;
        let resp = h.req(Method::GET, "/readyz", None).send().await.unwrap();
        let p = problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(p["title"], "Service unavailable");
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}
