//! `millrace-bench`: Millrace's throughput, latency and footprint measured
//! beside the raw Redis Streams ceiling on the same machine, in the same
//! run. See BENCHMARKS.md for what each scenario does and the figures of a
//! full run.
//!
//! By default it starts a private `redis-server` (persistence off); `--url`
//! points it at another Redis (it only touches keys under `--prefix`).
//! `--quick` is the smoke run CI uses: small sizes, one run each, and a
//! non-zero exit unless every job was processed and every queue was left
//! empty.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark program: the report is its output"
)]

mod ceiling;
mod child;
mod cluster_probe;
mod metrics_cost;
mod probe;
mod procs;
mod report;
mod scenarios;
mod stats;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use millrace_core::Queue;
use millrace_core::connect::Endpoint;

use crate::probe::{Counters, Probe};
use crate::stats::Figures;

/// Measures Millrace beside the raw Redis Streams ceiling.
#[derive(Debug, Parser)]
#[command(name = "millrace-bench", version)]
struct Args {
    /// Use this Redis instead of starting a private one (only keys under
    /// `--prefix` are touched; never point it at a production server).
    #[arg(long)]
    url: Option<String>,
    /// TLS files for a rediss:// --url (passed on to the worker processes).
    #[command(flatten)]
    tls: millrace_worker::runner::TlsArgs,
    /// Start the private Redis with TLS only, requiring client
    /// certificates (made by the run); everything connects over rediss://.
    #[arg(long = "tls", conflicts_with = "url")]
    private_tls: bool,
    /// Key prefix of every queue the benchmark creates.
    #[arg(long, default_value = "millrace-bench")]
    prefix: String,
    /// Smoke run: small sizes, one run each; exits non-zero unless every job
    /// was processed and every queue was left empty.
    #[arg(long)]
    quick: bool,
    /// Runs per figure (default 5; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Scenarios to run, comma-separated (ceiling always runs): enqueue,
    /// process, e2e, latency, retry, footprint, history, metrics, outbox,
    /// priority, partitions, connections (these two on a local Redis
    /// Cluster).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Worker concurrencies tried for one worker process; the best is used
    /// for the other scenarios.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    concurrency: Vec<usize>,
    /// Log level of the worker processes (`RUST_LOG`); `info` is the
    /// worker binary's default.
    #[arg(long, default_value = "info")]
    worker_log: String,
    /// The `millrace-worker` binary to run (default: built with cargo in
    /// this program's profile, next to it).
    #[arg(long)]
    worker_bin: Option<PathBuf>,
    /// PostgreSQL for the outbox scenario (default: a private server with
    /// fsync on, started and removed by the benchmark).
    #[arg(long)]
    database_url: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Internal: a worker process that runs the benchmark's own probe jobs
    /// (latency, fail-once) and writes what it measured on exit.
    #[command(hide = true)]
    ChildWorker(child::ChildArgs),
}

/// Sizes of the scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Entries per ceiling run.
    pub ceiling: u64,
    /// Jobs per `enqueue_many` run.
    pub enqueue_many: u64,
    /// Single `enqueue` calls from one task.
    pub single_1: u64,
    /// Single `enqueue` calls from 64 tasks, in all.
    pub single_64: u64,
    /// Jobs per process run.
    pub process: u64,
    /// Jobs per end-to-end run.
    pub e2e: u64,
    /// Jobs per retry run.
    pub retry: u64,
    /// Seconds of offered load per latency run.
    pub latency_secs: f64,
}

impl Sizes {
    fn full() -> Self {
        Self {
            ceiling: 200_000,
            enqueue_many: 200_000,
            single_1: 20_000,
            single_64: 100_000,
            process: 200_000,
            e2e: 200_000,
            retry: 50_000,
            latency_secs: 5.0,
        }
    }

    fn quick() -> Self {
        Self {
            ceiling: 5_000,
            enqueue_many: 5_000,
            single_1: 500,
            single_64: 2_000,
            process: 5_000,
            e2e: 5_000,
            retry: 1_000,
            latency_secs: 0.5,
        }
    }
}

/// Everything the scenarios share.
pub struct Bench {
    /// The Redis under test.
    pub url: String,
    /// Its TLS files (`--tls-*`).
    pub tls: millrace_core::connect::TlsConfig,
    /// Key prefix of the benchmark's queues.
    pub prefix: String,
    /// Runs per figure.
    pub runs: usize,
    /// Smoke mode.
    pub quick: bool,
    /// Scenario sizes.
    pub sizes: Sizes,
    /// Measurement connection.
    pub probe: Probe,
    /// The `millrace-worker` binary.
    pub worker_bin: PathBuf,
    /// This program (for `child-worker`).
    pub self_exe: PathBuf,
    /// Concurrencies tried for one worker.
    pub concurrencies: Vec<usize>,
    /// `RUST_LOG` of the worker processes.
    pub worker_log: String,
    started: Instant,
    seq: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Bench {
    /// A fresh queue for one run, named `<what>-<n>`.
    pub fn queue(&self, what: &str) -> anyhow::Result<Queue> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        Ok(Queue::with_prefix(&self.prefix, &format!("{what}-{n}"))?)
    }

    /// A producer client under the benchmark's prefix.
    pub async fn client(&self) -> anyhow::Result<millrace::Client> {
        Ok(millrace::Client::builder(&self.url)
            .tls(self.tls.clone())
            .prefix(&self.prefix)
            .connect()
            .await?)
    }

    /// Arguments of a `millrace-worker` for `queue` at `concurrency`.
    pub fn worker_args(&self, queue: &Queue, concurrency: usize) -> Vec<String> {
        let mut args = self.redis_args("--redis-url");
        args.extend([
            "--prefix".into(),
            self.prefix.clone(),
            "--queues".into(),
            queue.name().to_owned(),
            "--concurrency".into(),
            concurrency.to_string(),
            // Several workers run at once: each takes a free metrics port.
            "--metrics-port".into(),
            "0".into(),
        ]);
        args
    }

    /// Arguments of this program's `child-worker` for `queue` at
    /// `concurrency`.
    pub fn child_args(&self, queue: &Queue, concurrency: usize) -> Vec<String> {
        let mut args = vec!["child-worker".to_owned()];
        args.extend(self.redis_args("--url"));
        args.extend([
            "--prefix".into(),
            self.prefix.clone(),
            "--queue".into(),
            queue.name().to_owned(),
            "--concurrency".into(),
            concurrency.to_string(),
        ]);
        args
    }

    /// `url_flag` with the Redis URL, and the `--tls-*` flags, for a child
    /// process.
    pub fn redis_args(&self, url_flag: &str) -> Vec<String> {
        let mut args = vec![url_flag.to_owned(), self.url.clone()];
        args.extend(millrace_tests::tls_flags(&self.tls));
        args
    }

    /// Prints a progress line on stderr, with the time since start.
    pub fn progress(&self, msg: &str) {
        eprintln!("[{:>6.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    /// Records a failed check (the run exits non-zero at the end).
    pub fn fail(&self, msg: String) {
        eprintln!("CHECK FAILED: {msg}");
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(msg);
    }

    /// Checks that `queue` processed exactly what was expected and holds
    /// nothing (stream, pending list, delayed set, jobs hash, dead-letter
    /// stream), records a failure otherwise, then deletes its keys.
    pub async fn check_and_drop(
        &self,
        queue: &Queue,
        expected: Counters,
        what: &str,
    ) -> anyhow::Result<()> {
        let keys = queue.keys();
        let got = self.probe.counters(keys).await?;
        if got != expected {
            self.fail(format!(
                "{what}: expected {expected:?}, the queue counted {got:?}"
            ));
        }
        let residue = self.probe.residue(keys, queue.group()).await?;
        if !residue.is_empty() {
            self.fail(format!(
                "{what}: queue not empty after the run: {residue:?}"
            ));
        }
        self.probe.drop_queue(keys).await
    }

    /// Waits until `n` workers have a heartbeat on `queue`.
    pub async fn wait_workers(&self, queue: &Queue, n: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.probe.live_workers(queue.keys()).await? < n {
            if Instant::now() > deadline {
                bail!("{n} worker(s) did not start on {}", queue.name());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("millrace-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match args.cmd {
        Some(Cmd::ChildWorker(a)) => runtime.block_on(child::run(a)).map(|()| true),
        None => runtime.block_on(run(args)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("millrace-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` when a check failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let _server;
    let (url, tls) = match &args.url {
        Some(u) => (u.clone(), args.tls.config()),
        None => {
            let mut options = millrace_tests::RedisOptions::default();
            options.tls = args.private_tls.then_some(millrace_tests::TlsMode::Mutual);
            let server = millrace_tests::RedisServer::start_options(options)?;
            let private = (server.url(), server.tls_config());
            _server = server;
            private
        }
    };
    let probe = Probe::connect(&Endpoint::new(url.as_str()).with_tls(tls.clone())).await?;
    let version = probe.version().await?;
    let self_exe = std::env::current_exe()?;
    let worker_bin = match args.worker_bin {
        Some(p) => p,
        None => build_worker(&self_exe)?,
    };
    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 5 }).max(1);
    let concurrencies = if args.quick {
        args.concurrency.iter().take(1).copied().collect()
    } else {
        args.concurrency.clone()
    };
    let b = Bench {
        url,
        tls,
        prefix: args.prefix,
        runs,
        quick: args.quick,
        sizes: if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        },
        probe,
        worker_bin,
        self_exe,
        concurrencies,
        worker_log: args.worker_log,
        started,
        seq: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "millrace-bench: Redis {version} at {}, {cores} cores, {} run(s) per figure{}{}",
        millrace_core::Redacted(&b.url),
        b.runs,
        if b.quick { ", quick" } else { "" },
        if cfg!(debug_assertions) {
            " — DEBUG BUILD: figures are meaningless, use --release"
        } else {
            ""
        }
    );

    let wants = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut figs = Figures::default();
    ceiling::run(&b, &mut figs).await?;
    report::section(&figs, "ceiling");
    let mut chosen = b.concurrencies.first().copied().unwrap_or(64);
    if wants("enqueue") {
        scenarios::enqueue::run(&b, &mut figs).await?;
        report::section(&figs, "enqueue");
    }
    if wants("process") {
        chosen = scenarios::process::run(&b, &mut figs).await?;
        report::section(&figs, "process");
    }
    if wants("e2e") {
        scenarios::e2e::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "end_to_end");
    }
    if wants("latency") {
        scenarios::latency::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "latency");
    }
    if wants("retry") {
        scenarios::retry::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "retry");
    }
    if wants("footprint") {
        scenarios::footprint::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "worker_rss");
        report::section(&figs, "redis_mem");
    }
    if wants("history") {
        scenarios::history::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "history");
    }
    if wants("metrics") {
        let n = if b.quick { 10_000 } else { 500_000 };
        metrics_cost::run(&mut figs, n, b.runs)?;
        report::section(&figs, "metrics");
    }
    if wants("outbox") {
        scenarios::outbox::run(&b, &mut figs, args.database_url.as_deref()).await?;
        report::section(&figs, "outbox");
    }
    if wants("priority") {
        scenarios::priority::run(&b, &mut figs).await?;
        report::section(&figs, "priority");
    }
    if wants("partitions") {
        scenarios::partitions::run(&b, &mut figs, chosen).await?;
        report::section(&figs, "partitions");
    }
    if wants("connections") {
        scenarios::connections::run(&b, &mut figs).await?;
        report::section(&figs, "connections");
    }
    report::summary(&figs, !b.quick && !cfg!(debug_assertions));
    if let Some(path) = &args.json {
        report::write_json(&figs, path)?;
        println!("figures written to {}", path.display());
    }
    let failures = b
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if failures.is_empty() {
        // Worker logs and latency files are kept only when a check failed.
        if let Some(dir) = procs::log_path().parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    } else {
        println!("worker logs: {}", procs::log_path().display());
    }
    println!(
        "took {:.0} s; {}",
        started.elapsed().as_secs_f64(),
        if failures.is_empty() {
            "every job was processed and every queue was left empty".to_owned()
        } else {
            format!("{} check(s) FAILED", failures.len())
        }
    );
    Ok(failures.is_empty())
}

/// The `millrace-worker` binary next to this program, built by cargo in
/// the same profile (a no-op when it is up to date).
fn build_worker(self_exe: &Path) -> anyhow::Result<PathBuf> {
    let dir = self_exe
        .parent()
        .context("cannot tell where this program lives")?;
    let path = dir.join("millrace-worker");
    let release = dir.file_name().is_some_and(|n| n == "release");
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "-p",
        "millrace-worker",
        "--bin",
        "millrace-worker",
    ]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        _ if path.exists() => {
            eprintln!(
                "warning: cannot rebuild millrace-worker; using {}",
                path.display()
            );
        }
        _ => bail!("cannot build millrace-worker; pass --worker-bin"),
    }
    Ok(path)
}
