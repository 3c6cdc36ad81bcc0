//! Commonlab's HTTP server: OFREP flag evaluation and the flag management
//! API ([`flags`]), trials ([`trials`]), telemetry ([`events`]), API keys
//! ([`keys`]), units' consent and erasure ([`units`]), health and metrics
//! ([`health`]), the OpenAPI document ([`openapi`]), surveys ([`surveys`]:
//! the respondents' pages and the management API), the web console
//! ([`console`]). Each feature lists its
//! routes with who may call them; [`route_table`] gathers them and the one
//! router is built from it ([`route`]). One [`AppState`] with `FromRef`
//! substates: handlers take the substates they need, never `AppState`.
//!
//! The server keeps no state but caches, refreshed from the database by a
//! poller ([`sync`]), so several replicas can serve one PostgreSQL; they
//! must share one study key (its fingerprint is recorded in the database).

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
mod conn;
pub mod console;
pub mod context;
pub mod csv_out;
pub mod error;
pub mod events;
pub mod extract;
pub mod flag_set;
pub mod flags;
pub mod health;
pub mod keys;
pub mod layers;
pub mod observability;
pub mod openapi;
pub mod problem;
pub mod retention;
pub mod route;
pub mod serve;
pub mod settings;
pub mod state;
pub mod surveys;
pub mod sync;
pub mod trials;
pub mod units;

pub use clock::Clock;
pub use config::Config;
pub use error::Error;
pub use state::AppState;

// The paths of the modules before they moved into their feature (the CLI
// and the tests use them).
pub use flags::service;
pub use trials::analysis;
pub use trials::service as trial_service;

use axum::Router;
use commonlab_store::Store;
use route::Route;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Every route the server serves, with who may call it: the one table the
/// router is built from ([`routes`]) and the tests walk.
pub fn route_table() -> Vec<Route<AppState>> {
    [
        flags::ofrep::routes(),
        flags::api::routes(),
        keys::routes(),
        trials::api::routes(),
        events::api::routes(),
        units::routes(),
        surveys::pages::routes(),
        surveys::api::routes(),
        health::routes(),
        openapi::routes(),
        console::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The router of [`route_table`], without the layers.
pub fn routes() -> Router<AppState> {
    route::router(route_table())
}

/// The whole application, ready to serve: [`routes`] in the layers of
/// [`layers::with_layers`].
pub fn router(state: AppState) -> Router {
    layers::with_layers(routes(), state)
}

/// Builds the state for `store` and loads the caches once.
pub async fn build_state(store: Store, config: Config, clock: Clock) -> Result<AppState, Error> {
    let state = AppState::new(store, config, clock);
    sync::refresh_all(&state).await?;
    Ok(state)
}

/// A running server: its address, and a handle to stop it and wait for it.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    poller: JoinHandle<()>,
    retention: JoinHandle<()>,
    writer: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    committer: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Running {
    /// Stops accepting connections, lets in-flight requests finish, stops the
    /// poller and waits for both.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops (after [`Running::stop`] or a signal
    /// passed to [`start`]).
    pub async fn wait(self) -> std::io::Result<()> {
        let served = self.server.await.map_err(std::io::Error::other)?;
        let _ = self.shutdown.send(true);
        let _ = self.poller.await;
        let _ = self.retention.await;
        self.state.console_digests.shutdown().await;
        // Every request has finished: the writer drains what they sent.
        if let Some((stop, writer)) = self.writer {
            let _ = stop.send(true);
            let _ = writer.await;
        }
        if let Some((stop, committer)) = self.committer {
            let _ = stop.send(true);
            let _ = committer.await;
        }
        served
    }

    /// A sender that stops the server when `true` is sent.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Binds `listen` and serves `state` until shut down. Every spawned task is
/// owned by the returned [`Running`] and joined by it.
pub async fn start(listen: SocketAddr, state: AppState) -> std::io::Result<Running> {
    let app = router(state.clone());
    start_app(listen, state, app).await
}

/// [`start`] serving `app`, a router built on `state` (by
/// [`layers::with_layers`], with routes of the caller's besides
/// [`routes`]).
pub async fn start_app(
    listen: SocketAddr,
    state: AppState,
    app: Router,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = watch::channel(false);
    let poller = tokio::spawn(sync::run(state.clone(), rx.clone()));
    let retention = tokio::spawn(retention::run(
        state.clone(),
        state.config.retention_interval,
        rx.clone(),
    ));
    let writer = state.exposures.take_receiver().map(|exposures| {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(trials::exposure::run_writer(
            state.store.clone(),
            state.config.study_key.clone(),
            state.exposures.clone(),
            exposures,
            stopped,
        ));
        (stop, task)
    });
    let committer = state.committer.take_receiver().map(|jobs| {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(events::group_commit::run(
            state.store.clone(),
            jobs,
            stopped,
        ));
        (stop, task)
    });
    if writer.is_none() {
        tracing::error!(
            "this state is already served by another server; exposures go to its writer"
        );
    }
    let server = tokio::spawn(serve::serve(
        listener,
        app,
        Arc::clone(&state.config),
        Arc::clone(&state.http_counters),
        rx,
    ));
    Ok(Running {
        addr,
        state,
        shutdown: tx,
        server,
        poller,
        retention,
        writer,
        committer,
    })
}
