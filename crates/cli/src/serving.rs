//! `serve`'s setup: the first admin key, the HTTP limits from the config
//! file, and a check of the open-file limit.

use super::study_key::write_private;
use super::FileConfig;
use anyhow::{bail, Result};
use commonlab_core::auth::Role;
use commonlab_server::Config;
use commonlab_store::Store;
use std::path::Path;

/// No API key exists: creates an admin key and shows it on the terminal, or
/// when standard output is not one (a service manager or container, where
/// it is a log stream), writes it to `file` (0600, created new) and logs
/// only the file's name.
pub(crate) async fn bootstrap_admin_key(store: &Store, file: &Path) {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    if !terminal {
        // Claim the file first: if it cannot be written, create no key.
        if let Err(e) = write_private(file, "") {
            tracing::error!(
                file = %file.display(),
                error = %e,
                "no API keys exist, and the admin key file cannot be created (remove a stale one); create a key with `commonlab keys create --role admin`"
            );
            return;
        }
    }
    let created = commonlab_server::keys::create_key(
        store,
        "bootstrap-admin",
        Role::Admin,
        "serve:bootstrap",
        chrono::Utc::now(),
    )
    .await;
    match created {
        Ok(k) if terminal => {
            println!("No API keys existed, so an admin key was created (shown once; revoke it with `commonlab keys revoke bootstrap-admin`):");
            println!("{}", k.key);
        }
        Ok(k) => match std::fs::write(file, format!("{}\n", k.key)) {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                "no API keys existed: an admin key 'bootstrap-admin' was created and written to this file (readable by this user only); read it, then delete the file"
            ),
            Err(e) => tracing::error!(
                file = %file.display(),
                error = %e,
                "the admin key could not be written; revoke 'bootstrap-admin' and create a key with `commonlab keys create --role admin`"
            ),
        },
        Err(e) => {
            if !terminal {
                let _ = std::fs::remove_file(file);
            }
            tracing::info!(error = %e, "bootstrap key not created (another replica did)")
        }
    }
}

/// Timeouts, the connection cap and cache sizes from the config file.
pub(crate) fn apply_http_limits(file: &FileConfig, config: &mut Config) -> Result<()> {
    use std::time::Duration;
    let secs = |v: Option<u64>, name: &str| -> Result<Option<Duration>> {
        match v {
            Some(0) => bail!("{name} must be at least 1"),
            v => Ok(v.map(Duration::from_secs)),
        }
    };
    if let Some(d) = secs(file.idle_timeout_secs, "idle_timeout_secs")? {
        config.idle_timeout = d;
    }
    if let Some(d) = secs(file.header_read_timeout_secs, "header_read_timeout_secs")? {
        config.header_read_timeout = d;
    }
    if let Some(d) = secs(file.request_timeout_secs, "request_timeout_secs")? {
        config.request_timeout = d;
    }
    if let Some(n) = file.max_connections {
        if n == 0 {
            bail!("max_connections must be at least 1");
        }
        config.max_connections = n;
    }
    if let Some(n) = file.exposure_cache_bytes {
        config.exposure_cache_bytes = n;
    }
    Ok(())
}

/// Warns when the open-file limit leaves too few descriptors for
/// `max_connections` client connections and the database (Linux).
pub(crate) fn warn_if_few_descriptors(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft {
        if max_connections + 256 > soft {
            tracing::warn!(
                open_files = soft,
                max_connections,
                "the open-file limit (ulimit -n) is below max_connections + 256: raise it, or lower max_connections"
            );
        }
    }
}
