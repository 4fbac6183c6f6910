//! `millrace`: the ops command of Millrace. It answers "what is stuck,
//! where, since when" about queues on Redis Streams and fixes it safely:
//! queue stats, pending entries, one job's whole story, dead-letter replay
//! and purge, requeue of stuck entries, cancel, delayed jobs, consumers, pause and
//! resume, enqueue, a live `top`, and the web dashboard (`web`).
//!
//! Human tables by default, `--json` for scripts; destructive commands ask
//! first (`--yes`, `--dry-run`) and work in bounded batches. Errors are one
//! line on stderr and a non-zero exit code.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool: printing is its output"
)]

mod cancel;
mod consumers;
mod dead;
mod delayed;
mod enqueue;
mod history;
mod outbox;
mod output;
mod partitions;
mod pause;
mod pending;
mod queues;
mod ready;
mod requeue;
mod schedules;
mod show;
mod top;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand};
use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::connect::{Endpoint, TlsConfig};
use millrace_core::inspect;

/// Inspect Millrace queues and fix stuck, pending, delayed and dead jobs.
#[derive(Debug, Parser)]
#[command(name = "millrace", version, about, max_term_width = 100)]
struct Cli {
    /// Redis URL (its password is never shown).
    #[arg(
        long,
        global = true,
        env = "MILLRACE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
    /// The URL names Redis Cluster nodes (seed URLs, comma-separated).
    #[arg(long, global = true, env = "MILLRACE_REDIS_CLUSTER", value_parser = clap::builder::BoolishValueParser::new())]
    redis_cluster: bool,
    /// PEM file of the CA to trust for rediss:// instead of the system's.
    #[arg(long, global = true, env = "MILLRACE_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// PEM file of a client certificate, for servers that require mutual
    /// TLS (with --tls-key-file).
    #[arg(long, global = true, env = "MILLRACE_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, global = true, env = "MILLRACE_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Key prefix.
    #[arg(
        long,
        global = true,
        env = "MILLRACE_PREFIX",
        default_value = "millrace"
    )]
    prefix: String,
    /// Machine-readable JSON output instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every known queue: ready, in flight, delayed, retrying, dead,
    /// consumers, lag, oldest job, paused, counters.
    #[command(after_long_help = "\
Columns:
  READY      entries waiting in the stream, not yet delivered to a worker
  IN FLIGHT  entries delivered and not yet acknowledged (running, or held by a dead worker)
  DELAYED    jobs scheduled for later (enqueue_in/at), not counting retries
  RETRYING   failed jobs waiting for their next attempt (? past 100,000 delayed jobs)
  DEAD       entries in the dead-letter stream now (bounded by its retention)
  CONSUMERS  consumers in the group (millrace consumers tells which are alive)
  LAG        how long the oldest READY entry has waited since it became ready
             (a retry or a hand-back counts from then): how far behind the workers are
  OLDEST     age of the oldest unfinished job (ready or in flight) since its first
             enqueue: a job that keeps failing or running long shows here, not in LAG
  PAUSED     yes when workers stop claiming (millrace pause), with why and since when
  PROCESSED  jobs finished successfully, cumulative since the queue was created
  FAILED     failed attempts (retried + dead-lettered), cumulative since the queue was
             created; never reset, so compare two readings (or use millrace top) for rates

A queue with priority lanes (jobs enqueued with --priority high or low) gets one
more row per lane, named <queue>:<lane> (high, default, low), with that lane's
READY, IN FLIGHT, DELAYED (scheduled and retrying jobs of the lane) and LAG; the
queue's own row holds the totals.")]
    Queues,
    /// Pending (in-flight) entries of a queue: who holds them and for how long.
    Pending(pending::Args),
    /// Ready jobs: waiting in the stream, not yet claimed by a worker.
    #[command(subcommand)]
    Ready(ready::Command),
    /// Everything about one job: where it is, attempts, error, payload.
    Show(show::Args),
    /// Recently finished jobs (succeeded, dead, cancelled), newest first,
    /// from the queue's history.
    History(history::Args),
    /// Dead-lettered jobs: list, show, replay, purge.
    #[command(subcommand)]
    Dead(dead::Command),
    /// Make stuck pending entries (idle past --min-idle) runnable again now.
    Requeue(requeue::Args),
    /// Cancel one job: a waiting one is removed, a running one is
    /// cancelled by its worker (recorded as cancelled, not retried).
    Cancel(cancel::Args),
    /// Scheduled and retrying jobs: list, run now.
    #[command(subcommand)]
    Delayed(delayed::Command),
    /// Consumers of a queue and their heartbeats; --prune removes dead ones.
    Consumers(consumers::Args),
    /// Pause a queue: workers stop claiming new jobs within a second
    /// (running ones finish); --reason records why.
    Pause(pause::Args),
    /// Resume a paused queue.
    Resume(pause::Args),
    /// A queue's partitions: the count and what each holds; --set N
    /// partitions it (one hot queue over several Redis Cluster masters).
    Partitions(partitions::Args),
    /// Periodic jobs that workers registered: cron, time zone, job, last
    /// and next fire, paused; `pause|resume NAME` stops and restarts one.
    Schedules(schedules::Args),
    /// Enqueue a job by name with a JSON payload.
    Enqueue(enqueue::Args),
    /// Live view of all queues with rates; `q` quits.
    #[command(alias = "watch")]
    Top(top::Args),
    /// The Postgres outbox: migrate, status, revive dead rows.
    #[command(subcommand)]
    Outbox(outbox::Command),
    /// Relay committed outbox rows to their queues until SIGINT/SIGTERM
    /// (the worker does too when given --database-url).
    Relay(outbox::RelayArgs),
    /// Serve the web dashboard (127.0.0.1:8080 by default) until
    /// SIGINT/SIGTERM.
    Web(web::Args),
}

/// What every command gets: the connection and the global flags.
pub struct Ctx {
    /// The shared command connection.
    pub conn: Conn,
    /// Key prefix.
    pub prefix: String,
    /// `--json`.
    pub json: bool,
    /// The Redis URL with its password hidden.
    pub url: String,
}

impl Ctx {
    /// True when `queue` uses lanes other than `default`: listings then
    /// show each entry's lane.
    pub async fn has_lanes(&mut self, queue: &Queue) -> anyhow::Result<bool> {
        Ok(queue.lanes(&mut self.conn).await?.len() > 1)
    }

    /// The queue `name`, which must be registered; the error lists the
    /// known ones.
    pub async fn queue(&mut self, name: &str) -> anyhow::Result<Queue> {
        let queue = Queue::with_prefix(&self.prefix, name)?;
        let known = inspect::known_queues(&mut self.conn, &self.prefix).await?;
        if known.iter().any(|k| k == name) {
            return Ok(queue);
        }
        if known.is_empty() {
            bail!(
                "unknown queue {name:?}: no queues are known under prefix {:?} at {}",
                self.prefix,
                self.url
            );
        }
        bail!(
            "unknown queue {name:?} (known queues: {})",
            known.join(", ")
        );
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let tls = TlsConfig::from_files(
        cli.tls_ca_file.clone(),
        cli.tls_cert_file.clone(),
        cli.tls_key_file.clone(),
    );
    tls.validate()?;
    // The outbox commands need Postgres, not the command connection.
    let cli = match cli.command {
        Command::Outbox(c) => return outbox::run(c, cli.json).await.map(|()| ExitCode::SUCCESS),
        Command::Relay(a) => {
            outbox::relay(a, &cli.redis_url, cli.redis_cluster, tls, &cli.prefix).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Web(a) => {
            let endpoint = Endpoint::new(cli.redis_url.as_str())
                .with_tls(tls)
                .with_cluster(cli.redis_cluster);
            web::run(a, &endpoint, &cli.prefix).await?;
            return Ok(ExitCode::SUCCESS);
        }
        command => Cli { command, ..cli },
    };
    let conn = Endpoint::new(cli.redis_url.as_str())
        .with_tls(tls)
        .with_cluster(cli.redis_cluster)
        .command_connection()
        .await?;
    let mut ctx = Ctx {
        conn,
        prefix: cli.prefix,
        json: cli.json,
        url: millrace_core::Redacted(&cli.redis_url).to_string(),
    };
    match cli.command {
        Command::Queues => queues::run(&mut ctx).await?,
        Command::Pending(a) => pending::run(&mut ctx, a).await?,
        Command::Ready(c) => ready::run(&mut ctx, c).await?,
        Command::Schedules(a) => schedules::run(&mut ctx, a).await?,
        Command::Show(a) => show::run(&mut ctx, a).await?,
        Command::History(a) => history::run(&mut ctx, a).await?,
        Command::Dead(c) => dead::run(&mut ctx, c).await?,
        Command::Requeue(a) => requeue::run(&mut ctx, a).await?,
        Command::Cancel(a) => cancel::run(&mut ctx, a).await?,
        Command::Delayed(c) => delayed::run(&mut ctx, c).await?,
        Command::Consumers(a) => consumers::run(&mut ctx, a).await?,
        Command::Pause(a) => pause::run(&mut ctx, a, true).await?,
        Command::Resume(a) => pause::run(&mut ctx, a, false).await?,
        Command::Partitions(a) => partitions::run(&mut ctx, a).await?,
        Command::Enqueue(a) => enqueue::run(&mut ctx, a).await?,
        Command::Top(a) => top::run(&mut ctx, a).await?,
        Command::Outbox(_) | Command::Relay(_) | Command::Web(_) => {} // handled above
    }
    Ok(ExitCode::SUCCESS)
}

/// Completes at the first SIGINT or SIGTERM (never, when they cannot be
/// caught).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Parses a duration flag ("30s", "5m", "1h30m").
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 5m, 1h30m)"))
}
