//! The study key bound to its database, the ingestion rules of `events
//! import`, audit attribution of command-line changes, and small truths.

use super::*;
use commonlab_core::privacy::{pseudonymise, StudyKey};

/// A fresh temporary folder for one backend's run of a test.
fn scratch(name: &str, backend: commonlab_store::Backend) -> Scratch {
    Scratch::new(&format!("{name}-{backend:?}"))
}

fn cli(url: &str, cwd: &Path, args: &[&str]) -> Output {
    commonlab()
        .args(args)
        .env("COMMONLAB_DATABASE_URL", url)
        .env_remove("COMMONLAB_CONFIG")
        .env_remove("COMMONLAB_STUDY_KEY_FILE")
        .env("COMMONLAB_ACTOR", "privacy-test")
        .current_dir(cwd)
        .output()
        .expect("run commonlab")
}

enum Served {
    /// The server came up (and was stopped).
    Ready,
    /// It exited before serving: its exit code and standard error.
    Refused(Option<i32>, String),
}

/// Starts `serve` in `cwd`; stops it if it comes up.
async fn try_serve(url: &str, cwd: &Path, extra: &[&str]) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = commonlab()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("COMMONLAB_DATABASE_URL", url)
        .env_remove("COMMONLAB_CONFIG")
        .env_remove("COMMONLAB_STUDY_KEY_FILE")
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Served::Refused(out.status.code(), stderr(&out));
        }
        if reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
            .await
            .is_ok()
        {
            child.kill().unwrap();
            child.wait().unwrap();
            return Served::Ready;
        }
        assert!(Instant::now() < deadline, "serve neither served nor exited");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn refused(s: Served) -> String {
    match s {
        Served::Ready => panic!("serve started"),
        Served::Refused(code, err) => {
            assert_eq!(code, Some(1), "{err}");
            err
        }
    }
}

#[tokio::test]
async fn the_study_key_is_bound_to_its_database() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let first = scratch("key-first", db.backend());
        let elsewhere = scratch("key-elsewhere", db.backend());
        // The first `serve` creates the key, private to its owner.
        assert!(matches!(try_serve(&url, &first, &[]).await, Served::Ready));
        let key_file = first.join("commonlab.study-key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = StudyKey::from_key_file(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
        let events = elsewhere.join("events.ndjson");
        std::fs::write(&events, "{\"event_id\": \"0190a6b8-0000-7000-8000-000000000001\", \"unit\": \"m1\", \"name\": \"e\", \"timestamp\": \"2026-10-01T10:00:00Z\"}\n").unwrap();
        let key_arg = key_file.to_str().unwrap();
        let o = cli(&url, &elsewhere, &["events", "import", events.to_str().unwrap(), "--study-key-file", key_arg]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        // Restarted from another directory: no new key, a refusal naming the fingerprint.
        let err = refused(try_serve(&url, &elsewhere, &[]).await);
        assert!(err.contains(&key.fingerprint()), "{err}");
        assert!(!elsewhere.join("commonlab.study-key").exists(), "a key was created");
        // Another key (another replica's, say): refused, by serve and by erasure.
        let other = elsewhere.join("other.study-key");
        std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
        let other_arg = other.to_str().unwrap();
        let err = refused(try_serve(&url, &elsewhere, &["--study-key-file", other_arg]).await);
        assert!(err.contains(&key.fingerprint()), "{err}");
        let o = cli(&url, &elsewhere, &["units", "erase", "m1", "--study-key-file", other_arg, "--reason", "asked"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains(&key.fingerprint()), "{}", stderr(&o));
        let o = cli(&url, &elsewhere, &["events", "import", events.to_str().unwrap(), "--study-key-file", other_arg]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let m1 = commonlab_store::EventFilter { unit: Some(pseudonymise(&key, "m1").into_string()), ..Default::default() };
        assert_eq!(db.store().count_events(&m1).await.unwrap(), 1);
        // A key file others can read: a warning, not a refusal.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // The right key erases the member.
        let o = cli(&url, &elsewhere, &["units", "erase", "m1", "--study-key-file", key_arg, "--reason", "asked"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("1 events"), "{}", stdout(&o));
        #[cfg(unix)]
        assert!(stderr(&o).contains("other users"), "{}", stderr(&o));
        assert!(matches!(try_serve(&url, &elsewhere, &["--study-key-file", key_arg]).await, Served::Ready));
    })
    .await;
}

#[tokio::test]
async fn no_key_is_created_beside_pseudonymised_data() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = scratch("key-legacy", db.backend());
        // Data pseudonymised before fingerprints were recorded.
        let unit = pseudonymise(&StudyKey::from_bytes(&[7; 32]).unwrap(), "m1").into_string();
        db.store()
            .set_consent(&unit, "research", "v1", true, chrono::Utc::now())
            .await
            .unwrap();
        let err = refused(try_serve(&url, &dir, &[]).await);
        assert!(err.contains("pseudonymised"), "{err}");
        assert!(!dir.join("commonlab.study-key").exists());
    })
    .await;
}

#[tokio::test]
async fn events_import_applies_the_rules_of_post_events() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = scratch("import-rules", db.backend());
        let key_file = dir.join("study.key");
        std::fs::write(&key_file, "33".repeat(32)).unwrap();
        let key = StudyKey::from_bytes(&[0x33; 32]).unwrap();
        let config = dir.join("commonlab.toml");
        std::fs::write(&config, "consent_scope = \"research\"\nallowed_events = [\"contribution_created\"]\nallowed_properties = [\"edits\"]\n").unwrap();
        for (member, granted) in [("m1", true), ("m2", false)] {
            let unit = pseudonymise(&key, member).into_string();
            db.store().set_consent(&unit, "research", "v1", granted, chrono::Utc::now()).await.unwrap();
        }
        let line = |n: u32, unit: &str, name: &str| format!("{{\"event_id\": \"0190a6b8-0000-7000-8000-{n:012}\", \"unit\": \"{unit}\", \"name\": \"{name}\", \"timestamp\": \"2026-10-01T10:00:00Z\", \"properties\": {{\"edits\": 2, \"email\": \"m@example.org\"}}}}\n");
        let file = dir.join("history.ndjson");
        let text = [
            line(1, "m1", "contribution_created"),
            line(2, "m1", "page_viewed"),
            line(3, "m2", "contribution_created"),
            line(4, "m3", "contribution_created"),
        ]
        .concat();
        std::fs::write(&file, text).unwrap();
        let o = cli(&url, &dir, &["--config", config.to_str().unwrap(), "events", "import", file.to_str().unwrap(), "--study-key-file", key_file.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("1 stored") && out.contains("1 not on the allow-list") && out.contains("2 without consent"), "{out}");
        let stored = db.store().export_events(&commonlab_store::EventFilter::default(), None, 10).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].unit, pseudonymise(&key, "m1").into_string());
        assert_eq!(stored[0].properties.keys().collect::<Vec<_>>(), ["edits"]);
    })
    .await;
}

#[tokio::test]
async fn command_line_changes_record_who_and_why() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = scratch("audit", db.backend());
        let flags = fixtures().join("flags.json");
        let flags = flags.to_str().unwrap();
        // Every change needs a reason: usage errors before anything is done.
        for args in [
            &["flags", "import", flags][..],
            &["flags", "set-state", "thanks-button", "disabled"],
            &["keys", "create", "--role", "sdk", "--name", "web"],
            &["keys", "revoke", "web"],
            &["experiments", "stop", "t"],
            &["units", "erase", "m1", "--study-key-file", "x.key"],
        ] {
            let o = cli(&url, &dir, args);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            assert!(stderr(&o).contains("--reason"), "{args:?}: {}", stderr(&o));
        }
        assert!(db.store().flag_set_head("default").await.unwrap().is_none());
        // Who: --actor, else COMMONLAB_ACTOR, else the operating system's user
        // (not $USER, which cron and containers leave unset).
        let o = commonlab()
            .args(["flags", "import", flags, "--reason", "first flags"])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "alice")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = commonlab()
            .args([
                "flags",
                "set-state",
                "thanks-button",
                "disabled",
                "--reason",
                "pause",
                "--actor",
                "bob",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "alice")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = commonlab()
            .args([
                "flags",
                "set-state",
                "thanks-button",
                "enabled",
                "--reason",
                "resume",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env_remove("COMMONLAB_ACTOR")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let history = db
            .store()
            .flag_set_history("default", None, None, 10)
            .await
            .unwrap();
        let who: Vec<(&str, &str)> = history
            .iter()
            .map(|r| (r.actor.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            who[1..],
            [("cli:bob", "pause"), ("cli:alice", "first flags")]
        );
        assert!(
            who[0].0.starts_with("cli:") && who[0].0 != "cli:unknown" && who[0].1 == "resume",
            "{who:?}"
        );
    })
    .await;
}

#[test]
fn config_help_lists_every_key() {
    let o = commonlab().arg("--help").output().unwrap();
    let help = stdout(&o);
    // The keys the config file accepts, as its parser lists them.
    let dir = Scratch::new("config-keys");
    let cfg = dir.join("commonlab.toml");
    std::fs::write(&cfg, "no_such_key = 1\n").unwrap();
    let o = commonlab()
        .args(["--config", cfg.to_str().unwrap(), "migrate"])
        .env("COMMONLAB_DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    let err = stderr(&o);
    let expected = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("{err}"));
    let keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    assert!(keys.len() >= 11, "{err}");
    for key in keys {
        assert!(
            help.contains(key),
            "--help does not mention the config key {key}:\n{help}"
        );
    }
}

#[test]
fn a_missing_database_directory_is_named() {
    let parent = Scratch::new("no-such-dir");
    let dir = parent.join("missing");
    let url = format!("sqlite://{}/x.db", dir.display());
    let o = commonlab()
        .args(["migrate"])
        .env("COMMONLAB_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("directory {} does not exist", dir.display())),
        "{err}"
    );
    assert!(!dir.exists());
}
