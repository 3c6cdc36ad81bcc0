//! Issue 12, item 4, from the command line: `experiments show` says when a
//! trial's schedule starts and when its data are complete (text and
//! `--json`); `experiments conclude` before then is refused unless
//! `--force`, which records a deviation; `experiments resume` checks
//! overlaps as `start` does.

use super::*;

/// thanks-button.toml with its key and schedule replaced.
fn trial_file(dir: &Scratch, key: &str, start: &str, end: &str) -> PathBuf {
    let src = std::fs::read_to_string(workspace().join("experiments/thanks-button.toml")).unwrap();
    let src = src
        .replace("key = \"thanks-button\"", &format!("key = \"{key}\""))
        .replace("start = 2027-01-11T09:00:00Z", &format!("start = {start}"))
        .replace("end = 2027-03-08T09:00:00Z", &format!("end = {end}"))
        .replace(
            "{ at = 2027-01-11T09:00:00Z, percent = 20 },",
            &format!("{{ at = {start}, percent = 100 }},"),
        )
        .replace("  { at = 2027-01-14T09:00:00Z, percent = 100 },\n", "");
    assert!(
        src.contains(start) && src.contains(end),
        "the example's schedule moved"
    );
    dir.write(&format!("{key}.toml"), &src)
}

#[tokio::test]
async fn conclude_resume_and_show_guard_the_lifecycle() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("guards");
        let ok = |o: &Output| assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
        let flags = workspace().join("experiments/flags.json");
        ok(&run(&url, &["flags", "import", flags.to_str().unwrap(), "--reason", "t"]));
        // A schedule far in the future: started now, it assigns nobody yet.
        let file = trial_file(&dir, "later", "2099-01-01T00:00:00Z", "2099-03-01T00:00:00Z");
        ok(&run(&url, &["experiments", "create", file.to_str().unwrap(), "--reason", "plan"]));
        let o = run(&url, &["experiments", "show", "later"]);
        ok(&o);
        assert!(stdout(&o).contains("a draft: once started, units are assigned from 2099-01-01T00:00:00Z"), "{}", stdout(&o));
        let o = run(&url, &["experiments", "start", "later", "--reason", "approved early"]);
        ok(&o);
        assert!(
            stdout(&o).contains("note: running, but its schedule starts at 2099-01-01T00:00:00Z: no unit is assigned"),
            "{}",
            stdout(&o)
        );
        let o = run(&url, &["experiments", "show", "later"]);
        ok(&o);
        let out = stdout(&o);
        assert!(
            out.contains("schedule 2099-01-01T00:00:00Z to 2099-03-01T00:00:00Z: running, but its schedule starts at 2099-01-01T00:00:00Z: no unit is assigned or exposed before then"),
            "{out}"
        );
        // Every metric's window is 28 days: complete 28 days after the end.
        assert!(out.contains("data complete (it can be concluded without --force) when the longest metric window"), "{out}");
        assert!(out.contains("closes at 2099-03-29T00:00:00Z"), "{out}");
        let o = run(&url, &["experiments", "show", "later", "--json"]);
        ok(&o);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["trial"]["status"], "running");
        assert_eq!(v["schedule"]["state"], "waiting", "{v}");
        assert_eq!(v["schedule"]["start"], "2099-01-01T00:00:00Z");
        assert_eq!(v["schedule"]["completeAt"], "2099-03-29T00:00:00Z");
        assert!(v["events"].as_array().unwrap().len() == 2 && v["arms"].is_array(), "{v}");

        // Concluding now would store a snapshot with nobody in it: refused.
        let o = run(&url, &["experiments", "conclude", "later", "--reason", "changed our minds"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains("cannot be concluded yet") && err.contains("2099-03-29T00:00:00Z") && err.contains("--force"), "{err}");
        let o = run(&url, &["experiments", "show", "later", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["trial"]["status"], "running");

        // A resume checks overlaps: a rival on the same flag started while
        // it was stopped.
        ok(&run(&url, &["experiments", "stop", "later", "--reason", "pause"]));
        let rival = trial_file(&dir, "rival", "2099-01-01T00:00:00Z", "2099-03-01T00:00:00Z");
        ok(&run(&url, &["experiments", "create", rival.to_str().unwrap(), "--reason", "plan"]));
        ok(&run(&url, &["experiments", "start", "rival", "--reason", "go"]));
        let o = run(&url, &["experiments", "resume", "later", "--reason", "back"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(stderr(&o).contains("overlaps running trial 'rival'"), "{}", stderr(&o));

        // Forced: concluded, and the early conclusion is in the log.
        let o = run(&url, &["experiments", "conclude", "later", "--force", "--reason", "the pilot was cancelled"]);
        ok(&o);
        assert!(stdout(&o).contains("trial 'later' is now concluded"), "{}", stdout(&o));
        let o = run(&url, &["experiments", "show", "later"]);
        let out = stdout(&o);
        assert!(out.contains("deviations from the plan: 1"), "{out}");
        assert!(
            out.contains("conclude by cli:") && out.contains("deviation by cli:")
                && out.contains(": concluded before the data were complete (")
                && out.contains("): the pilot was cancelled"),
            "{out}"
        );
    })
    .await;
}
