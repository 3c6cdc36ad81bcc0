//! Metric definitions: every option parses to the documented value, every
//! mistake is reported with file, line, column and field, library
//! references resolve and inline to the same locked plan.

use super::*;
use proptest::prelude::*;

const LIBRARY: &str = include_str!("../testdata/metric_library.toml");
const VALID_REFS: &str = include_str!("../testdata/valid_refs.toml");

fn library() -> MetricLibrary {
    parse_metric_library(LIBRARY, "metrics.toml").expect("library parses")
}

fn lines(errors: &[SpecError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

#[test]
fn invalid_metrics_report_every_error() {
    let got = error_lines(
        include_str!("../testdata/invalid_metrics.toml"),
        "invalid_metrics.toml",
    );
    let want: Vec<&str> = include_str!("../testdata/invalid_metrics.errors")
        .lines()
        .collect();
    assert_eq!(got, want);
}

#[test]
fn invalid_library_reports_every_error() {
    let errors = parse_metric_library(include_str!("../testdata/invalid_library.toml"), "bad.toml")
        .unwrap_err();
    assert_eq!(
        lines(&errors),
        vec![
            "bad.toml:8:8: metric[1].name: duplicate metric name \"a\"",
            "bad.toml:10:10: metric[1].events: a ratio metric needs exactly 2 events, [numerator, denominator]; found 1",
            "bad.toml:13:1: metric[2]: a library metric cannot refer to another; define it in full",
            "bad.toml:16:1: other: unknown field; expected one of: metric",
        ]
    );
}

#[test]
fn defaults_and_every_option() {
    let lib = library();
    let e = &lib.metrics["edits_per_member"];
    assert_eq!(e.kind, MetricKind::Mean);
    assert_eq!(e.value, MetricValue::Count);
    assert_eq!(e.window, Window::new(0, 14 * 86_400).unwrap());
    assert_eq!(e.covariate, Window::new(-14 * 86_400, 0));
    assert_eq!(e.cap, Some(Cap::Percentile(0.99)));
    let a = &lib.metrics["active_share"];
    assert_eq!(a.window, Window::new(0, 72 * 3_600).unwrap());
    // Default covariate: the window of the same length before exposure.
    assert_eq!(a.covariate, Window::new(-72 * 3_600, 0));
    assert_eq!(a.events, ["edit_saved", "comment_created"]);
    let r = &lib.metrics["replies_per_thread"];
    assert_eq!(r.window, DEFAULT_WINDOW);
    assert_eq!(
        r.filters,
        vec![PropertyFilter {
            property: "spam".into(),
            op: FilterOp::Eq(Scalar::Bool(false))
        }]
    );

    let t = parse_trial_with(VALID_REFS, "valid_refs.toml", Some(&lib)).unwrap();
    assert_eq!(t.metrics.primary.name, "edits_per_member");
    assert_eq!(
        t.metrics.primary.library_ref.as_deref(),
        Some("edits_per_member")
    );
    assert_eq!(t.metrics.secondary[0].direction, Direction::Decrease);
    assert_eq!(lib.metrics["active_share"].direction, Direction::Increase);
    let b = &t.metrics.secondary[1];
    assert_eq!(b.value, MetricValue::Sum("bytes_added".into()));
    assert_eq!(b.covariate, None);
    assert_eq!(b.cap, Some(Cap::Value(50000.0)));
    assert_eq!(
        b.filters,
        vec![
            PropertyFilter {
                property: "namespace".into(),
                op: FilterOp::In(vec![Scalar::Str("main".into()), Scalar::Str("talk".into())])
            },
            PropertyFilter {
                property: "minor".into(),
                op: FilterOp::Eq(Scalar::Bool(false))
            },
            PropertyFilter {
                property: "bytes_added".into(),
                op: FilterOp::Gt(0.0)
            },
            PropertyFilter {
                property: "bytes_added".into(),
                op: FilterOp::Lte(100000.0)
            },
            PropertyFilter {
                property: "bot".into(),
                op: FilterOp::Exists(false)
            },
        ]
    );
}

#[test]
fn references_need_a_library_that_defines_them() {
    let errors = parse_trial(VALID_REFS, "valid_refs.toml").unwrap_err();
    assert_eq!(errors.len(), 2);
    assert!(errors[0]
        .to_string()
        .starts_with("valid_refs.toml:28:7: metrics.primary.ref: metric \"edits_per_member\" refers to the metric library, but none was loaded"));
    let empty = parse_metric_library("", "metrics.toml").unwrap();
    let errors = parse_trial_with(VALID_REFS, "valid_refs.toml", Some(&empty)).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "valid_refs.toml:28:7: metrics.primary.ref: unknown metric \"edits_per_member\"; metrics.toml defines: nothing"
    );
}

#[test]
fn inlined_references_lock_the_same_plan() {
    let lib = library();
    let resolved = parse_trial_with(VALID_REFS, "valid_refs.toml", Some(&lib)).unwrap();
    let inlined = inline_metric_refs(VALID_REFS, "valid_refs.toml", &lib).unwrap();
    assert!(!inlined.contains("ref ="), "{inlined}");
    let standalone = spec(&inlined, "inlined.toml");
    assert_eq!(resolved.canonical_json(), standalone.canonical_json());
    assert_eq!(
        standalone.metrics.secondary[0].direction,
        Direction::Decrease
    );
    // A trial without references is returned unchanged.
    assert_eq!(
        inline_metric_refs(VALID_HASH, "v.toml", &lib).unwrap(),
        VALID_HASH
    );
    // Errors are reported, not inlined around.
    let bad = VALID_REFS.replace("ref = \"active_share\"", "ref = \"nope\"");
    assert!(inline_metric_refs(&bad, "bad.toml", &lib).is_err());
}

#[test]
fn the_shipped_library_and_trials_resolve() {
    let lib = parse_metric_library(
        include_str!("../../../../../experiments/metrics.toml"),
        "experiments/metrics.toml",
    )
    .unwrap_or_else(|e| panic!("{}", lines(&e).join("\n")));
    assert!(lib.metrics.len() >= 3);
}

#[test]
fn durations() {
    for (s, v) in [
        ("0d", Some(0)),
        ("14d", Some(1_209_600)),
        ("-14d", Some(-1_209_600)),
        ("72h", Some(259_200)),
        ("30m", Some(1_800)),
        ("45s", Some(45)),
        ("14", None),
        ("d", None),
        ("-d", None),
        ("1.5d", None),
        ("+1d", None),
        ("14w", None),
        ("9999999999d", None),
    ] {
        assert_eq!(parse_duration(s), v, "{s}");
    }
}

proptest! {
    #[test]
    fn durations_round_trip(secs in -100_000_000i64..100_000_000) {
        prop_assert_eq!(parse_duration(&format_duration(secs)), Some(secs));
    }
}

/// Windows and cap percentiles the databases compute exactly: bounds within
/// ±3650 days of first exposure (beyond, PostgreSQL fails with "interval
/// out of range" and SQLite's date functions give NULL), percentiles with
/// at most six decimals. Every refusal at the offending value.
#[test]
fn windows_and_percentiles_are_bounded_at_validation() {
    let metric = |line: &str| {
        format!("[[metric]]\nname = \"m\"\nkind = \"count\"\nevents = [\"e\"]\ndirection = \"increase\"\n{line}\n")
    };
    let accepted = [
        r#"window = ["0d", "3650d"]"#,
        r#"window = ["3649d", "87600h"]"#,
        r#"covariate = ["-3650d", "-1s"]"#,
        "cap = { percentile = 0.55 }",
        "cap = { percentile = 0.999999 }",
        "cap = { percentile = 0.000001 }",
    ];
    for line in accepted {
        let lib = parse_metric_library(&metric(line), "m.toml")
            .unwrap_or_else(|e| panic!("{line}: {}", lines(&e).join("\n")));
        let m = &lib.metrics["m"];
        assert!(m.window.end_secs <= MAX_WINDOW_SECS, "{line}");
    }
    let wide = parse_metric_library(&metric(r#"window = ["0d", "3650d"]"#), "m.toml").unwrap();
    assert_eq!(
        wide.metrics["m"].covariate,
        Window::new(-MAX_WINDOW_SECS, 0)
    );
    let refused = [
        (
            r#"window = ["0d", "999999999d"]"#,
            r#"m.toml:6:17: metric[0].window[1]: "999999999d" is too far from first exposure; window bounds must lie within 3650d (about ten years) either way"#,
        ),
        (
            r#"window = ["0d", "3651d"]"#,
            r#"m.toml:6:17: metric[0].window[1]: "3651d" is too far from first exposure; window bounds must lie within 3650d (about ten years) either way"#,
        ),
        (
            r#"window = ["0d", "87601h"]"#,
            r#"m.toml:6:17: metric[0].window[1]: "87601h" is too far from first exposure; window bounds must lie within 3650d (about ten years) either way"#,
        ),
        (
            r#"window = ["999999999d", "0d"]"#,
            r#"m.toml:6:11: metric[0].window[0]: "999999999d" is too far from first exposure; window bounds must lie within 3650d (about ten years) either way"#,
        ),
        (
            r#"covariate = ["-315360001s", "0d"]"#,
            r#"m.toml:6:14: metric[0].covariate[0]: "-315360001s" is too far from first exposure; window bounds must lie within 3650d (about ten years) either way"#,
        ),
        (
            "cap = { percentile = 0.1234567 }",
            "m.toml:6:22: metric[0].cap.percentile: 0.1234567 has more than six decimals; write the percentile with at most six, such as 0.99 or 0.999999",
        ),
        (
            "cap = { percentile = 0.9999995 }",
            "m.toml:6:22: metric[0].cap.percentile: 0.9999995 has more than six decimals; write the percentile with at most six, such as 0.99 or 0.999999",
        ),
    ];
    for (line, want) in refused {
        let errors = parse_metric_library(&metric(line), "m.toml").unwrap_err();
        assert_eq!(lines(&errors), [want], "{line}");
    }
    // The type keeps the bound too.
    assert!(Window::new(0, MAX_WINDOW_SECS).is_some());
    assert!(Window::new(0, MAX_WINDOW_SECS + 1).is_none());
    assert!(Window::new(-MAX_WINDOW_SECS - 1, 0).is_none());
    assert_eq!(Cap::percentile_millionths(0.55), Some(550_000));
    assert_eq!(Cap::percentile_millionths(0.936), Some(936_000));
    assert_eq!(Cap::percentile_millionths(1e-7), None);
    assert_eq!(Cap::percentile_millionths(1.0), None);
}

/// `unit` and `period_window`: their values, and what only community
/// designs allow, reported with file, line and field.
#[test]
fn metric_units_and_period_windows_are_checked_against_the_design() {
    for (src, file, want) in [
        (
            include_str!("../testdata/invalid_units_wedge.toml"),
            "invalid_units_wedge.toml",
            include_str!("../testdata/invalid_units_wedge.errors"),
        ),
        (
            include_str!("../testdata/invalid_units_hash.toml"),
            "invalid_units_hash.toml",
            include_str!("../testdata/invalid_units_hash.errors"),
        ),
    ] {
        let got = error_lines(src, file);
        let want: Vec<&str> = want.lines().collect();
        assert_eq!(got, want, "{file}");
    }
    let lib = "[[metric]]\nname = \"m\"\nkind = \"count\"\nevents = [\"e\"]\ndirection = \"increase\"\nunit = \"household\"\nperiod_window = \"-3d\"\n";
    let errors = parse_metric_library(lib, "m.toml").unwrap_err();
    assert_eq!(
        lines(&errors),
        [
            "m.toml:6:8: metric[0].unit: \"household\" is not valid; expected one of: member, community",
            "m.toml:7:17: metric[0].period_window: expected a positive duration such as \"28d\" or \"7d\" (the window at the end of each period); found a string",
        ]
    );
}

#[test]
fn periods_and_their_windows() {
    let src = include_str!("../testdata/invalid_units_wedge.toml")
        .replace("period_window = \"29d\"\n", "");
    let spec = parse_trial(&src, "w.toml").expect("valid once the mistakes are removed");
    let day = 86_400;
    let start = spec.schedule.start;
    // Baseline (28 days), three steps of 28 days, then to the end.
    let periods = spec.periods();
    let lens: Vec<i64> = periods.iter().map(|p| p.len_secs() / day).collect();
    assert_eq!(lens, [28, 28, 28, 36]);
    assert_eq!(periods[0].start, start);
    assert_eq!(
        spec.shortest_period(),
        Some(lens.iter().min().unwrap() * day)
    );
    // Default: the shortest period, at the end of each period.
    let m = &spec.metrics.primary;
    assert_eq!(m.unit, MetricUnit::Member);
    let windows = spec.period_windows(m);
    assert_eq!(windows.len(), periods.len());
    for (w, p) in windows.iter().zip(&periods) {
        assert_eq!(w.end, p.end);
        assert_eq!(w.end - w.start, spec.shortest_period().unwrap());
    }
    let o = &spec.metrics.secondary[1];
    assert_eq!(o.unit, MetricUnit::Community);
    assert_eq!(o.period_window, Some(28 * day));
    assert!(spec
        .period_windows(o)
        .iter()
        .all(|w| w.end - w.start == 28 * day));
    // Members are counted per member by default; the plan's hash covers
    // the new fields only when they are set.
    assert!(spec.canonical_json().contains("\"unit\":\"community\""));
    assert!(spec.canonical_json().contains("\"period_window\":\"28d\""));
    let hash = parse_trial(include_str!("../testdata/valid_hash.toml"), "h.toml").unwrap();
    assert!(!hash.canonical_json().contains("period_window"));
    assert!(hash.periods().is_empty());
}
