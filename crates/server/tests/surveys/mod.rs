//! The respondent's survey pages (`/s/{token}`) end to end over HTTP, on
//! both stores: the whole flow, refusals, validation, escaping, language,
//! rate limits, and many respondents at once losing nothing.

use super::*;
use chrono::{DateTime, Utc};
use commonlab_core::surveys::token::{sign, TokenClaims};
use commonlab_server::surveys::pages::form_token;
use commonlab_store::{CampaignRecord, NewCampaign, NewInstrument, ResponseStatus};
use sha2::{Digest, Sha256};

mod api;
mod load;
mod trigger;

pub const MINI: &str = include_str!("../fixtures/surveys/mini.toml");

/// A unit's pseudonym for tests: 64 hex digits from a name.
pub fn unit(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

/// Publishes `source` (as `key` version 1) and opens campaign `campaign`
/// on it, wave `wave`, from `opens` to `closes`.
pub async fn seed(
    h: &Harness,
    source: &str,
    key: &str,
    campaign: &str,
    opens: DateTime<Utc>,
    closes: DateTime<Utc>,
) -> CampaignRecord {
    let store = &h.server.state.store;
    let hash = hex::encode(Sha256::digest(source.as_bytes()));
    store
        .publish_instrument(&NewInstrument {
            key,
            version: 1,
            source,
            hash: &hash,
            actor: "test",
            reason: "survey page tests",
            at: Utc::now(),
        })
        .await
        .unwrap();
    store
        .create_campaign(&NewCampaign {
            key: campaign,
            instrument: key,
            version: 1,
            trial_key: None,
            wave: "baseline",
            opens_at: opens,
            closes_at: closes,
            trigger_flag: None,
            actor: "test",
            reason: "survey page tests",
            at: Utc::now(),
        })
        .await
        .unwrap()
}

/// An open campaign of the mini instrument.
pub async fn open_mini(h: &Harness, campaign: &str) -> CampaignRecord {
    let now = Utc::now();
    seed(
        h,
        MINI,
        "mini",
        campaign,
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(7),
    )
    .await
}

/// The personal link token of `unit` for `campaign` (wave `baseline`).
pub fn link(h: &Harness, campaign: &str, unit: &str, expires: DateTime<Utc>) -> String {
    let claims = TokenClaims::new(campaign, unit, "baseline", expires).unwrap();
    sign(h.server.state.config.survey_keys.token(), &claims)
}

/// A client that does not follow redirects (the tests check each 303).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Respondent {
    pub base: String,
    pub token: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

impl Respondent {
    pub fn new(h: &Harness, token: String) -> Respondent {
        let csrf = form_token(&h.server.state.config.survey_keys, &token);
        Respondent {
            base: h.base.clone(),
            token,
            csrf,
            http: browser(),
        }
    }

    pub async fn get(&self, path: &str, lang: &str) -> (StatusCode, String, header::HeaderMap) {
        let resp = self
            .http
            .get(format!("{}/s/{}{path}", self.base, self.token))
            .header(header::ACCEPT_LANGUAGE, lang)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, resp.text().await.unwrap(), headers)
    }

    /// Posts `fields` (the form token and language added) to `path`.
    pub async fn post(
        &self,
        path: &str,
        fields: &[(&str, &str)],
    ) -> (StatusCode, String, header::HeaderMap) {
        let mut all = vec![("_csrf", self.csrf.as_str()), ("_lang", "en")];
        all.extend_from_slice(fields);
        let resp = self
            .http
            .post(format!("{}/s/{}{path}", self.base, self.token))
            .form(&all)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, resp.text().await.unwrap(), headers)
    }
}

fn location(headers: &header::HeaderMap) -> String {
    headers[header::LOCATION].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_respondent_consents_answers_page_by_page_and_completes() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let c = open_mini(&h, "mini-1").await;
        let me = unit("alice");
        let r = Respondent::new(
            &h,
            link(&h, "mini-1", &me, Utc::now() + chrono::Duration::days(3)),
        );
        let store = &h.server.state.store;

        // Consent first, in the language the browser asks for.
        let (s, body, headers) = r.get("", "es-ES,en;q=0.5").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("<html lang=\"es\" dir=\"ltr\">"), "{body}");
        assert!(body.contains("Aceptas responder."));
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(
            store.response(c.id, &me).await.unwrap().is_none(),
            "a look stores nothing"
        );

        // No choice made: the consent page again, with the error.
        let (s, body, _) = r.post("/consent", &[]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains("Choose whether you agree to take part"),
            "{body}"
        );
        assert!(body.contains("href=\"#consent-yes\""));

        let (s, _, headers) = r.post("/consent", &[("consent", "yes")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(location(&headers), format!("/s/{}?lang=en", r.token));
        let started = store.response(c.id, &me).await.unwrap().unwrap();
        assert_eq!(started.status, ResponseStatus::Started);
        assert_eq!(started.consent_version, "t-1");

        // Page 1: progress, one fieldset per question, labels bound.
        let (s, body, _) = r.get("?lang=en", "es").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("Page 1 of 2"), "{body}");
        assert!(body.contains("<legend>How often do you take part?</legend>"));
        assert!(body.contains("<label for=\"q-often-0\">Never</label>"));
        assert_eq!(body.matches("<fieldset").count(), 3);

        // Invalid answers: every error shown next to its field and at the
        // top, what was typed kept, nothing saved.
        let (s, body, _) = r
            .post(
                "/pages/1",
                &[
                    ("often", "weekly"),
                    ("hours", "lots"),
                    ("comment", "<b>hi</b>"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("<title>Error: Mini survey</title>"), "{body}");
        assert!(body.contains("There is a problem"));
        assert!(body.contains("href=\"#q-hours-0\""));
        assert!(body.contains("id=\"err-hours\""));
        assert!(body.contains("Enter a number, like 12 or 2.5"));
        assert!(body.contains("value=\"lots\""), "what was typed is kept");
        assert!(
            body.contains("&lt;b&gt;hi&lt;&#x2f;b&gt;") || body.contains("&lt;b&gt;hi&lt;/b&gt;"),
            "{body}"
        );
        assert!(!body.contains("<b>hi</b>"));
        let (s, body, _) = r
            .post(
                "/pages/1",
                &[
                    ("often", "weekly"),
                    ("hours", "41"),
                    ("comment", &"x".repeat(41)),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("Enter a number from 0 to 40"), "{body}");
        assert!(
            body.contains("Use at most 40 characters (you wrote 41)"),
            "{body}"
        );
        let (s, body, _) = r.post("/pages/1", &[("often", "weekly")]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            body.contains("Answer this question"),
            "the same-page condition holds: required"
        );
        assert_eq!(store.response(c.id, &me).await.unwrap().unwrap().page, 0);

        // Valid: HTML in a free-text answer is stored verbatim.
        let script = "<script>alert(1)</script>";
        let (s, _, headers) = r
            .post(
                "/pages/1",
                &[("often", "weekly"), ("hours", "2,5"), ("comment", script)],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{headers:?}");
        let saved = store.response(c.id, &me).await.unwrap().unwrap();
        assert_eq!(saved.page, 1);
        assert_eq!(saved.answers["hours"], json!(2.5));
        assert_eq!(saved.answers["comment"], json!(script));

        // Posting page 1 again (back button) changes nothing.
        let (s, _, _) = r.post("/pages/1", &[("often", "never")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(
            store.response(c.id, &me).await.unwrap().unwrap().answers,
            saved.answers
        );

        // Leave and resume from the same link: page 2, in a drawn order
        // that stays the same on every visit.
        let (s, body, _) = r.get("", "en").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("Page 2 of 2"));
        assert!(body.contains("Send my answers"));
        let (_, again, _) = r.get("", "en").await;
        let pos = |b: &str, k: &str| b.find(&format!("id=\"q-{k}\"")).unwrap();
        let order: Vec<usize> = ["a1", "a2", "tasks", "rank", "nps"]
            .iter()
            .map(|k| pos(&body, k))
            .collect();
        let order2: Vec<usize> = ["a1", "a2", "tasks", "rank", "nps"]
            .iter()
            .map(|k| pos(&again, k))
            .collect();
        assert_eq!(order, order2);
        assert!(!body.contains("<table"), "no grid for Likert items");

        // A ranking with a position twice is refused; then complete.
        let (s, body, _) = r
            .post(
                "/pages/2",
                &[("a1", "3"), ("a2", "1"), ("rank", "x"), ("rank", "x")],
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("Choose each option only once"), "{body}");
        let (s, _, headers) = r
            .post(
                "/pages/2",
                &[
                    ("a1", "3"),
                    ("a2", "1"),
                    ("tasks", "write"),
                    ("tasks.other", "<i>mod</i>"),
                    ("rank", "y"),
                    ("rank", "x"),
                    ("nps", "9"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(location(&headers), format!("/s/{}/done?lang=en", r.token));
        let done = store.response(c.id, &me).await.unwrap().unwrap();
        assert_eq!(done.status, ResponseStatus::Completed);
        assert!(done.completed_at.is_some());
        assert_eq!(done.answers["rank"], json!({"codes": ["y", "x"]}));
        assert_eq!(
            done.answers["tasks"],
            json!({"codes": ["write"], "other": "<i>mod</i>"})
        );
        let recorded: Vec<&str> = done.orders["1"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut shown: Vec<(usize, &str)> = order
            .iter()
            .copied()
            .zip(["a1", "a2", "tasks", "rank", "nps"])
            .collect();
        shown.sort();
        assert_eq!(
            recorded,
            shown.iter().map(|(_, k)| *k).collect::<Vec<_>>(),
            "the order shown is recorded"
        );

        let (s, body, _) = r.get("/done", "en").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("Thank you"));
        // The completed response is counted at /metrics, once.
        let metrics = h
            .req(Method::GET, "/metrics", None)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = format!(
            "commonlab_survey_responses_total{{campaign=\"{}\"}} 1",
            c.key
        );
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
        // A completed response takes nothing more.
        let (s, body, _) = r.get("", "en").await;
        assert_eq!(s, StatusCode::GONE);
        assert!(body.contains("You have already answered this survey"));
        let (s, _, _) = r.post("/pages/2", &[("a1", "1"), ("a2", "1")]).await;
        assert_eq!(s, StatusCode::CONFLICT);
        let (s, _, _) = r.post("/consent", &[("consent", "no")]).await;
        assert_eq!(s, StatusCode::CONFLICT);
        assert_eq!(
            store.response(c.id, &me).await.unwrap().unwrap().answers,
            done.answers
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn declining_stores_only_the_refusal_and_one_can_still_take_part() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let c = open_mini(&h, "mini-2").await;
        let me = unit("bob");
        let r = Respondent::new(
            &h,
            link(&h, "mini-2", &me, Utc::now() + chrono::Duration::days(1)),
        );
        let (s, _, _) = r.post("/consent", &[("consent", "no")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let declined = h
            .server
            .state
            .store
            .response(c.id, &me)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(declined.status, ResponseStatus::Declined);
        assert!(declined.answers.is_empty());
        let (s, body, _) = r.get("", "en").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("You chose not to take part"));
        assert!(
            body.contains("You agree to answer."),
            "what one would agree to is shown again"
        );
        // A page posted while declined saves nothing.
        let (s, _, _) = r.post("/pages/1", &[("often", "never")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert!(h
            .server
            .state
            .store
            .response(c.id, &me)
            .await
            .unwrap()
            .unwrap()
            .answers
            .is_empty());
        let (s, _, _) = r.post("/consent", &[("consent", "yes")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, body, _) = r.get("", "en").await;
        assert!(body.contains("Page 1 of 2"));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_links_forged_forms_and_closed_waves_get_friendly_refusals() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        open_mini(&h, "mini-3").await;
        let now = Utc::now();
        let me = unit("carol");
        let good = link(&h, "mini-3", &me, now + chrono::Duration::days(1));
        let page = |token: String| Respondent::new(&h, token);

        let (s, body, headers) = page("not-a-token".into()).get("", "es").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(body.contains("Este enlace no funciona"), "{body}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let mut altered = good.clone().into_bytes();
        let i = altered.len() - 10;
        altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
        let (s, body, _) = page(String::from_utf8(altered).unwrap())
            .get("", "en")
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(body.contains("has been changed"));
        let (s, body, _) = page(link(&h, "mini-3", &me, now - chrono::Duration::seconds(1)))
            .get("", "en")
            .await;
        assert_eq!(s, StatusCode::GONE);
        assert!(body.contains("This link has expired"));
        let (s, _, _) = page(link(
            &h,
            "no-such-campaign",
            &me,
            now + chrono::Duration::days(1),
        ))
        .get("", "en")
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Another wave's link for this campaign.
        let other_wave = sign(
            h.server.state.config.survey_keys.token(),
            &TokenClaims::new("mini-3", &me, "followup", now + chrono::Duration::days(1)).unwrap(),
        );
        let (s, _, _) = page(other_wave).get("", "en").await;
        assert_eq!(s, StatusCode::NOT_FOUND);

        // A form without its token, with another link's, or from another site.
        let r = page(good.clone());
        let resp = r
            .http
            .post(format!("{}/s/{good}/consent", h.base))
            .form(&[("consent", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let theirs = form_token(
            &h.server.state.config.survey_keys,
            &link(&h, "mini-3", &unit("dave"), now + chrono::Duration::days(1)),
        );
        let resp = r
            .http
            .post(format!("{}/s/{good}/consent", h.base))
            .form(&[("_csrf", theirs.as_str()), ("consent", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert!(resp.text().await.unwrap().contains("nothing was saved"));
        let resp = r
            .http
            .post(format!("{}/s/{good}/consent", h.base))
            .header("sec-fetch-site", "cross-site")
            .form(&[("_csrf", r.csrf.as_str()), ("consent", "yes")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let c = h
            .server
            .state
            .store
            .campaign("mini-3")
            .await
            .unwrap()
            .unwrap();
        assert!(h
            .server
            .state
            .store
            .response(c.id, &me)
            .await
            .unwrap()
            .is_none());

        // Not yet open, and closed.
        for (key, opens, closes, status, text) in [
            (
                "later",
                now + chrono::Duration::days(1),
                now + chrono::Duration::days(2),
                StatusCode::FORBIDDEN,
                "has not opened yet",
            ),
            (
                "over",
                now - chrono::Duration::days(2),
                now - chrono::Duration::days(1),
                StatusCode::GONE,
                "This survey has closed",
            ),
        ] {
            h.server
                .state
                .store
                .create_campaign(&NewCampaign {
                    key,
                    instrument: "mini",
                    version: 1,
                    trial_key: None,
                    wave: "baseline",
                    opens_at: opens,
                    closes_at: closes,
                    trigger_flag: None,
                    actor: "test",
                    reason: "r",
                    at: now,
                })
                .await
                .unwrap();
            let r = page(link(&h, key, &me, now + chrono::Duration::days(9)));
            let (s, body, _) = r.get("", "en").await;
            assert_eq!(s, status, "{key}");
            assert!(body.contains(text), "{key}: {body}");
            let (s, _, _) = r.post("/consent", &[("consent", "yes")]).await;
            assert_eq!(s, status, "{key}");
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn language_comes_from_the_link_then_the_browser_then_the_default() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        open_mini(&h, "mini-4").await;
        let r = Respondent::new(
            &h,
            link(
                &h,
                "mini-4",
                &unit("erin"),
                Utc::now() + chrono::Duration::days(1),
            ),
        );
        let (_, body, _) = r.get("?lang=ar", "es").await;
        assert!(body.contains("<html lang=\"ar\" dir=\"rtl\">"), "{body}");
        assert!(body.contains("أنت توافق على الإجابة."));
        let (_, body, _) = r.get("", "fr, es;q=0.8").await;
        assert!(body.contains("<html lang=\"es\" dir=\"ltr\">"));
        assert!(body.contains("Sí, acepto participar"));
        let (_, body, _) = r.get("?lang=de", "fr").await;
        assert!(body.contains("<html lang=\"en\" dir=\"ltr\">"));
        // Links to the other languages, each marked with its language.
        assert!(body.contains("hreflang=\"es\">Español</a>"), "{body}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_pages_are_rate_limited_per_link_with_retry_after() {
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .config(|c| c.survey_rate_per_link_per_minute = 3)
            .start()
            .await;
        open_mini(&h, "mini-5").await;
        let r = Respondent::new(
            &h,
            link(
                &h,
                "mini-5",
                &unit("fay"),
                Utc::now() + chrono::Duration::days(1),
            ),
        );
        for _ in 0..3 {
            assert_eq!(r.get("", "en").await.0, StatusCode::OK);
        }
        let (s, body, headers) = r.get("", "en").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert!(body.contains("Too many requests"));
        let wait: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "{wait}");
        // Another link is not limited by this one.
        let other = Respondent::new(
            &h,
            link(
                &h,
                "mini-5",
                &unit("gus"),
                Utc::now() + chrono::Duration::days(1),
            ),
        );
        assert_eq!(other.get("", "en").await.0, StatusCode::OK);
        h.stop().await;
    })
    .await;
}
