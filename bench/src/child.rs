//! `millrace-bench child-worker`: a worker process built on the
//! `millrace-worker` library (the same runtime as the binary) that runs the
//! benchmark's own jobs:
//!
//! - [`Probe`] records the time from its enqueue (a µs timestamp in its
//!   payload) to the start of its handler, and the latencies are written to
//!   a file on exit;
//! - [`FailOnce`] fails its first attempt and succeeds on the second, with
//!   the backoff its payload asks for (zero by default), to drive the retry
//!   and promote scripts;
//! - `millrace_jobs::Sleep`, the priority scenario's backlog.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use millrace_core::{Job, JobContext, JobError, RetryPolicy};
use millrace_worker::{Worker, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// A job that measures its own pickup latency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// When the producer meant to enqueue it, µs since the Unix epoch.
    pub sent_us: u64,
}

impl Job for Probe {
    const NAME: &'static str = "bench_probe";
    fn retry() -> RetryPolicy {
        RetryPolicy::none()
    }
}

/// A job that fails once, then succeeds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailOnce {
    /// Free text to size the payload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pad: String,
    /// Backoff before the second attempt, ms (0: the policy's, which is
    /// zero; left out of the payload then).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backoff_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Job for FailOnce {
    const NAME: &'static str = "bench_fail_once";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(3)
            .base(Duration::ZERO)
            .max_delay(Duration::ZERO)
            .jitter(0.0)
    }
}

/// Flags of the child worker.
#[derive(Debug, clap::Args)]
pub struct ChildArgs {
    /// Redis URL.
    #[arg(long)]
    url: String,
    /// TLS files for a rediss:// URL.
    #[command(flatten)]
    tls: millrace_worker::runner::TlsArgs,
    /// Key prefix.
    #[arg(long)]
    prefix: String,
    /// Queue to work.
    #[arg(long)]
    queue: String,
    /// Jobs at once.
    #[arg(long)]
    concurrency: usize,
    /// Weighted lane order (`high,default,low`, e.g. `6,3,1`); strict
    /// priority without it.
    #[arg(long)]
    lane_weights: Option<millrace_worker::LaneWeights>,
    /// Where to write the probe latencies (µs, one a line) on exit.
    #[arg(long)]
    latencies: Option<PathBuf>,
}

/// Reads (and removes) the latencies a child worker wrote to `path` on
/// exit: a µs histogram and how many there were.
pub fn read_latencies(
    path: &std::path::Path,
) -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("the child worker wrote no {}", path.display()))?;
    let _ = std::fs::remove_file(path);
    let mut hist = crate::stats::latency_histogram()?;
    let mut seen = 0u64;
    for l in text.lines() {
        hist.saturating_record(l.trim().parse::<u64>()?.max(1));
        seen += 1;
    }
    Ok((hist, seen))
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs until SIGTERM, then writes the latencies.
pub async fn run(args: ChildArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut config = WorkerConfig::new(args.url);
    config.tls = args.tls.config();
    config.prefix = args.prefix;
    config.queues = vec![args.queue];
    config.concurrency = args.concurrency;
    config.lane_weights = args.lane_weights;
    let seen: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
    let record = seen.clone();
    let worker = Worker::builder(config)
        .allow_unconsumed_jobs() // probes are enqueued on `args.queue`
        .register(move |job: Probe, _ctx: JobContext| {
            let record = record.clone();
            async move {
                let latency = now_us().saturating_sub(job.sent_us);
                record
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(latency);
                Ok(())
            }
        })
        .register(millrace_jobs::sleep) // the priority scenario's low jobs
        .register(|job: FailOnce, ctx: JobContext| async move {
            if ctx.attempt >= 2 {
                Ok(())
            } else if job.backoff_ms > 0 {
                let backoff = Duration::from_millis(job.backoff_ms);
                Err(JobError::retry_after(backoff, "fails on purpose, once"))
            } else {
                Err(JobError::retry("fails on purpose, once"))
            }
        })
        .build()?;
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            term.recv().await;
        }
        token.cancel();
    });
    worker.run(shutdown).await?;
    if let Some(path) = args.latencies {
        let seen = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        );
        for l in seen.iter() {
            writeln!(out, "{l}")?;
        }
        out.flush()?;
    }
    Ok(())
}
