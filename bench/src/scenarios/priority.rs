//! Priority lanes: how fast a `high` job is picked up while a worker is
//! busy draining a large `low` backlog, and how many Redis connections a
//! worker holds for queues with several lanes.
//!
//! Pickup: `low` sleep jobs are queued first, a worker process (this
//! program's `child-worker`, the worker library's runtime) drains them at a
//! fixed concurrency, and once it is busy `high` probe jobs are enqueued
//! one at a time at a fixed interval; each records the time from the start
//! of its `enqueue` call to the start of its handler (µs, as the latency
//! scenario). The `low` lane's ready entries are read when the last `high`
//! job is done: the backlog must still be there, or the run proves nothing
//! (a failed check).
//!
//! Measured in strict order (the default) and with `--lane-weights 6,3,1`
//! (a read serves a lane picked by weight first, so `low` is sometimes
//! served before a waiting `high` job).
//!
//! Connections: one `millrace-worker` process on several queues that each
//! use three lanes, counted in `CLIENT LIST` once it is ready (the
//! difference with the count before it started; nothing else connects in
//! between).

use std::time::{Duration, Instant};

use millrace::EnqueueOptions;
use millrace_core::{Priority, Queue};
use millrace_jobs::{Noop, Sleep};

use crate::Bench;
use crate::child::{Probe, now_us, read_latencies};
use crate::procs::WorkerProc;
use crate::scenarios::fill_lane;
use crate::stats::{Better, Figures, quantile_ms};

/// How long each `low` job sleeps, ms.
const LOW_SLEEP_MS: u64 = 10;
/// Queues of the connections measurement.
const CONN_QUEUES: usize = 10;

/// The pickup run's sizes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// `low` jobs queued before the worker starts.
    low: u64,
    /// `high` jobs sent during the measurement.
    high: u64,
    /// Interval between two `high` jobs.
    every: Duration,
    /// The worker's concurrency (`low` drains at about
    /// concurrency × 1000 / [`LOW_SLEEP_MS`] jobs/s).
    concurrency: usize,
    /// Time the worker drains `low` alone before the first `high` job.
    warmup: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                low: 5_000,
                high: 20,
                every: Duration::from_millis(20),
                concurrency: 8,
                warmup: Duration::from_millis(300),
            }
        } else {
            // ~3,200 low jobs/s: 100,000 last ~30 s, the measurement ~6 s.
            Self {
                low: 100_000,
                high: 200,
                every: Duration::from_millis(25),
                concurrency: 32,
                warmup: Duration::from_secs(1),
            }
        }
    }
}

/// The lane orders measured: figure prefix, `--lane-weights` (none:
/// strict).
const ORDERS: [(&str, Option<&str>); 2] =
    [("priority", None), ("priority_weighted", Some(WEIGHTS))];
/// The weighted order measured.
const WEIGHTS: &str = "6,3,1";

/// Runs the pickup measurement `b.runs` times in each lane order
/// (alternating, so a noisy machine moves both alike), then the
/// connections one once.
pub async fn run(b: &Bench, figs: &mut Figures) -> anyhow::Result<()> {
    let plan = Plan::new(b.quick);
    for run in 0..b.runs {
        for (prefix, weights) in ORDERS {
            let r = pickup(b, plan, weights).await?;
            record(figs, prefix, &r);
            b.progress(&format!(
                "{prefix} run {}: high pickup p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; low drained at {:.0} jobs/s, {} still ready at the end",
                run + 1,
                quantile_ms(&r.hist, 0.5),
                quantile_ms(&r.hist, 0.99),
                r.hist.max() as f64 / 1000.0,
                r.low_rate,
                r.low_left
            ));
        }
    }
    figs.note(
        "priority_high_pickup_p99",
        format!(
            "strict: enqueue to handler start of {} high jobs, one every {} ms, behind {} low {} ms sleeps, concurrency {}",
            plan.high,
            plan.every.as_millis(),
            plan.low,
            LOW_SLEEP_MS,
            plan.concurrency
        ),
    );
    figs.note(
        "priority_weighted_high_pickup_p99",
        format!("the same with --lane-weights {WEIGHTS}"),
    );
    figs.note(
        "priority_low_backlog_left",
        "low jobs still ready when the last high job finished",
    );

    let one = connections(b, 1, &[Priority::Default]).await?;
    figs.add(
        "priority_connections_1q_1lane",
        "conns",
        Better::Lower,
        None,
        one as f64,
    );
    let many = connections(b, CONN_QUEUES, &Priority::ALL).await?;
    figs.add(
        "priority_connections_10q_3lanes",
        "conns",
        Better::Lower,
        None,
        many as f64,
    );
    figs.note(
        "priority_connections_10q_3lanes",
        "Redis connections of one millrace-worker on 10 queues × 3 lanes (CLIENT LIST)",
    );
    b.progress(&format!(
        "priority connections: one worker holds {one} on 1 queue, {many} on {CONN_QUEUES} queues × 3 lanes"
    ));
    Ok(())
}

/// Adds one pickup run's figures under `prefix`.
fn record(figs: &mut Figures, prefix: &str, r: &Pickup) {
    for (name, value) in [
        ("high_pickup_p50", quantile_ms(&r.hist, 0.5)),
        ("high_pickup_p99", quantile_ms(&r.hist, 0.99)),
        ("high_pickup_max", r.hist.max() as f64 / 1000.0),
    ] {
        figs.add(
            &format!("{prefix}_{name}"),
            "ms",
            Better::Lower,
            None,
            value,
        );
    }
    figs.add(
        &format!("{prefix}_low_rate"),
        "jobs/s",
        Better::Higher,
        None,
        r.low_rate,
    );
    figs.add(
        &format!("{prefix}_low_backlog_left"),
        "jobs",
        Better::Higher,
        None,
        r.low_left as f64,
    );
}

/// What one pickup run measured.
struct Pickup {
    hist: hdrhistogram::Histogram<u64>,
    low_rate: f64,
    low_left: u64,
}

async fn pickup(b: &Bench, plan: Plan, weights: Option<&str>) -> anyhow::Result<Pickup> {
    let q = b.queue("priority")?;
    let high = q.lane(Priority::High);
    let low = q.lane(Priority::Low);
    let mut conn = b.probe.conn();
    for lane in [&q, &high, &low] {
        lane.declare(&mut conn).await?;
    }
    fill_lane(b, &q, Priority::Low, Sleep { ms: LOW_SLEEP_MS }, plan.low).await?;

    let out = crate::procs::scratch_dir()?.join(format!("{}.txt", q.name()));
    let mut args = b.child_args(&q, plan.concurrency);
    args.extend(["--latencies".into(), out.display().to_string()]);
    if let Some(w) = weights {
        args.extend(["--lane-weights".into(), w.to_owned()]);
    }
    let worker = WorkerProc::start(&b.self_exe, &args, &b.worker_log)?;
    b.wait_workers(&q, 1).await?;
    tokio::time::sleep(plan.warmup).await;

    let client = b.client().await?;
    let opts = EnqueueOptions::new()
        .queue(q.name())
        .priority(Priority::High);
    let before = b.probe.counters(q.keys()).await?.processed;
    let start = Instant::now();
    let mut tick = tokio::time::interval(plan.every);
    for _ in 0..plan.high {
        tick.tick().await;
        client
            .enqueue_with(&Probe { sent_us: now_us() }, opts.clone())
            .await?;
    }
    // Acked entries are deleted: the high lane's stream is empty once every
    // high job is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while b
        .probe
        .stream_counts(&high.keys().stream, q.group())
        .await?
        .0
        > 0
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "priority: high jobs not done within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = b.probe.counters(q.keys()).await?.processed - before;
    let (low_len, low_pending) = b.probe.stream_counts(&low.keys().stream, q.group()).await?;
    let low_left = low_len.saturating_sub(low_pending);
    worker.stop(Duration::from_secs(30))?;

    let counters = b.probe.counters(q.keys()).await?;
    if counters.dead != 0 {
        b.fail(format!("priority: {} job(s) dead-lettered", counters.dead));
    }
    if low_left == 0 {
        b.fail(
            "priority: the low backlog drained before the last high job: the run shows nothing"
                .to_owned(),
        );
    }
    b.probe.drop_queue(q.keys()).await?;

    let (hist, seen) = read_latencies(&out)?;
    if seen != plan.high {
        b.fail(format!(
            "priority: the worker recorded {seen} of {} high jobs",
            plan.high
        ));
    }
    Ok(Pickup {
        hist,
        // The high jobs are in `done` too: a few out of thousands.
        low_rate: done.saturating_sub(seen) as f64 / elapsed,
        low_left,
    })
}

/// Redis connections of one `millrace-worker` on `queues` queues that each
/// use `lanes` (one no-op job per lane per queue, enqueued first so the
/// lanes exist).
async fn connections(b: &Bench, queues: usize, lanes: &[Priority]) -> anyhow::Result<u64> {
    let qs = (0..queues)
        .map(|_| b.queue("connections"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    {
        let client = b.client().await?;
        for q in &qs {
            for &lane in lanes {
                let opts = EnqueueOptions::new().queue(q.name()).priority(lane);
                client.enqueue_with(&Noop::default(), opts).await?;
            }
        }
    }
    // The producer's connection closes once dropped.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = client_count(b).await?;
    let mut args = b.worker_args(&qs[0], 4);
    let names: Vec<&str> = qs.iter().map(Queue::name).collect();
    if let Some(i) = args.iter().position(|a| a == "--queues") {
        args[i + 1] = names.join(",");
    }
    let worker = WorkerProc::start(&b.worker_bin, &args, &b.worker_log)?;
    for q in &qs {
        b.wait_workers(q, 1).await?;
    }
    // Every queue's jobs done, then a second for the sampler and any
    // connection opened after the first heartbeat.
    let expected = lanes.len() as u64;
    for q in &qs {
        b.probe
            .wait_counters(
                q.keys(),
                Duration::from_millis(10),
                Duration::from_secs(30),
                |c| c.processed >= expected,
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = client_count(b).await?;
    worker.stop(Duration::from_secs(30))?;
    for q in &qs {
        b.check_and_drop(
            q,
            crate::probe::Counters {
                processed: expected,
                ..Default::default()
            },
            "priority connections",
        )
        .await?;
    }
    Ok(after.saturating_sub(before))
}

/// Connections the server has now (`CLIENT LIST` lines).
async fn client_count(b: &Bench) -> anyhow::Result<u64> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut b.probe.conn())
        .await?;
    Ok(list.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}
