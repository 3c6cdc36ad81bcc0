//! Signing in and out of the console: cookies, errors, expiry, sign-out
//! and revocation ending the session on every replica, the bound on
//! sessions per key.

use super::*;

#[tokio::test]
async fn a_good_key_signs_in_with_a_strict_http_only_cookie() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let key = h.key(Role::Developer).await;
        let mut b = Browser::new(&h);
        let resp = b.try_sign_in(&key, "/console/audit?page=2").await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()[header::LOCATION], "/console/audit?page=2");
        let line = set_cookie_line(&resp, "commonlab_console").unwrap();
        for part in [
            "Path=/console",
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Max-Age=28800",
        ] {
            assert!(line.contains(part), "{line} lacks {part}");
        }
        b.session = set_cookie(&resp, "commonlab_console");
        let (status, html) = page(b.get("/console/").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("Signed in as <strong>developer-"), "{html}");
        // The developer's nav: no surveys, no keys.
        assert!(html.contains(">Flags</a>"));
        assert!(html.contains(">Audit</a>"));
        assert!(!html.contains(">Keys</a>"));
        assert!(!html.contains(">Surveys</a>"));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_key_shows_the_error_and_sets_no_session() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let mut b = Browser::new(&h);
        for key in [
            "cl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "not a key",
        ] {
            let resp = b.try_sign_in(key, "").await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(set_cookie(&resp, "commonlab_console"), None);
            let html = resp.text().await.unwrap();
            assert!(html.contains("This key is not valid or has been revoked."));
        }
        let resp = b.try_sign_in("", "").await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // An sdk key may not sign in.
        let sdk = h.key(Role::Sdk).await;
        let resp = b.try_sign_in(&sdk, "").await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(set_cookie(&resp, "commonlab_console"), None);
        // Nor may a post without the sign-in form's token.
        let resp = b
            .post("/console/sign-in", &[("key", h.admin.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(set_cookie(&resp, "commonlab_console"), None);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn next_never_leaves_the_console() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let mut b = Browser::new(&h);
        for next in [
            "https://evil.example/",
            "//evil.example/console/",
            "/api/v1/keys",
        ] {
            let resp = b.try_sign_in(&h.admin, next).await;
            assert_eq!(resp.status(), StatusCode::SEE_OTHER);
            assert_eq!(resp.headers()[header::LOCATION], "/console/", "{next}");
        }
        // Signed out, a page sends the browser to sign in and back.
        let resp = b.get("/console/?x=1").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "/console/sign-in?next=%2Fconsole%2F%3Fx%3D1"
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn sessions_expire() {
    both_backends(|db| async move {
        let start = chrono::Utc::now();
        let clock = Clock::fixed(start);
        let h = Harness::on(&db)
            .clock(clock.clone())
            .config(|c| c.console_session = Duration::from_secs(600))
            .start()
            .await;
        let mut b = Browser::new(&h);
        b.sign_in(&h.admin).await;
        clock.set(start + chrono::Duration::seconds(599));
        assert_eq!(
            b.get("/console/").send().await.unwrap().status(),
            StatusCode::OK
        );
        clock.set(start + chrono::Duration::seconds(600));
        let resp = b.get("/console/").send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        // The stale cookie is dropped.
        assert_eq!(set_cookie(&resp, "commonlab_console").as_deref(), Some(""));
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn sign_out_ends_the_session_on_every_replica() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let replica = Harness::on(&db).replica_of(&h).start().await;
        let mut b = Browser::new(&h);
        b.sign_in(&h.admin).await;
        let on_replica = Browser {
            h: &replica,
            http: client(),
            session: b.session.clone(),
        };
        // The replica knows the session (same database, same study key).
        assert_eq!(
            on_replica.get("/console/").send().await.unwrap().status(),
            StatusCode::OK
        );
        let csrf = b.csrf().await;
        let resp = b
            .post("/console/sign-out", &[("_csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "/console/sign-in?signed_out=1"
        );
        assert_eq!(set_cookie(&resp, "commonlab_console").as_deref(), Some(""));
        // The old cookie, replayed, opens nothing anywhere.
        assert_eq!(
            b.get("/console/").send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        assert_eq!(
            on_replica.get("/console/").send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        replica.stop().await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let key = h.key(Role::Researcher).await;
        let mut b = Browser::new(&h);
        b.sign_in(&key).await;
        assert_eq!(
            b.get("/console/").send().await.unwrap().status(),
            StatusCode::OK
        );
        let id = commonlab_core::auth::key_id(&key).unwrap().to_string();
        h.server
            .state
            .store
            .revoke_api_key(&id, chrono::Utc::now())
            .await
            .unwrap();
        // At once, without waiting for any cache.
        assert_eq!(
            b.get("/console/").send().await.unwrap().status(),
            StatusCode::SEE_OTHER
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_key_holds_a_bounded_number_of_sessions() {
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .config(|c| c.console_sessions_per_key = 2)
            .start()
            .await;
        let key = h.key(Role::Developer).await;
        let mut browsers = Vec::new();
        for _ in 0..3 {
            let mut b = Browser::new(&h);
            b.sign_in(&key).await;
            browsers.push(b);
        }
        let id = commonlab_core::auth::key_id(&key).unwrap();
        let live = h
            .server
            .state
            .store
            .live_console_sessions(id, chrono::Utc::now())
            .await
            .unwrap();
        assert_eq!(live, 2);
        // The oldest ended; the two newest work.
        let statuses: Vec<StatusCode> = {
            let mut v = Vec::new();
            for b in &browsers {
                v.push(b.get("/console/").send().await.unwrap().status());
            }
            v
        };
        assert_eq!(
            statuses,
            [StatusCode::SEE_OTHER, StatusCode::OK, StatusCode::OK]
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .config(|c| c.console_sign_in_per_ip_per_minute = 3)
            .start()
            .await;
        let key = h.key(Role::Developer).await;
        let mut b = Browser::new(&h);
        let wrong = "cl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for _ in 0..3 {
            let resp = b.try_sign_in(wrong, "").await;
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        // The fourth attempt within the minute, even with a good key.
        let resp = b.try_sign_in(&key, "").await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After: {wait}");
        assert_eq!(set_cookie(&resp, "commonlab_console"), None);
        let html = resp.text().await.unwrap();
        assert!(html.contains("Too many sign-in attempts"), "{html}");
        // The form itself still shows (only attempts are limited).
        let (status, _) = page(b.get("/console/sign-in").send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        h.stop().await;
    })
    .await;
}
