//! API keys: creation (shared with the CLI) and the admin API.

use crate::audit::ChangeMeta;
use crate::auth::{KeyCache, RequireAdmin};
use crate::clock::Clock;
use crate::error::Error;
use crate::extract::{ApiJson, ApiQuery};
use crate::problem::Problem;
use crate::route::Route;
use axum::extract::{FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use commonlab_core::auth::{NewApiKey, Role};
use commonlab_store::{ApiKeyRecord, NewApiKeyRecord, Store};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    Store: FromRef<S>,
    Clock: FromRef<S>,
    KeyCache: FromRef<S>,
{
    vec![
        Route::get("/api/v1/keys", list),
        Route::post("/api/v1/keys", create),
        Route::delete("/api/v1/keys/{id}", revoke),
    ]
}

/// A key just created: the plaintext is in `key`, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
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
    meta: &ChangeMeta<'_>,
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

#[utoipa::path(
    get,
    path = "/api/v1/keys",
    tag = "keys",
    operation_id = "listKeys",
    summary = "Every API key (never the plaintext)",
    responses(
        (status = 200, description = "`keys`: id, name, role, who created it, when, and revocation.", body = crate::openapi::shapes::KeyList),
    ),
)]
async fn list(_: RequireAdmin, State(store): State<Store>) -> Result<Response, Problem> {
    let keys: Vec<ApiKeyRecord> = store.list_api_keys(true).await.map_err(Error::from)?;
    Ok(Json(serde_json::json!({ "keys": keys })).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = KeyCreateBody)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/keys",
    tag = "keys",
    operation_id = "createKey",
    summary = "Create a key; the plaintext is shown this once",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The key, with its plaintext in `key` (answered with `Cache-Control: no-store`).", body = CreatedKey),
        (status = 409, description = "An active key has this name.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::BodyErrors,
    ),
)]
async fn create(
    RequireAdmin(caller): RequireAdmin,
    State(store): State<Store>,
    State(clock): State<Clock>,
    State(keys): State<KeyCache>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, Problem> {
    let role: Role = body
        .role
        .parse()
        .map_err(|e: commonlab_core::auth::UnknownRole| {
            Problem::validation(e.to_string()).with_field("/role", e.to_string())
        })?;
    let created = create_key(&store, &body.name, role, &caller.actor(), clock.now()).await?;
    let _ = keys.refresh(&store).await;
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

#[utoipa::path(
    delete,
    path = "/api/v1/keys/{id}",
    tag = "keys",
    operation_id = "revokeKey",
    summary = "Revoke a key",
    params(
        ("id" = String, Path, description = "The key's id."),
        ("reason" = Option<String>, Query, description = "Why (recorded)."),
    ),
    responses(
        (status = 200, description = "The revoked key's record.", body = crate::openapi::shapes::ApiKey),
        (status = 404, description = "No such key.", body = crate::openapi::shapes::Problem, content_type = "application/problem+json"),
        crate::openapi::errors::QueryErrors,
    ),
)]
async fn revoke(
    RequireAdmin(caller): RequireAdmin,
    State(store): State<Store>,
    State(clock): State<Clock>,
    State(keys): State<KeyCache>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> Result<Response, Problem> {
    let actor = caller.actor();
    let reason = q.reason.as_deref().filter(|r| !r.trim().is_empty());
    let rec = store
        .revoke_api_key_by(&id, Some(&actor), reason, clock.now())
        .await
        .map_err(Error::from)?;
    let _ = keys.refresh(&store).await;
    Ok(Json(rec).into_response())
}
