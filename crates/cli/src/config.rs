//! The settings of one run, in layers (`docs/configuration.md`): the
//! defaults, then the config file (`--config`, `COMMONLAB_CONFIG`, else
//! `./commonlab.toml` when present), then the environment (`COMMONLAB_KEY`
//! for each key), then the flags of the command.
//!
//! The file is read with `toml` into the server's `Overrides`, whose unknown
//! keys and wrong types are refused with the file and line (from the error's
//! span). The environment is read with `envy` (numbers parsed, lists
//! comma-separated), one variable at a time so that an error names it.

use crate::args::{Cli, Command, EventsCmd, SurveysCmd, UnitsCmd};
use anyhow::{anyhow, Result};
use commonlab_server::settings::{env_var, DatabaseUrl, Overrides, Settings, ENV_PREFIX};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The settings for `cli`: every layer applied, then checked.
pub fn load(cli: &Cli) -> Result<Settings> {
    let file = read_file(cli.config.as_deref())?;
    let env = from_env(std::env::vars_os())?;
    let settings = Settings::default()
        .with(file)
        .with(env)
        .with(from_flags(cli));
    settings.check()?;
    Ok(settings)
}

/// The config file at `path`, or `./commonlab.toml` when there is one.
fn read_file(path: Option<&Path>) -> Result<Overrides> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("commonlab.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Overrides::default())
        }
        Err(e) => return Err(anyhow!("cannot read config file {}: {e}", path.display())),
    };
    parse_file(&text, &path)
}

/// A config file's text; errors read `FILE:LINE: what`.
pub fn parse_file(text: &str, path: &Path) -> Result<Overrides> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(":{}", text[..s.start].matches('\n').count() + 1))
            .unwrap_or_default();
        anyhow!("{}{at}: {}", path.display(), e.message())
    })
}

/// The keys set in the environment (`COMMONLAB_` and the key in capitals).
/// Other `COMMONLAB_` variables (`COMMONLAB_CONFIG`, `COMMONLAB_ACTOR`,
/// `COMMONLAB_LOG`) are not keys and are left alone.
pub fn from_env(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Overrides> {
    let vars: Vec<(OsString, OsString)> = vars.into_iter().collect();
    let mut set = Vec::new();
    for key in Settings::keys() {
        let name = env_var(key);
        let Some((_, value)) = vars.iter().find(|(n, _)| n.to_str() == Some(name.as_str())) else {
            continue;
        };
        let value = value
            .to_str()
            .ok_or_else(|| anyhow!("environment variable {name}: not valid UTF-8"))?;
        let one = vec![(name.clone(), value.to_string())];
        envy::prefixed(ENV_PREFIX)
            .from_iter::<_, Overrides>(one)
            .map_err(|e| anyhow!("environment variable {name}: {e}"))?;
        set.push((name, value.to_string()));
    }
    let mut layer: Overrides = envy::prefixed(ENV_PREFIX)
        .from_iter(set)
        .map_err(|e| anyhow!("environment: {e}"))?;
    for list in [&mut layer.allowed_events, &mut layer.allowed_properties]
        .into_iter()
        .flatten()
    {
        for item in list.iter_mut() {
            *item = item.trim().to_string();
        }
    }
    Ok(layer)
}

/// What the command's flags set (clap has read their environment
/// variables already, which agree with [`from_env`]).
fn from_flags(cli: &Cli) -> Overrides {
    let mut layer = Overrides {
        database_url: cli.database_url.clone().map(DatabaseUrl::from),
        ..Overrides::default()
    };
    match &cli.command {
        Command::Serve(args) => {
            layer.listen = args.listen.clone();
            layer.study_key_file = args.study_key_file.clone();
            layer.admin_key_file = args.admin_key_file.clone();
        }
        Command::Events(EventsCmd::Import { study_key_file, .. })
        | Command::Units(UnitsCmd::Erase { study_key_file, .. })
        | Command::Surveys(SurveysCmd::Links { study_key_file, .. }) => {
            layer.study_key_file = study_key_file.clone();
        }
        _ => {}
    }
    layer
}
