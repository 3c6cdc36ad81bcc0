//! `loadtest`: a short open-loop run against an in-process server sends
//! what it scheduled, without errors, and its counts add up (to what the
//! server stored, too: events, and the survey answers of the campaign it
//! set up through the management API).

use super::*;
use commonlab_core::privacy::StudyKey;
use commonlab_store::{EventFilter, ResponseStatus, Store};

const FLAGS: &str = r#"{"flags": {
  "banner": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
  "color": {"state": "ENABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red",
            "targeting": {"fractional": [["red", 50], ["blue", 50]]}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_run_sends_everything_it_scheduled_and_the_counts_add_up() {
    both_backends(|db| async move {
        let url = db.url().to_string();
        let dir = Scratch::new("loadtest");
        let flags = dir.write("flags.json", FLAGS);
        let ok = |args: &[&str]| {
            let o = run(&url, args);
            assert!(o.status.success(), "{args:?}: {}", stderr(&o));
            stdout(&o)
        };
        ok(&[
            "flags",
            "import",
            flags.to_str().unwrap(),
            "--reason",
            "load",
        ]);
        let key = ok(&[
            "keys", "create", "--role", "sdk", "--name", "load", "--reason", "load",
        ]);
        let key = key.lines().last().unwrap().trim().to_string();
        let research = ok(&[
            "keys",
            "create",
            "--role",
            "researcher",
            "--name",
            "load-research",
            "--reason",
            "load",
        ]);
        let research = research.lines().last().unwrap().trim().to_string();
        let store = Store::connect_and_migrate(&url).await.unwrap();
        // Every synthetic respondent shares the generator's address.
        let config = commonlab_server::Config {
            survey_rate_per_ip_per_minute: 1_000_000,
            ..commonlab_server::Config::new(StudyKey::from_bytes(&[7; 32]).unwrap())
        };
        let state = commonlab_server::build_state(store.clone(), config, Default::default())
            .await
            .unwrap();
        let server = commonlab_server::start("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let base = format!("http://{}", server.addr);
        let args: Vec<String> = [
            "loadtest",
            "--url",
            &base,
            "--key",
            &key,
            "--rate",
            "40",
            "--duration",
            "2s",
            "--batch",
            "5",
            "--mix",
            "single=3,bulk=1,events=2,survey=1,answer=5",
            "--json",
            "--research-key",
            &research,
            "--respondents-at-once",
            "3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = tokio::task::spawn_blocking(move || {
            commonlab()
                .args(&args)
                .current_dir(std::env::temp_dir())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(r["scheduled"], 80);
        assert_eq!(r["sent"], 80, "{r:#}");
        assert_eq!(r["ok"], 80, "{r:#}");
        assert_eq!(r["errors"], 0);
        assert_eq!(r["not_sent"], 0);
        let mut flags: Vec<&str> = r["flags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        flags.sort();
        assert_eq!(flags, ["banner", "color"]);
        let kinds = r["kinds"].as_array().unwrap();
        let names: Vec<&str> = kinds.iter().map(|k| k["kind"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "ofrep_single",
                "ofrep_bulk",
                "events",
                "survey_view",
                "survey_answer_view",
                "survey_answer_post"
            ]
        );
        let sum = |field: &str| {
            kinds
                .iter()
                .map(|k| k[field].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(sum("sent"), 80);
        assert_eq!(sum("ok"), 80);
        let mut batches = 0;
        for k in kinds {
            assert!(k["sent"].as_u64().unwrap() > 0, "{k}");
            assert!(k["errors"].as_object().unwrap().is_empty(), "{k}");
            let l = &k["latency_ms"];
            let p = |q: &str| l[q].as_f64().unwrap();
            assert!(
                0.0 < p("p50") && p("p50") <= p("p90") && p("p90") <= p("p99"),
                "{l}"
            );
            assert!(p("p99") <= p("max"), "{l}");
            if k["kind"] == "events" {
                batches = k["sent"].as_u64().unwrap();
                assert_eq!(k["events"], serde_json::json!([batches * 5, 0]));
            }
        }
        let a = r["achieved_rate"].as_f64().unwrap();
        assert!(a > 0.0, "{a}");
        // Respondents went through the flow: 6 requests each (open,
        // consent, 3 pages, thanks), one step at a time per respondent.
        let s = &r["survey"];
        let steps = sum_of(kinds, "survey_answer_view") + sum_of(kinds, "survey_answer_post");
        let (started, completed) = (
            s["started"].as_u64().unwrap(),
            s["completed"].as_u64().unwrap(),
        );
        assert!(completed >= 1, "{s}");
        assert_eq!(s["abandoned"], 0, "{s}");
        assert!(
            started * 6 >= steps && steps >= completed * 6,
            "{s} {steps}"
        );
        server.stop().await.unwrap();
        // The answers are stored: one completed response with every item
        // per respondent whose last page was accepted (some may not have
        // viewed the thanks page before the run ended), a started one for
        // the rest.
        let campaign = store
            .campaign(s["campaign"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
        let responses = store.responses(campaign.id).await.unwrap();
        let done: Vec<_> = responses
            .iter()
            .filter(|x| x.status == ResponseStatus::Completed)
            .collect();
        let submitted = s["submitted"].as_u64().unwrap();
        assert!(completed <= submitted && submitted <= completed + 3, "{s}");
        assert_eq!(done.len() as u64, submitted);
        for x in &done {
            assert_eq!(x.answers.len(), 12, "{:?}", x.answers);
            assert!(x
                .answers
                .values()
                .all(|v| (1.0..=5.0).contains(&v.as_f64().unwrap())));
        }
        assert!(responses.len() as u64 <= started);
        // Every event sent was stored (each request answered only once
        // its events were on disk).
        let stored = store.count_events(&EventFilter::default()).await.unwrap();
        assert_eq!(stored, batches * 5);
        store.close().await;
    })
    .await;
}

fn sum_of(kinds: &[serde_json::Value], kind: &str) -> u64 {
    kinds
        .iter()
        .filter(|k| k["kind"] == kind)
        .map(|k| k["sent"].as_u64().unwrap())
        .sum()
}

#[test]
fn remote_targets_and_unbounded_runs_are_refused() {
    let o = commonlab()
        .args([
            "loadtest",
            "--url",
            "http://192.0.2.1:8080",
            "--key",
            "k",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
    let o = commonlab()
        .args([
            "loadtest",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
            "--duration",
            "11m",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at most 600 s"), "{}", stderr(&o));
    let o = commonlab()
        .args([
            "loadtest",
            "--url",
            "http://127.0.0.1:9",
            "--key",
            "k",
            "--mix",
            "poll=1",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown kind 'poll'"), "{}", stderr(&o));
}
