//! Connecting and migrating, the settings a connection gets, and what
//! a store reports when its database cannot be reached or its URL is wrong.

use super::*;

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

/// `pool_usage` names each pool of the backend with its maximum, and the
/// connection a query opened shows as open.
#[tokio::test]
async fn pool_usage_reports_each_pool() {
    both_backends(|db| async move {
        let store = db.store();
        store.ping().await.unwrap();
        let usage = store.pool_usage();
        let names: Vec<&str> = usage.iter().map(|u| u.pool).collect();
        match store.backend() {
            Backend::Sqlite => assert_eq!(names, ["read", "write"]),
            Backend::Postgres => assert_eq!(names, ["main"]),
        }
        for u in &usage {
            assert!(u.max >= 1, "{u:?}");
            assert!(u.open <= u.max && u.idle <= u.open as usize, "{u:?}");
        }
        // The ping opened a connection of the reading pool (it goes back
        // to the pool in a task of sqlx's: idle or not yet, it is open).
        let read = usage.iter().find(|u| u.pool != "write").unwrap();
        assert!(read.open >= 1, "{read:?}");
    })
    .await;
}
