//! # millrace-worker
//!
//! The Millrace worker runtime: claims jobs from Redis Streams consumer
//! groups, runs their handlers concurrently, acknowledges them in batches,
//! retries failures with exponential backoff, dead-letters what keeps
//! failing, renews the leases of long jobs, takes over the work of crashed
//! workers and shuts down gracefully.
//!
//! Everything a worker's code names comes from this crate (`Job`,
//! `JobContext`, `JobError`, `RetryPolicy`, `CancellationToken`, …): no
//! need to depend on `millrace-core`.
//!
//! ```no_run
//! use millrace_worker::{CancellationToken, Job, JobContext, JobError, Worker, WorkerConfig};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: u64 }
//! impl Job for SendInvoice { const NAME: &'static str = "send_invoice"; }
//!
//! async fn send_invoice(job: SendInvoice, ctx: JobContext) -> Result<(), JobError> {
//!     tracing::info!(invoice = job.invoice_id, attempt = ctx.attempt, "sending");
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), millrace_worker::WorkerError> {
//! let worker = Worker::builder(WorkerConfig::new("redis://127.0.0.1:6379"))
//!     .register(send_invoice)
//!     .build()?;
//! let shutdown = CancellationToken::new();
//! worker.run(shutdown).await
//! # }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `bin` | yes | what the `millrace-worker` binary needs beyond `runner`: the demo job catalogue (`millrace-jobs`), mimalloc and `tls` |
//! | `tls` | via `bin` | `rediss://` URLs through rustls (the `ring` provider, the system's trust store), and [`WorkerConfig::tls`] files: a private CA, a client certificate for mutual TLS (the runner's `--tls-ca-file`, `--tls-cert-file`, `--tls-key-file`) |
//! | `runner` | via `bin` | [`runner::Runner`]: a whole worker binary in one call (flags, `MILLRACE_*` variables, logging, probes, signals, exit codes); adds `http`, clap and tracing-subscriber |
//! | `http` | via `runner` | [`http`]: the `/metrics`, `/healthz`, `/readyz` server and the Prometheus exporter |
//! | `schedule` | via `runner` | periodic jobs: `WorkerBuilder::schedule` with a `Schedule` (cron expression, time zone, missed-fire policy), through `millrace-core`'s `schedule` feature (croner, jiff with its tz database bundled) |
//! | `postgres` | yes | the runner's outbox relay and effects purge (`--database-url`), through `millrace-postgres`; the library API is the same without it |
//! | `otel` | no | the `job` span (at INFO instead of DEBUG) takes the envelope's W3C traceparent as its OpenTelemetry parent through `tracing-opentelemetry`, so an exporter shows producer and job in one trace; the service installs the `tracing-opentelemetry` layer |
//!
//! A service that only embeds the worker turns the defaults off:
//! `millrace-worker = { version = "0.1", default-features = false }` (with
//! `features = ["schedule"]` for periodic jobs).

mod ack;
mod backoff;
pub mod config;
mod fail;
mod fetch;
pub mod health;
#[cfg(feature = "http")]
pub mod http;
mod lanes;
mod lease;
mod maintain;
pub mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod partitions;
mod promote;
mod registry;
mod run;
#[cfg(feature = "runner")]
pub mod runner;
mod sampler;
#[cfg(feature = "schedule")]
mod schedule;
mod state;

use std::future::Future;
use std::sync::Arc;

use millrace_core::Queue;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::WorkerConfig;
pub use health::Health;
use lanes::LaneSet;
pub use lanes::LaneWeights;
/// The types a [`WorkerConfig`] and a [`WorkerError`] carry.
pub use millrace_core::connect::TlsConfig;
/// Periodic jobs (feature `schedule`): [`WorkerBuilder::schedule`] takes a
/// [`Schedule`].
#[cfg(feature = "schedule")]
pub use millrace_core::schedule::{Missed, Schedule, ScheduleError};
/// The job contract and the types a handler names, re-exported so a worker
/// depends on this crate alone.
pub use millrace_core::{CancellationToken, Job, JobContext, JobError, JobId, RetryPolicy};
pub use millrace_core::{ConfigError, ConnectError, DeadRetention, HistoryRetention, QueueError};
use registry::Handlers;
use state::QueueCtx;

/// Why a worker could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// The configuration is invalid (the message says which value and why).
    #[error("invalid worker configuration: {0}")]
    Config(ConfigError),
    /// Redis could not be reached at start.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A schedule is invalid (no job, a duplicate name, …).
    #[cfg(feature = "schedule")]
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A Redis operation failed at start (e.g. creating a group).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A registered job's queue is not one this worker consumes: its jobs
    /// would wait for another worker (see
    /// [`WorkerBuilder::allow_unconsumed_jobs`]).
    #[error(
        "job `{job}` goes to queue `{queue}`, which this worker does not consume (queues: {queues}): add `{queue}` to WorkerConfig::queues, leave the queues empty to consume the registered jobs' queues, or call WorkerBuilder::allow_unconsumed_jobs() if other workers run that queue"
    )]
    UnconsumedQueue {
        /// The job's name.
        job: &'static str,
        /// The job's queue (`Job::QUEUE`).
        queue: &'static str,
        /// The queues this worker consumes, comma-separated.
        queues: String,
    },
}

impl From<ConfigError> for WorkerError {
    fn from(e: ConfigError) -> Self {
        // Not `#[from]`: that would also make it the `source()`, and an
        // error report would print the message twice.
        Self::Config(e)
    }
}

/// Builds a [`Worker`]: configuration plus one handler per job type.
pub struct WorkerBuilder {
    config: WorkerConfig,
    handlers: Handlers,
    allow_unconsumed: bool,
    #[cfg(feature = "schedule")]
    schedules: Vec<Schedule>,
}

impl WorkerBuilder {
    /// Registers the handler of job type `J`. A handler returns `Ok(())`,
    /// or a [`JobError`]: retry (the default for any error), retry after a
    /// delay, or permanent. A panic counts as a retryable failure.
    pub fn register<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        self.handlers.insert::<J, F, Fut>(handler);
        self
    }

    /// Registers the handler of job type `J` whose output is kept as the
    /// job's result: serialized to JSON and stored by the same script that
    /// acknowledges the job, for [`WorkerConfig::result_ttl`] (1 h by
    /// default), where `millrace::Client::result` and `wait` read it.
    /// For the rare request/response need; keep results small (at most
    /// 1 MiB of JSON: a larger one, or one that cannot be serialized,
    /// fails the attempt for good).
    pub fn register_with_result<J, T, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        T: serde::Serialize + Send + 'static,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, JobError>> + Send + 'static,
    {
        self.handlers.insert_with_result::<J, T, F, Fut>(handler);
        self
    }

    /// Shared state for every handler, read with
    /// [`JobContext::state`] (`ctx.state::<App>()?`), like axum's
    /// `State<T>`: an app's pools, clients and settings, given once instead
    /// of an `Arc` captured by each handler's closure. A second call
    /// replaces the first.
    pub fn state<T: std::any::Any + Send + Sync>(mut self, state: T) -> Self {
        self.handlers.state = Some(Arc::new(state));
        self
    }

    /// Calls `hook` with the job id of every attempt that succeeds, after
    /// its handler returns and before its ack is written (so a crash in
    /// between may call it again for the same job on its next run). Keep
    /// it quick: it runs on the job's task. The runner's `--record-runs`
    /// uses it. A second call replaces the first.
    pub fn on_success(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.handlers.on_success = Some(Arc::new(hook));
        self
    }

    /// Adds a periodic job: every worker with the same schedule (same
    /// name, same queue) takes part, and each fire time is enqueued exactly
    /// once whichever of them claims it first (README, "Schedules"). The
    /// worker runs it whether or not it consumes the schedule's queue.
    /// Feature `schedule` (on by default, and with `runner`).
    #[cfg(feature = "schedule")]
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedules.push(schedule);
        self
    }

    /// Lets the worker consume explicit [`WorkerConfig::queues`] that
    /// leave out a registered job's queue (`Job::QUEUE`): [`build`](Self::build)
    /// then warns instead of failing. For a worker whose jobs are enqueued
    /// on other queues (`EnqueueOptions::queue`), or whose jobs' own queue
    /// other workers consume.
    pub fn allow_unconsumed_jobs(mut self) -> Self {
        self.allow_unconsumed = true;
        self
    }

    /// Validates the configuration and the handlers' retry policies, and
    /// settles the queues: with [`WorkerConfig::queues`] empty (the
    /// default), the registered jobs' queues; with explicit queues, a
    /// registered job whose queue is not among them is an
    /// [`WorkerError::UnconsumedQueue`] (a warning after
    /// [`allow_unconsumed_jobs`](Self::allow_unconsumed_jobs)).
    pub fn build(mut self) -> Result<Worker, WorkerError> {
        self.config.validate()?;
        if self.handlers.is_empty() {
            return Err(ConfigError::Invalid("no job handlers registered".into()).into());
        }
        self.settle_queues()?;
        for (name, policy) in self.handlers.policies() {
            policy
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("retry policy of job `{name}`: {e}")))?;
        }
        #[cfg(feature = "schedule")]
        let schedules = schedule::settle(&self.schedules, &self.handlers)?;
        let consumer = self
            .config
            .consumer
            .clone()
            .unwrap_or_else(default_consumer_name);
        // Readiness goes stale after three missed samples.
        let health = Health::new(self.config.sample_every * 3);
        Ok(Worker {
            config: Arc::new(self.config),
            handlers: Arc::new(self.handlers),
            consumer: consumer.into(),
            health,
            #[cfg(feature = "schedule")]
            schedules,
        })
    }
}

impl WorkerBuilder {
    /// Fills in the registered jobs' queues when none were given, or checks
    /// that the given ones cover them.
    fn settle_queues(&mut self) -> Result<(), WorkerError> {
        let jobs = self.handlers.queues();
        if self.config.queues.is_empty() {
            let mut queues: Vec<String> = jobs.iter().map(|(_, q)| (*q).to_owned()).collect();
            queues.sort_unstable();
            queues.dedup();
            for q in &queues {
                millrace_core::keys::validate_queue_name(q)?;
            }
            self.config.queues = queues;
            return Ok(());
        }
        for (job, queue) in jobs {
            if self.config.queues.iter().any(|q| q == queue) {
                continue;
            }
            let queues = self.config.queues.join(", ");
            if self.allow_unconsumed {
                warn!(
                    job,
                    queue, queues, "a registered job's queue is not consumed by this worker"
                );
            } else {
                return Err(WorkerError::UnconsumedQueue { job, queue, queues });
            }
        }
        Ok(())
    }
}

/// A configured worker, ready to run.
pub struct Worker {
    config: Arc<WorkerConfig>,
    handlers: Arc<Handlers>,
    consumer: Arc<str>,
    health: Health,
    #[cfg(feature = "schedule")]
    schedules: Vec<millrace_core::schedule::ScheduleDef>,
}

impl Worker {
    /// Starts building a worker with `config`.
    pub fn builder(config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder {
            config,
            handlers: Handlers::default(),
            allow_unconsumed: false,
            #[cfg(feature = "schedule")]
            schedules: Vec::new(),
        }
    }

    /// The queues this worker consumes (the registered jobs' queues unless
    /// [`WorkerConfig::queues`] named them).
    pub fn queues(&self) -> &[String] {
        &self.config.queues
    }

    /// This worker's consumer name in every queue's group.
    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    /// This worker's readiness (connected to Redis, every consumer group
    /// present, not shutting down), for `/readyz`: take it before
    /// [`Worker::run`], which consumes the worker.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Runs until `shutdown` is cancelled, then shuts down gracefully: stop
    /// claiming, let running jobs finish within the grace period, cancel and
    /// hand back the rest, flush acks, hand back anything still pending for
    /// this consumer and remove it from the groups. Fails only at start
    /// (bad configuration, Redis unreachable); later Redis errors are
    /// retried with backoff.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let cfg = self.config.clone();
        let redis = cfg.endpoint();
        let conn = redis.command_connection().await?;
        // One reader per queue and per partition read (connections are made
        // when a fetch loop first needs one: this is only a bound).
        let readers = cfg.queues.len() * (1 + millrace_core::partition::MAX_PARTITIONS as usize);
        let pool = redis.reader_pool(cfg.block, readers + 1)?;
        check_server_settings(&mut conn.clone()).await;

        let stop = shutdown.child_token();
        let hard = CancellationToken::new();
        let jobs_done = CancellationToken::new();
        let fetchers = TaskTracker::new();
        let spawner = Arc::new(lanes::Spawner {
            consumer: self.consumer.clone(),
            conn: conn.clone(),
            handlers: self.handlers.clone(),
            cfg: cfg.clone(),
            stop: stop.clone(),
            hard: hard.clone(),
            jobs_done: jobs_done.clone(),
            ackers: TaskTracker::new(),
            background: TaskTracker::new(),
            health: self.health.clone(),
        });
        let background = &spawner.background;
        // Schedules first: a failure there leaves no fetch loop started.
        #[cfg(feature = "schedule")]
        schedule::start(&self.schedules, &cfg.prefix, &conn, background, &stop).await?;
        let mut groups = Vec::new();
        for name in &cfg.queues {
            let queue = Queue::with_prefix(&cfg.prefix, name)?.with_history(cfg.history);
            groups.push(partitions::start_group(queue, &spawner, &fetchers, &pool).await?);
        }
        fetchers.spawn(partitions::partitions_loop(
            groups.clone(),
            spawner.clone(),
            fetchers.clone(),
            pool.clone(),
        ));
        let sets: Vec<Arc<LaneSet>> = groups.iter().flat_map(|g| g.sets()).collect();
        // A fetch loop without progress for about two reads is stalled.
        self.health.watch(
            sets.iter().map(|s| s.base.progress.clone()).collect(),
            cfg.block * 2 + fetch::READ_MARGIN,
        );
        let job_names: Vec<&str> = self.handlers.policies().map(|(name, _)| name).collect();
        metrics::init_series(&cfg.queues, &job_names, cfg.concurrency);
        background.spawn(sampler::sample_loop(
            sets.iter().map(|s| s.base.queue.clone()).collect(),
            sets.iter().map(|s| s.base.progress.clone()).collect(),
            cfg.prefix.clone(),
            conn.clone(),
            self.health.clone(),
            cfg.sample_every,
            stop.clone(),
        ));
        info!(consumer = %self.consumer, queues = ?cfg.queues, concurrency = cfg.concurrency, "worker started");

        stop.cancelled().await;
        self.health.shutting_down();
        info!(grace = ?cfg.grace, "shutting down: no new jobs; waiting for running ones");
        fetchers.close();
        fetchers.wait().await;
        // The fetch loops have ended: no lane nor partition is added from
        // here on.
        let queues: Vec<Arc<QueueCtx>> = groups
            .iter()
            .flat_map(|g| g.sets())
            .flat_map(|s| s.all())
            .collect();
        for q in &queues {
            q.jobs.close();
        }
        let all_done = async {
            for q in &queues {
                q.jobs.wait().await;
            }
        };
        if tokio::time::timeout(cfg.grace, all_done).await.is_err() {
            let running: usize = queues.iter().map(|q| q.jobs.len()).sum();
            warn!(
                running,
                "grace period over: cancelling running jobs and handing them back"
            );
            hard.cancel();
            for q in &queues {
                q.jobs.wait().await;
            }
        }
        jobs_done.cancel();
        spawner.ackers.close();
        spawner.ackers.wait().await;
        spawner.background.close();
        spawner.background.wait().await;
        for q in &queues {
            hand_back_and_leave(q).await;
        }
        info!("worker stopped");
        Ok(())
    }
}

/// Declares a queue at start, riding out a connection dropped meanwhile
/// (the connection manager reconnects); other errors fail at once.
pub(crate) async fn declare_with_retries(
    queue: &Queue,
    conn: &mut millrace_core::Conn,
) -> Result<(), QueueError> {
    at_start(queue.name(), "declaring the queue", || {
        let mut conn = conn.clone();
        async move { queue.declare(&mut conn).await }
    })
    .await
}

/// Runs a start-up step, retrying it (up to 10 times, with a growing
/// pause) while the connection fails; other errors fail at once.
pub(crate) async fn at_start<T, F, Fut>(
    queue: &str,
    what: &str,
    mut step: F,
) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let mut tries = 0;
    loop {
        match step().await {
            Err(e) if e.is_connection() && tries < 10 => {
                tries += 1;
                warn!(queue, error = %e, "{what} failed, retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
            }
            other => return other,
        }
    }
}

/// Hands back whatever is still pending for this consumer (entries the
/// server delivered to a read cut short by shutdown) and removes the
/// consumer from the group once nothing is pending.
async fn hand_back_and_leave(q: &QueueCtx) {
    let mut conn = q.conn();
    loop {
        match q.queue.pending_of(&mut conn, &q.consumer, 500).await {
            Ok(ids) if ids.is_empty() => break,
            Ok(ids) => match q
                .queue
                .release(&mut conn, &q.consumer, &ids, q.cfg.dead_retention)
                .await
            {
                Ok(n) => info!(
                    queue = q.queue.name(),
                    handed_back = n,
                    "handed back pending entries"
                ),
                Err(e) => {
                    warn!(queue = q.queue.name(), error = %e, "hand-back failed; entries will be reclaimed");
                    return;
                }
            },
            Err(e) => {
                warn!(queue = q.queue.name(), error = %e, "could not list pending entries at shutdown");
                return;
            }
        }
    }
    match q.queue.remove_consumer(&mut conn, &q.consumer).await {
        Ok(true) => info!(queue = q.queue.name(), "left the consumer group"),
        Ok(false) => warn!(
            queue = q.queue.name(),
            "entries still pending: staying in the group"
        ),
        Err(e) => warn!(queue = q.queue.name(), error = %e, "could not leave the consumer group"),
    }
}

/// Warns when the server's settings can lose jobs (no AOF, or an eviction
/// policy that can delete a stream with its group).
async fn check_server_settings(conn: &mut millrace_core::Conn) {
    let settings: Result<Vec<String>, _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    let Ok(settings) = settings else {
        return; // CONFIG may be denied by an ACL: nothing to say then
    };
    for pair in settings.chunks(2) {
        match pair {
            [k, v] if k == "appendonly" && v != "yes" => warn!(
                "Redis runs with appendonly {v}: a Redis restart loses queued jobs; set `appendonly yes`"
            ),
            [k, v] if k == "maxmemory-policy" && v != "noeviction" => warn!(
                "Redis maxmemory-policy is {v}: eviction can delete a queue's stream and group; set `noeviction`"
            ),
            _ => {}
        }
    }
}

/// `host-pid-random`: unique per process, so a restarted worker never
/// inherits a live one's identity.
fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        fastrand::u32(..0x100_0000)
    )
}
