//! The console's flag pages: the list, a flag's page, enable/disable with
//! a mandatory reason, cohort overrides (validation keeping what was
//! typed, the preview over the last 7 days' units, saving, removing) and
//! the history with its diffs; the overrides set on the console are what
//! OFREP serves.

use super::*;

fn unit(i: usize) -> String {
    format!("{i:064x}")
}

/// Flag-set revisions about `key` (a refused form adds none).
async fn revisions(h: &Harness, key: &str) -> usize {
    h.server
        .state
        .store
        .flag_set_history("default", Some(key), None, 500)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_list_and_a_flag_page_show_the_served_set() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let mut b = Browser::new(&h);
        b.sign_in(&h.key(Role::Developer).await).await;
        let (status, html) = page(b.get("/console/flags").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        // (minijinja escapes `/` in attributes as `&#x2f;`)
        assert!(
            html.contains("href=\"&#x2f;console&#x2f;flags&#x2f;new-editor\">new-editor</a>"),
            "{html}"
        );
        assert!(html.contains("6 flags"), "{html}");
        let row = &html[html.find(">retired-feature</a>").unwrap()..];
        assert!(row[..row.find("</tr>").unwrap()].contains("Disabled"));

        let (status, html) = page(b.get("/console/flags/welcome-text").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Flag <code>welcome-text</code>"));
        assert!(html.contains("Welcome, neighbour"), "variants shown");
        assert!(
            html.contains("&quot;fractional&quot;") || html.contains("wiki-a"),
            "targeting shown"
        );
        assert!(html.contains("No cohort overrides."));
        let (status, _) = page(b.get("/console/flags/no-such-flag").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn disabling_needs_a_reason_and_shows_in_the_history() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let mut b = Browser::new(&h);
        b.sign_in(&h.key(Role::Developer).await).await;
        let csrf = b.csrf().await;
        let before = revisions(&h, "new-editor").await;
        // No reason: refused beside the field, nothing written.
        let (status, html) = page(
            b.post(
                "/console/flags/new-editor/state",
                &[("_csrf", &csrf), ("state", "DISABLED"), ("reason", "  ")],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("id=\"reason-error\""), "{html}");
        assert_eq!(revisions(&h, "new-editor").await, before);
        // A wrong token: refused before anything is read.
        let resp = b
            .post(
                "/console/flags/new-editor/state",
                &[("_csrf", "nope"), ("state", "DISABLED"), ("reason", "x")],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(revisions(&h, "new-editor").await, before);
        // A stale ETag (the flag changed since the page was read): refused.
        let (status, html) = page(
            b.post(
                "/console/flags/new-editor/state",
                &[
                    ("_csrf", &csrf),
                    ("state", "DISABLED"),
                    ("reason", "pause"),
                    ("etag", "\"f-0000000000000000\""),
                ],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("changed by someone else"), "{html}");
        assert!(html.contains("value=\"pause\""), "the reason typed is kept");
        // With a reason: disabled, served so, in the history with its diff.
        let resp = b
            .post(
                "/console/flags/new-editor/state",
                &[
                    ("_csrf", &csrf),
                    ("state", "DISABLED"),
                    ("reason", "assembly pause"),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "/console/flags/new-editor"
        );
        let sdk = h.key(Role::Sdk).await;
        let (_, body) = h.eval(&sdk, "new-editor", json!({})).await;
        assert!(body.contains("DISABLED"), "{body}");
        let (_, html) = page(b.get("/console/flags/new-editor").send().await.unwrap()).await;
        assert!(
            html.contains("<code>set-state</code> by key:developer-"),
            "{html}"
        );
        assert!(html.contains("Reason: assembly pause"));
        assert!(
            html.contains("<del><pre><code>&quot;ENABLED&quot;</code></pre></del>"),
            "{html}"
        );
        assert!(html.contains("<ins><pre><code>&quot;DISABLED&quot;</code></pre></ins>"));
        assert!(html.contains("Enable new-editor"), "the form now enables");
        // The audit log has it with the reason.
        let (_, audit) = page(
            b.get("/console/audit?target=new-editor")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(audit.contains("assembly pause"), "{audit}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cohort_overrides_are_checked_previewed_saved_and_served() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        // Units seen in the last 7 days: 1 of 4 in coop-b (one old event
        // of coop-b, 8 days ago, does not count).
        let now = chrono::Utc::now();
        let ev = |i: usize, community: &str, days: i64| commonlab_store::NewEvent {
            event_id: uuid::Uuid::new_v4(),
            unit: unit(i),
            community: Some(community.to_string()),
            name: "page_view".into(),
            ts: now - chrono::Duration::days(days),
            properties: Default::default(),
        };
        let events = [
            ev(1, "coop-b", 1),
            ev(1, "coop-b", 2),
            ev(2, "wiki-a", 1),
            ev(3, "wiki-a", 3),
            ev(4, "wiki-a", 6),
            ev(5, "coop-b", 8),
        ];
        h.server
            .state
            .store
            .insert_events(&events, now)
            .await
            .unwrap();

        let mut b = Browser::new(&h);
        b.sign_in(&h.key(Role::Developer).await).await;
        let csrf = b.csrf().await;
        let before = revisions(&h, "new-editor").await;
        // Mistakes: each beside its field, what was typed kept, nothing written.
        let (status, html) = page(
            b.post(
                "/console/flags/new-editor/cohorts",
                &[
                    ("_csrf", &csrf),
                    ("name", "coop-pilot"),
                    ("attribute", "community"),
                    ("values", " , "),
                    ("variant", "maybe"),
                    ("reason", ""),
                    ("action", "save"),
                ],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        for id in [
            "cohort-values-error",
            "cohort-variant-error",
            "cohort-reason-error",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}: {html}");
        }
        assert!(!html.contains("id=\"cohort-name-error\""));
        assert!(html.contains("value=\"coop-pilot\""), "typed name kept");
        assert_eq!(revisions(&h, "new-editor").await, before);

        // The preview: 1 of the 4 units of the last 7 days, nothing saved.
        let cohort = |action: &'static str, reason: &'static str| {
            vec![
                ("_csrf", csrf.clone()),
                ("name", "coop-pilot".to_string()),
                ("attribute", "community".to_string()),
                ("values", "coop-b".to_string()),
                ("variant", "off".to_string()),
                ("reason", reason.to_string()),
                ("action", action.to_string()),
            ]
        };
        let form = cohort("preview", "");
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, html) = page(
            b.post("/console/flags/new-editor/cohorts", &form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("This rule matches 25% of the last 7 days&#x27; units (1 of 4 units"),
            "{html}"
        );
        assert_eq!(revisions(&h, "new-editor").await, before);

        // Saved: served over OFREP to a unit of the cohort.
        let form = cohort("save", "coop asked to opt out");
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = b
            .post("/console/flags/new-editor/cohorts", &form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let sdk = h.key(Role::Sdk).await;
        let (_, body) = h
            .eval(
                &sdk,
                "new-editor",
                json!({"targetingKey": "m", "community": "coop-b"}),
            )
            .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["value"], false, "{body}");
        let (_, html) = page(b.get("/console/flags/new-editor").send().await.unwrap()).await;
        assert!(html.contains("<th scope=\"row\">coop-pilot</th>"), "{html}");
        assert!(
            html.contains("<code>cohort</code>") && html.contains("Reason: coop asked to opt out")
        );
        // Edit link fills the form.
        let (_, html) = page(
            b.get("/console/flags/new-editor?edit=coop-pilot")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(
            html.contains("id=\"cohort-values\" name=\"values\" value=\"coop-b\""),
            "{html}"
        );

        // Removing needs a reason too.
        let after_save = revisions(&h, "new-editor").await;
        let (status, html) = page(
            b.post(
                "/console/flags/new-editor/cohorts/remove",
                &[("_csrf", &csrf), ("name", "coop-pilot"), ("reason", "")],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("id=\"remove-reason-error\""));
        assert_eq!(revisions(&h, "new-editor").await, after_save);
        let resp = b
            .post(
                "/console/flags/new-editor/cohorts/remove",
                &[
                    ("_csrf", &csrf),
                    ("name", "coop-pilot"),
                    ("reason", "pilot over"),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (_, body) = h
            .eval(
                &sdk,
                "new-editor",
                json!({"targetingKey": "m", "community": "coop-b"}),
            )
            .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["value"], true, "{body}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_running_trials_flag_is_marked_and_its_changes_are_deviations() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        // hash.toml: thanks-hash on flag thanks-button, scheduled over 2026-2027.
        let source = include_str!("../fixtures/trials/hash.toml");
        let api = |path: String, body: Value| {
            h.req(Method::POST, &path, Some(&h.admin))
                .json(&body)
                .send()
        };
        let resp = api(
            "/api/v1/trials".into(),
            json!({"source": source, "reason": "pilot"}),
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = api(
            "/api/v1/trials/thanks-hash/start".into(),
            json!({"reason": "go"}),
        )
        .await
        .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{}",
            resp.text().await.unwrap()
        );

        let mut b = Browser::new(&h);
        b.sign_in(&h.key(Role::Developer).await).await;
        let (_, html) = page(b.get("/console/flags").send().await.unwrap()).await;
        let row = &html[html.find(">thanks-button</a>").unwrap()..];
        assert!(
            row[..row.find("</tr>").unwrap()].contains("Controlled by</strong> thanks-hash"),
            "{html}"
        );
        let (_, html) = page(b.get("/console/flags/thanks-button").send().await.unwrap()).await;
        assert!(html.contains("Controlled by the running trial thanks-hash"));
        let csrf = b.csrf().await;
        let resp = b
            .post(
                "/console/flags/thanks-button/state",
                &[
                    ("_csrf", &csrf),
                    ("state", "DISABLED"),
                    ("reason", "incident"),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let shown: Value = h
            .req(Method::GET, "/api/v1/trials/thanks-hash", Some(&h.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let deviation = shown["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "deviation")
            .expect("a deviation in the trial's log");
        let why = deviation["reason"].as_str().unwrap();
        assert!(
            why.contains("state ENABLED -> DISABLED") && why.contains("reason: incident"),
            "{why}"
        );
        h.stop().await;
    })
    .await;
}
