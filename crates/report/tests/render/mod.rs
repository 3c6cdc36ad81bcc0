//! The report rendered from seeded synthetic rows: snapshots of
//! `results.json` and the Markdown of both example trials, the HTML's
//! self-containment and validity, each design's analysis, the refusal of
//! a per-user test for community designs.

use super::fixtures::*;
use commonlab_report::analysis::{analyse, analyse_scales, StoredTrial};
use commonlab_report::document::{build, build_with, per_user_refusal, Report};
use commonlab_report::{feedback, render, verify};

fn report(t: &StoredTrial) -> Report {
    let a = analyse(t);
    build(t, &a, &history(&t.spec), &provenance())
}

/// The report with a survey wave (the server adds the scales and the
/// response to the analysis, and gives the reliability and item answers).
fn with_surveys(t: &StoredTrial) -> Report {
    let mut a = analyse(t);
    let (waves, response, input) = survey_fixture(t, 11);
    a.metrics.extend(analyse_scales(&t.spec, &waves, a.as_of));
    a.survey_response = Some(response);
    build_with(t, &a, &input, &[], &history(&t.spec), &provenance())
}

fn thanks() -> Report {
    with_surveys(&members_trial(THANKS, 7))
}

fn dashboard() -> Report {
    report(&community_trial(DASHBOARD, 42))
}

#[test]
fn thanks_button_results_json_and_markdown() {
    let r = thanks();
    let json = render::results_json(&r).unwrap();
    // Byte-identical on a re-run over the same data.
    assert_eq!(json, render::results_json(&thanks()).unwrap());
    insta::assert_snapshot!("thanks_button_results_json", json);
    insta::assert_snapshot!("thanks_button_markdown", render::markdown(&r).unwrap());
}

#[test]
fn value_dashboard_results_json_and_markdown() {
    let r = dashboard();
    let json = render::results_json(&r).unwrap();
    assert_eq!(json, render::results_json(&dashboard()).unwrap());
    insta::assert_snapshot!("value_dashboard_results_json", json);
    insta::assert_snapshot!("value_dashboard_markdown", render::markdown(&r).unwrap());
}

/// Every attribute that could make a browser fetch something.
fn external_references(doc: &scraper::Html) -> Vec<String> {
    let mut found = Vec::new();
    for el in doc
        .root_element()
        .descendants()
        .filter_map(scraper::ElementRef::wrap)
    {
        for (name, value) in el.value().attrs() {
            let fetches = matches!(
                name,
                "src" | "href" | "srcset" | "xlink:href" | "action" | "data" | "poster"
            );
            if fetches && !value.starts_with('#') {
                found.push(format!("<{} {name}=\"{value}\">", el.value().name()));
            }
        }
        if matches!(
            el.value().name(),
            "script" | "link" | "iframe" | "object" | "embed" | "img"
        ) {
            found.push(format!("<{}>", el.value().name()));
        }
    }
    found
}

#[test]
fn html_is_self_contained_and_valid() {
    for r in [thanks(), dashboard()] {
        let html = render::html(&r).unwrap();
        let doc = scraper::Html::parse_document(&html);
        assert!(
            doc.errors.is_empty(),
            "{}: parse errors {:?}",
            r.trial.key,
            doc.errors
        );
        assert_eq!(
            external_references(&doc),
            Vec::<String>::new(),
            "{}",
            r.trial.key
        );
        // No URL at all but the SVG namespace.
        let without_ns = html.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !without_ns.contains("http://") && !without_ns.contains("https://"),
            "{}",
            r.trial.key
        );
        assert!(!html.contains("url(") && !html.contains("@import"));
        // Charts carry alt text.
        let svgs = scraper::Selector::parse("svg[role=img] > title").unwrap();
        let titles: Vec<String> = doc.select(&svgs).map(|t| t.text().collect()).collect();
        assert!(
            titles.iter().any(|t| t.starts_with("Forest plot")),
            "{titles:?}"
        );
        if r.design.kind == "stepped_wedge" {
            assert!(
                titles.iter().any(|t| t == "Stepped-wedge schedule"),
                "{titles:?}"
            );
            assert!(
                titles
                    .iter()
                    .any(|t| t.starts_with("Per-community trajectories")),
                "{titles:?}"
            );
        }
        // Every section the issue asks for, in order.
        let pos = |id: &str| {
            html.find(&format!("id=\"{id}\""))
                .unwrap_or_else(|| panic!("no {id}"))
        };
        assert!(pos("summary") < pos("design"));
        assert!(pos("design") < pos("analysis"));
        assert!(pos("results") < pos("quality"));
        assert!(pos("quality") < pos("reproducibility"));
    }
    // The self-containment check can fail.
    let doc = scraper::Html::parse_document("<!DOCTYPE html><html><head><title>x</title><link rel=stylesheet href=\"https://x/y.css\"></head><body></body></html>");
    assert_eq!(external_references(&doc).len(), 2);
}

#[test]
fn each_design_picks_its_analysis() {
    let hash = with_design(THANKS, "[design]\nkind = \"hash\"\nsalt = \"s\"\n");
    let cluster = with_design(
        DASHBOARD,
        "[design]\nkind = \"cluster\"\ncommunities = [\"wiki-a\", \"coop-b\", \"social-c\", \"hackerspace-d\"]\n",
    );
    let cases = [
        (
            report(&members_trial(&hash, 3)),
            "hash",
            &["welch", "post_stratified", "cuped"][..],
        ),
        (
            thanks(),
            "blocked",
            &["stratified_permutation", "post_stratified"][..],
        ),
        (
            report(&community_trial(&cluster, 5)),
            "cluster",
            &["randomisation"][..],
        ),
        (dashboard(), "stepped_wedge", &["randomisation"][..]),
    ];
    for (r, design, methods) in cases {
        assert_eq!(r.design.kind, design);
        assert_eq!(r.analysis.design, design);
        let primary = &r.results[0];
        assert!(
            !primary.effects.is_empty(),
            "{design}: {:?}",
            primary.notice
        );
        for e in &primary.effects {
            assert!(
                methods.contains(&e.method.as_str()),
                "{design}: lead method {}",
                e.method
            );
        }
        let community = matches!(design, "cluster" | "stepped_wedge");
        // Community designs: the smallest attainable p, the honest
        // paragraph, no Bayesian per-user numbers.
        assert_eq!(r.few_communities.is_some(), community, "{design}");
        if community {
            assert!(primary.effects[0].min_attainable_p.is_some(), "{design}");
        }
        assert_eq!(r.analysis.refused.is_some(), community, "{design}");
        if community {
            assert!(primary.effects.iter().all(|e| e.chance_to_win.is_none()));
        }
        // A 3-arm member trial compares each treatment arm with control.
        if design != "cluster" && design != "stepped_wedge" {
            let arms: Vec<&str> = primary.effects.iter().map(|e| e.arm.as_str()).collect();
            assert_eq!(arms, ["heart", "banner"], "{design}");
        }
    }
}

#[test]
fn hash_design_reports_chance_to_win_and_risk() {
    let hash = with_design(THANKS, "[design]\nkind = \"hash\"\nsalt = \"s\"\n");
    let r = report(&members_trial(&hash, 3));
    let e = &r.results[0].effects[1];
    let win = e.chance_to_win.unwrap();
    assert!((0.0..=1.0).contains(&win));
    // The banner's lift of 0.15 is large: it very likely wins.
    assert!(win > 0.9, "{win}");
    assert!(e.risk.unwrap() >= 0.0);
}

#[test]
fn a_per_user_p_value_of_a_cluster_randomised_trial_is_refused() {
    let spec = commonlab_core::experiments::parse_trial(DASHBOARD, "value-dashboard.toml").unwrap();
    let why = per_user_refusal(&spec).expect("refused");
    assert!(why.starts_with("refused: trial value-dashboard randomised whole communities (stepped_wedge, 4 communities)"), "{why}");
    let cluster = with_design(
        DASHBOARD,
        "[design]\nkind = \"cluster\"\ncommunities = [\"wiki-a\", \"coop-b\", \"social-c\", \"hackerspace-d\"]\n",
    );
    let spec = commonlab_core::experiments::parse_trial(&cluster, "x.toml").unwrap();
    assert!(per_user_refusal(&spec).is_some());
    let spec = commonlab_core::experiments::parse_trial(THANKS, "thanks-button.toml").unwrap();
    assert_eq!(per_user_refusal(&spec), None);
    // The rendered report says so too.
    let md = render::markdown(&dashboard()).unwrap();
    assert!(
        md.contains("Not computed: a per-user p-value (refused:"),
        "{md}"
    );
}

#[test]
fn decision_documents_follow_the_rule() {
    let r = thanks();
    let d = feedback::decision(&r);
    assert_eq!(d.decision, r.decision.outcome);
    assert_eq!(d.feature, "gratitude-reward");
    match d.decision {
        "ship" => {
            assert_eq!(d.flag_change.action, "roll_out");
            assert_eq!(d.flag_change.variant, r.decision.arm);
        }
        "roll_back" => assert_eq!(d.flag_change.variant.as_deref(), Some("control")),
        _ => assert_eq!(d.flag_change.action, "none"),
    }
    assert_eq!(
        d.guardrails.len(),
        2 * r
            .results
            .iter()
            .filter(|m| m.role == commonlab_report::analysis::Role::Guardrail)
            .count()
    );
    let md = render::decision_markdown(&d).unwrap();
    assert!(
        md.starts_with("# Decision: gratitude-reward (thanks-button)"),
        "{md}"
    );
    insta::assert_snapshot!("thanks_button_decision_md", md);
}

#[test]
fn verify_names_the_first_number_that_changed() {
    let a: serde_json::Value =
        serde_json::from_str(&render::results_json(&thanks()).unwrap()).unwrap();
    assert_eq!(verify::compare(&a, &a.clone()), None);
    // Other data: a different seed changes the primary metric first.
    let b: serde_json::Value =
        serde_json::from_str(&render::results_json(&report(&members_trial(THANKS, 8))).unwrap())
            .unwrap();
    let m = verify::compare(&a, &b).expect("differs");
    assert!(
        m.path.starts_with("summary.") || m.path.starts_with("results"),
        "{m}"
    );
    assert!(m.to_string().contains(": the report says "), "{m}");
}

/// `wp2-parameters.json` on synthetic activity: the fields its JSON Schema
/// requires, and a `simulation` member the simulator accepts.
#[test]
fn wp2_parameters_follow_their_schema_and_feed_the_simulator() {
    use commonlab_store::{CommunityActivity, EventTypeActivity};
    let r = dashboard();
    let from = at("2027-02-01T00:00:00Z");
    let to = at("2027-07-01T00:00:00Z");
    let activity: Vec<CommunityActivity> = ["wiki-a", "coop-b"]
        .iter()
        .enumerate()
        .map(|(k, c)| CommunityActivity {
            community: (*c).into(),
            from,
            to,
            members_seen: 100 + 50 * k as i64,
            events_per_active_member: (1..=60).map(|i| 1 + (i * i) % 37).collect(),
            event_types: vec![
                EventTypeActivity {
                    name: "contribution_created".into(),
                    events: 900,
                    members: 60,
                },
                EventTypeActivity {
                    name: "session_started".into(),
                    events: 300,
                    members: 50,
                },
            ],
        })
        .collect();
    let doc = commonlab_report::wp2::build(&r, &activity, 42);
    let v = commonlab_report::canonical::to_value(&doc).unwrap();
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../reports/schemas/wp2-parameters.schema.json"
    ))
    .unwrap();
    let required = |s: &serde_json::Value| -> Vec<String> {
        s["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect()
    };
    let keys =
        |o: &serde_json::Value| -> Vec<String> { o.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&v), required(&schema));
    assert_eq!(
        keys(&v["communities"][0]),
        required(&schema["$defs"]["community"])
    );
    assert_eq!(keys(&v["effects"][0]), required(&schema["$defs"]["effect"]));
    let c = &v["communities"][0];
    assert_eq!(c["inactive_share"], 0.4);
    assert_eq!(
        c["rates_per_member_day"]["contribution_created"]
            .as_f64()
            .unwrap(),
        commonlab_report::canonical::round(900.0 / 100.0 / 150.0)
    );
    assert_eq!(
        v["effects"][0]["draws"].as_array().unwrap().len(),
        commonlab_report::wp2::DRAWS
    );
    // The simulator reads `simulation` as its parameter file.
    let sim = serde_json::to_string(&v["simulation"]).unwrap();
    let params = commonlab_sim::params::SimParams::from_json(&sim).unwrap();
    params.validate().unwrap();
    assert_eq!(params.communities.len(), 2);
    assert_eq!(params.communities[1].members, 150);
    assert!(params.effects.contains_key("on"));
}

#[test]
fn surveys_section_reports_scales_response_and_reliability_withholding_small_cells() {
    let t = members_trial(THANKS, 7);
    let r = thanks();
    // Survey scales are in their own section, not among the plan's metrics.
    assert!(r.results.iter().all(|m| !m.name.starts_with("survey:")));
    let s = r.surveys.as_ref().expect("a surveys section");
    assert_eq!(s.min_cell, 5);
    let w = &s.waves[0];
    assert_eq!(
        (w.wave.as_str(), w.campaign.as_str()),
        ("followup", "thanks-followup")
    );
    let arms: Vec<&str> = w.response.iter().map(|c| c.arm.as_str()).collect();
    assert_eq!(arms, ["control", "heart", "banner"]);
    assert_eq!(w.response[0].invited, Some(64));
    assert_eq!(w.differential.as_ref().unwrap().p_value, Some(0.535));
    assert!(s.pooled_differential.is_some());

    // Every arm has enough respondents: both comparisons, each equal to
    // the analysis's own Welch test on the scores.
    let (waves, _, _) = survey_fixture(&t, 11);
    let metrics = analyse_scales(&t.spec, &waves, t.as_of);
    let g = w.scales.iter().find(|x| x.scale == "gratitude").unwrap();
    assert_eq!(g.metric, "survey:followup:gratitude");
    assert!(g.suppressed.is_empty());
    assert_eq!(g.effects.len(), 2);
    let m = metrics.iter().find(|m| m.name == g.metric).unwrap();
    for (e, want) in g.effects.iter().zip(&m.estimates) {
        assert_eq!(
            (e.arm.as_str(), e.absolute),
            (want.arm.as_str(), want.estimate)
        );
        assert_eq!(e.p_value, want.p_value);
        assert_eq!(e.correction, "uncorrected");
    }
    assert_eq!(g.reliability.as_ref().unwrap().alpha, Some(0.81));
    assert_eq!(
        g.n.get("heart").copied().flatten(),
        m.n.get("heart").copied()
    );

    // 3 heart respondents on `belonging`: the arm's n, mean and its
    // comparison are withheld; banner's stays.
    let b = w.scales.iter().find(|x| x.scale == "belonging").unwrap();
    assert_eq!(b.suppressed, ["heart"]);
    assert_eq!(b.n["heart"], None);
    assert_eq!(b.means["heart"], None);
    assert!(b.means["banner"].is_some());
    let compared: Vec<&str> = b.effects.iter().map(|e| e.arm.as_str()).collect();
    assert_eq!(compared, ["banner"]);
    assert!(b
        .notice
        .as_deref()
        .unwrap()
        .contains("heart against control: withheld"));

    // Likert: shares per point sum to 1; the small arm is withheld.
    let g2 = w.likert.iter().find(|i| i.item == "g2").unwrap();
    let heart = g2.by_arm.iter().find(|a| a.arm == "heart").unwrap();
    assert!(heart.suppressed && heart.shares.is_none() && heart.counts.is_none());
    for a in w
        .likert
        .iter()
        .flat_map(|i| &i.by_arm)
        .filter(|a| !a.suppressed)
    {
        let total: f64 = a.shares.as_ref().unwrap().iter().sum();
        assert!((total - 1.0).abs() < 1e-12, "{total}");
        assert_eq!(a.counts.as_ref().unwrap().iter().sum::<u64>(), a.n.unwrap());
    }

    // Every number is in results.json, and the documents show the section.
    let json: serde_json::Value = serde_json::from_str(&render::results_json(&r).unwrap()).unwrap();
    assert_eq!(
        json["surveys"]["waves"][0]["scales"][0]["effects"][1]["absolute"]
            .as_f64()
            .unwrap(),
        commonlab_report::canonical::round(g.effects[1].absolute)
    );
    let md = render::markdown(&r).unwrap();
    assert!(
        md.contains("## Surveys") && md.contains("### Wave followup"),
        "{md}"
    );
    let html = render::html(&r).unwrap();
    assert!(html.contains("id=\"surveys\""));
    assert!(html.contains("<title>Likert items by arm</title>"));
    // A trial without survey waves has no section, and no key in JSON.
    let plain = report(&t);
    assert!(plain.surveys.is_none());
    assert!(!render::results_json(&plain)
        .unwrap()
        .contains("\"surveys\""));
}

#[test]
fn cumulative_effect_ends_at_the_designs_result() {
    let r = dashboard();
    let c = &r.cumulative;
    assert_eq!(c.by, "period");
    assert!(c.points.len() >= 2, "{c:?}");
    let periods: Vec<i64> = c.points.iter().map(|p| p.through_period).collect();
    assert!(periods.windows(2).all(|w| w[0] < w[1]), "{periods:?}");
    // The last point re-runs the analysis on every closed period: the
    // design's own estimate and interval.
    let last = c.points.last().unwrap();
    let e = &r.results[0].effects[0];
    assert_eq!(last.method, e.method);
    assert_eq!(last.estimate, e.absolute);
    assert_eq!((last.ci_low, last.ci_high), (e.ci_low, e.ci_high));
    // Member designs' rows carry no date: no points, and a note says why.
    let t = thanks();
    assert!(t.cumulative.points.is_empty());
    assert!(t
        .cumulative
        .note
        .as_deref()
        .unwrap()
        .contains("no exposure date"));
    let html = render::html(&r).unwrap();
    assert!(html.contains("<title>Cumulative effect on"));
}

#[test]
fn distribution_withholds_small_cells() {
    let r = thanks();
    let d = &r.distribution;
    assert_eq!(d.of, "member");
    assert_eq!(d.min_cell, 5);
    let nb = d.bins.len() - 1;
    assert!(nb >= 1);
    let n: i64 = d.by_arm.iter().map(|a| a.n).sum();
    assert_eq!(n, 128);
    for a in &d.by_arm {
        assert_eq!(a.counts.len(), nb);
        let shown: u64 = a.counts.iter().flatten().sum();
        assert!(shown <= a.n as u64);
        assert!(
            a.counts.iter().flatten().all(|&c| c == 0 || c >= 5),
            "{a:?}"
        );
    }
    // Shown and withheld together account for every member (the heart
    // arm's 32 members in 0/1 bins: both bins large enough here).
    let md = render::markdown(&r).unwrap();
    assert!(md.contains("### Distribution"), "{md}");
    // Community designs: cells, those with fewer members than k withheld.
    let w = dashboard();
    assert_eq!(w.distribution.of, "cell");
    assert!(!w.distribution.cells.is_empty());
    for c in &w.distribution.cells {
        assert_eq!(c.value.is_none(), c.members < 5, "{c:?}");
    }
    let html = render::html(&w).unwrap();
    assert!(html.contains("<title>Distribution of"));
    // hash designs read sums only: no distribution, and a note.
    let hash = with_design(THANKS, "[design]\nkind = \"hash\"\nsalt = \"s\"\n");
    let h = report(&members_trial(&hash, 3));
    assert_eq!(h.distribution.of, "none");
    assert!(h.distribution.note.is_some());
}

#[test]
fn the_build_records_its_git_commit() {
    let c = commonlab_report::GIT_COMMIT;
    let hash = c.strip_suffix("-dirty").unwrap_or(c);
    // Built in a checkout (as CI and this test are): a full commit id of
    // this repository; `unknown` only outside one.
    let inside = std::process::Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .is_ok_and(|o| o.status.success());
    if inside {
        assert!(
            hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{c}"
        );
        let known = std::process::Command::new("git")
            .args(["cat-file", "-e", &format!("{hash}^{{commit}}")])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(known.success(), "{c} is not a commit of this repository");
    } else {
        assert!(!c.is_empty());
    }
}

#[test]
fn a_sequential_hash_plan_shows_its_looks_with_the_always_valid_interval() {
    let hash = with_design(THANKS, "[design]\nkind = \"hash\"\nsalt = \"s\"\n");
    let seq = hash.replace("horizon = \"fixed\"", "horizon = \"sequential\"\nlooks = 4");
    assert_ne!(seq, hash);
    let t = members_trial(&seq, 3);
    let spec = &t.spec;
    // Looks split the planned window in 4; only those already past count.
    let (start, end) = (spec.schedule.start, spec.schedule.end);
    let at = |i: i64| chrono::DateTime::from_timestamp(start + (end - start) * i / 4, 0).unwrap();
    let all = commonlab_report::past_looks(spec, at(4));
    assert_eq!(all, vec![at(1), at(2), at(3)]);
    assert_eq!(commonlab_report::past_looks(spec, at(2)), vec![at(1)]);
    assert!(commonlab_report::past_looks(&members_trial(&hash, 3).spec, at(4)).is_empty());
    // Earlier looks' cells (other seeded samples stand in for them).
    let cells = |seed| match &members_trial(&seq, seed).metrics[0].rows {
        commonlab_report::analysis::MetricRows::Cells(c) => c.clone(),
        _ => panic!("hash cells"),
    };
    let looks: Vec<commonlab_report::series::Look> = [(at(1), 4), (at(2), 5)]
        .into_iter()
        .map(|(at, seed)| commonlab_report::series::Look {
            at,
            cells: cells(seed),
        })
        .collect();
    let a = analyse(&t);
    let r = build_with(
        &t,
        &a,
        &Default::default(),
        &looks,
        &history(&t.spec),
        &provenance(),
    );
    let c = &r.cumulative;
    assert_eq!((c.by, c.interval), ("look", "always_valid"));
    // Looks before the data's as-of time, then the data: 2 arms each.
    let before = looks.iter().filter(|l| l.at < t.as_of).count();
    assert_eq!(before, 2);
    assert_eq!(c.points.len(), 2 * (before + 1), "{c:?}");
    for p in &c.points {
        let (lo, hi) = p.always_valid.expect("an always-valid interval");
        let (lo, hi) = (lo.unwrap_or(f64::NEG_INFINITY), hi.unwrap_or(f64::INFINITY));
        // The confidence sequence is wider than the fixed interval.
        assert!(lo < p.ci_low.unwrap() && hi > p.ci_high.unwrap(), "{p:?}");
        assert!(lo <= p.estimate && p.estimate <= hi);
    }
    // The last look is the report's data: the engine's Welch difference.
    for arm in ["heart", "banner"] {
        let last = c.points.iter().rev().find(|p| p.arm == arm).unwrap();
        let welch = &a.metrics[0].detail["comparisons"][arm]["absolute"];
        assert_eq!(Some(last.estimate), welch["two_sided"]["effect"].as_f64());
        assert_eq!(
            last.always_valid.unwrap().0,
            welch["sequential_two_sided"]["ci_lower"].as_f64()
        );
    }
    let html = render::html(&r).unwrap();
    assert!(
        html.contains("with the sequential boundary</title>"),
        "chart title"
    );
    let md = render::markdown(&r).unwrap();
    assert!(md.contains("| Look | At | Arm |"), "{md}");
}

/// The scope of `wp2-parameters.json`'s activity is known before the
/// analysis (`commonlab report` reads it beside the metrics, and uses it
/// only when the report's scope is the same): for both example trials,
/// the prediction from the trial's file and exposure counts is the
/// report's scope.
#[test]
fn the_activity_scope_is_predicted_from_the_file_and_the_exposures() {
    use commonlab_report::ActivityScope;
    for (t, r) in [
        (members_trial(THANKS, 7), thanks()),
        (community_trial(DASHBOARD, 42), dashboard()),
    ] {
        let exposed = t.exposures.iter().filter_map(|e| e.community.clone());
        let scope = ActivityScope::of_report(&r);
        assert!(!scope.communities.is_empty());
        assert!(scope.from < scope.to, "{scope:?}");
        assert_eq!(ActivityScope::predict(&t.spec, exposed, t.as_of), scope);
    }
}
