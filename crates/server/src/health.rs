//! `/healthz` (the process is up) and `/readyz` (it can reach its database).

use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    state.store.ping().await?;
    Ok(Json(json!({
        "status": "ready",
        "flagSetRevision": state.flags.current().revision,
    })))
}
