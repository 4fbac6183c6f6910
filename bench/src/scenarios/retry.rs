//! Retry path: N jobs that fail once and then succeed, so every job goes
//! through fail.lua once. Three backoffs: zero (`retry`: the worker runs
//! the next attempt at once, the entry still pending for it, only its
//! attempt record written), 1 ms and 10 ms (`retry_1ms`, `retry_10ms`:
//! through the delayed set and promote.lua). Timed like the process
//! scenario.

use std::time::Duration;

use crate::Bench;
use crate::child::FailOnce;
use crate::probe::{Counters, commands_per_job};
use crate::procs::WorkerProc;
use crate::scenarios::fill;
use crate::scenarios::process::commands_text;
use crate::stats::{Better, Figures};

/// The backoffs measured, ms, and the name of their figures.
const BACKOFFS: [(u64, &str); 3] = [(0, "retry"), (1, "retry_1ms"), (10, "retry_10ms")];

/// Runs the scenario `b.runs` times per backoff with one child worker at
/// `concurrency`.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    for (backoff_ms, name) in BACKOFFS {
        run_backoff(b, figs, concurrency, backoff_ms, name).await?;
    }
    Ok(())
}

async fn run_backoff(
    b: &Bench,
    figs: &mut Figures,
    concurrency: usize,
    backoff_ms: u64,
    name: &str,
) -> anyhow::Result<()> {
    let n = b.sizes.retry;
    let job = FailOnce {
        pad: crate::ceiling::payload_pad(),
        backoff_ms,
    };
    for run in 0..b.runs {
        let q = b.queue("retry")?;
        fill(b, &q, job.clone(), n).await?;
        let calls0 = b.probe.command_calls().await?;
        let usec0 = b.probe.command_usec().await?;
        let cpu0 = b.probe.cpu_seconds().await?;
        let args = b.child_args(&q, concurrency);
        // Every first attempt logs a warning by design: keep errors only.
        let worker = WorkerProc::start(&b.self_exe, &args, "error")?;
        let limit = Duration::from_secs(if b.quick { 60 } else { 300 });
        let every = Duration::from_millis(1);
        let (t0, c0) = b
            .probe
            .wait_counters(q.keys(), every, limit, |c| c.processed + c.retried > 0)
            .await?;
        let (t1, _) = b
            .probe
            .wait_counters(q.keys(), every, limit, |c| c.processed >= n)
            .await?;
        let cpu = b.probe.cpu_seconds().await? - cpu0;
        let calls1 = b.probe.command_calls().await?;
        let usec1 = b.probe.command_usec().await?;
        if run == 0 {
            println!(
                "  {name} Redis commands: {}",
                commands_text(&commands_per_job(&calls0, &calls1, n))
            );
            // Where the time inside commands goes; script commands count
            // twice (alone and in `evalsha`), the rest of INFO cpu is
            // networking and the event loop.
            let usec: Vec<String> = commands_per_job(&usec0, &usec1, n)
                .iter()
                .take(10)
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            println!("  {name} Redis µs/job in commands: {}", usec.join(", "));
        }
        worker.stop(Duration::from_secs(30))?;
        let expected = Counters {
            processed: n,
            retried: n,
            dead: 0,
        };
        b.check_and_drop(&q, expected, name).await?;
        // Jobs finished per second; a job is worth two attempts here.
        let done_before = (c0.processed + c0.retried) as f64 / 2.0;
        let rate = (n as f64 - done_before) / (t1 - t0).as_secs_f64();
        figs.add(
            name,
            "jobs/s",
            Better::Higher,
            Some("ceiling_consume"),
            rate,
        );
        figs.add(
            &format!("{name}_redis_cpu"),
            "us/job",
            Better::Lower,
            Some("ceiling_consume_cpu"),
            cpu * 1e6 / n as f64,
        );
        b.progress(&format!("{name} run {}: {rate:.0} jobs/s", run + 1));
    }
    figs.note(
        name,
        format!(
            "each job fails once (backoff {backoff_ms} ms), then succeeds; concurrency {concurrency}"
        ),
    );
    Ok(())
}
