//! The API keys page (admins only).
//!
//! - `GET /console/keys`: every key (name, id, role, created by whom and
//!   why, revoked or active) and the form to create one.
//! - `POST /console/keys`: creates a key (name, role, reason required);
//!   the answer shows its secret this once (never cached, never stored:
//!   only its hash is kept).
//! - `GET /console/keys/{id}/revoke`: the confirmation, asking why.
//! - `POST /console/keys/{id}/revoke`: revokes it (its console sessions
//!   end at once, on every replica; its API calls within the key poll).
//!
//! When a key was last used is not recorded (it would be a write per
//! request), so it is not shown.

use super::csrf::ConsoleForm;
use super::layout::{self, Nav, Template};
use super::session::ConsoleAdmin;
use super::ConsoleContext;
use crate::audit::ChangeMeta;
use crate::error::Error;
use crate::keys::create_key_because;
use crate::route::Route;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use commonlab_core::auth::Role;
use commonlab_store::{ApiKeyRecord, StoreError};
use serde::{Deserialize, Serialize};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/keys", list),
        Route::post("/console/keys", create),
        Route::get("/console/keys/{id}/revoke", confirm),
        Route::post("/console/keys/{id}/revoke", revoke),
    ]
}

static KEYS: Template = Template::new(
    "console/keys.html",
    include_str!("../../templates/console/keys.html"),
);
static CREATED: Template = Template::new(
    "console/key_created.html",
    include_str!("../../templates/console/key_created.html"),
);
static REVOKE: Template = Template::new(
    "console/key_revoke.html",
    include_str!("../../templates/console/key_revoke.html"),
);

/// Longest reason accepted (as the API's audit reasons).
pub const MAX_REASON: usize = 1_000;

#[derive(Serialize)]
struct KeyRow {
    id: String,
    name: String,
    role: String,
    created_at: String,
    created_by: String,
    created_reason: Option<String>,
    revoked: Option<String>,
}

fn row(k: ApiKeyRecord) -> KeyRow {
    let revoked = k.revoked_at.map(|at| {
        let mut s = format!("{}", at.format("%Y-%m-%d %H:%M UTC"));
        if let Some(by) = &k.revoked_by {
            s.push_str(&format!(" by {by}"));
        }
        if let Some(why) = &k.revoked_reason {
            s.push_str(&format!(": {why}"));
        }
        s
    });
    KeyRow {
        created_at: k.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        id: k.id,
        name: k.name,
        role: k.role,
        created_by: k.created_by,
        created_reason: k.created_reason,
        revoked,
    }
}

#[derive(Serialize, Default)]
struct FieldError {
    anchor: &'static str,
    message: String,
}

#[derive(Serialize, Default)]
struct KeysView {
    keys: Vec<KeyRow>,
    roles: [&'static str; 4],
    errors: Vec<FieldError>,
    /// What was typed, when the form comes back with errors.
    name: String,
    role: String,
    reason: String,
    /// The name of a key just revoked.
    revoked: Option<String>,
}

#[derive(Deserialize)]
struct ListQuery {
    revoked: Option<String>,
}

async fn keys_page(
    s: &ConsoleAdmin,
    ctx: &ConsoleContext,
    mut view: KeysView,
    status: StatusCode,
) -> Response {
    match ctx.store.list_api_keys(true).await {
        Ok(keys) => {
            // Newest first, active before revoked.
            let mut keys = keys;
            keys.sort_by(|a, b| {
                (a.revoked_at.is_some(), std::cmp::Reverse(a.created_at))
                    .cmp(&(b.revoked_at.is_some(), std::cmp::Reverse(b.created_at)))
            });
            view.keys = keys.into_iter().map(row).collect();
            view.roles = ["sdk", "developer", "researcher", "admin"];
            s.page_status(&KEYS, Nav::Keys, "API keys", &view, status)
        }
        Err(e) => layout::store_failed(s, e),
    }
}

async fn list(
    s: ConsoleAdmin,
    State(ctx): State<ConsoleContext>,
    Query(q): Query<ListQuery>,
) -> Response {
    let view = KeysView {
        revoked: q.revoked.filter(|n| n.len() <= 100),
        role: "sdk".into(),
        ..KeysView::default()
    };
    keys_page(&s, &ctx, view, StatusCode::OK).await
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    reason: String,
}

/// The keys page with the create form as it was posted, and `errors`.
async fn form_again(
    s: &ConsoleAdmin,
    ctx: &ConsoleContext,
    form: &CreateForm,
    errors: Vec<FieldError>,
) -> Response {
    let view = KeysView {
        errors,
        name: form.name.clone(),
        role: form.role.clone(),
        reason: form.reason.clone(),
        ..KeysView::default()
    };
    keys_page(s, ctx, view, StatusCode::UNPROCESSABLE_ENTITY).await
}

#[derive(Serialize)]
struct CreatedView {
    name: String,
    id: String,
    role: &'static str,
    secret: String,
}

async fn create(
    s: ConsoleAdmin,
    State(ctx): State<ConsoleContext>,
    ConsoleForm(form): ConsoleForm<CreateForm>,
) -> Response {
    let mut errors = Vec::new();
    let name = form.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        errors.push(FieldError {
            anchor: "name",
            message: "Enter a name of 1 to 100 printable characters.".into(),
        });
    }
    let role = form.role.parse::<Role>();
    if role.is_err() {
        errors.push(FieldError {
            anchor: "role",
            message: "Choose a role.".into(),
        });
    }
    let reason = form.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        errors.push(FieldError {
            anchor: "reason",
            message: format!("Say why the key is needed (1 to {MAX_REASON} characters)."),
        });
    }
    let Ok(role) = role else {
        return form_again(&s, &ctx, &form, errors).await;
    };
    if !errors.is_empty() {
        return form_again(&s, &ctx, &form, errors).await;
    }
    let actor = s.caller.actor();
    let meta = ChangeMeta::now(&actor, reason, &ctx.clock);
    match create_key_because(&ctx.store, name, role, &meta).await {
        Ok(created) => {
            let _ = ctx.keys.refresh(&ctx.store).await;
            let view = CreatedView {
                name: created.name,
                id: created.id,
                role: created.role.as_str(),
                secret: created.key,
            };
            s.page(&CREATED, Nav::Keys, "Key created", &view)
        }
        Err(Error::Store(StoreError::AlreadyExists(_))) => {
            let errors = vec![FieldError {
                anchor: "name",
                message: format!("An active key is already named '{name}': choose another name."),
            }];
            form_again(&s, &ctx, &form, errors).await
        }
        Err(Error::Store(e)) => layout::store_failed(&s, e),
        Err(e) => layout::error_page(
            Some(&s),
            StatusCode::UNPROCESSABLE_ENTITY,
            "The key was not created",
            &e.to_string(),
        ),
    }
}

#[derive(Serialize)]
struct RevokeView {
    key: KeyRow,
    error: Option<String>,
    reason: String,
}

/// The key `id`, or the page to answer with (404 for no such key, or one
/// already revoked).
async fn active_key(
    s: &ConsoleAdmin,
    ctx: &ConsoleContext,
    id: &str,
) -> Result<ApiKeyRecord, Response> {
    match ctx.store.find_api_key(id).await {
        Ok(Some(k)) if k.is_active() => Ok(k),
        Ok(_) => Err(layout::error_page(
            Some(s),
            StatusCode::NOT_FOUND,
            "No such active key",
            "This key does not exist or is already revoked.",
        )),
        Err(e) => Err(layout::store_failed(s, e)),
    }
}

async fn confirm(
    s: ConsoleAdmin,
    State(ctx): State<ConsoleContext>,
    Path(id): Path<String>,
) -> Response {
    match active_key(&s, &ctx, &id).await {
        Ok(k) => s.page(
            &REVOKE,
            Nav::Keys,
            "Revoke a key",
            &RevokeView {
                key: row(k),
                error: None,
                reason: String::new(),
            },
        ),
        Err(page) => page,
    }
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    reason: String,
}

async fn revoke(
    s: ConsoleAdmin,
    State(ctx): State<ConsoleContext>,
    Path(id): Path<String>,
    ConsoleForm(form): ConsoleForm<RevokeForm>,
) -> Response {
    let key = match active_key(&s, &ctx, &id).await {
        Ok(k) => k,
        Err(page) => return page,
    };
    let reason = form.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON {
        return s.page_status(
            &REVOKE,
            Nav::Keys,
            "Revoke a key",
            &RevokeView {
                key: row(key),
                error: Some(format!(
                    "Say why the key is revoked (1 to {MAX_REASON} characters)."
                )),
                reason: form.reason,
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let actor = s.caller.actor();
    match ctx
        .store
        .revoke_api_key_by(&key.id, Some(&actor), Some(reason), ctx.clock.now())
        .await
    {
        Ok(_) | Err(StoreError::NotFound(_)) => {
            let _ = ctx.keys.refresh(&ctx.store).await;
            let q = serde_urlencoded::to_string([("revoked", key.name.as_str())])
                .expect("a string pair");
            layout::see_other(&format!("/console/keys?{q}"))
        }
        Err(e) => layout::store_failed(&s, e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_compile() {
        for t in [&super::KEYS, &super::CREATED, &super::REVOKE] {
            t.check().unwrap();
        }
    }
}
