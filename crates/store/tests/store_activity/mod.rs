//! `community_activity`: members' event counts, event types and members
//! seen, aggregated in the database, on both backends.

use super::*;

#[tokio::test]
async fn community_activity_counts_members_and_event_types() {
    both_backends(|db| async move {
        let store = db.store();
        let with = |id: u128, u: u64, name: &str, secs: i64, community: &str| NewEvent {
            community: Some(community.to_string()),
            ..event(id, u, name, secs)
        };
        let events = vec![
            // Before the window: member 1 is seen, not active.
            with(1, 1, "edit", 50, "wiki-a"),
            // An event type seen only before the window: not listed.
            with(9, 1, "vote", 60, "wiki-a"),
            // In [100, 200): member 2 three events, member 3 one.
            with(2, 2, "edit", 100, "wiki-a"),
            with(3, 2, "edit", 150, "wiki-a"),
            with(4, 2, "comment", 199, "wiki-a"),
            with(5, 3, "comment", 120, "wiki-a"),
            // At the end (excluded), after, and another community.
            with(6, 3, "edit", 200, "wiki-a"),
            with(7, 4, "edit", 250, "wiki-a"),
            with(8, 5, "edit", 150, "coop-b"),
        ];
        store.insert_events(&events, at(0)).await.unwrap();
        let a = store
            .community_activity("wiki-a", at(100), at(200))
            .await
            .unwrap();
        assert_eq!(a.members_seen, 3, "members 1, 2, 3 (4 only after the end)");
        assert_eq!(a.events_per_active_member, vec![1, 3]);
        let types: Vec<(&str, i64, i64)> = a
            .event_types
            .iter()
            .map(|t| (t.name.as_str(), t.events, t.members))
            .collect();
        assert_eq!(types, vec![("comment", 2, 2), ("edit", 2, 1)]);
        let none = store
            .community_activity("nowhere", at(100), at(200))
            .await
            .unwrap();
        assert_eq!(none.members_seen, 0);
        assert!(none.events_per_active_member.is_empty() && none.event_types.is_empty());
    })
    .await;
}

/// `community_unit_share` (the console's preview of a cohort override):
/// distinct units in the window, and those with an event in one of the
/// communities.
#[tokio::test]
async fn community_unit_share_counts_distinct_units_in_the_window() {
    both_backends(|db| async move {
        let store = db.store();
        let with = |id: u128, u: u64, secs: i64, community: Option<&str>| NewEvent {
            community: community.map(str::to_string),
            ..event(id, u, "edit", secs)
        };
        let events = vec![
            with(1, 1, 100, Some("coop-b")),
            with(2, 1, 150, Some("coop-b")),
            with(3, 2, 120, Some("wiki-a")),
            with(4, 3, 130, None),
            // Unit 4 in coop-b only outside the window (before, at the end).
            with(5, 4, 50, Some("coop-b")),
            with(6, 4, 200, Some("coop-b")),
            with(7, 4, 199, Some("wiki-a")),
        ];
        store.insert_events(&events, at(0)).await.unwrap();
        let share = |list: &[&str]| {
            let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            let store = store.clone();
            async move {
                store
                    .community_unit_share(&list, at(100), at(200))
                    .await
                    .unwrap()
            }
        };
        let s = share(&["coop-b"]).await;
        assert_eq!((s.matching, s.total, s.capped), (1, 4, false));
        let s = share(&["coop-b", "wiki-a"]).await;
        assert_eq!((s.matching, s.total), (3, 4));
        let s = share(&[]).await;
        assert_eq!((s.matching, s.total), (0, 4));
        let s = store
            .community_unit_share(&["coop-b".into()], at(300), at(400))
            .await
            .unwrap();
        assert_eq!((s.matching, s.total), (0, 0));
        let many: Vec<String> = (0..1001).map(|i| format!("c{i}")).collect();
        assert!(store
            .community_unit_share(&many, at(100), at(200))
            .await
            .is_err());
    })
    .await;
}
