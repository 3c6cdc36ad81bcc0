//! `GET /api/v1/trials/{key}/report`: the report `commonlab report`
//! writes, from stored data, on both stores: JSON byte-identical on a
//! re-run, Markdown and HTML with their content types, the same numbers
//! as the analysis route, bad formats and per-user tests of community
//! designs refused with problems naming the field.

use super::*;

impl Harness {
    async fn report(&self, key: &str, query: &str) -> reqwest::Response {
        self.req(
            Method::GET,
            &format!("/api/v1/trials/{key}/report?{query}"),
            Some(&self.admin),
        )
        .send()
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn report_of_a_stored_trial_in_every_format() {
    both_backends(|db| async move {
        let (h, clock) = start_at(&db, "2026-06-01T12:00:00Z").await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        h.create_and_start(HASH).await;
        let mut events = Vec::new();
        for i in 0..40 {
            let id = format!("member-{i}");
            let (status, body) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": id, "community": "wiki-a"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            if i % 3 == 0 {
                events.push(json!({
                    "event_id": uuid::Uuid::from_u128(i + 1).to_string(),
                    "unit": id,
                    "community": "wiki-a",
                    "name": "contribution_created",
                    "timestamp": "2026-06-03T12:00:00Z",
                }));
            }
        }
        h.wait_exposed("thanks-hash", 40).await;
        clock.set(at("2026-07-01T00:00:00Z"));
        let resp = h
            .req(Method::POST, "/v1/events", Some(&sdk))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);

        let q = "as_of=2026-07-01T00:00:00Z";
        let resp = h.report("thanks-hash", q).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let first = resp.text().await.unwrap();
        let again = h
            .report("thanks-hash", &format!("{q}&format=json"))
            .await
            .text()
            .await
            .unwrap();
        // Same data, same command: the same bytes (the command is in the
        // footer, so the explicit format=json one differs only there).
        assert_eq!(
            first,
            h.report("thanks-hash", q).await.text().await.unwrap()
        );
        let a: Value = serde_json::from_str(&first).unwrap();
        let b: Value = serde_json::from_str(&again).unwrap();
        assert_eq!(a["results"], b["results"]);
        assert_eq!(a["schema"], "commonlab-report/1");
        assert_eq!(a["design"]["kind"], "hash");
        // The numbers are the analysis route's (rounded to 10 digits).
        let analysis: Value = h
            .req(
                Method::GET,
                &format!("/api/v1/trials/thanks-hash/analysis?{q}"),
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let want = analysis["metrics"][0]["estimates"][0]["estimate"]
            .as_f64()
            .unwrap();
        let got = a["results"][0]["effects"][0]["absolute"].as_f64().unwrap();
        assert!(
            (want - got).abs() <= 1e-9 * want.abs().max(1.0),
            "{want} vs {got}"
        );
        assert_eq!(
            a["footer"]["row_counts"]["repeat_contribution_28d"]
                .as_u64()
                .map(|n| n > 0),
            Some(true)
        );
        assert_eq!(a["footer"]["data_hash"].as_str().map(str::len), Some(64));

        let md = h.report("thanks-hash", &format!("{q}&format=md")).await;
        assert_eq!(md.status(), StatusCode::OK);
        assert_eq!(
            md.headers()[header::CONTENT_TYPE],
            "text/markdown; charset=utf-8"
        );
        let md = md.text().await.unwrap();
        assert!(
            md.contains("## Summary") && md.contains("## Reproducibility"),
            "{md}"
        );
        let html = h.report("thanks-hash", &format!("{q}&format=html")).await;
        assert_eq!(
            html.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let html = html.text().await.unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<svg"), "a forest plot");

        let bad = h.report("thanks-hash", "format=pdf").await;
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let p: Value = bad.json().await.unwrap();
        assert_eq!(p["errors"][0]["pointer"], "/query/format", "{p}");
        let missing = h.report("no-such", "").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn per_user_p_value_of_a_community_trial_is_refused() {
    both_backends(|db| async move {
        let (h, _clock) = start_at(&db, "2026-02-15T12:00:00Z").await;
        h.import_fixture().await;
        h.create_and_start(WEDGE).await;
        let resp = h.report("editor-wedge", "per_user=true").await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let p: Value = resp.json().await.unwrap();
        assert_eq!(p["errors"][0]["pointer"], "/per_user", "{p}");
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("randomised whole communities"), "{p}");
        // Without the request, the report renders (a community analysis).
        let ok = h.report("editor-wedge", "format=md").await;
        assert_eq!(ok.status(), StatusCode::OK);
        let md = ok.text().await.unwrap();
        assert!(
            md.contains("Not computed: a per-user p-value (refused:"),
            "{md}"
        );
        h.stop().await;
    })
    .await;
}
