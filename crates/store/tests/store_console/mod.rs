//! Console sessions (open, look up, sign out, expiry, revocation, the
//! bound per key) and the audit log as one list (every source, filters,
//! cursor paging), on both backends.

use super::*;
use commonlab_store::{AuditQuery, AuditSource, NewConsoleSession, NewInstrument};

fn sid(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn session<'a>(id: &'a str, key_id: &'a str, secs: i64, max: usize) -> NewConsoleSession<'a> {
    NewConsoleSession {
        id,
        key_id,
        at: at(secs),
        expires_at: at(secs + 100),
        max_per_key: max,
    }
}

#[tokio::test]
async fn sessions_live_until_expiry_sign_out_or_revocation() {
    both_backends(|db| async move {
        let s = db.store();
        s.insert_api_key(&key("aaaaaaaaaaaa", "alice", "researcher", 0))
            .await
            .unwrap();
        s.insert_api_key(&key("bbbbbbbbbbbb", "bob", "developer", 0))
            .await
            .unwrap();
        let a = sid(1);
        s.open_console_session(&session(&a, "aaaaaaaaaaaa", 10, 5))
            .await
            .unwrap();
        let live = s.console_session(&a, at(50)).await.unwrap().unwrap();
        assert_eq!(live.key_name, "alice");
        assert_eq!(live.role, "researcher");
        assert_eq!(live.expires_at, at(110));
        // Expired at its expiry.
        assert!(s.console_session(&a, at(110)).await.unwrap().is_none());
        assert!(s.console_session(&sid(9), at(50)).await.unwrap().is_none());

        // Sign-out: once, and then nothing to end.
        assert!(s.end_console_session(&a, at(60)).await.unwrap());
        assert!(!s.end_console_session(&a, at(61)).await.unwrap());
        assert!(s.console_session(&a, at(62)).await.unwrap().is_none());

        // Revoking the key ends its sessions; a revoked key opens none.
        let b = sid(2);
        s.open_console_session(&session(&b, "bbbbbbbbbbbb", 10, 5))
            .await
            .unwrap();
        s.revoke_api_key("bob", at(20)).await.unwrap();
        assert!(s.console_session(&b, at(21)).await.unwrap().is_none());
        let refused = s
            .open_console_session(&session(&sid(3), "bbbbbbbbbbbb", 30, 5))
            .await;
        assert!(
            matches!(refused, Err(StoreError::NotFound(_))),
            "{refused:?}"
        );
        assert_eq!(
            s.live_console_sessions("bbbbbbbbbbbb", at(31))
                .await
                .unwrap(),
            0
        );
        // Malformed ids are refused by the database.
        let bad = s
            .open_console_session(&session("xyz", "aaaaaaaaaaaa", 30, 5))
            .await;
        assert!(bad.is_err());
    })
    .await;
}

#[tokio::test]
async fn a_key_keeps_its_newest_sessions() {
    both_backends(|db| async move {
        let s = db.store();
        s.insert_api_key(&key("cccccccccccc", "carol", "admin", 0))
            .await
            .unwrap();
        for n in 1..=5u8 {
            s.open_console_session(&session(&sid(n), "cccccccccccc", i64::from(n), 3))
                .await
                .unwrap();
        }
        assert_eq!(
            s.live_console_sessions("cccccccccccc", at(6))
                .await
                .unwrap(),
            3
        );
        for (n, live) in [(1, false), (2, false), (3, true), (4, true), (5, true)] {
            assert_eq!(
                s.console_session(&sid(n), at(6)).await.unwrap().is_some(),
                live,
                "session {n}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_lists_every_source_newest_first() {
    both_backends(|db| async move {
        let s = db.store();
        // A flag revision, a trial, a key created and revoked, a sign-in
        // and sign-out, an instrument, at known times.
        s.append_flag_set_revision("default", 0, &change("{\"flags\":{}}", "import", None, 1))
            .await
            .unwrap();
        s.create_trial(&new_trial("t1", &hash_of(1), 2))
            .await
            .unwrap();
        s.insert_api_key(&key("dddddddddddd", "dave", "admin", 3))
            .await
            .unwrap();
        s.open_console_session(&session(&sid(4), "dddddddddddd", 4, 5))
            .await
            .unwrap();
        s.end_console_session(&sid(4), at(5)).await.unwrap();
        s.revoke_api_key_by("dave", Some("key:root"), Some("left"), at(6))
            .await
            .unwrap();
        s.publish_instrument(&NewInstrument {
            key: "wellbeing",
            version: 1,
            source: "key = 1",
            hash: &hash_of(7),
            actor: "cli:erin",
            reason: "first version",
            at: at(7),
        })
        .await
        .unwrap();
        let all = |limit| AuditQuery {
            sources: &AuditSource::ALL,
            limit,
            ..AuditQuery::default()
        };
        let entries = s.audit_entries(&all(100)).await.unwrap();
        let actions: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|e| (e.action.as_str(), e.actor.as_str(), e.target.as_str()))
            .collect();
        assert_eq!(
            actions,
            [
                ("survey.publish", "cli:erin", "wellbeing"),
                ("key.revoke", "key:root", "dave"),
                ("console.sign-out", "key:dave", "dave"),
                ("console.sign-in", "key:dave", "dave"),
                ("key.create", "cli:root", "dave"),
                ("trial.create", "cli:alice", "t1"),
                ("flag.import", "cli:alice", "default"),
            ]
        );
        assert_eq!(entries[0].at, at(7));
        assert_eq!(entries[1].reason.as_deref(), Some("left"));

        // Filters.
        let q = AuditQuery {
            actor: Some("key:dave"),
            ..all(100)
        };
        assert_eq!(s.audit_entries(&q).await.unwrap().len(), 2);
        let q = AuditQuery {
            target: Some("dave"),
            action: Some("key.create"),
            ..all(100)
        };
        assert_eq!(s.audit_entries(&q).await.unwrap().len(), 1);
        let q = AuditQuery {
            from: Some(at(3)),
            until: Some(at(5)),
            ..all(100)
        };
        let got: Vec<String> = s
            .audit_entries(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(got, ["console.sign-in", "key.create"]);
        // Sources by role.
        let q = AuditQuery {
            sources: &[AuditSource::Flags, AuditSource::Trials],
            ..all(100)
        };
        assert_eq!(s.audit_entries(&q).await.unwrap().len(), 2);
        let q = AuditQuery {
            sources: &[],
            ..all(100)
        };
        assert!(s.audit_entries(&q).await.unwrap().is_empty());

        // Pages of 3 by cursor: the same entries, in order, once each.
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let q = AuditQuery {
                after: after.as_ref(),
                ..all(3)
            };
            let page = s.audit_entries(&q).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = Some(page.last().unwrap().cursor());
            paged.extend(page);
        }
        assert_eq!(paged, entries);
    })
    .await;
}
