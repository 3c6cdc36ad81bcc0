//! `keys` and `flags`: API keys, importing, listing and changing flags, and usage errors.

use super::*;

#[test]
fn help_and_usage_errors() {
    for args in [
        &["--help"][..],
        &["keys", "--help"],
        &["flags", "import", "--help"],
        &["serve", "--help"],
    ] {
        let o = commonlab().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
    for args in [
        &["frobnicate"][..],
        &["keys", "create", "--name", "x"],
        &["keys", "create", "--role", "root", "--name", "x"],
    ] {
        let o = commonlab().args(args).output().unwrap();
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
