//! When a trial's data are complete (`TrialSpec::completion`).

use super::*;

fn t(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

#[test]
fn members_randomised_complete_when_the_longest_window_closes_after_exposure_ends() {
    // valid_hash.toml: one metric, window 0d..7d; schedule 2027-01-01 to
    // 2027-02-01T00:00:00+01:00 (2027-01-31T23:00:00Z).
    let s = spec(VALID_HASH, "valid_hash.toml");
    let end = t("2027-01-31T23:00:00Z");
    let c = s.completion(t("2026-12-20T00:00:00Z"), None);
    assert_eq!(c.at(), Some(end + 7 * 86_400));
    assert!(!c.is_complete(end + 7 * 86_400 - 1));
    assert!(c.is_complete(end + 7 * 86_400));
    let why = c.describe();
    assert!(
        why.contains("7d after first exposure") && why.contains("2027-02-07T23:00:00Z"),
        "{why}"
    );
    // Stopped early: exposure ended at the stop.
    let stop = t("2027-01-10T00:00:00Z");
    let c = s.completion(t("2026-12-20T00:00:00Z"), Some(stop));
    assert_eq!(c.at(), Some(stop + 7 * 86_400));
    // A stop after the schedule's end changes nothing.
    let c = s.completion(t("2026-12-20T00:00:00Z"), Some(end + 99));
    assert_eq!(c.at(), Some(end + 7 * 86_400));
}

#[test]
fn the_longest_window_of_every_metric_counts() {
    // thanks-button.toml: the longest window among primary, secondary and
    // guardrail metrics decides.
    let s = spec(THANKS, "thanks-button.toml");
    let m = &s.metrics;
    let longest = std::iter::once(&m.primary)
        .chain(&m.secondary)
        .chain(&m.guardrails)
        .map(|m| m.window.end_secs)
        .max()
        .unwrap();
    let c = s.completion(s.schedule.start, None);
    assert_eq!(c.at(), Some(s.schedule.end + longest));
    match c {
        Completion::Windows {
            window_end_secs,
            metric,
            ..
        } => {
            assert_eq!(window_end_secs, longest);
            let named = std::iter::once(&m.primary)
                .chain(&m.secondary)
                .chain(&m.guardrails)
                .find(|x| x.name == metric)
                .unwrap();
            assert_eq!(named.window.end_secs, longest);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn communities_randomised_complete_when_the_last_period_closes() {
    let s = spec(VALID_WEDGE, "valid_wedge.toml");
    let c = s.completion(t("2027-01-15T00:00:00Z"), None);
    assert_eq!(
        c,
        Completion::LastPeriod {
            at: t("2027-06-01T00:00:00Z")
        }
    );
    let stop = t("2027-05-01T00:00:00Z");
    assert_eq!(
        s.completion(t("2027-01-15T00:00:00Z"), Some(stop)).at(),
        Some(stop)
    );
    let s = spec(VALID_CLUSTER, "valid_cluster.toml");
    assert_eq!(
        s.completion(t("2027-01-15T00:00:00Z"), None).at(),
        Some(t("2027-06-01T00:00:00Z"))
    );
}

#[test]
fn a_trial_that_can_expose_nobody_is_never_complete() {
    let s = spec(VALID_HASH, "valid_hash.toml");
    // Stopped before its schedule began.
    let c = s.completion(t("2026-12-01T00:00:00Z"), Some(t("2026-12-02T00:00:00Z")));
    assert_eq!(c.at(), None);
    assert!(!c.is_complete(i64::MAX));
    assert!(
        c.describe().contains("no unit can be exposed"),
        "{}",
        c.describe()
    );
    // Started after its schedule ended.
    let c = s.completion(t("2027-03-01T00:00:00Z"), None);
    assert_eq!(c.at(), None);
}
