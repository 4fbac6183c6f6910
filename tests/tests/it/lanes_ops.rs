//! Operators' view of a queue with lanes: stats total the lanes and break
//! them down; find, pending, ready, delayed and consumers span the lanes;
//! cancel, run-now, requeue and dead replay act on a job in a `high` or
//! `low` lane. No worker reads lanes here: entries go to pending with a
//! direct read of the lane's stream.

use std::time::Duration;

use millrace::{Cancel, EnqueueOptions};
use millrace_core::admin;
use millrace_core::inspect::{self, Location, PendingFilter};
use millrace_core::queue::When;
use millrace_core::{Conn, DeadRetention, Envelope, Failure, JobId, Priority, Queue, ReadFrom};

use crate::common::*;
use crate::unique::client;

const Q: &str = "lanes-ops";

fn job(name: &str, lane: Priority) -> Envelope {
    let mut e = Envelope::new(JobId::new().0, name, "{}".into());
    e.priority = lane;
    e
}

fn queue() -> Queue {
    Queue::new(Q).unwrap_or_else(|e| panic!("{e}"))
}

/// Enqueues `e` in its lane and returns its entry id.
async fn enqueue(c: &mut Conn, e: &Envelope) -> String {
    let ids = queue()
        .lane(e.priority)
        .enqueue(c, std::slice::from_ref(e))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ids[0].clone()
}

/// Enqueues `e` in its lane and delivers it to `consumer` (pending).
async fn take(c: &mut Conn, consumer: &str, e: &Envelope) -> String {
    let lane = queue().lane(e.priority);
    lane.declare(c).await.unwrap_or_else(|e| panic!("{e}"));
    let entry = enqueue(c, e).await;
    let got = lane
        .read(c, consumer, 1, Duration::from_millis(50), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry_id, entry);
    entry
}

async fn xlen(c: &mut Conn, lane: Priority) -> u64 {
    millrace_core::redis::cmd("XLEN")
        .arg(&queue().lane(lane).keys().stream)
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn stats_total_the_lanes_and_break_them_down() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let q = queue();
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    // Without lanes: only the default lane.
    let s = inspect::stats(&mut c, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.lanes.len(), 1);
    assert_eq!(s.lanes[0].lane, Priority::Default);

    take(&mut c, "w1", &job("a", Priority::High)).await;
    enqueue(&mut c, &job("b", Priority::High)).await;
    enqueue(&mut c, &job("c", Priority::Default)).await;
    q.lane(Priority::Low)
        .schedule(
            &mut c,
            &job("d", Priority::Low),
            When::In(Duration::from_secs(3600)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Through a lane view, the same queue.
    let s = inspect::stats(&mut c, &q.lane(Priority::Low))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((s.ready, s.in_flight, s.scheduled), (2, 1, 1), "{s:?}");
    assert_eq!(s.retrying, Some(0));
    assert_eq!(s.consumers, 1);
    let lanes: Vec<_> = s
        .lanes
        .iter()
        .map(|l| (l.lane, l.ready, l.in_flight, l.delayed))
        .collect();
    assert_eq!(
        lanes,
        [
            (Priority::High, 1, 1, 0),
            (Priority::Default, 1, 0, 0),
            (Priority::Low, 0, 0, 1),
        ]
    );
    assert!(s.lanes[0].lag_ms.is_some() && s.lanes[2].lag_ms.is_none());
}

#[tokio::test]
async fn listings_and_find_span_the_lanes_and_tell_each_entry_lane() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let q = queue();
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let dflt = job("plain", Priority::Default);
    enqueue(&mut c, &dflt).await;
    let low = job("batch", Priority::Low);
    let low_entry = take(&mut c, "w2", &low).await;
    let running = job("urgent", Priority::High);
    let run_entry = take(&mut c, "w1", &running).await;
    let high = job("urgent", Priority::High);
    enqueue(&mut c, &high).await;
    let later = job("later", Priority::Low);
    q.lane(Priority::Low)
        .schedule(&mut c, &later, When::In(Duration::from_secs(600)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(run_entry, low_entry);

    // Ready: high lane first, then default; none of low (it is pending).
    let page = inspect::ready(&mut c, &q, None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ready: Vec<_> = page
        .entries
        .iter()
        .map(|e| (e.lane, e.get("id").unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(
        ready,
        [
            (Priority::High, high.id.clone()),
            (Priority::Default, dflt.id.clone())
        ]
    );
    assert_eq!(page.total, 2);
    let one = inspect::ready(&mut c, &q, None, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.entries.len(), 1, "the limit holds across lanes");
    assert_eq!(one.total, 2);

    // Pending: both lanes, oldest entry first, each with its lane.
    let pending = inspect::pending(&mut c, &q, &PendingFilter::default(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<_> = pending
        .iter()
        .map(|p| (p.lane, p.consumer.as_str()))
        .collect();
    assert_eq!(got, [(Priority::Low, "w2"), (Priority::High, "w1")]);
    assert_eq!(
        inspect::pending_count(&mut c, &q)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    let consumers = inspect::consumers(&mut c, &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = consumers
        .iter()
        .map(|c| (c.name.as_str(), c.pending))
        .collect();
    assert_eq!(names, [("w1", 1), ("w2", 1)]);

    // Delayed: counted over lanes, found by id with its lane.
    assert_eq!(
        inspect::delayed_count(&mut c, &q)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    let d = inspect::delayed_job(&mut c, &q, &later.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("the low lane's delayed job is found"));
    assert_eq!(d.lane, Priority::Low);

    // Find: by job id and by entry id, in any lane.
    let found = inspect::find(&mut c, &q, &running.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&found[..], [Location::InFlight { consumer, .. }] if consumer == "w1"),
        "{found:?}"
    );
    assert_eq!(found[0].lane(), Priority::High);
    let st = millrace_core::status::status(&mut c, &q, &running.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "running");
    let st = millrace_core::status::status(&mut c, &q, &high.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "queued");
    let st = millrace_core::status::status(&mut c, &q, &later.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.name(), "scheduled");
    let found = inspect::find(&mut c, &q, &low_entry)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(found.iter().any(|l| l.lane() == Priority::Low), "{found:?}");
    let found = inspect::find(&mut c, &q, &later.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&found[..], [Location::Delayed(d)] if d.lane == Priority::Low));
}

#[tokio::test]
async fn cancel_finds_a_job_in_any_lane() {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let q = queue();
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let ready = job("r", Priority::High);
    let entry = enqueue(&mut c, &ready).await;
    let running = job("x", Priority::Low);
    let run_entry = take(&mut c, "w1", &running).await;
    let client = client(&url).await;
    let scheduled = client
        .enqueue_with(
            &probe_job("later", 1),
            EnqueueOptions::new()
                .queue(Q)
                .priority(Priority::High)
                .delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let done = client
        .cancel(Q, scheduled.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, Cancel::Delayed);
    let done = q
        .cancel(&mut c, &ready.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, Cancel::Ready { entry_id: entry });
    assert_eq!(xlen(&mut c, Priority::High).await, 0);
    let done = q
        .lane(Priority::High)
        .cancel(&mut c, &running.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        done,
        Cancel::Running {
            entry_id: run_entry,
            consumer: "w1".into()
        }
    );
    let again = q
        .cancel(&mut c, &ready.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(again, Cancel::Finished(_)), "{again:?}");
}

#[tokio::test]
async fn run_now_and_requeue_act_in_the_jobs_lane() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let q = queue();
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let later = job("later", Priority::Low);
    q.lane(Priority::Low)
        .schedule(&mut c, &later, When::In(Duration::from_secs(3600)))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let moved = admin::run_now(&mut c, &q, std::slice::from_ref(&later.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(moved, 1);
    assert_eq!(xlen(&mut c, Priority::Low).await, 1);
    assert_eq!(xlen(&mut c, Priority::Default).await, 0);
    let again = admin::run_now(&mut c, &q, std::slice::from_ref(&later.id))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, 0, "no longer delayed");

    let stuck = job("stuck", Priority::High);
    let entry = take(&mut c, "ghost", &stuck).await;
    let ids = [entry];
    let r = admin::requeue(&mut c, &q, &ids, Duration::ZERO, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.requeued, 0, "not pending in the default lane");
    let r = admin::requeue(&mut c, &q.lane(Priority::High), &ids, Duration::ZERO, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.requeued, 1);
    let page = inspect::ready(&mut c, &q, None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.entries[0].lane, Priority::High);
    assert_eq!(page.entries[0].get("id"), Some(stuck.id.as_str()));
}

#[tokio::test]
async fn dead_replay_puts_a_job_back_in_its_lane() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let q = queue();
    q.declare(&mut c).await.unwrap_or_else(|e| panic!("{e}"));
    let high = job("h", Priority::High);
    let plain = job("p", Priority::Default);
    for j in [&high, &plain] {
        let entry = take(&mut c, "w1", j).await;
        q.lane(j.priority)
            .fail(
                &mut c,
                "w1",
                &entry,
                Failure::Dead,
                "boom",
                DeadRetention::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let dead = inspect::dead_newest(&mut c, &q, &inspect::DeadFilter::default(), 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lanes: Vec<_> = dead.iter().map(|e| e.lane).collect();
    assert_eq!(lanes, [Priority::Default, Priority::High]);
    // Forget the lane, as if the set were lost: the replay records it.
    let _: () = millrace_core::redis::cmd("DEL")
        .arg(&q.keys().lanes)
        .query_async(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = dead.iter().map(|e| e.id.clone()).collect();
    let n = admin::replay_dead(&mut c, &q.lane(Priority::Low), &ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 2);
    assert_eq!(xlen(&mut c, Priority::High).await, 1);
    assert_eq!(xlen(&mut c, Priority::Default).await, 1);
    assert_eq!(xlen(&mut c, Priority::Low).await, 0);
    assert_eq!(
        q.lanes(&mut c).await.unwrap_or_else(|e| panic!("{e}")),
        [Priority::High, Priority::Default]
    );
    let page = inspect::ready(&mut c, &q, None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.entries[0].get("id"), Some(high.id.as_str()));
    assert_eq!(page.entries[0].get("attempt"), Some("1"));
    let n = admin::replay_dead(&mut c, &q, &ids)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 0, "already replayed");
}
