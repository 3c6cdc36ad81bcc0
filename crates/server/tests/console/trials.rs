//! The console's trial pages on both stores: the list by state, the trial
//! page by role, every lifecycle action confirmed first and refused as
//! the API refuses it (role, form token, missing reason, a conclusion
//! before the data are complete without `force`), exposures arriving from
//! OFREP traffic, the report, the schedule table of a stepped wedge, and
//! the page's aggregates served from the replica's cache.

use super::*;

/// A page's status and body, its HTML escapes of `/`, `'`, `"` and `&`
/// undone (the templates escape every value, links included).
pub(super) async fn page(resp: reqwest::Response) -> (StatusCode, String) {
    let (s, body) = super::page(resp).await;
    (s, unescape(&body))
}

fn unescape(html: &str) -> String {
    html.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

const HASH: &str = include_str!("../fixtures/trials/hash.toml");
const WEDGE: &str = include_str!("../fixtures/trials/wedge.toml");

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn create(h: &Harness, source: &str) {
    let resp = h
        .req(Method::POST, "/api/v1/trials", Some(&h.admin))
        .json(&json!({"source": source, "reason": "plan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
}

async fn status(h: &Harness, key: &str) -> (String, i64) {
    let t = h.server.state.store.get_trial(key).await.unwrap().unwrap();
    (
        t.status.to_string(),
        h.server.state.store.trial_events(key).await.unwrap().len() as i64,
    )
}

/// A server whose clock stands at `when`, with the flags and trial
/// `source` (a draft), its trial pages' aggregates cached for `cache`.
async fn server(db: &TestDb, when: &str, cache: Duration, source: &str) -> Harness {
    let h = Harness::on(db)
        .clock(Clock::fixed(at(when)))
        .config(|c| c.console_trial_cache = cache)
        .start()
        .await;
    h.import_fixture().await;
    create(&h, source).await;
    h
}

/// A browser signed in with a new key of `role`.
async fn signed_in(h: &Harness, role: Role) -> Browser<'_> {
    let mut b = Browser::new(h);
    b.sign_in(&h.key(role).await).await;
    b
}

/// The number in the page's "Exposed" count.
fn exposed_on(html: &str) -> i64 {
    let at = html
        .find("<dt>Exposed</dt><dd>")
        .expect("the exposed count");
    let rest = &html[at + "<dt>Exposed</dt><dd>".len()..];
    rest[..rest.find('<').unwrap()].parse().unwrap()
}

/// Posts `form` (with the session's token) to `path`.
async fn send(
    b: &Browser<'_>,
    path: &str,
    form: &[(&str, &str)],
) -> (StatusCode, String, Option<String>) {
    let csrf = b.csrf().await;
    let mut f = form.to_vec();
    f.push(("_csrf", &csrf));
    let resp = b.post(path, &f).send().await.unwrap();
    let to = resp
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let (s, body) = page(resp).await;
    (s, body, to)
}

#[tokio::test]
async fn a_researcher_runs_a_trial_from_the_console() {
    both_backends(|db| async move {
        let h = server(&db, "2026-06-01T12:00:00Z", Duration::ZERO, HASH).await;
        let key = "thanks-hash";
        let trial = format!("/console/trials/{key}");
        let r = signed_in(&h, Role::Researcher).await;
        let d = signed_in(&h, Role::Developer).await;

        // The list, by state.
        let (s, html) = page(r.get("/console/trials").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        let draft = html.find("id=\"state-draft\"").unwrap();
        let running = html.find("id=\"state-running\"").unwrap();
        let listed = html.find(&format!("href=\"{trial}\"")).unwrap();
        assert!(draft < listed && listed < running, "{html}");

        // The page: design and plan for everyone; buttons and the analysis
        // for researchers only.
        let (s, html) = page(r.get(&trial).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(html.contains("Thanks raise repeat contributions."));
        assert!(html.contains(&format!("href=\"{trial}/start\"")), "{html}");
        assert!(!html.contains(&format!("href=\"{trial}/conclude\"")));
        assert!(html.contains("Fixed-horizon plan"), "the report's caveat");
        assert!(html.contains("Data quality"));
        let (s, dev_html) = page(d.get(&trial).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(dev_html.contains("Thanks raise repeat contributions."));
        assert!(!dev_html.contains(&format!("href=\"{trial}/start\"")));
        assert!(!dev_html.contains("Data quality") && !dev_html.contains("Open the report"));

        // A developer may neither confirm nor start (the API's role).
        let (s, html) = page(d.get(&format!("{trial}/start")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{html}");
        let (s, _, _) = send(&d, &format!("{trial}/start"), &[("reason", "go")]).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert_eq!(status(&h, key).await, ("draft".into(), 1));

        // Confirmation first: the form, then the post.
        let (s, html) = page(r.get(&format!("{trial}/start")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains(&format!("action=\"{trial}/start\"")) && html.contains("name=\"reason\"")
        );
        // Without the session's token: refused, nothing written.
        let resp = r
            .post(
                &format!("{trial}/start"),
                &[("reason", "go"), ("_csrf", "AAAA")],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        // Without a reason: the form again, with the error.
        let (s, html, _) = send(&r, &format!("{trial}/start"), &[("reason", " ")]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("There is a problem") && html.contains("href=\"#reason\""));
        assert_eq!(status(&h, key).await, ("draft".into(), 1));
        // Forcing is for conclusions only, as in the API.
        let (s, _, _) = send(
            &r,
            &format!("{trial}/start"),
            &[("reason", "go"), ("force", "yes")],
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, _, to) = send(
            &r,
            &format!("{trial}/start"),
            &[("reason", "pilot approved")],
        )
        .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(to.as_deref(), Some(format!("{trial}?done=start").as_str()));
        assert_eq!(status(&h, key).await, ("running".into(), 2));
        let events = h.server.state.store.trial_events(key).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.reason.as_str()),
            ("start", "pilot approved")
        );
        assert!(last.actor.contains("researcher"), "{}", last.actor);
        let (_, html) = page(r.get(&format!("{trial}?done=start")).send().await.unwrap()).await;
        assert!(html.contains("Done: start"));
        assert_eq!(exposed_on(&html), 0);

        // Traffic over OFREP: the exposures arrive on the page.
        let sdk = h.key(Role::Sdk).await;
        for i in 0..30 {
            let (s, body) = h
                .eval(
                    &sdk,
                    "thanks-button",
                    json!({"targetingKey": format!("m{i}"), "community": "wiki-a"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, html) = page(r.get(&trial).send().await.unwrap()).await;
            let n = exposed_on(&html);
            if n == 30 {
                assert!(
                    html.contains("Exposed units per arm and community"),
                    "{html}"
                );
                assert!(html.contains("<th scope=\"row\">wiki-a</th>"), "{html}");
                break;
            }
            assert!(
                n < 30 && Instant::now() < deadline,
                "{n} exposures on the page"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The report, for the session.
        let resp = r.get(&format!("{trial}/report")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.starts_with("default-src 'none'") && !csp.contains("script"),
            "{csp}"
        );
        let html = resp.text().await.unwrap();
        assert!(html.contains(key) && html.contains("<html"), "{html}");
        let (s, _) = page(d.get(&format!("{trial}/report")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        // Pause and resume.
        let (s, _, _) = send(&r, &format!("{trial}/stop"), &[("reason", "incident")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(status(&h, key).await.0, "stopped");
        let (s, html, _) = send(&r, &format!("{trial}/stop"), &[("reason", "again")]).await;
        assert_eq!(s, StatusCode::CONFLICT, "{html}");
        let (s, _, _) = send(&r, &format!("{trial}/resume"), &[("reason", "fixed")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(status(&h, key).await.0, "running");

        // Conclude: the decision is required; before the data are complete
        // it is refused without force (409, as the API), then forced.
        let conclude = format!("{trial}/conclude");
        let (s, html) = page(r.get(&conclude).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            html.contains("name=\"decision\"")
                && html.contains("name=\"ship\"")
                && html.contains("name=\"force\"")
        );
        assert!(
            html.contains("primary up, guardrails fine"),
            "the plan's decision texts"
        );
        let (s, html, _) = send(&r, &conclude, &[("reason", "enough")]).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("href=\"#decision\""));
        let before = status(&h, key).await;
        let (s, html, _) = send(
            &r,
            &conclude,
            &[("reason", "enough"), ("decision", "iterate")],
        )
        .await;
        assert_eq!(s, StatusCode::CONFLICT, "{html}");
        assert!(
            html.contains("cannot be concluded yet") && html.contains("href=\"#force\""),
            "{html}"
        );
        assert_eq!(status(&h, key).await, before);
        let (s, html, _) = send(
            &r,
            &conclude,
            &[
                ("reason", "budget cut"),
                ("decision", "iterate"),
                ("force", "yes"),
                ("ship", "nonsense"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
        assert!(html.contains("is not an arm"), "{html}");
        assert_eq!(status(&h, key).await, before);
        let (s, _, _) = send(
            &r,
            &conclude,
            &[
                ("reason", "budget cut"),
                ("decision", "iterate"),
                ("force", "yes"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        assert_eq!(status(&h, key).await.0, "concluded");
        let events = h.server.state.store.trial_events(key).await.unwrap();
        assert!(events.iter().any(|e| e.action == "deviation"), "{events:?}");
        let concluded = events.iter().find(|e| e.action == "conclude").unwrap();
        assert_eq!(concluded.reason, "Decision: Iterate. budget cut");
        let (_, html) = page(r.get(&trial).send().await.unwrap()).await;
        assert!(
            html.contains(&format!("href=\"{trial}/archive\""))
                && !html.contains(&format!("href=\"{trial}/conclude\""))
        );

        // Unknown trial and action.
        let (s, _) = page(r.get("/console/trials/nope").send().await.unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = page(r.get(&format!("{trial}/explode")).send().await.unwrap()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn conclude_and_ship_serves_the_arm() {
    both_backends(|db| async move {
        let h = server(&db, "2026-06-01T12:00:00Z", Duration::from_secs(10), HASH).await;
        let r = signed_in(&h, Role::Researcher).await;
        let trial = "/console/trials/thanks-hash";
        let (s, _, _) = send(&r, &format!("{trial}/start"), &[("reason", "go")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let head = h
            .server
            .state
            .store
            .flag_set_head("default")
            .await
            .unwrap()
            .unwrap()
            .revision;
        let (s, html, _) = send(
            &r,
            &format!("{trial}/conclude"),
            &[
                ("reason", "clear win"),
                ("decision", "ship"),
                ("ship", "big"),
                ("force", "yes"),
            ],
        )
        .await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{html}");
        let (st, _) = status(&h, "thanks-hash").await;
        assert_eq!(st, "concluded");
        let events = h
            .server
            .state
            .store
            .trial_events("thanks-hash")
            .await
            .unwrap();
        let concluded = events.iter().find(|e| e.action == "conclude").unwrap();
        assert_eq!(concluded.reason, "Decision: Ship (ship arm big). clear win");
        let now = h
            .server
            .state
            .store
            .flag_set_head("default")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(now.revision, head + 1);
        let doc: Value = serde_json::from_str(&now.document).unwrap();
        let flag = &doc["flags"]["thanks-button"];
        assert_eq!(flag["defaultVariant"], "big", "{flag}");
        assert!(flag.get("targeting").is_none());
        h.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_stepped_wedge_shows_its_schedule_as_a_table() {
    both_backends(|db| async move {
        let h = server(&db, "2026-04-15T00:00:00Z", Duration::from_secs(10), WEDGE).await;
        let r = signed_in(&h, Role::Researcher).await;
        let trial = "/console/trials/editor-wedge";
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        assert!(html.contains("Drawn when the trial starts"), "{html}");
        let (s, _, _) = send(&r, &format!("{trial}/start"), &[("reason", "go")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        let table = &html[html
            .find("<caption>Stepped wedge")
            .expect("the schedule table")..];
        let table = &table[..table.find("</table>").unwrap()];
        // Four communities; five periods (a baseline and one per step).
        assert_eq!(table.matches("<th scope=\"row\">").count(), 4, "{table}");
        assert_eq!(table.matches("<th scope=\"col\">").count(), 6, "{table}");
        // Each community crosses over once: 1, 2, 3, 4 treated periods.
        let mut treated: Vec<usize> = table
            .split("<tr>")
            .skip(2)
            .map(|row| row.matches("class=\"on\">on<").count())
            .collect();
        treated.sort();
        assert_eq!(treated, vec![1, 2, 3, 4], "{table}");
        assert_eq!(table.matches(">off<").count(), 20 - 10, "{table}");
        h.stop().await;
    })
    .await;
}

/// Starts the trial at `trial` (a console path) through the console, sees
/// its page with no exposure (which computes the page's digest), then
/// evaluates its flag for 5 units and waits until their exposures are
/// stored.
async fn start_then_expose_five(h: &Harness, r: &Browser<'_>, trial: &str) {
    let (s, _, _) = send(r, &format!("{trial}/start"), &[("reason", "go")]).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, html) = page(r.get(trial).send().await.unwrap()).await;
    assert_eq!(exposed_on(&html), 0);
    let sdk = h.key(Role::Sdk).await;
    for i in 0..5 {
        h.eval(
            &sdk,
            "thanks-button",
            json!({"targetingKey": format!("u{i}"), "community": "c"}),
        )
        .await;
    }
    let store = &h.server.state.store;
    let t = store.get_trial("thanks-hash").await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store
        .arm_counts(t.id)
        .await
        .unwrap()
        .iter()
        .map(|a| a.2)
        .sum::<i64>()
        < 5
    {
        assert!(
            Instant::now() < deadline,
            "the exposures were never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_trial_page_serves_cached_aggregates() {
    both_backends(|db| async move {
        let h = server(&db, "2026-06-01T12:00:00Z", Duration::from_secs(3600), HASH).await;
        let r = signed_in(&h, Role::Researcher).await;
        let trial = "/console/trials/thanks-hash";
        start_then_expose_five(&h, &r, trial).await;
        // Within the cache's lifetime the page shows the aggregates it
        // computed, not the new exposures ...
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        assert_eq!(exposed_on(&html), 0);
        // ... until the trial changes (here: paused through the console).
        let (s, _, _) = send(&r, &format!("{trial}/stop"), &[("reason", "look")]).await;
        assert_eq!(s, StatusCode::SEE_OTHER);
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        assert_eq!(exposed_on(&html), 5);
        h.stop().await;
    })
    .await;
}

/// A stale digest is served at once and refreshed in the background: the
/// view that finds it stale does not wait for the recomputation.
#[tokio::test]
async fn a_stale_digest_is_served_while_it_is_refreshed_in_the_background() {
    both_backends(|db| async move {
        let h = server(&db, "2026-06-01T12:00:00Z", Duration::from_millis(1), HASH).await;
        let r = signed_in(&h, Role::Researcher).await;
        let trial = "/console/trials/thanks-hash";
        start_then_expose_five(&h, &r, trial).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        // The digest is stale: this view is served it as it was (0
        // exposed) and starts its refresh ...
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        assert_eq!(exposed_on(&html), 0);
        // ... which, once done, the next view shows.
        h.server.state.console_digests.settle().await;
        let (_, html) = page(r.get(trial).send().await.unwrap()).await;
        assert_eq!(exposed_on(&html), 5);
        h.stop().await;
    })
    .await;
}
