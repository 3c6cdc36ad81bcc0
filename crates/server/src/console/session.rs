//! Console sessions: the cookie, its lookup, and the guards that make a
//! console handler's first argument ([`ConsoleDeveloper`],
//! [`ConsoleResearcher`], [`ConsoleAdmin`]).
//!
//! The cookie `commonlab_console` holds 32 random bytes (base64url, 43
//! characters; any other value is ignored unread). The store keeps only
//! `HMAC-SHA256(console key, "session:" ‖ bytes)`, so neither a database
//! reader nor a replica without the study key can forge or take over a
//! session. Each guarded request reads the session joined with its API
//! key (one primary-key lookup): ended, expired or revoked means signed
//! out, on every replica at the same moment.

use super::layout::{self, Nav};
use super::ConsoleContext;
use crate::auth::Caller;
use crate::route::{Access, Guard};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use commonlab_core::auth::Role;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use std::ops::Deref;
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "commonlab_console";
/// The length of a session cookie's value (32 bytes, base64url).
pub const COOKIE_LEN: usize = 43;
/// The path the console's cookies are sent to.
pub const COOKIE_PATH: &str = "/console";
/// Most bytes of a `Cookie` header the console reads; a longer one is
/// ignored (no session).
pub const MAX_COOKIE_HEADER: usize = 8 * 1024;
/// The sign-in page.
pub const SIGN_IN: &str = "/console/sign-in";

/// A signed-in console session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The API key signed in, with its role as it is now.
    pub caller: Caller,
    /// The form token of this session (every form's `_csrf` field).
    pub csrf: String,
    /// When the session ends by itself.
    pub expires_at: DateTime<Utc>,
    /// The stored id (keyed hash of the cookie).
    pub(super) id: String,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], label: &[u8], data: &[u8]) -> HmacSha256 {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    m.update(label);
    m.update(data);
    m
}

/// The stored id of the session whose cookie holds `secret`.
pub(super) fn session_id(key: &[u8], secret: &[u8]) -> String {
    hex::encode(mac(key, b"session:", secret).finalize().into_bytes())
}

/// The form token of session `id`.
pub(super) fn csrf_token(key: &[u8], id: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, b"csrf:", id.as_bytes()).finalize().into_bytes())
}

/// Whether `sent` is the form token of session `id` (constant time).
pub(super) fn csrf_matches(key: &[u8], id: &str, sent: &str) -> bool {
    let Ok(sent) = URL_SAFE_NO_PAD.decode(sent) else {
        return false;
    };
    mac(key, b"csrf:", id.as_bytes())
        .verify_slice(&sent)
        .is_ok()
}

/// A new cookie secret (the operating system's randomness through a
/// CSPRNG) and its base64url text.
pub(super) fn new_secret() -> ([u8; 32], String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let text = URL_SAFE_NO_PAD.encode(bytes);
    (bytes, text)
}

/// The value of cookie `name` in the request, if it is well-formed and of
/// `len` characters.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str, len: usize) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter(|v| v.len() <= MAX_COOKIE_HEADER)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| {
            v.len() == len
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A `Set-Cookie` value for the console: `value` for `max_age`, or (with
/// `None`) removing the cookie.
pub(super) fn set_cookie(
    name: &str,
    value: Option<&str>,
    max_age: Duration,
    secure: bool,
) -> HeaderValue {
    let (value, age) = match value {
        Some(v) => (v, max_age.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={COOKIE_PATH}; Max-Age={age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("ASCII")
}

/// The secret of the request's session cookie, decoded.
fn presented_secret(headers: &HeaderMap) -> Option<Vec<u8>> {
    let text = cookie(headers, COOKIE, COOKIE_LEN)?;
    URL_SAFE_NO_PAD.decode(text).ok().filter(|b| b.len() == 32)
}

/// Why there is no session to serve a request with.
pub enum NoSession {
    /// Not signed in (or signed out, expired, revoked): to the sign-in page.
    SignIn,
    /// The store could not be read.
    Unavailable,
}

impl ConsoleContext {
    /// The live session of this request, if any.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Session, NoSession> {
        let secret = presented_secret(headers).ok_or(NoSession::SignIn)?;
        let key = self.config.console_keys.key();
        let id = session_id(key, &secret);
        let record = match self.store.console_session(&id, self.clock.now()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(NoSession::SignIn),
            Err(e) => {
                tracing::error!(error = %e, "the console could not read a session");
                return Err(NoSession::Unavailable);
            }
        };
        let Ok(role) = record.role.parse::<Role>() else {
            return Err(NoSession::SignIn);
        };
        Ok(Session {
            caller: Caller {
                key_id: record.key_id,
                name: record.key_name,
                role,
            },
            csrf: csrf_token(key, &id),
            expires_at: record.expires_at,
            id,
        })
    }
}

/// Where a signed-out request is sent: the sign-in page, with `next=` the
/// page asked for (only for `GET`; a post's page is not one to return to).
fn to_sign_in(parts: &Parts, secure: bool) -> Response {
    let next = (parts.method == Method::GET || parts.method == Method::HEAD)
        .then(|| parts.uri.path_and_query().map(|p| p.as_str()))
        .flatten()
        .filter(|p| super::sign_in::local_next(p).is_some());
    let to = match next {
        Some(p) => format!(
            "{SIGN_IN}?{}",
            serde_urlencoded::to_string([("next", p)]).expect("a string pair")
        ),
        None => SIGN_IN.to_string(),
    };
    let mut r = layout::see_other(&to);
    // A stale cookie is dropped, so the browser stops sending it.
    if parts.headers.contains_key(header::COOKIE) && presented_secret(&parts.headers).is_some() {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(COOKIE, None, Duration::ZERO, secure),
        );
    }
    r
}

impl Session {
    /// The 403 page for a page this session's role may not open.
    pub fn forbidden(&self, needed: Role) -> Response {
        layout::error_page(
            Some(self),
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "This page needs the {needed} role or higher; you are signed in as '{}' ({}).",
                self.caller.name, self.caller.role
            ),
        )
    }

    /// Renders `template` in the layout, with `nav` marked current, titled
    /// `title`, with `page` as the template's `page`: 200.
    pub fn page<T: Serialize>(
        &self,
        template: &'static layout::Template,
        nav: Nav,
        title: &str,
        page: &T,
    ) -> Response {
        self.page_status(template, nav, title, page, StatusCode::OK)
    }

    /// [`Session::page`] with another status (422 for a form with errors).
    pub fn page_status<T: Serialize>(
        &self,
        template: &'static layout::Template,
        nav: Nav,
        title: &str,
        page: &T,
        status: StatusCode,
    ) -> Response {
        layout::render(
            template,
            &layout::Frame::signed_in(self, nav, title),
            page,
            status,
        )
    }
}

/// Defines a console guard: a live session whose key's role includes the
/// one named.
macro_rules! console_guard {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Session);

        impl Guard for $name {
            const ACCESS: Access = Access::Console($role);
        }

        impl Deref for $name {
            type Target = Session;
            fn deref(&self) -> &Session {
                &self.0
            }
        }

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            ConsoleContext: FromRef<S>,
        {
            type Rejection = Response;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
                let ctx = ConsoleContext::from_ref(state);
                let session = match ctx.session(&parts.headers).await {
                    Ok(s) => s,
                    Err(NoSession::SignIn) => {
                        return Err(to_sign_in(parts, ctx.config.console_secure_cookie))
                    }
                    Err(NoSession::Unavailable) => return Err(layout::unavailable()),
                };
                if !session.caller.role.allows($role) {
                    return Err(session.forbidden($role));
                }
                // For `ConsoleForm`, which checks the post's token.
                parts.extensions.insert(session.clone());
                Ok($name(session))
            }
        }
    };
}

console_guard!(
    /// Any signed-in console user (developer and up): home, flags, trials,
    /// the audit log.
    ConsoleDeveloper,
    Role::Developer
);
console_guard!(
    /// A signed-in researcher or admin: surveys, trial changes.
    ConsoleResearcher,
    Role::Researcher
);
console_guard!(
    /// A signed-in admin: API keys.
    ConsoleAdmin,
    Role::Admin
);

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::SignIn => layout::see_other(SIGN_IN),
            NoSession::Unavailable => layout::unavailable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_read_only_when_well_formed() {
        let (_, text) = new_secret();
        assert_eq!(text.len(), COOKIE_LEN);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={text}; c=d")).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE, COOKIE_LEN), Some(text.as_str()));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={text}x")).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE, COOKIE_LEN), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}={}", "%".repeat(43))).unwrap(),
        );
        assert_eq!(cookie(&h, COOKIE, COOKIE_LEN), None);
    }

    #[test]
    fn form_tokens_are_bound_to_the_session_and_key() {
        let t = csrf_token(b"k1", "s1");
        assert!(csrf_matches(b"k1", "s1", &t));
        assert!(!csrf_matches(b"k1", "s2", &t));
        assert!(!csrf_matches(b"k2", "s1", &t));
        assert!(!csrf_matches(b"k1", "s1", ""));
        assert!(!csrf_matches(b"k1", "s1", "not base64!"));
        assert_ne!(session_id(b"k1", b"x"), session_id(b"k2", b"x"));
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped() {
        let c = set_cookie(COOKIE, Some("v"), Duration::from_secs(60), true);
        assert_eq!(
            c.to_str().unwrap(),
            "commonlab_console=v; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict; Secure"
        );
        let c = set_cookie(COOKIE, None, Duration::from_secs(60), false);
        assert_eq!(
            c.to_str().unwrap(),
            "commonlab_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
