//! Footprint at rest: a worker process's resident memory once started on
//! an empty queue. (Memory under load and Redis memory per 100,000 queued
//! jobs are measured by the process scenario; every scenario checks that
//! its queues were left empty.)

use std::time::Duration;

use crate::Bench;
use crate::probe::Counters;
use crate::procs::WorkerProc;
use crate::stats::{Better, Figures};

/// Starts a worker at `concurrency` on an empty queue `b.runs` times and
/// reads its RSS after a second.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    for _ in 0..b.runs {
        let q = b.queue("footprint")?;
        let worker = WorkerProc::start(
            &b.worker_bin,
            &b.worker_args(&q, concurrency),
            &b.worker_log,
        )?;
        b.wait_workers(&q, 1).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = worker.rss_mb().unwrap_or(0.0);
        worker.stop(Duration::from_secs(30))?;
        b.check_and_drop(&q, Counters::default(), "footprint")
            .await?;
        figs.add("worker_rss_idle_mb", "MB", Better::Lower, None, rss);
    }
    figs.note("worker_rss_idle_mb", "VmRSS 1 s after start, empty queue");
    Ok(())
}
