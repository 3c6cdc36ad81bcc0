//! Every design analysed end to end from stored data, on both stores: a
//! seeded synthetic trial (members evaluated through OFREP at an injected
//! clock, events through `POST /v1/events`, a known effect), analysed by
//! `GET /api/v1/trials/{key}/analysis` (the pipeline `commonlab analyze
//! --trial` runs), against the same rows computed here from what the test
//! sent and run through the statistics engine (itself checked against
//! scipy, statsmodels and clubSandwich in `crates/stats/reference/`):
//! estimate, standard error and p-values agree to 1e-9. The two example
//! trials (`experiments/thanks-button.toml`, blocked with 3 arms, and
//! `experiments/value-dashboard.toml`, stepped wedge) run as shipped.

use super::*;
use chrono::DateTime;
use commonlab_core::experiments::{cluster_allocation, stepped_wedge_schedule, TrialSpec};
use commonlab_report::analysis::rows_design;
use commonlab_stats::cuped_strata::{within_strata, StratumRow};
use commonlab_stats::rows::{analyze_rows, DesignKind, Row, RowsInput, RowsOutput};

const EXAMPLE_FLAGS: &str = include_str!("../../../../experiments/flags.json");
const THANKS: &str = include_str!("../../../../experiments/thanks-button.toml");
const DASHBOARD: &str = include_str!("../../../../experiments/value-dashboard.toml");

/// splitmix64: a seeded generator that needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_close(what: &str, got: &Value, want: f64) {
    let g = got
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {got} is not a number"));
    assert!(close(g, want), "{what}: got {g}, want {want}");
}

fn ev(
    id: u64,
    unit: &str,
    community: &str,
    name: &str,
    ts: chrono::DateTime<chrono::Utc>,
    props: Value,
) -> Value {
    json!({
        "event_id": uuid::Uuid::from_u128(u128::from(id) + 1).to_string(),
        "unit": unit,
        "community": community,
        "name": name,
        "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "properties": props,
    })
}

impl Harness {
    async fn import_examples(&self) {
        let resp = self
            .req(
                Method::POST,
                "/api/v1/import?reason=examples",
                Some(&self.admin),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(EXAMPLE_FLAGS)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        crate::events::openapi::assert_documented(&Method::POST, "/api/v1/import", status, &body);
    }

    /// Posts events in batches (within the test body limit); all stored.
    async fn send_all(&self, sdk: &str, events: &[Value]) {
        for chunk in events.chunks(120) {
            let resp = self
                .req(Method::POST, "/v1/events", Some(sdk))
                .json(&chunk)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, StatusCode::OK, "{v}");
            assert_eq!(v["stored"].as_u64(), Some(chunk.len() as u64), "{v}");
        }
    }

    async fn variant(&self, sdk: &str, flag: &str, ctx: Value) -> String {
        let (status, body) = self.eval(sdk, flag, ctx).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        parse(&body)["variant"].as_str().unwrap().to_string()
    }

    async fn analysis(&self, key: &str, as_of: &str) -> Value {
        let resp = self
            .req(
                Method::GET,
                &format!("/api/v1/trials/{key}/analysis?as_of={as_of}"),
                Some(&self.admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = resp.json().await.unwrap();
        // Every analysis the tests make is what the OpenAPI document says.
        let doc: Value = serde_json::from_str(crate::events::openapi::file()).unwrap();
        let schema = crate::events::openapi::response_schema(
            &doc,
            "/api/v1/trials/{key}/analysis",
            "get",
            200,
            "application/json",
        );
        let errors = crate::events::openapi::Checker { doc: &doc }.check(schema, &v, "");
        assert!(errors.is_empty(), "{errors:?}");
        v
    }
}

async fn seed_of(db: &TestDb, key: &str) -> u64 {
    db.store()
        .get_trial(key)
        .await
        .unwrap()
        .unwrap()
        .seed
        .unwrap() as u64
}

fn metric<'v>(v: &'v Value, name: &str) -> &'v Value {
    v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {v}"))
}

fn estimate<'v>(m: &'v Value, arm: &str) -> &'v Value {
    m["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["arm"] == arm)
        .unwrap_or_else(|| panic!("{arm} in {m}"))
}

fn beside<'v>(e: &'v Value, method: &str) -> &'v Value {
    e["beside"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["method"] == method)
        .unwrap_or_else(|| panic!("{method} in {e}"))
}

/// The community-design checks: the lead is randomisation inference, with
/// CR2 and (stepped wedge) the wild cluster bootstrap beside it.
fn assert_community(e: &Value, want: &RowsOutput) {
    assert_eq!(e["method"], "randomisation", "{e}");
    assert_close("estimate", &e["estimate"], want.estimate);
    let ri = want.randomisation.result.as_ref().unwrap();
    assert_close("randomisation p", &e["p_value"], ri.p_value);
    assert_close(
        "min attainable p",
        &e["min_attainable_p"],
        ri.min_attainable_p,
    );
    let cr2 = want.cr2.as_ref().unwrap().result.as_ref().unwrap();
    assert_close("CR2 se", &e["se"], cr2.se);
    assert_close("CR2 p", &beside(e, "cr2")["p_value"], cr2.p_value);
    let wild = want
        .wild_bootstrap
        .as_ref()
        .unwrap()
        .result
        .as_ref()
        .unwrap();
    assert_close(
        "wild bootstrap p",
        &beside(e, "wild_cluster_bootstrap")["p_value"],
        wild.p_value,
    );
}

/// The example blocked trial, 3 arms: each treatment arm against control
/// within communities (2 comparisons, never pooled), Holm over them.
#[tokio::test]
async fn blocked_example_trial_each_arm_against_control() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2027-01-15T09:00:00Z").await;
        h.import_examples().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(THANKS).await;
        let key = &h.server.state.config.study_key;
        let communities = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];
        let mut rng = Rng(12);
        let mut members = Vec::new(); // (pseudonym, community, arm, contributed, contributed before)
        let mut events = Vec::new();
        let base = at("2027-01-15T09:00:00Z");
        for (c, community) in communities.iter().enumerate() {
            for i in 0..24 {
                let id = format!("m-{c}-{i}");
                let now = base + chrono::Duration::minutes((c * 24 + i) as i64);
                clock.set(now);
                let ctx = json!({"targetingKey": id, "community": community, "role": "member", "lastActiveAt": now.timestamp() - 86_400});
                let arm = h.variant(&sdk, "thanks-button", ctx).await;
                let p = match arm.as_str() {
                    "control" => 0.3,
                    "heart" => 0.5,
                    _ => 0.7,
                };
                let contributed = rng.chance(p);
                // In the 28 days before exposure (the primary metric's CUPED
                // covariate): more likely for those who contribute after.
                let before = rng.chance(if contributed { 0.7 } else { 0.2 });
                if before {
                    events.push(ev(rng.next(), &id, community, "contribution_created", now - chrono::Duration::days(5), json!({})));
                }
                if contributed {
                    events.push(ev(rng.next(), &id, community, "contribution_created", now + chrono::Duration::days(2), json!({"self_reply": false})));
                    for _ in 0..rng.below(3) {
                        events.push(ev(rng.next(), &id, community, "reply_created", now + chrono::Duration::days(3), json!({"self_reply": false})));
                    }
                }
                // Outside the window: never counted.
                events.push(ev(rng.next(), &id, community, "contribution_created", now + chrono::Duration::days(29), json!({})));
                if rng.chance(0.3) {
                    events.push(ev(rng.next(), &id, community, "thanks_given", now + chrono::Duration::days(1), json!({})));
                }
                members.push((pseudonymise(key, &id).into_string(), *community, arm, contributed, before));
            }
        }
        h.wait_exposed("thanks-button", 96).await;
        clock.set(at("2027-03-01T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        let v = h.analysis("thanks-button", "2027-03-01T00:00:00Z").await;
        assert_eq!(v["design"], "blocked", "{v}");
        assert!(v["notice"].is_null(), "{v}");
        let seed = seed_of(&db, "thanks-button").await;
        // The same rows, computed here: ordered by pseudonym, as stored.
        members.sort();
        let primary = metric(&v, "repeat_contribution_28d");
        assert_eq!(primary["estimates"].as_array().unwrap().len(), 2, "{primary}");
        for arm in ["heart", "banner"] {
            let rows: Vec<Row> = members
                .iter()
                .filter(|m| m.2 == "control" || m.2 == arm)
                .map(|m| Row {
                    cluster: format!("[\"{}\"]", m.1),
                    period: None,
                    arm: Some(m.2.clone()),
                    treated: None,
                    value: if m.3 { 1.0 } else { 0.0 },
                    covariate: None,
                    stratum: None,
                })
                .collect();
            let want = analyze_rows(&RowsInput {
                rows,
                design: rows_design(DesignKind::BlockedUsers, "control", Some(seed)),
            })
            .unwrap();
            let e = estimate(primary, arm);
            assert_eq!(e["control"], "control");
            // The metric's covariate (contributions in the 28 days before
            // exposure) is used within strata: CUPED leads (#12).
            let strata: Vec<(String, bool, f64, f64)> = members
                .iter()
                .filter(|m| m.2 == "control" || m.2 == arm)
                .map(|m| (format!("[\"{}\"]", m.1), m.2 == arm, f64::from(u8::from(m.3)), f64::from(u8::from(m.4))))
                .collect();
            let cuped = within_strata(
                commonlab_stats::effects::MetricKind::Proportion,
                &strata.iter().map(|r| StratumRow { stratum: &r.0, treated: r.1, y: r.2, x: r.3 }).collect::<Vec<_>>(),
            )
            .unwrap();
            assert!(cuped.theta > 0.0, "{cuped:?}");
            assert_eq!(e["method"], "cuped_within_strata", "{e}");
            assert_close("CUPED estimate", &e["estimate"], cuped.estimate);
            assert_close("CUPED se", &e["se"], cuped.se);
            assert_close("CUPED p", &e["p_value"], cuped.p_value);
            assert_close("CUPED ci low", &e["ci95"][0], cuped.ci95[0]);
            // Beside it, without the covariate: the permutation test and the
            // post-stratified t-test.
            let unadjusted = beside(e, "stratified_permutation");
            assert_close("estimate", &unadjusted["estimate"], want.estimate);
            let post = want.post_stratified.as_ref().unwrap().result.as_ref().unwrap();
            assert_close("se", &unadjusted["se"], post.se);
            assert_close("post-stratified p", &beside(e, "post_stratified")["p_value"], post.p_value);
            let perm = want.randomisation.result.as_ref().unwrap();
            assert_close("permutation p", &unadjusted["p_value"], perm.p_value);
            assert!(want.estimate > 0.0, "the known effect shows: {}", want.estimate);
            assert!(cuped.se < post.se, "the covariate removes variance: {} vs {}", cuped.se, post.se);
        }
        // Holm over the two primary comparisons; secondary uncorrected.
        let c = &v["comparisons"];
        assert_eq!(c["correction"], "holm");
        let ps: Vec<f64> = c["primary"].as_array().unwrap().iter().map(|x| x["p_value"].as_f64().unwrap()).collect();
        let adjusted = commonlab_stats::multiple::holm(&ps).unwrap();
        for (x, a) in c["primary"].as_array().unwrap().iter().zip(adjusted) {
            assert_close("holm", &x["adjusted_p_value"], a);
        }
        assert!(c["others"].as_array().unwrap().iter().all(|x| x["correction"] == "uncorrected"));
        // Every metric of the example analyses to a result.
        for m in v["metrics"].as_array().unwrap() {
            assert_eq!(m["estimates"].as_array().unwrap().len(), 2, "{m}");
        }
        assert!(["ship", "iterate", "roll_back", "inconclusive"].contains(&v["decision"]["outcome"].as_str().unwrap()));
        assert!(v["quality"]["srm"]["p_value"].is_number(), "{v}");
        assert_eq!(v["quality"]["adherence"], json!([]));
        h.stop().await;
    })
    .await;
}

/// The example stepped wedge: community × period rows, community and
/// period fixed effects, randomisation inference over every order.
#[tokio::test]
async fn stepped_wedge_example_trial_from_stored_data() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2027-01-20T00:00:00Z").await;
        h.import_examples().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(DASHBOARD).await;
        let spec: TrialSpec = parse_trial(DASHBOARD, "value-dashboard.toml").unwrap();
        // Before the schedule starts: nothing, and why.
        let v = h.analysis("value-dashboard", "2027-01-25T00:00:00Z").await;
        assert!(
            v["notice"]
                .as_str()
                .unwrap()
                .contains("starts at 2027-02-01"),
            "{v}"
        );
        assert_eq!(v["decision"]["outcome"], "inconclusive");
        let seed = seed_of(&db, "value-dashboard").await;
        let schedule = stepped_wedge_schedule(&spec, seed);
        let crossover = |c: &str| schedule.iter().find(|(x, _)| x == c).unwrap().1;
        let periods = spec.periods();
        let windows = spec.period_windows(&spec.metrics.primary);
        assert_eq!(periods.len(), 5);
        // Each community evaluated once per period.
        for p in &periods {
            clock.set(DateTime::from_timestamp(p.start + 3600, 0).unwrap());
            for c in ["wiki-a", "coop-b", "social-c", "hackerspace-d"] {
                let arm = h
                    .variant(
                        &sdk,
                        "value-dashboard",
                        json!({"targetingKey": format!("viewer-{c}"), "community": c}),
                    )
                    .await;
                let want = if p.start >= crossover(c) { "on" } else { "off" };
                assert_eq!(arm, want, "{c} in period {}", p.index);
            }
        }
        // Members: active in a period's window with probability 0.8,
        // contributing with 0.25 + 0.2 when treated + a community level.
        let mut rng = Rng(99);
        let mut events = Vec::new();
        let mut want_rows: Vec<(String, i64, bool, f64, f64)> = Vec::new(); // community, period, treated, active, contributed
        for (ci, c) in ["coop-b", "hackerspace-d", "social-c", "wiki-a"]
            .iter()
            .enumerate()
        {
            for w in &windows {
                let treated = periods[w.period as usize].start >= crossover(c);
                let (mut active, mut contributed) = (0.0, 0.0);
                for i in 0..25 {
                    if !rng.chance(0.8) {
                        continue;
                    }
                    let id = format!("member-{c}-{i}");
                    let t = DateTime::from_timestamp(w.start + rng.below(20 * 86_400) as i64, 0)
                        .unwrap();
                    events.push(ev(rng.next(), &id, c, "session_started", t, json!({})));
                    active += 1.0;
                    if rng.chance(0.25 + 0.05 * ci as f64 + if treated { 0.2 } else { 0.0 }) {
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
                    // Before the period's window: not counted.
                    events.push(ev(
                        rng.next(),
                        &id,
                        c,
                        "contribution_created",
                        DateTime::from_timestamp(w.start - 3600, 0).unwrap(),
                        json!({}),
                    ));
                }
                want_rows.push((
                    c.to_string(),
                    i64::from(w.period),
                    treated,
                    active,
                    contributed,
                ));
            }
        }
        // Two members seen in two communities: left out and counted.
        for (i, (a, b)) in [("wiki-a", "coop-b"), ("social-c", "wiki-a")]
            .iter()
            .enumerate()
        {
            let id = format!("wanderer-{i}");
            let t = DateTime::from_timestamp(windows[1].start + 86_400, 0).unwrap();
            events.push(ev(rng.next(), &id, a, "contribution_created", t, json!({})));
            events.push(ev(rng.next(), &id, b, "session_started", t, json!({})));
        }
        clock.set(at("2027-07-02T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        adherence::wait_served(&db, "value-dashboard", 20).await;
        let v = h.analysis("value-dashboard", "2027-07-02T00:00:00Z").await;
        assert_eq!(v["design"], "stepped_wedge");
        let primary = metric(&v, "weekly_contributor_share");
        assert!(
            primary["notice"]
                .as_str()
                .unwrap()
                .contains("2 members were seen in two"),
            "{primary}"
        );
        let rows: Vec<Row> = want_rows
            .iter()
            .filter(|r| r.3 > 0.0)
            .map(|r| Row {
                cluster: r.0.clone(),
                period: Some(r.1),
                arm: Some(if r.2 { "on" } else { "off" }.into()),
                treated: None,
                value: r.4 / r.3,
                covariate: None,
                stratum: None,
            })
            .collect();
        assert_eq!(rows.len(), 20);
        let want = analyze_rows(&RowsInput {
            rows,
            design: rows_design(DesignKind::SteppedWedge, "off", Some(seed)),
        })
        .unwrap();
        assert!(
            want.model.contains("cluster FE") && want.model.contains("period FE"),
            "{}",
            want.model
        );
        let e = estimate(primary, "on");
        assert_community(e, &want);
        assert!(beside(e, "ibragimov_muller")["p_value"].is_number(), "{e}");
        assert!(want.estimate > 0.0);
        // Every metric of the example analyses to a result.
        for m in v["metrics"].as_array().unwrap() {
            assert_eq!(m["estimates"].as_array().unwrap().len(), 1, "{m}");
        }
        // Quality: no SRM for a community design; adherence per community
        // and period (every exposure followed the schedule).
        assert!(v["quality"]["srm"].is_null());
        let adherence = v["quality"]["adherence"].as_array().unwrap();
        assert_eq!(
            adherence.len(),
            20,
            "every community in every period: {adherence:?}"
        );
        assert!(adherence
            .iter()
            .all(|a| a["share"] == 1.0 && a["warning"] == false));
        // BH over the one primary comparison: the p-value itself.
        assert_eq!(v["comparisons"]["correction"], "bh");
        assert_close(
            "bh",
            &v["comparisons"]["primary"][0]["adjusted_p_value"],
            want.randomisation.result.as_ref().unwrap().p_value,
        );
        h.stop().await;
    })
    .await;
}

const CLUSTER: &str = r#"
key = "cluster-dashboard"
title = "Dashboard, communities randomised once"
hypothesis = "h"
owner = "o"
flag = "value-dashboard"

[links]
wp2_parameter = "visibility_of_contribution"
wp3_feature = "value-metrics-dashboard"

[[arms]]
variant = "off"
weight = 1
control = true

[[arms]]
variant = "on"
weight = 1

[unit]
kind = "community"
attribute = "community"

[design]
kind = "cluster"
communities = ["c1", "c2", "c3", "c4", "c5", "c6"]

[metrics.primary]
name = "contributions"
kind = "count"
events = ["contribution_created"]
direction = "increase"
period_window = "14d"

[analysis]
alpha = 0.05
sidedness = "two-sided"
mde = 0.1
horizon = "fixed"
correction = "none"

[analysis.decision]
ship = "s"
iterate = "i"
roll_back = "r"

[schedule]
start = 2027-01-01T00:00:00Z
end = 2027-02-01T00:00:00Z
"#;

/// A cluster design: community-level rows, randomisation inference over
/// the C(6, 3) allocations, CR2 beside it.
#[tokio::test]
async fn cluster_trial_at_the_community_level() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-12-20T00:00:00Z").await;
        h.import_examples().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(CLUSTER).await;
        let spec = parse_trial(CLUSTER, "cluster.toml").unwrap();
        let seed = seed_of(&db, "cluster-dashboard").await;
        let allocation = cluster_allocation(&spec, seed);
        clock.set(at("2027-01-02T00:00:00Z"));
        for (c, arm) in &allocation {
            let got = h
                .variant(
                    &sdk,
                    "value-dashboard",
                    json!({"targetingKey": "v", "community": c}),
                )
                .await;
            assert_eq!(&got, &arm.variant);
        }
        // Nothing closed yet: n is 0, and why.
        let v = h
            .analysis("cluster-dashboard", "2027-01-10T00:00:00Z")
            .await;
        assert!(
            v["notice"]
                .as_str()
                .unwrap()
                .contains("closes at 2027-02-01"),
            "{v}"
        );
        let window_start = at("2027-01-18T00:00:00Z");
        let mut rng = Rng(3);
        let mut events = Vec::new();
        let mut rows = Vec::new();
        for (c, arm) in &allocation {
            let treated = !arm.control;
            let (mut members, mut total) = (0.0, 0.0);
            for i in 0..20 {
                let id = format!("{c}-m{i}");
                let t = window_start + chrono::Duration::hours(rng.below(300) as i64);
                events.push(ev(rng.next(), &id, c, "session_started", t, json!({})));
                members += 1.0;
                let k = rng.below(3) + u64::from(treated) * rng.below(3);
                for _ in 0..k {
                    events.push(ev(rng.next(), &id, c, "contribution_created", t, json!({})));
                }
                total += k as f64;
            }
            rows.push(Row {
                cluster: c.clone(),
                period: Some(0),
                arm: Some(arm.variant.clone()),
                treated: None,
                value: total / members,
                covariate: None,
                stratum: None,
            });
        }
        clock.set(at("2027-02-02T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        let v = h
            .analysis("cluster-dashboard", "2027-02-02T00:00:00Z")
            .await;
        assert_eq!(v["design"], "cluster");
        let want = analyze_rows(&RowsInput {
            rows,
            design: rows_design(DesignKind::Cluster, "off", Some(seed)),
        })
        .unwrap();
        let ri = want.randomisation.result.as_ref().unwrap();
        assert_eq!(ri.total_assignments, 20);
        assert!(ri.exact);
        let m = metric(&v, "contributions");
        assert_eq!(m["n"]["on"], 3);
        assert_community(estimate(m, "on"), &want);
        h.stop().await;
    })
    .await;
}

/// A hash design: per-arm sufficient statistics, Welch's t-test when
/// there is nothing to adjust for, checked against Welch computed here.
#[tokio::test]
async fn hash_trial_welch_from_stored_data() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(HASH).await;
        let mut rng = Rng(41);
        let mut values: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        let mut events = Vec::new();
        for i in 0..90 {
            let id = format!("member-{i}");
            let arm = h
                .variant(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": id, "community": "wiki-a"}),
                )
                .await;
            let p = if arm == "control" { 0.3 } else { 0.55 };
            let y = rng.chance(p);
            if y {
                events.push(ev(
                    rng.next(),
                    &id,
                    "wiki-a",
                    "contribution_created",
                    at("2026-06-03T12:00:00Z"),
                    json!({}),
                ));
            }
            values
                .entry(arm)
                .or_default()
                .push(if y { 1.0 } else { 0.0 });
        }
        h.wait_exposed("thanks-hash", 90).await;
        clock.set(at("2026-07-01T00:00:00Z"));
        h.send_all(&sdk, &events).await;
        let v = h.analysis("thanks-hash", "2026-07-01T00:00:00Z").await;
        let m = metric(&v, "repeat_contribution_28d");
        // A proportion's variance is p(1 − p) (docs/analyze.md), the
        // degrees of freedom Welch–Satterthwaite's.
        let moments = |v: &[f64]| {
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            (n, mean, mean * (1.0 - mean))
        };
        let (n0, m0, v0) = moments(&values["control"]);
        for arm in ["small", "big"] {
            let (n1, m1, v1) = moments(&values[arm]);
            let se = (v1 / n1 + v0 / n0).sqrt();
            let df = (v1 / n1 + v0 / n0).powi(2)
                / ((v1 / n1).powi(2) / (n1 - 1.0) + (v0 / n0).powi(2) / (n0 - 1.0));
            let p = 2.0 * commonlab_stats::dist::t_sf(((m1 - m0) / se).abs(), df);
            let e = estimate(m, arm);
            assert_eq!(e["method"], "welch", "{e}");
            assert_close("estimate", &e["estimate"], m1 - m0);
            assert_close("se", &e["se"], se);
            assert_close("p", &e["p_value"], p);
        }
        assert!(v["quality"]["srm"]["p_value"].is_number());
        h.stop().await;
    })
    .await;
}

#[path = "switchback.rs"]
mod switchback;

#[path = "adherence.rs"]
mod adherence;

#[path = "concluded.rs"]
mod concluded;
