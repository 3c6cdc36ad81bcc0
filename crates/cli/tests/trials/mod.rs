//! `experiments` and `metrics`: trial files checked, the lifecycle, metrics computed in the database.

use super::*;

mod guards;

/// `experiments validate` over the repository's own trial files.
#[test]
fn the_shipped_trials_are_valid() {
    let o = commonlab()
        .args(["experiments", "validate"])
        .current_dir(workspace())
        .env("COMMONLAB_DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("thanks-button.toml") && out.contains("value-dashboard.toml"),
        "{out}"
    );
}

#[test]
fn invalid_trials_list_every_error_with_its_place() {
    let bad = fixtures().join("bad-trial.toml");
    let flags = workspace().join("experiments/flags.json");
    let o = commonlab()
        .args([
            "experiments",
            "validate",
            bad.to_str().unwrap(),
            "--flags",
            flags.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bad-trial.toml:2:8: flag:"), "{err}");
    assert!(err.contains("bad-trial.toml:5:8: unit.kind:"), "{err}");
    assert!(err.lines().count() >= 3, "{err}");
}

#[tokio::test]
async fn trial_lifecycle_from_the_command_line() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let flags = workspace().join("experiments/flags.json");
        let trial = workspace().join("experiments/thanks-button.toml");
        let o = run(
            &url,
            &["flags", "import", flags.to_str().unwrap(), "--reason", "t"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(
            &url,
            &[
                "experiments",
                "create",
                trial.to_str().unwrap(),
                "--reason",
                "pilot",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(
            &url,
            &[
                "experiments",
                "create",
                trial.to_str().unwrap(),
                "--reason",
                "again",
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        let o = run(
            &url,
            &[
                "experiments",
                "start",
                "thanks-button",
                "--reason",
                "ethics approved",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("plan locked"), "{}", stdout(&o));
        let o = run(&url, &["experiments", "list"]);
        assert!(
            stdout(&o).contains("thanks-button") && stdout(&o).contains("running"),
            "{}",
            stdout(&o)
        );
        // Disabling the running trial's flag is a deviation in its log
        // (issue #10, item 19).
        let o = run(
            &url,
            &[
                "flags",
                "set-state",
                "thanks-button",
                "disabled",
                "--reason",
                "assembly week",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("recorded as a deviation in running trial 'thanks-button'"),
            "{}",
            stdout(&o)
        );
        let o = run(&url, &["experiments", "show", "thanks-button"]);
        let out = stdout(&o);
        assert!(
            out.contains("deviations from the plan: 1")
                && out.contains("deviation by cli:")
                && out.contains("state ENABLED -> DISABLED")
                && out.contains("assembly week"),
            "{out}"
        );
        let o = run(
            &url,
            &["experiments", "stop", "thanks-button", "--reason", "pause"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(
            &url,
            &["experiments", "stop", "thanks-button", "--reason", "pause"],
        );
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("stopped"), "{}", stderr(&o));
        let o = run(&url, &["experiments", "show", "thanks-button"]);
        let out = stdout(&o);
        assert!(
            out.contains("start by cli:")
                && out.contains("ethics approved")
                && out.contains("seed"),
            "{out}"
        );
        let o = run(&url, &["experiments", "assignments", "thanks-button"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).starts_with("trial,unit,arm,"), "{}", stdout(&o));
    })
    .await;
}

/// A trial whose metrics come from the library beside it: `experiments
/// create` stores it with the definitions inlined, and `analyze --trial`
/// computes every metric in the database and analyses it.
#[tokio::test]
async fn metrics_from_the_library_are_computed_in_the_database() {
    use commonlab_core::privacy::{pseudonymise, StudyKey};
    use commonlab_store::{ExposureSource, NewExposure};
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = fixtures().join("refs");
        let trial = dir.join("trial.toml");
        let flags = workspace().join("experiments/flags.json");
        let o = run(&url, &["flags", "import", flags.to_str().unwrap(), "--reason", "t"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(&url, &["metrics", "validate", dir.join("metrics.toml").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("3 metrics"), "{}", stdout(&o));
        let o = run(&url, &["experiments", "create", trial.to_str().unwrap(), "--reason", "t"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let stored = db.store().get_trial("refs-trial").await.unwrap().unwrap();
        assert!(!stored.spec_source.contains("ref ="), "{}", stored.spec_source);
        assert!(stored.spec_source.contains("filter = { kind = \"public\" }"));
        let o = run(&url, &["experiments", "start", "refs-trial", "--reason", "t"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

        // Exposures as the server records them (pseudonymised ids) and
        // events imported with the same study key.
        let work = Scratch::new("metrics");
        let key_file = work.join("study.key");
        std::fs::write(&key_file, "22".repeat(32)).unwrap();
        let key = StudyKey::from_key_file(&"22".repeat(32)).unwrap();
        let t0: chrono::DateTime<chrono::Utc> = "2026-01-05T12:00:00Z".parse().unwrap();
        let members = [
            ("m1", "control"),
            ("m2", "control"),
            ("m3", "control"),
            ("m4", "heart"),
            ("m5", "heart"),
            ("m6", "heart"),
            ("m7", "heart"),
        ];
        let exposures: Vec<NewExposure> = members
            .iter()
            .map(|(m, arm)| NewExposure {
                trial_id: stored.id,
                unit: pseudonymise(&key, m).into_string(),
                arm: arm.to_string(),
                community: Some("wiki-a".into()),
                trial_version: 1,
                at: t0,
                source: ExposureSource::Single,
                excluded_reason: None,
            })
            .collect();
        db.store().record_exposures(&exposures).await.unwrap();
        // (member, event, days after exposure, properties)
        let events = [
            ("m1", "contribution_created", 1.0, "{}"),
            ("m1", "contribution_created", -2.0, "{}"),
            ("m2", "contribution_created", 8.0, "{}"), // after the window
            ("m3", "contribution_created", 6.9, "{}"),
            ("m4", "contribution_created", 0.0, "{}"), // at exposure: in
            ("m4", "contribution_created", 3.0, "{}"),
            ("m4", "contribution_created", -1.0, "{}"),
            ("m5", "contribution_created", 7.0, "{}"), // at the end: out
            ("m6", "contribution_created", 2.0, "{}"),
            ("m6", "thanks_given", 2.0, r#"{"kind": "public", "size": 3}"#),
            ("m6", "thanks_given", 2.5, r#"{"kind": "private", "size": 100}"#),
            ("m7", "thanks_given", 1.0, r#"{"kind": "public", "size": 2.5}"#),
            ("m7", "thanks_given", 1.5, r#"{"kind": "public", "size": "big"}"#),
        ];
        let ndjson: String = events
            .iter()
            .enumerate()
            .map(|(i, (m, name, days, props))| {
                let ts = t0 + chrono::Duration::seconds((days * 86_400.0) as i64);
                format!(
                    "{{\"event_id\": \"00000000-0000-4000-8000-{i:012}\", \"unit\": \"{m}\", \"community\": \"wiki-a\", \"name\": \"{name}\", \"timestamp\": \"{}\", \"properties\": {props}}}\n",
                    ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .collect();
        let file = work.join("events.ndjson");
        std::fs::write(&file, ndjson).unwrap();
        let o = commonlab()
            .args(["events", "import", file.to_str().unwrap(), "--study-key-file", key_file.to_str().unwrap()])
            .env("COMMONLAB_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

        // The rows the design produced (hash: per-(metric, arm, community)
        // sufficient statistics), as CSV.
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-02-01T00:00:00Z", "--rows"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let csv = stdout(&o);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(&header[..5], ["metric", "arm", "community", "n", "sum"]);
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        let cell = |metric: &str, arm: &str, field: &str| -> f64 {
            let i = header.iter().position(|h| *h == field).unwrap();
            rows.iter()
                .find(|r| r[0] == metric && r[1] == arm)
                .unwrap_or_else(|| panic!("{metric}/{arm} in {csv}"))[i]
                .parse()
                .unwrap()
        };
        // contributions in days [0, 7): control m1 1, m2 0, m3 1; heart
        // m4 2, m5 0, m6 1, m7 0. Covariate days [-7, 0): m1 1, m4 1.
        assert_eq!(
            (cell("contributions", "control", "n"), cell("contributions", "control", "sum"), cell("contributions", "control", "sum_squares")),
            (3.0, 2.0, 2.0)
        );
        assert_eq!(
            (cell("contributions", "heart", "n"), cell("contributions", "heart", "sum"), cell("contributions", "heart", "sum_squares")),
            (4.0, 3.0, 5.0)
        );
        assert_eq!((cell("contributions", "control", "x_sum"), cell("contributions", "control", "xy_sum")), (1.0, 1.0));
        assert_eq!((cell("contributions", "heart", "x_sum"), cell("contributions", "heart", "xy_sum")), (1.0, 2.0));
        assert!(!rows.iter().any(|r| r[1] == "banner"), "nobody in banner: {csv}");
        assert_eq!(cell("contributed", "heart", "sum"), 2.0);
        assert_eq!(cell("contributed", "heart", "x_sum"), 0.0, "covariate = false");
        // Public thanks only, numeric sizes only: m6 3, m7 2.5.
        assert_eq!(cell("big_thanks", "heart", "sum"), 5.5);
        assert_eq!(cell("big_thanks", "heart", "sum_squares"), 15.25);

        // The whole analysis, and its Markdown form.
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let roles: Vec<(String, String)> = v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().into(), m["direction"].as_str().unwrap().into()))
            .collect();
        assert_eq!(
            roles,
            [
                ("contributions".to_string(), "increase".to_string()),
                ("contributed".into(), "increase".into()),
                ("big_thanks".into(), "decrease".into())
            ]
        );
        let heart = v["metrics"][0]["estimates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["arm"] == "heart")
            .unwrap_or_else(|| panic!("{v}"));
        // The covariate explains something here: CUPED leads, Welch beside.
        assert_eq!(heart["method"], "cuped", "{heart}");
        let welch = heart["beside"].as_array().unwrap().iter().find(|b| b["method"] == "welch").unwrap();
        let effect = welch["estimate"].as_f64().unwrap();
        assert!((effect - (3.0 / 4.0 - 2.0 / 3.0)).abs() < 1e-12, "{heart}");
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--format", "md", "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("big_thanks (guardrail, mean, decrease)"), "{}", stdout(&o));
        // Before any window has closed nobody is analysed, and it says why.
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-01-06T00:00:00Z"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["metrics"][0]["n"]["control"].as_f64(), Some(0.0));
        // (The fixture's schedule starts in 2027; its exposures were
        // written straight into the store.)
        assert!(v["notice"].as_str().unwrap().contains("starts at 2027-01-01"), "{v}");
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-01-06T00:00:00Z", "--rows"]);
        assert_eq!(stdout(&o).lines().count(), 1, "the header alone: {}", stdout(&o));

        let o = run(&url, &["metrics", "sql", "refs-trial", "big_thanks", "--explain"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("WITH exp AS"), "{}", stdout(&o));
        let o = run(&url, &["metrics", "sql", "refs-trial", "nope"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("contributions, contributed, big_thanks"), "{}", stderr(&o));
        let o = run(&url, &["analyze", "--trial", "missing"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "soon"]);
        assert_eq!(o.status.code(), Some(1));
    })
    .await;
}

/// A reference to a metric the library lacks is reported at its place.
#[test]
fn unknown_metric_references_are_reported() {
    let dir = Scratch::new("badref");
    let src = std::fs::read_to_string(fixtures().join("refs/trial.toml")).unwrap();
    std::fs::write(
        dir.join("trial.toml"),
        src.replace("ref = \"contributed\"", "ref = \"contributd\""),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("refs/metrics.toml"),
        dir.join("metrics.toml"),
    )
    .unwrap();
    let flags = workspace().join("experiments/flags.json");
    let o = commonlab()
        .args([
            "experiments",
            "validate",
            dir.to_str().unwrap(),
            "--flags",
            flags.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("metrics.toml (metric library, 3 metrics)"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o)
            .contains("trial.toml:34:7: metrics.secondary[0].ref: unknown metric \"contributd\""),
        "{}",
        stderr(&o)
    );
}

/// `experiments show` prints a switchback's community × period grid, the
/// one its recorded seed draws.
#[tokio::test]
async fn show_prints_the_switchback_grid() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let flags = workspace().join("experiments/flags.json");
        let trial = workspace().join("experiments/thanks-button-switchback.toml");
        for args in [
            vec!["flags", "import", flags.to_str().unwrap(), "--reason", "t"],
            vec!["experiments", "create", trial.to_str().unwrap(), "--reason", "plan"],
            vec!["experiments", "start", "thanks-button-switchback", "--reason", "go"],
        ] {
            let o = run(&url, &args);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
        let o = run(&url, &["experiments", "show", "thanks-button-switchback", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let seed = v["trial"]["seed"].as_i64().unwrap() as u64;
        let src = std::fs::read_to_string(&trial).unwrap();
        let spec = commonlab_core::experiments::parse_trial(&src, "t").unwrap();
        let grid = commonlab_core::experiments::switchback_schedule(&spec, seed).unwrap();
        let o = run(&url, &["experiments", "show", "thanks-button-switchback"]);
        let out = stdout(&o);
        assert!(
            out.contains("switchback (balanced scheme, washout 1d at the start of each period): X = heart, . = control"),
            "{out}"
        );
        for (c, on) in grid.communities.iter().zip(&grid.on) {
            let cells: String = on
                .iter()
                .map(|&x| format!("{:>3}", if x { "X" } else { "." }))
                .collect();
            let line = format!("{c:13} {cells}");
            assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
        }
        assert!(out.contains("period   8: 2027-05-03"), "{out}");
    })
    .await;
}
