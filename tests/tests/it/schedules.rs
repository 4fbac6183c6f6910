//! Periodic jobs: one enqueue per fire time whatever the number of workers,
//! missed-fire policies after downtime, DST through the claim script, and
//! the worker binary's `--schedule` flag.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::schedule::store::{self, Claimed};
use millrace_core::schedule::{Missed, Plan, Schedule, Timing, plan};
use millrace_worker::{Job, JobContext, JobError, Worker};
use serde::{Deserialize, Serialize};

use crate::common::*;
use crate::processes::{read_runs, sigterm, start_worker, wait_exit, worker_output};

/// The job the schedules fire (its payload says which test).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    test: String,
}

impl Job for Tick {
    const NAME: &'static str = "tick";
}

async fn tick(_job: Tick, _ctx: JobContext) -> Result<(), JobError> {
    Ok(())
}

/// A worker that runs `schedule`; its own queue (`default`) is not the
/// schedule's, so the fired jobs stay in their stream to be counted.
fn scheduling_worker(url: &str, schedule: Schedule) -> Running {
    spawn(
        Worker::builder(fast_config(url))
            .register(tick)
            .schedule(schedule),
    )
}

fn every_second(test: &str) -> Schedule {
    Schedule::cron("* * * * * *")
        .unwrap_or_else(|e| panic!("{e}"))
        .job(Tick { test: test.into() })
        .queue("ticks")
}

/// The entries of `queue`'s ready stream, as field maps.
async fn entries(conn: &mut Conn, queue: &str) -> Vec<HashMap<String, String>> {
    let k = millrace_core::Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<(String, HashMap<String, String>)> = millrace_core::redis::cmd("XRANGE")
        .arg(&k.stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|r| r.1).collect()
}

/// How many entries of `queue` there are per fire time.
async fn fires(conn: &mut Conn, queue: &str) -> BTreeMap<u64, u32> {
    let mut out = BTreeMap::new();
    for e in entries(conn, queue).await {
        let fire: u64 = e
            .get("fire_at")
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("entry without fire_at: {e:?}"));
        let schedule = e.get("schedule").map_or("", String::as_str);
        assert_eq!(e.get("id"), Some(&format!("{schedule}@{fire}")), "{e:?}");
        *out.entry(fire).or_insert(0) += 1;
    }
    out
}

async fn hget(conn: &mut Conn, queue: &str, field: &str) -> Option<String> {
    let k = millrace_core::Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    millrace_core::redis::cmd("HGET")
        .arg(&k.schedules)
        .arg(field)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn hset(conn: &mut Conn, queue: &str, field: &str, value: u64) {
    let k = millrace_core::Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    millrace_core::redis::cmd("HSET")
        .arg(&k.schedules)
        .arg(field)
        .arg(value)
        .query_async::<()>(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn live_workers(conn: &mut Conn, queue: &str) -> u64 {
    let k = millrace_core::Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    millrace_core::redis::cmd("ZCARD")
        .arg(&k.workers)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A ten-second window of whole seconds starting a second or two from now
/// (server time), once `n` workers are up.
async fn window_after_workers(conn: &Conn, n: u64) -> (u64, u64) {
    eventually("every worker to be up", || {
        let mut c = conn.clone();
        async move { live_workers(&mut c, "default").await == n }
    })
    .await;
    let start = (server_ms(&mut conn.clone()).await / 1000 + 2) * 1000;
    (start, start + 10_000)
}

async fn wait_server_time(conn: &Conn, at: u64) {
    loop {
        let now = server_ms(&mut conn.clone()).await;
        if now >= at {
            return;
        }
        tokio::time::sleep(Duration::from_millis((at - now).min(500))).await;
    }
}

/// Exactly one entry per whole second of the window.
fn assert_one_per_second(counts: &BTreeMap<u64, u32>, (start, end): (u64, u64)) {
    let in_window: Vec<(u64, u32)> = counts.range(start..end).map(|(f, n)| (*f, *n)).collect();
    let want: Vec<(u64, u32)> = (0..10).map(|i| (start + i * 1000, 1)).collect();
    assert_eq!(in_window, want, "fires in [{start}, {end})");
    assert!(
        counts.values().all(|n| *n == 1),
        "a fire time enqueued twice: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_and_a_one_second_schedule_enqueue_ten_jobs_in_ten_seconds() {
    let redis = redis();
    let url = redis.url();
    let c = conn(&url).await;
    let workers: Vec<Running> = (0..3)
        .map(|_| scheduling_worker(&url, every_second("three").name("tick")))
        .collect();
    let window = window_after_workers(&c, 3).await;
    wait_server_time(&c, window.1).await;
    eventually("every fire of the window to be enqueued", || {
        let mut c = c.clone();
        async move {
            fires(&mut c, "ticks")
                .await
                .range(window.0..window.1)
                .count()
                == 10
        }
    })
    .await;
    for w in workers {
        w.shutdown().await;
    }
    let counts = fires(&mut c.clone(), "ticks").await;
    assert_one_per_second(&counts, window);
    // Nothing was missed between the first fire and the last.
    let (first, last) = (counts.keys().next(), counts.keys().last());
    if let (Some(first), Some(last)) = (first, last) {
        assert_eq!(counts.len() as u64, (last - first) / 1000 + 1, "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_run_each_fire_of_a_flag_schedule_once() {
    let redis = redis();
    let url = redis.url();
    let c = conn(&url).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let records: Vec<std::path::PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("{i}.runs")))
        .collect();
    let flag = ["--schedule", "tick=* * * * * *=noop={}"];
    let mut procs: Vec<_> = records
        .iter()
        .map(|r| start_worker(&url, r, &flag))
        .collect();
    let window = window_after_workers(&c, 3).await;
    wait_server_time(&c, window.1).await;
    let paths: Vec<&std::path::Path> = records.iter().map(|p| p.as_path()).collect();
    let want: Vec<String> = (0..10)
        .map(|i| format!("tick@{}", window.0 + i * 1000))
        .collect();
    eventually("every fire of the window to run", || {
        let runs = read_runs(&paths);
        let done = want.iter().all(|id| runs.contains_key(id));
        async move { done }
    })
    .await;
    for p in &procs {
        sigterm(p);
    }
    for p in &mut procs {
        assert!(wait_exit(p, Duration::from_secs(20)).success());
    }
    let mut counts = BTreeMap::new();
    for (id, n) in read_runs(&paths) {
        let fire: u64 = id
            .strip_prefix("tick@")
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("unexpected job id {id}"));
        counts.insert(fire, n);
    }
    assert_one_per_second(&counts, window);
    let def = hget(&mut c.clone(), "default", "def:tick").await;
    assert!(
        def.is_some_and(|d| d.contains(r#""cron":"* * * * * *""#)),
        "the definition is registered"
    );
}

/// Hourly fires, five hours of downtime (a cursor seeded in the past), no
/// grace: what each policy enqueues when a worker comes back.
async fn after_downtime(missed: Missed) -> (Vec<u64>, Vec<u64>) {
    let redis = redis();
    let url = redis.url();
    let mut c = conn(&url).await;
    let now = server_ms(&mut c).await;
    let seed = now - 5 * 3_600_000;
    hset(&mut c, "ticks", "last:hourly", seed).await;
    let schedule = Schedule::cron("0 0 * * * *")
        .unwrap_or_else(|e| panic!("{e}"))
        .job(Tick {
            test: "downtime".into(),
        })
        .name("hourly")
        .queue("ticks")
        .missed(missed)
        .grace(Duration::ZERO);
    let w = scheduling_worker(&url, schedule);
    let latest_hour = now / 3_600_000 * 3_600_000;
    eventually("the cursor to move", || {
        let mut c = c.clone();
        async move {
            hget(&mut c, "ticks", "last:hourly")
                .await
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v >= latest_hour)
        }
    })
    .await;
    w.shutdown().await;
    // The cursor is the latest due fire (an hour may have begun meanwhile).
    let latest = hget(&mut c, "ticks", "last:hourly")
        .await
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_default();
    assert_eq!(latest % 3_600_000, 0, "the cursor is a fire time");
    let counts = fires(&mut c, "ticks").await;
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // The hours missed: five, or six if an hour began meanwhile.
    let missed_hours = (seed / 3_600_000 + 1..=latest / 3_600_000)
        .map(|h| h * 3_600_000)
        .collect();
    (counts.into_keys().collect(), missed_hours)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_skip_enqueues_none_of_the_missed_fires() {
    let (fired, missed) = after_downtime(Missed::Skip).await;
    assert!(missed.len() >= 5, "{missed:?}");
    assert_eq!(fired, Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_once_enqueues_the_latest_missed_fire() {
    let (fired, missed) = after_downtime(Missed::Once).await;
    assert!(missed.len() >= 5, "{missed:?}");
    assert_eq!(fired[..], missed[missed.len() - 1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_all_enqueues_every_missed_fire() {
    let (fired, missed) = after_downtime(Missed::All).await;
    assert!(missed.len() >= 5, "{missed:?}");
    assert_eq!(fired, missed);
}

fn timing(expr: &str, tz: &str) -> Timing {
    Timing::new(expr, tz).unwrap_or_else(|e| panic!("{e}"))
}

fn the_claim(p: Plan) -> millrace_core::schedule::Claim {
    match p {
        Plan::Claim(c) => c,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn def(s: Schedule) -> millrace_core::schedule::ScheduleDef {
    s.definition(|_| None).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn catching_up_on_all_fires_stops_at_a_hundred() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("ticks").unwrap_or_else(|e| panic!("{e}"));
    let now = server_ms(&mut c).await;
    let d = def(every_second("bound").name("tick").missed(Missed::All));
    hset(&mut c, "ticks", "last:tick", now - 3_600_000).await;
    let claim = the_claim(plan(
        &d.timing().unwrap_or_else(|e| panic!("{e}")),
        Missed::All,
        d.grace(),
        Some(now - 3_600_000),
        now,
    ));
    assert!(claim.more);
    let done = store::claim(&mut c, &queue, &d, &claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(done, Claimed::Enqueued { enqueued: 100, .. }),
        "{done:?}"
    );
    let counts = fires(&mut c, "ticks").await;
    assert_eq!(counts.len(), 100);
    assert_eq!(counts.keys().last(), Some(&(now / 1000 * 1000)));
}

/// The claim script with explicit times across Europe/Paris's DST changes:
/// a daily 02:30 fires once on the day it does not exist (at 03:00 CEST)
/// and once on the day it happens twice; a second claim from the same
/// cursor (another worker, late) enqueues nothing.
#[tokio::test]
async fn the_claim_script_fires_once_per_fire_time_across_dst_changes() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("ticks").unwrap_or_else(|e| panic!("{e}"));
    let schedule = Schedule::cron("0 30 2 * * *")
        .and_then(|s| s.timezone("Europe/Paris"))
        .unwrap_or_else(|e| panic!("{e}"))
        .job(Tick { test: "dst".into() })
        .name("tick")
        .queue("ticks")
        .missed(Missed::All);
    let d = def(schedule);
    let t = timing(&d.cron, &d.tz);
    // Unix ms of 2026-03-28 11:00 UTC, 2026-03-30 10:00 UTC (noon in
    // Paris), 2026-10-24 10:00 UTC and 2026-10-26 11:00 UTC.
    let (spring_from, spring_to) = (1_774_695_600_000, 1_774_864_800_000);
    let (autumn_from, autumn_to) = (1_792_836_000_000, 1_793_012_400_000);
    hset(&mut c, "ticks", "last:tick", spring_from).await;
    for (from, to, want) in [
        // 2026-03-29 03:00 CEST (01:00 UTC); 2026-03-30 02:30 CEST.
        (
            spring_from,
            spring_to,
            [1_774_746_000_000, 1_774_830_600_000],
        ),
        // 2026-10-25 02:30 CEST (00:30 UTC), not 02:30 CET too;
        // 2026-10-26 02:30 CET (01:30 UTC).
        (
            autumn_from,
            autumn_to,
            [1_792_888_200_000, 1_792_978_200_000],
        ),
    ] {
        hset(&mut c, "ticks", "last:tick", from).await;
        let claim = the_claim(plan(&t, Missed::All, d.grace(), Some(from), to));
        assert_eq!(claim.fires, want);
        let done = store::claim(&mut c, &queue, &d, &claim)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(done, Claimed::Enqueued { enqueued: 2, cursor, .. } if cursor == want[1]),
            "{done:?}"
        );
        let late = store::claim(&mut c, &queue, &d, &claim)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(late, Claimed::Lost { cursor: Some(cur), .. } if cur == want[1]),
            "{late:?}"
        );
    }
    let counts = fires(&mut c, "ticks").await;
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [
            (1_774_746_000_000, 1),
            (1_774_830_600_000, 1),
            (1_792_888_200_000, 1),
            (1_792_978_200_000, 1)
        ]
    );
}

/// A claim past the server's clock is refused as early; a paused schedule
/// moves its cursor but enqueues nothing.
#[tokio::test]
async fn early_and_paused_claims_enqueue_nothing() {
    let redis = redis();
    let mut c = conn(&redis.url()).await;
    let queue = Queue::new("ticks").unwrap_or_else(|e| panic!("{e}"));
    let d = def(every_second("paused").name("tick").missed(Missed::All));
    let t = d.timing().unwrap_or_else(|e| panic!("{e}"));
    let now = server_ms(&mut c).await / 1000 * 1000;
    hset(&mut c, "ticks", "last:tick", now - 3_000).await;
    let ahead = the_claim(plan(
        &t,
        Missed::All,
        d.grace(),
        Some(now - 3_000),
        now + 60_000,
    ));
    let early = store::claim(&mut c, &queue, &d, &ahead)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(early, Claimed::Early { .. }), "{early:?}");
    store::register(&mut c, &queue, &d)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        store::set_paused(&mut c, &queue, "tick", true)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let claim = the_claim(plan(&t, Missed::All, d.grace(), Some(now - 3_000), now));
    let paused = store::claim(&mut c, &queue, &d, &claim)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(paused, Claimed::Paused { cursor, .. } if cursor == now),
        "{paused:?}"
    );
    assert!(entries(&mut c, "ticks").await.is_empty());
    assert!(
        !store::set_paused(&mut c, &queue, "nope", true)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "an unknown schedule is not paused"
    );
}

#[test]
fn the_worker_binary_refuses_a_bad_schedule_flag_in_one_line() {
    let cases = [
        (
            "tick",
            "millrace-worker: invalid --schedule \"tick\": expected NAME=CRON=JOB=JSON, e.g. digest=0 */5 * * * *=noop={}",
        ),
        (
            "t=0 61 * * * *=noop={}",
            "millrace-worker: invalid --schedule \"t=0 61 * * * *=noop={}\": invalid cron expression \"0 61 * * * *\": ",
        ),
        (
            "t[tz:Europe/Pariss]=* * * * *=noop",
            "millrace-worker: invalid --schedule \"t[tz:Europe/Pariss]=* * * * *=noop\": unknown time zone \"Europe/Pariss\"",
        ),
        (
            "t=* * * * *=nope={}",
            "millrace-worker: schedule \"t\": no job named `nope` is registered here: register it or name the queue",
        ),
    ];
    for (flag, want) in cases {
        let (ok, err) = worker_output(&["--schedule", flag], "redis://127.0.0.1:1");
        assert!(!ok, "{flag}");
        assert!(err.starts_with(want), "{flag}: {err}");
    }
}
