//! `experiments conclude --ship ARM` is one transaction (issue #14): a
//! failure injected in the flag change leaves the trial running, with no
//! conclusion, snapshot or deviation in its log and the flag as it was;
//! once the flag change can be written, both are, on both stores.

use super::*;
use commonlab_server::audit::ChangeMeta;
use commonlab_server::trials::ship::conclude_and_ship;
use commonlab_store::TrialStatus;

async fn refuse_ship_revisions(db: &TestDb) {
    let sql = match db.backend() {
        commonlab_store::Backend::Sqlite => {
            "CREATE TRIGGER refuse_ship BEFORE INSERT ON flag_set_revisions \
             WHEN NEW.action = 'ship' BEGIN SELECT RAISE(ABORT, 'ship refused'); END"
        }
        commonlab_store::Backend::Postgres => {
            "CREATE FUNCTION refuse_ship() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.action = 'ship' THEN \
             RAISE EXCEPTION 'ship refused' USING ERRCODE = 'check_violation'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_ship BEFORE INSERT ON flag_set_revisions \
             FOR EACH ROW EXECUTE FUNCTION refuse_ship()"
        }
    };
    db.execute_raw(sql).await.unwrap();
}

async fn accept_ship_revisions(db: &TestDb) {
    let sql = match db.backend() {
        commonlab_store::Backend::Sqlite => "DROP TRIGGER refuse_ship",
        commonlab_store::Backend::Postgres => "DROP TRIGGER refuse_ship ON flag_set_revisions",
    };
    db.execute_raw(sql).await.unwrap();
}

#[tokio::test]
async fn a_failed_flag_change_leaves_the_trial_running() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await;
        let store = db.store();
        let set = h.server.state.config.flag_set.clone();
        let head = store.flag_set_head(&set).await.unwrap().unwrap();
        let meta = ChangeMeta {
            actor: "cli:ana",
            reason: "big wins",
            at: clock.now(),
        };

        refuse_ship_revisions(&db).await;
        let failed = conclude_and_ship(store, &set, "thanks-hash", "big", &meta, true).await;
        assert!(failed.is_err(), "{failed:?}");
        let trial = store.get_trial("thanks-hash").await.unwrap().unwrap();
        assert_eq!(trial.status, TrialStatus::Running);
        assert!(trial.concluded_at.is_none());
        let log: Vec<String> = store
            .trial_events("thanks-hash")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(log, ["create", "start"], "no conclusion, no deviation");
        assert!(store.metric_snapshots(trial.id).await.unwrap().is_empty());
        assert_eq!(store.flag_set_head(&set).await.unwrap().unwrap(), head);

        // The flag change can be written again: both are, together.
        accept_ship_revisions(&db).await;
        let shipped = conclude_and_ship(store, &set, "thanks-hash", "big", &meta, true)
            .await
            .unwrap();
        assert_eq!(shipped.trial.status, TrialStatus::Concluded);
        assert_eq!(shipped.action, "roll_out");
        let now = store.flag_set_head(&set).await.unwrap().unwrap();
        assert_eq!(now.revision, head.revision + 1);
        assert_eq!(shipped.revision, now.revision);
        assert_eq!(now.action, "ship");
        assert!(
            now.reason.contains("/api/v1/trials/thanks-hash/report"),
            "{}",
            now.reason
        );
        let doc: Value = serde_json::from_str(&now.document).unwrap();
        assert_eq!(
            doc["flags"]["thanks-button"]["defaultVariant"], "big",
            "{doc}"
        );
        let trial = store.get_trial("thanks-hash").await.unwrap().unwrap();
        assert_eq!(trial.status, TrialStatus::Concluded);
        let log: Vec<String> = store
            .trial_events("thanks-hash")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(log, ["create", "start", "conclude", "deviation"]);
        assert!(!store.metric_snapshots(trial.id).await.unwrap().is_empty());
        h.stop().await;
    })
    .await;
}
