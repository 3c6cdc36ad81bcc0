//! Issue 14: a conclusion that ships an arm (`Store::conclude_trial_and_ship`)
//! writes the conclusion, its snapshot, its deviation and the flag-set
//! revision in one transaction: a moved head or a refused revision writes
//! none of them.

use super::*;
use commonlab_store::FlagSetAppend;

fn log_of(events: Vec<commonlab_store::TrialEvent>) -> Vec<String> {
    events.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn a_shipping_conclusion_writes_both_or_neither() {
    both_backends(|db| async move {
        let store = db.store();
        let trial_id = running_trial(store, "t").await;
        let trial = store.get_trial("t").await.unwrap().unwrap();
        let from = [TrialStatus::Running];
        store
            .append_flag_set_revision("default", 0, &change("{\"flags\":{}}", "import", None, 2))
            .await
            .unwrap();
        let shipped_doc = "{\"flags\":{\"checkout\":{}}}";
        let ship = |expected: i64| FlagSetAppend {
            set: "default",
            expected,
            change: change(shipped_doc, "ship", Some("checkout"), 5),
            deviations: &[],
        };
        let conclude = |expected: i64, deviation: Option<&'static str>| {
            let s = snapshots(&trial.spec_hash, at(5), 1);
            let (hash, version) = (trial.spec_hash.clone(), trial.version);
            async move {
                store
                    .conclude_trial_and_ship(
                        "t",
                        &from,
                        &hash,
                        version,
                        &s,
                        &trial_change("ship it", 5),
                        deviation,
                        &ship(expected),
                    )
                    .await
            }
        };

        // The head moved (another change came first): nothing is written.
        let err = conclude(0, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Conflict {
                    expected: 0,
                    current: 1
                }
            ),
            "{err:?}"
        );
        unchanged(store, trial_id).await;

        // The revision is refused by the database: nothing is written.
        let refuse = match db.backend() {
            Backend::Sqlite => {
                "CREATE TRIGGER refuse_ship BEFORE INSERT ON flag_set_revisions \
                 WHEN NEW.action = 'ship' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            }
            Backend::Postgres => {
                "CREATE FUNCTION refuse_ship() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.action = 'ship' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER refuse_ship BEFORE INSERT ON flag_set_revisions \
                 FOR EACH ROW EXECUTE FUNCTION refuse_ship()"
            }
        };
        db.execute_raw(refuse).await.unwrap();
        assert!(conclude(1, Some("early")).await.is_err());
        unchanged(store, trial_id).await;
        let accept = match db.backend() {
            Backend::Sqlite => "DROP TRIGGER refuse_ship",
            Backend::Postgres => "DROP TRIGGER refuse_ship ON flag_set_revisions",
        };
        db.execute_raw(accept).await.unwrap();

        // Both, with the deviation of a forced conclusion.
        let (t, revision, noted) = conclude(1, Some("early")).await.unwrap();
        assert_eq!(t.status, TrialStatus::Concluded);
        assert_eq!(revision.revision, 2);
        assert!(
            noted.is_empty(),
            "the trial is no longer running: {noted:?}"
        );
        let head = store.flag_set_head("default").await.unwrap().unwrap();
        assert_eq!((head.revision, head.action.as_str()), (2, "ship"));
        assert_eq!(head.document, shipped_doc);
        assert_eq!(
            log_of(store.trial_events("t").await.unwrap()),
            ["create", "start", "conclude", "deviation"]
        );
        assert_eq!(store.metric_snapshots(trial_id).await.unwrap().len(), 2);
        // A concluded trial is not concluded again, and the head stays.
        let err = conclude(2, None).await.unwrap_err();
        assert_invalid_state(err, "concluded");
        assert_eq!(
            store
                .flag_set_head("default")
                .await
                .unwrap()
                .unwrap()
                .revision,
            2
        );
    })
    .await;
}

/// The trial still running with nothing of a conclusion, the head at 1.
async fn unchanged(store: &Store, trial_id: i64) {
    let t = store.get_trial("t").await.unwrap().unwrap();
    assert_eq!(t.status, TrialStatus::Running);
    assert_eq!(
        log_of(store.trial_events("t").await.unwrap()),
        ["create", "start"]
    );
    assert!(store.metric_snapshots(trial_id).await.unwrap().is_empty());
    let head = store.flag_set_head("default").await.unwrap().unwrap();
    assert_eq!(head.revision, 1);
}
