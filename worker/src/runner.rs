//! A whole worker binary in one call (feature `runner`): what the
//! `millrace-worker` binary does, around the jobs a user registers.
//!
//! ```no_run
//! use millrace_worker::{Job, JobContext, JobError, runner::Runner};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: u64 }
//! impl Job for SendInvoice { const NAME: &'static str = "send_invoice"; }
//!
//! async fn send_invoice(job: SendInvoice, _ctx: JobContext) -> Result<(), JobError> {
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Runner::new(|worker| worker.register(send_invoice)).run()
//! }
//! ```
//!
//! [`Runner::run`] parses the flags and `MILLRACE_*` variables (every
//! [`WorkerConfig`](crate::WorkerConfig) setting, `--help` lists them), starts logging
//! (`--log-format text|json`, level by `RUST_LOG`), catches SIGTERM and
//! SIGINT from its first moment (the first shuts down gracefully, a second
//! exits at once with 130), builds the worker from the flags' configuration
//! and the user's closure, serves `/metrics`, `/healthz` and `/readyz`,
//! relays the Postgres outbox when `--database-url` is given (feature
//! `postgres`), runs until the shutdown, and returns the exit code: success
//! after a graceful shutdown, failure (the error in one line on stderr,
//! prefixed with the binary's name) otherwise.

mod args;
#[cfg(feature = "postgres")]
mod outbox;
mod schedules;
mod tls;

pub use tls::TlsArgs;

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{CommandFactory, FromArgMatches};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::http::HttpError;
use crate::metrics::MetricsError;
use crate::{Worker, WorkerBuilder, WorkerError};
use args::Args;

/// Why a runner stopped with a failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The tokio runtime could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A signal handler could not be installed.
    #[error("cannot catch {signal}: {source}")]
    Signal {
        /// `SIGTERM` or `SIGINT`.
        signal: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `--record-runs` file could not be opened.
    #[error("cannot open the record file {}: {source}", path.display())]
    RecordFile {
        /// The file asked for.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--schedule` flag is malformed, or names a bad cron expression,
    /// time zone, policy or option.
    #[error("invalid --schedule {spec:?}: {reason}")]
    ScheduleFlag {
        /// The flag's value.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// The worker failed to build (configuration) or to run (Redis).
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// The Prometheus exporter could not be installed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The metrics and health port could not be bound.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The outbox relay could not be set up (feature `postgres`).
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Relay(#[from] Box<millrace_postgres::RelayError>),
    /// The outbox migrations failed (feature `postgres`).
    #[cfg(feature = "postgres")]
    #[error("cannot apply the outbox migrations to {url}: {source}")]
    Migrate {
        /// The database URL, password hidden.
        url: String,
        /// What sqlx reported.
        source: Box<millrace_postgres::sqlx::migrate::MigrateError>,
    },
}

/// The user's part of the worker: registers jobs (and state) on the builder
/// the flags configured.
type Configure = Box<dyn FnOnce(WorkerBuilder) -> WorkerBuilder>;

/// A worker process: flags, logging, probes, signals and exit codes around
/// the jobs a closure registers. See the [module docs](self).
pub struct Runner {
    configure: Configure,
    name: Option<&'static str>,
}

impl Runner {
    /// A runner whose worker gets its jobs from `configure`, called with a
    /// [`WorkerBuilder`] whose [`WorkerConfig`](crate::WorkerConfig) the
    /// flags filled: `Runner::new(|w| w.register(a).register(b))`.
    pub fn new(configure: impl FnOnce(WorkerBuilder) -> WorkerBuilder + 'static) -> Self {
        Self {
            configure: Box::new(configure),
            name: None,
        }
    }

    /// The name `--help` and error messages use; defaults to the name the
    /// program was started with.
    #[must_use]
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Parses the command line (exiting with clap's usage error, or the
    /// help), runs the worker until SIGTERM or SIGINT has shut it down, and
    /// returns the process's exit code. Call it from `main`, outside any
    /// tokio runtime: it starts its own (`--threads`).
    pub fn run(self) -> ExitCode {
        let name = self.name.unwrap_or_else(program_name);
        let matches = Args::command().name(name).get_matches();
        let args = match Args::from_arg_matches(&matches) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        init_logging(&args.log_format);
        match self.run_with(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                #[allow(clippy::print_stderr, reason = "the binary's one-line fatal error")]
                {
                    eprintln!("{name}: {}", report(&e));
                }
                ExitCode::FAILURE
            }
        }
    }

    fn run_with(self, args: Args) -> Result<(), RunnerError> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.threads {
            builder.worker_threads(n.max(1));
        }
        let runtime = builder.enable_all().build().map_err(RunnerError::Runtime)?;
        runtime.block_on(run(args, self.configure))
    }
}

/// The program's file name, as it was started (leaked once: clap keeps
/// only `'static` names without its `string` feature).
fn program_name() -> &'static str {
    let name = started_as();
    Box::leak(name.into_boxed_str())
}

fn started_as() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "millrace-worker".to_owned())
}

/// An error and its sources in one line: `outer: inner: root`.
fn report(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A subscriber already set (by the user's main) stays: try_init.
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn run(args: Args, configure: Configure) -> Result<(), RunnerError> {
    let signals = Signals::install()?;
    let mut builder = configure(Worker::builder(args.config()));
    for spec in args.schedule.iter().filter(|s| !s.trim().is_empty()) {
        builder = builder.schedule(schedules::parse(
            spec,
            args.queues.first().map(String::as_str),
        )?);
    }
    if let Some(path) = &args.record_runs {
        let recorder = Recorder::open(path)?;
        builder = builder.on_success(move |id| recorder.record(id));
    }
    let worker = builder.build()?;

    // Metrics and probes first: a worker that cannot be watched does not
    // start (a port in use is a deployment mistake to see at once).
    let exporter = crate::metrics::install_prometheus()?;
    let listener = crate::http::bind(SocketAddr::new(args.metrics_addr, args.metrics_port)).await?;
    let local = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: SocketAddr::new(args.metrics_addr, args.metrics_port),
        source,
    })?;
    info!(addr = %local, "serving /metrics, /healthz and /readyz");
    let http_stop = CancellationToken::new();
    let http = tokio::spawn(crate::http::serve(
        listener,
        exporter,
        worker.health(),
        http_stop.clone(),
    ));

    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(signals, shutdown.clone()));
    #[cfg(feature = "postgres")]
    let relay = outbox::start(
        &args.outbox,
        &args.redis_url,
        args.redis_cluster,
        args.tls.config(),
        &args.prefix,
        shutdown.clone(),
    )
    .await?;
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

/// Appends job ids to a file, one line each, unbuffered (O_APPEND), so the
/// record survives a SIGKILL of the process.
#[derive(Clone)]
struct Recorder(Arc<Mutex<File>>);

impl Recorder {
    fn open(path: &Path) -> Result<Self, RunnerError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RunnerError::RecordFile {
                path: path.to_owned(),
                source,
            })?;
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
    fn install() -> Result<Self, RunnerError> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind, name| {
            signal(kind).map_err(|source| RunnerError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Self {
            term: catch(SignalKind::terminate(), "SIGTERM")?,
            int: catch(SignalKind::interrupt(), "SIGINT")?,
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
