//! Survey answers in the load mix: the real respondent flow through the
//! public pages, set up through the public management API.
//!
//! Setup (before the clock starts, with a researcher key): the load test's
//! own instrument ([`INSTRUMENT`]: 3 pages of 4 required five-point items)
//! is published (the same source again is a no-op), a campaign of it is
//! created (`loadtest-SEED-UNIXTIME`, open from an hour ago for a day), and
//! personal links are made for synthetic units (`loadtest-r0`, … in the
//! run's communities; `loadtest-v0`, … for page views, which never
//! consent, so their page stays viewable).
//!
//! A respondent's flow, one scheduled request per step: open the link
//! (`GET /s/{token}`, the consent page, from which the form token is read),
//! consent (`POST /s/{token}/consent`), each page posted with the form
//! token (`POST /s/{token}/pages/{n}`), then the thanks page
//! (`GET /s/{token}/done`). Redirects are not followed (a browser would
//! also load each next page; those loads are what the `survey` views
//! measure). A post is accepted only when answered `303` to the expected
//! page (the page again after consent and each page but the last, the
//! thanks page after the last; a page posted out of order also comes back
//! to the page, so the thanks page, shown only for a completed response,
//! is what proves the whole flow); a `200` to a post is a refused form
//! (`form_refused`). A
//! respondent whose step fails is abandoned (counted) and a fresh one
//! takes its place.

use std::collections::VecDeque;

use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::{LoadError, Shared};

/// The load test's instrument.
pub const INSTRUMENT: &str = r#"key = "commonlab-loadtest"
version = 1
languages = ["en"]
source = "Commonlab load test: synthetic items, not a validated scale."
title.en = "Load test"
intro.en = "Synthetic respondents of commonlab loadtest."
[consent]
version = "1"
text.en = "Synthetic consent."
[label_sets.five]
en = ["Strongly disagree", "Disagree", "Neither", "Agree", "Strongly agree"]
[[pages]]
[[pages.items]]
key = "a1"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "First statement"
[[pages.items]]
key = "a2"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Second statement"
[[pages.items]]
key = "a3"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Third statement"
[[pages.items]]
key = "a4"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Fourth statement"
[[pages]]
[[pages.items]]
key = "b1"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Fifth statement"
[[pages.items]]
key = "b2"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Sixth statement"
[[pages.items]]
key = "b3"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Seventh statement"
[[pages.items]]
key = "b4"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Eighth statement"
[[pages]]
[[pages.items]]
key = "c1"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Ninth statement"
[[pages.items]]
key = "c2"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Tenth statement"
[[pages.items]]
key = "c3"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Eleventh statement"
[[pages.items]]
key = "c4"
kind = "likert"
points = 5
labels = "five"
required = true
text.en = "Twelfth statement"
"#;

/// The instrument's key and version.
pub const INSTRUMENT_KEY: &str = "commonlab-loadtest";
const INSTRUMENT_VERSION: i64 = 1;
/// The item keys of each page of [`INSTRUMENT`].
pub const PAGES: [[&str; 4]; 3] = [
    ["a1", "a2", "a3", "a4"],
    ["b1", "b2", "b3", "b4"],
    ["c1", "c2", "c3", "c4"],
];
/// Requests in one respondent's flow: open, consent, each page, done.
pub const STEPS: usize = PAGES.len() + 3;
/// Most links one setup makes (answering and viewing together).
pub const MAX_LINKS: usize = 100_000;
/// Links requested per call (the API's own limit is 10,000).
const LINKS_PER_CALL: usize = 5_000;
/// Links made for page views.
pub const VIEW_LINKS: usize = 100;

/// What the setup made.
#[derive(Debug, Clone)]
pub struct SurveySetup {
    pub campaign: String,
    /// Absolute URLs of the answering respondents' links.
    pub answer_links: Vec<String>,
    /// Absolute URLs of the links used for page views.
    pub view_links: Vec<String>,
}

/// The survey part of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SurveyReport {
    /// The campaign the setup created.
    pub campaign: String,
    /// Links made for answering respondents.
    pub links: u64,
    /// Respondents who opened their link.
    pub started: u64,
    /// Respondents whose last page was accepted: their response is
    /// complete on the server (the thanks page may not have been viewed
    /// yet when the run ended).
    pub submitted: u64,
    /// Respondents whose thanks page was shown (every page accepted).
    pub completed: u64,
    /// Respondents left after a failed step.
    pub abandoned: u64,
    /// Answer steps due when every respondent had a step in flight and no
    /// unused link was left (counted as not sent).
    pub no_respondent: u64,
}

/// Where one respondent stands.
#[derive(Debug, Clone)]
struct Respondent {
    url: String,
    /// Read from the page when the link is opened.
    form_token: Option<String>,
    /// Index into the flow: 0 open, 1 consent, 2.. pages, then done.
    step: usize,
}

/// A step to send.
#[derive(Debug)]
pub(super) struct Step {
    pub respondent: usize,
    pub step: usize,
    /// `GET url` when `form` is `None`, else a form post.
    pub url: String,
    pub form: Option<Vec<(String, String)>>,
    /// Where an accepted post must be sent on (`Location`, path suffix).
    pub expect_location: Option<String>,
}

impl Step {
    pub fn is_post(&self) -> bool {
        self.form.is_some()
    }
}

/// What came back from a step.
#[derive(Debug)]
pub(super) struct StepDone {
    pub respondent: usize,
    pub step: usize,
    pub accepted: bool,
    pub form_token: Option<String>,
}

/// The respondents of a run: who is idle, who is next.
pub(super) struct Respondents {
    all: Vec<Respondent>,
    /// Respondents whose next step may be sent (none of theirs in flight).
    ready: VecDeque<usize>,
    /// The next unused link.
    fresh: usize,
    pub report: SurveyReport,
}

impl Respondents {
    /// `at_once` respondents start ready; more join as others finish.
    pub fn new(setup: &SurveySetup, at_once: usize) -> Self {
        let all: Vec<Respondent> = setup
            .answer_links
            .iter()
            .map(|url| Respondent {
                url: url.clone(),
                form_token: None,
                step: 0,
            })
            .collect();
        let fresh = at_once.min(all.len());
        Respondents {
            ready: (0..fresh).collect(),
            fresh,
            report: SurveyReport {
                campaign: setup.campaign.clone(),
                links: all.len() as u64,
                ..SurveyReport::default()
            },
            all,
        }
    }

    /// The next step of the next idle respondent (a fresh one when every
    /// started respondent has a step in flight); `None` when none is left.
    pub fn next(&mut self, rng: &mut impl Rng) -> Option<Step> {
        let r = match self.ready.pop_front() {
            Some(r) => r,
            None if self.fresh < self.all.len() => {
                self.fresh += 1;
                self.fresh - 1
            }
            None => {
                self.report.no_respondent += 1;
                return None;
            }
        };
        let who = &self.all[r];
        let token = |fields: Vec<(String, String)>| {
            let mut all = vec![
                (
                    "_csrf".to_string(),
                    who.form_token.clone().unwrap_or_default(),
                ),
                ("_lang".to_string(), "en".to_string()),
            ];
            all.extend(fields);
            all
        };
        let page_url = who.url.trim_end_matches('/');
        let (url, form, expect_location) = match who.step {
            0 => (who.url.clone(), None, None),
            1 => (
                format!("{page_url}/consent"),
                Some(token(vec![("consent".into(), "yes".into())])),
                Some(path_of(page_url)),
            ),
            s if s < STEPS - 1 => {
                let page = s - 2;
                let answers = PAGES[page]
                    .iter()
                    .map(|k| (k.to_string(), rng.random_range(1..=5u8).to_string()))
                    .collect();
                let next = if page + 1 == PAGES.len() {
                    format!("{}/done", path_of(page_url))
                } else {
                    path_of(page_url)
                };
                (
                    format!("{page_url}/pages/{}", page + 1),
                    Some(token(answers)),
                    Some(next),
                )
            }
            _ => (format!("{page_url}/done"), None, None),
        };
        if who.step == 0 {
            self.report.started += 1;
        }
        Some(Step {
            respondent: r,
            step: who.step,
            url,
            form,
            expect_location,
        })
    }

    /// A step that could not be sent: its respondent is idle again.
    pub fn unsent(&mut self, step: &Step) {
        if step.step == 0 {
            self.report.started -= 1;
        }
        self.ready.push_front(step.respondent);
    }

    /// A step answered: the respondent moves on, finishes, or is
    /// abandoned (a fresh respondent then takes its place).
    pub fn done(&mut self, d: StepDone) {
        let who = &mut self.all[d.respondent];
        if !d.accepted {
            self.report.abandoned += 1;
            self.start_fresh();
            return;
        }
        if d.form_token.is_some() {
            who.form_token = d.form_token;
        }
        who.step = d.step + 1;
        if d.step == STEPS - 2 {
            self.report.submitted += 1;
        }
        if who.step == STEPS {
            self.report.completed += 1;
            self.start_fresh();
        } else {
            self.ready.push_back(d.respondent);
        }
    }

    fn start_fresh(&mut self) {
        if self.fresh < self.all.len() {
            self.ready.push_back(self.fresh);
            self.fresh += 1;
        }
    }
}

/// The path of an absolute URL (`http://h:p/s/T` → `/s/T`).
fn path_of(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.path().to_string())
}

/// The form token of a survey page (`name="_csrf" value="…"`).
pub(super) fn form_token(html: &str) -> Option<String> {
    let at = html.find(r#"name="_csrf" value=""#)? + r#"name="_csrf" value=""#.len();
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].to_string())
}

/// Answers a step's request: accepted, and the form token when the page
/// carried one.
pub(super) fn judge(
    step_is_post: bool,
    status: u16,
    location: Option<&str>,
    expect_location: Option<&str>,
    body: &[u8],
) -> (Result<(), String>, Option<String>) {
    if step_is_post {
        // The page's language travels in the query (`?lang=en`).
        let path = location.map(|l| l.split_once('?').map_or(l, |(p, _)| p));
        return match status {
            303 if path == expect_location => (Ok(()), None),
            303 => (Err("303_elsewhere".into()), None),
            200 => (Err("form_refused".into()), None),
            s => (Err(s.to_string()), None),
        };
    }
    if status != 200 {
        return (Err(status.to_string()), None);
    }
    (Ok(()), form_token(&String::from_utf8_lossy(body)))
}

async fn post_json(
    shared: &Shared,
    key: &str,
    path: &str,
    body: Value,
) -> Result<Value, LoadError> {
    let resp = shared
        .http
        .post(format!("{}{path}", shared.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .map_err(|e| LoadError::Server(format!("survey setup: cannot reach {path}: {e}")))?;
    let status = resp.status();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(LoadError::Server(format!(
            "survey setup: {path} answered {status}: {answer}"
        )));
    }
    Ok(answer)
}

/// Publishes the instrument, creates a campaign and makes `answering`
/// links for answering respondents and [`VIEW_LINKS`] for page views, all
/// through the management API with `research_key`.
pub(super) async fn set_up(
    shared: &Shared,
    research_key: &str,
    communities: &[String],
    answering: usize,
    seed: u64,
) -> Result<SurveySetup, LoadError> {
    let reason = "commonlab loadtest";
    post_json(
        shared,
        research_key,
        "/api/v1/surveys/instruments",
        json!({"source": INSTRUMENT, "file": "loadtest.toml", "reason": reason}),
    )
    .await?;
    let now = chrono::Utc::now();
    let campaign = format!("loadtest-{seed}-{}", now.timestamp());
    post_json(
        shared,
        research_key,
        "/api/v1/surveys/campaigns",
        json!({
            "key": campaign,
            "instrument": INSTRUMENT_KEY,
            "version": INSTRUMENT_VERSION,
            "wave": "load",
            "opens_at": (now - chrono::Duration::hours(1)).to_rfc3339(),
            "closes_at": (now + chrono::Duration::days(1)).to_rfc3339(),
            "reason": reason,
        }),
    )
    .await?;
    let links = |prefix: &'static str, n: usize| {
        let campaign = campaign.clone();
        async move {
            let mut out = Vec::with_capacity(n);
            let mut first = 0;
            while first < n {
                let last = (first + LINKS_PER_CALL).min(n);
                let units: Vec<Value> = (first..last)
                    .map(|i| json!({"id": format!("loadtest-{prefix}{i}"), "community": communities[i % communities.len()]}))
                    .collect();
                let answer = post_json(
                    shared,
                    research_key,
                    &format!("/api/v1/surveys/campaigns/{campaign}/links"),
                    json!({"units": units, "reason": reason}),
                )
                .await?;
                let paths = answer["links"].as_array().cloned().unwrap_or_default();
                if paths.len() != last - first {
                    return Err(LoadError::Server(format!(
                        "survey setup: asked for {} links, got {}",
                        last - first,
                        paths.len()
                    )));
                }
                for p in paths {
                    let path = p["path"].as_str().unwrap_or_default();
                    out.push(format!("{}{path}", shared.base));
                }
                first = last;
            }
            Ok::<_, LoadError>(out)
        }
    };
    let answer_links = links("r", answering.min(MAX_LINKS - VIEW_LINKS)).await?;
    let view_links = links("v", VIEW_LINKS).await?;
    Ok(SurveySetup {
        campaign,
        answer_links,
        view_links,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_instrument_parses_and_its_pages_are_listed() {
        let i = commonlab_core::surveys::parse_instrument(INSTRUMENT, "loadtest.toml").unwrap();
        assert_eq!(i.key, INSTRUMENT_KEY);
        assert_eq!(i64::from(i.version), INSTRUMENT_VERSION);
        let keys: Vec<Vec<&str>> = i
            .pages
            .iter()
            .map(|p| p.items.iter().map(|it| it.key.as_str()).collect())
            .collect();
        assert_eq!(keys, PAGES.map(|p| p.to_vec()).to_vec());
    }

    #[test]
    fn the_form_token_is_read_from_a_page() {
        let html = r#"<form method="post"><input type="hidden" name="_csrf" value="Ab-9_x"><input name="_lang">"#;
        assert_eq!(form_token(html).as_deref(), Some("Ab-9_x"));
        assert_eq!(form_token("<p>no form</p>"), None);
    }

    #[test]
    fn a_respondent_walks_the_flow_and_a_failure_brings_a_fresh_one() {
        let setup = SurveySetup {
            campaign: "c".into(),
            answer_links: vec![
                "http://127.0.0.1:1/s/T0".into(),
                "http://127.0.0.1:1/s/T1".into(),
            ],
            view_links: vec![],
        };
        let mut rs = Respondents::new(&setup, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = Vec::new();
        for _ in 0..STEPS {
            let s = rs.next(&mut rng).unwrap();
            assert_eq!(s.respondent, 0);
            seen.push((s.url.clone(), s.expect_location.clone()));
            if let Some(form) = &s.form {
                assert_eq!(form[0], ("_csrf".to_string(), "tok".to_string()));
            }
            rs.done(StepDone {
                respondent: s.respondent,
                step: s.step,
                accepted: true,
                form_token: (s.step == 0).then(|| "tok".to_string()),
            });
        }
        let urls: Vec<&str> = seen.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:1/s/T0",
                "http://127.0.0.1:1/s/T0/consent",
                "http://127.0.0.1:1/s/T0/pages/1",
                "http://127.0.0.1:1/s/T0/pages/2",
                "http://127.0.0.1:1/s/T0/pages/3",
                "http://127.0.0.1:1/s/T0/done",
            ]
        );
        assert_eq!(seen[4].1.as_deref(), Some("/s/T0/done"));
        assert_eq!(seen[2].1.as_deref(), Some("/s/T0"));
        assert_eq!(rs.report.completed, 1);
        assert_eq!(rs.report.submitted, 1);
        // The second respondent starts, fails, and nobody is left.
        let s = rs.next(&mut rng).unwrap();
        assert_eq!((s.respondent, s.step), (1, 0));
        rs.done(StepDone {
            respondent: 1,
            step: 0,
            accepted: false,
            form_token: None,
        });
        assert!(rs.next(&mut rng).is_none());
        assert_eq!(
            (
                rs.report.started,
                rs.report.abandoned,
                rs.report.no_respondent
            ),
            (2, 1, 1)
        );
    }

    #[test]
    fn posts_are_accepted_only_when_sent_on_to_the_expected_page() {
        assert_eq!(judge(true, 303, Some("/s/T"), Some("/s/T"), b"").0, Ok(()));
        assert_eq!(
            judge(true, 303, Some("/s/T/done?lang=en"), Some("/s/T/done"), b"").0,
            Ok(())
        );
        assert_eq!(
            judge(true, 303, Some("/s/T/done"), Some("/s/T"), b"").0,
            Err("303_elsewhere".into())
        );
        assert_eq!(
            judge(true, 200, None, Some("/s/T"), b"").0,
            Err("form_refused".into())
        );
        assert_eq!(
            judge(true, 429, None, Some("/s/T"), b"").0,
            Err("429".into())
        );
        let (ok, token) = judge(false, 200, None, None, br#"name="_csrf" value="x""#);
        assert_eq!((ok, token.as_deref()), (Ok(()), Some("x")));
        assert_eq!(judge(false, 410, None, None, b"").0, Err("410".into()));
    }
}
