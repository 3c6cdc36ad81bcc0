//! `serve`: answering, the bootstrap admin key, graceful shutdown, and a kill under load.

use super::*;

#[tokio::test]
async fn serve_answers_and_shuts_down_gracefully() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // In a directory of its own: the study key it creates must not land
        // in the source tree (or anywhere shared).
        let dir = Scratch::new("serve");
        let key_file = dir.join("admin-key");
        let _ = std::fs::remove_file(&key_file);
        let child = commonlab()
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--admin-key-file")
            .arg(&key_file)
            .env("COMMONLAB_DATABASE_URL", &url)
            .env_remove("COMMONLAB_STUDY_KEY_FILE")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                assert_eq!(r.status(), 200);
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // No keys existed and standard output is not a terminal: serve
        // wrote a bootstrap admin key to a private file, not to its output.
        let text = std::fs::read_to_string(&key_file).unwrap_or_default();
        let key = text.trim().to_string();
        assert!(key.starts_with("cl_"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/v1/keys"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit {:?}", out.status);
        let printed = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !printed.contains(&key),
            "the key reached the output: {printed}"
        );
        assert!(
            printed.contains(&key_file.display().to_string()),
            "{printed}"
        );
        let _ = std::fs::remove_file(&key_file);
        let o = run(&url, &["keys", "list"]);
        assert!(stdout(&o).contains("bootstrap-admin"));
        assert!(dir.join("commonlab.study-key").exists());
    })
    .await;
}

/// `log_format = "json"` and `access_log = true`: every log line on
/// standard error is a JSON object, and the access line of a request carries its
/// route template and the client's request id. (Logging does not depend
/// on the store: SQLite only.)
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = Scratch::new("json-logs");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = commonlab()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--study-key-file")
        .arg(dir.join("study-key"))
        .arg("--admin-key-file")
        .arg(dir.join("admin-key"))
        .env(
            "COMMONLAB_DATABASE_URL",
            format!("sqlite://{}", dir.join("logs.db").display()),
        )
        .env("COMMONLAB_LOG_FORMAT", "json")
        .env("COMMONLAB_ACCESS_LOG", "true")
        .env_remove("COMMONLAB_LOG")
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(port).await;
    let r = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/api/v1/units/member-7/consent"
        ))
        .header("x-request-id", "cli-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "cli-test-1");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    // Notices printed before logging starts (the study key created) are
    // plain text; from "commonlab serving" on, every line is JSON.
    let from = err
        .find("{")
        .unwrap_or_else(|| panic!("no JSON line:\n{err}"));
    let lines: Vec<serde_json::Value> = err[from..]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "commonlab serving"),
        "{err}"
    );
    let access = lines
        .iter()
        .find(|l| l["target"] == "commonlab::access" && l["fields"]["request_id"] == "cli-test-1")
        .unwrap_or_else(|| panic!("no access line with the request id:\n{err}"));
    assert_eq!(access["fields"]["route"], "/api/v1/units/{id}/consent");
    assert_eq!(access["fields"]["status"], 401);
    assert!(
        !err.contains("member-7"),
        "a unit id reached the log:\n{err}"
    );
}

fn spawn_server(url: &str, port: u16, key: &Path) -> std::process::Child {
    commonlab()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--study-key-file",
            key.to_str().unwrap(),
        ])
        .env("COMMONLAB_DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Kill -9 the server in the middle of a load; restart it; the client
/// retries what was not acknowledged: every event is stored exactly once.
#[tokio::test]
async fn sigkill_under_load_loses_and_duplicates_nothing() {
    use commonlab_client::{Event, EventClient, Options};
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("kill");
        let key_file = dir.join("study.key");
        std::fs::write(&key_file, "22".repeat(32)).unwrap();
        let o = run(
            &url,
            &[
                "keys", "create", "--role", "sdk", "--name", "loader", "--reason", "t",
            ],
        );
        let key = stdout(&o).lines().last().unwrap().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = spawn_server(&url, port, &key_file);
        wait_ready(port).await;

        const BATCHES: usize = 40;
        const PER: usize = 250;
        let base = format!("http://127.0.0.1:{port}");
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acked_in_load = acked.clone();
        let load = tokio::spawn(async move {
            let client = EventClient::new(
                &base,
                &key,
                Options {
                    max_attempts: 200,
                    initial_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(200),
                    ..Options::default()
                },
            );
            let mut acknowledged = 0;
            for b in 0..BATCHES {
                let batch: Vec<Event> = (0..PER)
                    .map(|i| {
                        Event::new(format!("m{}", (b * PER + i) % 97), "contribution_created")
                            .property("i", (b * PER + i) as u64)
                    })
                    .collect();
                let report = client.send(&batch).await.expect("acknowledged eventually");
                assert_eq!(report.stored, PER as u64);
                acknowledged += 1;
                acked_in_load.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            acknowledged
        });
        // Let some batches through, then kill the server without warning.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "no batch acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!load.is_finished(), "the load ended before the kill");
        server.kill().unwrap();
        server.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut server = spawn_server(&url, port, &key_file);
        let acknowledged = load.await.unwrap();
        assert_eq!(acknowledged, BATCHES);
        let stored = db
            .store()
            .count_events(&commonlab_store::EventFilter::default())
            .await
            .unwrap();
        assert_eq!(
            stored,
            (BATCHES * PER) as u64,
            "every acknowledged event exactly once"
        );
        server.kill().unwrap();
        server.wait().unwrap();
    })
    .await;
}
