//! Surveys: published instruments never change, campaigns need a published
//! version, responses are one per unit and campaign, saved page by page in
//! order, and erased with the unit.

use super::*;
use commonlab_store::{NewCampaign, NewInstrument, ResponseCounts, ResponseStatus};

fn instrument<'a>(source: &'a str, hash: &'a str, version: i64) -> NewInstrument<'a> {
    NewInstrument {
        key: "sus",
        version,
        source,
        hash,
        actor: "cli:ana",
        reason: "pilot",
        at: at(1),
    }
}

fn campaign(key: &str, version: i64) -> NewCampaign<'_> {
    NewCampaign {
        key,
        instrument: "sus",
        version,
        trial_key: Some("thanks-button"),
        wave: "followup",
        opens_at: at(10),
        closes_at: at(10_000),
        trigger_flag: None,
        actor: "cli:ana",
        reason: "wave 1",
        at: at(5),
    }
}

fn answers(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn published_instruments_are_immutable_and_republishing_is_idempotent() {
    both_backends(|db| async move {
        let store = db.store();
        let (h1, h2) = (hash_of(1), hash_of(2));
        let (first, new) = store
            .publish_instrument(&instrument("a = 1", &h1, 1))
            .await
            .unwrap();
        assert!(new);
        assert_eq!((first.key.as_str(), first.version), ("sus", 1));
        let (again, new) = store
            .publish_instrument(&instrument("a = 1", &h1, 1))
            .await
            .unwrap();
        assert!(!new);
        assert_eq!(again, first);
        let err = store
            .publish_instrument(&instrument("a = 2", &h2, 1))
            .await
            .unwrap_err();
        match err {
            StoreError::InvalidState(m) => assert!(m.contains("as version 2"), "{m}"),
            other => panic!("{other:?}"),
        }
        store
            .publish_instrument(&instrument("a = 2", &h2, 2))
            .await
            .unwrap();
        let versions: Vec<i64> = store
            .list_instruments()
            .await
            .unwrap()
            .iter()
            .map(|i| i.version)
            .collect();
        assert_eq!(versions, [1, 2]);
        // The database itself refuses to change or remove a version.
        assert!(db
            .execute_raw("UPDATE survey_instruments SET source = 'x'")
            .await
            .is_err());
        assert!(db
            .execute_raw("DELETE FROM survey_instruments")
            .await
            .is_err());
        assert_eq!(store.instrument("sus", 1).await.unwrap(), Some(first));
    })
    .await;
}

#[tokio::test]
async fn campaigns_need_a_published_version_and_a_free_key() {
    both_backends(|db| async move {
        let store = db.store();
        let err = store.create_campaign(&campaign("w1", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
        let h = hash_of(1);
        store
            .publish_instrument(&instrument("a = 1", &h, 1))
            .await
            .unwrap();
        let c = store.create_campaign(&campaign("w1", 1)).await.unwrap();
        assert_eq!(c.trial_key.as_deref(), Some("thanks-button"));
        assert_eq!(c.opens_at, at(10));
        let err = store.create_campaign(&campaign("w1", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists(_)), "{err:?}");
        let backwards = NewCampaign {
            closes_at: at(1),
            ..campaign("w2", 1)
        };
        let err = store.create_campaign(&backwards).await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidState(_)), "{err:?}");
        assert_eq!(store.list_campaigns().await.unwrap(), vec![c.clone()]);
        assert_eq!(store.campaign("w1").await.unwrap(), Some(c));
    })
    .await;
}

#[tokio::test]
async fn responses_are_saved_page_by_page_in_order_and_erased_with_the_unit() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(1);
        store
            .publish_instrument(&instrument("a = 1", &h, 1))
            .await
            .unwrap();
        let c = store.create_campaign(&campaign("w1", 1)).await.unwrap();
        let (a, b) = (unit(1), unit(2));

        // Declining keeps the refusal only; starting later is allowed.
        let declined = store
            .begin_response(c.id, &b, "es", "2027-01", false, at(20))
            .await
            .unwrap();
        assert_eq!(declined.status, ResponseStatus::Declined);
        assert!(declined.answers.is_empty());

        let r = store
            .begin_response(c.id, &a, "en", "2027-01", true, at(20))
            .await
            .unwrap();
        assert_eq!((r.status, r.page), (ResponseStatus::Started, 0));
        // Resuming from the same link returns the same response.
        let again = store
            .begin_response(c.id, &a, "es", "2027-01", true, at(21))
            .await
            .unwrap();
        assert_eq!(again, r);

        let orders = answers(json!({"1": [2, 0, 1]}));
        let p1 = answers(json!({"q1": 4}));
        let saved = store
            .save_page(c.id, &a, 0, &p1, &orders, 1, false, at(30))
            .await
            .unwrap();
        assert_eq!((saved.page, saved.answers.clone()), (1, p1.clone()));
        assert_eq!(saved.orders, orders);
        // The same page posted again (a double click, a replay) is refused.
        let err = store
            .save_page(c.id, &a, 0, &p1, &orders, 1, false, at(31))
            .await
            .unwrap_err();
        match err {
            StoreError::InvalidState(m) => assert!(m.contains("at page 2"), "{m}"),
            other => panic!("{other:?}"),
        }
        let both = answers(json!({"q1": 4, "q2": "<b>hi</b>"}));
        let done = store
            .save_page(c.id, &a, 1, &both, &orders, 2, true, at(40))
            .await
            .unwrap();
        assert_eq!(done.status, ResponseStatus::Completed);
        assert_eq!(done.completed_at, Some(at(40)));
        assert_eq!(done.answers["q2"], "<b>hi</b>", "stored verbatim");
        // After completion nothing changes: not a page, not a restart.
        assert!(store
            .save_page(c.id, &a, 2, &both, &orders, 3, true, at(41))
            .await
            .is_err());
        let after = store
            .begin_response(c.id, &a, "en", "2027-01", true, at(42))
            .await
            .unwrap();
        assert_eq!(after, done);
        // A declined response takes no page.
        assert!(store
            .save_page(c.id, &b, 0, &p1, &orders, 1, false, at(43))
            .await
            .is_err());
        assert_eq!(
            store.response_counts(c.id).await.unwrap(),
            ResponseCounts {
                started: 0,
                completed: 1,
                declined: 1
            }
        );
        // The database refuses answers on a declined response.
        let b_sql =
            format!("UPDATE survey_responses SET answers = '{{\"q\": 1}}' WHERE unit = '{b}'");
        assert!(db.execute_raw(&b_sql).await.is_err());

        let erased = store
            .erase_unit(&a, "cli:dpo", "asked", at(50))
            .await
            .unwrap();
        assert_eq!(erased.survey_responses, 1);
        assert_eq!(store.response(c.id, &a).await.unwrap(), None);
        assert_eq!(store.responses(c.id).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn trigger_flags_are_stored_and_a_units_standing_is_read_by_pseudonym() {
    both_backends(|db| async move {
        let store = db.store();
        let h = hash_of(1);
        store
            .publish_instrument(&instrument("a = 1", &h, 1))
            .await
            .unwrap();
        let plain = store.create_campaign(&campaign("w1", 1)).await.unwrap();
        assert_eq!(plain.trigger_flag, None);
        let trig = store
            .create_campaign(&NewCampaign {
                trigger_flag: Some("survey-prompt"),
                ..campaign("w2", 1)
            })
            .await
            .unwrap();
        assert_eq!(trig.trigger_flag.as_deref(), Some("survey-prompt"));
        assert_eq!(store.trigger_campaigns().await.unwrap(), vec![trig.clone()]);
        // The database refuses what is not a flag key.
        for bad in ["", "has space", "-dash"] {
            let err = store
                .create_campaign(&NewCampaign {
                    trigger_flag: Some(bad),
                    ..campaign("w3", 1)
                })
                .await
                .unwrap_err();
            assert!(
                !matches!(err, StoreError::AlreadyExists(_)),
                "{bad}: {err:?}"
            );
        }

        let (me, other) = (unit(1), unit(2));
        let none = store.trigger_standing(&me).await.unwrap();
        assert_eq!(none, (vec![], vec![]));
        // Invited to both: only the trigger campaign is read.
        for c in [plain.id, trig.id] {
            store
                .invite_units(
                    c,
                    &[commonlab_store::NewInvitation {
                        unit: me.clone(),
                        community: None,
                    }],
                    "cli:ana",
                    "wave",
                    at(20),
                )
                .await
                .unwrap();
        }
        let (standing, consents) = store.trigger_standing(&me).await.unwrap();
        assert_eq!(
            standing,
            vec![commonlab_store::TriggerStanding {
                campaign_id: trig.id,
                invited: true,
                status: None,
            }]
        );
        assert!(consents.is_empty());
        store
            .begin_response(trig.id, &me, "en", "v1", true, at(30))
            .await
            .unwrap();
        // A response without an invitation is read too.
        store
            .begin_response(trig.id, &other, "en", "v1", false, at(30))
            .await
            .unwrap();
        let (standing, _) = store.trigger_standing(&me).await.unwrap();
        assert_eq!(standing[0].status, Some(ResponseStatus::Started));
        let (standing, _) = store.trigger_standing(&other).await.unwrap();
        assert_eq!(
            standing,
            vec![commonlab_store::TriggerStanding {
                campaign_id: trig.id,
                invited: false,
                status: Some(ResponseStatus::Declined),
            }]
        );
        // The latest consent decision per scope.
        store
            .set_consent(&me, "research", "1", true, at(40))
            .await
            .unwrap();
        store
            .set_consent(&me, "research", "1", false, at(41))
            .await
            .unwrap();
        store
            .set_consent(&me, "email", "1", true, at(41))
            .await
            .unwrap();
        let (_, consents) = store.trigger_standing(&me).await.unwrap();
        let got: Vec<(&str, bool)> = consents
            .iter()
            .map(|c| (c.scope.as_str(), c.withdrawn()))
            .collect();
        assert_eq!(got, [("email", false), ("research", true)]);
    })
    .await;
}
