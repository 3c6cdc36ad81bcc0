use super::*;
use serde_json::json;

fn shipped(name: &str) -> Instrument {
    let path = format!("{}/../../surveys/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    parse_instrument(&src, name).unwrap_or_else(|e| {
        panic!(
            "{name}:\n{}",
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn answers(v: serde_json::Value) -> Answers {
    serde_json::from_value(v).unwrap()
}

#[test]
fn every_shipped_instrument_parses_in_english_and_spanish() {
    let dir = format!("{}/../../surveys", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cbpp-community.toml",
            "nps.toml",
            "sus.toml",
            "umux-lite.toml"
        ]
    );
    for name in &names {
        let i = shipped(name);
        assert_eq!(i.languages, ["en", "es"], "{name}");
        for (_, item) in i.items() {
            assert_eq!(item.text.len(), 2, "{name}: {}", item.key);
        }
    }
    let own = shipped("cbpp-community.toml");
    assert!(!own.published_scale);
    assert!(own.source.contains("not a published scale"));
    let kinds: std::collections::BTreeSet<&str> = own.items().map(|(_, i)| i.kind.name()).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert!(shipped("sus.toml").published_scale);
}

#[test]
fn sus_scores_by_the_published_formula() {
    let sus = shipped("sus.toml");
    let scale = &sus.scales[0];
    // All 5 (strongly agree): odd items 4 each, even items 0: 20 x 2.5 = 50.
    let all5: Answers = (1..=10)
        .map(|i| (format!("sus{i}"), Answer::Number(5.0)))
        .collect();
    assert_eq!(score_scale(&sus, scale, &all5).unwrap().score, 50.0);
    // The best pattern (odd 5, even 1) is 100, the worst 0.
    let best: Answers = (1..=10)
        .map(|i| {
            (
                format!("sus{i}"),
                Answer::Number(if i % 2 == 1 { 5.0 } else { 1.0 }),
            )
        })
        .collect();
    assert_eq!(score_scale(&sus, scale, &best).unwrap().score, 100.0);
    // Brooke's worked example: 4,1,4,1,4,2,5,1,4,1 ->
    // (3+4+3+4+3+3+4+4+3+4) x 2.5 = 35 x 2.5 = 87.5.
    let example: Answers = [4, 1, 4, 1, 4, 2, 5, 1, 4, 1]
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("sus{}", i + 1), Answer::Number(f64::from(*r))))
        .collect();
    let s = score_scale(&sus, scale, &example).unwrap();
    assert_eq!(s.score, 87.5);
    assert_eq!(
        s.recoded,
        [3.0, 4.0, 3.0, 4.0, 3.0, 3.0, 4.0, 4.0, 3.0, 4.0]
    );
    // Incomplete: no score.
    let mut partial = example.clone();
    partial.remove("sus7");
    assert_eq!(score_scale(&sus, scale, &partial), None);
}

#[test]
fn umux_lite_nps_and_means_with_reverse_coding() {
    let umux = shipped("umux-lite.toml");
    let a = answers(json!({"umux1": 7, "umux2": 7}));
    assert_eq!(
        score_scale(&umux, &umux.scales[0], &a).unwrap().score,
        100.0
    );
    let a = answers(json!({"umux1": 4, "umux2": 5}));
    assert!((score_scale(&umux, &umux.scales[0], &a).unwrap().score - 700.0 / 12.0).abs() < 1e-12);

    let nps = shipped("nps.toml");
    for (x, cat) in [
        (10, 100.0),
        (9, 100.0),
        (8, 0.0),
        (7, 0.0),
        (6, -100.0),
        (0, -100.0),
    ] {
        let a = answers(json!({ "recommend": x }));
        assert_eq!(
            score_scale(&nps, &nps.scales[0], &a).unwrap().score,
            cat,
            "{x}"
        );
    }
    // 3 promoters, 2 passives, 5 detractors: 30% - 50% = -20.
    let group = [9.0, 10.0, 9.0, 7.0, 8.0, 0.0, 3.0, 6.0, 5.0, 1.0];
    assert_eq!(nps_of(&group), Some(-20.0));
    assert_eq!(nps_of(&[]), None);

    let own = shipped("cbpp-community.toml");
    let value = own.scales.iter().find(|s| s.key == "value").unwrap();
    // value4 is reverse-coded: 2 on a 5-point item counts as 4.
    let a = answers(json!({"value1": 4, "value2": 5, "value3": 3, "value4": 2}));
    let s = score_scale(&own, value, &a).unwrap();
    assert_eq!(s.recoded, [4.0, 5.0, 3.0, 4.0]);
    assert_eq!(s.score, 4.0);
}

#[test]
fn answers_are_checked_against_the_instrument() {
    let own = shipped("cbpp-community.toml");
    // Page 1: a required single choice, a numeric shown only for members
    // who contribute, a multiple choice with "other".
    let ok = answers(json!({
        "frequency": "weekly", "hours": 3.5,
        "activities": {"codes": ["write", "review"], "other": "translations"}
    }));
    assert_eq!(validate_page(&own, 0, &ok), Ok(()));
    let codes = |a: &Answers| -> Vec<(String, &'static str)> {
        validate_page(&own, 0, a)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.item, e.code))
            .collect()
    };
    assert_eq!(
        codes(&answers(json!({}))),
        [("frequency".to_string(), "required")]
    );
    assert_eq!(
        codes(&answers(json!({"frequency": "sometimes", "hours": 100}))),
        [
            ("frequency".to_string(), "unknown_option"),
            ("hours".to_string(), "not_shown")
        ]
    );
    assert_eq!(
        codes(&answers(json!({"frequency": "daily", "hours": 2.25}))),
        [("hours".to_string(), "step")]
    );
    assert_eq!(
        codes(&answers(json!({"frequency": "daily", "hours": 81}))),
        [("hours".to_string(), "range")]
    );
    // Hidden for members who never contribute: an answer is refused.
    assert_eq!(
        codes(&answers(json!({"frequency": "never", "hours": 1}))),
        [("hours".to_string(), "not_shown")]
    );
    assert_eq!(
        codes(&answers(
            json!({"frequency": "daily", "activities": {"codes": ["write", "write"]}})
        )),
        [("activities".to_string(), "duplicate")]
    );
    assert_eq!(
        codes(&answers(
            json!({"frequency": "daily", "activities": "write"})
        )),
        [("activities".to_string(), "type")]
    );
    // Likert: whole points only.
    let page2 = |v| validate_page(&own, 1, &answers(v)).map_err(|e| e[0].code);
    assert_eq!(
        page2(json!({"value1": 1, "value2": 5, "value3": 3, "value4": 2})),
        Ok(())
    );
    assert_eq!(
        page2(json!({"value1": 6, "value2": 5, "value3": 3, "value4": 2})),
        Err("range")
    );
    assert_eq!(
        page2(json!({"value1": 2.5, "value2": 5, "value3": 3, "value4": 2})),
        Err("range")
    );
    // Ranking: every option once.
    let page4 = |v| validate_page(&own, 3, &answers(v)).map_err(|e| e[0].code);
    assert_eq!(
        page4(json!({"priorities": {"codes": ["cause", "people", "learning", "recognition"]}})),
        Ok(())
    );
    assert_eq!(
        page4(json!({"priorities": {"codes": ["cause", "people"]}})),
        Err("incomplete")
    );
    // Free text: characters, not bytes; HTML is just text here.
    let long = "é".repeat(2001);
    assert_eq!(page4(json!({"comments": long})), Err("too_long"));
    assert_eq!(
        page4(json!({"comments": "<script>alert(1)</script>"})),
        Ok(())
    );
    // NPS follow-up only for detractors.
    let nps = shipped("nps.toml");
    assert!(nps.is_shown("why", &answers(json!({"recommend": 6}))));
    assert!(!nps.is_shown("why", &answers(json!({"recommend": 7}))));
    assert!(!nps.is_shown("why", &answers(json!({}))));
}

#[test]
fn randomised_pages_are_permutations_fixed_by_the_seed() {
    let own = shipped("cbpp-community.toml");
    assert_eq!(own.page_order(0, 7), [0, 1, 2], "not randomised");
    let a = own.page_order(1, 7);
    assert_eq!(a, own.page_order(1, 7));
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [0, 1, 2, 3]);
    // Over many seeds every item comes first about equally often.
    let mut first = [0u32; 4];
    for seed in 0..4_000 {
        first[own.page_order(1, seed)[0]] += 1;
    }
    assert!(first.iter().all(|&n| (850..1150).contains(&n)), "{first:?}");
}

#[test]
fn languages_and_direction() {
    let own = shipped("cbpp-community.toml");
    assert_eq!(own.pick_language(Some("es"), &[]), "es");
    assert_eq!(own.pick_language(Some("fr"), &["es-MX", "en"]), "es");
    assert_eq!(own.pick_language(None, &["de", "EN-gb"]), "en");
    assert_eq!(own.pick_language(None, &["de"]), "en");
    assert_eq!(direction("ar"), "rtl");
    assert_eq!(direction("he-IL"), "rtl");
    assert_eq!(direction("es"), "ltr");
}

/// Each file under `testdata/` is an invalid instrument; its `.errors`
/// file lists the expected errors, one `line:column: field: message` per
/// line (the file name is left out).
#[test]
fn invalid_instruments_are_refused_with_file_line_and_field() {
    let dir = format!("{}/src/surveys/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let errors = parse_instrument(&src, name).unwrap_err();
        let got: Vec<String> = errors
            .iter()
            .map(|e| {
                e.to_string()
                    .trim_start_matches(&format!("{name}:"))
                    .to_string()
            })
            .collect();
        let expected = std::fs::read_to_string(path.with_extension("errors"))
            .unwrap_or_else(|_| panic!("{name}: no .errors file; got:\n{}", got.join("\n")));
        let expected: Vec<&str> = expected.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(got, expected, "{name}");
        checked += 1;
    }
    assert!(checked >= 2);
}
