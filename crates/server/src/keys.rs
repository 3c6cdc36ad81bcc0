//! API keys: creation (shared with the CLI) and the admin API.

use crate::auth::Caller;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::Problem;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use commonlab_core::auth::{NewApiKey, Role};
use commonlab_store::{ApiKeyRecord, NewApiKeyRecord, Store};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/keys", get(list).post(create))
        .route("/api/v1/keys/{id}", delete(revoke))
}

/// A key just created: the plaintext is in `key`, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub key: String,
}

/// Key names: 1–100 printable characters.
fn validate_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "/name",
            "a key name must be 1 to 100 printable characters",
        ));
    }
    Ok(())
}

/// Generates and stores a key with the operating system's randomness.
pub async fn create_key(
    store: &Store,
    name: &str,
    role: Role,
    created_by: &str,
    at: DateTime<Utc>,
) -> Result<CreatedKey, Error> {
    insert_key(store, name, role, created_by, None, at).await
}

/// [`create_key`] with the reason recorded beside who made it (the CLI
/// requires one).
pub async fn create_key_because(
    store: &Store,
    name: &str,
    role: Role,
    meta: &crate::service::ChangeMeta<'_>,
) -> Result<CreatedKey, Error> {
    if meta.reason.trim().is_empty() {
        return Err(Error::ReasonRequired);
    }
    insert_key(store, name, role, meta.actor, Some(meta.reason), meta.at).await
}

async fn insert_key(
    store: &Store,
    name: &str,
    role: Role,
    created_by: &str,
    reason: Option<&str>,
    at: DateTime<Utc>,
) -> Result<CreatedKey, Error> {
    validate_name(name)?;
    let mut bytes = [0u8; 38];
    // ThreadRng: a CSPRNG (ChaCha) seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    let key = NewApiKey::from_random(bytes);
    let hash = key.hash.to_hex();
    store
        .insert_api_key(&NewApiKeyRecord {
            id: &key.id,
            name,
            role: role.as_str(),
            hash_hex: &hash,
            created_by,
            reason,
            at,
        })
        .await?;
    Ok(CreatedKey {
        id: key.id.clone(),
        name: name.to_string(),
        role,
        key: key.plaintext,
    })
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let keys: Vec<ApiKeyRecord> = state.store.list_api_keys(true).await.map_err(Error::from)?;
    Ok(Json(serde_json::json!({ "keys": keys })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    role: String,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e: commonlab_core::auth::UnknownRole| {
            Problem::validation(e.to_string()).with_field("/role", e.to_string())
        })?;
    let created = create_key(
        &state.store,
        &body.name,
        role,
        &caller.actor(),
        state.clock.now(),
    )
    .await?;
    let _ = crate::sync::refresh_keys(&state).await;
    // The answer carries the key in clear: no cache may keep it.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(created),
    )
        .into_response())
}

#[derive(Deserialize)]
struct RevokeQuery {
    reason: Option<String>,
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let actor = caller.actor();
    let reason = q.reason.as_deref().filter(|r| !r.trim().is_empty());
    let rec = state
        .store
        .revoke_api_key_by(&id, Some(&actor), reason, state.clock.now())
        .await
        .map_err(Error::from)?;
    let _ = crate::sync::refresh_keys(&state).await;
    Ok(Json(rec).into_response())
}
