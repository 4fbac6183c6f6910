//! Enqueue: `enqueue_many` of N jobs in batches, then single `enqueue`
//! calls from 1 and from 64 concurrent tasks (rate and per-call latency).

use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use millrace::EnqueueOptions;

use crate::Bench;
use crate::procs::cpu_seconds_of;
use crate::scenarios::{BATCH, FILL_TASKS, fill, noop};
use crate::stats::{Better, Figures, latency_histogram, quantile_ms};

/// Runs the enqueue scenarios `b.runs` times each.
pub async fn run(b: &Bench, figs: &mut Figures) -> anyhow::Result<()> {
    let n = b.sizes.enqueue_many;
    for run in 0..b.runs {
        let q = b.queue("enqueue-many")?;
        let cpu0 = b.probe.cpu_seconds().await?;
        let own0 = cpu_seconds_of("self").unwrap_or(0.0);
        let t0 = Instant::now();
        fill(b, &q, noop(), n).await?;
        let secs = t0.elapsed().as_secs_f64();
        let own = cpu_seconds_of("self").unwrap_or(0.0) - own0;
        let cpu = b.probe.cpu_seconds().await? - cpu0;
        let len: u64 = redis::cmd("XLEN")
            .arg(&q.keys().stream)
            .query_async(&mut b.probe.conn())
            .await?;
        if len != n {
            b.fail(format!(
                "enqueue_many: {len} entries in the stream, expected {n}"
            ));
        }
        b.probe.drop_queue(q.keys()).await?;
        figs.add(
            "enqueue_many",
            "jobs/s",
            Better::Higher,
            Some("ceiling_add"),
            n as f64 / secs,
        );
        figs.add(
            "enqueue_many_redis_cpu",
            "us/job",
            Better::Lower,
            Some("ceiling_add_cpu"),
            cpu * 1e6 / n as f64,
        );
        figs.add(
            "enqueue_many_client_cpu",
            "us/job",
            Better::Lower,
            None,
            own * 1e6 / n as f64,
        );
        b.progress(&format!(
            "enqueue_many run {}: {:.0} jobs/s",
            run + 1,
            n as f64 / secs
        ));
    }
    figs.note(
        "enqueue_many",
        format!("batches of {BATCH} from {FILL_TASKS} tasks"),
    );

    for (tasks, total, label) in [(1u64, b.sizes.single_1, "1"), (64, b.sizes.single_64, "64")] {
        for run in 0..b.runs {
            let q = b.queue("enqueue-single")?;
            let client = Arc::new(b.client().await?);
            // Register the queue before timing (the client does it once).
            client
                .enqueue_with(&noop(), EnqueueOptions::new().queue(q.name()))
                .await?;
            let cpu0 = b.probe.cpu_seconds().await?;
            let t0 = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for t in 0..tasks {
                let share = total / tasks + u64::from(t < total % tasks);
                let client = client.clone();
                let opts = EnqueueOptions::new().queue(q.name());
                set.spawn(async move {
                    let mut h = latency_histogram()?;
                    let job = noop();
                    for _ in 0..share {
                        let s = Instant::now();
                        client.enqueue_with(&job, opts.clone()).await?;
                        h.saturating_record(s.elapsed().as_micros() as u64);
                    }
                    anyhow::Ok(h)
                });
            }
            let mut hist: Histogram<u64> = latency_histogram()?;
            while let Some(r) = set.join_next().await {
                hist.add(r??)?;
            }
            let secs = t0.elapsed().as_secs_f64();
            let cpu = b.probe.cpu_seconds().await? - cpu0;
            b.probe.drop_queue(q.keys()).await?;
            let name = format!("enqueue_single_{label}");
            figs.add(
                &name,
                "jobs/s",
                Better::Higher,
                Some("ceiling_add"),
                total as f64 / secs,
            );
            figs.add(
                &format!("{name}_redis_cpu"),
                "us/job",
                Better::Lower,
                Some("ceiling_add_cpu"),
                cpu * 1e6 / total as f64,
            );
            figs.add(
                &format!("{name}_p50"),
                "ms",
                Better::Lower,
                None,
                quantile_ms(&hist, 0.5),
            );
            figs.add(
                &format!("{name}_p99"),
                "ms",
                Better::Lower,
                None,
                quantile_ms(&hist, 0.99),
            );
            b.progress(&format!(
                "enqueue from {tasks} task(s) run {}: {:.0} jobs/s",
                run + 1,
                total as f64 / secs
            ));
        }
    }
    Ok(())
}
