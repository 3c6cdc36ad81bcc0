//! How the survey pages look: the templates (built in), the page frame
//! and the pages themselves (consent, declined, questions, notices), with
//! the HTML responses' headers. The handlers in the parent module decide
//! which page a visit gets.

use super::*;

pub(super) const CSS: &str = include_str!("../../../templates/surveys/style.css");

pub(super) static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
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
pub(super) static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    HeaderValue::from_str(&format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("ASCII")
});

/// An HTML answer with the pages' headers.
pub(super) fn html(status: StatusCode, body: String) -> Response {
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

pub(super) fn see_other(to: String) -> Response {
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
pub(super) struct LangLink {
    tag: String,
    name: String,
    href: String,
    current: bool,
}

/// What every page template has.
#[derive(Serialize)]
pub(super) struct Frame {
    lang: String,
    dir: &'static str,
    t: &'static Ui,
    css: &'static str,
    doc_title: String,
    has_errors: bool,
    languages: Vec<LangLink>,
}

pub(super) fn frame(lang: &str, doc_title: String, langs: &[String], token: &str) -> Frame {
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

pub(super) fn render<T: Serialize>(name: &str, ctx: &T, status: StatusCode) -> Response {
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
pub(super) struct ConsentView {
    action: String,
    text: String,
    error: Option<&'static str>,
}

#[derive(Serialize)]
pub(super) struct NoticeView {
    #[serde(flatten)]
    frame: Frame,
    heading: &'static str,
    text: &'static str,
    csrf: String,
    consent: Option<ConsentView>,
}

/// A friendly page for `notice`, in `lang`, with `status`.
pub(super) fn notice_page(lang: &str, notice: Notice, status: StatusCode) -> Response {
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

pub(super) fn too_many(lang: &str, wait: Duration) -> Response {
    let mut r = notice_page(lang, Notice::RateLimited, StatusCode::TOO_MANY_REQUESTS);
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

pub(super) fn store_failed(lang: &str, e: StoreError) -> Response {
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

pub(super) fn text<'a>(
    t: &'a commonlab_core::surveys::Text,
    lang: &str,
    i: &Instrument,
) -> &'a str {
    t.get(lang)
        .or_else(|| t.get(i.default_language()))
        .map_or("", String::as_str)
}

#[derive(Serialize)]
pub(super) struct ConsentPage {
    #[serde(flatten)]
    frame: Frame,
    survey_title: String,
    intro: String,
    csrf: String,
    consent: ConsentView,
}

pub(super) fn consent_page(ctx: &PagesContext, v: &Visit, error: bool) -> Response {
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

pub(super) fn declined_page(ctx: &PagesContext, v: &Visit) -> Response {
    let i = &v.instrument;
    let (heading, body) = i18n::notice(&v.lang, Notice::Declined);
    let view = NoticeView {
        frame: frame(&v.lang, heading.to_string(), &i.languages, &v.token),
        heading,
        text: body,
        csrf: form_token(&ctx.config.survey_keys, &v.token),
        consent: Some(ConsentView {
            action: format!("/s/{}/consent", v.token),
            text: text(&i.consent.text, &v.lang, i).to_string(),
            error: None,
        }),
    };
    render("notice.html", &view, StatusCode::OK)
}

#[derive(Serialize)]
pub(super) struct ErrorLink {
    anchor: String,
    question: String,
    message: String,
}

#[derive(Serialize)]
pub(super) struct QuestionsPage {
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
pub(super) fn shown_order(ctx: &PagesContext, v: &Visit, page: usize) -> Vec<usize> {
    let seed = order_seed(&ctx.config.survey_keys, &v.campaign.key, v.claims.unit());
    v.instrument.page_order(page, seed)
}

/// Page `page` showing `typed`, with `errors` (item key → code).
pub(super) fn questions_page(
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
