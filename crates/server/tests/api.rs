//! End-to-end tests of the HTTP server, each on SQLite and on PostgreSQL.

use commonlab_core::auth::Role;
use commonlab_server::{build_state, keys::create_key, start, Clock, Config, Running};
use commonlab_store::testing::{both_backends, TestDb};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// method, path, If-Match, body, content type, expected status, expected pointer prefix.
type BadCase<'a> = (
    Method,
    String,
    Option<&'a str>,
    String,
    &'a str,
    StatusCode,
    &'a str,
);

mod events;
mod flags;
mod http;
mod privacy;
mod trials;

const FLAGS: &str = include_str!("fixtures/flags.json");
const BODY_LIMIT: usize = 64 * 1024;

struct Harness {
    server: Running,
    base: String,
    http: reqwest::Client,
    admin: String,
}

impl Harness {
    async fn start(db: &TestDb) -> Harness {
        let store = db.connect_another().await;
        let admin = create_key(
            &store,
            "test-admin",
            Role::Admin,
            "test",
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .key;
        Self::start_with(store, admin).await
    }

    async fn start_with(store: commonlab_store::Store, admin: String) -> Harness {
        Self::start_full(store, admin, Clock::System, Config::default()).await
    }

    async fn start_full(
        store: commonlab_store::Store,
        admin: String,
        clock: Clock,
        base: Config,
    ) -> Harness {
        let config = Config {
            poll_interval: Duration::from_millis(50),
            body_limit: BODY_LIMIT,
            ..base
        };
        let state = build_state(store, config, clock).await.unwrap();
        let server = start("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
        let base = format!("http://{}", server.addr);
        Harness {
            server,
            base,
            http: reqwest::Client::new(),
            admin,
        }
    }

    async fn key(&self, role: Role) -> String {
        let name = format!("{role}-{}", rand_suffix());
        let k = create_key(
            &self.server.state.store,
            &name,
            role,
            "test",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        commonlab_server::sync::refresh_keys(&self.server.state)
            .await
            .unwrap();
        k.key
    }

    fn req(&self, method: Method, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r
    }

    async fn import_fixture(&self) {
        let resp = self
            .req(
                Method::POST,
                "/api/v1/import?reason=fixture",
                Some(&self.admin),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(FLAGS)
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

    async fn eval(&self, key: &str, flag: &str, context: Value) -> (StatusCode, String) {
        let resp = self
            .req(
                Method::POST,
                &format!("/ofrep/v1/evaluate/flags/{flag}"),
                Some(key),
            )
            .json(&json!({ "context": context }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

async fn problem(resp: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(resp.status(), status);
    let ct = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn ofrep_single_flag_evaluation() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;

        let (s, body) = h
            .eval(&sdk, "new-editor", json!({"targetingKey": "m1"}))
            .await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["key"], "new-editor");
        assert_eq!(v["value"], true);
        assert_eq!(v["variant"], "on");
        assert_eq!(v["reason"], "STATIC");
        assert_eq!(v["metadata"]["owner"], "wp3");
        assert_eq!(v["metadata"]["flagSetId"], "server-tests");

        let (_, body) = h
            .eval(
                &sdk,
                "welcome-text",
                json!({"targetingKey": "m1", "community": "coop-b"}),
            )
            .await;
        let v = parse(&body);
        assert_eq!(
            (v["value"].as_str(), v["reason"].as_str()),
            (Some("Welcome, neighbour"), Some("TARGETING_MATCH"))
        );
        let (_, body) = h
            .eval(
                &sdk,
                "welcome-text",
                json!({"targetingKey": "m1", "community": "other"}),
            )
            .await;
        let v = parse(&body);
        assert_eq!(
            (v["value"].as_str(), v["reason"].as_str()),
            (Some("Welcome"), Some("DEFAULT"))
        );

        // Floats stay floats on the wire, integers stay integers.
        let (_, body) = h.eval(&sdk, "reward-weight", json!({})).await;
        assert!(body.contains("\"value\":0.0"), "{body}");
        let (_, body) = h.eval(&sdk, "page-size", json!({})).await;
        assert!(body.contains("\"value\":50,"), "{body}");

        // Splits need a targeting key.
        let (s, body) = h
            .eval(&sdk, "thanks-button", json!({"targetingKey": "m7"}))
            .await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["reason"], "SPLIT");
        assert!(["none", "heart", "banner"].contains(&v["value"].as_str().unwrap()));
        // No targetingKey to split on: flagd's answer, the default variant.
        let (s, body) = h
            .eval(&sdk, "thanks-button", json!({"community": "wiki-a"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v = parse(&body);
        assert_eq!(v["reason"], "DEFAULT");
        assert_eq!(v["variant"], "control");
        assert_eq!(v["value"], "none");
        assert_eq!(v["key"], "thanks-button");

        // Disabled: the caller's code default (no value, no variant).
        let (s, body) = h.eval(&sdk, "retired-feature", json!({})).await;
        assert_eq!(s, StatusCode::OK);
        let v = parse(&body);
        assert_eq!(v["reason"], "DISABLED");
        assert!(
            v.get("value").is_none() && v.get("variant").is_none(),
            "{v}"
        );

        let (s, body) = h.eval(&sdk, "no-such-flag", json!({})).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let v = parse(&body);
        assert_eq!(v["errorCode"], "FLAG_NOT_FOUND");
        assert!(v["errorDetails"].as_str().unwrap().contains("no-such-flag"));

        // X-API-Key works like Bearer.
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags/new-editor", None)
            .header("X-API-Key", &sdk)
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_bad_requests_get_ofrep_errors() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let post = |body: &'static str, ct: &'static str| {
            h.req(
                Method::POST,
                "/ofrep/v1/evaluate/flags/new-editor",
                Some(&sdk),
            )
            .header(header::CONTENT_TYPE, ct)
            .body(body)
        };
        let resp = post("{\"context\": ", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT");
        assert!(
            v["errorDetails"].as_str().unwrap().contains("line 1"),
            "{v}"
        );

        let resp = post("{\"context\": [1]}", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT");

        let resp = post("{\"context\": {\"targetingKey\": 5}}", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

        let resp = post("{\"context\": {}}", "text/plain")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let v: Value = resp.json().await.unwrap();
        assert!(v["errorDetails"]
            .as_str()
            .unwrap()
            .contains("application/json"));

        let big = format!(
            "{{\"context\": {{\"pad\": \"{}\"}}}}",
            "x".repeat(BODY_LIMIT + 10)
        );
        let resp = h
            .req(
                Method::POST,
                "/ofrep/v1/evaluate/flags/new-editor",
                Some(&sdk),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

        // Without a key: 401 problem+json; a developer key may not... it may (roles include sdk).
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags/new-editor", None)
            .json(&json!({"context": {}}))
            .send()
            .await
            .unwrap();
        problem(resp, StatusCode::UNAUTHORIZED).await;

        // The server still serves normally afterwards.
        let (s, _) = h.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(s, StatusCode::OK);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn ofrep_bulk_with_etag() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let sdk = h.key(Role::Sdk).await;
        let ctx = json!({"context": {"targetingKey": "m1", "community": "wiki-a"}});
        let resp = h
            .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
            .json(&ctx)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        let v: Value = resp.json().await.unwrap();
        let flags = v["flags"].as_array().unwrap();
        assert_eq!(flags.len(), 6);
        let welcome = flags.iter().find(|f| f["key"] == "welcome-text").unwrap();
        assert_eq!(welcome["value"], "Welcome, neighbour");
        assert_eq!(v["metadata"]["flagSetId"], "server-tests");

        let again = |tag: String, body: Value| {
            h.req(Method::POST, "/ofrep/v1/evaluate/flags", Some(&sdk))
                .header(header::IF_NONE_MATCH, tag)
                .json(&body)
                .send()
        };
        let resp = again(etag.clone(), ctx.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert!(resp.bytes().await.unwrap().is_empty());

        // Another context is another answer.
        let other = json!({"context": {"targetingKey": "m2"}});
        let resp = again(etag.clone(), other).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);

        // A change to the flags invalidates the ETag.
        let dev = h.key(Role::Developer).await;
        let resp = h
            .req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = again(etag.clone(), ctx.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_ne!(resp.headers()[header::ETAG].to_str().unwrap(), etag);
        h.stop().await;
    })
    .await;
}

/// Every route × every role: who is let in (not 401/403) and who is refused.
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

        let flag = json!({"state": "ENABLED", "variants": {"a": true, "b": false}, "defaultVariant": "a"});
        let routes: Vec<(Method, &str, Option<Value>, Role)> = vec![
            (Method::POST, "/ofrep/v1/evaluate/flags/new-editor", Some(json!({"context": {}})), Role::Sdk),
            (Method::POST, "/ofrep/v1/evaluate/flags", Some(json!({"context": {}})), Role::Sdk),
            (Method::GET, "/api/v1/flags", None, Role::Developer),
            (Method::GET, "/api/v1/flags/new-editor", None, Role::Developer),
            (Method::GET, "/api/v1/flags/new-editor/history", None, Role::Developer),
            (Method::GET, "/api/v1/history", None, Role::Developer),
            (Method::GET, "/api/v1/export", None, Role::Developer),
            (Method::PUT, "/api/v1/flags/new-editor/state", Some(json!({"state": "ENABLED", "reason": "r"})), Role::Developer),
            (Method::PUT, "/api/v1/flags/new-editor/cohorts/pilot", Some(json!({"attribute": "community", "values": ["x"], "variant": "on", "reason": "r"})), Role::Developer),
            (Method::DELETE, "/api/v1/flags/new-editor/cohorts/pilot?reason=r", None, Role::Developer),
            (Method::POST, "/api/v1/flags", Some(json!({"key": "matrix-flag", "flag": flag, "reason": "r"})), Role::Researcher),
            (Method::PUT, "/api/v1/flags/new-editor", Some(json!({"flag": flag, "reason": "r"})), Role::Researcher),
            (Method::DELETE, "/api/v1/flags/page-size?reason=r", None, Role::Researcher),
            (Method::POST, "/api/v1/import?reason=r", Some(serde_json::from_str(FLAGS).unwrap()), Role::Researcher),
            (Method::POST, "/api/v1/exposures", Some(json!({"flag": "new-editor", "context": {"targetingKey": "u"}})), Role::Sdk),
            (Method::POST, "/v1/events", Some(json!([])), Role::Sdk),
            (Method::PUT, "/api/v1/units/u/consent", Some(json!({"scope": "s", "text_version": "1", "granted": true})), Role::Sdk),
            (Method::GET, "/api/v1/units/u/consent", None, Role::Researcher),
            (Method::DELETE, "/api/v1/units/nobody", None, Role::Researcher),
            (Method::GET, "/api/v1/trials", None, Role::Developer),
            (Method::GET, "/api/v1/trials/no-such", None, Role::Developer),
            (Method::POST, "/api/v1/trials/validate", Some(json!({"source": "key = 1"})), Role::Developer),
            (Method::POST, "/api/v1/trials", Some(json!({"source": "key = 1", "reason": "r"})), Role::Researcher),
            (Method::PUT, "/api/v1/trials/no-such", Some(json!({"source": "key = 1", "reason": "r"})), Role::Researcher),
            (Method::POST, "/api/v1/trials/no-such/start", Some(json!({"reason": "r"})), Role::Researcher),
            (Method::POST, "/api/v1/trials/no-such/stop", Some(json!({"reason": "r"})), Role::Researcher),
            (Method::POST, "/api/v1/trials/no-such/amend", Some(json!({"source": "key = 1", "reason": "r"})), Role::Researcher),
            (Method::GET, "/api/v1/trials/no-such/assignments", None, Role::Researcher),
            (Method::GET, "/api/v1/keys", None, Role::Admin),
            (Method::POST, "/api/v1/keys", Some(json!({"name": "matrix-key", "role": "sdk"})), Role::Admin),
            (Method::DELETE, "/api/v1/keys/no-such-key", None, Role::Admin),
        ];
        let mut checked = 0;
        for (method, path, body, needed) in &routes {
            let mut callers: Vec<(Option<Role>, Option<&str>)> =
                keys.iter().map(|(r, k)| (*r, Some(k.as_str()))).collect();
            callers.push((None, None));
            callers.push((None, Some(revoked.as_str())));
            callers.push((None, Some("cl_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")));
            for (role, key) in callers {
                let mut req = h.req(method.clone(), path, key);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let status = req.send().await.unwrap().status();
                let expected_refusal = match role {
                    None => Some(StatusCode::UNAUTHORIZED),
                    Some(r) if !r.allows(*needed) => Some(StatusCode::FORBIDDEN),
                    Some(_) => None,
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
        assert_eq!(checked, routes.len() * 7);
        // Health needs no key.
        for path in ["/healthz", "/readyz"] {
            let resp = h.req(Method::GET, path, None).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn managing_flags_and_refusing_bad_changes() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let res = h.key(Role::Researcher).await;
        let res = res.as_str();
        let export = |h: &Harness| {
            h.req(Method::GET, "/api/v1/export", Some(&h.admin)).send()
        };
        let before: Value = export(&h).await.unwrap().json().await.unwrap();

        // Create.
        let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
        let resp = h.req(Method::POST, "/api/v1/flags", Some(res))
            .json(&json!({"key": "value-dashboard", "flag": flag, "reason": "new trial"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let created: Value = resp.json().await.unwrap();
        let etag = created["etag"].as_str().unwrap().to_string();

        // Create again: 409.
        let resp = h.req(Method::POST, "/api/v1/flags", Some(res))
            .json(&json!({"key": "value-dashboard", "flag": flag, "reason": "again"}))
            .send().await.unwrap();
        problem(resp, StatusCode::CONFLICT).await;

        // GET gives the same ETag.
        let resp = h.req(Method::GET, "/api/v1/flags/value-dashboard", Some(res)).send().await.unwrap();
        assert_eq!(resp.headers()[header::ETAG].to_str().unwrap(), etag);

        // Update without If-Match: 428; with a stale one: 412; with the right one: 200.
        let updated = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        problem(resp, StatusCode::PRECONDITION_REQUIRED).await;
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, "\"f-0000000000000000\"")
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        let p = problem(resp, StatusCode::PRECONDITION_FAILED).await;
        assert!(p["currentRevision"].as_i64().is_some());
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, &etag)
            .json(&json!({"flag": updated, "reason": "go"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let new_etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_ne!(new_etag, etag);
        // The old ETag is now stale.
        let resp = h.req(Method::PUT, "/api/v1/flags/value-dashboard", Some(res))
            .header(header::IF_MATCH, &etag)
            .json(&json!({"flag": flag, "reason": "lost update"})).send().await.unwrap();
        problem(resp, StatusCode::PRECONDITION_FAILED).await;

        let after_good: Value = export(&h).await.unwrap().json().await.unwrap();
        assert_ne!(after_good, before);

        // Bad changes: each refused with a problem naming the field, nothing stored.
        let bad_cases: Vec<BadCase> = vec![
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "broken", "flag": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"no_such_op": [1]}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/broken/targeting"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "mixed", "flag": {"state": "ENABLED", "variants": {"a": 1, "b": "two"}, "defaultVariant": "a"}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/mixed"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "nodefault", "flag": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "zzz"}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/nodefault"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {"state": "ON", "variants": {"a": 1}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/x/state"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {"state": "ENABLED", "variants": {"a": 1}}, "reason": "  "}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/reason"),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": "x", "flag": {}, "reason": "r", "extra": 1}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, ""),
            (Method::POST, "/api/v1/flags".into(), None,
             json!({"key": 5, "flag": {}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/key"),
            (Method::POST, "/api/v1/flags".into(), None,
             "{\"key\": \"x\",".into(), "application/json", StatusCode::BAD_REQUEST, ""),
            (Method::POST, "/api/v1/flags".into(), None,
             "key=x".into(), "application/x-www-form-urlencoded", StatusCode::UNSUPPORTED_MEDIA_TYPE, ""),
            (Method::PUT, "/api/v1/flags/value-dashboard/state".into(), None,
             json!({"state": "MAYBE", "reason": "r"}).to_string(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/state"),
            (Method::PUT, "/api/v1/flags/no-such/state".into(), None,
             json!({"state": "ENABLED", "reason": "r"}).to_string(), "application/json", StatusCode::NOT_FOUND, ""),
            (Method::PUT, "/api/v1/flags/value-dashboard/cohorts/pilot".into(), None,
             json!({"attribute": "community", "values": ["a"], "variant": "nope", "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/value-dashboard/cohorts"),
            (Method::PUT, "/api/v1/flags/value-dashboard".into(), Some(new_etag.as_str()),
             json!({"flag": {"state": "ENABLED", "variants": {"on": "yes"}, "defaultVariant": "on", "targeting": {"fractional": "bad"}}, "reason": "r"}).to_string(),
             "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/flags/value-dashboard/targeting"),
            (Method::POST, "/api/v1/import?reason=r".into(), None,
             "{\"flags\": {\n  \"a\": {\"state\": \"ENABLED\",, }}}".into(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, ""),
            (Method::GET, "/api/v1/history?limit=lots".into(), None, String::new(), "application/json", StatusCode::UNPROCESSABLE_ENTITY, "/query"),
        ];
        for (method, path, if_match, body, ct, status, pointer) in bad_cases {
            let mut req = h.req(method.clone(), &path, Some(res)).header(header::CONTENT_TYPE, ct);
            if let Some(tag) = if_match {
                req = req.header(header::IF_MATCH, tag);
            }
            if !body.is_empty() {
                req = req.body(body.clone());
            }
            let resp = req.send().await.unwrap();
            let got = resp.status();
            assert_eq!(got, status, "{method} {path} {body}");
            let p = problem(resp, status).await;
            if !pointer.is_empty() {
                let pointers: Vec<&str> = p["errors"].as_array().map(|a| a.iter().filter_map(|e| e["pointer"].as_str()).collect()).unwrap_or_default();
                assert!(pointers.iter().any(|ptr| ptr.starts_with(pointer)), "{path} {body}: {p}");
            }
        }
        let after_bad: Value = export(&h).await.unwrap().json().await.unwrap();
        assert_eq!(after_bad, after_good, "refused changes must leave the flag set unchanged");

        // Unknown routes and methods are problems too.
        let resp = h.req(Method::GET, "/nowhere", None).send().await.unwrap();
        problem(resp, StatusCode::NOT_FOUND).await;
        let resp = h.req(Method::PATCH, "/api/v1/flags", Some(res)).send().await.unwrap();
        problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cohorts_state_history_and_export() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        let dev = h.key(Role::Developer).await;
        let sdk = h.key(Role::Sdk).await;

        // A cohort override: community coop-b gets the "off" variant.
        let resp = h.req(Method::PUT, "/api/v1/flags/new-editor/cohorts/coop-pilot", Some(&dev))
            .json(&json!({"attribute": "community", "values": ["coop-b"], "variant": "off", "reason": "coop asked to opt out"}))
            .send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
        let (_, body) = h.eval(&sdk, "new-editor", json!({"targetingKey": "m", "community": "coop-b"})).await;
        let v = parse(&body);
        assert_eq!((v["value"].as_bool(), v["reason"].as_str()), (Some(false), Some("TARGETING_MATCH")));
        let (_, body) = h.eval(&sdk, "new-editor", json!({"targetingKey": "m", "community": "wiki-a"})).await;
        assert_eq!(parse(&body)["value"], true);

        // flagd export inlines the override into targeting; commonlab keeps it structured.
        let flagd: Value = h.req(Method::GET, "/api/v1/export?format=flagd", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert!(flagd["flags"]["new-editor"].get("cohorts").is_none());
        assert!(flagd["flags"]["new-editor"]["targeting"].is_object());
        let ours: Value = h.req(Method::GET, "/api/v1/export", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert_eq!(ours["flags"]["new-editor"]["cohorts"][0]["name"], "coop-pilot");

        // Disable, then look at the audit log.
        let resp = h.req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "assembly pause"})).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (_, body) = h.eval(&sdk, "new-editor", json!({})).await;
        assert_eq!(parse(&body)["reason"], "DISABLED");

        let hist: Value = h.req(Method::GET, "/api/v1/flags/new-editor/history", Some(&dev)).send().await.unwrap().json().await.unwrap();
        let items = hist["history"].as_array().unwrap();
        assert_eq!(items.len(), 2, "{hist}");
        assert_eq!(items[0]["action"], "set-state");
        assert_eq!(items[0]["reason"], "assembly pause");
        assert!(items[0]["actor"].as_str().unwrap().starts_with("key:developer-"));
        assert_eq!(items[1]["action"], "cohort");
        let all: Value = h.req(Method::GET, "/api/v1/history?limit=1", Some(&dev)).send().await.unwrap().json().await.unwrap();
        assert_eq!(all["history"].as_array().unwrap().len(), 1);

        // Remove the cohort.
        let resp = h.req(Method::DELETE, "/api/v1/flags/new-editor/cohorts/coop-pilot?reason=done", Some(&dev)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = h.req(Method::DELETE, "/api/v1/flags/new-editor/cohorts/coop-pilot?reason=again", Some(&dev)).send().await.unwrap();
        problem(resp, StatusCode::NOT_FOUND).await;
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

/// Two servers on one database: a change made through one is served by the
/// other within a second (it polls the head revision).
#[tokio::test]
async fn two_servers_serve_a_change_within_a_second() {
    both_backends(|db| async move {
        let a = Harness::start(&db).await;
        let b = Harness::start_with(db.connect_another().await, a.admin.clone()).await;
        a.import_fixture().await;
        let sdk = a.key(Role::Sdk).await;
        // b learns about the key and the flags by polling.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let (s, body) = b.eval(&sdk, "new-editor", json!({})).await;
            if s == StatusCode::OK && parse(&body)["value"] == true {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server b did not see the import within 1 s: {s} {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let dev = a.key(Role::Developer).await;
        let resp = a
            .req(Method::PUT, "/api/v1/flags/new-editor/state", Some(&dev))
            .json(&json!({"state": "DISABLED", "reason": "replica test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let changed_at = Instant::now();
        loop {
            let (_, body) = b.eval(&sdk, "new-editor", json!({})).await;
            if parse(&body)["reason"] == "DISABLED" {
                break;
            }
            assert!(
                changed_at.elapsed() < Duration::from_secs(1),
                "server b still serves the old flag after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.stop().await;
        b.stop().await;
    })
    .await;
}

/// Concurrent writers through two servers: no update is lost.
#[tokio::test]
async fn concurrent_changes_through_two_servers_are_all_kept() {
    both_backends(|db| async move {
        let a = Harness::start(&db).await;
        let b = Harness::start_with(db.connect_another().await, a.admin.clone()).await;
        a.import_fixture().await;
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (base, key) = if i % 2 == 0 {
                (a.base.clone(), a.admin.clone())
            } else {
                (b.base.clone(), a.admin.clone())
            };
            tasks.push(tokio::spawn(async move {
                let flag =
                    json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
                reqwest::Client::new()
                    .post(format!("{base}/api/v1/flags"))
                    .bearer_auth(key)
                    .json(
                        &json!({"key": format!("concurrent-{i}"), "flag": flag, "reason": "race"}),
                    )
                    .send()
                    .await
                    .unwrap()
                    .status()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::CREATED);
        }
        let ours: Value = a
            .req(Method::GET, "/api/v1/export", Some(&a.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for i in 0..6 {
            assert!(
                ours["flags"].get(format!("concurrent-{i}")).is_some(),
                "concurrent-{i} lost"
            );
        }
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn readiness_reflects_the_database() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        let resp = h.req(Method::GET, "/readyz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.server.state.store.close().await;
        let resp = h.req(Method::GET, "/readyz", None).send().await.unwrap();
        let p = problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(p["title"], "Service unavailable");
        let resp = h.req(Method::GET, "/healthz", None).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        h.stop().await;
    })
    .await;
}
