//! `/healthz` (the process is up) and `/readyz` (it can reach its database;
//! the detail says which flag-set revision it serves and, if the newest
//! stored revision does not compile, why it serves an older one).

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
    let mut body = json!({
        "status": "ready",
        "flagSetRevision": state.flags.current().revision,
    });
    // Still ready: the replica serves the last good set.
    if let Some(problem) = state.flags.problem() {
        body["flagSetProblem"] = json!(problem);
    }
    Ok(Json(body))
}
