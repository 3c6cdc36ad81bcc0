//! A concluded community-design trial is analysed from the community ×
//! period cells stored in the transaction that concluded it (issue #12):
//! events added after the conclusion, and a member erased, change the
//! rows a recomputation would give but not the concluded trial's analysis,
//! on both stores.

use super::*;
use commonlab_report::analysis::period_spans;

#[tokio::test]
async fn a_concluded_community_trial_reads_its_snapshot_not_the_events() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-01-15T00:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(WEDGE).await;
        let spec: TrialSpec = parse_trial(WEDGE, "wedge.toml").unwrap();
        let primary_metric = &spec.metrics.primary;
        let windows = spec.period_windows(primary_metric);
        let communities = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];
        // Members active in every window, a third of them (more in the
        // later periods) contributing.
        let mut rng = Rng(7);
        let mut events = Vec::new();
        for c in communities {
            for w in &windows {
                for i in 0..12 {
                    let id = format!("member-{c}-{i}");
                    let t = DateTime::from_timestamp(w.start + 3600 * (i + 1), 0).unwrap();
                    events.push(ev(rng.next(), &id, c, "session_started", t, json!({})));
                    if (i + i64::from(w.period)) % 3 == 0 {
                        let t = t + chrono::Duration::minutes(5);
                        events.push(ev(rng.next(), &id, c, "contribution_created", t, json!({})));
                    }
                }
            }
        }
        clock.set(at("2028-01-10T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        let before = h.analysis("editor-wedge", "2028-01-10T00:00:00Z").await;
        let primary = metric(&before, &primary_metric.name);
        assert_eq!(primary["source"], "database", "{primary}");
        assert_eq!(
            primary["estimates"].as_array().unwrap().len(),
            1,
            "{primary}"
        );

        let resp = h
            .post(
                "/api/v1/trials/editor-wedge/conclude",
                json!({"reason": "done"}),
            )
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );
        let concluded = h.analysis("editor-wedge", "2028-01-10T00:00:00Z").await;
        let snapshot = metric(&concluded, &primary_metric.name).clone();
        assert_eq!(snapshot["source"], "snapshot", "{snapshot}");
        assert_eq!(snapshot["estimates"], primary["estimates"]);
        assert_eq!(snapshot["n"], primary["n"]);

        // After the conclusion: new contributors in coop-b's windows, and
        // a member of wiki-a erased.
        let mut late = Vec::new();
        for w in &windows {
            for i in 0..8 {
                let id = format!("late-coop-b-{i}");
                let t = DateTime::from_timestamp(w.start + 7200, 0).unwrap();
                late.push(ev(
                    rng.next(),
                    &id,
                    "coop-b",
                    "contribution_created",
                    t,
                    json!({}),
                ));
            }
        }
        h.send_all(&sdk, &late).await;
        let resp = h
            .req(
                Method::DELETE,
                "/api/v1/units/member-wiki-a-0?reason=member%20asked",
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());

        // A recomputation would now differ ...
        let record = db.store().get_trial("editor-wedge").await.unwrap().unwrap();
        let stored = db.store().metric_snapshots(record.id).await.unwrap();
        let kept = stored
            .iter()
            .find(|s| s.metric == primary_metric.name)
            .and_then(|s| s.communities.clone())
            .expect("the community cells stored at conclusion");
        let (closed, _) = period_spans(&spec, primary_metric, stored[0].as_of);
        let list: Vec<String> = communities.iter().map(|c| c.to_string()).collect();
        let now = db
            .store()
            .community_period_cells(primary_metric, &list, &closed)
            .await
            .unwrap();
        assert_ne!(now, kept, "the late events and the erasure change the rows");
        // ... the concluded trial's analysis does not.
        let after = h.analysis("editor-wedge", "2028-01-10T00:00:00Z").await;
        for m in concluded["metrics"].as_array().unwrap() {
            let name = m["name"].as_str().unwrap();
            let a = metric(&after, name);
            assert_eq!(a["estimates"], m["estimates"], "{name}");
            assert_eq!(a["n"], m["n"], "{name}");
            assert_eq!(a["source"], "snapshot", "{name}");
        }
        h.stop().await;
    })
    .await;
}
