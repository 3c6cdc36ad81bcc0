use super::*;

fn edit(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "{from:?} not in source");
    src.replacen(from, to, 1)
}

#[test]
fn canonical_json_is_pinned() {
    // A regression pin: any change here changes every locked trial's hash.
    let h = spec(VALID_HASH, "valid_hash.toml");
    assert_eq!(
        h.canonical_json(),
        include_str!("../testdata/valid_hash.canonical.json").trim_end()
    );
    assert_eq!(
        h.canonical_hash(),
        include_str!("../testdata/valid_hash.canonical.sha256").trim()
    );
    assert_eq!(LOCKED_FIELDS.len(), 9);
    let v: serde_json::Value = serde_json::from_str(&h.canonical_json()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    let mut locked = LOCKED_FIELDS.to_vec();
    locked.sort();
    assert_eq!(keys, locked);
}

#[test]
fn unlocked_fields_and_layout_do_not_change_the_hash() {
    let base = spec(THANKS, "a.toml");
    let changed = edit(THANKS, "title = \"Thanks button:", "title = \"Renamed:");
    let changed = edit(
        &changed,
        "Pilot communities only.",
        "Pilot communities only (amended).",
    );
    let changed = edit(
        &changed,
        "end = 2027-03-08T09:00:00Z",
        "end = 2027-03-22T09:00:00Z",
    );
    let changed = edit(
        &changed,
        "after_first_exposure = \"14d\"",
        "after_first_exposure = \"21d\"",
    );
    let changed = edit(
        &changed,
        "owner = \"wp3-gratitude@commonlab.example\"",
        "owner = \"someone-else\"",
    );
    // Same values, different spelling and order.
    let changed = edit(
        &changed,
        "weight = 2\ncontrol = true",
        "control = true\nweight = 0x2",
    );
    let changed = edit(&changed, "alpha = 0.05", "alpha = 5e-2");
    let other = spec(&changed, "b.toml");
    assert_eq!(base.canonical_json(), other.canonical_json());
    assert_eq!(base.canonical_hash(), other.canonical_hash());
    assert!(base.locked_changes(&other).is_empty());
    // A JSON-string rule and the same rule as a TOML table lock alike.
    let dash = spec(DASHBOARD, "d.toml");
    let as_json = edit(
        DASHBOARD,
        "eligibility = { \"!!\" = [{ var = \"targetingKey\" }] }",
        "eligibility = '{\"!!\": [{\"var\": \"targetingKey\"}]}'",
    );
    assert_eq!(
        dash.canonical_hash(),
        spec(&as_json, "d.toml").canonical_hash()
    );
}

#[test]
fn locked_changes_name_the_fields() {
    let base = spec(THANKS, "a.toml");
    let changed = edit(THANKS, "alpha = 0.05", "alpha = 0.01");
    let changed = edit(
        &changed,
        "variant = \"heart\"\nweight = 1",
        "variant = \"heart\"\nweight = 2",
    );
    let changed = edit(&changed, "block_size = 8", "block_size = 10");
    let changed = edit(&changed, "bulk = false", "bulk = true");
    let changed = edit(&changed, "\"member\", \"moderator\"", "\"member\"");
    let changed = edit(
        &changed,
        "name = \"notification_opt_out\"",
        "name = \"opt_out\"",
    );
    let changed = edit(
        &changed,
        "[[metrics.secondary]]\nname = \"thanks_given\"\nkind = \"count\"\nevents = [\"thanks_given\"]\ndirection = \"increase\"\nwindow = [\"0d\", \"28d\"]\n# Thanks cannot be given before the button exists: no covariate.\ncovariate = false\n",
        "",
    );
    let newer = spec(&changed, "a.toml");
    assert_ne!(base.canonical_hash(), newer.canonical_hash());
    assert_eq!(
        base.locked_changes(&newer),
        [
            "analysis.alpha",
            "arms[1].weight",
            "design.block_size",
            "eligibility",
            "exposure.bulk",
            "metrics.guardrails[1].name",
            "metrics.secondary",
        ]
    );
    assert!(newer.locked_changes(&newer).is_empty());
}

#[test]
fn overlapping_trials_conflict() {
    let a = spec(VALID_HASH, "a.toml");
    let b_src = edit(
        VALID_HASH,
        "key = \"onboarding-copy\"",
        "key = \"onboarding-copy-2\"",
    );
    // Same layer, disjoint ranges: allowed.
    let disjoint = edit(&b_src, "from = 0\nto = 5000", "from = 5000\nto = 10000");
    assert_eq!(a.conflicts_with(&spec(&disjoint, "b")), None);
    // Overlapping ranges.
    let overlap = edit(&b_src, "from = 0\nto = 5000", "from = 4999\nto = 6000");
    let why = a.conflicts_with(&spec(&overlap, "b")).unwrap();
    assert!(why.contains("[0, 5000) and [4999, 6000)"), "{why}");
    // Different layers.
    let other_layer = edit(&b_src, "name = \"onboarding\"", "name = \"other\"");
    assert!(a
        .conflicts_with(&spec(&other_layer, "b"))
        .unwrap()
        .contains("different layers"));
    // No layer on one side.
    let no_layer = b_src.replacen(
        "[layer]\nname = \"onboarding\"\nfrom = 0\nto = 5000\n",
        "",
        1,
    );
    let no_layer = spec(&no_layer, "b");
    assert!(no_layer.layer.is_none());
    assert!(a.conflicts_with(&no_layer).is_some());
    assert!(no_layer.conflicts_with(&a).is_some());
    // Another flag: no conflict.
    let other_flag = edit(
        &b_src,
        "flag = \"new-member-guide\"",
        "flag = \"thanks-button\"",
    );
    assert_eq!(a.conflicts_with(&spec(&other_flag, "b")), None);
    // Another unit on the same flag: always a conflict.
    let community = edit(
        &disjoint,
        "kind = \"user\"",
        "kind = \"community\"\nattribute = \"community\"",
    );
    let why = a.conflicts_with(&spec(&community, "b")).unwrap();
    assert!(why.contains("different units"), "{why}");
    // Cluster trials on disjoint community lists.
    let c = spec(VALID_CLUSTER, "c");
    let c2 = edit(
        VALID_CLUSTER,
        "\"c1\", \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\"",
        "\"d1\", \"d2\", \"d3\", \"d4\"",
    );
    assert_eq!(c.conflicts_with(&spec(&c2, "d")), None);
    let c3 = edit(
        VALID_CLUSTER,
        "\"c1\", \"c2\", \"c3\", \"c4\", \"c5\", \"c6\", \"c7\"",
        "\"d1\", \"c2\", \"d3\", \"c4\"",
    );
    let why = c.conflicts_with(&spec(&c3, "d")).unwrap();
    assert!(why.ends_with("to communities c2, c4"), "{why}");
}
