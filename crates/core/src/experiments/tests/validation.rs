use super::*;
use serde_json::json;

#[test]
fn valid_fixtures_parse() {
    let h = spec(VALID_HASH, "valid_hash.toml");
    assert_eq!(
        h.design,
        Design::Hash {
            salt: "onboarding-copy".into()
        }
    );
    assert_eq!(h.salt(), "onboarding-copy");
    assert_eq!(h.unit, Unit::User);
    assert_eq!(h.total_weight(), 4);
    assert_eq!(h.control().variant, "long");
    assert_eq!(h.analysis.horizon, Horizon::Sequential { looks: 3 });
    assert_eq!(h.analysis.sidedness, Sidedness::OneSided);
    assert_eq!(h.analysis.power, 0.8);
    assert_eq!((h.analysis.mde, h.analysis.sample_size), (None, Some(4000)));
    assert_eq!(
        h.schedule.start,
        parse_rfc3339("2027-01-01T00:00:00Z").unwrap()
    );
    assert_eq!(
        h.schedule.end,
        parse_rfc3339("2027-01-31T23:00:00Z").unwrap()
    );
    assert_eq!(
        h.layer,
        Some(Layer {
            name: "onboarding".into(),
            from: 0,
            to: 5000
        })
    );
    assert!(!h.exposure.bulk);
    assert!(h.notes.is_empty() && h.surveys.is_empty());
    let ctx = json!({"targetingKey": "u", "community": "coop-b"});
    assert!(h.is_eligible(&EvalContext::new(&ctx, 0)));
    let ctx = json!({"targetingKey": "u", "community": "social-c"});
    assert!(!h.is_eligible(&EvalContext::new(&ctx, 0)));

    let c = spec(VALID_CLUSTER, "valid_cluster.toml");
    assert_eq!(c.design.communities().unwrap().len(), 7);
    assert_eq!(c.metrics.primary.direction, Direction::Decrease);
    assert_eq!(c.analysis.correction, Correction::Bh);
    assert!(c.is_eligible(&EvalContext::empty(0)));

    let w = spec(VALID_WEDGE, "valid_wedge.toml");
    let day = 86_400;
    let first = parse_rfc3339("2027-03-01T00:00:00Z").unwrap();
    match &w.design {
        Design::SteppedWedge { steps, communities } => {
            assert_eq!(steps, &vec![first, first + 28 * day, first + 56 * day]);
            assert_eq!(communities.len(), 6);
        }
        d => panic!("{d:?}"),
    }
    let ctx = json!({"org": {"community": "radio-f"}});
    assert_eq!(
        w.unit.unit_id(&EvalContext::new(&ctx, 0)).as_deref(),
        Some("radio-f")
    );
    assert_eq!(w.unit.unit_id(&EvalContext::empty(0)), None);
}

#[test]
fn invalid_fixtures_report_every_error_with_position_and_field() {
    for (file, src, expected) in [
        (
            "invalid_many.toml",
            include_str!("../testdata/invalid_many.toml"),
            include_str!("../testdata/invalid_many.errors"),
        ),
        (
            "invalid_design.toml",
            include_str!("../testdata/invalid_design.toml"),
            include_str!("../testdata/invalid_design.errors"),
        ),
        (
            "invalid_blocked.toml",
            include_str!("../testdata/invalid_blocked.toml"),
            include_str!("../testdata/invalid_blocked.errors"),
        ),
        (
            "invalid_syntax.toml",
            include_str!("../testdata/invalid_syntax.toml"),
            include_str!("../testdata/invalid_syntax.errors"),
        ),
        (
            "invalid_missing.toml",
            include_str!("../testdata/invalid_missing.toml"),
            include_str!("../testdata/invalid_missing.errors"),
        ),
    ] {
        let got = error_lines(src, file);
        let want: Vec<&str> = expected.lines().collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn error_fields_are_structured() {
    let Err(errors) = parse_trial(include_str!("../testdata/invalid_many.toml"), "t.toml") else {
        panic!("should not validate");
    };
    let e = errors
        .iter()
        .find(|e| e.field == "arms[1].control")
        .unwrap();
    assert_eq!((e.file.as_str(), e.line, e.column), ("t.toml", 20, 11));
    assert_eq!(e.message, "expected true or false, found a string");
    assert_eq!(
        e.to_string(),
        "t.toml:20:11: arms[1].control: expected true or false, found a string"
    );
}

/// Replaces the first occurrence of `from` (which must occur) in `src`.
fn edit(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "{from:?} not in source");
    src.replacen(from, to, 1)
}

#[test]
fn cross_field_rules() {
    // No control arm, and two.
    let none = edit(VALID_HASH, "control = true\n", "");
    assert_eq!(
        error_lines(&none, "f"),
        ["f:12:1: arms: exactly one arm must have control = true, found 0"]
    );
    let two = edit(VALID_HASH, "weight = 3\n", "weight = 3\ncontrol = true\n");
    assert_eq!(
        error_lines(&two, "f"),
        ["f:12:1: arms: exactly one arm must have control = true, found 2"]
    );
    // A single arm.
    let one = VALID_HASH.replacen("[[arms]]\nvariant = \"short\"\nweight = 3\n", "", 1);
    assert_eq!(
        error_lines(&one, "f"),
        ["f:12:1: arms: a trial needs at least 2 arms (one of them control), found 1"]
    );
    // A user attribute.
    let attr = edit(
        VALID_HASH,
        "kind = \"user\"\n",
        "kind = \"user\"\nattribute = \"x\"\n",
    );
    assert_eq!(
        error_lines(&attr, "f"),
        ["f:23:13: unit.attribute: only a community unit names an attribute; a user is the OFREP targetingKey"]
    );
    // Eligibility as a JSON string that is JSON but not a valid rule.
    let elig = edit(
        VALID_HASH,
        "eligibility = { in = [{ var = \"community\" }, [\"wiki-a\", \"coop-b\"]] }",
        "eligibility = '{\"==\": [1]}'",
    );
    assert_eq!(
        error_lines(&elig, "f"),
        ["f:6:15: eligibility: invalid targeting rule: /==: \"==\" expects exactly 2 arguments, got 1"]
    );
    // Too few communities for the weights of a cluster design.
    let few = edit(
        VALID_CLUSTER,
        "\"c1\", \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\"",
        "\"c1\", \"c2\"",
    );
    assert_eq!(
        error_lines(&few, "f"),
        ["f:30:15: design.communities: 2 communities split by the arm weights leave arm \"banner\" with none; list more communities or change the weights"]
    );
    // A layer on a design that lists communities.
    let layered = format!("{VALID_CLUSTER}\n[layer]\nname = \"l\"\nfrom = 0\nto = 10\n");
    assert_eq!(
        error_lines(&layered, "f"),
        ["f:47:1: layer: a cluster design lists its communities explicitly; remove the layer (trials on disjoint community lists do not conflict)"]
    );
    // Stepped-wedge steps outside the schedule, and more steps than communities.
    let late = edit(VALID_WEDGE, "step_count = 3", "step_count = 5");
    assert_eq!(
        error_lines(&late, "f"),
        ["f:27:14: design.steps: every step must fall after schedule.start (2027-02-01T00:00:00Z) and before schedule.end (2027-06-01T00:00:00Z); the steps run from 2027-03-01T00:00:00Z to 2027-06-21T00:00:00Z"]
    );
    let crowded = edit(VALID_WEDGE, ", \"garden-e\", \"radio-f\"", "");
    let crowded = edit(&crowded, ", \"social-c\", \"hackerspace-d\"", "");
    assert_eq!(
        error_lines(&crowded, "f"),
        ["f:26:15: design.communities: 2 communities cannot fill 3 steps; list at least as many communities as steps"]
    );
    let both = edit(
        VALID_WEDGE,
        "step_count = 3",
        "step_count = 3\nsteps = [2027-03-01]",
    );
    assert_eq!(
        error_lines(&both, "f"),
        ["f:30:9: design.steps: give either steps (a list of dates) or first_step + step_days + step_count, not both"]
    );
    // Stepped wedge with three arms.
    let three = edit(
        VALID_WEDGE,
        "[unit]",
        "[[arms]]\nvariant = \"extra\"\nweight = 1\n\n[unit]",
    );
    assert_eq!(
        error_lines(&three, "f"),
        ["f:29:8: design.kind: a stepped_wedge design needs exactly 2 arms (control and treatment), found 3"]
    );
    // Default block size: twice the minimal block, at least 4.
    let blocked = edit(
        VALID_HASH,
        "kind = \"hash\"",
        "kind = \"blocked\"\nstrata = [\"community\", \"role\"]",
    );
    let b = spec(&blocked, "f");
    assert_eq!(b.minimal_block(), 4);
    assert_eq!(
        b.design,
        Design::Blocked {
            strata: vec!["community".into(), "role".into()],
            block_size: 8
        }
    );
    let ctx = json!({"community": "wiki-a", "role": 3});
    assert_eq!(b.stratum(&EvalContext::new(&ctx, 0)), r#"["wiki-a",3]"#);
    assert_eq!(b.stratum(&EvalContext::empty(0)), "[null,null]");
}

#[test]
fn next_change_is_the_next_schedule_or_ramp_instant() {
    let src = VALID_HASH.replacen(
        "end = \"2027-02-01T00:00:00+01:00\"",
        "end = \"2027-02-01T00:00:00+01:00\"\nramp = [{ at = 2027-01-01T00:00:00Z, percent = 10 }, { at = 2027-01-05T12:00:00Z, percent = 100 }]",
        1,
    );
    let h = spec(&src, "h");
    assert_eq!(h.schedule.ramp.len(), 2);
    let start = parse_rfc3339("2027-01-01T00:00:00Z").unwrap();
    let step = parse_rfc3339("2027-01-05T12:00:00Z").unwrap();
    let end = parse_rfc3339("2027-01-31T23:00:00Z").unwrap();
    assert_eq!(h.next_change(start - 100), Some(start));
    assert_eq!(h.next_change(start), Some(step));
    assert_eq!(h.next_change(step - 1), Some(step));
    assert_eq!(h.next_change(step), Some(end));
    assert_eq!(h.next_change(end), None);
    // An eligibility rule that reads the clock (thanks-button's reads
    // $flagd.timestamp) may change the answer every second.
    let thanks = spec(THANKS, "thanks-button.toml");
    assert_eq!(thanks.next_change(end + 5), Some(end + 6));
}

#[test]
fn ramp_and_schedule() {
    let s = spec(THANKS, "thanks-button.toml").schedule;
    let start = parse_rfc3339("2027-01-11T09:00:00Z").unwrap();
    assert_eq!(s.ramp_percent(start - 1), 0);
    assert_eq!(s.ramp_percent(start), 20);
    assert_eq!(s.ramp_percent(start + 3 * 86_400), 100);
    assert_eq!(s.ramp_percent(s.end), 0);
    let thanks = spec(THANKS, "thanks-button.toml");
    let mut early = 0;
    for i in 0..10_000 {
        let u = format!("user-{i}");
        let first = thanks.in_ramp(&u, start);
        early += u32::from(first);
        assert!(!first || thanks.in_ramp(&u, start + 3 * 86_400));
        assert!(thanks.in_ramp(&u, start + 3 * 86_400));
        assert!(!thanks.in_ramp(&u, start - 1));
    }
    assert!((1_800..2_200).contains(&early), "{early}");
    let plain = Schedule {
        start: 0,
        end: 10,
        ramp: Vec::new(),
    };
    assert_eq!(plain.ramp_percent(5), 100);
}

#[test]
fn examples_validate_and_match_the_flags() {
    let flags = flags();
    let thanks = spec(THANKS, "experiments/thanks-button.toml");
    let dash = spec(DASHBOARD, "experiments/value-dashboard.toml");
    assert_eq!(thanks.check_against_flags(&flags), vec![]);
    assert_eq!(dash.check_against_flags(&flags), vec![]);
    assert_eq!(thanks.design.kind(), "blocked");
    assert_eq!(dash.design.kind(), "stepped_wedge");
    assert_eq!(dash.design.communities().unwrap().len(), 4);
    assert!(thanks.conflicts_with(&dash).is_none());

    // Eligibility: members active in the last 30 days.
    let now = parse_rfc3339("2027-02-01T00:00:00Z").unwrap();
    let active = json!({"targetingKey": "u1", "community": "coop-b", "role": "member", "lastActiveAt": now - 86_400});
    let stale = json!({"targetingKey": "u1", "community": "coop-b", "role": "member", "lastActiveAt": now - 31 * 86_400});
    let guest =
        json!({"targetingKey": "u1", "community": "coop-b", "role": "guest", "lastActiveAt": now});
    assert!(thanks.is_eligible(&EvalContext::new(&active, now)));
    assert!(!thanks.is_eligible(&EvalContext::new(&stale, now)));
    assert!(!thanks.is_eligible(&EvalContext::new(&guest, now)));
}

#[test]
fn flag_checks_name_the_field() {
    let flags = flags();
    let wrong_flag = edit(VALID_HASH, "flag = \"new-member-guide\"", "flag = \"nope\"");
    let errors = spec(&wrong_flag, "f").check_against_flags(&flags);
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        ["f:5:8: flag: no flag \"nope\" in the flag set; known flags: new-member-guide, thanks-button, value-dashboard"]
    );
    let wrong_variant = edit(VALID_CLUSTER, "variant = \"heart\"", "variant = \"hearts\"");
    let wrong_variant = edit(
        &wrong_variant,
        "wp3_feature = \"gratitude-reward\"",
        "wp3_feature = \"thanks\"",
    );
    let errors = spec(&wrong_variant, "f").check_against_flags(&flags);
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        [
            "f:17:11: arms[1].variant: \"hearts\" is not a variant of flag \"thanks-button\"; its variants are: control, heart, banner",
            "f:9:15: links.wp3_feature: flag \"thanks-button\" says its wp3Feature is \"gratitude-reward\", the trial says \"thanks\"; make them agree",
        ]
    );
}

#[test]
fn dates_may_be_strings_or_toml_datetimes() {
    let s = edit(
        VALID_CLUSTER,
        "start = 2027-01-01",
        "start = \"2027-01-01T01:00:00+01:00\"",
    );
    assert_eq!(
        spec(&s, "f").schedule.start,
        parse_rfc3339("2027-01-01").unwrap()
    );
}
