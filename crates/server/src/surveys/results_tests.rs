//! Results against an independent computation (`testdata/results_reference.py`,
//! numpy/scipy, its output `results_reference.json`), and what results
//! withhold: small cells, free text.

use super::results::*;
use commonlab_core::surveys::{parse_instrument, Answer};
use commonlab_store::{CampaignUnit, ResponseRecord, ResponseStatus};
use serde_json::{Map, Value};

const REF: &str = include_str!("testdata/results_reference.json");
const CBPP: &str = include_str!("../../../../surveys/cbpp-community.toml");

fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
}

fn data() -> (Value, Vec<CampaignUnit>, Vec<ResponseRecord>) {
    let v: Value = serde_json::from_str(REF).unwrap();
    let units = v["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| CampaignUnit {
            unit: u["unit"].as_str().unwrap().into(),
            invited: u["invited"].as_bool().unwrap(),
            invited_community: u["community"].as_str().map(str::to_string),
            arm: u["arm"].as_str().map(str::to_string),
            exposed_community: None,
        })
        .collect();
    let responses = v["responses"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let status: ResponseStatus = r["status"].as_str().unwrap().parse().unwrap();
            let start = at(i as i64 * 10);
            ResponseRecord {
                campaign_id: 1,
                unit: r["unit"].as_str().unwrap().into(),
                status,
                language: "es".into(),
                consent_version: "2027-01".into(),
                page: 0,
                answers: r["answers"].as_object().unwrap().clone(),
                orders: Map::new(),
                started_at: start,
                updated_at: start,
                completed_at: (status == ResponseStatus::Completed)
                    .then(|| start + chrono::Duration::seconds(300 + i as i64)),
            }
        })
        .collect();
    (v, units, responses)
}

fn close(a: f64, b: &Value, what: &str) {
    let b = b.as_f64().unwrap_or_else(|| panic!("{what}: {b}"));
    assert!((a - b).abs() < 1e-9, "{what}: {a} vs {b}");
}

#[test]
fn results_match_the_independent_computation() {
    let (v, units, responses) = data();
    let instrument = parse_instrument(CBPP, "cbpp-community.toml").unwrap();
    let min_cell = v["min_cell"].as_u64().unwrap() as usize;
    let r = compute(&instrument, &responses, &units, true, min_cell, false);
    let e = &v["expected"];

    for s in &r.scales {
        let x = &e["scales"][&s.key];
        assert_eq!(
            s.summary.n,
            Some(x["n"].as_u64().unwrap() as usize),
            "{}",
            s.key
        );
        close(s.summary.mean.unwrap(), &x["mean"], "mean");
        close(s.summary.sd.unwrap(), &x["sd"], "sd");
        for a in &s.by_arm {
            let arm = a.arm.as_deref().unwrap();
            let y = &x["by_arm"][arm];
            assert_eq!(a.n, Some(y["n"].as_u64().unwrap() as usize));
            close(a.mean.unwrap(), &y["mean"], "arm mean");
            close(a.sd.unwrap(), &y["sd"], "arm sd");
        }
        assert_eq!(s.by_arm.len(), 2);
        let rel = s.reliability.value().expect("reliability");
        close(rel.alpha, &x["alpha"], "alpha");
        close(rel.alpha_ci95.0, &x["alpha_lower"], "feldt lower");
        close(rel.alpha_ci95.1, &x["alpha_upper"], "feldt upper");
        for (j, it) in rel.items.iter().enumerate() {
            assert_eq!(it.item, s.items[j]);
            close(
                it.corrected_item_total_r.unwrap(),
                &x["corrected_item_total_r"][j],
                "citr",
            );
            close(
                it.alpha_if_deleted.unwrap(),
                &x["alpha_if_deleted"][j],
                "alpha if deleted",
            );
        }
        close(
            rel.omega.value().expect("omega").omega,
            &x["omega"],
            "omega",
        );
    }

    let rates = &r.response;
    let cell = |c: &RateCell, x: &Value, what: &str| {
        let suppressed = x["suppressed"].as_bool().unwrap();
        assert_eq!(c.suppressed, suppressed, "{what}");
        if suppressed {
            assert_eq!(
                (c.invited, c.completed, c.rate),
                (None, None, None),
                "{what}"
            );
            return;
        }
        for (got, key) in [
            (c.invited, "invited"),
            (c.completed, "completed"),
            (c.started, "started"),
            (c.declined, "declined"),
        ] {
            assert_eq!(got, x[key].as_u64(), "{what} {key}");
        }
        let rate = x["completed"].as_f64().unwrap() / x["invited"].as_f64().unwrap();
        assert!((c.rate.unwrap() - rate).abs() < 1e-12, "{what}");
    };
    cell(&rates.overall, &e["rates"]["overall"], "overall");
    cell(
        &rates.without_arm,
        &e["rates"]["without_arm"],
        "without arm",
    );
    assert_eq!(rates.by_arm.len(), 2);
    for c in &rates.by_arm {
        cell(c, &e["rates"]["by_arm"][c.key.as_deref().unwrap()], "arm");
    }
    assert_eq!(rates.by_community.len(), 5);
    for c in &rates.by_community {
        cell(
            c,
            &e["rates"]["by_community"][c.key.as_deref().unwrap()],
            "community",
        );
    }
    assert!(
        rates.by_community.iter().any(|c| c.suppressed),
        "the fixture has a small cell"
    );
    assert_eq!(rates.uninvited_responses, 2);
    let d = rates
        .differential
        .as_ref()
        .unwrap()
        .value()
        .expect("differential");
    let x = &e["differential"];
    close(d.chi2, &x["chi2"], "chi2");
    close(d.p_value, &x["p_value"], "p");
    assert!((d.fisher_p.unwrap() - x["fisher_p"].as_f64().unwrap()).abs() < 1e-9);
    assert!(d.flagged, "arm B answers less: {}", d.message);
    assert!(d.message.contains("biased"));
}

#[test]
fn respondents_show_raw_and_recoded_answers_and_withhold_small_cells_and_text() {
    let (v, units, responses) = data();
    let instrument = parse_instrument(CBPP, "cbpp-community.toml").unwrap();
    let r = compute(&instrument, &responses, &units, true, 5, false);
    assert_eq!(
        r.respondents.len(),
        v["responses"].as_array().unwrap().len()
    );
    let done = r
        .respondents
        .iter()
        .find(|p| p.status == ResponseStatus::Completed && p.invited)
        .unwrap();
    let v4 = &done.items["value4"];
    let Answer::Number(raw) = v4.raw else {
        panic!()
    };
    assert_eq!(v4.recoded, Some(6.0 - raw), "reverse coded");
    assert_eq!(
        done.items["value1"].recoded,
        match done.items["value1"].raw {
            Answer::Number(x) => Some(x),
            _ => None,
        }
    );
    assert!(done.scales["value"].is_some() && done.completion_seconds.unwrap() >= 300);
    // Free text is withheld: no comments, no "other" text.
    assert!(r
        .respondents
        .iter()
        .all(|p| !p.items.contains_key("comments")));
    assert!(r
        .respondents
        .iter()
        .all(|p| match p.items.get("activities").map(|v| &v.raw) {
            Some(Answer::Choices { other, .. }) => other.is_none(),
            _ => true,
        }));
    let with_text = compute(&instrument, &responses, &units, true, 5, true);
    assert!(with_text
        .respondents
        .iter()
        .any(|p| p.items.contains_key("comments")));
    // The tiny community's respondent has no community shown.
    let tiny: Vec<&Respondent> = r
        .respondents
        .iter()
        .filter(|p| p.suppressed.contains(&"community"))
        .collect();
    assert!(!tiny.is_empty());
    assert!(tiny.iter().all(|p| p.community.is_none()));
    // A started response has a score only for the scale it finished.
    let started = r
        .respondents
        .iter()
        .find(|p| p.status == ResponseStatus::Started)
        .unwrap();
    assert!(started.scales["value"].is_some() && started.scales["belonging"].is_none());
    assert!(started.completed_at.is_none());
    // Declined: nothing but the refusal.
    let declined = r
        .respondents
        .iter()
        .find(|p| p.status == ResponseStatus::Declined)
        .unwrap();
    assert!(declined.items.is_empty() && declined.scales.values().all(Option::is_none));
}

#[test]
fn small_campaigns_and_unscorable_scales_say_why() {
    let (_, units, responses) = data();
    let instrument = parse_instrument(CBPP, "cbpp-community.toml").unwrap();
    // With k above every arm's respondents, every breakdown is withheld.
    let r = compute(&instrument, &responses, &units, true, 1_000, false);
    assert!(r
        .response
        .by_arm
        .iter()
        .all(|c| c.suppressed && c.rate.is_none()));
    assert!(r
        .scales
        .iter()
        .all(|s| s.by_arm.iter().all(|a| a.suppressed && a.mean.is_none())));
    assert!(r.scales.iter().all(|s| s.reliability.value().is_none()));
    assert!(r
        .respondents
        .iter()
        .all(|p| p.arm.is_none() && p.community.is_none()));
    // The differential test reports the counts' p-value, never the cells.
    assert!(r.response.differential.as_ref().unwrap().value().is_some());
    // No trial: no differential test; no responses: empty results.
    let r = compute(&instrument, &[], &[], false, 5, false);
    assert!(r.response.differential.is_none());
    assert_eq!(r.response.overall.invited, Some(0));
    assert!(r.scales.iter().all(|s| s.summary.n == Some(0)));
    // One arm only: the test says why it cannot run.
    let one: Vec<CampaignUnit> = units
        .iter()
        .cloned()
        .map(|mut u| {
            u.arm = Some("A".into());
            u
        })
        .collect();
    let r = compute(&instrument, &responses, &one, true, 5, false);
    match r.response.differential.unwrap() {
        Computed::Error { error } => assert!(error.contains("two arms"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_unit_scale_scores_for_the_trial_analysis() {
    let (_, units, responses) = data();
    let instrument = parse_instrument(CBPP, "cbpp-community.toml").unwrap();
    let scores = unit_scale_scores(&instrument, &responses, &units);
    let completed = responses
        .iter()
        .filter(|r| r.status == ResponseStatus::Completed)
        .count();
    assert_eq!(
        scores.len(),
        2 * completed,
        "two scales per completed response"
    );
    let first = &scores[0];
    let unit = units.iter().find(|u| u.unit == first.unit).unwrap();
    assert_eq!(first.arm, unit.arm);
    assert_eq!(first.community.as_deref(), unit.community());
    assert!((1.0..=5.0).contains(&first.score));
}

#[test]
fn a_trials_response_across_waves_is_tested_per_wave_and_pooled() {
    use super::waves::{trial_response, WaveData};
    use commonlab_stats::response::{check, ArmResponse};
    let (v, units, responses) = data();
    let instrument = parse_instrument(CBPP, "cbpp-community.toml").unwrap();
    // Wave 2: the same units, only the first 40 responses.
    let later: Vec<ResponseRecord> = responses.iter().take(40).cloned().collect();
    let waves = [
        WaveData {
            campaign: "b",
            wave: "baseline",
            units: &units,
            responses: &responses,
        },
        WaveData {
            campaign: "f",
            wave: "followup",
            units: &units,
            responses: &later,
        },
    ];
    let t = trial_response(&waves, 5);
    assert_eq!(t.arms, ["A", "B"]);
    assert_eq!(t.waves.len(), 2);
    let by = t.differential.value().expect("tested");
    // Wave 1 agrees with the campaign's own results (and so with scipy).
    close(
        by.waves[0].p_value,
        &v["expected"]["differential"]["p_value"],
        "wave 1 p",
    );
    let one = compute(&instrument, &responses, &units, true, 5, false);
    let d = one.response.differential.unwrap();
    assert_eq!(by.waves[0].chi2, d.value().unwrap().chi2);
    // Pooled: the counts summed over waves.
    let counts = |w: &super::waves::WaveResponse| -> Vec<ArmResponse> {
        w.arms
            .iter()
            .map(|c| ArmResponse {
                invited: c.invited.unwrap(),
                responded: c.completed.unwrap(),
            })
            .collect()
    };
    let (a, b) = (counts(&t.waves[0]), counts(&t.waves[1]));
    let pooled: Vec<ArmResponse> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| ArmResponse {
            invited: x.invited + y.invited,
            responded: x.responded + y.responded,
        })
        .collect();
    assert_eq!(by.pooled.p_value, check(&pooled).unwrap().p_value);
    assert!(by.flagged);
    // No campaigns, or one arm: why there is no test.
    assert!(trial_response(&[], 5).differential.value().is_none());
    let one_arm: Vec<CampaignUnit> = units
        .iter()
        .cloned()
        .map(|mut u| {
            u.arm = Some("A".into());
            u
        })
        .collect();
    let w = [WaveData {
        campaign: "b",
        wave: "baseline",
        units: &one_arm,
        responses: &responses,
    }];
    match trial_response(&w, 5).differential {
        Computed::Error { error } => assert!(error.contains("two arms"), "{error}"),
        other => panic!("{other:?}"),
    }
    // Small cells are withheld per wave.
    let t = trial_response(&waves, 1_000);
    assert!(t
        .waves
        .iter()
        .all(|w| w.arms.iter().all(|c| c.suppressed && c.invited.is_none())));
}
