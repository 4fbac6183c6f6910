//! Latency: jobs offered at a fixed rate (open loop: each `enqueue` is sent
//! at its scheduled time, on a 1 ms tick, whether or not earlier ones
//! returned) to a worker process waiting on the queue. Each job carries the
//! time its `enqueue` call started; the handler records the time to its own
//! start. How late the producer sent against its schedule is reported too,
//! so a stalled producer cannot hide behind these figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use millrace::EnqueueOptions;

use crate::Bench;
use crate::child::{Probe, now_us, read_latencies};
use crate::probe::Counters;
use crate::procs::WorkerProc;
use crate::stats::{Better, Figures, quantile_ms};

/// Runs 1,000 and 10,000 jobs/s, `b.runs` times each, with a child worker
/// at `concurrency`.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    for (rate, label) in [(1_000u64, "1k"), (10_000, "10k")] {
        for run in 0..b.runs {
            let hist = one(b, rate, concurrency).await?;
            for (q, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p999")] {
                figs.add(
                    &format!("latency_{name}_{label}"),
                    "ms",
                    Better::Lower,
                    None,
                    quantile_ms(&hist, q),
                );
            }
            b.progress(&format!(
                "latency at {rate}/s run {}: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                run + 1,
                quantile_ms(&hist, 0.5),
                quantile_ms(&hist, 0.99),
                quantile_ms(&hist, 0.999),
                hist.max() as f64 / 1000.0
            ));
        }
        figs.note(
            &format!("latency_p99_{label}"),
            format!("enqueue to handler start, {rate} jobs/s offered, concurrency {concurrency}"),
        );
    }
    Ok(())
}

async fn one(
    b: &Bench,
    rate: u64,
    concurrency: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let q = b.queue("latency")?;
    let dir = crate::procs::scratch_dir()?;
    let out = dir.join(format!("{}.txt", q.name()));
    let mut args = b.child_args(&q, concurrency);
    args.extend(["--latencies".into(), out.display().to_string()]);
    let worker = WorkerProc::start(&b.self_exe, &args, &b.worker_log)?;
    b.wait_workers(&q, 1).await?;
    let client = Arc::new(b.client().await?);
    // Register the queue outside the measured window (no job is sent).
    let opts = EnqueueOptions::new().queue(q.name());
    client.enqueue_many_with::<Probe>(&[], opts.clone()).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let total = (rate as f64 * b.sizes.latency_secs) as u64;
    let start = Instant::now();
    let start_us = now_us();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let mut max_lag_us = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64 + 1).min(total);
        while sent < due {
            let scheduled_us = start_us + sent * 1_000_000 / rate;
            max_lag_us = max_lag_us.max(now_us().saturating_sub(scheduled_us));
            let client = client.clone();
            let opts = opts.clone();
            tasks.spawn(async move {
                let job = Probe { sent_us: now_us() };
                client.enqueue_with(&job, opts).await
            });
            sent += 1;
        }
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    if max_lag_us > 5_000 {
        b.progress(&format!(
            "note: at {rate}/s the producer sent up to {:.1} ms behind its schedule",
            max_lag_us as f64 / 1000.0
        ));
    }
    let limit = Duration::from_secs(60);
    b.probe
        .wait_counters(q.keys(), Duration::from_millis(5), limit, |c| {
            c.processed >= total
        })
        .await?;
    worker.stop(Duration::from_secs(30))?;
    let expected = Counters {
        processed: total,
        ..Counters::default()
    };
    b.check_and_drop(&q, expected, &format!("latency at {rate}/s"))
        .await?;

    let (hist, seen) = read_latencies(&out)?;
    if seen != total {
        b.fail(format!(
            "latency at {rate}/s: the worker recorded {seen} of {total} jobs"
        ));
    }
    Ok(hist)
}
