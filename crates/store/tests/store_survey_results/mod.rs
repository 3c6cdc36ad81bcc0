//! Survey invitations and the rows results are computed from: invited or
//! responding units, with the arm and community of their first exposure to
//! the campaign's trial joined by pseudonym; erased with the unit.

use super::*;
use commonlab_store::{CampaignUnit, NewCampaign, NewInstrument, NewInvitation};

async fn campaign(store: &Store, key: &str, trial_key: Option<&str>) -> i64 {
    let h = hash_of(9);
    store
        .publish_instrument(&NewInstrument {
            key: "sus",
            version: 1,
            source: "key = \"sus\"",
            hash: &h,
            actor: "cli:ana",
            reason: "pilot",
            at: at(1),
        })
        .await
        .unwrap();
    store
        .create_campaign(&NewCampaign {
            key,
            instrument: "sus",
            version: 1,
            trial_key,
            wave: "followup",
            opens_at: at(10),
            closes_at: at(10_000),
            trigger_flag: None,
            actor: "cli:ana",
            reason: "wave 1",
            at: at(5),
        })
        .await
        .unwrap()
        .id
}

fn invitation(n: u64, community: Option<&str>) -> NewInvitation {
    NewInvitation {
        unit: unit(n),
        community: community.map(str::to_string),
    }
}

#[tokio::test]
async fn invitations_are_kept_once_and_joined_with_arms_by_pseudonym() {
    both_backends(|db| async move {
        let store = db.store();
        let trial = running_trial(store, "thanks-button").await;
        let c = campaign(store, "followup-1", Some("thanks-button")).await;
        let other = campaign(store, "no-trial", None).await;
        assert_eq!(
            store
                .invite_units(c, &[], "cli:ana", "none", at(20))
                .await
                .unwrap(),
            0
        );
        assert!(!store.study_key_state().await.unwrap().pseudonymised_data);
        let batch = vec![
            invitation(3, None),
            invitation(1, Some("north")),
            invitation(2, None),
            invitation(1, Some("south")), // again in the batch: the first kept
        ];
        assert_eq!(
            store
                .invite_units(c, &batch, "cli:ana", "wave 1", at(20))
                .await
                .unwrap(),
            3
        );
        // Again: nothing new, the community given first is kept.
        assert_eq!(
            store
                .invite_units(
                    c,
                    &[invitation(1, Some("east")), invitation(4, None)],
                    "cli:ana",
                    "late",
                    at(21)
                )
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.invitation_count(c).await.unwrap(), 4);
        // Invitations are pseudonymised data: a new study key would match none.
        assert!(store.study_key_state().await.unwrap().pseudonymised_data);
        assert_eq!(store.invitation_count(other).await.unwrap(), 0);

        // Exposures: unit 1 in A (community "west"), unit 2 in B, unit 3
        // excluded by an override, unit 5 (not invited) responds in-app.
        let mut e1 = exposure(trial, 1, "A", 30);
        e1.community = Some("west".into());
        let mut e2 = exposure(trial, 2, "B", 30);
        e2.community = Some("east".into());
        let mut e3 = exposure(trial, 3, "B", 30);
        e3.excluded_reason = Some("developer override".into());
        store
            .record_exposures(&[e1, e2, e3, exposure(trial, 5, "A", 31)])
            .await
            .unwrap();
        store
            .begin_response(c, &unit(5), "en", "2027-01", true, at(40))
            .await
            .unwrap();
        store
            .begin_response(c, &unit(2), "es", "2027-01", false, at(41))
            .await
            .unwrap();

        let rows = store.campaign_units(c).await.unwrap();
        let row = |n: u64, invited: bool, ic: Option<&str>, arm: Option<&str>, ec: Option<&str>| {
            CampaignUnit {
                unit: unit(n),
                invited,
                invited_community: ic.map(str::to_string),
                arm: arm.map(str::to_string),
                exposed_community: ec.map(str::to_string),
            }
        };
        assert_eq!(
            rows,
            vec![
                row(1, true, Some("north"), Some("A"), Some("west")),
                row(2, true, None, Some("B"), Some("east")),
                row(3, true, None, None, None),
                row(4, true, None, None, None),
                row(5, false, None, Some("A"), None),
            ]
        );
        assert_eq!(rows[0].community(), Some("north"));
        assert_eq!(rows[1].community(), Some("east"));
        assert_eq!(rows[3].community(), None);
        // A campaign without a trial has no arms.
        store
            .invite_units(other, &[invitation(1, None)], "cli:ana", "w", at(22))
            .await
            .unwrap();
        let rows = store.campaign_units(other).await.unwrap();
        assert_eq!(rows, vec![row(1, true, None, None, None)]);

        // Erasure takes the invitations too.
        let erased = store
            .erase_unit(&unit(1), "cli:dpo", "asked", at(50))
            .await
            .unwrap();
        assert_eq!(erased.survey_invitations, 2);
        assert_eq!(store.invitation_count(c).await.unwrap(), 3);
        // The database refuses a raw unit id.
        let raw = format!(
            "INSERT INTO survey_invitations (campaign_id, unit, invited_at, invited_by, reason) \
             VALUES ({c}, 'member-1', '2027-01-01T00:00:00.000000Z', 'x', 'y')"
        );
        assert!(db.execute_raw(&raw).await.is_err());
    })
    .await;
}
