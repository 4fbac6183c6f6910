//! `millrace-demo`: a tour of Millrace in a few seconds. It uses the Redis
//! at `MILLRACE_REDIS_URL`, or starts a private `redis-server` on a free
//! port when that is unset; enqueues a mix of jobs (instant, slow, flaky,
//! failing twice then succeeding, hopeless, delayed); runs two workers;
//! and prints what happened: retries, a dead-lettered job, and a summary.

#![allow(clippy::print_stdout, reason = "the demo's output is for a person")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use millrace::{Client, EnqueueOptions};
use millrace_core::Conn;
use millrace_core::redis;
use millrace_core::{Job, JobContext, JobError, Keys};
use millrace_jobs::{self as jobs, Fail, Flaky, Noop, Sleep};
use millrace_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

const QUEUE: &str = "demo";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let (url, _server) = match std::env::var("MILLRACE_REDIS_URL") {
        Ok(url) => {
            println!(
                "Using Redis at {} (MILLRACE_REDIS_URL).",
                millrace_core::Redacted(&url)
            );
            (url, None)
        }
        Err(_) => {
            let server = millrace_tests::RedisServer::start().context(
                "MILLRACE_REDIS_URL is not set, so the demo starts its own redis-server",
            )?;
            println!(
                "MILLRACE_REDIS_URL is not set: started a private redis-server at {} (stopped at exit).",
                server.url()
            );
            (server.url(), Some(server))
        }
    };
    // MILLRACE_REDIS_CLUSTER=1: the URL names Redis Cluster seed nodes.
    let cluster = std::env::var("MILLRACE_REDIS_CLUSTER")
        .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"));
    let client = Client::builder(&url).cluster(cluster).connect().await?;
    let mut conn = millrace_core::connect::Endpoint::new(url.as_str())
        .with_cluster(cluster)
        .command_connection()
        .await?;
    clear(&mut conn).await?;

    let on = |o: EnqueueOptions| o.queue(QUEUE);
    let noops: Vec<Noop> = (0..200).map(|_| Noop::default()).collect();
    client
        .enqueue_many_with(&noops, on(EnqueueOptions::new()))
        .await?;
    for ms in [50, 150, 300] {
        client
            .enqueue_with(&Sleep { ms }, on(EnqueueOptions::new()))
            .await?;
    }
    for _ in 0..20 {
        client
            .enqueue_with(&Flaky { fail_percent: 30 }, on(EnqueueOptions::new()))
            .await?;
    }
    let third_time = Fail {
        succeed_on: 3,
        permanent: false,
        message: "payment gateway timed out".into(),
    };
    client
        .enqueue_with(&third_time, on(EnqueueOptions::new()))
        .await?;
    let hopeless = Fail {
        succeed_on: 0,
        permanent: false,
        message: "upstream returned 500".into(),
    };
    client
        .enqueue_with(&hopeless, on(EnqueueOptions::new()))
        .await?;
    let invalid = Fail {
        succeed_on: 0,
        permanent: true,
        message: "invoice 42 does not exist".into(),
    };
    client
        .enqueue_with(&invalid, on(EnqueueOptions::new()))
        .await?;
    client
        .enqueue_with(
            &Noop::default(),
            on(EnqueueOptions::new().delay(Duration::from_millis(800))),
        )
        .await?;
    let total: u64 = 200 + 3 + 20 + 3 + 1;
    println!(
        "Enqueued {total} jobs on queue `{QUEUE}`: 200 noop, 3 sleep, 20 flaky (30% failure), 3 fail, 1 delayed by 800 ms."
    );

    let started = Instant::now();
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut cfg = WorkerConfig::new(url.clone());
        cfg.redis_cluster = cluster;
        cfg.queues = vec![QUEUE.to_owned()];
        cfg.concurrency = 32;
        cfg.block = Duration::from_millis(500);
        cfg.grace = Duration::from_secs(5);
        let worker = Worker::builder(cfg)
            .allow_unconsumed_jobs() // the catalogue's jobs, on queue `demo`
            .register(jobs::noop)
            .register(jobs::sleep)
            .register(jobs::flaky)
            .register(verbose::<Fail, _, _>(jobs::fail))
            .build()?;
        println!("Started worker {}.", worker.consumer_name());
        workers.push(tokio::spawn(worker.run(stop.child_token())));
    }

    let keys = Keys::new(millrace_core::keys::DEFAULT_PREFIX, QUEUE)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ready, delayed): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(&keys.stream)
            .cmd("ZCARD")
            .arg(&keys.delayed)
            .query_async(&mut conn)
            .await?;
        if ready == 0 && delayed == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "jobs still waiting after 60 s: {ready} ready, {delayed} delayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    for w in workers {
        w.await??;
    }

    let stats: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&keys.stats)
        .query_async(&mut conn)
        .await?;
    let dead: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&keys.dead)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await?;
    println!();
    println!("Dead-lettered jobs (the `{}` stream):", keys.dead);
    for (_, f) in &dead {
        println!(
            "  {} {}  after attempt {}: {}",
            f.get("name").map_or("?", String::as_str),
            f.get("id").map_or("?", String::as_str),
            f.get("attempt").map_or("?", String::as_str),
            f.get("error").map_or("?", String::as_str),
        );
    }
    let get = |k: &str| stats.get(k).copied().unwrap_or(0);
    println!();
    println!("Summary after {:.1} s:", took.as_secs_f64());
    println!("  enqueued:  {total}");
    println!("  processed: {}", get("processed"));
    println!(
        "  retried:   {} (attempts that failed and were scheduled again)",
        get("retried")
    );
    println!("  dead:      {}", get("dead"));
    println!(
        "  lost:      {}",
        total.saturating_sub(get("processed") + get("dead"))
    );
    println!("Next: `cargo test --workspace` runs the test suite.");
    Ok(())
}

/// Wraps a handler to print each failure and success of its job.
fn verbose<J, F, Fut>(
    handler: F,
) -> impl Fn(J, JobContext) -> std::pin::Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>
+ Send
+ Sync
+ 'static
where
    J: Job,
    F: Fn(J, JobContext) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    move |job: J, ctx: JobContext| {
        let handler = handler.clone();
        Box::pin(async move {
            let (id, attempt, max) = (ctx.job_id.clone(), ctx.attempt, ctx.max_attempts);
            let result = handler(job, ctx).await;
            match &result {
                Ok(()) => println!("  {} {id}: attempt {attempt}/{max} succeeded", J::NAME),
                Err(e) => println!("  {} {id}: attempt {attempt}/{max} failed: {e}", J::NAME),
            }
            result
        })
    }
}

/// Removes what an earlier demo run left in the demo queue.
async fn clear(conn: &mut Conn) -> anyhow::Result<()> {
    let k = Keys::new(millrace_core::keys::DEFAULT_PREFIX, QUEUE)?;
    redis::cmd("DEL")
        .arg(&[
            &k.stream, &k.delayed, &k.jobs, &k.dead, &k.workers, &k.paused, &k.stats,
        ])
        .query_async::<()>(conn)
        .await?;
    Ok(())
}
