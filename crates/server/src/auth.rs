//! Authentication: API keys in `Authorization: Bearer` or `X-API-Key`,
//! checked against the in-memory key cache ([`KeyCache`], refreshed from
//! the database), and the role extractors that guard routes
//! ([`RequireSdk`], [`RequireDeveloper`], [`RequireResearcher`],
//! [`RequireAdmin`]): a handler's first argument says who may call it.

use crate::problem::Problem;
use crate::route::{Access, Guard};
use arc_swap::ArcSwap;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use commonlab_core::auth::{key_id, ApiKeyHash, Role};
use commonlab_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

#[derive(Debug, Clone)]
pub struct CachedKey {
    pub name: String,
    pub role: Role,
    pub hash: ApiKeyHash,
}

#[derive(Default)]
pub struct KeysSnapshot {
    pub version: i64,
    pub by_id: HashMap<String, CachedKey>,
}

/// The active API keys, and the count of failed authentications.
#[derive(Clone, Default)]
pub struct KeyCache(Arc<Keys>);

#[derive(Default)]
struct Keys {
    current: ArcSwap<KeysSnapshot>,
    failures: AuthFailures,
}

impl KeyCache {
    pub fn current(&self) -> arc_swap::Guard<Arc<KeysSnapshot>> {
        self.0.current.load()
    }
    pub fn install(&self, snap: KeysSnapshot) {
        self.0.current.store(Arc::new(snap));
    }
    /// Failed authentications (counted and logged by [`authenticate_on`]).
    pub fn failures(&self) -> &AuthFailures {
        &self.0.failures
    }

    /// Reloads the active keys if the database's keys version changed.
    pub async fn refresh(&self, store: &Store) -> Result<(), StoreError> {
        let version = store.keys_version().await?;
        let current = self.current();
        if version == current.version && (version != 0 || !current.by_id.is_empty()) {
            return Ok(());
        }
        let records = store.active_api_keys().await?;
        let mut by_id = HashMap::with_capacity(records.len());
        for r in records {
            let (Ok(role), Ok(hash)) = (r.role.parse::<Role>(), ApiKeyHash::from_hex(&r.hash_hex))
            else {
                tracing::error!(key = %r.id, "stored API key has an unknown role or a bad hash; ignored");
                continue;
            };
            by_id.insert(
                r.id,
                CachedKey {
                    name: r.name,
                    role,
                    hash,
                },
            );
        }
        self.install(KeysSnapshot { version, by_id });
        Ok(())
    }
}

/// The key a request presents (`X-API-Key`, or `Authorization: Bearer`).
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
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

/// Failed authentications: counted (served at `/metrics`) and logged, at
/// most one line a second so that a client retrying a bad key cannot flood
/// the log. The key itself is never logged.
#[derive(Default)]
pub struct AuthFailures {
    count: AtomicU64,
    /// The count at the last log line, and when that was.
    logged: Mutex<Option<(u64, Instant)>>,
}

const AUTH_LOG_EVERY: Duration = Duration::from_secs(1);

impl AuthFailures {
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn record(&self, reason: &'static str, route: &str) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut logged) = self.logged.try_lock() else {
            return;
        };
        let now = Instant::now();
        let since = match *logged {
            Some((_, at)) if now.duration_since(at) < AUTH_LOG_EVERY => return,
            Some((before, _)) => n - before,
            None => n,
        };
        *logged = Some((n, now));
        tracing::warn!(
            reason,
            route,
            failures = since,
            "authentication failed (count since the last such line; the key is not logged)"
        );
    }
}

/// Authenticates a request against the key cache.
pub fn authenticate(keys: &KeyCache, headers: &HeaderMap) -> Result<Caller, Problem> {
    authenticate_on(keys, headers, "(route not given)")
}

/// [`authenticate`] for a request to `route` (its template, named in the
/// log line of a failure).
pub fn authenticate_on(
    keys: &KeyCache,
    headers: &HeaderMap,
    route: &str,
) -> Result<Caller, Problem> {
    let Some(presented) = presented_key(headers) else {
        keys.failures().record("no API key", route);
        return Err(Problem::unauthorized(missing_key_detail(headers)));
    };
    authenticate_key(keys, presented, route)
}

/// The caller whose key is `presented` (as typed into the console's
/// sign-in form, or sent in a header); failures are counted and logged as
/// by [`authenticate_on`].
pub fn authenticate_key(keys: &KeyCache, presented: &str, route: &str) -> Result<Caller, Problem> {
    let invalid = |reason| {
        keys.failures().record(reason, route);
        Problem::unauthorized("the API key is not valid or has been revoked")
    };
    let Some(id) = key_id(presented) else {
        return Err(invalid("not an API key"));
    };
    let snap = keys.current();
    let Some(cached) = snap.by_id.get(id) else {
        return Err(invalid("unknown or revoked key id"));
    };
    if !cached.hash.verify(presented) {
        return Err(invalid("wrong secret for the key id"));
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
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("(no route)", |m| m.as_str());
        authenticate_on(&KeyCache::from_ref(state), &parts.headers, route)
    }
}

/// Defines a role extractor: the authenticated [`Caller`], refused with 403
/// unless its role includes the one named.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Caller);

        impl Guard for $name {
            const ACCESS: Access = Access::Role($role);
        }

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            KeyCache: FromRef<S>,
        {
            type Rejection = Problem;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let caller = Caller::from_request_parts(parts, state).await?;
                caller.require($role)?;
                Ok($name(caller))
            }
        }
    };
}

role_extractor!(
    /// A caller with any valid key (`sdk` and up): evaluation, telemetry,
    /// consent, exposures.
    RequireSdk,
    Role::Sdk
);
role_extractor!(
    /// A caller whose role includes `developer`: reading flags and trials,
    /// flag state and cohort overrides.
    RequireDeveloper,
    Role::Developer
);
role_extractor!(
    /// A caller whose role includes `researcher`: flag definitions, trial
    /// changes, data exports, erasure.
    RequireResearcher,
    Role::Researcher
);
role_extractor!(
    /// An `admin` caller: API keys.
    RequireAdmin,
    Role::Admin
);
