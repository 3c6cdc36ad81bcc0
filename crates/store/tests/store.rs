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
