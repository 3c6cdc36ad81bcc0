//! `report`: a stored trial's report written to a folder (byte-identical
//! `results.json` on a re-run), `report verify` (matching, then naming the
//! first number that changed when the data did), the per-user refusal for
//! community designs, and `report --all` with its index page.

use super::*;

/// Stores the library trial of `fixtures/refs` (hash, 3 arms) with a few
/// exposures and events; returns the study key file.
async fn seeded(db: &commonlab_store::testing::TestDb, url: &str, work: &Scratch) -> PathBuf {
    use commonlab_core::privacy::{pseudonymise, StudyKey};
    use commonlab_store::{ExposureSource, NewExposure};
    let dir = fixtures().join("refs");
    let flags = workspace().join("experiments/flags.json");
    let o = run(
        url,
        &["flags", "import", flags.to_str().unwrap(), "--reason", "t"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let trial = dir.join("trial.toml");
    let o = run(
        url,
        &[
            "experiments",
            "create",
            trial.to_str().unwrap(),
            "--reason",
            "t",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(
        url,
        &["experiments", "start", "refs-trial", "--reason", "t"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stored = db.store().get_trial("refs-trial").await.unwrap().unwrap();
    let key_file = work.join("study.key");
    std::fs::write(&key_file, "22".repeat(32)).unwrap();
    let key = StudyKey::from_key_file(&"22".repeat(32)).unwrap();
    let t0: chrono::DateTime<chrono::Utc> = "2026-01-05T12:00:00Z".parse().unwrap();
    let arms = ["control", "heart", "banner"];
    let exposures: Vec<NewExposure> = (0..30)
        .map(|i| NewExposure {
            trial_id: stored.id,
            unit: pseudonymise(&key, &format!("m{i}")).into_string(),
            arm: arms[i % 3].to_string(),
            community: Some(if i % 2 == 0 { "wiki-a" } else { "coop-b" }.into()),
            trial_version: 1,
            at: t0,
            source: ExposureSource::Single,
            excluded_reason: None,
        })
        .collect();
    db.store().record_exposures(&exposures).await.unwrap();
    let ndjson: String = (0..30)
        .filter(|i| i % 3 != 0 || i % 2 == 0)
        .map(|i| {
            format!(
                "{{\"event_id\": \"00000000-0000-4000-8000-{i:012}\", \"unit\": \"m{i}\", \"community\": \"{}\", \"name\": \"contribution_created\", \"timestamp\": \"2026-01-06T12:00:00Z\", \"properties\": {{}}}}\n",
                if i % 2 == 0 { "wiki-a" } else { "coop-b" }
            )
        })
        .collect();
    import(url, work, &key_file, "events.ndjson", &ndjson);
    key_file
}

/// `commonlab ARGS` on a pseudo-terminal (stdout and stderr both), through
/// util-linux's `script`: what it drew, in `stdout`.
fn on_terminal(url: &str, args: &[&str]) -> Output {
    let line = std::iter::once(BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("COMMONLAB_") {
            command.env_remove(name);
        }
    }
    command
        .args(["-qec", &line, "/dev/null"])
        .env("COMMONLAB_DATABASE_URL", url)
        .env("COMMONLAB_ACTOR", "cli-test")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux)")
}

fn import(url: &str, work: &Scratch, key_file: &Path, name: &str, ndjson: &str) {
    let file = work.write(name, ndjson);
    let o = commonlab()
        .args([
            "events",
            "import",
            file.to_str().unwrap(),
            "--study-key-file",
            key_file.to_str().unwrap(),
        ])
        .env("COMMONLAB_DATABASE_URL", url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[tokio::test]
async fn report_writes_verifies_and_detects_a_changed_number() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let work = Scratch::new("report");
        let key_file = seeded(&db, &url, &work).await;
        let out = work.join("out");
        let args = ["report", "refs-trial", "--out", out.to_str().unwrap(), "--as-of", "2026-02-01T00:00:00Z"];
        let o = run(&url, &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("wrote the report of refs-trial"), "{}", stdout(&o));
        assert_eq!(stderr(&o), "", "no progress bar when not on a terminal");
        for f in ["results.json", "report.md", "report.html", "decision.json", "decision.md", "wp2-parameters.json"] {
            assert!(out.join(f).is_file(), "{f}");
        }
        let first = std::fs::read_to_string(out.join("results.json")).unwrap();
        let o = run(&url, &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(first, std::fs::read_to_string(out.join("results.json")).unwrap(), "byte-identical");
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["footer"]["command"].as_str().unwrap(), format!("commonlab {}", args.join(" ")));
        assert_eq!(v["results"][0]["name"], "contributions");
        let html = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(html.contains("<svg") && !html.contains("<script"));

        let o = run(&url, &["report", "verify", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("every number in"), "{}", stdout(&o));

        // New data inside the window: verify names the first number that moved.
        let late = "{\"event_id\": \"00000000-0000-4000-9000-000000000001\", \"unit\": \"m3\", \"community\": \"coop-b\", \"name\": \"contribution_created\", \"timestamp\": \"2026-01-07T12:00:00Z\", \"properties\": {}}\n";
        import(&url, &work, &key_file, "late.ndjson", late);
        let o = run(&url, &["report", "verify", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains("results.json does not match: "), "{err}");
        assert!(err.contains("the report says"), "{err}");

        // Only some formats.
        let md_only = work.join("md");
        let o = run(&url, &["report", "refs-trial", "--format", "md", "--out", md_only.to_str().unwrap(), "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(md_only.join("report.md").is_file() && !md_only.join("results.json").exists());

        // On a terminal (a pseudo-terminal from util-linux's `script`), a
        // progress bar counts the metrics computed in the database.
        let on_tty = work.join("tty");
        let o = on_terminal(&url, &["report", "refs-trial", "--format", "md", "--out", on_tty.to_str().unwrap(), "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let shown = stdout(&o);
        assert!(shown.contains("refs-trial: computing metrics in the database") || shown.contains("metrics computed in the database"), "{shown}");
        assert!(shown.contains("wrote the report of refs-trial"), "{shown}");
        assert!(on_tty.join("report.md").is_file());

        // Clear errors.
        let o = run(&url, &["report", "no-such-trial", "--out", work.join("x").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("no-such-trial"), "{}", stderr(&o));
        let o = run(&url, &["report", "refs-trial", "--as-of", "soon"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("--as-of: \"soon\" is not an RFC 3339 date-time"), "{}", stderr(&o));
        let o = run(&url, &["report", "verify", work.join("nowhere").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
    })
    .await;
}

#[tokio::test]
async fn per_user_test_of_a_community_trial_is_refused() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let flags = workspace().join("experiments/flags.json");
        let o = run(&url, &["flags", "import", flags.to_str().unwrap(), "--reason", "t"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let trial = workspace().join("experiments/value-dashboard.toml");
        let o = run(&url, &["experiments", "create", trial.to_str().unwrap(), "--reason", "t"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let work = Scratch::new("report-refuse");
        let o = run(&url, &["report", "value-dashboard", "--per-user", "--out", work.join("o").to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains("refused: trial value-dashboard randomised whole communities (stepped_wedge, 4 communities)"),
            "{err}"
        );
        assert!(!work.join("o").exists(), "nothing written");
    })
    .await;
}

/// `experiments conclude KEY --ship ARM`: the trial concluded, the flag
/// serving ARM to everyone, the flag log's reason linking the report;
/// then `report --all` writes it with an index page.
#[tokio::test]
async fn conclude_ship_rolls_the_arm_out_and_report_all_indexes_it() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let work = Scratch::new("report-ship");
        seeded(&db, &url, &work).await;
        // Not an arm: refused, nothing concluded.
        let o = run(&url, &["experiments", "conclude", "refs-trial", "--ship", "confetti", "--force", "--reason", "t"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("\"confetti\" is not an arm of trial 'refs-trial' (its arms: control, heart, banner)"), "{}", stderr(&o));
        let t = db.store().get_trial("refs-trial").await.unwrap().unwrap();
        assert_ne!(t.status.as_str(), "concluded");

        let o = run(&url, &["experiments", "conclude", "refs-trial", "--ship", "heart", "--force", "--reason", "hearts win"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("flag 'thanks-button' now serves variant heart to everyone (roll out"), "{}", stdout(&o));
        let t = db.store().get_trial("refs-trial").await.unwrap().unwrap();
        assert_eq!(t.status.as_str(), "concluded");
        let head = db.store().flag_set_head("default").await.unwrap().unwrap();
        assert_eq!(head.action, "ship");
        assert!(head.reason.starts_with("hearts win (trial 'refs-trial' concluded: roll out of variant heart to everyone; report: /api/v1/trials/refs-trial/report?format=html"), "{}", head.reason);
        let doc: serde_json::Value = serde_json::from_str(&head.document).unwrap();
        let flag = &doc["flags"]["thanks-button"];
        assert_eq!(flag["defaultVariant"], "heart");
        assert_eq!(flag["state"], "ENABLED");
        assert!(flag.get("targeting").is_none(), "{flag}");

        // Every concluded trial's report, with an index page.
        let out = work.join("all");
        let o = run(&url, &["report", "--all", "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let index = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(index.contains("<code>refs-trial</code>") && index.contains("href=\"refs-trial/report.html\""), "{index}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("refs-trial/results.json")).unwrap()).unwrap();
        assert_eq!(v["trial"]["status"], "concluded");
        // As of the conclusion by default: a re-run is byte-identical.
        let first = std::fs::read_to_string(out.join("refs-trial/results.json")).unwrap();
        let o = run(&url, &["report", "--all", "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(first, std::fs::read_to_string(out.join("refs-trial/results.json")).unwrap());
    })
    .await;
}
