//! The switchback design: validation (data-driven fixtures), its periods
//! and washout, and its schedule (known vectors from an independent
//! implementation, `reference/switchback.py`; the scheme's constraints;
//! reproducibility).

use super::*;

const VALID: &str = include_str!("../testdata/valid_switchback.toml");
const EXAMPLE: &str = include_str!("../../../../../experiments/thanks-button-switchback.toml");
const COMMUNITIES: [&str; 4] = ["wiki-a", "coop-b", "social-c", "hackerspace-d"];

fn with_scheme(scheme: &str) -> TrialSpec {
    let src = EXAMPLE.replace("scheme = \"balanced\"", &format!("scheme = {scheme}"));
    spec(&src, "t.toml")
}

#[test]
fn bad_switchbacks_are_refused_with_file_line_and_field() {
    for (file, src, expected) in [
        (
            "invalid_switchback.toml",
            include_str!("../testdata/invalid_switchback.toml"),
            include_str!("../testdata/invalid_switchback.errors"),
        ),
        (
            "invalid_switchback_periods.toml",
            include_str!("../testdata/invalid_switchback_periods.toml"),
            include_str!("../testdata/invalid_switchback_periods.errors"),
        ),
        (
            "invalid_switchback_one.toml",
            include_str!("../testdata/invalid_switchback_one.toml"),
            include_str!("../testdata/invalid_switchback_one.errors"),
        ),
        (
            "invalid_switchback_tiling.toml",
            include_str!("../testdata/invalid_switchback_tiling.toml"),
            include_str!("../testdata/invalid_switchback_tiling.errors"),
        ),
    ] {
        let got = error_lines(src, file);
        let want: Vec<&str> = expected.lines().collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn explicit_boundaries_periods_and_washout() {
    let s = spec(VALID, "valid_switchback.toml");
    let t = |x: &str| parse_rfc3339(x).unwrap();
    let Design::Switchback {
        communities,
        boundaries,
        scheme,
        washout,
    } = &s.design
    else {
        panic!("{:?}", s.design)
    };
    assert_eq!(communities.len(), 4);
    assert_eq!(boundaries.len(), 4);
    assert_eq!(*scheme, SwitchbackScheme::Independent { probability: 0.25 });
    assert_eq!(*washout, 12 * 3600);
    assert!(s.is_community_design());
    let periods = s.periods();
    assert_eq!(periods.len(), 3);
    assert_eq!(
        (periods[2].start, periods[2].end),
        (t("2027-03-15T00:00:00Z"), t("2027-03-29T00:00:00Z"))
    );
    // The windows end with their periods and never reach into a washout:
    // the shortest period (7d) less the washout (12h).
    let windows = s.period_windows(&s.metrics.primary);
    for (w, p) in windows.iter().zip(&periods) {
        assert_eq!(w.end, p.end);
        assert_eq!(w.end - w.start, 7 * 86_400 - 12 * 3600);
        assert!(w.start >= p.start + 12 * 3600);
    }
    // The last period ends before the schedule: complete then.
    assert_eq!(
        s.completion(t("2027-02-01T00:00:00Z"), None).at(),
        Some(t("2027-03-29T00:00:00Z"))
    );
    // Locked: the design's fields are in the canonical JSON.
    let c: serde_json::Value = serde_json::from_str(&s.canonical_json()).unwrap();
    assert_eq!(c["design"]["scheme"], "independent");
    assert_eq!(c["design"]["probability"], 0.25);
    assert_eq!(c["design"]["washout"], "12h");
    assert_eq!(c["design"]["boundaries"][3], "2027-03-29T00:00:00Z");
}

#[test]
fn the_example_validates_against_the_example_flags() {
    let s = spec(EXAMPLE, "thanks-button-switchback.toml");
    assert!(s.check_against_flags(&flags()).is_empty());
    assert_eq!(s.periods().len(), 8);
    assert_eq!(s.design.washout(), 86_400);
    let w = s.period_windows(&s.metrics.primary);
    assert_eq!(w[0].end - w[0].start, 6 * 86_400);
    // The same flag as the per-member trial, so never running at once: it
    // is scheduled after that one ends.
    let thanks = spec(THANKS, "thanks-button.toml");
    assert!(s.conflicts_with(&thanks).is_some());
    assert!(s.schedule.start >= thanks.schedule.end);
}

/// Known vectors from `reference/switchback.py` (`switchback.txt`).
#[test]
fn schedules_match_the_independent_implementation() {
    let known = include_str!("../reference/switchback.txt");
    let mut checked = 0;
    for line in known.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (scheme, seed, community, grid) = (f[0], f[1].parse::<u64>().unwrap(), f[2], f[3]);
        let s = match scheme {
            "independent" => with_scheme("\"independent\"\nprobability = 0.25"),
            other => with_scheme(&format!("\"{other}\"")),
        };
        let sched = switchback_schedule(&s, seed).unwrap();
        let got: String = (0..8)
            .map(|k| {
                if sched.on_in(community, k).unwrap() {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        assert_eq!(got, grid, "{scheme} seed {seed} {community}");
        checked += 1;
    }
    assert_eq!(checked, 24);
}

#[test]
fn schedules_follow_their_scheme_and_are_reproducible() {
    let balanced = with_scheme("\"balanced\"");
    let pairs = with_scheme("\"blocked_pairs\"");
    let independent = with_scheme("\"independent\"\nprobability = 0.3");
    let mut on_cells = 0u64;
    let mut distinct = std::collections::BTreeSet::new();
    for seed in 0..500u64 {
        let b = switchback_schedule(&balanced, seed).unwrap();
        assert_eq!(b.communities.len(), 4);
        for k in 0..8 {
            assert_eq!(b.on.iter().filter(|row| row[k]).count(), 2, "seed {seed}");
        }
        distinct.insert(b.on.clone());
        let p = switchback_schedule(&pairs, seed).unwrap();
        for row in &p.on {
            for q in 0..4 {
                assert!(row[2 * q] != row[2 * q + 1], "seed {seed}");
            }
            assert_eq!(row.iter().filter(|&&x| x).count(), 4);
        }
        let i = switchback_schedule(&independent, seed).unwrap();
        on_cells += i.on.iter().flatten().filter(|&&x| x).count() as u64;
        // A pure function of the spec and the seed.
        assert_eq!(switchback_schedule(&balanced, seed).unwrap(), b);
    }
    // Seeds give different grids.
    assert!(distinct.len() > 450, "{}", distinct.len());
    // 16,000 cells at p = 0.3: within 4 standard deviations.
    let n = 500.0 * 32.0;
    let sd = (n * 0.3 * 0.7_f64).sqrt();
    assert!((on_cells as f64 - 0.3 * n).abs() < 4.0 * sd, "{on_cells}");
    assert!(switchback_schedule(&spec(THANKS, "t.toml"), 1).is_none());
}

#[test]
fn the_clock_picks_the_period_and_the_next_switch() {
    let s = spec(EXAMPLE, "t.toml");
    let sched = switchback_schedule(&s, 42).unwrap();
    let start = s.schedule.start;
    let week = 7 * 86_400;
    for k in 0..8usize {
        let now = start + k as i64 * week + 3600;
        assert_eq!(sched.period_at(now), Some(k));
        assert_eq!(sched.next_switch(now), Some(start + (k as i64 + 1) * week));
        for c in COMMUNITIES {
            assert_eq!(sched.on_at(c, now), sched.on_in(c, k));
        }
    }
    assert_eq!(sched.on_at("wiki-a", start - 1), None);
    assert_eq!(sched.next_switch(start - 1), Some(start));
    assert_eq!(sched.on_at("wiki-a", start + 8 * week), None);
    assert_eq!(sched.next_switch(start + 8 * week), None);
    assert_eq!(sched.on_at("elsewhere", start), None);
}

#[test]
fn the_grid_is_bounded() {
    // 4 communities × 1,000 hourly periods: more cells than analysed.
    let src = EXAMPLE
        .replace("period = \"7d\"", "period = \"1h\"")
        .replace("washout = \"1d\"", "washout = \"10m\"")
        .replace("end = 2027-05-10T00:00:00Z", "end = 2027-04-25T16:00:00Z");
    let lines = error_lines(&src, "t.toml");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("design.communities: 4 communities × 1000 periods = 4000 cells"),
        "{lines:?}"
    );
    // 1,001 periods: refused as such.
    let src = EXAMPLE
        .replace("period = \"7d\"", "period = \"1h\"")
        .replace("washout = \"1d\"", "washout = \"10m\"")
        .replace("end = 2027-05-10T00:00:00Z", "end = 2027-04-25T17:00:00Z");
    let lines = error_lines(&src, "t.toml");
    assert!(
        lines[0].contains("design.period: 1001 periods; at most 1000"),
        "{lines:?}"
    );
}
