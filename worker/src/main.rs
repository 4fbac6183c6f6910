//! `millrace-worker`: runs the job catalogue of `millrace-jobs` on the
//! queues given by flags or `MILLRACE_*` environment variables. SIGINT or
//! SIGTERM starts a graceful shutdown; a second signal exits at once.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use millrace_core::{DeadRetention, Job, JobContext, JobError};
use millrace_jobs as jobs;
use millrace_worker::{Worker, WorkerBuilder, WorkerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

#[cfg(feature = "postgres")]
mod outbox_relay;

/// mimalloc: a worker allocates ~50 times per job (reply parsing, tasks,
/// strings); glibc malloc/free were about a quarter of its CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Millrace jobs from Redis Streams.
#[derive(Debug, Parser)]
#[command(name = "millrace-worker", version)]
struct Args {
    /// Redis URL (password is never logged).
    #[arg(
        long,
        env = "MILLRACE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// Key prefix.
    #[arg(long, env = "MILLRACE_PREFIX", default_value = "millrace")]
    prefix: String,
    /// Queues to work, comma-separated.
    #[arg(
        long,
        env = "MILLRACE_QUEUES",
        default_value = "default",
        value_delimiter = ','
    )]
    queues: Vec<String>,
    /// Jobs run at once, per queue.
    #[arg(long, env = "MILLRACE_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    /// Lease of a running job's entry (e.g. 30s).
    #[arg(long, env = "MILLRACE_LEASE", default_value = "30s", value_parser = millrace_worker::config::parse_duration)]
    lease: Duration,
    /// How often leases are renewed; defaults to a third of the lease.
    #[arg(long, env = "MILLRACE_RENEW_EVERY", value_parser = millrace_worker::config::parse_duration)]
    renew_every: Option<Duration>,
    /// How often expired leases are reclaimed.
    #[arg(long, env = "MILLRACE_RECLAIM_EVERY", default_value = "5s", value_parser = millrace_worker::config::parse_duration)]
    reclaim_every: Duration,
    /// Deliveries without outcome before an entry is dead-lettered.
    #[arg(long, env = "MILLRACE_MAX_DELIVERIES", default_value_t = 5)]
    max_deliveries: u32,
    /// How long running jobs may finish at shutdown.
    #[arg(long, env = "MILLRACE_GRACE", default_value = "25s", value_parser = millrace_worker::config::parse_duration)]
    grace: Duration,
    /// Longest a read blocks waiting for jobs; defaults to 2s, or half the
    /// lease when that is shorter.
    #[arg(long, env = "MILLRACE_BLOCK", value_parser = millrace_worker::config::parse_duration)]
    block: Option<Duration>,
    /// Time limit of an attempt for jobs that set none.
    #[arg(long, env = "MILLRACE_JOB_TIMEOUT", value_parser = millrace_worker::config::parse_duration)]
    job_timeout: Option<Duration>,
    /// How long a job no handler here knows (an unknown name, a newer wire
    /// version: producers deployed ahead of workers) is deferred with
    /// backoff before it is dead-lettered (0s = dead-letter at once).
    #[arg(long, env = "MILLRACE_UNKNOWN_JOB_WINDOW", default_value = "15m", value_parser = millrace_worker::config::parse_duration)]
    unknown_job_window: Duration,
    /// Dead-letter stream: keep about this many entries (0 = unbounded).
    #[arg(long, env = "MILLRACE_DEAD_MAX_LEN", default_value_t = 100_000)]
    dead_max_len: u64,
    /// Dead-letter stream: drop entries older than this (0s = never).
    #[arg(long, env = "MILLRACE_DEAD_MAX_AGE", default_value = "30days", value_parser = millrace_worker::config::parse_duration)]
    dead_max_age: Duration,
    /// Append the id of every job that succeeds to this file (tests, chaos).
    #[arg(long, env = "MILLRACE_RECORD_RUNS")]
    record_runs: Option<PathBuf>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "MILLRACE_METRICS_ADDR", default_value = "0.0.0.0")]
    metrics_addr: IpAddr,
    /// Port of /metrics, /healthz and /readyz (0 picks a free port, logged
    /// at start).
    #[arg(long, env = "MILLRACE_METRICS_PORT", default_value_t = 9464)]
    metrics_port: u16,
    /// How often per-queue gauges are sampled from Redis.
    #[arg(long, env = "MILLRACE_SAMPLE_EVERY", default_value = "5s", value_parser = millrace_worker::config::parse_duration)]
    sample_every: Duration,
    /// Runtime threads; defaults to one per core. On a box shared with
    /// Redis, 1 can do more jobs per CPU second (see BENCHMARKS.md).
    #[arg(long, env = "MILLRACE_THREADS")]
    threads: Option<usize>,
    /// Log format.
    #[arg(long, env = "MILLRACE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// The Postgres outbox's relay, run beside the worker when a database
    /// URL is given.
    #[cfg(feature = "postgres")]
    #[command(flatten)]
    outbox: outbox_relay::OutboxArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_logging(&args.log_format);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr, reason = "the binary's one-line fatal error")]
            {
                eprintln!("millrace-worker: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let recorder = args
        .record_runs
        .as_deref()
        .map(Recorder::open)
        .transpose()?;
    let redis_url = args.redis_url.clone();
    let prefix = args.prefix.clone();
    let mut config = WorkerConfig::new(args.redis_url);
    config.prefix = args.prefix;
    config.queues = args.queues;
    config.concurrency = args.concurrency;
    config = config.with_lease(args.lease, args.renew_every, args.block);
    config.reclaim_every = args.reclaim_every;
    config.max_deliveries = args.max_deliveries;
    config.grace = args.grace;
    config.job_timeout = args.job_timeout;
    config.unknown_job_window = args.unknown_job_window;
    config.dead_retention = DeadRetention::new(args.dead_max_len, args.dead_max_age);
    config.sample_every = args.sample_every;

    // The catalogue's jobs (`Job::QUEUE` = `default`) run on whatever
    // queues `--queues` names.
    let builder = Worker::builder(config).allow_unconsumed_jobs();
    let builder = register(builder, recorder.clone(), jobs::noop);
    let builder = register(builder, recorder.clone(), jobs::sleep);
    let builder = register(builder, recorder.clone(), jobs::flaky);
    let builder = register(builder, recorder.clone(), jobs::fail);
    let builder = register(builder, recorder.clone(), jobs::panic);
    let builder = register(builder, recorder, jobs::crash);
    let worker = builder.build()?;

    // Metrics and probes first: a worker that cannot be watched does not
    // start (a port in use is a deployment mistake to see at once).
    let exporter = millrace_worker::metrics::install_prometheus()?;
    let listener =
        millrace_worker::http::bind(SocketAddr::new(args.metrics_addr, args.metrics_port)).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(millrace_worker::http::serve(
        listener,
        exporter,
        worker.health(),
        http_stop.clone(),
    ));

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(signals, shutdown.clone()));
    #[cfg(feature = "postgres")]
    let relay = outbox_relay::start(&args.outbox, &redis_url, &prefix, shutdown.clone()).await?;
    info!(consumer = worker.consumer_name(), "starting");
    let result = worker.run(shutdown).await;
    #[cfg(feature = "postgres")]
    if let Some(relay) = relay {
        let _ = relay.await;
    }
    http_stop.cancel();
    let _ = http.await;
    result?;
    Ok(())
}

/// Registers a catalogue handler, recording each success when asked.
fn register<J, F, Fut>(
    builder: WorkerBuilder,
    recorder: Option<Recorder>,
    handler: F,
) -> WorkerBuilder
where
    J: Job,
    F: Fn(J, JobContext) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    builder.register(move |job: J, ctx: JobContext| {
        let handler = handler.clone();
        let recorder = recorder.clone();
        async move {
            let id = ctx.job_id.clone();
            handler(job, ctx).await?;
            if let Some(r) = recorder {
                r.record(&id);
            }
            Ok(())
        }
    })
}

/// Appends job ids to a file, one line each, unbuffered (O_APPEND), so the
/// record survives a SIGKILL of the process.
#[derive(Clone)]
struct Recorder(Arc<Mutex<File>>);

impl Recorder {
    fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the record file {}", path.display()))?;
        Ok(Self(Arc::new(Mutex::new(file))))
    }

    fn record(&self, id: &str) {
        let line = format!("{id}\n");
        let mut file = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(line.as_bytes()) {
            error!("cannot record job {id}: {e}");
        }
    }
}

/// SIGTERM and SIGINT, caught from the first moment of `run`: a signal that
/// arrives while the worker is still starting (a rollout that changes its
/// mind) is a graceful shutdown too, not the default death by signal.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
        })
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(signals: Signals, shutdown: CancellationToken) {
    let Signals { mut term, mut int } = signals;
    for round in 0..2 {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if round == 0 {
            info!("signal received: shutting down gracefully (send again to exit at once)");
            shutdown.cancel();
        } else {
            error!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `WorkerConfig::from_env` reads the variables of the binary's flags.
    #[test]
    fn from_env_reads_the_binarys_variables() {
        let command = Args::command();
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for (name, _) in millrace_worker::config::VARIABLES {
            assert!(envs.iter().any(|e| e == name), "{name} is no flag's env");
        }
    }
}
