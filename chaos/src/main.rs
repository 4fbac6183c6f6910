//! `millrace-chaos`: the chaos run. It enqueues N jobs onto a private
//! `redis-server` with AOF, runs W `millrace-worker` processes that record
//! every job they finish, and meanwhile, each fault selectable on its own:
//! kills one worker with SIGKILL (and restarts it) every few seconds,
//! restarts Redis once mid-run, restarts every worker gracefully one after
//! another in a loop (`--deploys`), and kills worker connections at random
//! (`--net-drops`). When the faults stop it waits a settle time for the
//! last jobs, then checks every job: lost, stranded (still in Redis, never
//! ran), falsely dead-lettered, duplicated (bounded by what the killed
//! workers had in flight), how long a killed worker's jobs took to run
//! elsewhere and the worst wait from enqueue to run. Its last lines are
//! `name: value` pairs, and it exits non-zero when anything was lost,
//! stranded, dead-lettered or left behind.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]

mod audit;
mod deploy;
mod netdrop;
mod produce;
mod record;
mod report;
mod workers;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use millrace_core::Conn;
use millrace_core::redis;
use millrace_core::{JobId, Queue};
use millrace_tests::{Persistence, RedisCluster, RedisOptions, RedisServer, TlsMode};

use crate::deploy::Deployer;
use crate::netdrop::NetDrops;
use crate::record::Records;
use crate::workers::Workers;

/// Kill workers, restart them, drop their connections and restart Redis
/// while jobs run; count what was lost, stranded or dead-lettered.
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
    /// Stop killing after this many kills (default: keep killing until
    /// done); 0 turns SIGKILLs off.
    #[arg(long)]
    kills: Option<usize>,
    /// Rolling deploys: SIGTERM each worker in turn, wait for it to exit
    /// (it must exit 0 within its grace and leave nothing pending), start a
    /// replacement, wait for its heartbeat, then the next worker, round and
    /// round while the faults last.
    #[arg(long)]
    deploys: bool,
    /// Pause between two worker restarts of a rolling deploy. With 4
    /// workers, 250 ms lets each live past its first reclaim round (1 s);
    /// much shorter, no worker reclaims a crashed one's jobs until the
    /// deploys stop.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    deploy_pause: Duration,
    /// Kill a random worker Redis connection (`CLIENT KILL ID`) every
    /// `--net-drop-every` or so, while the faults last.
    #[arg(long)]
    net_drops: bool,
    /// Mean time between two dropped connections; each wait is drawn from
    /// 60–140 % of it.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    net_drop_every: Duration,
    /// Jobs enqueued per second, in a batch every 5 ms; 0 enqueues them all
    /// at once. Defaults to 1000 with --deploys or --net-drops (so enqueues
    /// land during the faults), else 0.
    #[arg(long)]
    rate: Option<u64>,
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
    /// Each job sleeps this long. Defaults to 50 when jobs are enqueued up
    /// front, so kills land mid-job (with 4 workers of 32 slots, 50 ms caps
    /// the run near 2,500 jobs/s), and to 5 with a steady producer, so the
    /// workers are partly idle between jobs as in production: a graceful
    /// shutdown races with enqueues only then.
    #[arg(long)]
    job_ms: Option<u64>,
    /// Worker lease.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lease: Duration,
    /// Jobs each worker runs at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Worker grace: how long running jobs may finish at shutdown. A worker
    /// SIGTERMed by a deploy must exit 0 within it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// After the faults stop, how long to wait for the last jobs before
    /// reporting; defaults to twice the lease plus the job's time.
    #[arg(long, value_parser = humantime::parse_duration)]
    settle: Option<Duration>,
    /// Redis with TLS only, requiring client certificates (made by the
    /// run): the workers and the run connect over rediss:// with
    /// --tls-ca-file, --tls-cert-file and --tls-key-file.
    #[arg(long)]
    tls: bool,
    /// Run on a local Redis Cluster (three masters, three replicas, no
    /// persistence): instead of a Redis restart, the master serving the
    /// queue is SIGKILLed at half the jobs, its replica takes over, and the
    /// dead node rejoins as a replica. With --tls, every link of the
    /// cluster is mutual TLS and the nodes announce the hostname their
    /// certificate names.
    #[arg(long, conflicts_with_all = ["net_drops", "redis_kill"])]
    cluster: bool,
    /// Replicas that must confirm each enqueued batch (WAIT) before the
    /// producer counts it; an unconfirmed batch is sent again. 0 waits for
    /// none: a failover can then lose what the dead master had not yet
    /// replicated.
    #[arg(long, default_value_t = 0)]
    wait_replicas: u32,
    /// Spread the jobs over the queue's three priority lanes (high,
    /// default, low, batch by batch): the workers read across lanes, and
    /// the audit looks in every lane.
    #[arg(long)]
    lanes: bool,
    /// Give up after this long.
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    deadline: Duration,
}

const QUEUE: &str = "chaos";
/// The producer's rate with --deploys or --net-drops when --rate is not
/// given: 5 ms jobs keep 4 workers of 32 slots about 4 % busy.
const DEFAULT_RATE: u64 = 1000;
/// The workers' reclaim interval.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
/// How often the main loop looks at the records and the faults.
const TICK: Duration = Duration::from_millis(20);
/// How often the pending list is sampled (delivery counts, entries per
/// consumer).
const DELIVERIES_EVERY: Duration = Duration::from_millis(250);

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
    anyhow::ensure!(args.workers > 0, "--workers must be at least 1");
    let rate = args.rate.unwrap_or(if args.deploys || args.net_drops {
        DEFAULT_RATE
    } else {
        0
    });
    let job_ms = args.job_ms.unwrap_or(if rate == 0 { 50 } else { 5 });
    let job = Duration::from_millis(job_ms);
    let stall = args.lease + RECLAIM_EVERY + job;
    let settle = args.settle.unwrap_or(args.lease * 2 + job);
    let persistence = if args.fsync == "always" {
        Persistence::AofAlways
    } else {
        Persistence::AofEverySec
    };
    let mut options = RedisOptions::default();
    options.persistence = persistence;
    options.tls = args.tls.then_some(TlsMode::Mutual);
    let mut redis = if args.cluster && args.tls {
        Redis::Cluster(Box::new(RedisCluster::start_tls(TlsMode::Mutual)?))
    } else if args.cluster {
        Redis::Cluster(Box::new(RedisCluster::start()?))
    } else {
        Redis::Single(RedisServer::start_options(options)?)
    };
    let url = redis.url();
    let endpoint = redis.endpoint();
    let dir = tempfile_dir()?;
    println!(
        "{} at {url} ({}); {} jobs of {job_ms} ms {}, {} workers (logs in {})",
        if args.cluster && args.tls {
            "Redis Cluster (3 masters, 3 replicas, mutual TLS on every link)"
        } else if args.cluster {
            "Redis Cluster (3 masters, 3 replicas)"
        } else {
            "redis-server"
        },
        if args.cluster {
            "no persistence".to_owned()
        } else {
            format!("appendonly yes, appendfsync {}", args.fsync)
        },
        args.jobs,
        if rate == 0 {
            "enqueued up front".to_owned()
        } else {
            format!("enqueued at {rate}/s")
        },
        args.workers,
        dir.display()
    );
    println!("faults: {}", faults_line(&args));
    let bin = millrace_tests::workspace_bin("millrace-worker", "millrace-worker")?;
    let mut conn = endpoint.command_connection().await?;
    redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(netdrop::CHAOS_CLIENT)
        .query_async::<()>(&mut conn)
        .await?;
    let queue = Queue::new(QUEUE)?;
    queue.declare(&mut conn).await?;

    let mut worker_args = millrace_tests::tls_flags(&endpoint.tls);
    if args.cluster {
        worker_args.push("--redis-cluster".to_owned());
    }
    worker_args.extend([
        "--queues".to_owned(),
        QUEUE.to_owned(),
        "--lease".to_owned(),
        humantime::format_duration(args.lease).to_string(),
        "--reclaim-every".to_owned(),
        humantime::format_duration(RECLAIM_EVERY).to_string(),
        "--block".to_owned(),
        "1s".to_owned(),
        "--concurrency".to_owned(),
        args.concurrency.to_string(),
        "--grace".to_owned(),
        humantime::format_duration(args.grace).to_string(),
    ]);
    let mut workers = Workers::start(&bin, &url, &dir, args.workers, worker_args)?;
    let mut records = Records::new(&dir, args.workers);

    let ids: Vec<String> = (0..args.jobs).map(|_| JobId::new().0).collect();
    let producer = tokio::spawn(produce::produce(
        conn.clone(),
        queue.clone(),
        ids.clone(),
        job_ms,
        rate,
        millrace_core::connect::Durability::new(args.wait_replicas, Duration::from_secs(1)),
        args.lanes,
    ));
    let mut net = if args.net_drops {
        Some(NetDrops::start(
            &endpoint,
            conn.clone(),
            args.net_drop_every,
        )?)
    } else {
        None
    };
    let mut deployer = args
        .deploys
        .then(|| Deployer::new(args.grace, args.deploy_pause));

    let started = Instant::now();
    let at = || started.elapsed().as_secs_f64();
    let deadline = started + args.deadline;
    let mut next_kill = started + args.kill_every;
    let mut kills = Vec::new();
    let mut restarted_redis = !args.restart_redis;
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut dead = 0;
    let mut accounted = 0;
    let mut last_progress = Instant::now();
    let mut faults_ended: Option<Instant> = None;
    let mut pending = audit::PendingSample::default();
    let mut next_deliveries = started;
    loop {
        records.poll()?;
        let done = records.distinct_in(&want);
        dead = dead_count(&mut conn, &queue).await.unwrap_or(dead);
        if done + dead != accounted {
            accounted = done + dead;
            last_progress = Instant::now();
        }
        if Instant::now() >= next_deliveries {
            next_deliveries = Instant::now() + DELIVERIES_EVERY;
            if let Ok(p) = audit::sample_pending(&mut conn, &queue).await {
                pending = pending.max(p);
            }
        }
        if !restarted_redis && done * 2 >= args.jobs {
            restarted_redis = true;
            let t = Instant::now();
            let how = match &mut redis {
                Redis::Cluster(c) => fail_over(c, &queue.keys().stream)?,
                Redis::Single(r) if args.redis_kill => {
                    r.kill();
                    r.restart()?;
                    "restarted redis-server (SIGKILL)".to_owned()
                }
                Redis::Single(r) => {
                    r.restart_graceful()?;
                    "restarted redis-server (SIGTERM)".to_owned()
                }
            };
            if let Some(d) = &mut deployer {
                d.redis_restarted();
            }
            println!("[{:>6.1}s] {how}, down {:?}", at(), t.elapsed());
        }
        let faults_on = faults_ended.is_none();
        let kills_left = args.kills.is_none_or(|k| kills.len() < k);
        if faults_on && kills_left && Instant::now() >= next_kill && done < args.jobs {
            next_kill = Instant::now() + args.kill_every;
            let busy = deployer.as_ref().and_then(Deployer::busy_slot);
            if let Some(slot) = kill_slot(kills.len(), args.workers, busy) {
                let kill = workers.kill_one(&mut conn, &queue, slot).await?;
                println!(
                    "[{:>6.1}s] SIGKILL worker {} with {} jobs in flight; restarted it",
                    at(),
                    kill.slot,
                    kill.in_flight.len()
                );
                kills.push(kill);
            }
        }
        if let Some(d) = &mut deployer
            && let Some(line) = d.step(&mut workers, &mut conn, &queue, faults_on).await?
        {
            println!("[{:>6.1}s] {line}", at());
        }
        // The faults last while jobs are enqueued, and after that while
        // jobs still finish; they stop when every job is accounted for or
        // nothing finished for longer than a killed worker's jobs take to
        // come back (lease + reclaim tick + the job itself).
        let producing = !producer.is_finished();
        if faults_on && !producing && (accounted >= args.jobs || last_progress.elapsed() >= stall) {
            faults_ended = Some(Instant::now());
            if let Some(n) = &net {
                n.halt();
            }
            println!(
                "[{:>6.1}s] faults stop: {done} of {} jobs ran, {dead} dead-lettered; settling for at most {settle:?}",
                at(),
                args.jobs
            );
        }
        if accounted >= args.jobs && !producing && queue_empty(&mut conn, &queue).await {
            break;
        }
        if faults_ended.is_some_and(|t| t.elapsed() >= settle) {
            println!(
                "[{:>6.1}s] settle time over: {done} of {} jobs ran, {dead} dead-lettered",
                at(),
                args.jobs
            );
            break;
        }
        if Instant::now() > deadline {
            println!("deadline of {:?} reached", args.deadline);
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let elapsed = started.elapsed();
    if let Some(d) = &mut deployer {
        d.finish(&mut workers, &mut conn, &queue).await?;
    }
    let net_drops = match net.take() {
        Some(n) => Some(n.stop().await),
        None => None,
    };
    let produced = if producer.is_finished() {
        producer.await??
    } else {
        producer.abort();
        produce::Produced {
            enqueued_at: Vec::new(),
            resent: 0,
        }
    };
    workers.stop_all();
    records.poll()?;
    let audit = audit::audit(&mut conn, &queue).await?;
    Ok(report::print(&report::Outcome {
        ids: &ids,
        enqueued_at: &produced.enqueued_at,
        resent: produced.resent,
        job_ms,
        records: &records,
        audit: &audit,
        kills: &kills,
        redis_restarts: u8::from(args.restart_redis),
        deploy: deployer.as_ref(),
        net_drops,
        pending,
        elapsed,
    }))
}

/// The Redis under test: one server, or a local cluster.
enum Redis {
    Single(RedisServer),
    Cluster(Box<RedisCluster>),
}

impl Redis {
    fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(),
        }
    }

    fn endpoint(&self) -> millrace_core::connect::Endpoint {
        match self {
            Self::Single(r) => r.endpoint(),
            Self::Cluster(c) => c.endpoint(),
        }
    }
}

/// SIGKILLs the master serving `key`, waits for its replica to take over,
/// then restarts the dead node as a replica (the harness polls with
/// sleeps: the runtime moves other tasks off this thread meanwhile).
/// Returns what happened, in words.
fn fail_over(cluster: &mut RedisCluster, key: &str) -> anyhow::Result<String> {
    tokio::task::block_in_place(|| {
        let t = Instant::now();
        let killed = cluster.fail_over(key)?;
        let promoted = t.elapsed();
        cluster.rejoin(killed)?;
        Ok(format!(
            "SIGKILLed the master of {key}: replica promoted after {promoted:?}, dead node rejoined as a replica"
        ))
    })
}

/// The faults of this run, in words.
fn faults_line(args: &Args) -> String {
    let mut f = Vec::new();
    match args.kills {
        Some(0) => {}
        Some(k) => f.push(format!("{k} SIGKILLs, one every {:?}", args.kill_every)),
        None => f.push(format!("a SIGKILL every {:?}", args.kill_every)),
    }
    if args.restart_redis && args.cluster {
        f.push("the queue's master SIGKILLed at half the jobs (failover)".to_owned());
    } else if args.restart_redis {
        let how = if args.redis_kill {
            "SIGKILL"
        } else {
            "SIGTERM"
        };
        f.push(format!("Redis restarted ({how}) at half the jobs"));
    }
    if args.lanes {
        f.push("jobs spread over 3 priority lanes".to_owned());
    }
    if args.deploys {
        f.push(format!(
            "rolling deploys (grace {:?}, {:?} between restarts)",
            args.grace, args.deploy_pause
        ));
    }
    if args.net_drops {
        f.push(format!(
            "a worker connection killed every ~{:?}",
            args.net_drop_every
        ));
    }
    if f.is_empty() {
        "none".to_owned()
    } else {
        f.join("; ")
    }
}

/// The slot the `n`th SIGKILL hits: round robin, sparing the slot a deploy
/// is restarting (`None` when that is the only one).
fn kill_slot(n: usize, workers: usize, busy: Option<usize>) -> Option<usize> {
    let slot = n % workers;
    match busy {
        Some(b) if b == slot && workers == 1 => None,
        Some(b) if b == slot => Some((slot + 1) % workers),
        _ => Some(slot),
    }
}

/// Entries in the dead-letter stream.
async fn dead_count(conn: &mut Conn, queue: &Queue) -> anyhow::Result<usize> {
    let n = millrace_core::inspect::dead_count(conn, queue).await?;
    Ok(usize::try_from(n)?)
}

/// Whether the ready stream, the pending list and the delayed set are all
/// empty (false when Redis cannot say).
async fn queue_empty(conn: &mut Conn, queue: &Queue) -> bool {
    millrace_core::inspect::stats(conn, queue)
        .await
        .is_ok_and(|s| s.ready + s.in_flight == 0 && s.scheduled + s.retrying.unwrap_or(0) == 0)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("millrace-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_spare_the_slot_a_deploy_is_restarting() {
        assert_eq!(kill_slot(5, 4, None), Some(1));
        assert_eq!(kill_slot(5, 4, Some(1)), Some(2));
        assert_eq!(kill_slot(3, 4, Some(3)), Some(0));
        assert_eq!(kill_slot(0, 1, Some(0)), None);
    }
}
