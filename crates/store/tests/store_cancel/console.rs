//! Cancellation of the console's session writes (see the parent module).

use super::*;
use commonlab_store::NewConsoleSession;

#[tokio::test]
async fn console_session_writes_are_all_or_nothing_when_dropped() {
    both_backends(|db| async move {
        let store = db.connect_another_with(1).await;
        let store = &store;
        store
            .insert_api_key(&key("eeeeeeeeeeee", "console", "admin", 0))
            .await
            .unwrap();
        let id = |i: usize| format!("{:064x}", 0xfeed_0000 + i);
        let n = at_every_point(
            store,
            "open_console_session",
            |i| {
                Box::pin(async move {
                    store
                        .open_console_session(&NewConsoleSession {
                            id: &id(i),
                            key_id: "eeeeeeeeeeee",
                            at: at(i as i64),
                            expires_at: at(10_000),
                            max_per_key: 2,
                        })
                        .await
                })
            },
            |i, _| {
                Box::pin(async move {
                    // Never more live sessions than the bound, even for a
                    // dropped attempt.
                    let live = store
                        .live_console_sessions("eeeeeeeeeeee", at(i as i64))
                        .await
                        .unwrap();
                    assert!(live <= 2, "attempt {i}: {live} live sessions");
                })
            },
        )
        .await;
        assert!(n > 0, "open_console_session was never dropped mid-way");
        let opened = id(n + 1);
        let opened = opened.as_str();
        at_every_point(
            store,
            "end_console_session",
            |_| Box::pin(async move { store.end_console_session(opened, at(5_000)).await }),
            |_, _| Box::pin(async {}),
        )
        .await;
        assert!(store
            .console_session(opened, at(5_001))
            .await
            .unwrap()
            .is_none());
    })
    .await;
}
