//! `millrace-chaos`: the chaos run. It enqueues N jobs onto a private
//! `redis-server` with AOF, runs W `millrace-worker` processes that record
//! every job they finish, kills one worker with SIGKILL (and restarts it)
//! every few seconds, restarts Redis once mid-run, and then checks that
//! every job ran: lost jobs, duplicates (bounded by what the killed workers
//! had in flight), dead-lettered jobs, and how long a killed worker's jobs
//! took to run elsewhere. Its last lines are `name: value` pairs, and it
//! exits non-zero when anything was lost or left behind.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]

mod record;
mod workers;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use millrace_core::redis::aio::ConnectionManager;
use millrace_core::{Envelope, JobId, Queue};
use millrace_tests::{Persistence, RedisServer};

use crate::record::Records;
use crate::workers::Workers;

/// Kill workers and restart Redis while jobs run; count what was lost.
#[derive(Debug, Parser)]
#[command(name = "millrace-chaos")]
struct Args {
    /// Jobs to enqueue.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Time between two SIGKILLs of a worker.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    kill_every: Duration,
    /// Stop killing after this many kills (default: keep killing until done).
    #[arg(long)]
    kills: Option<usize>,
    /// Restart Redis once, when half the jobs are done.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    restart_redis: bool,
    /// Restart Redis with SIGKILL instead of a clean SIGTERM. With
    /// `--fsync everysec` up to a second of writes may be lost then.
    #[arg(long)]
    redis_kill: bool,
    /// AOF fsync policy: everysec or always.
    #[arg(long, default_value = "everysec", value_parser = ["everysec", "always"])]
    fsync: String,
    /// Each job sleeps this long, so kills land mid-job (with 4 workers of
    /// 32 slots, 50 ms caps the run near 2,500 jobs/s).
    #[arg(long, default_value_t = 50)]
    job_ms: u64,
    /// Worker lease.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    deadline: Duration,
}

const QUEUE: &str = "chaos";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            println!("chaos run failed: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let persistence = if args.fsync == "always" {
        Persistence::AofAlways
    } else {
        Persistence::AofEverySec
    };
    let mut redis = RedisServer::start_with(persistence)?;
    let url = redis.url();
    println!(
        "redis-server at {url} (appendonly yes, appendfsync {}); {} jobs, {} workers, a SIGKILL every {:?}",
        args.fsync, args.jobs, args.workers, args.kill_every
    );
    let dir = tempfile_dir()?;
    let bin = millrace_tests::workspace_bin("millrace-worker", "millrace-worker")?;
    let mut conn = millrace_core::connect::command_connection(&url).await?;
    let queue = Queue::new(QUEUE)?;
    queue.declare(&mut conn).await?;

    let worker_args = vec![
        "--queues".to_owned(),
        QUEUE.to_owned(),
        "--lease".to_owned(),
        humantime::format_duration(args.lease).to_string(),
        "--reclaim-every".to_owned(),
        "1s".to_owned(),
        "--block".to_owned(),
        "1s".to_owned(),
        "--concurrency".to_owned(),
        args.concurrency.to_string(),
        "--grace".to_owned(),
        "10s".to_owned(),
    ];
    let mut workers = Workers::start(&bin, &url, &dir, args.workers, worker_args)?;
    let mut records = Records::new(&dir, args.workers);

    // The producer: our own job ids, so a batch retried after a Redis
    // error can only duplicate a job, never lose or invent one.
    let ids: Vec<String> = (0..args.jobs).map(|_| JobId::new().0).collect();
    let producer = tokio::spawn(produce(
        conn.clone(),
        queue.clone(),
        ids.clone(),
        args.job_ms,
    ));

    let started = Instant::now();
    let deadline = started + args.deadline;
    let mut next_kill = started + args.kill_every;
    let mut kills = Vec::new();
    let mut restarted_redis = !args.restart_redis;
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    loop {
        records.poll()?;
        let done = records.distinct_in(&want);
        if !restarted_redis && done * 2 >= args.jobs {
            restarted_redis = true;
            let t = Instant::now();
            if args.redis_kill {
                redis.kill();
                redis.restart()?;
            } else {
                redis.restart_graceful()?;
            }
            println!(
                "[{:>6.1}s] restarted redis-server ({}), down {:?}",
                started.elapsed().as_secs_f64(),
                if args.redis_kill {
                    "SIGKILL"
                } else {
                    "SIGTERM"
                },
                t.elapsed()
            );
        }
        let kills_left = args.kills.is_none_or(|k| kills.len() < k);
        if kills_left && Instant::now() >= next_kill && done < args.jobs {
            next_kill = Instant::now() + args.kill_every;
            let kill = workers.kill_one(&mut conn, &queue, kills.len()).await?;
            println!(
                "[{:>6.1}s] SIGKILL worker {} with {} jobs in flight; restarted it",
                started.elapsed().as_secs_f64(),
                kill.slot,
                kill.in_flight.len()
            );
            kills.push(kill);
        }
        if done >= args.jobs && producer.is_finished() && queue_empty(&mut conn, &queue).await {
            break;
        }
        if Instant::now() > deadline {
            println!("deadline of {:?} reached", args.deadline);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let produced = if producer.is_finished() {
        producer.await??
    } else {
        producer.abort();
        0
    };
    workers.stop_all();
    records.poll()?;

    let left = leftovers(&mut conn, &queue).await?;
    let completed = records.distinct_in(&want);
    let dead = left.dead as usize;
    let lost = args.jobs.saturating_sub(completed + dead);
    let duplicated = records.duplicated_in(&want);
    let bound: usize = kills.iter().map(|k| k.in_flight.len()).sum();
    let mut recovery: Vec<Duration> = kills
        .iter()
        .filter_map(|k| records.recovery_time(k.at, &k.in_flight))
        .collect();
    recovery.sort();
    let median = recovery
        .get(recovery.len() / 2)
        .copied()
        .unwrap_or_default();
    let max = recovery.last().copied().unwrap_or_default();
    let unexpected = records.unexpected(&want);
    let ok = lost == 0
        && produced == args.jobs
        && left.stream == 0
        && left.pending == 0
        && left.delayed == 0
        && unexpected == 0;

    println!();
    println!("Duplicates are jobs that finished on a worker killed before its ack was");
    println!("written, and ran again elsewhere: at most what the killed workers had in");
    println!("flight (pending) at each kill, summed in duplicate_bound.");
    println!();
    println!("enqueued: {produced}");
    println!("completed: {completed}");
    println!("lost: {lost}");
    println!("duplicated: {duplicated}");
    println!("duplicate_bound: {bound}");
    println!("dead_lettered: {dead}");
    println!("unexpected: {unexpected}");
    println!("kills: {}", kills.len());
    println!("redis_restarts: {}", u8::from(args.restart_redis));
    println!("recovery_median_ms: {}", median.as_millis());
    println!("recovery_max_ms: {}", max.as_millis());
    println!("stream_empty: {}", left.stream == 0);
    println!("pending_empty: {}", left.pending == 0);
    println!("delayed_empty: {}", left.delayed == 0);
    println!("seconds: {:.1}", elapsed.as_secs_f64());
    println!("result: {}", if ok { "ok" } else { "FAILED" });
    Ok(ok)
}

/// Enqueues every job in batches of 500, retrying a batch until Redis takes
/// it (through the Redis restart). Returns how many were enqueued.
async fn produce(
    mut conn: ConnectionManager,
    queue: Queue,
    ids: Vec<String>,
    job_ms: u64,
) -> anyhow::Result<usize> {
    let payload = serde_json::to_string(&millrace_jobs::Sleep { ms: job_ms })?;
    let mut n = 0;
    for chunk in ids.chunks(500) {
        let envs: Vec<Envelope> = chunk
            .iter()
            .map(|id| {
                let mut e = Envelope::new(id.clone(), "sleep", payload.clone());
                e.max_attempts = Some(5);
                e.enqueued_at = Some(millrace_core::queue::unix_ms(std::time::SystemTime::now()));
                e
            })
            .collect();
        let mut tries = 0;
        while let Err(e) = queue.enqueue(&mut conn, &envs).await {
            tries += 1;
            if tries > 300 {
                bail!("enqueue kept failing: {e}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n += envs.len();
    }
    Ok(n)
}

struct Left {
    stream: u64,
    pending: u64,
    delayed: u64,
    dead: u64,
}

/// What the queue still holds (retrying through a Redis restart).
async fn leftovers(conn: &mut ConnectionManager, queue: &Queue) -> anyhow::Result<Left> {
    let mut last = None;
    for _ in 0..50 {
        match millrace_core::inspect::stats(conn, queue).await {
            Ok(s) => {
                return Ok(Left {
                    stream: s.ready + s.in_flight,
                    pending: s.in_flight,
                    delayed: s.scheduled + s.retrying.unwrap_or(0),
                    dead: s.dead,
                });
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("cannot read the queue's state: {last:?}")
}

async fn queue_empty(conn: &mut ConnectionManager, queue: &Queue) -> bool {
    leftovers(conn, queue)
        .await
        .is_ok_and(|l| l.stream == 0 && l.pending == 0 && l.delayed == 0)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("millrace-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
