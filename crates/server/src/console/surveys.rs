//! `GET /console/surveys`: the published instruments (each version with
//! its languages) and the campaigns with their invitations and responses
//! (`surveys::service::summary`). `GET /console/surveys/{key}/{version}/preview?lang=`:
//! an instrument as respondents see it, every page in one, in each of its
//! languages, read-only: no link token, no form, nothing stored. The item
//! views are the survey pages' own (`surveys::pages::view::item_view`).
//! Both need a researcher, as the survey API does.

use super::layout::{self, Nav, Template};
use super::session::ConsoleResearcher;
use super::trials::time;
use super::ConsoleContext;
use crate::error::Error;
use crate::route::Route;
use crate::surveys::pages::{i18n, view};
use crate::surveys::service;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use commonlab_core::surveys::{direction, parse_instrument, Instrument};
use commonlab_store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub fn routes<S>() -> Vec<Route<S>>
where
    S: Clone + Send + Sync + 'static,
    ConsoleContext: FromRef<S>,
{
    vec![
        Route::get("/console/surveys", list),
        Route::get("/console/surveys/{key}/{version}/preview", preview),
    ]
}

static LIST: Template = Template::new(
    "console/surveys.html",
    include_str!("../../templates/console/surveys.html"),
);
static PREVIEW: Template = Template::new(
    "console/surveys_preview.html",
    include_str!("../../templates/console/surveys_preview.html"),
);

#[derive(Serialize)]
struct VersionView {
    version: i64,
    title: String,
    languages: Vec<LangLink>,
    published: String,
    published_by: String,
    /// The stored file does not parse any more (it did when published).
    error: Option<String>,
}

#[derive(Serialize)]
struct LangLink {
    tag: String,
    name: String,
    href: String,
    current: bool,
}

#[derive(Serialize)]
struct InstrumentView {
    key: String,
    versions: Vec<VersionView>,
}

#[derive(Serialize)]
struct CampaignView {
    key: String,
    instrument: String,
    version: i64,
    trial: Option<String>,
    wave: String,
    state: &'static str,
    opens: String,
    closes: String,
    invited: i64,
    started: i64,
    completed: i64,
    declined: i64,
}

#[derive(Serialize)]
struct ListView {
    instruments: Vec<InstrumentView>,
    campaigns: Vec<CampaignView>,
}

fn lang_links(i: &Instrument, current: &str) -> Vec<LangLink> {
    i.languages
        .iter()
        .map(|tag| LangLink {
            tag: tag.clone(),
            name: i18n::language_name(tag),
            href: format!(
                "/console/surveys/{}/{}/preview?lang={tag}",
                i.key, i.version
            ),
            current: tag == current,
        })
        .collect()
}

async fn list(
    ConsoleResearcher(s): ConsoleResearcher,
    State(ctx): State<ConsoleContext>,
) -> Response {
    let (instruments, campaigns) =
        match tokio::try_join!(ctx.store.list_instruments(), ctx.store.list_campaigns()) {
            Ok(x) => x,
            Err(e) => return layout::store_failed(&s, e),
        };
    let mut by_key: BTreeMap<String, Vec<VersionView>> = BTreeMap::new();
    for r in &instruments {
        let parsed = parse_instrument(&r.source, &format!("{} v{}", r.key, r.version));
        let (title, languages, error) = match &parsed {
            Ok(i) => (
                view::text_of(&i.title, i.default_language(), i.default_language()).to_string(),
                lang_links(i, ""),
                None,
            ),
            Err(e) => (
                String::new(),
                Vec::new(),
                Some(
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            ),
        };
        by_key.entry(r.key.clone()).or_default().push(VersionView {
            version: r.version,
            title,
            languages,
            published: time(r.published_at),
            published_by: r.published_by.clone(),
            error,
        });
    }
    let now = ctx.clock.now();
    let mut shown = Vec::with_capacity(campaigns.len());
    for c in campaigns {
        let sum = match service::summary(&ctx.store, c, now).await {
            Ok(sum) => sum,
            Err(e) => return super::trials::failed(&s, e),
        };
        shown.push(CampaignView {
            key: sum.campaign.key.clone(),
            instrument: sum.campaign.instrument.clone(),
            version: sum.campaign.version,
            trial: sum.campaign.trial_key.clone(),
            wave: sum.campaign.wave.clone(),
            state: sum.state,
            opens: time(sum.campaign.opens_at),
            closes: time(sum.campaign.closes_at),
            invited: sum.invited,
            started: sum.responses.started,
            completed: sum.responses.completed,
            declined: sum.responses.declined,
        });
    }
    let view = ListView {
        instruments: by_key
            .into_iter()
            .map(|(key, mut versions)| {
                versions.sort_by_key(|v| v.version);
                InstrumentView { key, versions }
            })
            .collect(),
        campaigns: shown,
    };
    s.page(&LIST, Nav::Surveys, "Surveys", &view)
}

#[derive(Deserialize)]
struct PreviewQuery {
    lang: Option<String>,
}

#[derive(Serialize)]
struct PageView {
    number: usize,
    title: Option<String>,
    randomised: bool,
    items: Vec<view::ItemView>,
}

#[derive(Serialize)]
struct PreviewView {
    key: String,
    version: u32,
    lang: String,
    dir: &'static str,
    /// A `lang` asked for that the instrument does not have.
    unknown_lang: Option<String>,
    languages: Vec<LangLink>,
    t: &'static i18n::Ui,
    survey_title: String,
    intro: String,
    consent: String,
    source: String,
    pages: Vec<PageView>,
}

async fn preview(
    ConsoleResearcher(s): ConsoleResearcher,
    State(ctx): State<ConsoleContext>,
    Path((key, version)): Path<(String, i64)>,
    Query(q): Query<PreviewQuery>,
) -> Response {
    let i = match service::instrument(&ctx.store, &key, version).await {
        Ok(i) => i,
        Err(Error::Store(StoreError::NotFound(what))) => {
            return layout::error_page(
                Some(&s),
                StatusCode::NOT_FOUND,
                "No such instrument",
                &format!("There is no {what}."),
            )
        }
        Err(e) => return super::trials::failed(&s, e),
    };
    let default = i.default_language().to_string();
    let (lang, unknown_lang) = match q.lang {
        Some(l) if i.languages.contains(&l) => (l, None),
        Some(l) => (default.clone(), Some(l.chars().take(35).collect())),
        None => (default.clone(), None),
    };
    let ui = i18n::ui(&lang);
    let none = view::Fields::default();
    let pages = i
        .pages
        .iter()
        .enumerate()
        .map(|(n, p)| PageView {
            number: n + 1,
            title: p
                .title
                .as_ref()
                .map(|t| view::text_of(t, &lang, &default).to_string()),
            randomised: p.randomise,
            items: p
                .items
                .iter()
                .map(|item| view::item_view(&i, item, &lang, ui, &none, None))
                .collect(),
        })
        .collect();
    let survey_title = view::text_of(&i.title, &lang, &default).to_string();
    let page = PreviewView {
        key: i.key.clone(),
        version: i.version,
        dir: direction(&lang),
        unknown_lang,
        languages: lang_links(&i, &lang),
        t: ui,
        intro: view::text_of(&i.intro, &lang, &default).to_string(),
        consent: view::text_of(&i.consent.text, &lang, &default).to_string(),
        source: i.source.clone(),
        survey_title,
        pages,
        lang,
    };
    s.page(
        &PREVIEW,
        Nav::Surveys,
        &format!("Preview of {key} v{version}"),
        &page,
    )
}

/// Whether this module's templates compile: for the tests.
#[cfg(test)]
pub(super) fn check_templates() -> Result<(), String> {
    LIST.check()?;
    PREVIEW.check()
}
