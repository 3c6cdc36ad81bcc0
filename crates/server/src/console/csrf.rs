//! Console forms: [`ConsoleForm<T>`], the extractor every console post
//! reads its form with, refuses (with a 403 page, before the handler
//! runs, so nothing is written) a post that does not carry the session's
//! form token in `_csrf` or that the browser says comes from another site
//! (`Sec-Fetch-Site: cross-site`). The token is
//! `HMAC-SHA256(console key, "csrf:" ‖ session id)`: bound to the session,
//! the same on every replica, compared in constant time. (The session
//! cookie is also `SameSite=Strict`: the token is the second wall.)

use super::layout;
use super::session::{csrf_matches, Session};
use super::ConsoleContext;
use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;

/// Most name/value pairs a console form may post; more is refused unread.
pub const MAX_FORM_FIELDS: usize = 256;

/// A console form, its token checked. Must be the handler's last argument,
/// after a console guard (which puts the session where this finds it).
#[derive(Debug, Clone)]
pub struct ConsoleForm<T>(pub T);

/// Why a post was refused: the 403 page.
pub fn refused(session: Option<&Session>) -> Response {
    layout::error_page(
        session,
        StatusCode::FORBIDDEN,
        "This form was refused",
        "The form did not carry this session's security token (it may come from an \
         old page, another site, or a session that has since ended). Nothing was \
         changed. Go back, reload the page and send it again.",
    )
}

/// Whether the browser says the request comes from another site.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

/// The fields of a urlencoded body, in order; `None` if it does not parse
/// or has more than [`MAX_FORM_FIELDS`] pairs.
pub(super) fn pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    (pairs.len() <= MAX_FORM_FIELDS).then_some(pairs)
}

/// The first value of `name`.
pub(super) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl<S, T> FromRequest<S> for ConsoleForm<T>
where
    S: Send + Sync,
    ConsoleContext: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let session = req.extensions().get::<Session>().cloned();
        let Some(session) = session else {
            // A handler without a console guard: nothing to check against.
            return Err(refused(None));
        };
        if cross_site(req.headers()) {
            return Err(refused(Some(&session)));
        }
        let ctx = ConsoleContext::from_ref(state);
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            layout::error_page(
                Some(&session),
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is too large",
                "Nothing was changed.",
            )
        })?;
        let Some(pairs) = pairs(&body) else {
            return Err(refused(Some(&session)));
        };
        let genuine = field(&pairs, "_csrf")
            .is_some_and(|t| csrf_matches(ctx.config.console_keys.key(), &session.id, t));
        if !genuine {
            return Err(refused(Some(&session)));
        }
        serde_urlencoded::from_bytes::<T>(&body)
            .map(ConsoleForm)
            .map_err(|e| {
                layout::error_page(
                    Some(&session),
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The form could not be read",
                    &format!("{e}. Nothing was changed."),
                )
            })
    }
}
