//! The history of finished jobs: capped by count and by age, off-able,
//! one record per job across workers, dead-letters by reclaim recorded.

use std::collections::HashSet;
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::history::{self, Outcome};
use millrace_core::{
    Acked, DeadRetention, Delivery, Envelope, Failure, HistoryRetention, JobId, Queue, ReadFrom,
};

use crate::common::*;

/// Enqueues `n` jobs and reads them all as `consumer`.
async fn take(conn: &mut Conn, q: &Queue, consumer: &str, n: usize) -> Vec<Delivery> {
    let jobs: Vec<Envelope> = (0..n)
        .map(|_| Envelope::new(JobId::new().0, "probe", "{}".into()))
        .collect();
    q.enqueue(conn, &jobs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    q.read(conn, consumer, n, Duration::from_millis(10), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn acked(d: &[Delivery]) -> Vec<Acked> {
    d.iter()
        .map(|d| {
            let id = d
                .fields
                .as_ref()
                .and_then(|f| f.iter().find(|(k, _)| k == b"id"))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            Acked::new(d.entry_id.clone(), id, "probe", 1, Duration::from_millis(3))
        })
        .collect()
}

async fn xlen(conn: &mut Conn, key: &str) -> u64 {
    millrace_core::redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn setup(
    name: &str,
    history: HistoryRetention,
) -> (millrace_tests::RedisServer, Conn, Queue) {
    let redis = redis();
    let mut conn = conn(&redis.url()).await;
    let q = Queue::new(name)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_history(history);
    q.declare(&mut conn).await.unwrap_or_else(|e| panic!("{e}"));
    (redis, conn, q)
}

#[tokio::test]
async fn the_history_is_capped_by_count() {
    let (_redis, mut conn, q) = setup("capped", HistoryRetention::new(10, Duration::ZERO)).await;
    for _ in 0..5 {
        let d = take(&mut conn, &q, "c1", 100).await;
        let n = q
            .ack_finished(&mut conn, "c1", &acked(&d), Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, 100);
    }
    // Approximate trimming removes whole nodes: at least the cap stays,
    // at most a node more.
    let len = xlen(&mut conn, &q.keys().history).await;
    assert!(
        (10..=110).contains(&len),
        "{len} entries kept for a cap of 10"
    );
    let newest = history::recent(&mut conn, &q, 3, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[0].outcome, Some(Outcome::Succeeded));
    assert_eq!(newest[0].consumer, "c1");
    assert_eq!(newest[0].took_ms, Some(3));
    assert!(newest[0].entry_id > newest[1].entry_id, "newest first");
}

#[tokio::test]
async fn the_history_is_capped_by_age() {
    let (_redis, mut conn, q) = setup(
        "aged",
        HistoryRetention::new(1_000_000, Duration::from_millis(200)),
    )
    .await;
    let old = take(&mut conn, &q, "c1", 300).await;
    q.ack_finished(&mut conn, "c1", &acked(&old), Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(xlen(&mut conn, &q.keys().history).await, 300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new = take(&mut conn, &q, "c1", 1).await;
    q.ack_finished(&mut conn, "c1", &acked(&new), Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Whole nodes older than 200 ms are gone (a node holds at most 100),
    // and the new entry stays.
    let len = xlen(&mut conn, &q.keys().history).await;
    assert!(
        (1..=101).contains(&len),
        "{len} entries left after the age trim"
    );
    let job = acked(&new).remove(0).job_id;
    let found = history::find_finished(&mut conn, &q, &job)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(found.is_some());
}

#[tokio::test]
async fn no_history_writes_nothing() {
    let (_redis, mut conn, q) = setup("quiet", HistoryRetention::off()).await;
    let d = take(&mut conn, &q, "c1", 3).await;
    q.ack_finished(&mut conn, "c1", &acked(&d[..2]), Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    q.fail(
        &mut conn,
        "c1",
        &d[2].entry_id,
        Failure::Dead,
        "x",
        DeadRetention::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let exists: u64 = millrace_core::redis::cmd("EXISTS")
        .arg(&q.keys().history)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exists, 0);
    assert_eq!(left(&mut conn, "quiet").await.dead, 1);
}

/// Two workers finish the same job (the first's lease expired and the
/// second took it over): the second ack finds it acknowledged already, so
/// the job is recorded (and its result stored) once.
#[tokio::test]
async fn a_job_acknowledged_twice_is_recorded_once() {
    let (_redis, mut conn, q) = setup("twice", HistoryRetention::default()).await;
    let d = take(&mut conn, &q, "c1", 1).await;
    let done = acked(&d);
    let first = q
        .ack_finished(&mut conn, "c1", &done, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = q
        .ack_finished(
            &mut conn,
            "c2",
            &[done[0].clone().with_result("\"late\"".into())],
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first, second), (1, 0));
    assert_eq!(xlen(&mut conn, &q.keys().history).await, 1);
    let result: Option<String> = millrace_core::redis::cmd("GET")
        .arg(q.keys().result(&done[0].job_id))
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result, None, "the late ack stored no result");
}

#[tokio::test]
async fn a_dead_letter_by_max_deliveries_is_recorded_with_its_consumer() {
    let (_redis, mut conn, q) = setup("crashy", HistoryRetention::default()).await;
    let d = take(&mut conn, &q, "ghost", 1).await;
    let job = acked(&d).remove(0).job_id;
    let r = q
        .reclaim(
            &mut conn,
            "c2",
            Duration::ZERO,
            10,
            1,
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.dead, 1);
    let f = history::find_finished(&mut conn, &q, &job)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no history record"));
    assert_eq!(f.outcome, Some(Outcome::Dead));
    assert_eq!(f.consumer, "ghost");
    assert_eq!(f.took_ms, None);
    assert!(f.error.is_some_and(|e| e.contains("max_deliveries 1")));
}

/// Jobs over three workers: one history record per job, none twice.
#[tokio::test]
async fn three_workers_record_every_job_once() {
    let redis = redis();
    let url = redis.url();
    let mut conn = conn(&url).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let workers: Vec<Running> = (0..3)
        .map(|_| spawn(probe_worker(&url, tx.clone())))
        .collect();
    let q = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    const N: usize = 600;
    let jobs: Vec<Envelope> = (0..N)
        .map(|_| {
            let mut e = Envelope::new(JobId::new().0, "probe", String::new());
            e.payload = serde_json::to_string(&probe_job("many", 1)).unwrap_or_default();
            e
        })
        .collect();
    let ids: HashSet<String> = jobs.iter().map(|e| e.id.clone()).collect();
    q.enqueue(&mut conn, &jobs)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_left(&conn, "default", Left::default()).await;
    let all = history::recent(&mut conn, &q, 10_000, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), N);
    let seen: HashSet<String> = all.iter().map(|f| f.job_id.clone()).collect();
    assert_eq!(seen, ids, "every job once");
    let consumers: HashSet<&str> = all.iter().map(|f| f.consumer.as_str()).collect();
    let names: HashSet<String> = workers.iter().map(|w| w.consumer.clone()).collect();
    assert!(
        consumers.iter().all(|c| names.contains(*c)),
        "{consumers:?}"
    );
    assert!(all.iter().all(|f| f.outcome == Some(Outcome::Succeeded)));
    for w in workers {
        w.shutdown().await;
    }
}
