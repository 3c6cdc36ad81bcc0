//! Authentication: API keys in `Authorization: Bearer` or `X-API-Key`,
//! checked against the in-memory key cache (refreshed from the database), and
//! role checks.

use crate::problem::Problem;
use crate::state::KeyCache;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use commonlab_core::auth::{key_id, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role includes `required`.
    pub fn require(&self, required: Role) -> Result<(), Problem> {
        if self.role.allows(required) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this needs the '{required}' role or higher; key '{}' has '{}'",
                self.name, self.role
            )))
        }
    }

    /// How this caller is named in the audit log.
    pub fn actor(&self) -> String {
        format!("key:{}", self.name)
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why no key was found: none sent, or an `Authorization` header without
/// the `Bearer` scheme (the header's value is never echoed, only a scheme
/// name that looks like one).
fn missing_key_detail(headers: &HeaderMap) -> String {
    const HOW: &str = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'";
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return format!("an API key is required: {HOW}");
    };
    let auth = auth.to_str().unwrap_or("").trim();
    match auth.split_once(' ') {
        None if auth.eq_ignore_ascii_case("bearer") => {
            format!("the Authorization header has no key after 'Bearer': {HOW}")
        }
        None => format!("the Authorization header has no scheme: {HOW}"),
        Some((scheme, _))
            if scheme.len() <= 20
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            format!("the Authorization scheme '{scheme}' is not supported: {HOW}")
        }
        Some(_) => format!("the Authorization scheme is not supported: {HOW}"),
    }
}

/// Authenticates a request against the key cache.
pub fn authenticate(keys: &KeyCache, headers: &HeaderMap) -> Result<Caller, Problem> {
    let Some(presented) = presented_key(headers) else {
        return Err(Problem::unauthorized(missing_key_detail(headers)));
    };
    let invalid = || Problem::unauthorized("the API key is not valid or has been revoked");
    let id = key_id(presented).ok_or_else(invalid)?;
    let snap = keys.current();
    let cached = snap.by_id.get(id).ok_or_else(invalid)?;
    if !cached.hash.verify(presented) {
        return Err(invalid());
    }
    Ok(Caller {
        key_id: id.to_string(),
        name: cached.name.clone(),
        role: cached.role,
    })
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    KeyCache: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        authenticate(&KeyCache::from_ref(state), &parts.headers)
    }
}
