//! Signing in and out.
//!
//! - `GET /console/sign-in?next=PATH`: the form (one field: the API key).
//!   It sets a pre-session cookie (`commonlab_console_pre`, 32 random
//!   bytes, an hour) and the form's token is `HMAC-SHA256(console key,
//!   "pre:" ‖ that cookie)`, so another site cannot sign a browser in
//!   with a key of its own (login CSRF).
//! - `POST /console/sign-in`: a valid key of role developer, researcher
//!   or admin opens a session (`Store::open_console_session`, ending the
//!   key's oldest beyond `console_sessions_per_key`), sets the session
//!   cookie and answers 303 to `next` when it is a console path, else
//!   `/console/`. A wrong key: the form again with the error (401), no
//!   cookie; an `sdk` key: 403.
//! - `POST /console/sign-out`: ends the session everywhere and drops the
//!   cookie.
//!
//! Sign-in attempts are limited per client address (IPv6: per /64) to
//! `console_sign_in_per_ip_per_minute` (default 20): beyond it the post
//! answers 429 with `Retry-After`, checked before anything else is read,
//! so a flood of guesses costs neither a key lookup nor a session write.

use super::csrf::{self, cross_site, ConsoleForm};
use super::layout::{self, Frame, Template};
use super::session::{self, new_secret, set_cookie, ConsoleDeveloper, COOKIE};
use super::ConsoleContext;
use crate::auth::authenticate_key;
use crate::route::{Public, Route};
use crate::surveys::pages::limits::ip_key;
use crate::surveys::pages::ClientIp;
use axum::body::Bytes;
use axum::extract::{FromRef, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use commonlab_core::auth::Role;
use commonlab_store::{NewConsoleSession, StoreError};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::time::Duration;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/sign-in", show),
        Route::post("/console/sign-in", sign_in),
        Route::post("/console/sign-out", sign_out),
    ]
}

/// The pre-session cookie of the sign-in form.
pub const PRE_COOKIE: &str = "commonlab_console_pre";
/// How long the sign-in form's cookie lasts.
pub const PRE_COOKIE_AGE: Duration = Duration::from_secs(3600);
/// Longest `next` kept.
pub const MAX_NEXT: usize = 512;
/// Longest key accepted in the form (keys are 68 characters).
pub const MAX_KEY: usize = 200;

static SIGN_IN: Template = Template::new(
    "console/sign_in.html",
    include_str!("../../templates/console/sign_in.html"),
);

/// `next` when it is a path of the console (`/console` or below it, no
/// `//`, `\`, `..` segment or control character, at most [`MAX_NEXT`]
/// bytes): never another site.
pub fn local_next(next: &str) -> Option<&str> {
    let ok = next.len() <= MAX_NEXT
        && (next == "/console" || next.starts_with("/console/") || next.starts_with("/console?"))
        && !next.contains("//")
        && !next.contains('\\')
        && !next
            .split(['/', '?', '#'])
            .any(|seg| seg == ".." || seg == ".")
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    ok.then_some(next)
}

fn pre_token(key: &[u8], pre: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(b"pre:");
    m.update(pre.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

fn pre_matches(key: &[u8], pre: &str, sent: &str) -> bool {
    let Ok(sent) = URL_SAFE_NO_PAD.decode(sent) else {
        return false;
    };
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(b"pre:");
    m.update(pre.as_bytes());
    m.verify_slice(&sent).is_ok()
}

#[derive(Serialize)]
struct SignInView<'a> {
    next: &'a str,
    csrf: String,
    error: Option<&'a str>,
    signed_out: bool,
}

#[derive(Deserialize)]
struct ShowQuery {
    next: Option<String>,
    signed_out: Option<String>,
}

/// The form, with `error`, setting a new pre-session cookie when the
/// browser has none.
fn form(
    ctx: &ConsoleContext,
    headers: &HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
    signed_out: bool,
    status: StatusCode,
) -> Response {
    let secure = ctx.config.console_secure_cookie;
    let (pre, fresh) = match session::cookie(headers, PRE_COOKIE, session::COOKIE_LEN) {
        Some(p) => (p.to_string(), false),
        None => (new_secret().1, true),
    };
    let view = SignInView {
        next: next.and_then(local_next).unwrap_or(""),
        csrf: pre_token(ctx.config.console_keys.key(), &pre),
        error,
        signed_out,
    };
    let mut r = layout::render(&SIGN_IN, &Frame::signed_out("Sign in"), &view, status);
    if fresh {
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(PRE_COOKIE, Some(&pre), PRE_COOKIE_AGE, secure),
        );
    }
    r
}

async fn show(
    _: Public,
    State(ctx): State<ConsoleContext>,
    headers: HeaderMap,
    Query(q): Query<ShowQuery>,
) -> Response {
    form(
        &ctx,
        &headers,
        q.next.as_deref(),
        None,
        q.signed_out.is_some(),
        StatusCode::OK,
    )
}

async fn sign_in(
    _: Public,
    State(ctx): State<ConsoleContext>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(wait) = ctx.sign_in_limit.check(&ip_key(ip)) {
        let mut r = layout::error_page(
            None,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            "Too many sign-in attempts came from your address. Wait a minute, then try again.",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return r;
    }
    let refused = || csrf::refused(None);
    if cross_site(&headers) {
        return refused();
    }
    let Some(fields) = csrf::pairs(&body) else {
        return refused();
    };
    let key = ctx.config.console_keys.key();
    let genuine = match (
        session::cookie(&headers, PRE_COOKIE, session::COOKIE_LEN),
        csrf::field(&fields, "_csrf"),
    ) {
        (Some(pre), Some(sent)) => pre_matches(key, pre, sent),
        _ => false,
    };
    if !genuine {
        return refused();
    }
    let next = csrf::field(&fields, "next").and_then(local_next);
    let presented = csrf::field(&fields, "key")
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY);
    let Some(presented) = presented else {
        return form(
            &ctx,
            &headers,
            next,
            Some("Enter an API key."),
            false,
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let caller = match authenticate_key(&ctx.keys, presented, "/console/sign-in") {
        Ok(c) => c,
        Err(_) => {
            return form(
                &ctx,
                &headers,
                next,
                Some("This key is not valid or has been revoked."),
                false,
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    if !caller.role.allows(Role::Developer) {
        return form(
            &ctx,
            &headers,
            next,
            Some("This key's role (sdk) cannot sign in: use a developer, researcher or admin key."),
            false,
            StatusCode::FORBIDDEN,
        );
    }
    let (secret, text) = new_secret();
    let id = session::session_id(key, &secret);
    let now = ctx.clock.now();
    let lasts = ctx.config.console_session;
    let expires_at = now + chrono::Duration::from_std(lasts).unwrap_or(chrono::Duration::hours(8));
    let opened = ctx
        .store
        .open_console_session(&NewConsoleSession {
            id: &id,
            key_id: &caller.key_id,
            at: now,
            expires_at,
            max_per_key: ctx.config.console_sessions_per_key,
        })
        .await;
    match opened {
        Ok(()) => {}
        // Revoked since the key cache was loaded.
        Err(StoreError::NotFound(_)) => {
            return form(
                &ctx,
                &headers,
                next,
                Some("This key is not valid or has been revoked."),
                false,
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(StoreError::Unavailable(_)) => return layout::unavailable(),
        Err(e) => {
            tracing::error!(error = %e, "a console session could not be stored");
            return layout::error_page(
                None,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "You could not be signed in. The error was logged.",
            );
        }
    }
    let secure = ctx.config.console_secure_cookie;
    let mut r = layout::see_other(next.unwrap_or("/console/"));
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(COOKIE, Some(&text), lasts, secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(PRE_COOKIE, None, Duration::ZERO, secure),
    );
    r
}

#[derive(Deserialize)]
struct Nothing {}

async fn sign_out(
    ConsoleDeveloper(s): ConsoleDeveloper,
    State(ctx): State<ConsoleContext>,
    ConsoleForm(_): ConsoleForm<Nothing>,
) -> Response {
    if let Err(e) = ctx.store.end_console_session(&s.id, ctx.clock.now()).await {
        return layout::store_failed(&s, e);
    }
    let mut r = layout::see_other("/console/sign-in?signed_out=1");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            COOKIE,
            None,
            Duration::ZERO,
            ctx.config.console_secure_cookie,
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_a_console_path_or_nothing() {
        for ok in ["/console", "/console/", "/console/keys?x=1", "/console?a"] {
            assert_eq!(local_next(ok), Some(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/console/",
            "//evil.example/console/",
            "/console//evil",
            "/consolex",
            "/api/v1/keys",
            "/console/../api",
            "/console/\\evil",
            "/console/ x",
            "",
        ] {
            assert_eq!(local_next(bad), None, "{bad}");
        }
        assert_eq!(local_next(&format!("/console/{}", "a".repeat(600))), None);
    }

    #[test]
    fn the_sign_in_form_token_is_bound_to_its_cookie() {
        let t = pre_token(b"k", "cookie-a");
        assert!(pre_matches(b"k", "cookie-a", &t));
        assert!(!pre_matches(b"k", "cookie-b", &t));
        assert!(!pre_matches(b"j", "cookie-a", &t));
        SIGN_IN.check().unwrap();
    }
}
