//! The demo's reports (written by the report crate, one folder per trial)
//! and its server: the whole application on the simulated clock's end,
//! with the reports at `/reports/`, until Ctrl-C.

use crate::output::outln;
use anyhow::{Context, Result};
use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::{DateTime, Utc};
use commonlab_report::document::Provenance;
use commonlab_report::Options;
use commonlab_server::{AppState, Clock, Config};
use commonlab_store::Store;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The reports written: each trial's folder, and every file's text by
/// `trial/file` for serving.
pub struct Written {
    pub paths: Vec<(String, PathBuf)>,
    files: BTreeMap<String, String>,
}

/// Writes every format of each trial's report into `out/TRIAL/`.
pub async fn write_reports(
    store: &Store,
    out: &Path,
    trials: &[&str],
    now: DateTime<Utc>,
    command: &str,
) -> Result<Written> {
    let mut written = Written {
        paths: Vec::new(),
        files: BTreeMap::new(),
    };
    for trial in trials {
        let opts = Options {
            as_of: None,
            now,
            per_user: false,
            provenance: Provenance {
                version: env!("CARGO_PKG_VERSION").to_string(),
                commit: None,
                command: command.to_string(),
            },
        };
        let report = commonlab_server::trials::analysis::report(
            store,
            trial,
            &opts,
            commonlab_report::DEFAULT_MIN_CELL,
        )
        .await
        .with_context(|| format!("cannot make the report of '{trial}'"))?;
        let dir = out.join(trial);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in commonlab_report::files(&report, &["all"])? {
            let path = dir.join(name);
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.files.insert(format!("{trial}/{name}"), text);
        }
        written.paths.push((trial.to_string(), dir));
    }
    Ok(written)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/markdown; charset=utf-8",
    }
}

/// `/reports/`: an index of the reports; `/reports/{trial}/{file}`: one file.
fn reports_router(files: Arc<BTreeMap<String, String>>) -> axum::Router<AppState> {
    let index_files = Arc::clone(&files);
    let index = move || {
        let files = Arc::clone(&index_files);
        async move {
            let mut body = String::from(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Commonlab demo reports</title></head><body><h1>Commonlab demo reports</h1><ul>",
            );
            for name in files.keys() {
                body.push_str(&format!("<li><a href=\"/reports/{name}\">{name}</a></li>"));
            }
            body.push_str("</ul></body></html>");
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
        }
    };
    let file = move |UrlPath((trial, name)): UrlPath<(String, String)>| {
        let files = Arc::clone(&files);
        async move {
            match files.get(&format!("{trial}/{name}")) {
                Some(text) => {
                    ([(header::CONTENT_TYPE, content_type(&name))], text.clone()).into_response()
                }
                None => (StatusCode::NOT_FOUND, "no such report file").into_response(),
            }
        }
    };
    axum::Router::new()
        .route("/reports", get(index.clone()))
        .route("/reports/", get(index))
        .route("/reports/{trial}/{file}", get(file))
}

/// Serves the application and the reports on `listen`, the clock held at
/// `end` (the simulated present, so the survey links are open), until
/// Ctrl-C or SIGTERM; then stops and joins every task.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    store: &Store,
    config: Config,
    end: DateTime<Utc>,
    listen: SocketAddr,
    written: Written,
    survey_link: Option<String>,
    sdk_key: &str,
    researcher_key: &str,
) -> Result<()> {
    let state = commonlab_server::build_state(store.clone(), config, Clock::fixed(end)).await?;
    let routes = commonlab_server::routes().merge(reports_router(Arc::new(written.files)));
    let app = commonlab_server::layers::with_layers(routes, state.clone());
    let running = commonlab_server::start_app(listen, state, app)
        .await
        .with_context(|| {
            format!("cannot listen on {listen} (another server there? try --listen 127.0.0.1:0)")
        })?;
    let base = format!("http://{}", running.addr);
    outln!(
        "serving    {base} (clock held at {}; Ctrl-C stops)",
        end.format("%Y-%m-%d %H:%M UTC")
    )?;
    outln!("reports    {base}/reports/")?;
    for (trial, _) in &written.paths {
        outln!("           {base}/reports/{trial}/report.html")?;
    }
    if let Some(link) = survey_link {
        outln!("survey     {base}{link} (a member who has not answered)")?;
    }
    outln!("sdk key    {sdk_key}")?;
    outln!("researcher key {researcher_key}")?;
    outln!("try        curl -s -X POST {base}/ofrep/v1/evaluate/flags/thanks-button -H 'Authorization: Bearer {sdk_key}' -H 'Content-Type: application/json' -d '{{\"context\": {{\"targetingKey\": \"wiki-a-m00001\", \"community\": \"wiki-a\", \"role\": \"member\"}}}}'")?;
    let stop = running.shutdown_handle();
    let signals = tokio::spawn(async move {
        super::super::serve::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let served = running.wait().await;
    signals.abort();
    let _ = signals.await;
    outln!("stopped")?;
    Ok(served?)
}
