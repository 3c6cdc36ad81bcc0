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

const CSS: &str = include_str!("../../../templates/surveys/style.css");

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    for (name, source) in [
        (
            "base.html",
            include_str!("../../../templates/surveys/base.html"),
        ),
        (
            "notice.html",
            include_str!("../../../templates/surveys/notice.html"),
        ),
        (
            "consent.html",
            include_str!("../../../templates/surveys/consent.html"),
        ),
        (
            "consent_form.html",
            include_str!("../../../templates/surveys/consent_form.html"),
        ),
        (
            "page.html",
            include_str!("../../../templates/surveys/page.html"),
        ),
    ] {
        env.add_template(name, source)
            .expect("the survey templates compile (checked by the tests)");
    }
    env
});

/// Nothing but the page's own style: no scripts, images, frames or other
/// origins.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("ASCII")
});

/// An HTML answer with the pages' headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

fn see_other(to: String) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A link to another language of the page.
#[derive(Serialize)]
struct LangLink {
    tag: String,
    name: String,
    href: String,
    current: bool,
}

/// What every page template has.
#[derive(Serialize)]
struct Frame {
    lang: String,
    dir: &'static str,
    t: &'static Ui,
    css: &'static str,
    doc_title: String,
    has_errors: bool,
    languages: Vec<LangLink>,
}

fn frame(lang: &str, doc_title: String, langs: &[String], token: &str) -> Frame {
    Frame {
        lang: lang.to_string(),
        dir: direction(lang),
        t: i18n::ui(lang),
        css: CSS,
        doc_title,
        has_errors: false,
        languages: langs
            .iter()
            .map(|tag| LangLink {
                tag: tag.clone(),
                name: i18n::language_name(tag),
                href: format!("/s/{token}?lang={tag}"),
                current: tag == lang,
            })
            .collect(),
    }
}

fn render<T: Serialize>(name: &str, ctx: &T, status: StatusCode) -> Response {
    match TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from_serialize(ctx)))
    {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template = name, error = %e, "a survey template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct ConsentView {
    action: String,
    text: String,
    error: Option<&'static str>,
}

#[derive(Serialize)]
struct NoticeView {
    #[serde(flatten)]
    frame: Frame,
    heading: &'static str,
    text: &'static str,
    csrf: String,
    consent: Option<ConsentView>,
}

/// A friendly page for `notice`, in `lang`, with `status`.
fn notice_page(lang: &str, notice: Notice, status: StatusCode) -> Response {
    let (heading, text) = i18n::notice(lang, notice);
    let view = NoticeView {
        frame: frame(lang, heading.to_string(), &[], ""),
        heading,
        text,
        csrf: String::new(),
        consent: None,
    };
    render("notice.html", &view, status)
}

fn too_many(lang: &str, wait: Duration) -> Response {
    let mut r = notice_page(lang, Notice::RateLimited, StatusCode::TOO_MANY_REQUESTS);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

fn store_failed(lang: &str, e: StoreError) -> Response {
    match e {
        StoreError::Unavailable(_) => {
            let mut r = notice_page(lang, Notice::Unavailable, StatusCode::SERVICE_UNAVAILABLE);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
        e => {
            tracing::error!(error = %e, "a survey page could not read or write the store");
            notice_page(lang, Notice::Broken, StatusCode::INTERNAL_SERVER_ERROR)
        }
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

fn text<'a>(t: &'a commonlab_core::surveys::Text, lang: &str, i: &Instrument) -> &'a str {
    t.get(lang)
        .or_else(|| t.get(i.default_language()))
        .map_or("", String::as_str)
}

#[derive(Serialize)]
struct ConsentPage {
    #[serde(flatten)]
    frame: Frame,
    survey_title: String,
    intro: String,
    csrf: String,
    consent: ConsentView,
}

fn consent_page(ctx: &PagesContext, v: &Visit, error: bool) -> Response {
    let i = &v.instrument;
    let title = text(&i.title, &v.lang, i).to_string();
    let mut f = frame(&v.lang, title.clone(), &i.languages, &v.token);
    f.has_errors = error;
    let page = ConsentPage {
        frame: f,
        survey_title: title,
        intro: text(&i.intro, &v.lang, i).to_string(),
        csrf: form_token(&ctx.config.survey_keys, &v.token),
        consent: ConsentView {
            action: format!("/s/{}/consent", v.token),
            text: text(&i.consent.text, &v.lang, i).to_string(),
            error: error.then(|| i18n::ui(&v.lang).answer_consent),
        },
    };
    let status = if error {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render("consent.html", &page, status)
}

fn declined_page(ctx: &PagesContext, v: &Visit) -> Response {
    let i = &v.instrument;
    let (heading, body) = i18n::notice(&v.lang, Notice::Declined);
    let view = NoticeView {
        frame: frame(&v.lang, heading.to_string(), &i.languages, &v.token),
        heading,
        text: body,
        csrf: form_token(&ctx.config.survey_keys, &v.token),
        consent: Some(ConsentView {
            action: format!("/s/{}/consent", v.token),
            text: String::new(),
            error: None,
        }),
    };
    render("notice.html", &view, StatusCode::OK)
}

#[derive(Serialize)]
struct ErrorLink {
    anchor: String,
    question: String,
    message: String,
}

#[derive(Serialize)]
struct QuestionsPage {
    #[serde(flatten)]
    frame: Frame,
    progress: String,
    survey_title: String,
    page_title: Option<String>,
    errors: Vec<ErrorLink>,
    action: String,
    csrf: String,
    button: &'static str,
    items: Vec<ItemView>,
}

/// The keys of page `page`'s items in the order this respondent sees them.
fn shown_order(ctx: &PagesContext, v: &Visit, page: usize) -> Vec<usize> {
    let seed = order_seed(&ctx.config.survey_keys, &v.campaign.key, v.claims.unit());
    v.instrument.page_order(page, seed)
}

/// Page `page` showing `typed`, with `errors` (item key → code).
fn questions_page(
    ctx: &PagesContext,
    v: &Visit,
    page: usize,
    earlier: &Answers,
    typed: &Fields,
    errors: &HashMap<String, &'static str>,
) -> Response {
    let i = &v.instrument;
    let ui = i18n::ui(&v.lang);
    let p = &i.pages[page];
    let mut items = Vec::new();
    let mut links = Vec::new();
    for idx in shown_order(ctx, v, page) {
        let item = &p.items[idx];
        if !view::on_page(i, page, item, earlier) {
            continue;
        }
        let error = errors
            .get(&item.key)
            .map(|code| view::error_message(item, code, typed, &v.lang));
        let iv = view::item_view(i, item, &v.lang, ui, typed, error);
        if let Some(message) = &iv.error {
            links.push(ErrorLink {
                anchor: iv.anchor.clone(),
                question: iv.text.clone(),
                message: message.clone(),
            });
        }
        items.push(iv);
    }
    let title = text(&i.title, &v.lang, i).to_string();
    let mut f = frame(&v.lang, title.clone(), &i.languages, &v.token);
    f.has_errors = !links.is_empty();
    let last = page + 1 == i.pages.len();
    let view = QuestionsPage {
        frame: f,
        progress: i18n::fill(
            ui.progress,
            &[
                ("n", (page + 1).to_string()),
                ("total", i.pages.len().to_string()),
            ],
        ),
        survey_title: title,
        page_title: p.title.as_ref().map(|t| text(t, &v.lang, i).to_string()),
        errors: links,
        action: format!("/s/{}/pages/{}", v.token, page + 1),
        csrf: form_token(&ctx.config.survey_keys, &v.token),
        button: if last { ui.finish } else { ui.next },
        items,
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render("page.html", &view, status)
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
        Ok(_) => see_other(v.show_url()),
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
        Ok(_) if complete => see_other(format!("/s/{}/done?lang={}", v.token, v.lang)),
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
