//! Drives the real `commonlab` binary, on SQLite and PostgreSQL.

use commonlab_store::testing::both_backends;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_commonlab");

mod privacy;
mod secrets;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(db: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("COMMONLAB_DATABASE_URL", db)
        .env_remove("COMMONLAB_CONFIG")
        .env("COMMONLAB_ACTOR", "cli-test")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run commonlab")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_and_usage_errors() {
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["flags", "import", "--help"],
        &["serve", "--help"],
    ] {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
    for args in [
        &["frobnicate"][..],
        &["keys", "create", "--name", "x"],
        &["keys", "create", "--role", "root", "--name", "x"],
    ] {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[tokio::test]
async fn keys_and_flags_commands() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let o = run(
            &url,
            &[
                "keys", "create", "--role", "sdk", "--name", "web", "--reason", "cli test",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let out = stdout(&o);
        let key = out.lines().last().unwrap();
        assert!(key.starts_with("cl_") && !key.contains(' '), "{out}");

        let o = run(
            &url,
            &[
                "keys", "create", "--role", "sdk", "--name", "web", "--reason", "cli test",
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("already exists"), "{err}");

        let o = run(&url, &["keys", "list"]);
        assert!(stdout(&o).contains("web"));
        assert!(!stdout(&o).contains(&key[16..]));
        let o = run(&url, &["keys", "revoke", "web", "--reason", "cli test"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(&url, &["keys", "revoke", "web", "--reason", "cli test"]);
        assert_eq!(o.status.code(), Some(1));

        let good = fixtures().join("flags.json");
        let o = run(
            &url,
            &[
                "flags",
                "import",
                good.to_str().unwrap(),
                "--reason",
                "cli test",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("imported 2 flags"), "{}", stdout(&o));

        // A file that is not JSON: refused with file, line and reason; nothing changes.
        let bad = fixtures().join("broken.json");
        let o = run(
            &url,
            &["flags", "import", bad.to_str().unwrap(), "--reason", "t"],
        );
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains("broken.json:4:"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        // A file with a bad field: the field's pointer is named.
        let bad = fixtures().join("bad-state.json");
        let o = run(
            &url,
            &[
                "flags",
                "import",
                bad.to_str().unwrap(),
                "--strict",
                "--reason",
                "t",
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(
            err.contains("bad-state.json") && err.contains("/flags/banner/state"),
            "{err}"
        );

        let o = run(&url, &["flags", "list"]);
        let out = stdout(&o);
        assert!(
            out.contains("revision 1")
                && out.contains("thanks-button")
                && out.contains("new-editor"),
            "{out}"
        );

        let o = run(
            &url,
            &[
                "flags",
                "set-state",
                "new-editor",
                "disabled",
                "--reason",
                "pause",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let o = run(&url, &["flags", "get", "new-editor"]);
        assert!(stdout(&o).contains("\"DISABLED\""), "{}", stdout(&o));
        let o = run(&url, &["flags", "get", "nope"]);
        assert_eq!(o.status.code(), Some(1));
        let o = run(
            &url,
            &[
                "flags",
                "set-state",
                "new-editor",
                "sideways",
                "--reason",
                "x",
            ],
        );
        assert_eq!(o.status.code(), Some(1));

        let o = run(&url, &["flags", "export", "--format", "flagd"]);
        let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(doc["flags"]["new-editor"]["state"], "DISABLED");
        assert!(doc["flags"]["thanks-button"]["targeting"].is_object());
    })
    .await;
}

/// Issue #10, item 31: `flags import` keeps cohort overrides of flags still
/// in the file, says so, and drops them only with `--replace-overrides`.
#[tokio::test]
async fn flags_import_keeps_cohort_overrides() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let with = fixtures().join("flags.json");
        let plain = fixtures().join("flags-plain.json");
        let import = |file: &Path, extra: &[&str]| {
            let mut args = vec!["flags", "import", file.to_str().unwrap(), "--reason", "t"];
            args.extend_from_slice(extra);
            run(&url, &args)
        };
        let o = import(&with, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        // A plain flagd file (no cohorts): the override stays.
        let o = import(&plain, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("kept cohort override 'coop-opt-out' of flag 'thanks-button'"),
            "{}",
            stdout(&o)
        );
        let o = run(&url, &["flags", "get", "thanks-button"]);
        assert!(stdout(&o).contains("coop-opt-out"), "{}", stdout(&o));
        // Asked to replace them: dropped, and said so.
        let o = import(&plain, &["--replace-overrides"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).contains("dropped cohort override 'coop-opt-out' of flag 'thanks-button'"),
            "{}",
            stdout(&o)
        );
        let o = run(&url, &["flags", "get", "thanks-button"]);
        assert!(!stdout(&o).contains("coop-opt-out"), "{}", stdout(&o));
    })
    .await;
}

#[tokio::test]
async fn serve_answers_and_shuts_down_gracefully() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // In a directory of its own: the study key it creates must not land
        // in the source tree (or anywhere shared).
        let dir = std::env::temp_dir().join(format!(
            "commonlab-serve-{}-{:?}",
            std::process::id(),
            db.backend()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("admin-key");
        let _ = std::fs::remove_file(&key_file);
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--admin-key-file")
            .arg(&key_file)
            .env("COMMONLAB_DATABASE_URL", &url)
            .env_remove("COMMONLAB_STUDY_KEY_FILE")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                assert_eq!(r.status(), 200);
                break;
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // No keys existed and standard output is not a terminal: serve
        // wrote a bootstrap admin key to a private file, not to its output.
        let text = std::fs::read_to_string(&key_file).unwrap_or_default();
        let key = text.trim().to_string();
        assert!(key.starts_with("cl_"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let r = client
            .get(format!("http://127.0.0.1:{port}/api/v1/keys"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "exit {:?}", out.status);
        let printed = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !printed.contains(&key),
            "the key reached the output: {printed}"
        );
        assert!(
            printed.contains(&key_file.display().to_string()),
            "{printed}"
        );
        let _ = std::fs::remove_file(&key_file);
        let o = run(&url, &["keys", "list"]);
        assert!(stdout(&o).contains("bootstrap-admin"));
        assert!(dir.join("commonlab.study-key").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

#[test]
fn config_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("commonlab-cli-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("from-config.db");
    let cfg = dir.join("commonlab.toml");
    std::fs::write(
        &cfg,
        format!("database_url = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "migrate"])
        .env_remove("COMMONLAB_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        db.exists(),
        "the database named in the config file was created"
    );

    std::fs::write(&cfg, "listen = \"127.0.0.1:9\"\nbogus = 1\n").unwrap();
    let o = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "flags", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("commonlab.toml:2") && err.contains("bogus"),
        "{err}"
    );

    let o = Command::new(BIN)
        .args([
            "--config",
            dir.join("missing.toml").to_str().unwrap(),
            "flags",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `experiments validate` over the repository's own trial files.
#[test]
fn the_shipped_trials_are_valid() {
    let o = Command::new(BIN)
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
    let o = Command::new(BIN)
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

/// `commonlab analyze` on per-arm sufficient statistics (docs/analyze.md):
/// the CLI prints exactly what the engine computes.
#[test]
fn analyze_sufficient_statistics() {
    let input = fixtures().join("analyze.json");
    let o = Command::new(BIN)
        .args(["analyze", "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = std::fs::read_to_string(&input).unwrap();
    let expected =
        commonlab_stats::analyze::analyze(&commonlab_stats::analyze::parse_input(&text).unwrap());
    assert_eq!(out, serde_json::to_value(&expected).unwrap());
    // SRM: chi-square of 1000 vs 1012 against 1:1.
    let p = out["srm"]["p_value"].as_f64().unwrap();
    assert!((p - 0.789_063_599_989_265_7).abs() < 1e-9, "{p}");
    let two = &out["metrics"]["visits"]["comparisons"]["t1"]["absolute"]["two_sided"];
    assert!(
        two["p_value"].as_f64().unwrap() > 0.0
            && two["ci_lower"].as_f64() < two["ci_upper"].as_f64()
    );
    assert!(out["metrics"]["visits"]["comparisons"]["t1"]["cuped"]["theta"].is_number());

    let o = Command::new(BIN)
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--format",
            "md",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("visits"));

    // A mistake in the input names the field.
    let bad =
        std::env::temp_dir().join(format!("commonlab-bad-analyze-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        text.replace("\"sum_squares\": 34000", "\"sum_sq\": 34000"),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["analyze", "--input", bad.to_str().unwrap()])
        .output()
        .unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sum_sq"), "{}", stderr(&o));
}

/// `commonlab analyze --design stepped_wedge` on CSV rows: a 4-community
/// stepped wedge has 24 possible orders, so exact randomisation inference
/// can never go below 1/24.
#[test]
fn analyze_few_community_rows() {
    let input = fixtures().join("wedge-rows.csv");
    let o = Command::new(BIN)
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--design",
            "stepped_wedge",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ri = &out["randomisation"]["result"];
    assert_eq!(ri["total_assignments"], 24);
    assert_eq!(ri["exact"], true);
    let min_p = ri["min_attainable_p"].as_f64().unwrap();
    assert!((min_p - 1.0 / 24.0).abs() < 1e-12, "{min_p}");
    assert!(ri["p_value"].as_f64().unwrap() >= min_p);
    assert_eq!(out["n_clusters"], 4);
    assert!(out["cr2"]["result"]["df"].as_f64().unwrap() > 0.0);
    assert_eq!(out["communities"].as_array().unwrap().len(), 4);
    // Community and period fixed effects by default (issue #10 item 27);
    // exact randomisation inference leads, with its floor stated.
    assert_eq!(out["model"], "value ~ 1 + period FE + cluster FE + treated");
    assert_eq!(out["lead"]["method"], "randomisation");
    assert_eq!(out["lead"]["reason"], "exact_enumeration");
    assert_eq!(out["lead"]["min_attainable_p"], ri["min_attainable_p"]);
    assert_eq!(out["cr2_lead"]["reason"], "community_fixed_effects");
    let run = |extra: &[&str]| {
        let mut args = vec!["analyze", "--input", input.to_str().unwrap()];
        args.extend_from_slice(&["--design", "stepped_wedge"]);
        args.extend_from_slice(extra);
        Command::new(BIN).args(args).output().unwrap()
    };
    // The model without community effects only on request.
    let o = run(&["--without-community-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let pooled: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pooled["model"], "value ~ 1 + period FE + treated");
    assert_ne!(pooled["estimate"], out["estimate"]);
    assert!(pooled["model_reason"]
        .as_str()
        .unwrap()
        .contains("on request"));
    // The old flag is accepted, does nothing, and says so.
    let o = run(&["--cluster-fixed-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("does nothing"), "{}", stderr(&o));
    let same: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(same, out);
    let o = run(&["--cluster-fixed-effects", "--without-community-effects"]);
    assert_eq!(o.status.code(), Some(2), "contradictory flags are refused");

    // A bad cell is reported with its line and column name.
    let text = std::fs::read_to_string(&input).unwrap();
    let bad_text = text.replacen("\nwiki-a,0,0,", "\nwiki-a,0,0,x", 1);
    let bad = std::env::temp_dir().join(format!("commonlab-bad-rows-{}.csv", std::process::id()));
    std::fs::write(&bad, bad_text).unwrap();
    let o = Command::new(BIN)
        .args([
            "analyze",
            "--input",
            bad.to_str().unwrap(),
            "--design",
            "cluster",
        ])
        .output()
        .unwrap();
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(":2: column 'value'"), "{err}");
}

#[tokio::test]
async fn units_erase_needs_the_study_key_and_logs_the_erasure() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = std::env::temp_dir().join(format!(
            "commonlab-erase-{}-{:?}",
            std::process::id(),
            db.backend()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("study.key");
        let o = Command::new(BIN)
            .args([
                "units",
                "erase",
                "member-1",
                "--study-key-file",
                key.to_str().unwrap(),
                "--reason",
                "member asked",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "dpo")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "no key file, no erasure");
        assert!(stderr(&o).contains("study key"), "{}", stderr(&o));
        std::fs::write(&key, "00".repeat(32)).unwrap();
        let o = Command::new(BIN)
            .args([
                "units",
                "erase",
                "member-1",
                "--study-key-file",
                key.to_str().unwrap(),
                "--reason",
                "member asked",
            ])
            .env("COMMONLAB_DATABASE_URL", &url)
            .env("COMMONLAB_ACTOR", "dpo")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("0 events"), "{}", stdout(&o));
        let log = db
            .store()
            .erasures_since(chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].unit.len(), 64);
        assert_eq!(log[0].actor.as_deref(), Some("cli:dpo"));
        assert_eq!(log[0].reason.as_deref(), Some("member asked"));
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

#[tokio::test]
async fn events_import_and_export() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = std::env::temp_dir().join(format!(
            "commonlab-events-{}-{:?}",
            std::process::id(),
            db.backend()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("study.key");
        std::fs::write(&key, "11".repeat(32)).unwrap();
        let import = |file: &str| {
            Command::new(BIN)
                .args([
                    "events",
                    "import",
                    fixtures().join(file).to_str().unwrap(),
                    "--study-key-file",
                    key.to_str().unwrap(),
                ])
                .env("COMMONLAB_DATABASE_URL", &url)
                .output()
                .unwrap()
        };
        let o = import("events.ndjson");
        assert_eq!(o.status.code(), Some(1), "one event is invalid");
        assert!(
            stderr(&o).contains("events.ndjson:4: event_id:"),
            "{}",
            stderr(&o)
        );
        assert!(stdout(&o).contains("3 stored"), "{}", stdout(&o));
        let o = import("events.ndjson");
        assert!(
            stdout(&o).contains("0 stored, 3 already stored"),
            "{}",
            stdout(&o)
        );
        let o = import("events.csv");
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("2 stored"), "{}", stdout(&o));

        let o = run(&url, &["events", "export", "--name", "thanks_given"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let lines: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines
            .iter()
            .all(|l| l["unit"].as_str().unwrap().len() == 64));
        assert!(!stdout(&o).contains("member-"));
        let o = run(
            &url,
            &["events", "export", "--from", "2026-10-05T00:00:00Z"],
        );
        assert_eq!(stdout(&o).lines().count(), 2);
        let o = run(&url, &["events", "export", "--from", "last tuesday"]);
        assert_eq!(o.status.code(), Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    })
    .await;
}

fn spawn_server(url: &str, port: u16, key: &Path) -> std::process::Child {
    Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--study-key-file",
            key.to_str().unwrap(),
        ])
        .env("COMMONLAB_DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Kill -9 the server in the middle of a load; restart it; the client
/// retries what was not acknowledged: every event is stored exactly once.
#[tokio::test]
async fn sigkill_under_load_loses_and_duplicates_nothing() {
    use commonlab_client::{Event, EventClient, Options};
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = std::env::temp_dir().join(format!(
            "commonlab-kill-{}-{:?}",
            std::process::id(),
            db.backend()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("study.key");
        std::fs::write(&key_file, "22".repeat(32)).unwrap();
        let o = run(
            &url,
            &[
                "keys", "create", "--role", "sdk", "--name", "loader", "--reason", "t",
            ],
        );
        let key = stdout(&o).lines().last().unwrap().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = spawn_server(&url, port, &key_file);
        wait_ready(port).await;

        const BATCHES: usize = 40;
        const PER: usize = 250;
        let base = format!("http://127.0.0.1:{port}");
        let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acked_in_load = acked.clone();
        let load = tokio::spawn(async move {
            let client = EventClient::new(
                &base,
                &key,
                Options {
                    max_attempts: 200,
                    initial_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(200),
                    ..Options::default()
                },
            );
            let mut acknowledged = 0;
            for b in 0..BATCHES {
                let batch: Vec<Event> = (0..PER)
                    .map(|i| {
                        Event::new(format!("m{}", (b * PER + i) % 97), "contribution_created")
                            .property("i", (b * PER + i) as u64)
                    })
                    .collect();
                let report = client.send(&batch).await.expect("acknowledged eventually");
                assert_eq!(report.stored, PER as u64);
                acknowledged += 1;
                acked_in_load.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            acknowledged
        });
        // Let some batches through, then kill the server without warning.
        let deadline = Instant::now() + Duration::from_secs(20);
        while acked.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "no batch acknowledged");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!load.is_finished(), "the load ended before the kill");
        server.kill().unwrap();
        server.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut server = spawn_server(&url, port, &key_file);
        let acknowledged = load.await.unwrap();
        assert_eq!(acknowledged, BATCHES);
        let stored = db
            .store()
            .count_events(&commonlab_store::EventFilter::default())
            .await
            .unwrap();
        assert_eq!(
            stored,
            (BATCHES * PER) as u64,
            "every acknowledged event exactly once"
        );
        server.kill().unwrap();
        server.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
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
        let work = std::env::temp_dir().join(format!(
            "commonlab-metrics-{}-{:?}",
            std::process::id(),
            db.backend()
        ));
        std::fs::create_dir_all(&work).unwrap();
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
        let o = Command::new(BIN)
            .args(["events", "import", file.to_str().unwrap(), "--study-key-file", key_file.to_str().unwrap()])
            .env("COMMONLAB_DATABASE_URL", &url)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

        let o = run(
            &url,
            &["analyze", "--trial", "refs-trial", "--as-of", "2026-02-01T00:00:00Z", "--input-only"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let input = &v["input"];
        assert_eq!(input["arms"], serde_json::json!(["control", "heart", "banner"]));
        assert_eq!(input["users"], serde_json::json!([3.0, 4.0, 0.0]));
        let metric = |name: &str| {
            input["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {input}"))
                .clone()
        };
        // contributions in days [0, 7): control m1 1, m2 0, m3 1; heart
        // m4 2, m5 0, m6 1, m7 0. Covariate days [-7, 0): m1 1, m4 1.
        let c = metric("contributions");
        assert_eq!(c["type"], "mean");
        let s = &c["stats"];
        assert_eq!(
            (s[0]["n"].as_f64(), s[0]["sum"].as_f64(), s[0]["sum_squares"].as_f64()),
            (Some(3.0), Some(2.0), Some(2.0))
        );
        assert_eq!(
            (s[1]["n"].as_f64(), s[1]["sum"].as_f64(), s[1]["sum_squares"].as_f64()),
            (Some(4.0), Some(3.0), Some(5.0))
        );
        assert_eq!((s[0]["x_sum"].as_f64(), s[0]["xy_sum"].as_f64()), (Some(1.0), Some(1.0)));
        assert_eq!((s[1]["x_sum"].as_f64(), s[1]["xy_sum"].as_f64()), (Some(1.0), Some(2.0)));
        assert_eq!(s[2]["n"].as_f64(), Some(0.0));
        let p = metric("contributed");
        assert_eq!(p["type"], "proportion");
        assert_eq!(p["stats"][1]["sum"].as_f64(), Some(2.0));
        assert!(p["stats"][1].get("x_sum").is_none(), "covariate = false");
        // Public thanks only, numeric sizes only: m6 3, m7 2.5.
        let g = metric("big_thanks");
        assert_eq!(g["stats"][1]["sum"].as_f64(), Some(5.5));
        assert_eq!(g["stats"][1]["sum_squares"].as_f64(), Some(15.25));
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

        // The whole analysis, and its Markdown form.
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let cmp = &v["output"]["metrics"]["contributions"]["comparisons"]["heart"];
        let effect = cmp["absolute"]["two_sided"]["effect"].as_f64().unwrap();
        assert!((effect - (3.0 / 4.0 - 2.0 / 3.0)).abs() < 1e-12, "{cmp}");
        assert!(cmp["cuped"]["theta"].is_number(), "{cmp}");
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--format", "md", "--as-of", "2026-02-01T00:00:00Z"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).contains("big_thanks (guardrail, mean, decrease)"), "{}", stdout(&o));
        // Before any window has closed nobody is analysed.
        let o = run(&url, &["analyze", "--trial", "refs-trial", "--as-of", "2026-01-06T00:00:00Z", "--input-only"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["input"]["metrics"][0]["stats"][0]["n"].as_f64(), Some(0.0));

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
        std::fs::remove_dir_all(&work).unwrap();
    })
    .await;
}

/// A reference to a metric the library lacks is reported at its place.
#[test]
fn unknown_metric_references_are_reported() {
    let dir = std::env::temp_dir().join(format!("commonlab-badref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    let o = Command::new(BIN)
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
    std::fs::remove_dir_all(&dir).unwrap();
}
