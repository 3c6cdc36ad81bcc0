//! Survey-trigger flags over OFREP, end to end on both stores: invite →
//! shown with a working link (single and bulk) → complete → not shown;
//! expired, not open, not invited, declined, consent withdrawn; two
//! replicas give the same link; and what refuses a trigger flag.

use super::*;
use commonlab_core::privacy::pseudonymise;

const FLAG: &str = "survey-prompt";

async fn publish_mini(h: &Harness) {
    let hash = hex::encode(Sha256::digest(MINI.as_bytes()));
    h.server
        .state
        .store
        .publish_instrument(&NewInstrument {
            key: "mini",
            version: 1,
            source: MINI,
            hash: &hash,
            actor: "test",
            reason: "trigger tests",
            at: Utc::now(),
        })
        .await
        .unwrap();
}

async fn call(h: &Harness, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
    let resp = h
        .req(method, path, Some(&h.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates campaign `key` of the mini survey with trigger flag `flag`,
/// open from `opens` to `closes`; the replica reloads its trigger flags.
async fn trigger_campaign(
    h: &Harness,
    key: &str,
    opens: DateTime<Utc>,
    closes: DateTime<Utc>,
) -> Value {
    let (s, body) = call(
        h,
        Method::POST,
        "/api/v1/surveys/campaigns",
        json!({"key": key, "instrument": "mini", "version": 1, "wave": "baseline",
               "opens_at": opens, "closes_at": closes, "trigger_flag": FLAG, "reason": "in-app"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["trigger_flag"], FLAG);
    commonlab_server::sync::refresh_all(&h.server.state)
        .await
        .unwrap();
    body
}

/// Invites `unit` to `campaign`; its link's path.
async fn invite(h: &Harness, campaign: &str, unit: &str) -> String {
    let (s, body) = call(
        h,
        Method::POST,
        &format!("/api/v1/surveys/campaigns/{campaign}/links"),
        json!({"units": [unit], "reason": "in-app"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["links"][0]["path"].as_str().unwrap().to_string()
}

async fn eval(h: &Harness, sdk: &str, unit: Option<&str>) -> Value {
    let ctx = match unit {
        Some(u) => json!({"targetingKey": u}),
        None => json!({}),
    };
    let (s, body) = h.eval(sdk, FLAG, ctx).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    parse(&body)
}

/// A bulk evaluation for `unit`: status, ETag, and the trigger flag's item.
async fn bulk(
    h: &Harness,
    sdk: &str,
    unit: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut r = h
        .req(Method::POST, "/ofrep/v1/evaluate/flags", Some(sdk))
        .json(&json!({"context": {"targetingKey": unit}}));
    if let Some(tag) = if_none_match {
        r = r.header(header::IF_NONE_MATCH, tag);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status();
    let etag = resp.headers()[header::ETAG].to_str().unwrap().to_string();
    let text = resp.text().await.unwrap();
    if status == StatusCode::NOT_MODIFIED {
        return (status, etag, Value::Null);
    }
    let body = parse(&text);
    let item = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == FLAG)
        .cloned()
        .unwrap_or(Value::Null);
    (status, etag, item)
}

fn assert_off(v: &Value, why: &str) {
    assert_eq!(v["value"], json!({"show": false}), "{v}");
    assert_eq!(v["variant"], why, "{v}");
}

#[tokio::test]
async fn an_invited_unit_is_shown_its_link_until_it_completes() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        publish_mini(&h).await;
        let sdk = h.key(Role::Sdk).await;
        let now = Utc::now();
        let closes = now + chrono::Duration::days(7);
        trigger_campaign(&h, "inapp-1", now - chrono::Duration::days(1), closes).await;

        // Not invited: the off value, saying why, and no pseudonym.
        let v = eval(&h, &sdk, Some("alice")).await;
        assert_off(&v, "not_invited");
        assert_eq!(v["reason"], "TARGETING_MATCH");
        let pseudonym = pseudonymise(&h.server.state.config.study_key, "alice").to_string();
        assert!(!v.to_string().contains(&pseudonym));
        let v = eval(&h, &sdk, None).await;
        assert_off(&v, "no_targeting_key");
        assert_eq!(v["reason"], "DEFAULT");
        let (_, before, item) = bulk(&h, &sdk, "alice", None).await;
        assert_off(&item, "not_invited");

        // Invited: the same link the links API gives, in single and bulk.
        let path = invite(&h, "inapp-1", "alice").await;
        let v = eval(&h, &sdk, Some("alice")).await;
        assert_eq!(v["variant"], "show");
        assert_eq!(v["reason"], "TARGETING_MATCH");
        assert_eq!(
            v["value"],
            json!({"show": true, "url": path, "campaign": "inapp-1", "wave": "baseline",
                   "expires_at": closes.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)})
        );
        // The bulk ETag of before the invitation no longer matches.
        let (s, shown_tag, item) = bulk(&h, &sdk, "alice", Some(&before)).await;
        assert_eq!(s, StatusCode::OK);
        assert_ne!(shown_tag, before);
        assert_eq!(item["value"], v["value"]);
        let (s, _, _) = bulk(&h, &sdk, "alice", Some(&shown_tag)).await;
        assert_eq!(s, StatusCode::NOT_MODIFIED);
        // Others are still not invited.
        assert_off(&eval(&h, &sdk, Some("bob")).await, "not_invited");

        // Follow the link: the survey opens; answer it to the end.
        let token = path.strip_prefix("/s/").unwrap().to_string();
        let r = Respondent::new(&h, token);
        let (s, body, _) = r.get("", "en").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("<h1>Mini survey</h1>"), "{body}");
        assert!(body.contains("&#x2f;consent\" novalidate>"), "the consent form: {body}");
        let (s, _, _) = r.post("/consent", &[("consent", "yes")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        // Started, not complete: still shown (to resume).
        assert_eq!(eval(&h, &sdk, Some("alice")).await["variant"], "show");
        let (s, _, _) = r
            .post(
                "/pages/1",
                &[("often", "weekly"), ("hours", "2"), ("comment", "ok")],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (s, _, headers) = r
            .post(
                "/pages/2",
                &[
                    ("a1", "3"),
                    ("a2", "1"),
                    ("tasks", "write"),
                    ("rank", "y"),
                    ("rank", "x"),
                    ("nps", "9"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert!(location(&headers).contains("/done"));

        // Completed: not shown, at once on this replica (the pages forget
        // the unit's cached standing), single and bulk.
        assert_off(&eval(&h, &sdk, Some("alice")).await, "completed");
        let (s, tag, item) = bulk(&h, &sdk, "alice", Some(&shown_tag)).await;
        assert_eq!(s, StatusCode::OK, "completion changes the ETag");
        assert_ne!(tag, shown_tag);
        assert_off(&item, "completed");
        assert!(
            h.metric("commonlab_ofrep_evaluations_total{flag=\"survey-prompt\",reason=\"TARGETING_MATCH\"}")
                .await
                >= 1.0
        );
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn expired_not_open_declined_and_withdrawn_units_are_not_shown() {
    both_backends(|db| async move {
        let now = Utc::now();
        let clock = Clock::fixed(now);
        let h = Harness::on(&db)
            .clock(clock.clone())
            .config(|c| {
                c.consent_scope = Some("research".into());
                c.survey_trigger_ttl = Duration::ZERO;
            })
            .start()
            .await;
        publish_mini(&h).await;
        let sdk = h.key(Role::Sdk).await;
        let day = chrono::Duration::days(1);
        trigger_campaign(&h, "soon", now + day, now + day * 3).await;
        trigger_campaign(&h, "open", now - day, now + day).await;
        for u in ["ann", "ben", "cat", "dan"] {
            invite(&h, "open", u).await;
        }
        invite(&h, "soon", "eve").await;
        let store = &h.server.state.store;
        let key = &h.server.state.config.study_key;
        let p = |u: &str| pseudonymise(key, u).to_string();

        assert_eq!(eval(&h, &sdk, Some("ann")).await["variant"], "show");
        assert_off(&eval(&h, &sdk, Some("eve")).await, "not_open");
        // Consent withdrawn in the configured scope; a grant elsewhere
        // does not count, a later grant in the scope does.
        store
            .set_consent(&p("ben"), "research", "1", false, now)
            .await
            .unwrap();
        store
            .set_consent(&p("ben"), "email", "1", true, now)
            .await
            .unwrap();
        assert_off(&eval(&h, &sdk, Some("ben")).await, "consent_withdrawn");
        store
            .set_consent(&p("cat"), "research", "1", true, now)
            .await
            .unwrap();
        assert_eq!(eval(&h, &sdk, Some("cat")).await["variant"], "show");
        // Declined the survey's own consent.
        let c = store.campaign("open").await.unwrap().unwrap();
        store
            .begin_response(c.id, &p("dan"), "en", "t-1", false, now)
            .await
            .unwrap();
        assert_off(&eval(&h, &sdk, Some("dan")).await, "declined");

        // Two days on: "open" has closed (its links expired), "soon" is
        // open, and the bulk ETag of before does not match.
        let (_, before, _) = bulk(&h, &sdk, "ann", None).await;
        clock.set(now + day * 2);
        assert_off(&eval(&h, &sdk, Some("ann")).await, "expired");
        let (s, _, item) = bulk(&h, &sdk, "ann", Some(&before)).await;
        assert_eq!(s, StatusCode::OK);
        assert_off(&item, "expired");
        let v = eval(&h, &sdk, Some("eve")).await;
        assert_eq!(v["variant"], "show");
        assert_eq!(v["value"]["campaign"], "soon");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn two_replicas_give_the_same_link() {
    both_backends(|db| async move {
        let a = Harness::on(&db)
            .config(|c| c.public_url = Some("https://surveys.example.org".into()))
            .start()
            .await;
        let b = Harness::on(&db)
            .replica_of(&a)
            .config(|c| c.public_url = Some("https://surveys.example.org".into()))
            .start()
            .await;
        publish_mini(&a).await;
        let sdk = a.key(Role::Sdk).await;
        commonlab_server::sync::refresh_keys(&b.server.state)
            .await
            .unwrap();
        let now = Utc::now();
        trigger_campaign(
            &a,
            "both",
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(2),
        )
        .await;
        let path = invite(&a, "both", "zoe").await;
        commonlab_server::sync::refresh_all(&b.server.state)
            .await
            .unwrap();
        let from_a = eval(&a, &sdk, Some("zoe")).await;
        let from_b = eval(&b, &sdk, Some("zoe")).await;
        assert_eq!(from_a, from_b);
        assert_eq!(
            from_a["value"]["url"],
            format!("https://surveys.example.org{path}")
        );
        let (_, _, bulk_b) = bulk(&b, &sdk, "zoe", None).await;
        assert_eq!(bulk_b["value"], from_a["value"]);
        b.stop().await;
        a.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_trigger_flag_is_a_flag_key_no_flag_set_defines() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        publish_mini(&h).await;
        let now = Utc::now();
        let body = |flag: &str| {
            json!({"key": "c1", "instrument": "mini", "version": 1, "wave": "baseline",
                   "opens_at": now, "closes_at": now + chrono::Duration::days(1),
                   "trigger_flag": flag, "reason": "r"})
        };
        for bad in ["new-editor", "bad key"] {
            let resp = h
                .req(Method::POST, "/api/v1/surveys/campaigns", Some(&h.admin))
                .json(&body(bad))
                .send()
                .await
                .unwrap();
            let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
            assert_eq!(p["errors"][0]["pointer"], "/trigger_flag", "{bad}: {p}");
        }
        let (s, _) = call(&h, Method::POST, "/api/v1/surveys/campaigns", body(FLAG)).await;
        assert_eq!(s, StatusCode::CREATED);
        // A flag may not then take the trigger flag's key.
        let resp = h
            .req(Method::POST, "/api/v1/flags", Some(&h.admin))
            .json(&json!({"key": FLAG, "reason": "r",
                          "flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}))
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/key", "{p}");
        let mut doc: Value = serde_json::from_str(FLAGS).unwrap();
        doc["flags"][FLAG] = json!({"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"});
        let resp = h
            .req(Method::POST, "/api/v1/import?reason=r", Some(&h.admin))
            .json(&doc)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], format!("/flags/{FLAG}"), "{p}");
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_campaign_takes_its_trial_waves_trigger_flag() {
    both_backends(|db| async move {
        let h = Harness::start(&db).await;
        h.import_fixture().await;
        publish_mini(&h).await;
        let trial = format!(
            "{}\n[[surveys]]\ninstrument = \"mini\"\nwave = \"pulse\"\ntrigger_flag = \"{FLAG}\"\n",
            include_str!("../fixtures/trials/hash.toml")
        );
        let (s, body) = call(
            &h,
            Method::POST,
            "/api/v1/trials",
            json!({"source": trial, "reason": "plan"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        let now = Utc::now();
        let mut req = json!({"key": "pulse-1", "instrument": "mini", "version": 1,
                             "trial": "thanks-hash", "wave": "pulse", "opens_at": now,
                             "closes_at": now + chrono::Duration::days(1), "reason": "r"});
        req["trigger_flag"] = json!("another-prompt");
        let resp = h
            .req(Method::POST, "/api/v1/surveys/campaigns", Some(&h.admin))
            .json(&req)
            .send()
            .await
            .unwrap();
        let p = problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(p["errors"][0]["pointer"], "/trigger_flag", "{p}");
        req.as_object_mut().unwrap().remove("trigger_flag");
        let (s, body) = call(&h, Method::POST, "/api/v1/surveys/campaigns", req).await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(body["trigger_flag"], FLAG);
        h.stop().await;
    })
    .await;
}
