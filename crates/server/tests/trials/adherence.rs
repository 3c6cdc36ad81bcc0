//! Schedule adherence per period (issues #12 item 2, #17): every exposure
//! a community design serves is counted per (community, period, arm
//! served), so a community served the wrong arm for part of one period
//! (here a developer's cohort override, added then removed) shows the drop
//! in that period only, on both stores.

use super::*;

/// Waits until the exposure writer has added at least `n` exposures
/// served per period of `key` (it flushes about once a second).
pub(super) async fn wait_served(db: &TestDb, key: &str, n: i64) {
    let store = db.store();
    let id = store.get_trial(key).await.unwrap().unwrap().id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let counted: i64 = store
            .period_exposures(id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.exposures)
            .sum();
        if counted >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {counted} of {n} exposures served counted after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_community_served_the_wrong_arm_for_part_of_a_period_shows_the_drop_in_that_period_only()
{
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-01-15T00:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(WEDGE).await;
        let spec: TrialSpec = parse_trial(WEDGE, "wedge.toml").unwrap();
        let schedule = stepped_wedge_schedule(&spec, seed_of(&db, "editor-wedge").await);
        let periods = spec.periods();
        let scheduled = |c: &str, k: usize| {
            let crossover = schedule.iter().find(|(x, _)| x == c).unwrap().1;
            if periods[k].start >= crossover {
                "on"
            } else {
                "off"
            }
        };
        let communities = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];
        let ctx = |c: &str| json!({"targetingKey": format!("viewer-{c}"), "community": c});
        let cohort = |method: Method, query: &str| {
            h.req(
                method,
                &format!("/api/v1/flags/new-editor/cohorts/coop-out{query}"),
                Some(&h.admin),
            )
        };
        // Three periods, every community evaluated 20 times in each (an
        // hour apart); coop-b is overridden for 5 of its 20 in period 1.
        let wrong = if scheduled("coop-b", 1) == "on" { "off" } else { "on" };
        let mut total = 0;
        for (k, period) in periods.iter().enumerate().take(3) {
            for i in 0..20 {
                clock.set(DateTime::from_timestamp(period.start + 3600 * (i + 1), 0).unwrap());
                if k == 1 && i == 10 {
                    let resp = cohort(Method::PUT, "")
                        .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": wrong, "reason": "coop asked for a pause"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
                }
                if k == 1 && i == 15 {
                    let resp = cohort(Method::DELETE, "?reason=pause%20over")
                        .send()
                        .await
                        .unwrap();
                    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
                }
                for c in communities {
                    let arm = h.variant(&sdk, "new-editor", ctx(c)).await;
                    let overridden = k == 1 && (10..15).contains(&i) && c == "coop-b";
                    let want = if overridden { wrong } else { scheduled(c, k) };
                    assert_eq!(arm, want, "{c} period {k} evaluation {i}");
                    total += 1;
                }
            }
        }
        wait_served(&db, "editor-wedge", total).await;
        clock.set(at("2026-05-15T00:00:00Z"));
        let v = h.analysis("editor-wedge", "2026-05-15T00:00:00Z").await;
        let adherence = v["quality"]["adherence"].as_array().unwrap();
        assert_eq!(adherence.len(), 12, "4 communities × 3 periods: {adherence:#?}");
        for a in adherence {
            let (c, k) = (a["community"].as_str().unwrap(), a["period"].as_u64().unwrap() as usize);
            assert_eq!(a["scheduled_arm"], scheduled(c, k), "{a}");
            assert_eq!(a["exposures"], 20, "{a}");
            let served = a["served"].as_array().unwrap();
            if (c, k) == ("coop-b", 1) {
                assert_eq!(a["adherent"], 15, "{a}");
                assert_eq!(a["share"], 0.75, "{a}");
                assert_eq!(a["warning"], true, "{a}");
                let by_arm: Vec<(&str, i64)> = served
                    .iter()
                    .map(|s| (s["arm"].as_str().unwrap(), s["exposures"].as_i64().unwrap()))
                    .collect();
                let mut want = vec![(scheduled(c, k), 15), (wrong, 5)];
                want.sort();
                assert_eq!(by_arm, want, "{a}");
                // The wrong arm's exposures span the override's five hours.
                let w = served.iter().find(|s| s["arm"] == wrong).unwrap();
                let first = DateTime::from_timestamp(periods[1].start + 3600 * 11, 0).unwrap();
                let last = DateTime::from_timestamp(periods[1].start + 3600 * 15, 0).unwrap();
                assert_eq!(w["first"], json!(first), "{a}");
                assert_eq!(w["last"], json!(last), "{a}");
            } else {
                assert_eq!(a["adherent"], 20, "{a}");
                assert_eq!(a["share"], 1.0, "{a}");
                assert_eq!(a["warning"], false, "{a}");
                assert_eq!(served.len(), 1, "{a}");
            }
        }
        let warnings: Vec<&str> = v["quality"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        let adherence_warnings: Vec<&&str> =
            warnings.iter().filter(|w| w.contains("adherence")).collect();
        assert_eq!(adherence_warnings.len(), 1, "{warnings:?}");
        assert!(adherence_warnings[0].contains("coop-b period 1 is 75.0%"), "{warnings:?}");
        h.stop().await;
    })
    .await;
}
