//! End to end: a worker process waits on an empty queue while producers
//! enqueue N jobs with `enqueue_many`; timed from the first enqueue to the
//! last acknowledgement.

use std::time::{Duration, Instant};

use crate::Bench;
use crate::probe::Counters;
use crate::procs::WorkerProc;
use crate::scenarios::{BATCH, FILL_TASKS, fill, noop};
use crate::stats::{Better, Figures};

/// Runs the scenario `b.runs` times with one worker at `concurrency`.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    let n = b.sizes.e2e;
    for run in 0..b.runs {
        let q = b.queue("e2e")?;
        let worker = WorkerProc::start(
            &b.worker_bin,
            &b.worker_args(&q, concurrency),
            &b.worker_log,
        )?;
        b.wait_workers(&q, 1).await?;
        let cpu0 = b.probe.cpu_seconds().await?;
        let t0 = Instant::now();
        fill(b, &q, noop(), n).await?;
        let limit = Duration::from_secs(if b.quick { 60 } else { 300 });
        let (t1, _) = b
            .probe
            .wait_counters(q.keys(), Duration::from_millis(1), limit, |c| {
                c.processed >= n
            })
            .await?;
        let cpu = b.probe.cpu_seconds().await? - cpu0;
        let worker_cpu = worker.cpu_seconds().unwrap_or(0.0);
        worker.stop(Duration::from_secs(30))?;
        let expected = Counters {
            processed: n,
            ..Counters::default()
        };
        b.check_and_drop(&q, expected, "end_to_end").await?;
        let rate = n as f64 / (t1 - t0).as_secs_f64();
        figs.add(
            "end_to_end",
            "jobs/s",
            Better::Higher,
            Some("ceiling_combined"),
            rate,
        );
        figs.add(
            "end_to_end_redis_cpu",
            "us/job",
            Better::Lower,
            Some("ceiling_combined_cpu"),
            cpu * 1e6 / n as f64,
        );
        figs.add(
            "end_to_end_worker_cpu",
            "us/job",
            Better::Lower,
            None,
            worker_cpu * 1e6 / n as f64,
        );
        b.progress(&format!("end to end run {}: {rate:.0} jobs/s", run + 1));
    }
    figs.note(
        "end_to_end",
        format!("1 worker at concurrency {concurrency}; producers: batches of {BATCH} from {FILL_TASKS} tasks"),
    );
    Ok(())
}
