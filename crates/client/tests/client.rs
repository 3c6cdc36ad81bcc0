//! The client against the real server, on both stores.

use commonlab_client::{ClientError, Event, EventClient, Options};
use commonlab_core::auth::Role;
use commonlab_core::privacy::StudyKey;
use commonlab_server::{build_state, keys::create_key, start, Clock, Config};
use commonlab_store::testing::both_backends;
use commonlab_store::EventFilter;

/// The study key of the test's server, made here (the server has no
/// default key).
fn test_study_key() -> StudyKey {
    StudyKey::from_bytes(&[0x5a; 32]).expect("32 bytes is long enough")
}

#[tokio::test]
async fn batches_are_sent_and_retries_store_nothing_twice() {
    both_backends(|db| async move {
        let store = db.connect_another().await;
        let key = create_key(&store, "sim", Role::Sdk, "test", chrono::Utc::now())
            .await
            .unwrap()
            .key;
        let state = build_state(store, Config::new(test_study_key()), Clock::System)
            .await
            .unwrap();
        let server = start("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
        let base = format!("http://{}", server.addr);
        let mut client = EventClient::new(
            &base,
            &key,
            Options {
                batch_size: 500,
                ..Options::default()
            },
        );
        let mut sent_batches = 0;
        let mut all = Vec::new();
        for i in 0..1_200 {
            let e = Event::new(format!("member-{}", i % 40), "contribution_created")
                .community("wiki-a")
                .property("edits", i % 7);
            all.push(e.clone());
            if client.track(e).await.unwrap().is_some() {
                sent_batches += 1;
            }
        }
        assert_eq!(sent_batches, 2);
        let rest = client.flush().await.unwrap();
        assert_eq!(rest.stored, 200);
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            1_200
        );
        // A batch sent again (a retry after a lost answer) is stored once.
        let again = client.send(&all[..500]).await.unwrap();
        assert_eq!((again.stored, again.duplicates), (500, 500));
        assert_eq!(
            db.store()
                .count_events(&EventFilter::default())
                .await
                .unwrap(),
            1_200
        );
        // A bad batch is refused without retries.
        let bad = vec![Event::new("", "x")];
        match client.send(&bad).await {
            Err(ClientError::Refused { status, .. }) => assert_eq!(status, 422),
            other => panic!("{other:?}"),
        }
        server.stop().await.unwrap();
        // No server: the client gives up after its attempts.
        let quick = EventClient::new(
            &base,
            &key,
            Options {
                max_attempts: 3,
                initial_backoff: std::time::Duration::from_millis(10),
                ..Options::default()
            },
        );
        match quick.send(&all[..1]).await {
            Err(ClientError::GaveUp { attempts, .. }) => assert_eq!(attempts, 3),
            other => panic!("{other:?}"),
        }
    })
    .await;
}
