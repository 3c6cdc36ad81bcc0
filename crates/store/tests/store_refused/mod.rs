//! Issue 10, item 13: an event the database refuses is left out of its
//! batch and reported; the rest of the batch is committed (one
//! transaction), on both backends.

use super::*;
use commonlab_store::{EventFilter, NewEvent};
use serde_json::json;

/// (event, refused on SQLite, refused on PostgreSQL)
fn cases() -> Vec<(NewEvent, bool, bool)> {
    let good = |id: u128| event(id, 7, "edit", 10);
    vec![
        (good(1), false, false),
        (
            NewEvent {
                unit: "not-a-pseudonym".into(),
                ..good(2)
            },
            true,
            true,
        ),
        (good(3), false, false),
        (
            NewEvent {
                name: String::new(),
                ..good(4)
            },
            true,
            true,
        ),
        (
            NewEvent {
                community: Some(String::new()),
                ..good(5)
            },
            true,
            true,
        ),
        // PostgreSQL text and jsonb cannot hold a NUL; SQLite can.
        (
            NewEvent {
                name: "a\0b".into(),
                ..good(6)
            },
            false,
            true,
        ),
        (
            NewEvent {
                properties: props(json!({"p": "x\u{0}y"})),
                ..good(7)
            },
            false,
            true,
        ),
        (good(8), false, false),
        (
            NewEvent {
                unit: "F".repeat(64),
                ..good(9)
            },
            true,
            true,
        ),
        (good(10), false, false),
    ]
}

#[tokio::test]
async fn refused_events_are_left_out_and_the_rest_is_committed() {
    both_backends(|db| async move {
        let store = db.store();
        let backend = store.backend();
        let cases = cases();
        let batch: Vec<NewEvent> = cases.iter().map(|c| c.0.clone()).collect();
        let refused_here: Vec<usize> = cases
            .iter()
            .enumerate()
            .filter(|(_, c)| if backend == Backend::Sqlite { c.1 } else { c.2 })
            .map(|(i, _)| i)
            .collect();
        let stored_here = (batch.len() - refused_here.len()) as u64;

        let outcome = store.insert_events(&batch, at(11)).await.unwrap();
        let refused: Vec<usize> = outcome.refused.iter().map(|r| r.index).collect();
        assert_eq!(refused, refused_here, "{backend}: {outcome:?}");
        assert!(outcome.refused.iter().all(|r| !r.reason.is_empty()));
        assert_eq!(
            (outcome.inserted, outcome.duplicates.len()),
            (stored_here, 0),
            "{backend}"
        );
        let all = EventFilter::default();
        assert_eq!(
            store.count_events(&all).await.unwrap(),
            stored_here,
            "{backend}"
        );

        // Retried: refused again, the rest are duplicates, nothing twice.
        let again = store.insert_events(&batch, at(12)).await.unwrap();
        assert_eq!(again.refused, outcome.refused, "{backend}");
        assert_eq!(again.inserted, 0);
        assert_eq!(again.duplicates.len() as u64, stored_here);
        assert_eq!(store.count_events(&all).await.unwrap(), stored_here);

        // A batch of refused events only stores nothing and says so; a
        // repeated id is refused with its first occurrence.
        let bad = NewEvent {
            unit: "x".into(),
            ..event(100, 7, "edit", 10)
        };
        let only_bad = [
            bad.clone(),
            NewEvent {
                name: String::new(),
                ..event(101, 7, "e", 10)
            },
            bad,
        ];
        let outcome = store.insert_events(&only_bad, at(13)).await.unwrap();
        let refused: Vec<usize> = outcome.refused.iter().map(|r| r.index).collect();
        assert_eq!(
            (refused, outcome.duplicates, outcome.inserted),
            (vec![0, 1, 2], vec![], 0)
        );
        assert_eq!(store.count_events(&all).await.unwrap(), stored_here);

        // Many rows, a few refused anywhere in them (bisection).
        let big: Vec<NewEvent> = (0..2_000u128)
            .map(|i| {
                let e = event(1_000 + i, 8, "edit", 10);
                if [0, 777, 778, 1_999].contains(&i) {
                    NewEvent {
                        community: Some(String::new()),
                        ..e
                    }
                } else {
                    e
                }
            })
            .collect();
        let outcome = store.insert_events(&big, at(14)).await.unwrap();
        let refused: Vec<usize> = outcome.refused.iter().map(|r| r.index).collect();
        assert_eq!(refused, [0, 777, 778, 1_999], "{backend}");
        assert_eq!(outcome.inserted, 1_996);
        assert_eq!(store.count_events(&all).await.unwrap(), stored_here + 1_996);
    })
    .await;
}
