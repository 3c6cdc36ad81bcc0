//! The example switchback (`experiments/thanks-button-switchback.toml`,
//! 4 communities × 8 weeks, balanced, one-day washout) end to end on both
//! stores: the grid recorded at start is the seed's, shown by the trial
//! route, served over OFREP per the clock (in the washout too), the bulk
//! ETag expiring at the next switch; members' events through `POST
//! /v1/events` with a known effect (and events in the washouts, which
//! must not count); the analysis agrees to 1e-9 with the rows computed
//! here run through `stats::switchback`.

use super::*;
use commonlab_core::experiments::switchback_schedule;
use commonlab_stats::switchback::{analyze_switchback, Cell, Scheme, SwitchbackInput};

const SWITCHBACK: &str = include_str!("../../../../experiments/thanks-button-switchback.toml");
const KEY: &str = "thanks-button-switchback";

#[tokio::test]
async fn switchback_example_served_by_the_clock_and_analysed_from_stored_data() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2027-03-10T00:00:00Z").await;
        h.import_examples().await;
        let sdk = h.key(Role::Sdk).await;
        let started = h.create_and_start(SWITCHBACK).await;
        let spec: TrialSpec = parse_trial(SWITCHBACK, "thanks-button-switchback.toml").unwrap();
        let seed = seed_of(&db, KEY).await;
        let grid = switchback_schedule(&spec, seed).unwrap();
        // The recorded grid is the seed's (every replica serves it).
        let recorded: Value =
            serde_json::from_str(started["allocation"].as_str().unwrap()).unwrap();
        for (c, on) in grid.communities.iter().zip(&grid.on) {
            let row = recorded["grid"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["community"] == c.as_str())
                .unwrap();
            assert_eq!(row["on"], json!(on), "{c}");
        }
        // Balanced: two of four on in every week.
        for k in 0..8 {
            assert_eq!(grid.on.iter().filter(|r| r[k]).count(), 2);
        }
        // Shown as a grid.
        let shown = h.shown(KEY).await;
        let view = &shown["schedule"]["switchback"];
        assert_eq!(view["scheme"], "balanced", "{shown}");
        assert_eq!(view["washout"], "1d");
        assert_eq!(view["periods"].as_array().unwrap().len(), 8);
        assert_eq!(view["grid"][0]["community"], grid.communities[0].as_str());
        assert_eq!(view["grid"][0]["on"], json!(grid.on[0]));
        // Before the first period: the flag's own answer, no exposure.
        let ctx = |c: &str| json!({"targetingKey": format!("viewer-{c}"), "community": c});
        let (_, body) = h.eval(&sdk, "thanks-button", ctx("wiki-a")).await;
        assert_eq!(
            parse(&body)["reason"],
            "SPLIT",
            "the flag's own fractional split: {body}"
        );
        // Each period, in its washout: the week's arm.
        let periods = spec.periods();
        for p in &periods {
            clock.set(DateTime::from_timestamp(p.start + 3600, 0).unwrap());
            for c in &grid.communities {
                let arm = h.variant(&sdk, "thanks-button", ctx(c)).await;
                let on = grid.on_in(c, p.index as usize).unwrap();
                assert_eq!(
                    arm,
                    if on { "heart" } else { "control" },
                    "{c} week {}",
                    p.index
                );
            }
        }
        // The bulk ETag expires at the next switch: a community whose arm
        // changes from one week to the next.
        let (c, k) = grid
            .communities
            .iter()
            .enumerate()
            .find_map(|(i, c)| {
                (0..7)
                    .find(|&k| grid.on[i][k] != grid.on[i][k + 1])
                    .map(|k| (c.clone(), k))
            })
            .unwrap();
        clock.set(DateTime::from_timestamp(periods[k].start + 7200, 0).unwrap());
        let body = json!({"context": ctx(&c)});
        let bulk = |tag: Option<String>| {
            let mut r = h
                .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
                .json(&body);
            if let Some(t) = tag {
                r = r.header(header::IF_NONE_MATCH, t);
            }
            r.send()
        };
        let resp = bulk(None).await.unwrap();
        let before = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        clock.set(DateTime::from_timestamp(periods[k].end - 1, 0).unwrap());
        assert_eq!(
            bulk(Some(before.clone())).await.unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        clock.set(DateTime::from_timestamp(periods[k].end, 0).unwrap());
        let resp = bulk(Some(before.clone())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(resp.headers()[header::ETAG].to_str().unwrap(), before);

        // Members: active in a week's window (after the washout) with
        // probability 0.8, contributing with 0.25 + a community level +
        // 0.2 in the weeks their community is on. Events in the washout
        // are sent too and must not count.
        let windows = spec.period_windows(&spec.metrics.primary);
        assert!(windows
            .iter()
            .zip(&periods)
            .all(|(w, p)| w.start == p.start + 86_400));
        let mut rng = Rng(2027);
        let mut events = Vec::new();
        let mut cells = Vec::new();
        for (ci, c) in grid.communities.iter().enumerate() {
            for w in &windows {
                let k = w.period as usize;
                let on = grid.on[ci][k];
                let (mut active, mut contributed) = (0.0, 0.0);
                for i in 0..20 {
                    let id = format!("member-{c}-{i}");
                    // In the washout: neither active nor contributing.
                    let washout = DateTime::from_timestamp(w.start - 3600, 0).unwrap();
                    events.push(ev(
                        rng.next(),
                        &format!("washout-{c}-{k}-{i}"),
                        c,
                        "contribution_created",
                        washout,
                        json!({}),
                    ));
                    if !rng.chance(0.8) {
                        continue;
                    }
                    let t = DateTime::from_timestamp(w.start + rng.below(5 * 86_400) as i64, 0)
                        .unwrap();
                    events.push(ev(rng.next(), &id, c, "session_started", t, json!({})));
                    active += 1.0;
                    if rng.chance(0.25 + 0.05 * ci as f64 + if on { 0.2 } else { 0.0 }) {
                        events.push(ev(
                            rng.next(),
                            &id,
                            c,
                            "contribution_created",
                            t + chrono::Duration::hours(1),
                            json!({}),
                        ));
                        contributed += 1.0;
                    }
                }
                if active > 0.0 {
                    cells.push(Cell {
                        community: ci,
                        period: k,
                        value: contributed / active,
                    });
                }
            }
        }
        clock.set(at("2027-05-11T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        super::adherence::wait_served(&db, KEY, 32).await;
        let v = h.analysis(KEY, "2027-05-11T00:00:00Z").await;
        assert_eq!(v["design"], "switchback");
        let primary = metric(&v, "weekly_contributor_share");
        let n: i64 = primary["n"]
            .as_object()
            .unwrap()
            .values()
            .map(|x| x.as_i64().unwrap())
            .sum();
        assert_eq!(n as usize, cells.len());
        let want = analyze_switchback(&SwitchbackInput {
            communities: 4,
            periods: 8,
            cells,
            on: grid.on.clone(),
            scheme: Scheme::Balanced,
            max_enumerate: 100_000,
            draws: 100_000,
            seed,
        })
        .unwrap();
        let e = estimate(primary, "heart");
        assert_eq!(e["method"], "randomisation", "{e}");
        assert_close("estimate", &e["estimate"], want.estimate);
        assert_close("randomisation p", &e["p_value"], want.randomisation.p_value);
        assert_close(
            "min attainable p",
            &e["min_attainable_p"],
            want.randomisation.min_attainable_p,
        );
        assert_close("CR2 se", &e["se"], want.cr2.se);
        assert_close("CR2 p", &beside(e, "cr2")["p_value"], want.cr2.p_value);
        // 6^8 allocations: sampled, with its Monte Carlo error stated.
        assert!(!want.randomisation.exact);
        assert!(
            e["why"]
                .as_str()
                .unwrap()
                .contains("Monte Carlo standard error"),
            "{e}"
        );
        let carry = want.carryover.as_ref().unwrap();
        assert_close(
            "carry-over difference",
            &beside(e, "carryover_difference")["estimate"],
            carry.difference.estimate,
        );
        assert_close(
            "lingering se",
            &beside(e, "carryover_lingering")["se"],
            carry.lingering.se,
        );
        // The effect is there (0.2) and a switchback can show it.
        assert!(want.estimate > 0.05, "{}", want.estimate);
        // Quality: adherence per community and period; every exposure
        // followed the grid.
        let adherence = v["quality"]["adherence"].as_array().unwrap();
        assert_eq!(adherence.len(), 32, "{adherence:?}");
        assert!(adherence.iter().all(|a| a["share"] == 1.0), "{adherence:?}");
        assert!(v["quality"]["srm"].is_null());
        h.stop().await;
    })
    .await;
}
