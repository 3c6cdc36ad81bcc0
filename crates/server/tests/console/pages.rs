//! The console's own pages: API keys (create shown once, revoke with a
//! reason ending the key's sessions) and the audit log (filters, paging,
//! what each role sees).

use super::*;

/// The secret shown on the "key created" page.
fn secret_of(html: &str) -> String {
    let at = html
        .find("class=\"secret\"")
        .expect("the secret on the page");
    let rest = &html[at..];
    let start = rest.find('>').unwrap() + 1;
    let end = rest.find("</p>").unwrap();
    rest[start..end].trim().to_string()
}

#[tokio::test]
async fn admins_create_keys_shown_once_and_revoke_them() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let mut b = Browser::new(&h);
        b.sign_in(&h.admin).await;
        let csrf = b.csrf().await;
        // Mistakes come back with the form as typed, nothing created.
        let before = h
            .server
            .state
            .store
            .list_api_keys(true)
            .await
            .unwrap()
            .len();
        let (status, html) = page(
            b.post(
                "/console/keys",
                &[
                    ("_csrf", &csrf),
                    ("name", "frontend"),
                    ("role", "root"),
                    ("reason", ""),
                ],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("Choose a role.") && html.contains("Say why the key is needed"));
        assert!(html.contains("value=\"frontend\""));
        assert_eq!(
            h.server
                .state
                .store
                .list_api_keys(true)
                .await
                .unwrap()
                .len(),
            before
        );

        let resp = b
            .post(
                "/console/keys",
                &[
                    ("_csrf", &csrf),
                    ("name", "frontend"),
                    ("role", "developer"),
                    ("reason", "the web app"),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let secret = secret_of(&resp.text().await.unwrap());
        assert!(secret.starts_with("cl_"), "{secret}");
        // The new key signs in; the list never shows its secret.
        let mut other = Browser::new(&h);
        other.sign_in(&secret).await;
        let (_, list) = page(b.get("/console/keys").send().await.unwrap()).await;
        assert!(list.contains("frontend") && list.contains("the web app"));
        assert!(
            !list.contains(&secret[16..]),
            "the secret is shown once only"
        );
        // A second key of the same name is refused, naming the field.
        let (status, html) = page(
            b.post(
                "/console/keys",
                &[
                    ("_csrf", &csrf),
                    ("name", "frontend"),
                    ("role", "sdk"),
                    ("reason", "x"),
                ],
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("already named"), "{html}");

        // Revoking asks first, needs a reason, and ends the key's sessions.
        let id = commonlab_core::auth::key_id(&secret).unwrap().to_string();
        let (status, confirm) = page(
            b.get(&format!("/console/keys/{id}/revoke"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(confirm.contains("Revoke the key frontend?"));
        let path = format!("/console/keys/{id}/revoke");
        let resp = b
            .post(&path, &[("_csrf", &csrf), ("reason", " ")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            other.get("/console/").send().await.unwrap().status(),
            StatusCode::OK
        );
        let resp = b
            .post(&path, &[("_csrf", &csrf), ("reason", "leaked")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "/console/keys?revoked=frontend"
        );
        assert_eq!(
            other.get("/console/").send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        let rec = h
            .server
            .state
            .store
            .find_api_key(&id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.revoked_reason.as_deref(), Some("leaked"));
        assert!(rec.revoked_by.unwrap().starts_with("key:test-admin"));
        // Again: nothing to revoke.
        let resp = b
            .post(&path, &[("_csrf", &csrf), ("reason", "again")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_filters_pages_and_shows_by_role() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        // Flag changes: import, then three state changes.
        for (i, state) in ["DISABLED", "ENABLED", "DISABLED"].iter().enumerate() {
            let resp = h
                .req(
                    Method::PUT,
                    "/api/v1/flags/new-editor/state",
                    Some(&h.admin),
                )
                .json(&json!({"state": state, "reason": format!("step {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::OK,
                "{}",
                resp.text().await.unwrap()
            );
        }
        let dev_key = h.key(Role::Developer).await;
        let mut admin = Browser::new(&h);
        admin.sign_in(&h.admin).await;
        let mut dev = Browser::new(&h);
        dev.sign_in(&dev_key).await;

        // The admin sees key creations and sign-ins; the developer does not.
        let (status, all) = page(admin.get("/console/audit").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            all.contains("key.create") && all.contains("console.sign-in"),
            "{all}"
        );
        let (_, mine) = page(dev.get("/console/audit").send().await.unwrap()).await;
        assert!(mine.contains("flag.import"), "{mine}");
        assert!(!mine.contains("key.create") && !mine.contains("console.sign-in"));

        // Filter by target and action, newest first, two a page.
        let first = "/console/audit?target=new-editor&per_page=2";
        let (_, p1) = page(dev.get(first).send().await.unwrap()).await;
        let s2 = p1.find("step 2").expect("newest first");
        let s1 = p1.find("step 1").expect("then the one before");
        assert!(s2 < s1);
        assert!(!p1.contains("step 0"));
        let older = {
            let end = p1
                .find("\">Older entries</a>")
                .expect("an older-entries link");
            let start = p1[..end].rfind("href=\"").unwrap() + 6;
            p1[start..end].replace("&amp;", "&").replace("&#x2f;", "/")
        };
        let (_, p2) = page(dev.get(&older).send().await.unwrap()).await;
        assert!(p2.contains("step 0") && !p2.contains("step 1"), "{p2}");
        let (_, none) = page(
            dev.get("/console/audit?action=trial.start")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(none.contains("No entries match"));
        // A time range that ends before everything.
        let (_, early) = page(
            dev.get("/console/audit?until=2000-01-01")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(early.contains("No entries match"));
        let (status, bad) = page(
            dev.get("/console/audit?from=yesterday")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(bad.contains("is not a time"));
        // Page sizes are bounded.
        let (_, big) = page(
            dev.get("/console/audit?per_page=100000")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(big.contains("value=\"200\""), "per_page is capped");
        h.stop().await;
    })
    .await;
}
