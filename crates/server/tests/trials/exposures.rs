//! Issue 10, item 14: a first exposure is never lost silently. A unit
//! counts as seen only once its exposure is written; an exposure the
//! database refuses is left out of its batch (the others are written),
//! counted and logged; at shutdown what cannot be written is counted and
//! logged.

use super::*;
use commonlab_server::trials::{run_writer, Decision, ExposureSink, RunningTrial};
use commonlab_store::ExposureSource;
use std::sync::Arc;

/// Makes the database refuse exposures of `unit`, as a constraint would.
async fn refuse_exposures_of(db: &TestDb, unit: &str) {
    let sql = match db.backend() {
        commonlab_store::Backend::Sqlite => format!(
            "CREATE TRIGGER refuse_unit BEFORE INSERT ON exposures WHEN NEW.unit = '{unit}' \
             BEGIN SELECT RAISE(ABORT, 'unit refused'); END"
        ),
        commonlab_store::Backend::Postgres => format!(
            "CREATE FUNCTION refuse_unit() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.unit = '{unit}' THEN \
             RAISE EXCEPTION 'unit refused' USING ERRCODE = 'check_violation'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_unit BEFORE INSERT ON exposures \
             FOR EACH ROW EXECUTE FUNCTION refuse_unit()"
        ),
    };
    db.execute_raw(&sql).await.unwrap();
}

async fn accept_exposures_again(db: &TestDb) {
    let sql = match db.backend() {
        commonlab_store::Backend::Sqlite => "DROP TRIGGER refuse_unit",
        commonlab_store::Backend::Postgres => "DROP TRIGGER refuse_unit ON exposures",
    };
    db.execute_raw(sql).await.unwrap();
}

#[tokio::test]
async fn a_refused_exposure_is_counted_and_recorded_when_the_unit_comes_back() {
    both_backends(|db| async move {
        let (h, _) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await;
        let sdk = h.key(Role::Sdk).await;
        let refused = pseudonymise(&h.server.state.config.study_key, "member-p");
        refuse_exposures_of(&db, refused.as_str()).await;
        for member in ["member-p", "member-q", "member-r"] {
            let ctx = json!({"targetingKey": member, "community": "wiki-a"});
            assert_eq!(h.eval(&sdk, "thanks-button", ctx).await.0, StatusCode::OK);
        }
        // The others are written although one of their batch was refused.
        h.wait_exposed("thanks-hash", 2).await;
        let sink = &h.server.state.exposures;
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.dropped() < 1 {
            assert!(Instant::now() < deadline, "the refusal was never counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Not marked as seen: once the database takes it, the unit's next
        // evaluation records it.
        accept_exposures_again(&db).await;
        let ctx = json!({"targetingKey": "member-p", "community": "wiki-a"});
        assert_eq!(h.eval(&sdk, "thanks-button", ctx).await.0, StatusCode::OK);
        h.wait_exposed("thanks-hash", 3).await;
        assert_eq!(sink.dropped(), 1);
        // Both at /metrics.
        h.wait_metric("commonlab_exposures_logged_total", 3.0).await;
        assert_eq!(h.metric("commonlab_exposures_dropped_total").await, 1.0);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unwritten_exposures_are_sent_again_and_counted_when_dropped_at_shutdown() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(HASH).await;
        let record = db.store().get_trial("thanks-hash").await.unwrap().unwrap();
        let trial = Arc::new(RunningTrial::from_record(&record).unwrap());
        let key = h.server.state.config.study_key.clone();
        h.stop().await;

        // A writer whose store is gone: it keeps every exposure until the
        // shutdown, then counts what it could not write.
        let sink = ExposureSink::default();
        let rx = sink.take_receiver().unwrap();
        let gone = db.connect_another().await;
        gone.close().await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let writer = tokio::spawn(run_writer(gone, key, sink.clone(), rx, stopped));
        for unit in ["u0", "u1", "u0", "u2"] {
            let d = Decision {
                trial: trial.clone(),
                arm: "control".into(),
                unit_id: unit.into(),
                community: Some("wiki-a".into()),
                excluded_reason: None,
            };
            // u0 again: not written yet, so not seen, so sent again.
            sink.record(&d, ExposureSource::Single, clock.now()).await;
        }
        stop.send(true).unwrap();
        writer.await.unwrap();
        assert_eq!(sink.dropped(), 4);
    })
    .await;
}
