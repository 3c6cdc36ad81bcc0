//! The survey management API end to end: instruments, campaigns for a
//! trial's waves, personal links, results and exports, and every mistake
//! answered with a problem naming the field (never a 500).

use super::*;
use commonlab_core::privacy::pseudonymise;
use commonlab_core::surveys::token::verify;

const CBPP: &str = include_str!("../../../../surveys/cbpp-community.toml");
const SUS: &str = include_str!("../../../../surveys/sus.toml");
const TRIAL: &str = include_str!("../fixtures/trials/hash.toml");

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn trial_with_waves() -> String {
    format!(
        "{TRIAL}\n[[surveys]]\ninstrument = \"cbpp-community\"\nwave = \"baseline\"\nwhen = \"before_start\"\n\n\
         [[surveys]]\ninstrument = \"cbpp-community\"\nwave = \"followup\"\nafter_first_exposure = \"14d\"\n"
    )
}

struct Api<'a> {
    h: &'a Harness,
    key: String,
}

impl Api<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self.h.req(method, path, Some(&self.key));
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        let resp = self.send(method.clone(), path, body).await;
        let got = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        parse(&text)
    }

    /// A problem with `status` whose first field error is `pointer`.
    async fn refused(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
        pointer: &str,
    ) -> Value {
        let p = problem(self.send(method, path, body).await, status).await;
        if !pointer.is_empty() {
            assert_eq!(p["errors"][0]["pointer"], pointer, "{p}");
        }
        p
    }
}

fn campaign_body(key: &str, wave: &str, version: i64) -> Value {
    json!({
        "key": key, "instrument": "cbpp-community", "version": version,
        "trial": "thanks-hash", "wave": wave,
        "opens_at": "2027-01-01T00:00:00Z", "closes_at": "2027-02-01T00:00:00Z",
        "reason": "follow-up wave"
    })
}

#[tokio::test]
async fn researchers_publish_invite_and_read_results() {
    both_backends(|db| async move {
        let clock = Clock::fixed(at("2027-01-10T00:00:00Z"));
        let h = Harness::on(&db)
            .clock(clock.clone())
            .config(|c| c.survey_min_cell = 2)
            .start()
            .await;
        h.import_fixture().await;
        let api = Api { h: &h, key: h.key(Role::Researcher).await };
        let admin = Api { h: &h, key: h.admin.clone() };
        api.ok(Method::POST, "/api/v1/trials", Some(json!({"source": trial_with_waves(), "reason": "plan"})), StatusCode::CREATED).await;

        // Instruments: a file with mistakes is refused with lines and fields.
        let v = api.ok(Method::GET, "/api/v1/surveys/instruments", None, StatusCode::OK).await;
        assert_eq!(v["instruments"], json!([]));
        let broken = CBPP.replace("points = 5\nlabels = \"agree5\"\nrequired = true\nreverse = true", "points = 5\nlabels = \"agree5\"\nrequired = true\nreverse = \"yes\"");
        let p = api.refused(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": broken, "file": "cbpp.toml", "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "").await;
        let first = &p["errors"][0];
        assert!(first["pointer"].as_str().unwrap().contains("reverse"), "{p}");
        assert!(first["line"].as_u64().unwrap() > 100, "{p}");
        api.refused(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": CBPP})), StatusCode::UNPROCESSABLE_ENTITY, "/reason").await;
        let v = api.ok(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": CBPP, "reason": "pilot"})), StatusCode::CREATED).await;
        assert_eq!((v["key"].as_str(), v["version"].as_i64(), v["new"].as_bool()), (Some("cbpp-community"), Some(1), Some(true)));
        let v = api.ok(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": CBPP, "reason": "again"})), StatusCode::OK).await;
        assert_eq!(v["new"], false);
        // A change under the published version is refused: a new version is needed.
        let changed = CBPP.replace("How you take part", "How you take part today");
        let p = api.refused(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": changed, "reason": "edit"})), StatusCode::CONFLICT, "").await;
        assert!(p["detail"].as_str().unwrap().contains("version 2"), "{p}");
        let v2 = changed.replacen("version = 1", "version = 2", 1);
        api.ok(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": v2, "reason": "edit"})), StatusCode::CREATED).await;
        api.ok(Method::POST, "/api/v1/surveys/instruments", Some(json!({"source": SUS, "reason": "usability"})), StatusCode::CREATED).await;
        let v = api.ok(Method::GET, "/api/v1/surveys/instruments", None, StatusCode::OK).await;
        assert_eq!(v["instruments"].as_array().unwrap().len(), 3);

        // Campaigns: each mistake names its field.
        let c = "/api/v1/surveys/campaigns";
        api.refused(Method::POST, c, Some(campaign_body("f1", "endline", 1)), StatusCode::UNPROCESSABLE_ENTITY, "/wave").await;
        api.refused(Method::POST, c, Some(campaign_body("f1", "followup", 3)), StatusCode::UNPROCESSABLE_ENTITY, "/version").await;
        api.refused(Method::POST, c, Some(campaign_body("Bad Key", "followup", 1)), StatusCode::UNPROCESSABLE_ENTITY, "/key").await;
        let mut b = campaign_body("f1", "followup", 1);
        b["trial"] = json!("no-such-trial");
        api.refused(Method::POST, c, Some(b), StatusCode::UNPROCESSABLE_ENTITY, "/trial").await;
        let mut b = campaign_body("f1", "followup", 1);
        b["instrument"] = json!("sus");
        api.refused(Method::POST, c, Some(b), StatusCode::UNPROCESSABLE_ENTITY, "/instrument").await;
        let mut b = campaign_body("f1", "followup", 1);
        b["closes_at"] = json!("2026-12-01T00:00:00Z");
        api.refused(Method::POST, c, Some(b), StatusCode::UNPROCESSABLE_ENTITY, "/closes_at").await;
        let mut b = campaign_body("f1", "followup", 1);
        b["opens_at"] = json!("2026-12-01T00:00:00Z");
        b["closes_at"] = json!("2027-01-05T00:00:00Z");
        api.refused(Method::POST, c, Some(b), StatusCode::UNPROCESSABLE_ENTITY, "/closes_at").await;
        let mut b = campaign_body("f1", "followup", 1);
        b["opens_at"] = json!("soon");
        api.refused(Method::POST, c, Some(b), StatusCode::UNPROCESSABLE_ENTITY, "/opens_at").await;
        let v = api.ok(Method::POST, c, Some(campaign_body("f1", "followup", 1)), StatusCode::CREATED).await;
        assert_eq!((v["state"].as_str(), v["invited"].as_i64()), (Some("open"), Some(0)));
        assert!(v.get("warnings").is_none(), "{v}");
        // A baseline still open after the trial started: created, with a warning.
        let v = api.ok(Method::POST, c, Some(campaign_body("b1", "baseline", 1)), StatusCode::CREATED).await;
        let w = v["warnings"][0].as_str().unwrap();
        assert!(w.contains("due before the trial starts (2026-01-01T00:00:00Z)"), "{w}");
        api.refused(Method::POST, c, Some(campaign_body("f1", "followup", 1)), StatusCode::CONFLICT, "").await;
        let v = api.ok(Method::GET, c, None, StatusCode::OK).await;
        assert_eq!(v["campaigns"][1]["key"], "f1");
        assert!(v["campaigns"][0].get("warnings").is_none(), "only on creation");
        api.refused(Method::GET, "/api/v1/surveys/campaigns/nope", None, StatusCode::NOT_FOUND, "").await;

        // Links: raw ids in, pseudonyms and signed tokens out.
        let links = "/api/v1/surveys/campaigns/f1/links";
        api.refused(Method::POST, "/api/v1/surveys/campaigns/nope/links", Some(json!({"units": ["a"], "reason": "r"})), StatusCode::NOT_FOUND, "").await;
        api.refused(Method::POST, links, Some(json!({"units": [], "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "/units").await;
        api.refused(Method::POST, links, Some(json!({"units": ["ok", "bad\u{7}id"], "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "/units/1").await;
        api.refused(Method::POST, links, Some(json!({"units": [{"id": "a", "community": ""}], "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "/units/0/community").await;
        api.refused(Method::POST, links, Some(json!({"units": ["a"]})), StatusCode::UNPROCESSABLE_ENTITY, "/reason").await;
        api.refused(Method::POST, links, Some(json!({"units": ["a", 5], "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "/units/1").await;
        api.refused(Method::POST, links, Some(json!({"units": "a", "reason": "r"})), StatusCode::UNPROCESSABLE_ENTITY, "/units").await;
        api.refused(Method::POST, links, Some(json!({"units": ["a"], "reason": "r", "extra": 1})), StatusCode::UNPROCESSABLE_ENTITY, "").await;
        let many: Vec<String> = (0..12_000).map(|i| format!("m{i}")).collect();
        let resp = api.send(Method::POST, links, Some(json!({"units": many, "reason": "r"}))).await;
        problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
        let units: Vec<Value> = (0..8)
            .map(|i| json!({"id": format!("member-{i}"), "community": if i < 6 { "north" } else { "tiny" }}))
            .collect();
        let resp = api.send(Method::POST, links, Some(json!({"units": units, "reason": "wave 2"}))).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CACHE_CONTROL], "no-store");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["new_invitations"], 8);
        assert_eq!(v["expires_at"], "2027-02-01T00:00:00Z");
        let study_key = h.server.state.config.study_key.clone();
        let token_key = h.server.state.config.survey_keys.clone();
        let list = v["links"].as_array().unwrap();
        for (i, l) in list.iter().enumerate() {
            let raw = format!("member-{i}");
            let pseudonym = pseudonymise(&study_key, &raw).to_string();
            assert_eq!(l["unit"], raw);
            assert_eq!(l["pseudonym"], pseudonym);
            let token = l["token"].as_str().unwrap();
            assert!(!token.contains(&raw));
            assert_eq!(l["path"], format!("/s/{token}"));
            let claims = verify(token_key.token(), token, clock.now()).unwrap();
            assert_eq!((claims.campaign(), claims.unit(), claims.wave()), ("f1", pseudonym.as_str(), "followup"));
            assert_eq!(claims.expires_at(), at("2027-02-01T00:00:00Z"));
        }
        // Asking again gives the same links and invites nobody new.
        let again = api.ok(Method::POST, links, Some(json!({"units": ["member-0"], "reason": "resend"})), StatusCode::OK).await;
        assert_eq!(again["new_invitations"], 0);
        assert_eq!(again["links"][0]["token"], list[0]["token"]);

        // Responses (as the survey pages store them) and exposures.
        let store = &h.server.state.store;
        let campaign = store.campaign("f1").await.unwrap().unwrap();
        let trial = store.get_trial("thanks-hash").await.unwrap().unwrap();
        let mut exposures = Vec::new();
        for i in 0..8 {
            let unit = pseudonymise(&study_key, &format!("member-{i}")).to_string();
            exposures.push(commonlab_store::NewExposure {
                trial_id: trial.id,
                unit: unit.clone(),
                arm: if i % 2 == 0 { "control" } else { "small" }.into(),
                community: None,
                trial_version: 1,
                at: at("2027-01-02T00:00:00Z"),
                source: commonlab_store::ExposureSource::Single,
                excluded_reason: None,
            });
            if i == 7 {
                continue; // never answers
            }
            let granted = i != 6;
            store.begin_response(campaign.id, &unit, "es", "2027-01", granted, at("2027-01-09T10:00:00Z")).await.unwrap();
            if !granted {
                continue;
            }
            let x = f64::from(1 + (i % 5) as u8);
            let answers = json!({
                "frequency": "weekly", "hours": 2.5,
                "activities": {"codes": ["write"], "other": "<script>alert(1)</script>"},
                "value1": x, "value2": x, "value3": (x + 1.0).min(5.0), "value4": 6.0 - x,
                "belong1": x, "belong2": 3.0, "belong3": x, "belong4": 2.0,
                "priorities": {"codes": ["recognition", "learning", "friends", "impact"]},
                "comments": "=cmd|' /C calc'!A0 from Ana"
            });
            let answers = answers.as_object().unwrap().clone();
            store.save_page(campaign.id, &unit, 0, &answers, &serde_json::Map::new(), 4, true, at("2027-01-09T10:07:00Z")).await.unwrap();
        }
        store.record_exposures(&exposures).await.unwrap();

        // Results: researchers see no free text; admins may.
        let r = api.ok(Method::GET, "/api/v1/surveys/campaigns/f1/results", None, StatusCode::OK).await;
        let res = &r["results"];
        assert_eq!(r["instrument"], json!({"key": "cbpp-community", "version": 1}));
        assert_eq!(res["min_cell"], 2);
        assert_eq!(res["respondents"].as_array().unwrap().len(), 7);
        assert_eq!(res["response"]["overall"]["invited"], 8);
        assert_eq!(res["response"]["overall"]["completed"], 6);
        assert_eq!(res["response"]["overall"]["declined"], 1);
        let arms: Vec<&str> = res["response"]["by_arm"].as_array().unwrap().iter().map(|a| a["key"].as_str().unwrap()).collect();
        assert_eq!(arms, ["control", "small"]);
        let tiny = res["response"]["by_community"].as_array().unwrap().iter().find(|c| c["key"] == "tiny").unwrap();
        assert_eq!((tiny["suppressed"].as_bool(), tiny["invited"].is_null()), (Some(true), true), "{tiny}");
        assert!(res["response"]["differential"]["p_value"].is_number(), "{}", res["response"]);
        let text = r.to_string();
        assert!(!text.contains("calc") && !text.contains("script"), "free text withheld");
        let value = res["scales"].as_array().unwrap().iter().find(|s| s["key"] == "value").unwrap();
        assert_eq!(value["summary"]["n"], 6);
        assert!(value["reliability"]["alpha"].is_number(), "{value}");
        let one = res["respondents"].as_array().unwrap().iter().find(|p| p["status"] == "completed").unwrap();
        assert!(one["items"]["value4"]["recoded"].is_number());
        assert!(one.get("arm").is_some());
        let p = api.refused(Method::GET, "/api/v1/surveys/campaigns/f1/results?include_text=true", None, StatusCode::FORBIDDEN, "/include_text").await;
        assert!(p["detail"].as_str().unwrap().contains("admin"));
        let r = admin.ok(Method::GET, "/api/v1/surveys/campaigns/f1/results?include_text=true&respondents=true", None, StatusCode::OK).await;
        assert!(r.to_string().contains("<script>alert(1)</script>"), "stored verbatim, JSON-escaped on output");
        let r = api.ok(Method::GET, "/api/v1/surveys/campaigns/f1/results?respondents=false", None, StatusCode::OK).await;
        assert_eq!(r["results"]["respondents"], json!([]));
        api.refused(Method::GET, "/api/v1/surveys/campaigns/f1/results?include_text=maybe", None, StatusCode::UNPROCESSABLE_ENTITY, "/query").await;
        api.refused(Method::GET, "/api/v1/surveys/campaigns/nope/results", None, StatusCode::NOT_FOUND, "").await;

        // Exports.
        let get = |who: &Api<'_>, q: &str| {
            who.h.req(Method::GET, &format!("/api/v1/surveys/campaigns/f1/export{q}"), Some(&who.key)).send()
        };
        let resp = get(&api, "").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/csv; charset=utf-8");
        let wide = resp.text().await.unwrap();
        let mut lines = wide.lines();
        let head = lines.next().unwrap();
        assert!(head.starts_with("unit,campaign,wave,instrument,version,status"), "{head}");
        assert!(head.contains(",frequency,hours,activities,value1,") && head.ends_with("scale_value,scale_belonging"), "{head}");
        assert!(!head.contains("comments") && !head.contains("activities_other"));
        assert_eq!(wide.lines().count(), 8, "a header and one row per response");
        assert!(wide.contains(",recognition;learning;friends;impact,"));
        let admin_wide = get(&admin, "?include_text=true").await.unwrap().text().await.unwrap();
        assert!(admin_wide.lines().next().unwrap().contains(",activities_other,"));
        assert!(admin_wide.contains("'=cmd|"), "formula neutralised: {admin_wide}");
        let long = get(&api, "?format=long").await.unwrap().text().await.unwrap();
        assert!(long.lines().next().unwrap().ends_with(",kind,key,value,recoded"));
        assert!(long.contains(",item,value4,"));
        assert!(long.contains(",scale,value,"));
        let book: Value = get(&api, "?format=codebook-json").await.unwrap().json().await.unwrap();
        assert_eq!(book["instrument"], "cbpp-community");
        assert_eq!(book["withheld_free_text"], json!(["activities", "comments"]));
        let v4 = book["items"].as_array().unwrap().iter().find(|i| i["key"] == "value4").unwrap();
        assert_eq!((v4["reverse"].as_bool(), v4["codes"].as_array().unwrap().len()), (Some(true), 5));
        let csv = get(&api, "?format=codebook-csv").await.unwrap().text().await.unwrap();
        assert!(csv.lines().next().unwrap().contains("text_en,text_es,codes_en,codes_es"));
        assert!(csv.contains("scale_value,scale,"));
        api.refused(Method::GET, "/api/v1/surveys/campaigns/f1/export?format=xlsx", None, StatusCode::UNPROCESSABLE_ENTITY, "/format").await;
        api.refused(Method::GET, "/api/v1/surveys/campaigns/f1/export?include_text=true", None, StatusCode::FORBIDDEN, "/include_text").await;

        // The trial's analysis takes each scale of the wave as a secondary
        // metric, analysed as its design allows (members randomised: Welch
        // per treatment arm), with the wave's response per arm beside it.
        let r = api.ok(Method::GET, "/api/v1/surveys/campaigns/f1/results", None, StatusCode::OK).await;
        let mut by_arm: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for p in r["results"]["respondents"].as_array().unwrap() {
            if let (Some(arm), Some(x)) = (p["arm"].as_str(), p["scales"]["value"].as_f64()) {
                by_arm.entry(arm.to_string()).or_default().push(x);
            }
        }
        let (c, t) = (&by_arm["control"], &by_arm["small"]);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let var = |v: &[f64]| v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0);
        let a = api.ok(Method::GET, "/api/v1/trials/thanks-hash/analysis?as_of=2027-01-20T00:00:00Z", None, StatusCode::OK).await;
        let m = a["metrics"].as_array().unwrap().iter().find(|m| m["name"] == "survey:followup:value").unwrap_or_else(|| panic!("{a}"));
        assert_eq!(m["role"], "secondary");
        assert_eq!((m["n"]["control"].as_i64(), m["n"]["small"].as_i64()), (Some(c.len() as i64), Some(t.len() as i64)), "{m}");
        let e = &m["estimates"][0];
        assert_eq!((e["arm"].as_str(), e["control"].as_str(), e["method"].as_str()), (Some("small"), Some("control"), Some("welch")));
        assert!((e["estimate"].as_f64().unwrap() - (mean(t) - mean(c))).abs() < 1e-9, "{e}");
        let se = (var(c) / c.len() as f64 + var(t) / t.len() as f64).sqrt();
        assert!((e["se"].as_f64().unwrap() - se).abs() < 1e-9, "{e} {se}");
        assert!(a["metrics"].as_array().unwrap().iter().any(|m| m["name"] == "survey:followup:belonging"));
        let waves = a["survey_response"]["waves"].as_array().unwrap();
        let followup = waves.iter().find(|w| w["wave"] == "followup").unwrap_or_else(|| panic!("{}", a["survey_response"]));
        assert_eq!(followup["arms"][0]["invited"], 4, "{followup}");
        // The trial's report shows the wave: response by arm, each scale by
        // arm with the analysis's estimate and the results' reliability,
        // and each Likert item's answers by arm (counted from the
        // respondents the results list).
        let rep = api.ok(Method::GET, "/api/v1/trials/thanks-hash/report?as_of=2027-01-20T00:00:00Z", None, StatusCode::OK).await;
        let s = &rep["surveys"];
        assert_eq!(s["min_cell"], 2, "{s}");
        let w = s["waves"].as_array().unwrap().iter().find(|w| w["wave"] == "followup").unwrap_or_else(|| panic!("{s}"));
        assert_eq!(w["response"][0]["invited"], followup["arms"][0]["invited"], "{w}");
        let value = w["scales"].as_array().unwrap().iter().find(|x| x["scale"] == "value").unwrap_or_else(|| panic!("{w}"));
        assert!((value["effects"][0]["absolute"].as_f64().unwrap() - e["estimate"].as_f64().unwrap()).abs() < 1e-9, "{value}");
        assert!((value["means"]["control"].as_f64().unwrap() - mean(c)).abs() < 1e-9, "{value}");
        let scale = r["results"]["scales"].as_array().unwrap().iter().find(|x| x["key"] == "value").unwrap();
        match scale["reliability"]["alpha"].as_f64() {
            Some(alpha) => assert!((value["reliability"]["alpha"].as_f64().unwrap() - alpha).abs() < 1e-9, "{value}"),
            None => assert!(value["reliability"]["note"].is_string(), "{value}"),
        }
        assert!(rep["results"].as_array().unwrap().iter().all(|m| !m["name"].as_str().unwrap().starts_with("survey:")));
        let item = &w["likert"][0];
        let key = item["item"].as_str().unwrap_or_else(|| panic!("{w}"));
        for (i, arm) in ["control", "small"].iter().enumerate() {
            let mut want = vec![0u64; item["labels"].as_array().unwrap().len()];
            for p in r["results"]["respondents"].as_array().unwrap() {
                if p["arm"] == *arm && p["status"] == "completed" {
                    if let Some(v) = p["items"][key]["raw"].as_f64() {
                        want[v as usize - 1] += 1;
                    }
                }
            }
            let got = &item["by_arm"][i];
            assert_eq!(got["arm"], *arm, "{item}");
            assert_eq!(got["counts"], json!(want), "{item}");
        }
        // Once the wave has closed, no more links.
        clock.set(at("2027-02-01T00:00:00Z"));
        let p = api.refused(Method::POST, links, Some(json!({"units": ["late"], "reason": "r"})), StatusCode::CONFLICT, "").await;
        assert!(p["detail"].as_str().unwrap().contains("closed"), "{p}");
        let v = api.ok(Method::GET, "/api/v1/surveys/campaigns/f1", None, StatusCode::OK).await;
        assert_eq!((v["state"].as_str(), v["invited"].as_i64()), (Some("closed"), Some(8)));
        // Developers have no access to surveys.
        let dev = Api { h: &h, key: h.key(Role::Developer).await };
        problem(dev.send(Method::GET, "/api/v1/surveys/campaigns", None).await, StatusCode::FORBIDDEN).await;
        h.stop().await;
    })
    .await;
}

/// The survey routes' answers match the OpenAPI document.
#[tokio::test]
async fn survey_answers_match_the_openapi_document() {
    both_backends(|db| async move {
        let clock = Clock::fixed(at("2027-01-10T00:00:00Z"));
        let h = Harness::on(&db).clock(clock.clone()).config(|c| c.survey_min_cell = 1).start().await;
        h.import_fixture().await;
        let doc: Value = serde_json::from_str(super::events::openapi::file()).unwrap();
        let key = h.key(Role::Researcher).await;
        let call = |m: Method, path: &str, body: Option<Value>| {
            let r = h.req(m, path, Some(&key));
            match body {
                Some(b) => r.json(&b),
                None => r,
            }
        };
        h.req(Method::POST, "/api/v1/trials", Some(&key))
            .json(&json!({"source": trial_with_waves(), "reason": "plan"}))
            .send()
            .await
            .unwrap();
        let inst = "/api/v1/surveys/instruments";
        let ops = |m: Method, path: &'static str, template: &'static str| (m, path, template);
        h.conforms(&doc, ops(Method::GET, inst, inst), call(Method::GET, inst, None), StatusCode::OK).await;
        let publish = |src: &str| call(Method::POST, inst, Some(json!({"source": src, "reason": "r"})));
        h.conforms(&doc, ops(Method::POST, inst, inst), publish(CBPP), StatusCode::CREATED).await;
        h.conforms(&doc, ops(Method::POST, inst, inst), publish(CBPP), StatusCode::OK).await;
        h.conforms(&doc, ops(Method::POST, inst, inst), publish(&CBPP.replace("Cómo", "Como")), StatusCode::CONFLICT).await;
        h.conforms(&doc, ops(Method::POST, inst, inst), publish("key = 1"), StatusCode::UNPROCESSABLE_ENTITY).await;
        let list = h.conforms(&doc, ops(Method::GET, inst, inst), call(Method::GET, inst, None), StatusCode::OK).await;
        assert_eq!(list["instruments"].as_array().unwrap().len(), 1);
        h.conforms(&doc, ops(Method::GET, inst, inst), h.req(Method::GET, inst, None), StatusCode::UNAUTHORIZED).await;

        let c = "/api/v1/surveys/campaigns";
        h.conforms(&doc, ops(Method::POST, c, c), call(Method::POST, c, Some(campaign_body("f1", "followup", 1))), StatusCode::CREATED).await;
        h.conforms(&doc, ops(Method::POST, c, c), call(Method::POST, c, Some(campaign_body("f1", "followup", 1))), StatusCode::CONFLICT).await;
        h.conforms(&doc, ops(Method::POST, c, c), call(Method::POST, c, Some(campaign_body("f2", "nope", 1))), StatusCode::UNPROCESSABLE_ENTITY).await;
        h.conforms(&doc, ops(Method::GET, c, c), call(Method::GET, c, None), StatusCode::OK).await;
        let one = "/api/v1/surveys/campaigns/{key}";
        h.conforms(&doc, ops(Method::GET, "/api/v1/surveys/campaigns/f1", one), call(Method::GET, "/api/v1/surveys/campaigns/f1", None), StatusCode::OK).await;
        h.conforms(&doc, ops(Method::GET, "/api/v1/surveys/campaigns/x", one), call(Method::GET, "/api/v1/surveys/campaigns/x", None), StatusCode::NOT_FOUND).await;

        let links = "/api/v1/surveys/campaigns/f1/links";
        let lt = "/api/v1/surveys/campaigns/{key}/links";
        let units: Vec<String> = (0..4).map(|i| format!("m{i}")).collect();
        let v = h
            .conforms(&doc, ops(Method::POST, links, lt), call(Method::POST, links, Some(json!({"units": units, "reason": "r"}))), StatusCode::OK)
            .await;
        h.conforms(&doc, ops(Method::POST, links, lt), call(Method::POST, links, Some(json!({"units": [], "reason": "r"}))), StatusCode::UNPROCESSABLE_ENTITY).await;
        // Two responses, one complete, one declined, and arms for all.
        let store = &h.server.state.store;
        let campaign = store.campaign("f1").await.unwrap().unwrap();
        let trial = store.get_trial("thanks-hash").await.unwrap().unwrap();
        let pseudonyms: Vec<String> = v["links"].as_array().unwrap().iter().map(|l| l["pseudonym"].as_str().unwrap().to_string()).collect();
        let exposures: Vec<commonlab_store::NewExposure> = pseudonyms
            .iter()
            .enumerate()
            .map(|(i, u)| commonlab_store::NewExposure {
                trial_id: trial.id,
                unit: u.clone(),
                arm: if i % 2 == 0 { "control" } else { "small" }.into(),
                community: Some("north".into()),
                trial_version: 1,
                at: at("2027-01-02T00:00:00Z"),
                source: commonlab_store::ExposureSource::Single,
                excluded_reason: None,
            })
            .collect();
        store.record_exposures(&exposures).await.unwrap();
        for (i, u) in pseudonyms.iter().enumerate().take(3) {
            store.begin_response(campaign.id, u, "en", "2027-01", i != 2, at("2027-01-09T00:00:00Z")).await.unwrap();
        }
        for (i, u) in pseudonyms.iter().enumerate().take(2) {
            let x = 2.0 + i as f64;
            let answers = json!({"frequency": "never", "value1": x, "value2": 3.0, "value3": x, "value4": 2.0,
                                 "belong1": 4.0, "belong2": x, "belong3": 3.0, "belong4": 1.0});
            store
                .save_page(campaign.id, u, 0, answers.as_object().unwrap(), &serde_json::Map::new(), 4, true, at("2027-01-09T00:05:00Z"))
                .await
                .unwrap();
        }
        let rt = "/api/v1/surveys/campaigns/{key}/results";
        let res = "/api/v1/surveys/campaigns/f1/results";
        let r = h.conforms(&doc, ops(Method::GET, res, rt), call(Method::GET, res, None), StatusCode::OK).await;
        assert_eq!(r["results"]["respondents"].as_array().unwrap().len(), 3);
        assert!(r["results"]["scales"][0]["reliability"].is_object());
        let q = "/api/v1/surveys/campaigns/f1/results?include_text=yes";
        h.conforms(&doc, ops(Method::GET, q, rt), call(Method::GET, q, None), StatusCode::UNPROCESSABLE_ENTITY).await;
        let q = "/api/v1/surveys/campaigns/f1/results?include_text=true";
        h.conforms(&doc, ops(Method::GET, q, rt), call(Method::GET, q, None), StatusCode::FORBIDDEN).await;
        let q = "/api/v1/surveys/campaigns/x/results";
        h.conforms(&doc, ops(Method::GET, q, rt), call(Method::GET, q, None), StatusCode::NOT_FOUND).await;
        let et = "/api/v1/surveys/campaigns/{key}/export";
        let q = "/api/v1/surveys/campaigns/f1/export?format=codebook-json";
        let book = h.conforms(&doc, ops(Method::GET, q, et), call(Method::GET, q, None), StatusCode::OK).await;
        assert_eq!(book["lead_columns"][0], "unit", "{book}");
        assert!(!book["items"].as_array().unwrap().is_empty(), "{book}");
        let mut wrong = book.clone();
        wrong["items"][0]["kind"] = json!("slider");
        let schema = super::events::openapi::response_schema(&doc, et, "get", 200, "application/json");
        assert!(!super::events::openapi::Checker { doc: &doc }.check(schema, &wrong, "").is_empty());
        let q = "/api/v1/surveys/campaigns/f1/export?format=pdf";
        h.conforms(&doc, ops(Method::GET, q, et), call(Method::GET, q, None), StatusCode::UNPROCESSABLE_ENTITY).await;
        let tr = "/api/v1/surveys/trials/{key}/response";
        let q = "/api/v1/surveys/trials/thanks-hash/response";
        let v = h.conforms(&doc, ops(Method::GET, q, tr), call(Method::GET, q, None), StatusCode::OK).await;
        assert_eq!(v["response"]["waves"][0]["campaign"], "f1");
        assert_eq!(v["response"]["arms"], json!(["control", "small"]));
        assert!(v["response"]["differential"]["pooled"]["p_value"].is_number(), "{v}");
        let q = "/api/v1/surveys/trials/nope/response";
        h.conforms(&doc, ops(Method::GET, q, tr), call(Method::GET, q, None), StatusCode::NOT_FOUND).await;
        clock.set(at("2027-03-01T00:00:00Z"));
        h.conforms(&doc, ops(Method::POST, links, lt), call(Method::POST, links, Some(json!({"units": ["late"], "reason": "r"}))), StatusCode::CONFLICT).await;
        h.stop().await;
    })
    .await;
}
