//! Store behaviour, each test on both SQLite and PostgreSQL (see
//! `commonlab_store::testing`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use commonlab_store::testing::{both_backends, TestDb, BACKENDS};
use commonlab_store::{Backend, NewApiKeyRecord, NewRevision, Store, StoreError};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
}

fn change<'a>(
    document: &'a str,
    action: &'a str,
    flag_key: Option<&'a str>,
    secs: i64,
) -> NewRevision<'a> {
    NewRevision {
        document,
        actor: "cli:alice",
        action,
        flag_key,
        reason: "because",
        at: at(secs),
    }
}

fn key<'a>(id: &'a str, name: &'a str, role: &'a str, secs: i64) -> NewApiKeyRecord<'a> {
    NewApiKeyRecord {
        id,
        name,
        role,
        hash_hex: "ab".repeat(32).leak(),
        created_by: "cli:root",
        reason: Some("a test key"),
        at: at(secs),
    }
}

fn revisions<T>(items: &[T], revision: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(revision).collect()
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for backend in BACKENDS {
        let db = TestDb::unmigrated(backend).await;
        assert!(
            db.store().flag_set_versions().await.is_err(),
            "{backend}: tables exist before migrating"
        );
        db.store().migrate().await.unwrap();
        db.store().migrate().await.unwrap();
        let again = Store::connect_and_migrate(db.url()).await.unwrap();
        again.migrate().await.unwrap();
        again.close().await;
        let applied = db
            .fetch_text_raw("SELECT CAST(COUNT(*) AS TEXT) FROM _sqlx_migrations")
            .await
            .unwrap();
        let files = std::fs::read_dir(format!(
            "{}/../../migrations/{}",
            env!("CARGO_MANIFEST_DIR"),
            backend
        ))
        .unwrap()
        .count();
        assert_eq!(applied, Some(files.to_string()), "{backend}");
        assert_eq!(db.store().flag_set_versions().await.unwrap(), vec![]);
        assert_eq!(db.store().keys_version().await.unwrap(), 0);
        db.cleanup().await;
    }
}

#[tokio::test]
async fn connection_settings() {
    both_backends(|db| async move {
        let store = db.store();
        assert_eq!(store.backend(), db.backend());
        store.ping().await.unwrap();
        match db.backend() {
            Backend::Sqlite => {
                for (pragma, value) in [
                    ("journal_mode", "wal"),
                    ("synchronous", "2"), // FULL
                    ("foreign_keys", "1"),
                ] {
                    let got = db
                        .fetch_text_raw(&format!(
                            "SELECT CAST({pragma} AS TEXT) FROM pragma_{pragma}"
                        ))
                        .await
                        .unwrap();
                    assert_eq!(got.as_deref(), Some(value), "{pragma}");
                }
            }
            Backend::Postgres => {
                let schema = db
                    .fetch_text_raw("SELECT current_schema()::text")
                    .await
                    .unwrap();
                assert!(schema.unwrap().starts_with("cl_test_"));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn append_head_revision_and_history() {
    both_backends(|db| async move {
        let store = db.store();
        assert!(store.flag_set_head("default").await.unwrap().is_none());
        assert!(store
            .flag_set_history("default", None, None, 10)
            .await
            .unwrap()
            .is_empty());

        let doc1 = "{\n  \"flags\": {}\n}";
        let first = store
            .append_flag_set_revision("default", 0, &change(doc1, "import", None, 1))
            .await
            .unwrap();
        assert_eq!(first.revision, 1);
        assert_eq!(first.set, "default");
        assert_eq!(first.flag_key, None);
        assert_eq!(first.created_at, at(1));

        let steps = [
            ("create", Some("a")),
            ("update", Some("b")),
            ("set-state", Some("a")),
            ("delete", Some("a")),
        ];
        for (i, (action, flag)) in steps.into_iter().enumerate() {
            let n = i as i64 + 2;
            let doc = format!("{{\"flags\":{{}},\"n\":{n},\"ünïcode\":\"✓\"}}");
            let rev = store
                .append_flag_set_revision("default", n - 1, &change(&doc, action, flag, n))
                .await
                .unwrap();
            assert_eq!(rev.revision, n);
            assert_eq!(rev.document, doc);
        }

        let head = store.flag_set_head("default").await.unwrap().unwrap();
        assert_eq!(head.revision, 5);
        assert_eq!(head.action, "delete");
        assert_eq!(head.flag_key.as_deref(), Some("a"));
        assert_eq!(head.actor, "cli:alice");
        assert_eq!(head.reason, "because");
        assert_eq!(head.created_at, at(5));
        assert!(head.document.contains("\"n\":5"));

        let one = store
            .flag_set_revision("default", 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(one, first);
        assert_eq!(one.document, doc1, "documents are stored verbatim");
        assert!(store
            .flag_set_revision("default", 6)
            .await
            .unwrap()
            .is_none());
        assert!(store.flag_set_revision("other", 1).await.unwrap().is_none());
        assert!(store.flag_set_head("other").await.unwrap().is_none());

        let all = store
            .flag_set_history("default", None, None, 100)
            .await
            .unwrap();
        assert_eq!(revisions(&all, |r| r.revision), [5, 4, 3, 2, 1]);
        assert_eq!(all[4].action, "import");
        assert_eq!(all[1].flag_key.as_deref(), Some("a"));
        assert_eq!(all[0].created_at, at(5));
        assert!(all.iter().all(|r| r.set == "default"));

        let a = store
            .flag_set_history("default", Some("a"), None, 100)
            .await
            .unwrap();
        assert_eq!(revisions(&a, |r| r.revision), [5, 4, 2]);
        let a_page = store
            .flag_set_history("default", Some("a"), Some(5), 1)
            .await
            .unwrap();
        assert_eq!(revisions(&a_page, |r| r.revision), [4]);
        let none = store
            .flag_set_history("default", Some("zzz"), None, 100)
            .await
            .unwrap();
        assert!(none.is_empty());

        // Pagination: pass the last revision of a page as `before_revision`.
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store
                .flag_set_history("default", None, before, 2)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            before = page.last().map(|r| r.revision);
            pages.push(revisions(&page, |r| r.revision));
        }
        assert_eq!(pages, vec![vec![5, 4], vec![3, 2], vec![1]]);
        assert!(store
            .flag_set_history("default", None, None, 0)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn timestamps_keep_microseconds() {
    both_backends(|db| async move {
        let store = db.store();
        let precise = DateTime::from_timestamp(1_750_000_000, 123_456_789).unwrap();
        let written = store
            .append_flag_set_revision(
                "t",
                0,
                &NewRevision {
                    at: precise,
                    ..change("{}", "import", None, 0)
                },
            )
            .await
            .unwrap();
        assert_eq!(written.created_at.timestamp_subsec_nanos(), 123_456_000);
        let read = store.flag_set_head("t").await.unwrap().unwrap();
        assert_eq!(read, written);
    })
    .await;
}

#[tokio::test]
async fn stale_expected_revision_conflicts() {
    both_backends(|db| async move {
        let store = db.store();
        let doc = "{}";
        store
            .append_flag_set_revision("default", 0, &change(doc, "import", None, 1))
            .await
            .unwrap();
        store
            .append_flag_set_revision("default", 1, &change(doc, "update", Some("x"), 2))
            .await
            .unwrap();
        for expected in [0, 1, 3, -1] {
            let err = store
                .append_flag_set_revision("default", expected, &change(doc, "update", None, 3))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Conflict { expected: e, current: 2 } if e == expected),
                "{expected}: {err:?}"
            );
        }
        let err = store
            .append_flag_set_revision("missing", 4, &change(doc, "update", None, 3))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: 4,
                    current: 0
                }
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "revision conflict: expected 4, current is 0"
        );
        assert_eq!(
            store
                .flag_set_head("default")
                .await
                .unwrap()
                .unwrap()
                .revision,
            2
        );
        assert!(store.flag_set_head("missing").await.unwrap().is_none());
        assert_eq!(
            store
                .flag_set_history("default", None, None, 10)
                .await
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}

/// 8 writers on 4 independent stores (as if 4 server processes) race to
/// append the same expected revision: exactly one wins, every other one gets
/// Conflict with the winner's revision as current.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_have_exactly_one_winner() {
    both_backends(|db| async move {
        let mut stores = vec![db.store().clone()];
        for _ in 0..3 {
            stores.push(db.connect_another().await);
        }
        for round in 0..4i64 {
            let set = "race";
            let expected = round; // round 0 creates the set
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let mut tasks = Vec::new();
            for task in 0..8usize {
                let store = stores[task % stores.len()].clone();
                let barrier = barrier.clone();
                tasks.push(tokio::spawn(async move {
                    let doc = format!("{{\"round\":{round},\"task\":{task}}}");
                    barrier.wait().await;
                    store
                        .append_flag_set_revision(
                            set,
                            expected,
                            &change(&doc, "update", Some("f"), round),
                        )
                        .await
                        .map(|r| (task, r))
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    Ok(won) => winners.push(won),
                    Err(StoreError::Conflict {
                        expected: e,
                        current,
                    }) => {
                        assert_eq!(e, expected);
                        assert_eq!(current, expected + 1, "round {round}");
                    }
                    Err(other) => panic!("round {round}: unexpected error {other:?}"),
                }
            }
            assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
            let (task, won) = &winners[0];
            assert_eq!(won.revision, expected + 1);
            let head = db.store().flag_set_head(set).await.unwrap().unwrap();
            assert_eq!(&head, won);
            assert!(head.document.contains(&format!("\"task\":{task}")));
        }
        let history = db
            .store()
            .flag_set_history("race", None, None, 100)
            .await
            .unwrap();
        assert_eq!(revisions(&history, |r| r.revision), [4, 3, 2, 1]);
        for store in &stores[1..] {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn revisions_cannot_be_updated_or_deleted() {
    both_backends(|db| async move {
        let store = db.store();
        for n in 1..=2 {
            store
                .append_flag_set_revision("default", n - 1, &change("{}", "update", None, n))
                .await
                .unwrap();
        }
        let mut attempts = vec![
            "UPDATE flag_set_revisions SET reason = 'rewritten'",
            "UPDATE flag_set_revisions SET document = '{\"evil\":1}' WHERE revision = 1",
            "DELETE FROM flag_set_revisions WHERE revision = 2",
            "DELETE FROM flag_set_revisions",
            "DELETE FROM flag_sets",
        ];
        if db.backend() == Backend::Postgres {
            attempts.push("TRUNCATE flag_set_revisions");
        }
        for sql in attempts {
            let err = db.execute_raw(sql).await.unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, StoreError::Database(_)), "{sql}: {err:?}");
            if sql.contains("flag_set_revisions") {
                assert!(message.contains("append-only"), "{sql}: {message}");
            } else {
                assert!(
                    message.to_lowercase().contains("foreign key"),
                    "{sql}: {message}"
                );
            }
        }
        let history = store
            .flag_set_history("default", None, None, 10)
            .await
            .unwrap();
        assert_eq!(revisions(&history, |r| r.revision), [2, 1]);
        assert!(history.iter().all(|r| r.reason == "because"));
        assert_eq!(
            store
                .flag_set_revision("default", 1)
                .await
                .unwrap()
                .unwrap()
                .document,
            "{}"
        );
    })
    .await;
}

#[tokio::test]
async fn flag_set_versions_lists_every_head() {
    both_backends(|db| async move {
        let store = db.store();
        assert!(store.flag_set_versions().await.unwrap().is_empty());
        for (set, n) in [
            ("zeta", 1),
            ("alpha", 1),
            ("alpha", 2),
            ("alpha", 3),
            ("mid", 1),
        ] {
            store
                .append_flag_set_revision(set, n - 1, &change("{}", "update", None, n))
                .await
                .unwrap();
        }
        assert_eq!(
            store.flag_set_versions().await.unwrap(),
            vec![
                ("alpha".to_string(), 3),
                ("mid".to_string(), 1),
                ("zeta".to_string(), 1)
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn api_keys_lifecycle() {
    both_backends(|db| async move {
        let store = db.store();
        assert_eq!(store.keys_version().await.unwrap(), 0);
        assert!(store.list_api_keys(true).await.unwrap().is_empty());
        assert!(store.find_api_key("0123456789ab").await.unwrap().is_none());

        let admin = store
            .insert_api_key(&key("0123456789ab", "ci", "admin", 1))
            .await
            .unwrap();
        assert_eq!(admin.id, "0123456789ab");
        assert_eq!(admin.name, "ci");
        assert_eq!(admin.role, "admin");
        assert_eq!(admin.hash_hex, "ab".repeat(32));
        assert_eq!(admin.created_at, at(1));
        assert_eq!(admin.created_by, "cli:root");
        assert_eq!(admin.revoked_at, None);
        let v1 = store.keys_version().await.unwrap();
        assert!(v1 > 0);

        let sdk = store
            .insert_api_key(&key("ba9876543210", "web", "sdk", 2))
            .await
            .unwrap();
        let v2 = store.keys_version().await.unwrap();
        assert!(v2 > v1);

        // Same active name: refused, version unchanged.
        let err = store
            .insert_api_key(&key("aaaaaaaaaaaa", "ci", "sdk", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what.contains("'ci'")),
            "{err:?}"
        );
        // Same id: refused too.
        let err = store
            .insert_api_key(&key("0123456789ab", "other", "sdk", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what.contains("0123456789ab")),
            "{err:?}"
        );
        assert_eq!(store.keys_version().await.unwrap(), v2);

        assert_eq!(
            store.find_api_key("0123456789ab").await.unwrap(),
            Some(admin.clone())
        );
        assert_eq!(
            store.list_api_keys(false).await.unwrap(),
            vec![admin.clone(), sdk.clone()]
        );
        assert_eq!(
            store.active_api_keys().await.unwrap(),
            vec![admin.clone(), sdk.clone()]
        );

        // Revoke by name.
        let revoked = store.revoke_api_key("ci", at(10)).await.unwrap();
        assert_eq!(revoked.id, admin.id);
        assert_eq!(revoked.revoked_at, Some(at(10)));
        assert!(!revoked.is_active());
        let v3 = store.keys_version().await.unwrap();
        assert!(v3 > v2);
        let err = store.revoke_api_key("ci", at(11)).await.unwrap_err();
        assert!(matches!(&err, StoreError::NotFound(_)), "{err:?}");
        assert_eq!(err.to_string(), "active API key 'ci' not found");
        let err = store
            .revoke_api_key("0123456789ab", at(11))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)));
        assert_eq!(store.keys_version().await.unwrap(), v3);
        assert_eq!(
            store
                .find_api_key("0123456789ab")
                .await
                .unwrap()
                .unwrap()
                .revoked_at,
            Some(at(10)),
            "revoked keys are still found"
        );

        // The name is free again.
        let again = store
            .insert_api_key(&key("cccccccccccc", "ci", "developer", 12))
            .await
            .unwrap();
        let v4 = store.keys_version().await.unwrap();
        assert!(v4 > v3);
        assert_eq!(
            store.active_api_keys().await.unwrap(),
            vec![sdk.clone(), again.clone()]
        );
        let all = store.list_api_keys(true).await.unwrap();
        assert_eq!(all, vec![revoked.clone(), sdk.clone(), again.clone()]);

        // Revoke by id.
        let gone = store.revoke_api_key("ba9876543210", at(13)).await.unwrap();
        assert_eq!(gone.name, "web");
        assert!(store.keys_version().await.unwrap() > v4);
        assert_eq!(store.active_api_keys().await.unwrap(), vec![again]);

        // The hash never leaves through serde.
        let json = serde_json::to_value(&gone).unwrap();
        assert!(json.get("hash_hex").is_none(), "{json}");
        assert_eq!(json["name"], "web");
    })
    .await;
}

#[tokio::test]
async fn api_key_checks_reject_malformed_ids_and_hashes() {
    both_backends(|db| async move {
        let store = db.store();
        for bad in [
            key("0123456789AB", "upper", "sdk", 1),
            key("0123", "short", "sdk", 1),
            NewApiKeyRecord {
                hash_hex: "xyz",
                ..key("0123456789ab", "hash", "sdk", 1)
            },
        ] {
            let err = store.insert_api_key(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{bad:?}: {err:?}");
        }
        assert_eq!(store.keys_version().await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn closed_store_is_unavailable() {
    both_backends(|db| async move {
        let other = db.connect_another().await;
        other.ping().await.unwrap();
        other.close().await;
        let err = other.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        let err = other.flag_set_head("default").await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_quickly() {
    let started = Instant::now();
    let err = Store::connect("postgres://postgres:hunter2@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn missing_postgres_database_is_unavailable() {
    let url = commonlab_store::testing::postgres_url();
    let (base, _) = url.rsplit_once('/').unwrap();
    let err = Store::connect(&format!("{base}/commonlab_no_such_database"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn unopenable_sqlite_is_unavailable() {
    let err = Store::connect("sqlite:///nonexistent-commonlab-dir/x/store.db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("directory /nonexistent-commonlab-dir/x does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    for url in [
        "mysql://x",
        "",
        "http://localhost/db",
        "postgres://u:pw@host:notaport/db",
    ] {
        let err = Store::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::BadUrl { .. }), "{url}: {err:?}");
        assert!(!err.to_string().contains(":pw@"), "{err}");
    }
    let err = Store::connect("mysql://x").await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid database URL 'mysql://x'"),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_in_memory_works_on_one_connection() {
    let store = Store::connect_and_migrate("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    store
        .append_flag_set_revision("default", 0, &change("{}", "import", None, 1))
        .await
        .unwrap();
    // Reads after an idle moment still see the same database.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store
            .flag_set_head("default")
            .await
            .unwrap()
            .unwrap()
            .revision,
        1
    );
    store
        .insert_api_key(&key("0123456789ab", "k", "sdk", 1))
        .await
        .unwrap();
    assert_eq!(store.active_api_keys().await.unwrap().len(), 1);
    store.close().await;
}

// ---------------------------------------------------------------------------
// Trials, assignments and exposures.

use commonlab_store::{
    ExposureSource, NewAssignment, NewExposure, NewSequentialAssignment, NewTrial, TrialChange,
    TrialStatus,
};

fn hash_of(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn unit(n: u64) -> String {
    format!("{n:064x}")
}

fn new_trial<'a>(trial_key: &'a str, spec_hash: &'a str, secs: i64) -> NewTrial<'a> {
    NewTrial {
        key: trial_key,
        flag_key: "checkout",
        spec_source: "[trial]\nkey = \"x\" # ü\n",
        spec_canonical: "{\"key\":\"x\"}",
        spec_hash,
        actor: "cli:alice",
        reason: "new trial",
        at: at(secs),
    }
}

fn trial_change(reason: &str, secs: i64) -> TrialChange<'_> {
    TrialChange {
        actor: "cli:bob",
        reason,
        at: at(secs),
    }
}

/// A running trial's id.
async fn running_trial(store: &Store, trial_key: &str) -> i64 {
    let h = hash_of(1);
    store
        .create_trial(&new_trial(trial_key, &h, 0))
        .await
        .unwrap();
    store
        .start_trial(trial_key, 42, None, &trial_change("go", 1))
        .await
        .unwrap()
        .id
}

fn fixed<'a>(trial_id: i64, unit: &'a str, arm: &'a str, secs: i64) -> NewAssignment<'a> {
    NewAssignment {
        trial_id,
        unit,
        arm,
        stratum: None,
        community: None,
        trial_version: 1,
        at: at(secs),
    }
}

fn exposure(trial_id: i64, n: u64, arm: &str, secs: i64) -> NewExposure {
    NewExposure {
        trial_id,
        unit: unit(n),
        arm: arm.to_string(),
        community: None,
        trial_version: 1,
        at: at(secs),
        source: ExposureSource::Single,
        excluded_reason: None,
    }
}

fn assert_invalid_state(err: StoreError, status: &str) {
    match &err {
        StoreError::InvalidState(message) => {
            assert!(message.contains(&format!("is {status}")), "{message}")
        }
        other => panic!("expected InvalidState naming {status}, got {other:?}"),
    }
}

#[tokio::test]
async fn trial_lifecycle_and_events() {
    both_backends(|db| async move {
        let store = db.store();
        let v0 = store.trials_version().await.unwrap();
        assert!(store.get_trial("t").await.unwrap().is_none());
        assert!(store.trial_events("t").await.unwrap().is_empty());

        let (h1, h2, h3) = (hash_of(1), hash_of(2), hash_of(3));
        let precise = DateTime::from_timestamp(1_750_000_000, 123_456_789).unwrap();
        let created = store
            .create_trial(&NewTrial {
                at: precise,
                ..new_trial("t", &h1, 0)
            })
            .await
            .unwrap();
        assert_eq!(created.key, "t");
        assert_eq!(created.flag_key, "checkout");
        assert_eq!(created.status, TrialStatus::Draft);
        assert_eq!(created.version, 1);
        assert_eq!(created.seed, None);
        assert_eq!(created.allocation, None);
        assert_eq!(created.spec_source, "[trial]\nkey = \"x\" # ü\n");
        assert_eq!(created.created_at.timestamp_subsec_nanos(), 123_456_000);
        assert_eq!(created.updated_at, created.created_at);
        assert_eq!(created.started_at, None);
        assert_eq!(store.get_trial("t").await.unwrap(), Some(created.clone()));
        let v1 = store.trials_version().await.unwrap();
        assert!(v1 > v0);

        // Draft edits, optimistic on the spec hash.
        let updated = store
            .update_draft_spec("t", &h1, "src2", "{\"v\":2}", &h2, "checkout2", &trial_change("edit", 2))
            .await
            .unwrap();
        assert_eq!(updated.spec_hash, h2);
        assert_eq!(updated.spec_source, "src2");
        assert_eq!(updated.spec_canonical, "{\"v\":2}");
        assert_eq!(updated.flag_key, "checkout2");
        assert_eq!(updated.version, 1);
        assert_eq!(updated.updated_at, at(2));
        let v2 = store.trials_version().await.unwrap();
        assert!(v2 > v1);
        let err = store
            .update_draft_spec("t", &h1, "src3", "{}", &h3, "checkout", &trial_change("edit", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::SpecConflict { expected, current } if *expected == h1 && *current == h2),
            "{err:?}"
        );
        let err = store
            .update_draft_spec("nope", &h1, "s", "{}", &h3, "f", &trial_change("edit", 3))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NotFound(what) if what == "trial 'nope'"),
            "{err:?}"
        );

        // Amending a draft is refused; so is concluding it.
        assert_invalid_state(
            store
                .amend_trial("t", "s", "{}", &h3, &trial_change("amend", 3))
                .await
                .unwrap_err(),
            "draft",
        );
        assert_invalid_state(
            store
                .set_trial_status("t", &[TrialStatus::Running], TrialStatus::Concluded, &trial_change("x", 3))
                .await
                .unwrap_err(),
            "draft",
        );
        assert_eq!(store.trials_version().await.unwrap(), v2);

        // Start.
        let started = store
            .start_trial("t", -7, Some("{\"c1\":\"treatment\"}"), &trial_change("go", 4))
            .await
            .unwrap();
        assert_eq!(started.status, TrialStatus::Running);
        assert_eq!(started.seed, Some(-7));
        assert_eq!(started.allocation.as_deref(), Some("{\"c1\":\"treatment\"}"));
        assert_eq!(started.started_at, Some(at(4)));
        assert_eq!(store.running_trials().await.unwrap(), vec![started.clone()]);
        assert_invalid_state(
            store
                .start_trial("t", 1, None, &trial_change("again", 5))
                .await
                .unwrap_err(),
            "running",
        );
        assert_invalid_state(
            store
                .update_draft_spec("t", &h2, "s", "{}", &h3, "f", &trial_change("edit", 5))
                .await
                .unwrap_err(),
            "running",
        );

        // Amend while running, stop, amend while stopped, restart.
        let amended = store
            .amend_trial("t", "src3", "{\"v\":3}", &h3, &trial_change("fix typo in arm label", 6))
            .await
            .unwrap();
        assert_eq!(amended.version, 2);
        assert_eq!(amended.spec_hash, h3);
        assert_eq!(amended.seed, Some(-7), "amend keeps the seed");
        let stopped = store
            .set_trial_status("t", &[TrialStatus::Running], TrialStatus::Stopped, &trial_change("pause", 7))
            .await
            .unwrap();
        assert_eq!(stopped.status, TrialStatus::Stopped);
        assert_eq!(stopped.stopped_at, Some(at(7)));
        assert!(store.running_trials().await.unwrap().is_empty());
        let amended = store
            .amend_trial("t", "src4", "{\"v\":4}", &h2, &trial_change("more", 8))
            .await
            .unwrap();
        assert_eq!(amended.version, 3);
        let restarted = store
            .set_trial_status("t", &[TrialStatus::Stopped], TrialStatus::Running, &trial_change("resume", 9))
            .await
            .unwrap();
        assert_eq!(restarted.status, TrialStatus::Running);
        assert_eq!(restarted.started_at, Some(at(4)), "a restart keeps the first start");
        assert_invalid_state(
            store
                .set_trial_status("t", &[TrialStatus::Stopped], TrialStatus::Concluded, &trial_change("x", 10))
                .await
                .unwrap_err(),
            "running",
        );
        let concluded = store
            .set_trial_status(
                "t",
                &[TrialStatus::Running, TrialStatus::Stopped],
                TrialStatus::Concluded,
                &trial_change("done", 10),
            )
            .await
            .unwrap();
        assert_eq!(concluded.concluded_at, Some(at(10)));
        assert_invalid_state(
            store
                .amend_trial("t", "s", "{}", &h1, &trial_change("late", 11))
                .await
                .unwrap_err(),
            "concluded",
        );
        let archived = store
            .set_trial_status("t", &[TrialStatus::Concluded], TrialStatus::Archived, &trial_change("tidy", 12))
            .await
            .unwrap();
        assert_eq!(archived.status, TrialStatus::Archived);
        assert_eq!(archived.archived_at, Some(at(12)));
        assert_eq!(archived.updated_at, at(12));
        assert_eq!(archived.version, 3);
        assert_eq!(store.get_trial("t").await.unwrap(), Some(archived.clone()));

        let events = store.trial_events("t").await.unwrap();
        let summary: Vec<(i64, &str, i64, &str)> = events
            .iter()
            .map(|e| (e.seq, e.action.as_str(), e.version, e.reason.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "create", 1, "new trial"),
                (2, "update", 1, "edit"),
                (3, "start", 1, "go"),
                (4, "amend", 2, "fix typo in arm label"),
                (5, "stop", 2, "pause"),
                (6, "amend", 3, "more"),
                (7, "start", 3, "resume"),
                (8, "conclude", 3, "done"),
                (9, "archive", 3, "tidy"),
            ]
        );
        assert_eq!(events[0].actor, "cli:alice");
        assert_eq!(events[0].spec_hash, h1);
        assert_eq!(events[0].created_at, created.created_at);
        assert_eq!(events[3].spec_hash, h3);
        assert_eq!(events[3].actor, "cli:bob");
        assert_eq!(events[8].created_at, at(12));

        // Listing and status parsing.
        let other = store.create_trial(&new_trial("a-first", &h1, 20)).await.unwrap();
        assert_eq!(store.list_trials(None).await.unwrap(), vec![other.clone(), archived.clone()]);
        assert_eq!(store.list_trials(Some(TrialStatus::Draft)).await.unwrap(), vec![other]);
        assert!(store.list_trials(Some(TrialStatus::Stopped)).await.unwrap().is_empty());
        for status in TrialStatus::ALL {
            assert_eq!(status.as_str().parse::<TrialStatus>().unwrap(), status);
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert!("paused".parse::<TrialStatus>().is_err());
        let json = serde_json::to_value(&archived).unwrap();
        assert_eq!(json["status"], "archived");
        assert_eq!(json["version"], 3);
    })
    .await;
}

#[tokio::test]
async fn trial_changes_are_guarded() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(9);
        store.create_trial(&new_trial("k", &h, 0)).await.unwrap();
        let v = store.trials_version().await.unwrap();

        let err = store
            .create_trial(&new_trial("k", &h, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyExists(what) if what == "trial 'k'"),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "trial 'k' already exists");

        // Refused outright.
        for (from, to) in [
            (vec![TrialStatus::Running], TrialStatus::Draft),
            (vec![TrialStatus::Draft], TrialStatus::Running),
            (vec![], TrialStatus::Stopped),
        ] {
            let err = store
                .set_trial_status("k", &from, to, &trial_change("x", 2))
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidState(_)),
                "{from:?} -> {to}: {err:?}"
            );
        }
        let err = store
            .set_trial_status(
                "missing",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &trial_change("x", 2),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let err = store
            .start_trial("missing", 1, None, &trial_change("x", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

        // The database refuses an empty reason and a malformed hash.
        let err = store
            .start_trial("k", 1, None, &trial_change("", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(
            store.get_trial("k").await.unwrap().unwrap().status,
            TrialStatus::Draft
        );
        let err = store
            .create_trial(&new_trial("bad-hash", "XYZ", 2))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert!(store.get_trial("bad-hash").await.unwrap().is_none());
        assert_eq!(store.trials_version().await.unwrap(), v);
        assert_eq!(store.trial_events("k").await.unwrap().len(), 1);

        // Two concurrent stops: one wins, the other learns the trial is stopped.
        store
            .start_trial("k", 1, None, &trial_change("go", 3))
            .await
            .unwrap();
        let other = db.connect_another().await;
        let (change_a, change_b) = (trial_change("a", 4), trial_change("b", 4));
        let (a, b) = tokio::join!(
            store.set_trial_status(
                "k",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &change_a
            ),
            other.set_trial_status(
                "k",
                &[TrialStatus::Running],
                TrialStatus::Stopped,
                &change_b
            ),
        );
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("expected one winner: {other:?}"),
        };
        assert_eq!(won.status, TrialStatus::Stopped);
        assert_invalid_state(lost, "stopped");
        let actions: Vec<String> = store
            .trial_events("k")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["create", "start", "stop"]);
        other.close().await;
    })
    .await;
}

#[tokio::test]
async fn trial_events_cannot_be_updated_or_deleted() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(1);
        store.create_trial(&new_trial("t", &h, 0)).await.unwrap();
        store
            .start_trial("t", 5, None, &trial_change("go", 1))
            .await
            .unwrap();
        let mut attempts = vec![
            "UPDATE trial_events SET reason = 'rewritten'",
            "UPDATE trial_events SET action = 'stop' WHERE seq = 2",
            "DELETE FROM trial_events WHERE seq = 1",
            "DELETE FROM trial_events",
        ];
        if db.backend() == Backend::Postgres {
            attempts.push("TRUNCATE trial_events");
        }
        for sql in attempts {
            let err = db.execute_raw(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        let err = db.execute_raw("DELETE FROM trials").await.unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("foreign key"),
            "{err}"
        );
        let events = store.trial_events("t").await.unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].reason, "go");
    })
    .await;
}

#[tokio::test]
async fn fixed_assignments_are_sticky() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "hash").await;
        let other_trial = running_trial(store, "other").await;
        let u = unit(1);
        assert!(store.get_assignment(trial, &u).await.unwrap().is_none());

        let (first, created) = store
            .assign_fixed(&NewAssignment {
                community: Some("north"),
                stratum: Some("s1"),
                ..fixed(trial, &u, "treatment", 1)
            })
            .await
            .unwrap();
        assert!(created);
        assert_eq!(first.trial_id, trial);
        assert_eq!(first.unit, u);
        assert_eq!(first.arm, "treatment");
        assert_eq!(first.community.as_deref(), Some("north"));
        assert_eq!(first.stratum.as_deref(), Some("s1"));
        assert_eq!(first.position, None);
        assert_eq!(first.trial_version, 1);
        assert_eq!(first.assigned_at, at(1));

        // A later (even different) assignment of the same unit returns the first.
        let (again, created) = store
            .assign_fixed(&NewAssignment {
                trial_version: 2,
                ..fixed(trial, &u, "control", 2)
            })
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, first);
        assert_eq!(
            store.get_assignment(trial, &u).await.unwrap(),
            Some(first.clone())
        );

        // Another trial is independent.
        let (elsewhere, created) = store
            .assign_fixed(&fixed(other_trial, &u, "control", 3))
            .await
            .unwrap();
        assert!(created);
        assert_eq!(elsewhere.arm, "control");

        // Concurrent first assignments from several stores: one sticks.
        let stores = [
            store.clone(),
            db.connect_another().await,
            db.connect_another().await,
        ];
        let u2 = unit(2);
        let mut tasks = Vec::new();
        for (i, s) in stores.iter().cycle().take(9).enumerate() {
            let s = s.clone();
            let u2 = u2.clone();
            tasks.push(tokio::spawn(async move {
                let arm = format!("arm{i}");
                s.assign_fixed(&fixed(trial, &u2, &arm, 4)).await.unwrap()
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
        assert!(results.iter().all(|(r, _)| *r == results[0].0));

        // Malformed units and unknown trials are refused by the database.
        for bad in [
            fixed(trial, "ABC", "a", 5),
            fixed(trial + 1000, &u2, "a", 5),
        ] {
            let err = store.assign_fixed(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        }
        for s in &stores[1..] {
            s.close().await;
        }
    })
    .await;
}

fn arm_by_block(position: i64) -> String {
    // Blocks of 4: AABB.
    if position % 4 < 2 { "A" } else { "B" }.to_string()
}

#[tokio::test]
async fn sequential_assignments_take_consecutive_positions_per_stratum() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "blocked").await;
        let seq = |n: u64, stratum: Option<&'static str>| {
            let u = unit(n);
            let store = store.clone();
            async move {
                store
                    .assign_sequential(
                        &NewSequentialAssignment {
                            trial_id: trial,
                            unit: &u,
                            stratum,
                            community: None,
                            trial_version: 1,
                            at: at(n as i64),
                        },
                        &arm_by_block,
                    )
                    .await
                    .unwrap()
            }
        };
        let mut got = Vec::new();
        for (n, stratum) in [
            (1, Some("young")),
            (2, Some("old")),
            (3, Some("young")),
            (4, None),
            (5, Some("young")),
            (6, None),
            (7, Some("old")),
            (8, Some("young")),
        ] {
            let (a, created) = seq(n, stratum).await;
            assert!(created, "{n}");
            assert_eq!(a.stratum.as_deref(), stratum);
            assert_eq!(a.assigned_at, at(n as i64));
            got.push((n, a.position.unwrap(), a.arm));
        }
        let expected: Vec<(u64, i64, String)> = [
            (1, 0, "A"),
            (2, 0, "A"),
            (3, 1, "A"),
            (4, 0, "A"),
            (5, 2, "B"),
            (6, 1, "A"),
            (7, 1, "A"),
            (8, 3, "B"),
        ]
        .into_iter()
        .map(|(n, p, arm)| (n, p, arm.to_string()))
        .collect();
        assert_eq!(got, expected);

        // Returning units keep their assignment and take no position.
        let (again, created) = seq(3, Some("young")).await;
        assert!(!created);
        assert_eq!(again.position, Some(1));
        let (next, created) = seq(9, Some("young")).await;
        assert!(created);
        assert_eq!(next.position, Some(4));
        assert_eq!(next.arm, "A");
    })
    .await;
}

/// 4 stores (as if 4 server processes) × 4 tasks each assign the same 50
/// new units, in different orders: every unit gets exactly one assignment
/// and each stratum's positions are exactly 0..n.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sequential_assignments_have_no_gaps_or_duplicates() {
    use rand::seq::SliceRandom;
    use std::collections::{BTreeMap, BTreeSet};

    both_backends(|db| async move {
        let trial = running_trial(db.store(), "race").await;
        let mut stores = vec![db.store().clone()];
        for _ in 0..3 {
            stores.push(db.connect_another().await);
        }
        const UNITS: u64 = 50;
        let stratum_of = |n: u64| -> Option<&'static str> {
            match n % 3 {
                0 => None,
                1 => Some("s1"),
                _ => Some("s2"),
            }
        };
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for task in 0..16usize {
            let store = stores[task % stores.len()].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                let mut order: Vec<u64> = (0..UNITS).collect();
                order.shuffle(&mut rand::rng());
                barrier.wait().await;
                let mut results = Vec::new();
                for n in order {
                    let u = unit(n);
                    let a = NewSequentialAssignment {
                        trial_id: trial,
                        unit: &u,
                        stratum: stratum_of(n),
                        community: Some("c"),
                        trial_version: 1,
                        at: at(100),
                    };
                    let (record, created) = store
                        .assign_sequential(&a, &arm_by_block)
                        .await
                        .unwrap_or_else(|e| panic!("task {task}, unit {n}: {e:?}"));
                    results.push((n, record, created));
                }
                results
            }));
        }
        let mut by_unit: BTreeMap<u64, Vec<_>> = BTreeMap::new();
        for t in tasks {
            for (n, record, created) in t.await.unwrap() {
                by_unit.entry(n).or_default().push((record, created));
            }
        }
        assert_eq!(by_unit.len(), UNITS as usize);
        for (n, results) in &by_unit {
            assert_eq!(results.len(), 16);
            let created = results.iter().filter(|(_, c)| *c).count();
            assert_eq!(created, 1, "unit {n} created {created} times");
            assert!(
                results.iter().all(|(r, _)| *r == results[0].0),
                "unit {n}: {results:?}"
            );
        }

        let stored = db
            .store()
            .export_assignments(trial, None, 1000)
            .await
            .unwrap();
        assert_eq!(stored.len(), UNITS as usize);
        let mut positions: BTreeMap<Option<String>, Vec<i64>> = BTreeMap::new();
        for a in &stored {
            positions
                .entry(a.stratum.clone())
                .or_default()
                .push(a.position.unwrap());
            assert_eq!(a.arm, arm_by_block(a.position.unwrap()));
            let n = u64::from_str_radix(&a.unit, 16).unwrap();
            assert_eq!(a.stratum.as_deref(), stratum_of(n));
            assert_eq!(by_unit[&n][0].0.position, a.position);
        }
        assert_eq!(positions.len(), 3);
        for (stratum, mut got) in positions {
            got.sort();
            let n = got.len() as i64;
            assert_eq!(got, (0..n).collect::<Vec<_>>(), "stratum {stratum:?}");
            let distinct: BTreeSet<i64> = got.into_iter().collect();
            assert_eq!(distinct.len() as i64, n);
        }
        for store in &stores[1..] {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn exposures_keep_the_first_and_count_new_ones() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other = running_trial(store, "u").await;
        assert_eq!(store.record_exposures(&[]).await.unwrap(), 0);

        let precise = DateTime::from_timestamp(1_750_000_010, 999_999_999).unwrap();
        let batch = vec![
            exposure(trial, 3, "A", 5),
            NewExposure {
                at: precise,
                source: ExposureSource::Bulk,
                community: Some("north".into()),
                trial_version: 2,
                ..exposure(trial, 1, "B", 0)
            },
            exposure(trial, 3, "B", 1), // duplicate inside the batch: dropped
            NewExposure {
                excluded_reason: Some("developer override".into()),
                source: ExposureSource::Explicit,
                ..exposure(trial, 2, "A", 2)
            },
            exposure(other, 3, "A", 3), // same unit, other trial: new
        ];
        assert_eq!(store.record_exposures(&batch).await.unwrap(), 4);
        // Duplicates across batches: only unit 4 is new.
        let later = vec![
            exposure(trial, 1, "A", 20),
            exposure(trial, 4, "A", 21),
            exposure(trial, 2, "B", 22),
            exposure(trial, 4, "B", 23),
        ];
        assert_eq!(store.record_exposures(&later).await.unwrap(), 1);
        assert_eq!(store.record_exposures(&later).await.unwrap(), 0);

        // Assign units 1..=5 so the export shows the exposures.
        for n in 1..=5 {
            let u = unit(n);
            let arm = if n % 2 == 0 { "A" } else { "B" };
            store.assign_fixed(&fixed(trial, &u, arm, 0)).await.unwrap();
        }
        let rows = store.export_assignments(trial, None, 100).await.unwrap();
        assert_eq!(rows.len(), 5);
        let by_unit = |n: u64| rows.iter().find(|r| r.unit == unit(n)).unwrap();
        let one = by_unit(1);
        assert_eq!(
            one.exposed_at.map(|t| t.timestamp_subsec_nanos()),
            Some(999_999_000)
        );
        assert_eq!(one.exposure_source, Some(ExposureSource::Bulk));
        assert_eq!(one.exposure_trial_version, Some(2));
        assert!(!one.excluded);
        let two = by_unit(2);
        assert!(two.excluded);
        assert_eq!(two.excluded_reason.as_deref(), Some("developer override"));
        assert_eq!(two.exposure_source, Some(ExposureSource::Explicit));
        let three = by_unit(3);
        assert_eq!(
            three.exposed_at,
            Some(at(5)),
            "the first in the batch is kept"
        );
        assert_eq!(three.exposure_source, Some(ExposureSource::Single));
        assert_eq!(by_unit(4).exposed_at, Some(at(21)));
        let five = by_unit(5);
        assert_eq!(five.exposed_at, None);
        assert_eq!(five.exposure_source, None);
        assert!(!five.excluded);

        // Assigned: A = {2, 4}, B = {1, 3, 5}. Exposed (by the exposure's
        // arm, excluded left out): unit 1 → B, 3 → A, 4 → A; 2 is excluded.
        assert_eq!(
            store.arm_counts(trial).await.unwrap(),
            vec![("A".to_string(), 2, 2), ("B".to_string(), 3, 1)]
        );
        assert_eq!(
            store.arm_counts(other).await.unwrap(),
            vec![("A".to_string(), 0, 1)]
        );
        assert!(store.arm_counts(trial + 1000).await.unwrap().is_empty());

        // A bad row fails the whole batch.
        let bad = vec![
            exposure(trial, 50, "A", 30),
            NewExposure {
                unit: "nothex".into(),
                ..exposure(trial, 51, "A", 30)
            },
        ];
        let err = store.record_exposures(&bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
        assert_eq!(
            store
                .record_exposures(&[exposure(trial, 50, "A", 31)])
                .await
                .unwrap(),
            1
        );
        for source in ExposureSource::ALL {
            assert_eq!(source.as_str().parse::<ExposureSource>().unwrap(), source);
        }
    })
    .await;
}

#[tokio::test]
async fn large_exposure_batches_are_chunked() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "big").await;
        let mut batch: Vec<NewExposure> = (0..10_000u64)
            .map(|n| {
                exposure(
                    trial,
                    n * 7919 % 10_000,
                    if n % 2 == 0 { "A" } else { "B" },
                    1,
                )
            })
            .collect();
        // Duplicates far apart, in other chunks.
        batch.extend((0..500u64).map(|n| exposure(trial, n, "C", 2)));
        let started = Instant::now();
        assert_eq!(store.record_exposures(&batch).await.unwrap(), 10_000);
        eprintln!("10,500 exposures in {:?}", started.elapsed());
        assert_eq!(store.record_exposures(&batch[..2000]).await.unwrap(), 0);
        let counts = store.arm_counts(trial).await.unwrap();
        assert_eq!(
            counts,
            vec![("A".to_string(), 0, 5000), ("B".to_string(), 0, 5000)]
        );
    })
    .await;
}

#[tokio::test]
async fn export_pages_by_unit() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other = running_trial(store, "o").await;
        for n in [5u64, 1, 4, 2, 3] {
            let u = unit(n);
            store
                .assign_fixed(&fixed(trial, &u, "A", n as i64))
                .await
                .unwrap();
        }
        let u = unit(9);
        store.assign_fixed(&fixed(other, &u, "A", 0)).await.unwrap();

        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = store
                .export_assignments(trial, after.as_deref(), 2)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| r.unit.clone());
            pages.push(
                page.iter()
                    .map(|r| u64::from_str_radix(&r.unit, 16).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);
        let all = store.export_assignments(trial, None, 100).await.unwrap();
        assert_eq!(all[0].assigned_at, at(1));
        assert_eq!(all[0].trial_version, 1);
        assert!(store
            .export_assignments(trial, None, 0)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .export_assignments(trial + 1000, None, 10)
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

// --- Telemetry events, consents, erasure ---------------------------------

use commonlab_store::{EventFilter, NewEvent};
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn props(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Event `id` (a small UUID) of `unit(u)` named `name` at `at(secs)`.
fn event(id: u128, u: u64, name: &str, secs: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(id),
        unit: unit(u),
        community: None,
        name: name.to_string(),
        ts: at(secs),
        properties: props(json!({"n": id as u64})),
    }
}

fn ids_of(events: &[commonlab_store::EventRecord]) -> Vec<u128> {
    events.iter().map(|e| e.event_id.as_u128()).collect()
}

#[tokio::test]
async fn events_are_stored_once_and_duplicates_reported() {
    both_backends(|db| async move {
        let store = db.store();
        let received = DateTime::from_timestamp(1_750_000_100, 123_456_789).unwrap();
        let empty = store.insert_events(&[], received).await.unwrap();
        assert_eq!((empty.inserted, empty.duplicates.len()), (0, 0));

        // Index 3 repeats index 0 (with other content: the first wins).
        let batch = vec![
            event(1, 1, "open", 1),
            event(2, 1, "open", 2),
            event(3, 2, "click", 3),
            NewEvent {
                name: "other".into(),
                ..event(1, 9, "x", 9)
            },
        ];
        let out = store.insert_events(&batch, received).await.unwrap();
        assert_eq!(out.inserted, 3);
        assert_eq!(out.duplicates, vec![3]);

        // A retried batch stores nothing and reports every event.
        let again = store.insert_events(&batch, at(200)).await.unwrap();
        assert_eq!(again.inserted, 0);
        assert_eq!(again.duplicates, vec![0, 1, 2, 3]);

        // Overlap across batches, and a repeat of a stored id in the batch.
        let mixed = vec![
            event(4, 1, "open", 4),
            event(2, 1, "open", 2),
            event(5, 2, "open", 5),
            event(2, 1, "open", 2),
            event(4, 1, "open", 4),
        ];
        let out = store.insert_events(&mixed, at(300)).await.unwrap();
        assert_eq!(out.inserted, 2);
        assert_eq!(out.duplicates, vec![1, 3, 4]);

        let all = store
            .export_events(&EventFilter::default(), None, 100)
            .await
            .unwrap();
        assert_eq!(ids_of(&all), vec![1, 2, 3, 4, 5]);
        assert_eq!(all[0].name, "open", "the first occurrence is stored");
        assert_eq!(all[0].unit, unit(1));
        assert_eq!(
            all[0].received_at.timestamp_subsec_nanos(),
            123_456_000,
            "received_at is truncated to microseconds"
        );
        assert_eq!(all[3].received_at, at(300));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            5
        );

        // A row the database refuses is left out and reported; the rest of
        // the batch is stored (store_refused/ has the cases in full).
        let bad = vec![
            event(10, 1, "open", 10),
            NewEvent {
                unit: "not-a-pseudonym".into(),
                ..event(11, 1, "open", 11)
            },
        ];
        let out = store.insert_events(&bad, at(400)).await.unwrap();
        assert_eq!(out.inserted, 1);
        let refused: Vec<usize> = out.refused.iter().map(|r| r.index).collect();
        assert_eq!(refused, [1], "{out:?}");
        let only_bad = [NewEvent {
            name: String::new(),
            ..event(12, 1, "", 12)
        }];
        let out = store.insert_events(&only_bad, at(400)).await.unwrap();
        assert_eq!((out.inserted, out.refused.len()), (0, 1), "{out:?}");
        if db.backend() == Backend::Postgres {
            // PostgreSQL text cannot hold NUL: the COPY itself fails, for
            // that row only.
            let nul = [NewEvent {
                name: "a\0b".into(),
                ..event(13, 1, "", 13)
            }];
            let out = store.insert_events(&nul, at(400)).await.unwrap();
            assert_eq!((out.inserted, out.refused.len()), (0, 1), "{out:?}");
        }
        // The connections are still usable after the failures.
        let out = store.insert_events(&bad[..1], at(401)).await.unwrap();
        assert_eq!((out.inserted, out.duplicates.len()), (0, 1));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            6
        );
    })
    .await;
}

/// SQLite's writer connection must be back at `synchronous = FULL` (2)
/// whatever happened to an unsynced insert; PostgreSQL has nothing to check.
async fn assert_writer_waits_for_disk(db: &TestDb, when: &str) {
    if db.backend() == Backend::Sqlite {
        let mode = db
            .fetch_text_raw("SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous")
            .await
            .unwrap();
        assert_eq!(mode.as_deref(), Some("2"), "{when}");
    }
}

#[tokio::test]
async fn unsynced_event_commits_are_visible_and_synced_in_order() {
    both_backends(|db| async move {
        let store = db.store();
        let (out, first) = store
            .insert_events_unsynced(&[event(1, 1, "open", 1), event(2, 1, "open", 2)], at(10))
            .await
            .unwrap();
        assert_eq!((out.inserted, out.duplicates.len()), (2, 0));
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            2,
            "committed (visible) before the flush"
        );
        assert_writer_waits_for_disk(&db, "after an unsynced commit").await;
        let (again, second) = store
            .insert_events_unsynced(&[event(2, 1, "open", 2), event(3, 2, "x", 3)], at(11))
            .await
            .unwrap();
        assert_eq!((again.inserted, again.duplicates.clone()), (1, vec![0]));
        let (_, empty) = store.insert_events_unsynced(&[], at(12)).await.unwrap();
        if db.backend() == Backend::Sqlite {
            assert!(first < second, "{first:?} then {second:?}");
            assert!(empty < first, "an empty batch commits nothing");
            let wal = commonlab_store::testing::sqlite_wal_path(store).unwrap();
            assert!(
                wal.exists(),
                "the flushed file is the WAL: {}",
                wal.display()
            );
            assert!(
                wal.to_string_lossy().ends_with(".db-wal"),
                "{}",
                wal.display()
            );
        }
        // One flush covers both; flushing again (or an older point) is free.
        store.sync_events(second).await.unwrap();
        store.sync_events(first).await.unwrap();
        store.sync_events(empty).await.unwrap();

        // A batch of refused rows leaves nothing (its transaction failed,
        // then the probes), and the writer back at FULL.
        let bad = [
            NewEvent {
                name: String::new(),
                ..event(10, 1, "open", 10)
            },
            NewEvent {
                unit: "not-a-pseudonym".into(),
                ..event(11, 1, "open", 11)
            },
        ];
        let (out, _) = store.insert_events_unsynced(&bad, at(13)).await.unwrap();
        assert_eq!((out.inserted, out.refused.len()), (0, 2), "{out:?}");
        assert_writer_waits_for_disk(&db, "after a refused batch").await;
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            3
        );

        // Cancelled at every stage (the caller's future dropped): the batch
        // is stored whole or not at all, and the writer never stays at
        // NORMAL for the next write.
        let batch: Vec<NewEvent> = (0..2_000u128)
            .map(|i| event(1_000 + i, (i % 50) as u64, "open", 100 + i as i64))
            .collect();
        let mut stored = 3;
        // The last one has time to finish.
        for micros in [
            0u64, 50, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 30_000_000,
        ] {
            let attempt = tokio::time::timeout(
                std::time::Duration::from_micros(micros),
                store.insert_events_unsynced(&batch, at(14)),
            )
            .await;
            assert_writer_waits_for_disk(&db, &format!("cancelled after {micros} µs")).await;
            let now = store.count_events(&EventFilter::default()).await.unwrap();
            assert!(
                now == stored || (stored == 3 && now == 3 + 2_000),
                "{micros} µs: {now} events, {stored} before: a batch is all or nothing"
            );
            if let Ok(done) = attempt {
                let (out, point) = done.unwrap();
                store.sync_events(point).await.unwrap();
                assert_eq!(out.inserted + out.duplicates.len() as u64, 2_000);
            }
            stored = now;
        }
        let (out, point) = store.insert_events_unsynced(&batch, at(15)).await.unwrap();
        store.sync_events(point).await.unwrap();
        assert_eq!(out.inserted + out.duplicates.len() as u64, 2_000);
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            3 + 2_000
        );
    })
    .await;
}

#[tokio::test]
async fn event_properties_and_text_round_trip_with_types() {
    both_backends(|db| async move {
        let store = db.store();
        let precise = DateTime::from_timestamp(1_750_000_000, 987_654_321).unwrap();
        let properties = props(json!({
            "count": 42,
            "negative": -7,
            "big": 9_007_199_254_740_993_i64,
            "ratio": 0.25,
            "whole_float": 2.0,
            "tiny": 1.5e-7,
            "flag": true,
            "off": false,
            "label": "tab\there \\ back\\slash \"quoted\" new\nline ünï ✓",
            "nothing": null,
        }));
        let weird = NewEvent {
            event_id: Uuid::new_v4(),
            unit: unit(7),
            community: Some("north\twest \\ ü".into()),
            name: "form\\submit\nx".into(),
            ts: precise,
            properties: properties.clone(),
        };
        let plain = NewEvent {
            properties: Map::new(),
            ..event(1, 8, "empty", 1)
        };
        let out = store
            .insert_events(&[weird.clone(), plain.clone()], at(5))
            .await
            .unwrap();
        assert_eq!(out.inserted, 2);
        let got = store
            .export_events(
                &EventFilter {
                    unit: Some(unit(7)),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(e.event_id, weird.event_id);
        assert_eq!(e.community, weird.community);
        assert_eq!(e.name, weird.name);
        assert_eq!(e.ts.timestamp_subsec_nanos(), 987_654_000);
        assert_eq!(e.properties, properties);
        let p = &e.properties;
        assert_eq!(p["count"].as_i64(), Some(42));
        assert!(p["count"].is_i64());
        assert_eq!(p["negative"].as_i64(), Some(-7));
        assert_eq!(p["big"].as_i64(), Some(9_007_199_254_740_993));
        assert!(p["ratio"].is_f64());
        assert_eq!(p["ratio"].as_f64(), Some(0.25));
        assert!(p["whole_float"].is_f64(), "2.0 stays a float");
        assert_eq!(p["tiny"].as_f64(), Some(1.5e-7));
        assert_eq!(p["flag"], Value::Bool(true));
        assert_eq!(p["off"], Value::Bool(false));
        assert!(p["nothing"].is_null());
        assert_eq!(p["label"], properties["label"]);

        let empty = store
            .export_events(
                &EventFilter {
                    name: Some("empty".into()),
                    ..Default::default()
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(empty.len(), 1);
        assert!(empty[0].properties.is_empty());
        assert_eq!(empty[0].community, None);
    })
    .await;
}

#[tokio::test]
async fn export_pages_by_time_and_id_with_filters() {
    both_backends(|db| async move {
        let store = db.store();
        // Ids deliberately out of time order; 3 events share a timestamp.
        let mut batch = vec![
            event(50, 1, "open", 5),
            event(10, 1, "open", 7),
            event(30, 2, "open", 7),
            event(20, 1, "click", 7),
            event(40, 2, "click", 1),
            event(60, 3, "open", 9),
            event(70, 1, "open", 11),
        ];
        batch[1].community = Some("north".into());
        batch[2].community = Some("north".into());
        batch[5].community = Some("south".into());
        store.insert_events(&batch, at(100)).await.unwrap();

        // Export order: (ts, event_id).
        let expected = vec![40, 50, 10, 20, 30, 60, 70];
        let everything = EventFilter::default();
        for page_size in [1u32, 2, 3, 7, 100] {
            let mut pages = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .export_events(&everything, after.as_ref(), page_size)
                    .await
                    .unwrap();
                if page.is_empty() {
                    break;
                }
                assert!(page.len() <= page_size as usize);
                after = page.last().map(|e| e.cursor());
                pages.extend(ids_of(&page));
            }
            assert_eq!(pages, expected, "page size {page_size}");
        }
        assert!(store
            .export_events(&everything, None, 0)
            .await
            .unwrap()
            .is_empty());

        let check = |filter: EventFilter, want: Vec<u128>| {
            let store = store.clone();
            async move {
                let got = store.export_events(&filter, None, 100).await.unwrap();
                assert_eq!(ids_of(&got), want, "{filter:?}");
                assert_eq!(
                    store.count_events(&filter).await.unwrap(),
                    want.len() as u64,
                    "{filter:?}"
                );
            }
        };
        check(everything.clone(), expected.clone()).await;
        check(
            EventFilter {
                name: Some("open".into()),
                ..Default::default()
            },
            vec![50, 10, 30, 60, 70],
        )
        .await;
        check(
            EventFilter {
                unit: Some(unit(1)),
                ..Default::default()
            },
            vec![50, 10, 20, 70],
        )
        .await;
        check(
            EventFilter {
                unit: Some(unit(1)),
                name: Some("open".into()),
                from: Some(at(6)),
                ..Default::default()
            },
            vec![10, 70],
        )
        .await;
        check(
            EventFilter {
                community: Some("north".into()),
                ..Default::default()
            },
            vec![10, 30],
        )
        .await;
        // from inclusive, to exclusive.
        check(
            EventFilter {
                from: Some(at(7)),
                to: Some(at(11)),
                ..Default::default()
            },
            vec![10, 20, 30, 60],
        )
        .await;
        check(
            EventFilter {
                to: Some(at(7)),
                ..Default::default()
            },
            vec![40, 50],
        )
        .await;
        check(
            EventFilter {
                name: Some("nope".into()),
                ..Default::default()
            },
            vec![],
        )
        .await;

        // Filters and cursor together: the second page of unit 1's events.
        let filter = EventFilter {
            unit: Some(unit(1)),
            ..Default::default()
        };
        let first = store.export_events(&filter, None, 2).await.unwrap();
        assert_eq!(ids_of(&first), vec![50, 10]);
        let cursor = first[1].cursor();
        let second = store
            .export_events(&filter, Some(&cursor), 2)
            .await
            .unwrap();
        assert_eq!(ids_of(&second), vec![20, 70]);
    })
    .await;
}

#[tokio::test]
async fn a_5000_event_batch_is_stored_in_one_call() {
    both_backends(|db| async move {
        let store = db.store();
        let batch: Vec<NewEvent> = (0..5000u64)
            .map(|n| NewEvent {
                event_id: Uuid::new_v4(),
                community: Some(format!("c{}", n % 7)),
                properties: props(json!({"n": n, "x": n as f64 / 3.0, "ok": n % 2 == 0})),
                ..event(0, n % 100, if n % 3 == 0 { "a" } else { "b" }, n as i64)
            })
            .collect();
        let started = Instant::now();
        let out = store.insert_events(&batch, at(10_000)).await.unwrap();
        eprintln!("5,000 events in {:?}", started.elapsed());
        assert_eq!(out.inserted, 5000);
        assert!(out.duplicates.is_empty());
        let again = store.insert_events(&batch, at(10_001)).await.unwrap();
        assert_eq!(again.inserted, 0);
        assert_eq!(again.duplicates, (0..5000).collect::<Vec<_>>());
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            5000
        );
        assert_eq!(
            store
                .count_events(&EventFilter {
                    name: Some("a".into()),
                    ..Default::default()
                })
                .await
                .unwrap(),
            1667
        );
    })
    .await;
}

/// 4 stores (as if 4 server processes) insert overlapping batches at the
/// same time: every event is stored once and reported as inserted by
/// exactly one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_batches_store_every_event_once() {
    use rand::seq::SliceRandom;
    use std::collections::BTreeMap;

    both_backends(|db| async move {
        let mut stores = vec![db.store().clone()];
        for _ in 0..3 {
            stores.push(db.connect_another().await);
        }
        const EVENTS: u128 = 3000;
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for task in 0..8u128 {
            let store = stores[task as usize % stores.len()].clone();
            let barrier = barrier.clone();
            tasks.push(tokio::spawn(async move {
                // Each task covers 1/2 of the ids (overlapping the others),
                // in a shuffled order, in batches of 250.
                let start = task * EVENTS / 8;
                let mut ids: Vec<u128> = (start..start + EVENTS / 2).map(|i| i % EVENTS).collect();
                ids.shuffle(&mut rand::rng());
                barrier.wait().await;
                let mut inserted = Vec::new();
                for chunk in ids.chunks(250) {
                    let batch: Vec<NewEvent> = chunk
                        .iter()
                        .map(|&id| event(id + 1, (id % 10) as u64, "e", id as i64))
                        .collect();
                    let out = store
                        .insert_events(&batch, at(0))
                        .await
                        .unwrap_or_else(|e| panic!("task {task}: {e:?}"));
                    let mut dups = out.duplicates.iter().peekable();
                    let mut n = 0;
                    for (i, e) in batch.iter().enumerate() {
                        if dups.peek() == Some(&&i) {
                            dups.next();
                        } else {
                            inserted.push(e.event_id.as_u128());
                            n += 1;
                        }
                    }
                    assert_eq!(n, out.inserted);
                }
                inserted
            }));
        }
        let mut times: BTreeMap<u128, usize> = BTreeMap::new();
        for t in tasks {
            for id in t.await.unwrap() {
                *times.entry(id).or_default() += 1;
            }
        }
        assert_eq!(times.len(), EVENTS as usize);
        assert!(times.values().all(|&n| n == 1), "reported inserted twice");
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            EVENTS as u64
        );
        for store in &stores[1..] {
            store.close().await;
        }
    })
    .await;
}

#[tokio::test]
async fn consent_history_keeps_every_decision() {
    both_backends(|db| async move {
        let store = db.store();
        let (a, b) = (unit(1), unit(2));
        assert_eq!(store.consent_state(&a, "telemetry").await.unwrap(), None);
        let first = store
            .set_consent(&a, "telemetry", "v1", true, at(1))
            .await
            .unwrap();
        assert!(first.granted);
        assert_eq!(
            store.consent_state(&a, "telemetry").await.unwrap(),
            Some(first.clone())
        );
        store
            .set_consent(&a, "surveys", "v1", true, at(2))
            .await
            .unwrap();
        let withdrawn = store
            .set_consent(&a, "telemetry", "v1", false, at(3))
            .await
            .unwrap();
        store
            .set_consent(&b, "telemetry", "v2", true, at(3))
            .await
            .unwrap();
        let state = store.consent_state(&a, "telemetry").await.unwrap().unwrap();
        assert_eq!(state, withdrawn);
        assert!(!state.granted);
        // Granted again on a new text version, at the same instant: the
        // later decision wins.
        let precise = DateTime::from_timestamp(1_750_000_003, 999_999_999).unwrap();
        store
            .set_consent(&a, "telemetry", "v2", false, precise)
            .await
            .unwrap();
        let regranted = store
            .set_consent(&a, "telemetry", "v2", true, precise)
            .await
            .unwrap();
        assert_eq!(regranted.at.timestamp_subsec_nanos(), 999_999_000);
        assert_eq!(
            store.consent_state(&a, "telemetry").await.unwrap(),
            Some(regranted)
        );
        assert_eq!(
            store
                .consent_state(&a, "surveys")
                .await
                .unwrap()
                .map(|c| c.granted),
            Some(true)
        );
        let history = store.consent_history(&a).await.unwrap();
        let summary: Vec<(&str, &str, bool)> = history
            .iter()
            .map(|c| (c.scope.as_str(), c.text_version.as_str(), c.granted))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("telemetry", "v1", true),
                ("surveys", "v1", true),
                ("telemetry", "v1", false),
                ("telemetry", "v2", false),
                ("telemetry", "v2", true),
            ]
        );
        assert_eq!(store.consent_history(&b).await.unwrap().len(), 1);
        let err = store
            .set_consent("raw-user-id", "telemetry", "v1", true, at(1))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    })
    .await;
}

#[tokio::test]
async fn erase_unit_removes_only_that_unit_and_logs_it() {
    use commonlab_store::ErasureOutcome;

    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "t").await;
        let other_trial = running_trial(store, "u").await;
        let (a, b) = (unit(1), unit(2));
        for (t, u) in [(trial, &a), (other_trial, &a), (trial, &b)] {
            store.assign_fixed(&fixed(t, u, "A", 1)).await.unwrap();
        }
        store
            .record_exposures(&[
                exposure(trial, 1, "A", 2),
                exposure(other_trial, 1, "A", 2),
                exposure(trial, 2, "A", 2),
            ])
            .await
            .unwrap();
        let events: Vec<NewEvent> = (0..10u128)
            .map(|i| event(i + 1, if i < 6 { 1 } else { 2 }, "e", i as i64))
            .collect();
        store.insert_events(&events, at(20)).await.unwrap();
        for (u, scope) in [(&a, "telemetry"), (&a, "surveys"), (&b, "telemetry")] {
            store
                .set_consent(u, scope, "v1", true, at(3))
                .await
                .unwrap();
        }

        // A failure anywhere in the erasure undoes all of it: make the log
        // insert fail.
        let failing = match db.backend() {
            Backend::Sqlite => "CREATE TRIGGER erasure_log_fail BEFORE INSERT ON erasure_log \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                .to_string(),
            Backend::Postgres => "CREATE FUNCTION erasure_log_fail() RETURNS trigger \
                 LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END; $$; \
                 CREATE TRIGGER erasure_log_fail BEFORE INSERT ON erasure_log \
                 FOR EACH ROW EXECUTE FUNCTION erasure_log_fail()"
                .to_string(),
        };
        db.execute_raw(&failing).await.unwrap();
        let err = store
            .erase_unit(&a, "cli:dpo", "member asked", at(30))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        let a_events = EventFilter {
            unit: Some(a.clone()),
            ..Default::default()
        };
        assert_eq!(store.count_events(&a_events).await.unwrap(), 6);
        assert!(store.get_assignment(trial, &a).await.unwrap().is_some());
        assert!(store
            .consent_state(&a, "telemetry")
            .await
            .unwrap()
            .is_some());
        assert_eq!(store.arm_counts(trial).await.unwrap()[0].2, 2);
        let drop = match db.backend() {
            Backend::Sqlite => "DROP TRIGGER erasure_log_fail",
            Backend::Postgres => "DROP TRIGGER erasure_log_fail ON erasure_log",
        };
        db.execute_raw(drop).await.unwrap();

        let erased = store
            .erase_unit(&a, "cli:dpo", "member asked", at(30))
            .await
            .unwrap();
        assert_eq!(
            erased,
            ErasureOutcome {
                events: 6,
                exposures: 2,
                assignments: 2,
                consents: 2,
            }
        );
        assert_eq!(store.count_events(&a_events).await.unwrap(), 0);
        assert!(store.get_assignment(trial, &a).await.unwrap().is_none());
        assert!(store
            .get_assignment(other_trial, &a)
            .await
            .unwrap()
            .is_none());
        assert!(store.consent_history(&a).await.unwrap().is_empty());
        // Unit b is untouched.
        let b_events = EventFilter {
            unit: Some(b.clone()),
            ..Default::default()
        };
        assert_eq!(store.count_events(&b_events).await.unwrap(), 4);
        assert!(store.get_assignment(trial, &b).await.unwrap().is_some());
        assert_eq!(store.consent_history(&b).await.unwrap().len(), 1);
        assert_eq!(
            store.arm_counts(trial).await.unwrap(),
            vec![("A".to_string(), 1, 1)]
        );
        assert_eq!(store.arm_counts(other_trial).await.unwrap(), vec![]);

        // Erasing again deletes nothing and is logged again.
        let again = store
            .erase_unit(&a, "cli:dpo", "member asked", at(40))
            .await
            .unwrap();
        assert_eq!(again, ErasureOutcome::default());
        let log = store.erasures_since(at(0)).await.unwrap();
        assert_eq!(log.len(), 2, "the failed erasure left no entry");
        assert_eq!(log[0].unit, a);
        assert_eq!(log[0].erased_at, at(30));
        assert_eq!(log[0].counts, erased);
        assert_eq!(log[0].actor.as_deref(), Some("cli:dpo"));
        assert_eq!(log[0].reason.as_deref(), Some("member asked"));
        assert_eq!(log[1].erased_at, at(40));
        assert_eq!(store.erasures_since(at(40)).await.unwrap().len(), 1);
        assert!(store.erasures_since(at(41)).await.unwrap().is_empty());

        // The log is append-only.
        let mut attempts = vec![
            "UPDATE erasure_log SET unit = erasure_log.unit",
            "DELETE FROM erasure_log",
        ];
        if db.backend() == Backend::Postgres {
            attempts.push("TRUNCATE erasure_log");
        }
        for sql in attempts {
            let err = db.execute_raw(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.erasures_since(at(0)).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_old_events_in_batches() {
    both_backends(|db| async move {
        let store = db.store();
        // Event time is not insertion order: old and new events interleave.
        let batch: Vec<NewEvent> = (0..1000u128)
            .map(|i| {
                let secs = if i % 4 == 0 {
                    10_000 + i as i64
                } else {
                    i as i64
                };
                event(i + 1, (i % 5) as u64, "e", secs)
            })
            .collect();
        store.insert_events(&batch, at(20_000)).await.unwrap();
        let old = batch.iter().filter(|e| e.ts < at(500)).count() as u64;
        assert_eq!(old, 375);
        assert_eq!(store.delete_events_before(at(500), 100).await.unwrap(), old);
        assert_eq!(
            store
                .count_events(&EventFilter {
                    to: Some(at(500)),
                    ..Default::default()
                })
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store.count_events(&EventFilter::default()).await.unwrap(),
            1000 - old
        );
        assert_eq!(store.delete_events_before(at(500), 100).await.unwrap(), 0);
        // A batch limit of 0 still makes progress.
        let before_600 = batch
            .iter()
            .filter(|e| e.ts >= at(500) && e.ts < at(600))
            .count() as u64;
        assert_eq!(
            store.delete_events_before(at(600), 0).await.unwrap(),
            before_600
        );
        // An id deleted by retention can be stored again (it is a new event
        // as far as the store knows).
        let out = store.insert_events(&batch[1..2], at(20_001)).await.unwrap();
        assert_eq!(out.inserted, 1);
    })
    .await;
}

#[path = "store_metrics/mod.rs"]
mod metrics;

#[path = "store_cancel/mod.rs"]
mod cancel;

#[path = "store_privacy/mod.rs"]
mod privacy;

#[path = "store_refused/mod.rs"]
mod refused;

#[path = "store_lifecycle/mod.rs"]
mod lifecycle;

#[path = "store_deviations/mod.rs"]
mod deviations;
