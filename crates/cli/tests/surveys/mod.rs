//! `commonlab surveys`: instrument files checked with their places,
//! publishing and versions, campaigns for a trial's waves, personal links,
//! results and exports, on both databases.

use super::*;
use commonlab_core::privacy::{pseudonymise, StudyKey};

fn in_dir(url: &str, cwd: &Path, args: &[&str]) -> Output {
    commonlab()
        .args(args)
        .env("COMMONLAB_DATABASE_URL", url)
        .env("COMMONLAB_ACTOR", "surveys-test")
        .current_dir(cwd)
        .output()
        .expect("run commonlab")
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(o), stderr(o));
    stdout(o)
}

fn failed(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(o), stderr(o));
    stderr(o)
}

#[test]
fn the_shipped_instruments_and_trial_waves_are_valid() {
    let dir = workspace();
    let o = in_dir(
        "sqlite::memory:",
        &dir,
        &["surveys", "validate", "--trials", "experiments"],
    );
    let out = ok(&o);
    assert!(
        out.contains("ok  surveys/cbpp-community.toml (survey cbpp-community v1"),
        "{out}"
    );
    assert!(out.contains("ok  surveys/sus.toml"), "{out}");
    assert!(
        out.contains("4 instrument file(s) and 3 trial file(s) valid"),
        "{out}"
    );
}

#[test]
fn instrument_mistakes_are_listed_with_file_line_and_field() {
    let dir = Scratch::new("surveys-validate");
    let cbpp = std::fs::read_to_string(workspace().join("surveys/cbpp-community.toml")).unwrap();
    // A missing translation, show_if on a later item, reverse coding on a
    // choice item.
    let broken = cbpp
        .replacen("es = \"¿Cómo participas en la comunidad?\"", "", 1)
        .replace(
            "show_if = { item = \"frequency\", in = [\"monthly\", \"weekly\", \"daily\"] }",
            "show_if = { item = \"value1\", gte = 3 }",
        )
        .replacen(
            "kind = \"single\"\nrequired = true",
            "kind = \"single\"\nrequired = true\nreverse = true",
            1,
        );
    assert_ne!(broken, cbpp);
    dir.write("broken.toml", &broken);
    let o = in_dir(
        "sqlite::memory:",
        &dir,
        &["surveys", "validate", "broken.toml"],
    );
    let err = failed(&o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("broken.toml:"))
        .collect();
    assert!(lines.len() >= 2, "{err}");
    for l in &lines {
        let mut parts = l.splitn(4, ':');
        parts.next();
        let line: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{l}"));
        let col: usize = parts
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{l}"));
        assert!(line > 0 && col > 0, "{l}");
    }
    assert!(err.contains("show_if"), "{err}");
    assert!(err.contains("reverse"), "{err}");
    assert!(err.contains("error(s)"), "{err}");

    // A trial naming an instrument that is not among the files.
    let trial = std::fs::read_to_string(workspace().join("experiments/thanks-button.toml"))
        .unwrap()
        .replace(
            "instrument = \"cbpp-community\"\nwave = \"followup\"",
            "instrument = \"wellbeing\"\nwave = \"followup\"",
        );
    std::fs::create_dir(dir.join("trials")).unwrap();
    std::fs::copy(
        workspace().join("experiments/metrics.toml"),
        dir.join("trials/metrics.toml"),
    )
    .unwrap();
    dir.write("trials/t.toml", &trial);
    let line = trial
        .lines()
        .position(|l| l.contains("\"wellbeing\""))
        .unwrap()
        + 1;
    let o = in_dir(
        "sqlite::memory:",
        &dir,
        &[
            "surveys",
            "validate",
            workspace().join("surveys").to_str().unwrap(),
            "--trials",
            "trials",
        ],
    );
    let err = failed(&o);
    assert!(
        err.contains(&format!(
            "trials/t.toml:{line}: surveys[1].instrument: no instrument 'wellbeing'"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn publish_campaign_links_results_and_export() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new(&format!("surveys-{:?}", db.backend()));
        let ws = workspace();
        let path = |p: &str| ws.join(p).to_str().unwrap().to_string();
        let run = |args: &[&str]| in_dir(&url, &dir, args);

        ok(&run(&["flags", "import", &path("experiments/flags.json"), "--reason", "t"]));
        ok(&run(&["experiments", "create", &path("experiments/thanks-button.toml"), "--reason", "plan"]));

        // Publishing: once, again (no-op), changed under the same version (refused).
        let out = ok(&run(&["surveys", "publish", &path("surveys/cbpp-community.toml"), "--reason", "pilot"]));
        assert!(out.contains("published survey 'cbpp-community' version 1"), "{out}");
        let out = ok(&run(&["surveys", "publish", &path("surveys/cbpp-community.toml"), "--reason", "again"]));
        assert!(out.contains("already published"), "{out}");
        let changed = std::fs::read_to_string(ws.join("surveys/cbpp-community.toml")).unwrap().replace("How you take part", "How you take part now");
        let file = dir.write("changed.toml", &changed);
        let err = failed(&run(&["surveys", "publish", file.to_str().unwrap(), "--reason", "edit"]));
        assert!(err.contains("publish the change as version 2"), "{err}");
        let bad = dir.write("bad.toml", "key = \"x\"\nversion = 0\n");
        let err = failed(&run(&["surveys", "publish", bad.to_str().unwrap(), "--reason", "r"]));
        assert!(err.contains("bad.toml:2:"), "{err}");
        let out = ok(&run(&["surveys", "instruments"]));
        assert!(out.lines().nth(1).unwrap().starts_with("cbpp-community"), "{out}");

        // Campaigns: a wave the trial does not name is refused.
        let create = |key: &str, wave: &str, closes: &str| {
            run(&[
                "surveys", "campaign", "create", key, "--instrument", "cbpp-community", "--version", "1",
                "--trial", "thanks-button", "--wave", wave, "--opens", "2026-01-01T00:00:00Z", "--closes", closes,
                "--reason", "wave",
            ])
        };
        let err = failed(&create("w1", "endline", "2099-01-01T00:00:00Z"));
        assert!(err.contains("no wave 'endline'") && err.contains("baseline, followup"), "{err}");
        let err = failed(&create("w1", "followup", "tomorrow"));
        assert!(err.contains("--closes"), "{err}");
        let o = create("b1", "baseline", "2099-01-01T00:00:00Z");
        ok(&o);
        assert!(stderr(&o).contains("warning: wave 'baseline' is due before the trial starts"), "{}", stderr(&o));
        let out = ok(&create("w1", "followup", "2099-01-01T00:00:00Z"));
        assert!(out.contains("created campaign 'w1'"), "{out}");
        let out = ok(&run(&["surveys", "campaign", "list"]));
        assert!(out.contains("w1") && out.contains("b1") && out.contains("open"), "{out}");

        // Links: raw ids in, pseudonyms and links out; the file is private.
        let key_file = dir.join("study.key");
        std::fs::write(&key_file, "44".repeat(32)).unwrap();
        let key = StudyKey::from_bytes(&[0x44; 32]).unwrap();
        let units = dir.write("units.csv", "id,community\nmember-1,north\nmember-2,north\nmember-3\n");
        let links = |extra: &[&str]| {
            let mut args = vec![
                "surveys", "links", "w1", "--units", units.to_str().unwrap(), "--study-key-file",
                key_file.to_str().unwrap(), "--reason", "invite",
            ];
            args.extend_from_slice(extra);
            run(&args)
        };
        let o = links(&["--base-url", "https://lab.example.org/"]);
        let csv = ok(&o);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows[0], "unit,pseudonym,link");
        assert_eq!(rows.len(), 4, "{csv}");
        let p1 = pseudonymise(&key, "member-1").into_string();
        assert!(rows[1].starts_with(&format!("member-1,{p1},https://lab.example.org/s/v1.")), "{csv}");
        assert!(stderr(&o).contains("3 new invitation(s)"), "{}", stderr(&o));
        let out_file = dir.join("links.csv");
        let o = links(&["--output", out_file.to_str().unwrap()]);
        ok(&o);
        assert!(stderr(&o).contains("0 new invitation(s)"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let empty = dir.write("empty.csv", "id\n");
        let err = failed(&run(&["surveys", "links", "w1", "--units", empty.to_str().unwrap(), "--study-key-file", key_file.to_str().unwrap(), "--reason", "r"]));
        assert!(err.contains("no units"), "{err}");
        let err = failed(&run(&["surveys", "links", "nope", "--units", units.to_str().unwrap(), "--study-key-file", key_file.to_str().unwrap(), "--reason", "r"]));
        assert!(err.contains("campaign 'nope' not found"), "{err}");

        // One completed response, stored as the pages store it.
        let store = db.store();
        let c = store.campaign("w1").await.unwrap().unwrap();
        store.begin_response(c.id, &p1, "en", "2027-01", true, chrono::Utc::now()).await.unwrap();
        let answers = serde_json::json!({"frequency": "never", "value1": 4.0, "value2": 4.0, "value3": 5.0, "value4": 2.0, "comments": "=1+2 great"});
        store
            .save_page(c.id, &p1, 0, answers.as_object().unwrap(), &serde_json::Map::new(), 4, true, chrono::Utc::now())
            .await
            .unwrap();

        let md = ok(&run(&["surveys", "results", "w1"]));
        assert!(md.contains("# Survey results: campaign w1 (wave followup, cbpp-community v1)"), "{md}");
        assert!(md.contains("- invited: 1/3 completed (33.3%)"), "{md}");
        assert!(md.contains("community north: suppressed (small cell)"), "{md}");
        assert!(md.contains("reliability not reported"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&ok(&run(&["surveys", "results", "w1", "--format", "json"]))).unwrap();
        assert_eq!(json["results"]["respondents"][0]["scales"]["value"], 4.25);
        assert!(!json.to_string().contains("great"));
        let wide = ok(&run(&["surveys", "export", "w1"]));
        assert!(wide.starts_with("unit,campaign,wave,"), "{wide}");
        assert!(!wide.contains("comments"));
        let wide = ok(&run(&["surveys", "export", "w1", "--include-text"]));
        assert!(wide.contains("'=1+2 great"), "{wide}");
        let book = dir.join("book.json");
        ok(&run(&["surveys", "export", "w1", "--format", "codebook-json", "--output", book.to_str().unwrap()]));
        let book: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&book).unwrap()).unwrap();
        assert_eq!(book["scales"][0]["key"], "value");

        let md = ok(&run(&["surveys", "response", "thanks-button"]));
        assert!(md.contains("## Wave followup (campaign w1)"), "{md}");
        assert!(md.contains("Differential response not tested"), "no exposures, no arms: {md}");
        let err = failed(&run(&["surveys", "response", "nope"]));
        assert!(err.contains("trial 'nope' not found"), "{err}");

        // Every printing command survives a standard output closed by its reader.
        for args in [
            &["surveys", "instruments"][..],
            &["surveys", "campaign", "list"],
            &["surveys", "results", "w1"],
            &["surveys", "results", "w1", "--format", "json"],
            &["surveys", "response", "thanks-button"],
            &["surveys", "export", "w1", "--format", "long"],
            &["surveys", "validate", &path("surveys")],
        ] {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            let out = commonlab()
                .args(args)
                .env("COMMONLAB_DATABASE_URL", &url)
                .current_dir(&*dir)
                .stdout(Stdio::from(writer))
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
            assert!(!err.contains("panicked") && !err.contains("error"), "{args:?}: {err}");
        }
    })
    .await;
}
