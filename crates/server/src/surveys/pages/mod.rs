//! The respondent's survey pages: server-rendered HTML (minijinja,
//! autoescaped, templates in `crates/server/templates/surveys/` built into
//! the binary) that works without JavaScript.
//!
//! - `GET /s/{token}`: where the respondent stands: the consent page, the
//!   next page of questions (with what they answered, to resume), or a
//!   friendly refusal.
//! - `POST /s/{token}/consent`: agree (the response starts) or decline
//!   (only the refusal is stored).
//! - `POST /s/{token}/pages/{n}`: the answers of page `n` (1-based),
//!   validated on the server (`core::surveys::validate_page`); with errors
//!   the page comes back (422) with what was typed, each error next to its
//!   question and summarised at the top; else they are saved (one
//!   statement: all or nothing) and the browser is sent on (303).
//! - `GET /s/{token}/done`: thanks, once the response is complete.
//!
//! Every route verifies the link token (`core::surveys::token`; refusals:
//! malformed 404, altered 403, expired 410, unknown campaign 404, not yet
//! open 403, closed 410, already completed 410, or 409 for a post), and is
//! rate-limited per client address and per link ([`limits`]; 429 with
//! `Retry-After`). Every post carries a form token bound to the link
//! (`HMAC-SHA256(form key, "form:" ‖ link token)`, checked in constant
//! time) and is refused when the browser says it comes from another site
//! (`Sec-Fetch-Site: cross-site`). The language is the link's (`?lang=`,
//! kept by the forms), then `Accept-Language`, then the instrument's
//! default; right-to-left languages get `dir="rtl"`. Pages are never cached
//! and never send a referrer (the link is personal); the content security
//! policy allows nothing but the page's own inline style.

pub mod i18n;
pub mod limits;
mod render;
pub mod view;

use crate::clock::Clock;
use crate::config::{Config, SurveyKeys};
use crate::route::{Public, Route};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use commonlab_core::surveys::token::{self, TokenClaims, TokenError};
use commonlab_core::surveys::{direction, parse_instrument, validate_page, Answers, Instrument};
use commonlab_store::{CampaignRecord, ResponseRecord, ResponseStatus, Store, StoreError};
use hmac::{Hmac, Mac};
use i18n::{Notice, Ui};
use limits::{LimitSettings, Limits};
use minijinja::{AutoEscape, Environment};
use render::*;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use view::{Fields, ItemView};

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    PagesContext: FromRef<S>,
{
    vec![
        Route::get("/s/{token}", show),
        Route::post("/s/{token}/consent", consent),
        Route::post("/s/{token}/pages/{page}", answer),
        Route::get("/s/{token}/done", done),
    ]
}

/// What the survey pages share in one replica: the rate limiters and the
/// parsed instruments (published versions never change, so they are
/// cached by key and version; at most [`MAX_CACHED_INSTRUMENTS`]).
pub struct PagesShared {
    pub limits: Limits,
    instruments: Mutex<HashMap<(String, i64), Arc<Instrument>>>,
}

/// Parsed instruments kept per replica.
pub const MAX_CACHED_INSTRUMENTS: usize = 256;

impl PagesShared {
    pub fn new(config: &Config) -> PagesShared {
        PagesShared {
            limits: Limits::new(LimitSettings {
                per_ip_per_minute: config.survey_rate_per_ip_per_minute,
                per_link_per_minute: config.survey_rate_per_link_per_minute,
                max_tracked: config.survey_rate_max_tracked,
            }),
            instruments: Mutex::default(),
        }
    }
}

/// The substate of the survey pages.
#[derive(Clone)]
pub struct PagesContext {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Clock,
    pub shared: Arc<PagesShared>,
    /// Counts completed responses (`commonlab_survey_responses_total`).
    pub metrics: Arc<crate::observability::Metrics>,
    /// Told when a response starts, is declined or completes.
    pub triggers: super::trigger::Triggers,
}

/// The client's address, when the server knows it (the connection's peer).
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `Accept-Language`'s tags, best first (at most 16; a header longer than
/// 512 bytes is ignored).
fn accept_languages(headers: &HeaderMap) -> Vec<String> {
    let Some(v) = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 512)
    else {
        return Vec::new();
    };
    let mut tags: Vec<(String, f32)> = v
        .split(',')
        .take(16)
        .filter_map(|part| {
            let mut it = part.split(';');
            let tag = it.next()?.trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())?;
            (q > 0.0 && !tag.is_empty() && tag != "*" && tag.len() <= 35)
                .then(|| (tag.to_string(), q))
        })
        .collect();
    tags.sort_by(|a, b| b.1.total_cmp(&a.1));
    tags.into_iter().map(|(t, _)| t).collect()
}

/// The `lang` parameter of a query string (at most 35 characters).
fn query_lang(query: Option<&str>) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs
        .into_iter()
        .find(|(k, _)| k == "lang")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 35)
}

/// The form token of the pages of link `token`.
pub fn form_token(keys: &SurveyKeys, token: &str) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(keys.form()).expect("any key length");
    m.update(b"form:");
    m.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// Whether a post of link `token` carries its form token and does not say
/// it comes from another site.
fn form_is_genuine(keys: &SurveyKeys, token: &str, fields: &Fields, headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return false;
    }
    let Some(sent) = view::first(fields, "_csrf").and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
    else {
        return false;
    };
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(keys.form()).expect("any key length");
    m.update(b"form:");
    m.update(token.as_bytes());
    m.verify_slice(&sent).is_ok()
}

/// The seed of a respondent's item orders: the same on every visit (so a
/// reloaded page keeps its order), unpredictable without the server's key.
fn order_seed(keys: &SurveyKeys, campaign: &str, unit: &str) -> u64 {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(keys.form()).expect("any key length");
    m.update(b"order:");
    m.update(campaign.as_bytes());
    m.update(b"/");
    m.update(unit.as_bytes());
    let out = m.finalize().into_bytes();
    u64::from_be_bytes(out[..8].try_into().expect("8 bytes"))
}

/// A verified visit: the link's claims, its campaign and instrument, the
/// page language and the response so far.
struct Visit {
    token: String,
    claims: TokenClaims,
    campaign: CampaignRecord,
    instrument: Arc<Instrument>,
    lang: String,
    response: Option<ResponseRecord>,
}

impl Visit {
    fn show_url(&self) -> String {
        format!("/s/{}?lang={}", self.token, self.lang)
    }
}

impl PagesContext {
    async fn instrument(&self, key: &str, version: i64) -> Result<Arc<Instrument>, StoreError> {
        let id = (key.to_string(), version);
        if let Some(i) = self
            .shared
            .instruments
            .lock()
            .expect("not poisoned")
            .get(&id)
        {
            return Ok(Arc::clone(i));
        }
        let record = self
            .store
            .instrument(key, version)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("survey '{key}' version {version}")))?;
        let parsed =
            parse_instrument(&record.source, &format!("{key} v{version}")).map_err(|e| {
                StoreError::InvalidState(format!(
                    "published survey '{key}' version {version} does not parse: {}",
                    e.first().map(ToString::to_string).unwrap_or_default()
                ))
            })?;
        let parsed = Arc::new(parsed);
        let mut cache = self.shared.instruments.lock().expect("not poisoned");
        if cache.len() >= MAX_CACHED_INSTRUMENTS {
            cache.clear();
        }
        cache.insert(id, Arc::clone(&parsed));
        Ok(parsed)
    }

    /// Checks the limits and the link, and loads what the pages need; a
    /// refusal is the page to answer with.
    async fn visit(
        &self,
        ip: Option<IpAddr>,
        token: String,
        wanted: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Visit, Response> {
        let accept = accept_languages(headers);
        let accept: Vec<&str> = accept.iter().map(String::as_str).collect();
        let ui_lang = i18n::ui_language(&accept);
        self.shared
            .limits
            .check_ip(ip)
            .map_err(|w| too_many(ui_lang, w))?;
        let now = self.clock.now();
        let claims = token::verify(self.config.survey_keys.token(), &token, now).map_err(|e| {
            let (notice, status) = match e {
                TokenError::Expired(_) => (Notice::Expired, StatusCode::GONE),
                TokenError::Tampered => (Notice::Tampered, StatusCode::FORBIDDEN),
                TokenError::Malformed | TokenError::Claim { .. } => {
                    (Notice::Malformed, StatusCode::NOT_FOUND)
                }
            };
            notice_page(ui_lang, notice, status)
        })?;
        self.shared
            .limits
            .check_link(claims.campaign(), claims.unit())
            .map_err(|w| too_many(ui_lang, w))?;
        let campaign = match self.store.campaign(claims.campaign()).await {
            Ok(Some(c)) if c.wave == claims.wave() => c,
            Ok(_) => return Err(notice_page(ui_lang, Notice::Unknown, StatusCode::NOT_FOUND)),
            Err(e) => return Err(store_failed(ui_lang, e)),
        };
        let instrument = self
            .instrument(&campaign.instrument, campaign.version)
            .await
            .map_err(|e| store_failed(ui_lang, e))?;
        let lang = instrument.pick_language(wanted, &accept).to_string();
        let response = self
            .store
            .response(campaign.id, claims.unit())
            .await
            .map_err(|e| store_failed(&lang, e))?;
        let completed = response
            .as_ref()
            .is_some_and(|r| r.status == ResponseStatus::Completed);
        if now < campaign.opens_at {
            return Err(notice_page(&lang, Notice::NotOpen, StatusCode::FORBIDDEN));
        }
        if now >= campaign.closes_at && !completed {
            return Err(notice_page(&lang, Notice::Closed, StatusCode::GONE));
        }
        Ok(Visit {
            token,
            claims,
            campaign,
            instrument,
            lang,
            response,
        })
    }
}

fn stored_answers(r: &ResponseRecord) -> Option<Answers> {
    serde_json::from_value(Value::Object(r.answers.clone())).ok()
}

async fn show(
    _: Public,
    State(ctx): State<PagesContext>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let wanted = query_lang(query.as_deref());
    let v = match ctx.visit(ip, token, wanted.as_deref(), &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    match &v.response {
        None => consent_page(&ctx, &v, false),
        Some(r) => match r.status {
            ResponseStatus::Declined => declined_page(&ctx, &v),
            ResponseStatus::Completed => notice_page(&v.lang, Notice::Completed, StatusCode::GONE),
            ResponseStatus::Started => {
                let page = usize::try_from(r.page).unwrap_or(usize::MAX);
                let Some(answers) = stored_answers(r).filter(|_| page < v.instrument.pages.len())
                else {
                    tracing::error!(campaign = %v.campaign.key, "a stored response does not fit its instrument");
                    return notice_page(&v.lang, Notice::Broken, StatusCode::INTERNAL_SERVER_ERROR);
                };
                let typed = view::fields_of_answers(&v.instrument, &answers);
                questions_page(&ctx, &v, page, &answers, &typed, &HashMap::new())
            }
        },
    }
}

/// Reads a post: its fields (a body that is not a form, or has too many
/// fields, is refused as not genuine).
fn posted(body: &Bytes) -> Fields {
    view::parse_form(body).unwrap_or_default()
}

async fn consent(
    _: Public,
    State(ctx): State<PagesContext>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = posted(&body);
    let v = match ctx
        .visit(ip, token, view::first(&fields, "_lang"), &headers)
        .await
    {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !form_is_genuine(&ctx.config.survey_keys, &v.token, &fields, &headers) {
        return notice_page(&v.lang, Notice::Forbidden, StatusCode::FORBIDDEN);
    }
    match v.response.as_ref().map(|r| r.status) {
        Some(ResponseStatus::Completed) => {
            return notice_page(&v.lang, Notice::Completed, StatusCode::CONFLICT)
        }
        Some(ResponseStatus::Started) => return see_other(v.show_url()),
        Some(ResponseStatus::Declined) | None => {}
    }
    let granted = match view::first(&fields, "consent") {
        Some("yes") => true,
        Some("no") => false,
        _ => return consent_page(&ctx, &v, true),
    };
    match ctx
        .store
        .begin_response(
            v.campaign.id,
            v.claims.unit(),
            &v.lang,
            &v.instrument.consent.version,
            granted,
            ctx.clock.now(),
        )
        .await
    {
        Ok(_) => {
            ctx.triggers.forget(v.claims.unit());
            see_other(v.show_url())
        }
        Err(e) => store_failed(&v.lang, e),
    }
}

async fn answer(
    _: Public,
    State(ctx): State<PagesContext>,
    ClientIp(ip): ClientIp,
    Path((token, n)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = posted(&body);
    let v = match ctx
        .visit(ip, token, view::first(&fields, "_lang"), &headers)
        .await
    {
        Ok(v) => v,
        Err(page) => return page,
    };
    if !form_is_genuine(&ctx.config.survey_keys, &v.token, &fields, &headers) {
        return notice_page(&v.lang, Notice::Forbidden, StatusCode::FORBIDDEN);
    }
    let r = match &v.response {
        Some(r) if r.status == ResponseStatus::Completed => {
            return notice_page(&v.lang, Notice::Completed, StatusCode::CONFLICT)
        }
        Some(r) if r.status == ResponseStatus::Started => r,
        // Consent first.
        _ => return see_other(v.show_url()),
    };
    let i = Arc::clone(&v.instrument);
    // A page posted twice (back button, a second tab) or out of order is
    // not saved: the respondent is sent to where the response stands.
    let page = match n.parse::<usize>() {
        Ok(n) if n >= 1 && i64::try_from(n - 1).is_ok_and(|p| p == r.page) => n - 1,
        _ => return see_other(v.show_url()),
    };
    let Some(page_def) = i.pages.get(page) else {
        return see_other(v.show_url());
    };
    let Some(stored) = stored_answers(r) else {
        return notice_page(&v.lang, Notice::Broken, StatusCode::INTERNAL_SERVER_ERROR);
    };
    // Earlier pages' answers, without any of this page's.
    let mut earlier = stored;
    for item in &page_def.items {
        earlier.remove(&item.key);
    }
    let mut merged = earlier.clone();
    let mut errors: HashMap<String, &'static str> = HashMap::new();
    for item in &page_def.items {
        if !view::on_page(&i, page, item, &earlier) {
            continue;
        }
        match view::answer_of(item, &fields) {
            Ok(Some(a)) => {
                merged.insert(item.key.clone(), a);
            }
            Ok(None) => {}
            Err(code) => {
                errors.insert(item.key.clone(), code);
            }
        }
    }
    // An answer to a question whose condition (on this page) does not hold
    // is dropped, not refused: the page could not hide the question.
    for item in &page_def.items {
        if merged.contains_key(&item.key) && !i.is_shown(&item.key, &merged) {
            merged.remove(&item.key);
        }
    }
    if let Err(found) = validate_page(&i, page, &merged) {
        for (key, code) in view::errors_by_item(found) {
            errors.entry(key).or_insert(code);
        }
    }
    if !errors.is_empty() {
        return questions_page(&ctx, &v, page, &earlier, &fields, &errors);
    }
    // The next page with a question to show; none: complete.
    let mut next = page + 1;
    while next < i.pages.len()
        && !i.pages[next]
            .items
            .iter()
            .any(|item| view::on_page(&i, next, item, &merged))
    {
        next += 1;
    }
    let complete = next == i.pages.len();
    let mut orders = r.orders.clone();
    if page_def.randomise {
        let keys: Vec<Value> = shown_order(&ctx, &v, page)
            .into_iter()
            .map(|idx| Value::from(page_def.items[idx].key.clone()))
            .collect();
        orders.insert(page.to_string(), Value::Array(keys));
    }
    let answers: Map<String, Value> = match serde_json::to_value(&merged) {
        Ok(Value::Object(m)) => m,
        _ => return notice_page(&v.lang, Notice::Broken, StatusCode::INTERNAL_SERVER_ERROR),
    };
    let saved = ctx
        .store
        .save_page(
            v.campaign.id,
            v.claims.unit(),
            r.page,
            &answers,
            &orders,
            i64::try_from(next).unwrap_or(i64::MAX),
            complete,
            ctx.clock.now(),
        )
        .await;
    match saved {
        Ok(_) if complete => {
            ctx.metrics.count_survey_response(&v.campaign.key);
            ctx.triggers.forget(v.claims.unit());
            see_other(format!("/s/{}/done?lang={}", v.token, v.lang))
        }
        Ok(_) => see_other(v.show_url()),
        // Saved by a concurrent post of the same page: show where it stands.
        Err(StoreError::InvalidState(_)) => see_other(v.show_url()),
        Err(e) => store_failed(&v.lang, e),
    }
}

async fn done(
    _: Public,
    State(ctx): State<PagesContext>,
    ClientIp(ip): ClientIp,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let wanted = query_lang(query.as_deref());
    let v = match ctx.visit(ip, token, wanted.as_deref(), &headers).await {
        Ok(v) => v,
        Err(page) => return page,
    };
    match v.response.as_ref().map(|r| r.status) {
        Some(ResponseStatus::Completed) => notice_page(&v.lang, Notice::Thanks, StatusCode::OK),
        _ => see_other(v.show_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_is_read_best_first_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("fr;q=0.5, es-MX, *;q=0.1, de;q=0"),
        );
        assert_eq!(accept_languages(&h), ["es-MX", "fr"]);
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_str(&"x,".repeat(300)).unwrap(),
        );
        assert!(accept_languages(&h).is_empty());
    }

    #[test]
    fn every_template_renders_and_the_policy_allows_the_style() {
        for lang in ["en", "es", "ar"] {
            let r = notice_page(lang, Notice::Expired, StatusCode::GONE);
            assert_eq!(r.status(), StatusCode::GONE);
            let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap();
            assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        }
        for name in [
            "base.html",
            "notice.html",
            "consent.html",
            "consent_form.html",
            "page.html",
        ] {
            assert!(TEMPLATES.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn query_lang_is_bounded() {
        assert_eq!(query_lang(Some("lang=es&x=1")).as_deref(), Some("es"));
        assert_eq!(query_lang(Some(&format!("lang={}", "a".repeat(36)))), None);
        assert_eq!(query_lang(Some("%zz")), None);
        assert_eq!(query_lang(None), None);
    }
}
