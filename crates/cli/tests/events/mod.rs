//! `events import` and `export`, and `units erase`.

use super::*;

#[tokio::test]
async fn units_erase_needs_the_study_key_and_logs_the_erasure() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("erase");
        let key = dir.join("study.key");
        let o = commonlab()
            .args([
                "units",
                "erase",
                "member-1",
                "--study-key-file",
                key.to_str().unwrap(),
                "--reason",
                "member asked",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "dpo")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "no key file, no erasure");
        assert!(stderr(&o).contains("study key"), "{}", stderr(&o));
        std::fs::write(&key, "00".repeat(32)).unwrap();
        let o = commonlab()
            .args([
                "units",
                "erase",
                "member-1",
                "--study-key-file",
                key.to_str().unwrap(),
                "--reason",
                "member asked",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "dpo")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("0 events"), "{}", stdout(&o));
        let log = db
            .store()
            .erasures_since(chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].unit.len(), 64);
        assert_eq!(log[0].actor.as_deref(), Some("cli:dpo"));
        assert_eq!(log[0].reason.as_deref(), Some("member asked"));
    })
    .await;
}

#[tokio::test]
async fn events_import_and_export() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("events");
        let key = dir.join("study.key");
        std::fs::write(&key, "11".repeat(32)).unwrap();
        let import = |file: &str| {
            commonlab()
                .args([
                    "events",
                    "import",
                    fixtures().join(file).to_str().unwrap(),
                    "--study-key-file",
                    key.to_str().unwrap(),
                ])
                .env("COMMONLAB_DATABASE_URL", &url)
                .output()
                .unwrap()
        };
        let o = import("events.ndjson");
        assert_eq!(o.status.code(), Some(1), "one event is invalid");
        assert!(
            stderr(&o).contains("events.ndjson:4: event_id:"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).contains("3 stored"), "{}", stdout(&o));
        let o = import("events.ndjson");
        assert!(
            stdout(&o).contains("0 stored, 3 already stored"),
            "{}",
            stdout(&o)
        );
        let o = import("events.csv");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("2 stored"), "{}", stdout(&o));

        let o = run(&url, &["events", "export", "--name", "thanks_given"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let lines: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines
            .iter()
            .all(|l| l["unit"].as_str().unwrap().len() == 64));
        assert!(!stdout(&o).contains("member-"));
        let o = run(
            &url,
            &["events", "export", "--from", "2026-10-05T00:00:00Z"],
        );
        assert_eq!(stdout(&o).lines().count(), 2);
        let o = run(&url, &["events", "export", "--from", "last tuesday"]);
        assert_eq!(o.status.code(), Some(1));
    })
    .await;
}
