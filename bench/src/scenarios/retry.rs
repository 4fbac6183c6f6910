//! Retry path: N jobs that fail once and then succeed, with a zero
//! backoff, so every job goes through fail.lua, the delayed set and
//! promote.lua once. Timed like the process scenario.

use std::time::Duration;

use crate::Bench;
use crate::child::FailOnce;
use crate::probe::{Counters, commands_per_job};
use crate::procs::WorkerProc;
use crate::scenarios::fill;
use crate::scenarios::process::commands_text;
use crate::stats::{Better, Figures};

/// Runs the scenario `b.runs` times with one child worker at
/// `concurrency`.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    let n = b.sizes.retry;
    let job = FailOnce {
        pad: crate::ceiling::payload_pad(),
    };
    for run in 0..b.runs {
        let q = b.queue("retry")?;
        fill(b, &q, job.clone(), n).await?;
        let calls0 = b.probe.command_calls().await?;
        let cpu0 = b.probe.cpu_seconds().await?;
        let args = vec![
            "child-worker".to_owned(),
            "--url".into(),
            b.url.clone(),
            "--prefix".into(),
            b.prefix.clone(),
            "--queue".into(),
            q.name().to_owned(),
            "--concurrency".into(),
            concurrency.to_string(),
        ];
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
        if run == 0 {
            println!(
                "  retry Redis commands: {}",
                commands_text(&commands_per_job(&calls0, &calls1, n))
            );
        }
        worker.stop(Duration::from_secs(30))?;
        let expected = Counters {
            processed: n,
            retried: n,
            dead: 0,
        };
        b.check_and_drop(&q, expected, "retry").await?;
        // Jobs finished per second; a job is worth two attempts here.
        let done_before = (c0.processed + c0.retried) as f64 / 2.0;
        let rate = (n as f64 - done_before) / (t1 - t0).as_secs_f64();
        figs.add(
            "retry",
            "jobs/s",
            Better::Higher,
            Some("ceiling_consume"),
            rate,
        );
        figs.add(
            "retry_redis_cpu",
            "us/job",
            Better::Lower,
            Some("ceiling_consume_cpu"),
            cpu * 1e6 / n as f64,
        );
        b.progress(&format!("retry run {}: {rate:.0} jobs/s", run + 1));
    }
    figs.note(
        "retry",
        format!("each job fails once (backoff 0), then succeeds; concurrency {concurrency}"),
    );
    Ok(())
}
