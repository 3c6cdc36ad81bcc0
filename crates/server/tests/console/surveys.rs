//! The console's survey pages on both stores: instruments with their
//! versions and languages, campaigns with their invitations and
//! responses, and the read-only preview of an instrument in each of its
//! languages (nothing stored); researchers only, as the survey API.

use super::*;

use super::trials::page;

const MINI: &str = include_str!("../fixtures/surveys/mini.toml");

async fn api(h: &Harness, path: &str, body: Value) {
    let resp = h
        .req(Method::POST, path, Some(&h.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "{path}: {}",
        resp.text().await.unwrap()
    );
}

#[tokio::test]
async fn surveys_list_and_preview_in_every_language() {
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .clock(Clock::fixed(
                chrono::DateTime::parse_from_rfc3339("2027-01-10T00:00:00Z")
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            ))
            .start()
            .await;
        let mut r = Browser::new(&h);
        r.sign_in(&h.key(Role::Researcher).await).await;
        let (s, html) = page(r.get("/console/surveys").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("No instrument is published.") && html.contains("No campaign yet."));

        api(&h, "/api/v1/surveys/instruments", json!({"source": MINI, "file": "mini.toml", "reason": "pilot"})).await;
        api(&h, "/api/v1/surveys/campaigns", json!({
            "key": "mini-1", "instrument": "mini", "version": 1, "wave": "baseline",
            "opens_at": "2027-01-01T00:00:00Z", "closes_at": "2027-02-01T00:00:00Z", "reason": "pilot",
        }))
        .await;
        api(&h, "/api/v1/surveys/campaigns/mini-1/links", json!({"units": ["a", "b", "c"], "reason": "invite"})).await;

        let (s, html) = page(r.get("/console/surveys").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("Mini survey"), "{html}");
        for lang in ["en", "es", "ar"] {
            assert!(html.contains(&format!("href=\"/console/surveys/mini/1/preview?lang={lang}\"")), "{html}");
        }
        // The campaign: open, 3 invited, no response yet.
        assert!(
            html.contains("<th scope=\"row\">mini-1</th><td>mini v1</td><td>baseline</td><td>open</td>"),
            "{html}"
        );
        assert!(html.contains("<td>3</td><td>0</td><td>0</td><td>0</td>"), "{html}");

        let before = h.server.state.store.list_campaigns().await.unwrap();
        for (lang, title, dir) in [("en", "Mini survey", "ltr"), ("es", "Mini encuesta", "ltr"), ("ar", "استبيان صغير", "rtl")] {
            let (s, html) = page(r.get(&format!("/console/surveys/mini/1/preview?lang={lang}")).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::OK, "{lang}");
            assert!(html.contains(&format!("<div lang=\"{lang}\" dir=\"{dir}\">")), "{html}");
            assert!(html.contains(&format!("<h2>{title}</h2>")), "{html}");
            assert!(html.contains("<fieldset class=\"field\" disabled"), "read-only");
            assert!(!html.contains("<form method=\"post\" action=\"/s/"), "no survey form");
            assert!(html.contains("aria-current=\"page\">"), "{html}");
        }
        let (s, html) = page(r.get("/console/surveys/mini/1/preview?lang=fr").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("has no language 'fr'"), "{html}");
        assert!(html.contains("<div lang=\"en\""));
        // Previews store nothing.
        let c = h.server.state.store.campaign("mini-1").await.unwrap().unwrap();
        assert_eq!(h.server.state.store.responses(c.id).await.unwrap().len(), 0);
        assert_eq!(h.server.state.store.list_campaigns().await.unwrap(), before);

        let (s, _) = page(r.get("/console/surveys/mini/2/preview").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let mut d = Browser::new(&h);
        d.sign_in(&h.key(Role::Developer).await).await;
        for path in ["/console/surveys", "/console/surveys/mini/1/preview?lang=es"] {
            let (s, _) = page(d.get(path).send().await.unwrap()).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        }
        h.stop().await;
    })
    .await;
}
