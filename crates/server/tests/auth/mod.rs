//! Authentication and authorization: API keys end to end, and every route
//! of the server's route table called with every role.

use super::*;
use commonlab_server::route::Access;

/// A route (method, path template), a request to it (path, body) and who
/// may call it.
type Request = (Method, &'static str, String, Option<Value>, Access);

/// The requests that call each route of the table: its path with the
/// parameters filled in and a body, so that a caller who is let in gets
/// past authorization (the answer may still be 404 or 422), and who this
/// test expects the table to let in. Every route of
/// [`commonlab_server::route_table`] must have at least one, and every one
/// here must be a route of the table, with that access. The survey pages
/// (`/s/...`) get `survey`, a valid link, and take their bodies as forms
/// with `csrf`, its form token.
fn requests(survey: &str, csrf: &str) -> Vec<Request> {
    const PUBLIC: Access = Access::Public;
    const SDK: Access = Access::Role(Role::Sdk);
    const DEV: Access = Access::Role(Role::Developer);
    const RES: Access = Access::Role(Role::Researcher);
    const ADMIN: Access = Access::Role(Role::Admin);
    let flag =
        json!({"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "a"});
    let source = |reason: bool| match reason {
        true => Some(json!({"source": "key = 1", "reason": "r"})),
        false => Some(json!({"source": "key = 1"})),
    };
    let mut out: Vec<Request> = vec![
        (
            Method::POST,
            "/ofrep/v1/evaluate/flags/{key}",
            "/ofrep/v1/evaluate/flags/new-editor".into(),
            Some(json!({"context": {}})),
            SDK,
        ),
        (
            Method::POST,
            "/ofrep/v1/evaluate/flags",
            "/ofrep/v1/evaluate/flags".into(),
            Some(json!({"context": {}})),
            SDK,
        ),
        (
            Method::GET,
            "/api/v1/flags",
            "/api/v1/flags".into(),
            None,
            DEV,
        ),
        (
            Method::GET,
            "/api/v1/flags/{key}",
            "/api/v1/flags/new-editor".into(),
            None,
            DEV,
        ),
        (
            Method::GET,
            "/api/v1/flags/{key}/history",
            "/api/v1/flags/new-editor/history".into(),
            None,
            DEV,
        ),
        (
            Method::GET,
            "/api/v1/history",
            "/api/v1/history".into(),
            None,
            DEV,
        ),
        (
            Method::GET,
            "/api/v1/export",
            "/api/v1/export".into(),
            None,
            DEV,
        ),
        (
            Method::PUT,
            "/api/v1/flags/{key}/state",
            "/api/v1/flags/new-editor/state".into(),
            Some(json!({"state": "ENABLED", "reason": "r"})),
            DEV,
        ),
        (
            Method::PUT,
            "/api/v1/flags/{key}/cohorts/{name}",
            "/api/v1/flags/new-editor/cohorts/pilot".into(),
            Some(
                json!({"attribute": "community", "values": ["x"], "variant": "on", "reason": "r"}),
            ),
            DEV,
        ),
        (
            Method::DELETE,
            "/api/v1/flags/{key}/cohorts/{name}",
            "/api/v1/flags/new-editor/cohorts/pilot?reason=r".into(),
            None,
            DEV,
        ),
        (
            Method::POST,
            "/api/v1/flags",
            "/api/v1/flags".into(),
            Some(json!({"key": "matrix-flag", "flag": flag, "reason": "r"})),
            RES,
        ),
        (
            Method::PUT,
            "/api/v1/flags/{key}",
            "/api/v1/flags/new-editor".into(),
            Some(json!({"flag": flag, "reason": "r"})),
            RES,
        ),
        (
            Method::DELETE,
            "/api/v1/flags/{key}",
            "/api/v1/flags/page-size?reason=r".into(),
            None,
            RES,
        ),
        (
            Method::POST,
            "/api/v1/import",
            "/api/v1/import?reason=r".into(),
            Some(serde_json::from_str(FLAGS).unwrap()),
            RES,
        ),
        (
            Method::POST,
            "/api/v1/exposures",
            "/api/v1/exposures".into(),
            Some(json!({"flag": "new-editor", "context": {"targetingKey": "u"}})),
            SDK,
        ),
        (
            Method::POST,
            "/v1/events",
            "/v1/events".into(),
            Some(json!([])),
            SDK,
        ),
        (
            Method::PUT,
            "/api/v1/units/{id}/consent",
            "/api/v1/units/u/consent".into(),
            Some(json!({"scope": "s", "text_version": "1", "granted": true})),
            SDK,
        ),
        (
            Method::GET,
            "/api/v1/units/{id}/consent",
            "/api/v1/units/u/consent".into(),
            None,
            RES,
        ),
        (
            Method::DELETE,
            "/api/v1/units/{id}",
            "/api/v1/units/nobody".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/trials",
            "/api/v1/trials".into(),
            None,
            DEV,
        ),
        (
            Method::GET,
            "/api/v1/trials/{key}",
            "/api/v1/trials/no-such".into(),
            None,
            DEV,
        ),
        (
            Method::POST,
            "/api/v1/trials/validate",
            "/api/v1/trials/validate".into(),
            source(false),
            DEV,
        ),
        (
            Method::POST,
            "/api/v1/trials",
            "/api/v1/trials".into(),
            source(true),
            RES,
        ),
        (
            Method::PUT,
            "/api/v1/trials/{key}",
            "/api/v1/trials/no-such".into(),
            source(true),
            RES,
        ),
        (
            Method::POST,
            "/api/v1/trials/{key}/amend",
            "/api/v1/trials/no-such/amend".into(),
            source(true),
            RES,
        ),
        (
            Method::GET,
            "/api/v1/trials/{key}/assignments",
            "/api/v1/trials/no-such/assignments".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/trials/{key}/analysis",
            "/api/v1/trials/no-such/analysis".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/trials/{key}/report",
            "/api/v1/trials/no-such/report?format=md".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/keys",
            "/api/v1/keys".into(),
            None,
            ADMIN,
        ),
        (
            Method::POST,
            "/api/v1/keys",
            "/api/v1/keys".into(),
            Some(json!({"name": "matrix-key", "role": "sdk"})),
            ADMIN,
        ),
        (
            Method::DELETE,
            "/api/v1/keys/{id}",
            "/api/v1/keys/no-such-key".into(),
            None,
            ADMIN,
        ),
        (
            Method::GET,
            "/s/{token}",
            format!("/s/{survey}"),
            None,
            PUBLIC,
        ),
        (
            Method::POST,
            "/s/{token}/consent",
            format!("/s/{survey}/consent"),
            Some(json!({"_csrf": csrf, "consent": "yes"})),
            PUBLIC,
        ),
        (
            Method::POST,
            "/s/{token}/pages/{page}",
            format!("/s/{survey}/pages/1"),
            Some(json!({"_csrf": csrf, "often": "never"})),
            PUBLIC,
        ),
        (
            Method::GET,
            "/s/{token}/done",
            format!("/s/{survey}/done"),
            None,
            PUBLIC,
        ),
        (
            Method::GET,
            "/api/v1/surveys/instruments",
            "/api/v1/surveys/instruments".into(),
            None,
            RES,
        ),
        (
            Method::POST,
            "/api/v1/surveys/instruments",
            "/api/v1/surveys/instruments".into(),
            Some(json!({"source": "key = 1", "reason": "r"})),
            RES,
        ),
        (
            Method::GET,
            "/api/v1/surveys/campaigns",
            "/api/v1/surveys/campaigns".into(),
            None,
            RES,
        ),
        (
            Method::POST,
            "/api/v1/surveys/campaigns",
            "/api/v1/surveys/campaigns".into(),
            Some(
                json!({"key": "c", "instrument": "i", "version": 1, "wave": "w",
                        "opens_at": "2027-01-01T00:00:00Z", "closes_at": "2027-02-01T00:00:00Z", "reason": "r"}),
            ),
            RES,
        ),
        (
            Method::GET,
            "/api/v1/surveys/campaigns/{key}",
            "/api/v1/surveys/campaigns/no-such".into(),
            None,
            RES,
        ),
        (
            Method::POST,
            "/api/v1/surveys/campaigns/{key}/links",
            "/api/v1/surveys/campaigns/no-such/links".into(),
            Some(json!({"units": ["u"], "reason": "r"})),
            RES,
        ),
        (
            Method::GET,
            "/api/v1/surveys/campaigns/{key}/results",
            "/api/v1/surveys/campaigns/no-such/results".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/surveys/campaigns/{key}/export",
            "/api/v1/surveys/campaigns/no-such/export".into(),
            None,
            RES,
        ),
        (
            Method::GET,
            "/api/v1/surveys/trials/{key}/response",
            "/api/v1/surveys/trials/no-such/response".into(),
            None,
            RES,
        ),
        (Method::GET, "/healthz", "/healthz".into(), None, PUBLIC),
        (Method::GET, "/readyz", "/readyz".into(), None, PUBLIC),
        (Method::GET, "/metrics", "/metrics".into(), None, PUBLIC),
        (
            Method::GET,
            "/openapi.json",
            "/openapi.json".into(),
            None,
            PUBLIC,
        ),
        (
            Method::GET,
            "/api/v1/openapi.json",
            "/api/v1/openapi.json".into(),
            None,
            PUBLIC,
        ),
    ];
    // Every lifecycle action of the one `{action}` route.
    for action in commonlab_server::trials::ACTIONS {
        out.push((
            Method::POST,
            "/api/v1/trials/{key}/{action}",
            format!("/api/v1/trials/no-such/{action}"),
            Some(json!({"reason": "r"})),
            RES,
        ));
    }
    out
}

/// Every route of the server's own route table × every role: who is let in
/// (not 401/403) and who is refused; public routes answer anyone.
#[tokio::test]
async fn every_route_for_every_role() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let mut keys = Vec::new();
        for role in Role::ALL {
            keys.push((Some(role), h.key(role).await));
        }
        // A revoked admin key is refused like no key at all.
        let revoked = h.key(Role::Admin).await;
        let id = commonlab_core::auth::key_id(&revoked).unwrap().to_string();
        h.server.state.store.revoke_api_key(&id, chrono::Utc::now()).await.unwrap();
        commonlab_server::sync::refresh_keys(&h.server.state).await.unwrap();

        // The table and the requests name the same routes.
        let table: Vec<(Method, &str, Access)> = commonlab_server::route_table()
            .iter()
            .map(|r| (Method::from_bytes(r.method().as_str().as_bytes()).unwrap(), r.path(), r.access()))
            .collect();
        crate::surveys::open_mini(&h, "matrix").await;
        let survey = crate::surveys::link(
            &h,
            "matrix",
            &crate::surveys::unit("matrix"),
            chrono::Utc::now() + chrono::Duration::days(1),
        );
        let csrf = commonlab_server::surveys::pages::form_token(
            &h.server.state.config.survey_keys,
            &survey,
        );
        let requests = requests(&survey, &csrf);
        for (method, path, _) in &table {
            if path.starts_with("/console") {
                // The console's pages: `console::routes` calls each.
                continue;
            }
            assert!(
                requests.iter().any(|(m, p, ..)| m == method && p == path),
                "route {method} {path} is not called by this test: add a request for it to requests()"
            );
        }
        for (method, path, _, _, expected) in &requests {
            let Some((.., access)) = table.iter().find(|(m, p, _)| m == method && p == path) else {
                panic!("{method} {path} is not a route of the table");
            };
            assert_eq!(access, expected, "who may call {method} {path}");
        }

        let mut checked = 0;
        for (method, _, path, body, access) in &requests {
            let access = *access;
            let mut callers: Vec<(Option<Role>, Option<&str>)> =
                keys.iter().map(|(r, k)| (*r, Some(k.as_str()))).collect();
            callers.push((None, None));
            callers.push((None, Some(revoked.as_str())));
            callers.push((None, Some("cl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")));
            for (role, key) in callers {
                let mut req = h.req(method.clone(), path, key);
                match body {
                    // The survey pages take forms, as browsers send them.
                    Some(b) if path.starts_with("/s/") => {
                        let fields: Vec<(&str, &str)> = b
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                            .collect();
                        req = req.form(&fields);
                    }
                    Some(b) => req = req.json(b),
                    None => {}
                }
                let status = req.send().await.unwrap().status();
                let expected_refusal = match (access, role) {
                    (Access::Public, _) => {
                        assert_eq!(status, StatusCode::OK, "{method} {path} as {role:?}");
                        None
                    }
                    (Access::Role(_), None) => Some(StatusCode::UNAUTHORIZED),
                    (Access::Role(needed), Some(r)) if !r.allows(needed) => Some(StatusCode::FORBIDDEN),
                    (Access::Role(_), Some(_)) => None,
                    (Access::Console(_), _) => unreachable!("console routes are called by console::routes"),
                };
                match expected_refusal {
                    Some(code) => assert_eq!(status, code, "{method} {path} as {role:?}"),
                    None => assert!(
                        status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                        "{method} {path} as {role:?} was refused with {status}"
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, requests.len() * 7);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_shown_once_and_revocable() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let resp = h
            .req(Method::POST, "/api/v1/keys", Some(&h.admin))
            .json(&json!({"name": "frontend", "role": "sdk"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        let key = created["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("cl_"));
        let (s, _) = h.eval(&key, "anything", json!({})).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "the key works (flag is missing)");

        let listed: Value = h
            .req(Method::GET, "/api/v1/keys", Some(&h.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = listed.to_string();
        assert!(text.contains("frontend"));
        assert!(!text.contains(&key[15..]), "the secret is never listed");
        assert!(!text.contains("hash"), "nor its hash");

        let resp = h
            .req(Method::POST, "/api/v1/keys", Some(&h.admin))
            .json(&json!({"name": "x", "role": "superuser"}))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        let resp = h
            .req(Method::POST, "/api/v1/keys", Some(&h.admin))
            .json(&json!({"name": "frontend", "role": "sdk"}))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::CONFLICT).await;

        let resp = h
            .req(
                Method::DELETE,
                &format!("/api/v1/keys/{}", created["id"].as_str().unwrap()),
                Some(&h.admin),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (s, _) = h.eval(&key, "anything", json!({})).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        h.stop().await;
    })
    .await;
}
