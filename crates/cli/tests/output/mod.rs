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
