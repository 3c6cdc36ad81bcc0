//! Many respondents completing a 20-item survey at once lose nothing: every
//! response is complete with exactly the answers its respondent sent.

use super::*;

/// A 20-item instrument: 4 pages of 5 required five-point Likert items,
/// the second page randomised.
pub fn twenty_items() -> String {
    let mut s = String::from(
        "key = \"twenty\"\nversion = 1\nlanguages = [\"en\", \"es\"]\nsource = \"Commonlab test fixture.\"\n\
         title.en = \"Twenty\"\ntitle.es = \"Veinte\"\nintro.en = \"i\"\nintro.es = \"i\"\n\
         [consent]\nversion = \"1\"\ntext.en = \"ok\"\ntext.es = \"ok\"\n\
         [label_sets.five]\nen = [\"1\", \"2\", \"3\", \"4\", \"5\"]\nes = [\"1\", \"2\", \"3\", \"4\", \"5\"]\n",
    );
    for page in 0..4 {
        s.push_str("[[pages]]\n");
        if page == 1 {
            s.push_str("randomise = true\n");
        }
        for i in 0..5 {
            let n = page * 5 + i + 1;
            s.push_str(&format!(
                "[[pages.items]]\nkey = \"q{n}\"\nkind = \"likert\"\npoints = 5\nlabels = \"five\"\nrequired = true\ntext.en = \"Item {n}\"\ntext.es = \"Ítem {n}\"\n"
            ));
        }
    }
    s
}

/// Respondent `r`'s answer to item `n` (1..=20): varies by both.
fn answer(r: usize, n: usize) -> u32 {
    ((r * 7 + n * 3) % 5 + 1) as u32
}

#[tokio::test]
async fn concurrent_respondents_lose_nothing() {
    const RESPONDENTS: usize = 60;
    both_backends(|db| async move {
        let h = Harness::on(&db)
            .config(|c| {
                c.survey_rate_per_ip_per_minute = 100_000;
                c.max_connections = 1_000;
            })
            .start()
            .await;
        let now = Utc::now();
        let c = seed(
            &h,
            &twenty_items(),
            "twenty",
            "load",
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(1),
        )
        .await;
        let mut tasks = tokio::task::JoinSet::new();
        for r in 0..RESPONDENTS {
            let me = Respondent::new(
                &h,
                link(
                    &h,
                    "load",
                    &unit(&format!("r{r}")),
                    now + chrono::Duration::days(1),
                ),
            );
            tasks.spawn(async move {
                let (s, _, _) = me.post("/consent", &[("consent", "yes")]).await;
                assert_eq!(s, StatusCode::SEE_OTHER);
                for page in 0..4 {
                    let (s, _, _) = me.get("", "en").await;
                    assert_eq!(s, StatusCode::OK);
                    let values: Vec<(String, String)> = (1..=5)
                        .map(|i| {
                            let n = page * 5 + i;
                            (format!("q{n}"), answer(r, n).to_string())
                        })
                        .collect();
                    let fields: Vec<(&str, &str)> = values
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let (s, body, _) = me.post(&format!("/pages/{}", page + 1), &fields).await;
                    assert_eq!(
                        s,
                        StatusCode::SEE_OTHER,
                        "respondent {r} page {}: {body}",
                        page + 1
                    );
                }
                let (s, _, _) = me.get("/done", "en").await;
                assert_eq!(s, StatusCode::OK);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let responses = h.server.state.store.responses(c.id).await.unwrap();
        assert_eq!(responses.len(), RESPONDENTS);
        for r in 0..RESPONDENTS {
            let me = unit(&format!("r{r}"));
            let got = responses.iter().find(|x| x.unit == me).unwrap();
            assert_eq!(got.status, ResponseStatus::Completed);
            assert_eq!(got.answers.len(), 20);
            for n in 1..=20 {
                assert_eq!(
                    got.answers[&format!("q{n}")].as_f64(),
                    Some(f64::from(answer(r, n))),
                    "respondent {r} item {n}"
                );
            }
            assert_eq!(got.orders["1"].as_array().unwrap().len(), 5);
        }
        let counts = h.server.state.store.response_counts(c.id).await.unwrap();
        assert_eq!(counts.completed, RESPONDENTS as i64);
        h.stop().await;
    })
    .await;
}
