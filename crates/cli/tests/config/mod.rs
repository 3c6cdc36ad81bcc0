//! The settings: the config file, the environment, flags, and their documentation.

use super::*;

#[test]
fn config_file_is_read_and_checked() {
    let dir = Scratch::new("cli-config");
    let db = dir.join("from-config.db");
    let cfg = dir.join("commonlab.toml");
    std::fs::write(
        &cfg,
        format!("database_url = \"sqlite://{}\"\n", db.display()),
    )
    .unwrap();
    let o = commonlab()
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
    let o = commonlab()
        .args(["--config", cfg.to_str().unwrap(), "flags", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("commonlab.toml:2") && err.contains("bogus"),
        "{err}"
    );

    let o = commonlab()
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
}

/// `migrate` in `dir` with the config file `file`, the environment `env` and
/// the flags `flags`; says which database it migrated.
fn migrated(dir: &Scratch, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let mut command = dir.command();
    command
        .args(["--config", "layers.toml", "migrate"])
        .args(flags);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// Defaults, then the file, then the environment, then flags; for keys
/// with a flag and for keys without.
#[test]
fn settings_come_in_layers() {
    let dir = Scratch::new("layers");
    let url = |name: &str| format!("sqlite://{}", dir.join(name).display());
    let applied = |o: &Output| {
        assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
        stdout(o).trim().to_string()
    };
    // No file at ./commonlab.toml: the default database, in the directory
    // the command runs in.
    let o = dir.command().arg("migrate").output().unwrap();
    assert_eq!(applied(&o), "migrations applied to sqlite://commonlab.db");
    assert!(dir.join("commonlab.db").exists());

    dir.write(
        "layers.toml",
        &format!(
            "database_url = \"{}\"\nmax_connections = 0\n",
            url("file.db")
        ),
    );
    // The file's max_connections = 0 is refused by any command...
    let o = migrated(&dir, &[], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: max_connections must be at least 1"
    );
    // ... unless the environment sets another: the environment wins.
    let env_ok = ("COMMONLAB_MAX_CONNECTIONS", "5");
    let o = migrated(&dir, &[env_ok], &[]);
    assert_eq!(
        applied(&o),
        format!("migrations applied to {}", url("file.db"))
    );
    let env_db = url("env.db");
    let o = migrated(&dir, &[env_ok, ("COMMONLAB_DATABASE_URL", &env_db)], &[]);
    assert_eq!(applied(&o), format!("migrations applied to {env_db}"));
    // Flags win over both.
    let flag_db = url("flag.db");
    let o = migrated(
        &dir,
        &[env_ok, ("COMMONLAB_DATABASE_URL", &env_db)],
        &["--database-url", &flag_db],
    );
    assert_eq!(applied(&o), format!("migrations applied to {flag_db}"));
    // A key without a flag, from the environment.
    let o = dir
        .command()
        .args(["--config", "layers.toml", "flags", "list"])
        .env("COMMONLAB_MAX_CONNECTIONS", "5")
        .env("COMMONLAB_FLAG_SET", "from-env")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("flag set 'from-env' at revision 0"),
        "{}",
        stdout(&o)
    );
    // A value that does not parse names its variable.
    let o = migrated(&dir, &[("COMMONLAB_MAX_CONNECTIONS", "many")], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("COMMONLAB_MAX_CONNECTIONS") && err.lines().count() == 1,
        "{err}"
    );
}

/// Unknown keys and wrong types in the file: refused with the file and line.
#[test]
fn mistakes_in_the_config_file_name_file_and_line() {
    let dir = Scratch::new("config-lines");
    for (text, line, what) in [
        (
            "listen = \"127.0.0.1:9\"\n\n# a comment\nlisten_on = \"x\"\n",
            4,
            "unknown field `listen_on`",
        ),
        (
            "retention_days = 30\nmax_connections = \"many\"\n",
            2,
            "invalid type",
        ),
        ("allowed_events = \"a,b\"\n", 1, "expected a sequence"),
    ] {
        dir.write("commonlab.toml", text);
        let o = dir.command().args(["flags", "list"]).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{text}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: commonlab.toml:{line}: ")) && err.contains(what),
            "{text}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn the_database_url_prints_redacted() {
    use commonlab_server::settings::{DatabaseUrl, Settings};
    let url = DatabaseUrl::from("postgres://ops:s3cret-pw@db.internal:5432/lab?sslmode=require");
    assert_eq!(
        url.to_string(),
        "postgres://ops:***@db.internal:5432/lab?sslmode=require"
    );
    let debug = format!("{url:?}");
    assert!(
        !debug.contains("s3cret-pw") && debug.contains("ops:***@"),
        "{debug}"
    );
    let settings = Settings {
        database_url: url.clone(),
        ..Settings::default()
    };
    let debug = format!("{settings:?} {settings:#?}");
    assert!(!debug.contains("s3cret-pw"), "{debug}");
    // Only on request.
    assert!(url.expose().contains("s3cret-pw"));
}

/// docs/configuration.md lists exactly the keys `Settings` has, each with
/// its environment variable, the flag that sets it (if any), and the
/// default the program uses.
#[test]
fn the_documentation_lists_every_key_with_its_default() {
    use commonlab_server::settings::{env_var, Overrides, Settings};
    let doc = std::fs::read_to_string(workspace().join("docs/configuration.md")).unwrap();
    let mut documented = Vec::new();
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let key = cells[0].trim_matches('`');
        if key.starts_with("COMMONLAB_") {
            continue; // the variables that are not settings
        }
        assert_eq!(cells.len(), 5, "{row}");
        let (default, env, flag) = (cells[1], cells[2], cells[3]);
        assert_eq!(env, format!("`{}`", env_var(key)), "{row}");
        // The default: a TOML literal that changes nothing, or "none".
        let defaults = Settings::default();
        if let Some(literal) = default.strip_prefix('`') {
            let literal = &literal[..literal.find('`').unwrap()];
            let layer: Overrides = toml::from_str(&format!("{key} = {literal}"))
                .unwrap_or_else(|e| panic!("{row}: {e}"));
            assert_eq!(defaults.clone().with(layer), defaults, "{row}");
        } else {
            assert!(default.starts_with("none"), "{row}");
            assert!(
                format!("{defaults:?}").contains(&format!(" {key}: None,")),
                "{row}"
            );
        }
        // The flag, if any, is in the help of the commands named.
        if let Some(flag) = flag.strip_prefix('`') {
            let flag = &flag[..flag.find('`').unwrap()];
            let help =
                |args: &[&str]| stdout(&commonlab().args(args).arg("--help").output().unwrap());
            let commands = if flag == "--database-url" {
                vec![vec![], vec!["serve"], vec!["flags", "list"]]
            } else {
                let named = &row[row.find(flag).unwrap()..];
                let named = &named[..named.find(')').unwrap()];
                named
                    .split('`')
                    .skip(2)
                    .step_by(2)
                    .map(|c| c.split(' ').collect())
                    .collect()
            };
            assert!(!commands.is_empty(), "{row}");
            for command in commands {
                assert!(help(&command).contains(flag), "{command:?} has no {flag}");
            }
        } else {
            assert_eq!(flag, "—", "{row}");
        }
        documented.push(key.to_string());
    }
    let mut keys: Vec<String> = Settings::keys().iter().map(|k| k.to_string()).collect();
    keys.sort();
    documented.sort();
    assert_eq!(
        documented, keys,
        "docs/configuration.md and Settings disagree"
    );
}
