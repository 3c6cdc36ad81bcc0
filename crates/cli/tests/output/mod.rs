//! A standard output closed by its reader (`commonlab ... | head -1`):
//! never a panic (exit 101), the command exits as it would have: 0 when
//! it succeeded, 1 when what it did failed (issue #12).

use super::*;
use std::io::BufRead;

/// Runs `command` with standard output piped to a reader that takes one
/// line and closes it; the exit code and standard error.
fn read_one_line_then_close(mut command: Command) -> (Option<i32>, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "no output at all");
    drop(reader);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

#[tokio::test]
async fn a_closed_standard_output_ends_commands_quietly() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("closed-stdout");
        let cli = |args: &[&str]| {
            let mut command = dir.command();
            command
                .args(args)
                .env("COMMONLAB_DATABASE_URL", &url)
                .env("COMMONLAB_ACTOR", "pipe-test");
            command
        };
        // Output far beyond a pipe's buffer (64 KiB), so that the command
        // is still writing when the reader goes away.
        let flags: serde_json::Map<String, serde_json::Value> = (0..3000)
            .map(|i| {
                let flag = serde_json::json!({
                    "state": "ENABLED",
                    "variants": {"on": true, "off": false},
                    "defaultVariant": "on"
                });
                (format!("flag-{i:04}"), flag)
            })
            .collect();
        let file = dir.write("flags.json", &serde_json::json!({ "flags": flags }).to_string());
        let o = cli(&["flags", "import", file.to_str().unwrap(), "--reason", "t"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let key = dir.write("study.key", &"44".repeat(32));
        let events: String = (0..1000)
            .map(|i| {
                format!(
                    "{{\"event_id\": \"0190a6b8-0000-7000-8000-{i:012}\", \"unit\": \"m{i}\", \"name\": \"contribution_created\", \"timestamp\": \"2026-10-01T10:00:00Z\", \"properties\": {{\"i\": {i}}}}}\n"
                )
            })
            .collect();
        let events = dir.write("events.ndjson", &events);
        let (events, key) = (events.to_str().unwrap(), key.to_str().unwrap());
        let o = cli(&["events", "import", events, "--study-key-file", key])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        // Line by line, one large write, and an export written in pieces.
        for args in [
            &["flags", "list"][..],
            &["flags", "export"],
            &["events", "export"],
        ] {
            let (code, err) = read_one_line_then_close(cli(args));
            assert_eq!(code, Some(0), "{args:?}: {err}");
            assert_eq!(err, "", "{args:?}");
        }
        // The closed output does not hide a failure: an import with a
        // rejected event still exits 1 and says why.
        let bad = dir.write("bad.ndjson", "{\"event_id\": \"nope\"}\n");
        let mut import = cli(&["events", "import", bad.to_str().unwrap(), "--study-key-file", key]);
        let mut child = import
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("1 event(s) rejected") && !err.contains("panicked"), "{err}");
    })
    .await;
}

/// Runs `command` with a standard output whose reader is gone before the
/// command starts (every write fails with a broken pipe); its exit code and
/// standard error.
fn with_stdout_closed(mut command: Command) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = command
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

/// Issue 12: `experiments show | head` panicked (exit 101). Every command
/// that prints, run with its standard output closed from the start: exit
/// 0, nothing on standard error but what the command says there anyway.
#[tokio::test]
async fn every_printing_command_survives_a_standard_output_closed_from_the_start() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("closed-early");
        let cli = |args: &[&str]| {
            let mut command = dir.command();
            command
                .args(args)
                .env("COMMONLAB_DATABASE_URL", &url)
                .env("COMMONLAB_ACTOR", "pipe-test");
            command
        };
        let flags = workspace().join("experiments/flags.json");
        let trial = workspace().join("experiments/thanks-button.toml");
        let metrics = workspace().join("experiments/metrics.toml");
        let analyze = fixtures().join("analyze.json");
        let rows = fixtures().join("wedge-rows.csv");
        let (flags, trial) = (flags.to_str().unwrap(), trial.to_str().unwrap());
        for args in [
            &["flags", "import", flags, "--reason", "t"][..],
            &["experiments", "create", trial, "--reason", "t"],
            &["experiments", "start", "thanks-button", "--reason", "t"],
        ] {
            let (code, err) = with_stdout_closed(cli(args));
            assert_eq!(code, Some(0), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
        let db_state = |args: &[&str]| {
            let o = cli(args).output().unwrap();
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            stdout(&o)
        };
        assert!(
            db_state(&["experiments", "list"]).contains("running"),
            "the writes above happened"
        );
        for args in [
            &["experiments", "show", "thanks-button"][..],
            &["experiments", "show", "thanks-button", "--json"],
            &["experiments", "list"],
            &["experiments", "assignments", "thanks-button"],
            &["experiments", "validate", trial, "--flags", flags],
            &["flags", "list"],
            &["flags", "get", "thanks-button"],
            &["flags", "export"],
            &["keys", "list"],
            &["metrics", "validate", metrics.to_str().unwrap()],
            &["metrics", "sql", "thanks-button", "repeat_contribution_28d"],
            &["events", "export"],
            &["analyze", "--input", analyze.to_str().unwrap()],
            &[
                "analyze",
                "--input",
                analyze.to_str().unwrap(),
                "--format",
                "md",
            ],
            &[
                "analyze",
                "--input",
                rows.to_str().unwrap(),
                "--design",
                "stepped_wedge",
            ],
            &["analyze", "--trial", "thanks-button", "--rows"],
            &["--help"],
            &["--version"],
        ] {
            let (code, err) = with_stdout_closed(cli(args));
            assert_eq!(code, Some(0), "{args:?}: {err}");
            assert!(
                !err.contains("panicked") && !err.contains("error"),
                "{args:?}: {err}"
            );
        }
        // A failure is still one: exit 1 with its message.
        let (code, err) = with_stdout_closed(cli(&["experiments", "show", "nope"]));
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("trial 'nope' not found"), "{err}");
    })
    .await;
}
