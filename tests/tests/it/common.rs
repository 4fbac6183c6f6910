//! Shared helpers: a test Redis, a worker running in this process, and
//! checks on what is left in Redis.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use millrace_core::CancellationToken;
use millrace_core::Conn;
use millrace_core::{Job, JobContext, JobError, Keys, RetryPolicy};
use millrace_tests::RedisServer;
use millrace_worker::{Worker, WorkerBuilder, WorkerConfig};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn redis() -> RedisServer {
    match RedisServer::start() {
        Ok(r) => r,
        Err(e) => panic!("cannot start the test redis-server: {e}"),
    }
}

pub async fn conn(url: &str) -> Conn {
    millrace_core::connect::command_connection(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A worker config with short intervals, for tests.
pub fn fast_config(url: &str) -> WorkerConfig {
    let mut c = WorkerConfig::new(url);
    c.block = Duration::from_millis(500);
    c.lease = Duration::from_secs(5);
    c.renew_every = Duration::from_secs(1);
    c.reclaim_every = Duration::from_millis(300);
    c.promote_every = Duration::from_millis(100);
    c.grace = Duration::from_secs(5);
    c.concurrency = 16;
    c
}

/// A worker running in this process until the returned token is cancelled.
pub struct Running {
    pub stop: CancellationToken,
    pub handle: JoinHandle<Result<(), millrace_worker::WorkerError>>,
    pub consumer: String,
}

impl Running {
    pub async fn shutdown(self) {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(20), self.handle).await {
            Ok(Ok(Ok(()))) => {}
            other => panic!("worker did not shut down cleanly: {other:?}"),
        }
    }
}

pub fn spawn(builder: WorkerBuilder) -> Running {
    let worker: Worker = builder.build().unwrap_or_else(|e| panic!("{e}"));
    let consumer = worker.consumer_name().to_owned();
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    Running {
        stop,
        handle,
        consumer,
    }
}

/// Waits (polling Redis) until `check` holds, or panics after `WAIT`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counts of what a queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Left {
    pub stream: u64,
    pub pending: u64,
    pub delayed: u64,
    pub jobs: u64,
    pub dead: u64,
    /// Attempt records of entries retried in place (the tries hash).
    pub tries: u64,
}

pub async fn left(conn: &mut Conn, queue: &str) -> Left {
    // The first command after a Redis restart may fail while the
    // connection manager reconnects: retry a little.
    let mut tries = 0;
    loop {
        match try_left(conn, queue).await {
            Ok(l) => return l,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot read what is left in {queue}: {e}"),
        }
    }
}

async fn try_left(conn: &mut Conn, queue: &str) -> millrace_core::redis::RedisResult<Left> {
    let k = Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    type Counts = (u64, u64, u64, u64, u64);
    let (stream, delayed, jobs, dead, tries): Counts = millrace_core::redis::pipe()
        .cmd("XLEN")
        .arg(&k.stream)
        .cmd("ZCARD")
        .arg(&k.delayed)
        .cmd("HLEN")
        .arg(&k.jobs)
        .cmd("XLEN")
        .arg(&k.dead)
        .cmd("HLEN")
        .arg(&k.tries)
        .query_async(conn)
        .await?;
    let pending: Vec<millrace_core::redis::Value> = millrace_core::redis::cmd("XPENDING")
        .arg(&k.stream)
        .arg("millrace")
        .query_async(conn)
        .await
        .unwrap_or_default();
    let pending = match pending.first() {
        Some(millrace_core::redis::Value::Int(n)) => *n as u64,
        _ => 0,
    };
    Ok(Left {
        stream,
        pending,
        delayed,
        jobs,
        dead,
        tries,
    })
}

/// Enqueues `env` on `queue` and reads it as `consumer`, which then holds
/// it (a consumer that died holding a job, say); returns its delivery.
pub async fn held_by(
    conn: &mut Conn,
    queue: &millrace_core::Queue,
    consumer: &str,
    env: millrace_core::Envelope,
) -> millrace_core::Delivery {
    queue
        .enqueue(conn, &[env])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = queue
        .read(
            conn,
            consumer,
            1,
            Duration::from_millis(50),
            &millrace_core::ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 1, "{consumer} read nothing");
    got.remove(0)
}

/// Waits until `queue` holds exactly `want` (e.g. `Left::default()`:
/// nothing at all).
pub async fn wait_left(c: &Conn, queue: &str, want: Left) {
    let what = format!("{queue} to hold {want:?}");
    eventually(&what, || {
        let mut c = c.clone();
        async move { left(&mut c, queue).await == want }
    })
    .await;
}

/// The dead-letter stream's entries as field maps.
pub async fn dead_entries(conn: &mut Conn, queue: &str) -> Vec<HashMap<String, String>> {
    let k = Keys::new("millrace", queue).unwrap_or_else(|e| panic!("{e}"));
    let rows: Vec<(String, HashMap<String, String>)> = millrace_core::redis::cmd("XRANGE")
        .arg(&k.dead)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    rows.into_iter().map(|r| r.1).collect()
}

/// Server time in ms.
pub async fn server_ms(conn: &mut Conn) -> u64 {
    let (s, us): (u64, u64) = millrace_core::redis::cmd("TIME")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s * 1000 + us / 1000
}

/// A test job whose behaviour is chosen by its fields; its handler reports
/// each attempt on a channel.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    pub tag: String,
    /// Succeed from this attempt on (0 = never).
    pub succeed_on: u32,
    #[serde(default)]
    pub permanent: bool,
    #[serde(default)]
    pub panic: bool,
    #[serde(default)]
    pub sleep_ms: u64,
}

impl Job for Probe {
    const NAME: &'static str = "probe";
    fn retry() -> RetryPolicy {
        probe_policy()
    }
}

/// 3 attempts, 200 ms then 400 ms, no jitter: exact scores to check.
pub fn probe_policy() -> RetryPolicy {
    RetryPolicy::exponential(3)
        .base(Duration::from_millis(200))
        .factor(2.0)
        .jitter(0.0)
}

/// What a probe attempt saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub tag: String,
    pub job_id: String,
    pub attempt: u32,
    pub trace: Option<String>,
}

pub type SeenTx = tokio::sync::mpsc::UnboundedSender<Seen>;

pub async fn probe(job: Probe, ctx: JobContext, tx: SeenTx) -> Result<(), JobError> {
    let _ = tx.send(Seen {
        tag: job.tag.clone(),
        job_id: ctx.job_id.clone(),
        attempt: ctx.attempt,
        trace: ctx.trace.clone(),
    });
    if job.sleep_ms > 0 {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(job.sleep_ms)) => {}
            () = ctx.cancel.cancelled() => return Err(JobError::retry("cancelled")),
        }
    }
    if job.panic && (job.succeed_on == 0 || ctx.attempt < job.succeed_on) {
        panic!("probe panicked on attempt {}", ctx.attempt);
    }
    if job.permanent {
        return Err(JobError::permanent(format!("{} is hopeless", job.tag)));
    }
    if job.succeed_on != 0 && ctx.attempt >= job.succeed_on {
        return Ok(());
    }
    Err(JobError::retry(format!(
        "{} failed attempt {}",
        job.tag, ctx.attempt
    )))
}

pub fn probe_worker(url: &str, tx: SeenTx) -> WorkerBuilder {
    Worker::builder(fast_config(url)).register(move |job: Probe, ctx| probe(job, ctx, tx.clone()))
}

pub fn probe_job(tag: &str, succeed_on: u32) -> Probe {
    Probe {
        tag: tag.to_owned(),
        succeed_on,
        permanent: false,
        panic: false,
        sleep_ms: 0,
    }
}

/// Path of the `millrace-worker` binary (built once per test run).
pub fn worker_bin() -> std::path::PathBuf {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        millrace_tests::workspace_bin("millrace-worker", "millrace-worker")
            .unwrap_or_else(|e| panic!("{e}"))
    })
    .clone()
}

/// The tags of the next `n` probe attempts, in the order they started.
pub async fn recv_tags(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Seen>,
    n: usize,
) -> Vec<String> {
    let mut tags = Vec::with_capacity(n);
    while tags.len() < n {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {} of {n} jobs ran: {tags:?}", tags.len()));
        tags.push(s.tag);
    }
    tags
}
