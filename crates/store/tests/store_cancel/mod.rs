//! Cancellation: every store method that writes, its future dropped at
//! each of its await points in turn (after 1, 2, 3, … polls, until it
//! completes), on a store whose pool has one connection. After every drop:
//! the write is all or nothing, and unrelated reads and writes on that one
//! connection work. This is the guarantee ARCHITECTURE.md states ("The
//! store under cancellation").
//!
//! Found by it: sqlx's PostgreSQL `COPY` leaves a connection one message
//! out of step when `PgCopyIn::finish` is dropped, and the pool hands it on
//! (the next `BEGIN` fails with `BeginFailed`); sqlx 0.8's `begin()` left a
//! transaction open when dropped during `BEGIN`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::*;

mod console;
mod forced;
mod period;
mod ship;
use commonlab_store::{
    EventFilter, ExposureSource, MetricCell, MetricSnapshot, NewAssignment, NewEvent, NewExposure,
    NewSequentialAssignment, NewTrial, TrialChange, TrialStatus,
};

/// No write here takes more await points than this.
const MAX_POLLS: usize = 400;

/// Polls `op` at most `polls` times. `None`: it was still pending after the
/// last of them and has been dropped there.
struct DropAfter<F> {
    op: Pin<Box<F>>,
    left: usize,
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.left -= 1;
        match self.op.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if self.left == 0 => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn drop_after<F: Future>(polls: usize, op: F) -> DropAfter<F> {
    DropAfter {
        op: Box::pin(op),
        left: polls,
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs `op(i)` for i = 1, 2, …, dropping attempt `i` after `i` polls,
/// until an attempt completes. After each attempt: the unrelated work, then
/// `check(i, outcome)` (`None` when dropped), which asserts that attempt
/// `i`'s write is all or nothing (and there when it completed `Ok`).
/// Returns how many attempts were dropped.
async fn at_every_point<'a, T>(
    store: &'a Store,
    what: &str,
    mut op: impl FnMut(usize) -> Boxed<'a, Result<T, StoreError>>,
    mut check: impl FnMut(usize, Option<&Result<T, StoreError>>) -> Boxed<'a, ()>,
) -> usize
where
    T: std::fmt::Debug,
{
    for polls in 1..=MAX_POLLS {
        let outcome = drop_after(polls, op(polls)).await;
        unrelated_work(store, what, polls).await;
        check(polls, outcome.as_ref()).await;
        match outcome {
            Some(Ok(_)) => return polls - 1,
            Some(Err(e)) => panic!("{what}: attempt {polls} failed: {e:?}"),
            None => {}
        }
    }
    panic!("{what}: not done after {MAX_POLLS} polls");
}

/// Reads and a write that have nothing to do with the cancelled one, on
/// the same (only) connection.
async fn unrelated_work(store: &Store, what: &str, polls: usize) {
    let context = format!("after {what} was dropped at poll {polls}");
    store.ping().await.expect(&context);
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let name = format!("probe-{id}");
    store
        .insert_api_key(&key(&id, &name, "sdk", 1))
        .await
        .expect(&context);
    let found = store.find_api_key(&id).await.expect(&context);
    assert_eq!(found.map(|k| k.name), Some(name), "{context}");
    store
        .count_events(&EventFilter::default())
        .await
        .expect(&context);
    store.flag_set_head("default").await.expect(&context);
    store.list_trials(None).await.expect(&context);
}

fn pseudonym(n: usize) -> String {
    format!("{:064x}", 0xc0ff_ee00_0000 + n)
}

fn hash_hex(n: usize) -> String {
    format!("{:064x}", 0xab00 + n)
}

fn trial<'a>(key: &'a str, hash: &'a str) -> NewTrial<'a> {
    NewTrial {
        key,
        flag_key: "checkout",
        spec_source: "[trial]\n",
        spec_canonical: "{}",
        spec_hash: hash,
        actor: "cli:alice",
        reason: "plan",
        at: at(10),
    }
}

fn by(reason: &str) -> TrialChange<'_> {
    TrialChange {
        actor: "cli:bob",
        reason,
        at: at(20),
    }
}

/// The trial's status agrees with its event log: every change of the row
/// came with its event, and no event without its change.
async fn assert_trial_consistent(store: &Store, key: &str, what: &str) {
    let Some(t) = store.get_trial(key).await.unwrap() else {
        assert!(
            store.trial_events(key).await.unwrap().is_empty(),
            "{what}: events of a trial that does not exist"
        );
        return;
    };
    let events = store.trial_events(key).await.unwrap();
    let last = events.last().expect("a trial has its create event");
    let expected = match t.status {
        TrialStatus::Draft => &["create", "update"][..],
        TrialStatus::Running => &["start", "amend"][..],
        TrialStatus::Stopped => &["stop", "amend"][..],
        TrialStatus::Concluded => &["conclude"][..],
        TrialStatus::Archived => &["archive"][..],
    };
    assert!(
        expected.contains(&last.action.as_str()),
        "{what}: status {:?} but last event {}",
        t.status,
        last.action
    );
    assert_eq!(last.spec_hash, t.spec_hash, "{what}");
    assert_eq!(last.version, t.version, "{what}");
    assert_eq!(t.seed.is_some(), t.status != TrialStatus::Draft, "{what}");
}

#[tokio::test]
async fn every_write_is_all_or_nothing_when_its_caller_is_dropped() {
    both_backends(|db| async move {
        let store = db.connect_another_with(1).await;
        let store = &store;
        let mut dropped = Vec::new();

        // Flag-set revisions.
        let n = at_every_point(
            store,
            "append_flag_set_revision",
            |i| {
                Box::pin(async move {
                    let set = format!("set-{i}");
                    let doc = format!("{{\"flags\":{{}},\"n\":{i}}}");
                    store
                        .append_flag_set_revision(&set, 0, &change(&doc, "import", None, 1))
                        .await
                })
            },
            |i, _| {
                Box::pin(async move {
                    let set = format!("set-{i}");
                    if let Some(head) = store.flag_set_head(&set).await.unwrap() {
                        assert_eq!(head.revision, 1);
                        assert_eq!(head.document, format!("{{\"flags\":{{}},\"n\":{i}}}"));
                    }
                })
            },
        )
        .await;
        dropped.push(("append_flag_set_revision", n));

        // API keys: create, then revoke.
        let n = at_every_point(
            store,
            "insert_api_key",
            |i| {
                Box::pin(async move {
                    let id = format!("{:012x}", 0xa0_0000 + i);
                    let name = format!("researcher-{i}");
                    store
                        .insert_api_key(&key(&id, &name, "researcher", 2))
                        .await
                })
            },
            |_, _| Box::pin(async {}),
        )
        .await;
        dropped.push(("insert_api_key", n));
        let created: Vec<String> = store
            .list_api_keys(false)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.role == "researcher")
            .map(|k| k.id)
            .collect();
        assert!(!created.is_empty());
        let v = store.keys_version().await.unwrap();
        let n = at_every_point(
            store,
            "revoke_api_key",
            |i| {
                let id = created[(i - 1) % created.len()].clone();
                Box::pin(async move {
                    match store.revoke_api_key(&id, at(3)).await {
                        // Revoked by an earlier attempt that went through.
                        Err(StoreError::NotFound(_)) => Ok(()),
                        other => other.map(|_| ()),
                    }
                })
            },
            |_, _| Box::pin(async {}),
        )
        .await;
        dropped.push(("revoke_api_key", n));
        assert!(store.keys_version().await.unwrap() > v);

        // Trials: create, update, start, stop, amend, conclude; the row and
        // its event log always agree.
        let h = hash_hex(0);
        let n = at_every_point(
            store,
            "create_trial",
            |i| {
                let h = h.clone();
                Box::pin(async move { store.create_trial(&trial(&format!("t{i}"), &h)).await })
            },
            |i, _| {
                Box::pin(
                    async move { assert_trial_consistent(store, &format!("t{i}"), "create").await },
                )
            },
        )
        .await;
        dropped.push(("create_trial", n));
        let key = format!("t{}", n + 1);
        let key = key.as_str();
        let n = at_every_point(
            store,
            "update_draft_spec",
            |i| {
                Box::pin(async move {
                    let current = store.get_trial(key).await?.unwrap().spec_hash;
                    let next = hash_hex(i);
                    store
                        .update_draft_spec(
                            key,
                            &current,
                            "[trial]\n#",
                            "{}",
                            &next,
                            "checkout",
                            &by("edit"),
                        )
                        .await
                })
            },
            |_, _| Box::pin(assert_trial_consistent(store, key, "update")),
        )
        .await;
        dropped.push(("update_draft_spec", n));
        let n = at_every_point(
            store,
            "start_trial",
            |_| {
                Box::pin(async move {
                    match store.start_trial(key, 7, Some("{}"), &by("go")).await {
                        Err(StoreError::InvalidState(m)) if m.contains("is running") => {
                            store.get_trial(key).await.map(Option::unwrap)
                        }
                        other => other,
                    }
                })
            },
            |_, _| Box::pin(assert_trial_consistent(store, key, "start")),
        )
        .await;
        dropped.push(("start_trial", n));
        let trial_id = store.get_trial(key).await.unwrap().unwrap().id;
        let n = at_every_point(
            store,
            "amend_trial",
            |i| {
                Box::pin(async move {
                    store
                        .amend_trial(key, "[trial]\n##", "{}", &hash_hex(1000 + i), &by("fix"))
                        .await
                })
            },
            |_, _| Box::pin(assert_trial_consistent(store, key, "amend")),
        )
        .await;
        dropped.push(("amend_trial", n));
        let n = at_every_point(
            store,
            "set_trial_status",
            |_| {
                Box::pin(async move {
                    let stop = [TrialStatus::Running, TrialStatus::Stopped];
                    store
                        .set_trial_status(key, &stop, TrialStatus::Stopped, &by("pause"))
                        .await
                })
            },
            |_, _| Box::pin(assert_trial_consistent(store, key, "stop")),
        )
        .await;
        dropped.push(("set_trial_status", n));

        // Starting against the running trials, and concluding with the
        // snapshot: the status, the log and the snapshots agree.
        store.create_trial(&trial("tc", &h)).await.unwrap();
        let none = |_: &[commonlab_store::TrialRecord]| None;
        let none = &none;
        let n = at_every_point(
            store,
            "start_trial_exclusive",
            |_| {
                Box::pin(async move {
                    match store
                        .start_trial_exclusive("tc", 7, None, &by("go"), none)
                        .await
                    {
                        Err(StoreError::InvalidState(m)) if m.contains("is running") => {
                            store.get_trial("tc").await.map(Option::unwrap)
                        }
                        other => other,
                    }
                })
            },
            |_, _| Box::pin(assert_trial_consistent(store, "tc", "start exclusive")),
        )
        .await;
        dropped.push(("start_trial_exclusive", n));
        let tc = store.get_trial("tc").await.unwrap().unwrap();
        let n = at_every_point(
            store,
            "conclude_trial",
            |_| {
                let (hash, version) = (tc.spec_hash.clone(), tc.version);
                Box::pin(async move {
                    let snapshots: Vec<MetricSnapshot> = (0..3)
                        .map(|m| MetricSnapshot {
                            metric: format!("c{m}"),
                            spec_hash: hash.clone(),
                            as_of: at(20),
                            computed_at: at(20),
                            cells: vec![cell("arm0")],
                            communities: None,
                        })
                        .collect();
                    let from = [TrialStatus::Running, TrialStatus::Stopped];
                    match store
                        .conclude_trial("tc", &from, &hash, version, &snapshots, &by("done"))
                        .await
                    {
                        Err(StoreError::InvalidState(m)) if m.contains("is concluded") => {
                            store.get_trial("tc").await.map(Option::unwrap)
                        }
                        other => other,
                    }
                })
            },
            |_, _| {
                Box::pin(async move {
                    assert_trial_consistent(store, "tc", "conclude").await;
                    let t = store.get_trial("tc").await.unwrap().unwrap();
                    let stored = store.metric_snapshots(t.id).await.unwrap();
                    let concluded = t.status == TrialStatus::Concluded;
                    assert_eq!(stored.len(), if concluded { 3 } else { 0 }, "{t:?}");
                })
            },
        )
        .await;
        dropped.push(("conclude_trial", n));
        // A forced conclusion (forced.rs).
        let n = forced::conclusion(store, &h).await;
        dropped.push(("conclude_trial_with_deviation", n));
        dropped.push(("conclude_trial_and_ship", ship::conclusion(store, &h).await));

        // Assignments: sequential positions stay gap-free per stratum.
        let n = at_every_point(
            store,
            "assign_sequential",
            |i| {
                Box::pin(async move {
                    let unit = pseudonym(i);
                    let a = NewSequentialAssignment {
                        trial_id,
                        unit: &unit,
                        stratum: Some("wiki"),
                        community: Some("wiki"),
                        trial_version: 1,
                        at: at(30),
                    };
                    store
                        .assign_sequential(&a, &|p| format!("arm{}", p % 2))
                        .await
                })
            },
            |i, _| {
                Box::pin(async move {
                    let mut positions: Vec<i64> = Vec::new();
                    for u in 1..=i {
                        if let Some(a) =
                            store.get_assignment(trial_id, &pseudonym(u)).await.unwrap()
                        {
                            positions.push(a.position.unwrap());
                        }
                    }
                    positions.sort_unstable();
                    let expected: Vec<i64> = (0..positions.len() as i64).collect();
                    let from_one: Vec<i64> = (1..=positions.len() as i64).collect();
                    assert!(
                        positions == expected || positions == from_one,
                        "positions with a gap: {positions:?}"
                    );
                })
            },
        )
        .await;
        dropped.push(("assign_sequential", n));
        let n = at_every_point(
            store,
            "assign_fixed",
            |i| {
                Box::pin(async move {
                    let unit = pseudonym(10_000 + i);
                    let a = NewAssignment {
                        trial_id,
                        unit: &unit,
                        arm: "arm1",
                        stratum: None,
                        community: None,
                        trial_version: 1,
                        at: at(31),
                    };
                    store.assign_fixed(&a).await
                })
            },
            |_, _| Box::pin(async {}),
        )
        .await;
        dropped.push(("assign_fixed", n));

        // Exposures: a batch of 300 (several statements) whole or not at all.
        let n = at_every_point(
            store,
            "record_exposures",
            |i| {
                Box::pin(async move {
                    let batch: Vec<NewExposure> = (0..300)
                        .map(|u| NewExposure {
                            trial_id,
                            unit: pseudonym(100_000 * i + u),
                            arm: "arm0".into(),
                            community: None,
                            trial_version: 1,
                            at: at(40),
                            source: ExposureSource::Single,
                            excluded_reason: None,
                        })
                        .collect();
                    store.record_exposures(&batch).await
                })
            },
            |_, _| {
                Box::pin(async move {
                    let counts = store.arm_counts(trial_id).await.unwrap();
                    let total: i64 = counts.iter().map(|(_, _, exposed)| exposed).sum();
                    assert_eq!(total % 300, 0, "a partial exposure batch: {total}");
                })
            },
        )
        .await;
        dropped.push(("record_exposures", n));
        dropped.push(("add_period_exposures", period::added(store, trial_id).await));

        // Metric snapshots.
        let n = at_every_point(
            store,
            "save_metric_snapshots",
            |i| {
                Box::pin(async move {
                    let snapshots: Vec<MetricSnapshot> = (0..5)
                        .map(|m| MetricSnapshot {
                            metric: format!("m{m}"),
                            spec_hash: hash_hex(i),
                            as_of: at(50),
                            computed_at: at(51),
                            cells: vec![cell("arm0"), cell("arm1")],
                            communities: None,
                        })
                        .collect();
                    store.save_metric_snapshots(trial_id, &snapshots).await
                })
            },
            |_, _| {
                Box::pin(async move {
                    let stored = store.metric_snapshots(trial_id).await.unwrap();
                    assert!(
                        stored.is_empty() || stored.len() == 5,
                        "{} of 5 snapshots",
                        stored.len()
                    );
                    let hashes: std::collections::BTreeSet<_> =
                        stored.iter().map(|s| &s.spec_hash).collect();
                    assert!(
                        hashes.len() <= 1,
                        "snapshots of two saves mixed: {hashes:?}"
                    );
                })
            },
        )
        .await;
        dropped.push(("save_metric_snapshots", n));

        // Events: a batch of 1,000 whole or not at all (PostgreSQL: COPY).
        let n = at_every_point(
            store,
            "insert_events",
            |i| {
                Box::pin(async move {
                    let batch: Vec<NewEvent> = (0..1_000u128)
                        .map(|e| NewEvent {
                            unit: pseudonym(5),
                            ..event((i as u128) << 32 | e, 0, "edit", 60)
                        })
                        .collect();
                    store.insert_events(&batch, at(61)).await
                })
            },
            |_, _| {
                Box::pin(async move {
                    let filter = EventFilter {
                        unit: Some(pseudonym(5)),
                        ..EventFilter::default()
                    };
                    let stored = store.count_events(&filter).await.unwrap();
                    assert_eq!(stored % 1_000, 0, "a partial event batch: {stored}");
                })
            },
        )
        .await;
        dropped.push(("insert_events", n));

        // Events with refused rows: the probes and the commit of the rest,
        // whole or not at all.
        let n = at_every_point(
            store,
            "insert_events (refused rows)",
            |i| {
                Box::pin(async move {
                    let batch: Vec<NewEvent> = (0..100u128)
                        .map(|e| NewEvent {
                            unit: if e % 40 == 7 {
                                "refused".into()
                            } else {
                                pseudonym(9)
                            },
                            ..event((1u128 << 90) | (i as u128) << 32 | e, 0, "edit", 60)
                        })
                        .collect();
                    store.insert_events(&batch, at(61)).await
                })
            },
            |_, outcome| {
                if let Some(Ok(o)) = outcome {
                    assert_eq!(o.refused.len(), 3, "{o:?}");
                }
                Box::pin(async move {
                    let filter = EventFilter {
                        unit: Some(pseudonym(9)),
                        ..EventFilter::default()
                    };
                    let stored = store.count_events(&filter).await.unwrap();
                    assert_eq!(stored % 97, 0, "a partial event batch: {stored}");
                })
            },
        )
        .await;
        dropped.push(("insert_events (refused rows)", n));

        // Consent.
        let n = at_every_point(
            store,
            "set_consent",
            |i| {
                Box::pin(async move {
                    store
                        .set_consent(&pseudonym(5), "study", &format!("v{i}"), true, at(70))
                        .await
                })
            },
            |_, _| {
                Box::pin(async move {
                    for record in store.consent_history(&pseudonym(5)).await.unwrap() {
                        assert!(record.granted && record.scope == "study");
                    }
                })
            },
        )
        .await;
        dropped.push(("set_consent", n));

        // Survey invitations: every unit of the batch (three statements) or none.
        let source = "key = \"s\"";
        let h = hash_hex(77);
        store
            .publish_instrument(&commonlab_store::NewInstrument {
                key: "s",
                version: 1,
                source,
                hash: &h,
                actor: "cli:ana",
                reason: "pilot",
                at: at(75),
            })
            .await
            .unwrap();
        let campaign = store
            .create_campaign(&commonlab_store::NewCampaign {
                key: "wave-1",
                instrument: "s",
                version: 1,
                trial_key: None,
                wave: "baseline",
                opens_at: at(75),
                closes_at: at(1_000),
                trigger_flag: None,
                actor: "cli:ana",
                reason: "pilot",
                at: at(75),
            })
            .await
            .unwrap()
            .id;
        let invitations: Vec<commonlab_store::NewInvitation> = (0..1_200)
            .map(|n| commonlab_store::NewInvitation {
                unit: pseudonym(10_000 + n),
                community: Some("north".into()),
            })
            .collect();
        let invitations = &invitations;
        let n = at_every_point(
            store,
            "invite_units",
            |_| {
                Box::pin(async move {
                    store
                        .invite_units(campaign, invitations, "cli:ana", "wave 1", at(76))
                        .await
                })
            },
            |_, outcome| {
                let done = matches!(outcome, Some(Ok(_)));
                Box::pin(async move {
                    let count = store.invitation_count(campaign).await.unwrap();
                    assert!(count == 0 || count == 1_200, "a partial batch: {count}");
                    if done {
                        assert_eq!(count, 1_200);
                    }
                })
            },
        )
        .await;
        dropped.push(("invite_units", n));

        // Erasure: all of the unit's rows, with its log entry, or none.
        let n = at_every_point(
            store,
            "erase_unit",
            |_| {
                Box::pin(async move {
                    store
                        .erase_unit(&pseudonym(5), "cli:dpo", "asked", at(80))
                        .await
                })
            },
            |_, _| {
                Box::pin(async move {
                    let filter = EventFilter {
                        unit: Some(pseudonym(5)),
                        ..EventFilter::default()
                    };
                    let events = store.count_events(&filter).await.unwrap();
                    let consents = store.consent_history(&pseudonym(5)).await.unwrap().len();
                    let logged = store.erasures_since(at(0)).await.unwrap();
                    if logged.is_empty() {
                        assert!(events > 0 && consents > 0, "erased without a log entry");
                    } else {
                        assert_eq!((events, consents), (0, 0), "logged but not erased");
                        assert!(logged[0].counts.events > 0 && logged[0].counts.consents > 0);
                    }
                })
            },
        )
        .await;
        dropped.push(("erase_unit", n));

        // The study key's fingerprint: recorded once, whole.
        let n = at_every_point(
            store,
            "record_study_key",
            |_| Box::pin(async move { store.record_study_key("0123456789abcdef", at(85)).await }),
            |_, outcome| {
                let done = matches!(outcome, Some(Ok(_)));
                Box::pin(async move {
                    let recorded = store.study_key_state().await.unwrap().fingerprint;
                    assert!(recorded.is_none() || recorded.as_deref() == Some("0123456789abcdef"));
                    if done {
                        assert!(recorded.is_some());
                    }
                })
            },
        )
        .await;
        dropped.push(("record_study_key", n));

        // Retention: batches of 100, each whole; nothing newer than the
        // cutoff goes.
        let batch: Vec<NewEvent> = (0..1_000u128)
            .map(|e| event((1u128 << 100) | e, 6, "old", e as i64 % 2 * 100))
            .collect();
        store.insert_events(&batch, at(90)).await.unwrap();
        let n = at_every_point(
            store,
            "delete_events_before",
            |_| Box::pin(async move { store.delete_events_before(at(50), 100).await }),
            |_, _| {
                Box::pin(async move {
                    let filter = EventFilter {
                        unit: Some(unit(6)),
                        ..EventFilter::default()
                    };
                    let left = store.count_events(&filter).await.unwrap();
                    assert!(left >= 500, "an event newer than the cutoff went: {left}");
                    let old = EventFilter {
                        to: Some(at(50)),
                        ..filter
                    };
                    let old = store.count_events(&old).await.unwrap();
                    assert_eq!(old % 100, 0, "a partial retention batch: {old} old left");
                })
            },
        )
        .await;
        dropped.push(("delete_events_before", n));

        eprintln!("{}: dropped attempts per write: {dropped:?}", db.backend());
        // Every write was interrupted at least once before it completed.
        for (what, n) in &dropped {
            assert!(*n >= 1, "{what} never had an await point to drop at");
        }
        store.close().await;
    })
    .await;
}

fn cell(arm: &str) -> MetricCell {
    MetricCell {
        arm: arm.into(),
        community: None,
        n: 10,
        sum: 4.0,
        sum_squares: 4.0,
        x_sum: 0.0,
        x_sum_squares: 0.0,
        xy_sum: 0.0,
        d_sum: 0.0,
        d_sum_squares: 0.0,
        md_sum: 0.0,
        dx_sum: 0.0,
        y_cap: None,
        x_cap: None,
    }
}
