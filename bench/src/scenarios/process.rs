//! Process: a pre-filled queue of N no-op jobs drained by one
//! `millrace-worker` process at each concurrency tried, then by two. The
//! rate is timed from the first acknowledged batch to the last, so worker
//! start-up is left out. Last, one worker with a single runtime thread.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Bench;
use crate::probe::{Counters, commands_per_job};
use crate::procs::WorkerProc;
use crate::scenarios::{fill, noop};
use crate::stats::{Better, Figures};

/// What one drain measured.
pub struct Drain {
    /// Jobs per second.
    pub rate: f64,
    /// Redis CPU µs per job.
    pub cpu_us: f64,
    /// Redis commands per job, by command.
    pub commands: Vec<(String, f64)>,
    /// Worker CPU µs per job (all workers).
    pub worker_cpu_us: f64,
    /// Highest worker RSS seen, MB (largest over the workers).
    pub peak_rss_mb: f64,
    /// Redis memory per 100,000 queued jobs, MB.
    pub mem_per_100k_mb: f64,
    /// Memory of the queue's history stream after the drain, per 100,000
    /// jobs, MB (`MEMORY USAGE`).
    pub history_per_100k_mb: f64,
}

/// Fills a fresh queue with `n` no-op jobs and drains it with `workers`
/// worker processes at `concurrency` each.
pub async fn drain(b: &Bench, workers: usize, concurrency: usize, n: u64) -> anyhow::Result<Drain> {
    drain_with_env(b, workers, concurrency, n, &[]).await
}

/// [`drain`] with extra environment variables for the workers.
pub async fn drain_with_env(
    b: &Bench,
    workers: usize,
    concurrency: usize,
    n: u64,
    env: &[(&str, &str)],
) -> anyhow::Result<Drain> {
    let q = b.queue("process")?;
    let mem0 = b.probe.used_memory().await?;
    fill(b, &q, noop(), n).await?;
    let mem1 = b.probe.used_memory().await?;
    let calls0 = b.probe.command_calls().await?;
    let cpu0 = b.probe.cpu_seconds().await?;
    let mut procs = Vec::new();
    for _ in 0..workers {
        procs.push(WorkerProc::start_with_env(
            &b.worker_bin,
            &b.worker_args(&q, concurrency),
            &b.worker_log,
            env,
        )?);
    }
    let limit = Duration::from_secs(if b.quick { 60 } else { 300 });
    let every = Duration::from_millis(1);
    let (t0, c0) = b
        .probe
        .wait_counters(q.keys(), every, limit, |c| c.processed > 0)
        .await?;
    let (t1, _) = b
        .probe
        .wait_counters(q.keys(), every, limit, |c| c.processed >= n)
        .await?;
    let cpu1 = b.probe.cpu_seconds().await?;
    let calls1 = b.probe.command_calls().await?;
    let worker_cpu: f64 = procs.iter().filter_map(WorkerProc::cpu_seconds).sum();
    let peak = procs
        .iter()
        .map(WorkerProc::peak_rss_mb)
        .fold(0.0, f64::max);
    for p in procs {
        p.stop(Duration::from_secs(30))?;
    }
    let history_bytes = b.probe.key_memory(&q.keys().history).await?;
    let expected = Counters {
        processed: n,
        ..Counters::default()
    };
    b.check_and_drop(
        &q,
        expected,
        &format!("process ({workers} worker(s), concurrency {concurrency})"),
    )
    .await?;
    let secs = (t1 - t0).as_secs_f64().max(1e-6);
    Ok(Drain {
        rate: (n - c0.processed) as f64 / secs,
        cpu_us: (cpu1 - cpu0) * 1e6 / n as f64,
        commands: commands_per_job(&calls0, &calls1, n),
        worker_cpu_us: worker_cpu * 1e6 / n as f64,
        peak_rss_mb: peak,
        mem_per_100k_mb: (mem1.saturating_sub(mem0)) as f64 / n as f64 * 100_000.0
            / (1024.0 * 1024.0),
        history_per_100k_mb: history_bytes as f64 / n as f64 * 100_000.0 / (1024.0 * 1024.0),
    })
}

/// Commands per job as one line, the eight most frequent first.
pub fn commands_text(c: &[(String, f64)]) -> String {
    let total: f64 = c.iter().map(|x| x.1).sum();
    let parts: Vec<String> = c
        .iter()
        .take(12)
        .map(|(k, v)| format!("{k} {v:.3}"))
        .collect();
    format!("{total:.2} commands/job: {}", parts.join(", "))
}

/// Records a drain's rate, Redis CPU and worker CPU per job as `name`,
/// `name_redis_cpu` and `name_worker_cpu`.
pub fn record(figs: &mut Figures, name: &str, d: &Drain) {
    figs.add(
        name,
        "jobs/s",
        Better::Higher,
        Some("ceiling_consume"),
        d.rate,
    );
    figs.add(
        &format!("{name}_redis_cpu"),
        "us/job",
        Better::Lower,
        Some("ceiling_consume_cpu"),
        d.cpu_us,
    );
    figs.add(
        &format!("{name}_worker_cpu"),
        "us/job",
        Better::Lower,
        None,
        d.worker_cpu_us,
    );
}

/// Runs the sweep and the runs at the best concurrency; returns it.
pub async fn run(b: &Bench, figs: &mut Figures) -> anyhow::Result<usize> {
    let n = b.sizes.process;
    let mut best: Option<(usize, Drain)> = None;
    let mut commands = BTreeMap::new();
    for &c in &b.concurrencies {
        let d = drain(b, 1, c, n).await?;
        b.progress(&format!(
            "1 worker, concurrency {c}: {:.0} jobs/s, {:.2} us Redis CPU/job, {:.2} us worker CPU/job, {}",
            d.rate,
            d.cpu_us,
            d.worker_cpu_us,
            commands_text(&d.commands)
        ));
        figs.add(
            &format!("process_1_worker_c{c}"),
            "jobs/s",
            Better::Higher,
            Some("ceiling_consume"),
            d.rate,
        );
        commands.insert(c, commands_text(&d.commands));
        if best.as_ref().is_none_or(|(_, b)| d.rate > b.rate) {
            best = Some((c, d));
        }
    }
    let Some((chosen, first)) = best else {
        anyhow::bail!("no concurrency to try");
    };
    let mut drains = vec![first];
    for _ in 1..b.runs {
        drains.push(drain(b, 1, chosen, n).await?);
    }
    for d in &drains {
        record(figs, "process_1_worker", d);
        figs.add("worker_rss_mb", "MB", Better::Lower, None, d.peak_rss_mb);
        figs.add(
            "redis_mem_per_100k_mb",
            "MB",
            Better::Lower,
            None,
            d.mem_per_100k_mb,
        );
    }
    figs.note("process_1_worker", format!("concurrency {chosen}"));
    figs.note("worker_rss_mb", "peak VmRSS while draining, 1 worker");
    if let Some(text) = commands.get(&chosen) {
        println!("  process_1_worker Redis commands: {text}");
    }
    for run in 0..b.runs {
        let d = drain(b, 2, chosen, n).await?;
        b.progress(&format!("2 workers run {}: {:.0} jobs/s", run + 1, d.rate));
        record(figs, "process_2_workers", &d);
    }
    figs.note("process_2_workers", format!("concurrency {chosen} each"));
    // The worker binary's runtime has one thread per core by default; on a
    // box it shares with Redis one thread may do better (a deployment knob
    // tokio reads from the environment).
    for run in 0..b.runs {
        let d = drain_with_env(b, 1, chosen, n, &[("MILLRACE_THREADS", "1")]).await?;
        b.progress(&format!(
            "1 worker, 1 runtime thread, run {}: {:.0} jobs/s, {:.2} us worker CPU/job",
            run + 1,
            d.rate,
            d.worker_cpu_us
        ));
        record(figs, "process_1_worker_1_thread", &d);
    }
    figs.note(
        "process_1_worker_1_thread",
        format!("concurrency {chosen}, --threads 1"),
    );
    Ok(chosen)
}
