//! `serve` and `migrate`: the HTTP server's start (the study key, the first
//! admin key, a check of the open-file limit) and graceful stop.

use super::with_store;
use crate::output::outln;
use crate::study_key::{self, write_private};
use anyhow::{anyhow, Context, Result};
use commonlab_core::auth::Role;
use commonlab_server::settings::{LogFormat, Settings};
use commonlab_server::Clock;
use commonlab_store::Store;
use std::net::SocketAddr;
use std::path::Path;

/// `migrate`: applies the migrations and says where.
pub async fn migrate(settings: &Settings) -> Result<()> {
    let url = &settings.database_url;
    with_store(url, async |_| outln!("migrations applied to {url}")).await
}

/// `serve`: until SIGINT or SIGTERM, then finishes in-flight requests.
pub async fn serve(settings: &Settings) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COMMONLAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        // One JSON object a line: the event's fields, its target, and the
        // fields of the request span (method, route, request_id) when
        // enabled (`COMMONLAB_LOG=debug`, or an access log line, which
        // carries them itself).
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => logs.init(),
    }
    let listen = &settings.listen;
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| anyhow!("--listen: '{listen}' is not an address like 127.0.0.1:8080"))?;
    warn_if_few_descriptors(settings.max_connections);
    let db_url = &settings.database_url;
    with_store(db_url, async |store| {
        let key = study_key::for_serve(&settings.study_key_file, store).await?;
        if store.active_api_keys().await?.is_empty() {
            bootstrap_admin_key(store, &settings.admin_key_file).await;
        }
        let config = settings.to_config(key);
        let state = commonlab_server::build_state(store.clone(), config, Clock::System).await?;
        let running = commonlab_server::start(addr, state)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        tracing::info!(addr = %running.addr, database = %db_url, "commonlab serving");
        let stop = running.shutdown_handle();
        let signals = tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop.send(true);
        });
        let served = running.wait().await;
        signals.abort();
        let _ = signals.await;
        Ok(served?)
    })
    .await
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// No API key exists: creates an admin key and shows it on the terminal, or
/// when standard output is not one (a service manager or container, where
/// it is a log stream), writes it to `file` (0600, created new) and logs
/// only the file's name.
async fn bootstrap_admin_key(store: &Store, file: &Path) {
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
            let _ = outln!("No API keys existed, so an admin key was created (shown once; revoke it with `commonlab keys revoke bootstrap-admin`):");
            let _ = outln!("{}", k.key);
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

/// Warns when the open-file limit leaves too few descriptors for
/// `max_connections` client connections and the database (Linux).
fn warn_if_few_descriptors(max_connections: usize) {
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
