//! Flag sets: appending revisions against the expected head (one winner
//! among concurrent writers), reading heads, revisions and history, the
//! append-only log.

use super::*;

fn revisions<T>(items: &[T], revision: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(revision).collect()
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
        // Several revisions in one read: those that exist, ascending.
        let some = store
            .flag_set_revisions("default", &[4, 1, 9, 2])
            .await
            .unwrap();
        let got: Vec<i64> = some.iter().map(|r| r.revision).collect();
        assert_eq!(got, [1, 2, 4]);
        assert_eq!(some[0], first);
        assert!(some[2].document.contains("\"n\":4"));
        assert!(store
            .flag_set_revisions("other", &[1])
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .flag_set_revisions("default", &[])
            .await
            .unwrap()
            .is_empty());
        let too_many: Vec<i64> = (1..=101).collect();
        assert!(store
            .flag_set_revisions("default", &too_many)
            .await
            .is_err());
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
