//! Every console route of the table × every role (no session, developer,
//! researcher, admin; an sdk key cannot sign in), and every console form
//! refused without its token or with another session's, writing nothing.

use super::*;
use commonlab_server::route::Access;

/// A console request: the route (method, path template), the path to
/// call, the form fields a valid post sends (without `_csrf`, which the
/// test adds), and who the table must let in.
pub type ConsoleRequest = (
    Method,
    &'static str,
    String,
    Vec<(&'static str, String)>,
    Access,
);

/// The requests that call each console route of the table. Every route of
/// the table under `/console` must have at least one (the test fails
/// naming a route without), and each must be a route of the table with
/// that access. Add your pages' routes here.
pub fn console_requests(h: &Harness) -> Vec<ConsoleRequest> {
    let _ = h;
    const DEV: Access = Access::Console(Role::Developer);
    const ADMIN: Access = Access::Console(Role::Admin);
    const RES: Access = Access::Console(Role::Researcher);
    vec![
        (
            Method::GET,
            "/console/sign-in",
            "/console/sign-in".into(),
            vec![],
            Access::Public,
        ),
        (
            Method::POST,
            "/console/sign-in",
            "/console/sign-in".into(),
            vec![],
            Access::Public,
        ),
        (Method::GET, "/console/", "/console/".into(), vec![], DEV),
        (Method::GET, "/console", "/console".into(), vec![], DEV),
        (
            Method::POST,
            "/console/sign-out",
            "/console/sign-out".into(),
            vec![],
            DEV,
        ),
        (
            Method::GET,
            "/console/audit",
            "/console/audit?action=flag.import&per_page=5".into(),
            vec![],
            DEV,
        ),
        (
            Method::GET,
            "/console/flags",
            "/console/flags".into(),
            vec![],
            DEV,
        ),
        (
            Method::GET,
            "/console/flags/{key}",
            "/console/flags/new-editor".into(),
            vec![],
            DEV,
        ),
        (
            Method::POST,
            "/console/flags/{key}/state",
            "/console/flags/retired-feature/state".into(),
            vec![("state", "DISABLED".into()), ("reason", "r".into())],
            DEV,
        ),
        (
            Method::POST,
            "/console/flags/{key}/cohorts",
            "/console/flags/new-editor/cohorts".into(),
            vec![
                ("name", "matrix".into()),
                ("attribute", "community".into()),
                ("values", "x".into()),
                ("variant", "on".into()),
                ("reason", "r".into()),
                ("action", "save".into()),
            ],
            DEV,
        ),
        (
            Method::POST,
            "/console/flags/{key}/cohorts/remove",
            "/console/flags/new-editor/cohorts/remove".into(),
            vec![("name", "matrix".into()), ("reason", "r".into())],
            DEV,
        ),
        (
            Method::GET,
            "/console/keys",
            "/console/keys".into(),
            vec![],
            ADMIN,
        ),
        (
            Method::POST,
            "/console/keys",
            "/console/keys".into(),
            vec![
                ("name", format!("matrix-{}", rand_suffix())),
                ("role", "sdk".into()),
                ("reason", "r".into()),
            ],
            ADMIN,
        ),
        (
            Method::GET,
            "/console/keys/{id}/revoke",
            "/console/keys/000000000000/revoke".into(),
            vec![],
            ADMIN,
        ),
        (
            Method::POST,
            "/console/keys/{id}/revoke",
            "/console/keys/000000000000/revoke".into(),
            vec![("reason", "r".into())],
            ADMIN,
        ),
        // Trials and surveys (console/trials*.rs, console/surveys.rs): a
        // trial that does not exist (404, not a refusal); the post without
        // a reason writes nothing (422).
        (
            Method::GET,
            "/console/trials",
            "/console/trials".into(),
            vec![],
            DEV,
        ),
        (
            Method::GET,
            "/console/trials/{key}",
            "/console/trials/absent".into(),
            vec![],
            DEV,
        ),
        (
            Method::GET,
            "/console/trials/{key}/report",
            "/console/trials/absent/report".into(),
            vec![],
            RES,
        ),
        (
            Method::GET,
            "/console/trials/{key}/{action}",
            "/console/trials/absent/start".into(),
            vec![],
            RES,
        ),
        (
            Method::POST,
            "/console/trials/{key}/{action}",
            "/console/trials/absent/start".into(),
            vec![("reason", String::new())],
            RES,
        ),
        (
            Method::GET,
            "/console/surveys",
            "/console/surveys".into(),
            vec![],
            RES,
        ),
        (
            Method::GET,
            "/console/surveys/{key}/{version}/preview",
            "/console/surveys/absent/1/preview?lang=en".into(),
            vec![],
            RES,
        ),
    ]
}

/// What a refused post must leave unchanged: the whole audit log (every
/// change the database records: flags, trials, keys, sign-ins and -outs,
/// erasures, surveys), the keys, and the live console sessions of
/// `key_id`.
async fn written(h: &Harness, key_id: &str) -> String {
    let store = &h.server.state.store;
    let audit = store
        .audit_entries(&commonlab_store::AuditQuery {
            sources: &commonlab_store::AuditSource::ALL,
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys = store.list_api_keys(true).await.unwrap();
    let sessions = store
        .live_console_sessions(key_id, chrono::Utc::now())
        .await
        .unwrap();
    format!("{audit:?} {keys:?} {sessions}")
}

#[tokio::test]
async fn every_console_route_for_every_role() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let mut keys = vec![(None, None)];
        for role in [Role::Developer, Role::Researcher, Role::Admin] {
            keys.push((Some(role), Some(h.key(role).await)));
        }
        let table: Vec<(Method, &str, Access)> = commonlab_server::route_table()
            .iter()
            .filter(|r| r.path().starts_with("/console"))
            .map(|r| {
                (
                    Method::from_bytes(r.method().as_str().as_bytes()).unwrap(),
                    r.path(),
                    r.access(),
                )
            })
            .collect();
        assert!(table.len() >= 4, "the console's routes are in the table");
        let requests = console_requests(&h);
        for (method, path, _) in &table {
            assert!(
                requests.iter().any(|(m, p, ..)| m == method && p == path),
                "console route {method} {path} is not called by this test: add it to console_requests()"
            );
        }
        for (method, path, _, _, expected) in &requests {
            let Some((.., access)) = table.iter().find(|(m, p, _)| m == method && p == path) else {
                panic!("{method} {path} is not a console route of the table");
            };
            assert_eq!(access, expected, "who may call {method} {path}");
        }

        let mut checked = 0;
        for (method, template, path, fields, access) in &requests {
            for (role, key) in &keys {
                // A session of its own for every call: a post may end it.
                let mut b = Browser::new(&h);
                if let Some(k) = key {
                    b.sign_in(k).await;
                }
                let resp = if *method == Method::GET {
                    b.get(path).send().await.unwrap()
                } else {
                    let csrf = match b.session {
                        Some(_) => b.csrf().await,
                        None => String::new(),
                    };
                    let mut form: Vec<(&str, &str)> =
                        fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    form.push(("_csrf", &csrf));
                    b.post(path, &form).send().await.unwrap()
                };
                let status = resp.status();
                let what = format!("{method} {path} as {role:?}");
                match (access, role) {
                    (Access::Public, _) if *template == "/console/sign-in" && *method == Method::POST => {
                        // Without the sign-in form's own token: refused.
                        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                    }
                    (Access::Public, _) => assert_eq!(status, StatusCode::OK, "{what}"),
                    (Access::Console(_), None) => {
                        assert_eq!(status, StatusCode::SEE_OTHER, "{what}");
                        let to = resp.headers()[header::LOCATION].to_str().unwrap();
                        assert!(to.starts_with("/console/sign-in"), "{what}: {to}");
                    }
                    (Access::Console(needed), Some(r)) if !r.allows(*needed) => {
                        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                        let html = resp.text().await.unwrap();
                        assert!(html.contains("Not allowed"), "{what}: {html}");
                    }
                    (Access::Console(_), Some(_)) => {
                        let refused =
                            matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
                        let sent_to_sign_in = status == StatusCode::SEE_OTHER
                            && resp.headers()[header::LOCATION]
                                .to_str()
                                .unwrap()
                                .starts_with("/console/sign-in?next");
                        assert!(
                            !refused && !sent_to_sign_in,
                            "{what} was refused with {status}"
                        );
                    }
                    (Access::Role(_), _) => panic!("{what}: a console route guarded by an API key"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, requests.len() * keys.len());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_console_form_is_refused_without_its_token() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let admin_id = commonlab_core::auth::key_id(&h.admin).unwrap().to_string();
        let mut posts = 0;
        for (method, _, path, fields, access) in console_requests(&h) {
            if method != Method::POST || !matches!(access, Access::Console(_)) {
                continue;
            }
            let mut b = Browser::new(&h);
            b.sign_in(&h.admin).await;
            let mut other = Browser::new(&h);
            other.sign_in(&h.admin).await;
            let wrong = other.csrf().await;
            let before = written(&h, &admin_id).await;
            let base: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut with_wrong = base.clone();
            with_wrong.push(("_csrf", wrong.as_str()));
            let mut garbage = base.clone();
            garbage.push(("_csrf", "AAAA"));
            for form in [&base, &with_wrong, &garbage] {
                let resp = b.post(&path, form).send().await.unwrap();
                assert_eq!(resp.status(), StatusCode::FORBIDDEN, "POST {path} {form:?}");
                let html = resp.text().await.unwrap();
                assert!(html.contains("This form was refused"), "{html}");
            }
            // Sent cross-site with the right token: refused too.
            let mut right = base.clone();
            let csrf = b.csrf().await;
            right.push(("_csrf", csrf.as_str()));
            let resp = b
                .post(&path, &right)
                .header("sec-fetch-site", "cross-site")
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "POST {path} cross-site"
            );
            assert_eq!(written(&h, &admin_id).await, before, "POST {path} wrote");
            posts += 1;
        }
        assert!(posts >= 1);
        h.stop().await;
    })
    .await;
}
