//! Partitions: one queue of N no-op jobs drained by one `millrace-worker`
//! process (`--redis-cluster`) on a local Redis Cluster (three masters,
//! three replicas), unpartitioned and partitioned into 6 and 8, beside the
//! same drain on the single plain server. Reports the rate, the Redis CPU
//! per job summed over the masters, and per master the share of the jobs
//! and of the CPU, with how busy the busiest master was (its headroom).

use std::time::{Duration, Instant};

use anyhow::bail;
use millrace_core::Queue;
use millrace_core::partition::Layout;
use millrace_tests::RedisCluster;

use crate::Bench;
use crate::cluster_probe::{ClusterProbe, Placed, processed};
use crate::probe::commands_per_job;
use crate::procs::WorkerProc;
use crate::scenarios::process::{commands_text, drain};
use crate::scenarios::{fill_with, noop};
use crate::stats::{Better, Figures};

/// Layouts measured: a partition count (0: the queue unpartitioned), and
/// whether the partitions are placed as `millrace partitions --set`
/// places them on a cluster (spread evenly over the masters), else the
/// plain labels `0..N` (as on one server), which land where their hash
/// slots say.
const LAYOUTS: [(u32, bool); 5] = [(0, false), (6, false), (8, false), (6, true), (8, true)];
/// The queue's name: the same in every run (the cluster is flushed in
/// between), so each run has the same partition-to-master layout.
const QUEUE: &str = "partitioned";

/// What one drain on the cluster measured.
struct ClusterDrain {
    /// Jobs per second, first acknowledged job to last.
    rate: f64,
    /// Redis CPU µs per job, summed over the masters.
    cpu_us: f64,
    /// Redis CPU µs per job, summed over the replicas.
    replica_cpu_us: f64,
    /// Worker CPU µs per job.
    worker_cpu_us: f64,
    /// Per master (in the cluster's node order): jobs processed, Redis CPU
    /// seconds, and partitions it serves.
    masters: Vec<MasterShare>,
    /// Seconds from the first acknowledged job to the last.
    wall: f64,
    /// Redis commands per job, summed over the masters, by command.
    commands: Vec<(String, f64)>,
}

/// One master's part of a drain.
struct MasterShare {
    addr: String,
    jobs: u64,
    /// Redis CPU seconds from the worker's start to the last job.
    cpu_s: f64,
    /// Its CPU time over the drain (first job to last), per second: 1.0
    /// is a whole core.
    busy: f64,
    partitions: Vec<String>,
}

/// Arguments of a `millrace-worker` on the cluster for `queues`
/// (comma-separated).
pub fn cluster_worker_args(
    b: &Bench,
    cluster: &RedisCluster,
    queues: &str,
    concurrency: usize,
    metrics_port: u16,
) -> Vec<String> {
    [
        "--redis-url",
        &cluster.url(),
        "--redis-cluster",
        "--prefix",
        &b.prefix,
        "--queues",
        queues,
        "--concurrency",
        &concurrency.to_string(),
        "--metrics-port",
        &metrics_port.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A producer client on the cluster under the benchmark's prefix.
pub async fn cluster_client(b: &Bench, cluster: &RedisCluster) -> anyhow::Result<millrace::Client> {
    Ok(millrace::Client::builder(&cluster.url())
        .cluster(true)
        .prefix(&b.prefix)
        .connect()
        .await?)
}

/// Fills the queue (partitioned into `parts`, or not for 0) with `n` jobs
/// and drains it with one worker process at `concurrency`.
async fn drain_cluster(
    b: &Bench,
    cluster: &RedisCluster,
    cp: &ClusterProbe,
    name: &str,
    (parts, spread): (u32, bool),
    concurrency: usize,
    n: u64,
) -> anyhow::Result<ClusterDrain> {
    let q = Queue::with_prefix(&b.prefix, name)?;
    let mut queues = vec![q.clone()];
    if parts > 1 {
        let mut conn = cluster.endpoint().command_connection().await?;
        let layout = if spread {
            q.set_partitions(&mut conn, parts).await?
        } else {
            // The plain labels, as one server's layout.
            redis::cmd("SET")
                .arg(&q.keys().partitions)
                .arg(parts)
                .query_async::<()>(&mut conn)
                .await?;
            Layout::plain(parts)
        };
        for &label in layout.labels() {
            queues.push(q.partition(label)?);
        }
    }
    let placed = Placed::all(cluster, queues)?;
    fill_with(
        cluster_client(b, cluster).await?,
        &q,
        millrace_core::Priority::Default,
        noop(),
        n,
    )
    .await?;
    let cpu0 = cp.cpu_seconds().await?;
    let calls0 = cp.command_calls().await?;
    let worker = WorkerProc::start(
        &b.worker_bin,
        &cluster_worker_args(b, cluster, q.name(), concurrency, 0),
        &b.worker_log,
    )?;
    let limit = Duration::from_secs(if b.quick { 60 } else { 300 });
    let (t0, c0) = wait_processed(cp, &placed, limit, |p| p > 0).await?;
    // From the first job on: how busy each master was while draining.
    let cpu_t0 = cp.cpu_seconds().await?;
    let (t1, _) = wait_processed(cp, &placed, limit, |p| p >= n).await?;
    let cpu1 = cp.cpu_seconds().await?;
    let calls1 = cp.command_calls().await?;
    let worker_cpu = worker.cpu_seconds().unwrap_or(0.0);
    worker.stop(Duration::from_secs(30))?;

    let mut masters: Vec<MasterShare> = cp
        .masters()
        .into_iter()
        .map(|i| MasterShare {
            addr: cp.nodes()[i].addr.clone(),
            jobs: 0,
            cpu_s: cpu1[i] - cpu0[i],
            busy: (cpu1[i] - cpu_t0[i]) / (t1 - t0).as_secs_f64().max(1e-6),
            partitions: Vec::new(),
        })
        .collect();
    let mut total = 0;
    for p in &placed {
        let node = &cp.nodes()[p.node];
        let got = p.counters(cp).await?;
        let residue = node.probe.residue(p.queue.keys(), p.queue.group()).await?;
        if !residue.is_empty() {
            b.fail(format!(
                "partitions ({parts}): {} not empty after the run: {residue:?}",
                p.queue.name()
            ));
        }
        total += got.processed;
        if let Some(m) = masters.iter_mut().find(|m| m.addr == node.addr) {
            m.jobs += got.processed;
            m.partitions
                .push(format!("{} {}", p.queue.name(), got.processed));
        }
    }
    if total != n {
        b.fail(format!(
            "partitions ({parts}): expected {n} processed, the partitions counted {total}"
        ));
    }
    flush(cp).await?;
    let replica_cpu: f64 = (0..cp.nodes().len())
        .filter(|&i| !cp.nodes()[i].master)
        .map(|i| cpu1[i] - cpu0[i])
        .sum();
    let secs = (t1 - t0).as_secs_f64().max(1e-6);
    Ok(ClusterDrain {
        rate: (n - c0) as f64 / secs,
        cpu_us: masters.iter().map(|m| m.cpu_s).sum::<f64>() * 1e6 / n as f64,
        replica_cpu_us: replica_cpu * 1e6 / n as f64,
        worker_cpu_us: worker_cpu * 1e6 / n as f64,
        masters,
        wall: secs,
        commands: commands_per_job(&calls0, &calls1, n),
    })
}

/// Polls the processed count summed over `placed` until `check` holds;
/// returns when it was first seen and the count then.
async fn wait_processed(
    cp: &ClusterProbe,
    placed: &[Placed],
    limit: Duration,
    check: impl Fn(u64) -> bool,
) -> anyhow::Result<(Instant, u64)> {
    let deadline = Instant::now() + limit;
    loop {
        let p = processed(cp, placed).await?;
        if check(p) {
            return Ok((Instant::now(), p));
        }
        if Instant::now() > deadline {
            bail!("the partitioned queue did not drain within {limit:?}: {p} processed");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Empties every master (the cluster is the benchmark's own).
async fn flush(cp: &ClusterProbe) -> anyhow::Result<()> {
    for i in cp.masters() {
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut cp.nodes()[i].probe.conn())
            .await?;
    }
    Ok(())
}

/// One line per master: jobs, their share, CPU and how busy it was.
fn masters_text(d: &ClusterDrain) -> String {
    let n: u64 = d.masters.iter().map(|m| m.jobs).sum();
    d.masters
        .iter()
        .map(|m| {
            format!(
                "    master {}: {} jobs ({:.1} %), Redis CPU {:.2} s, {:.0} % of a core while draining, partitions [{}]",
                m.addr,
                m.jobs,
                m.jobs as f64 * 100.0 / n.max(1) as f64,
                m.cpu_s,
                m.busy * 100.0,
                m.partitions.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Records one cluster drain as `name`, `name_redis_cpu`, ... .
fn record(figs: &mut Figures, name: &str, d: &ClusterDrain) {
    let n: u64 = d.masters.iter().map(|m| m.jobs).sum::<u64>().max(1);
    let share = |m: &MasterShare| m.jobs as f64 * 100.0 / n as f64;
    let busiest = d.masters.iter().map(|m| m.busy).fold(0.0, f64::max);
    figs.add(name, "jobs/s", Better::Higher, None, d.rate);
    figs.add(
        &format!("{name}_redis_cpu"),
        "us/job",
        Better::Lower,
        None,
        d.cpu_us,
    );
    figs.add(
        &format!("{name}_replica_cpu"),
        "us/job",
        Better::Lower,
        None,
        d.replica_cpu_us,
    );
    figs.add(
        &format!("{name}_worker_cpu"),
        "us/job",
        Better::Lower,
        None,
        d.worker_cpu_us,
    );
    figs.add(
        &format!("{name}_busiest_master"),
        "% core",
        Better::Lower,
        None,
        busiest * 100.0,
    );
    // The rate at which the busiest master would fill one core, at the
    // CPU per job it spent here: the cluster's bound once each master has
    // a core of its own (here the six servers and the worker share two).
    let busiest_s = d.masters.iter().map(|m| m.cpu_s).fold(0.0, f64::max);
    figs.add(
        &format!("{name}_master_bound"),
        "jobs/s",
        Better::Higher,
        None,
        n as f64 / busiest_s.max(1e-6),
    );
    figs.add(
        &format!("{name}_max_share"),
        "% jobs",
        Better::Lower,
        None,
        d.masters.iter().map(share).fold(0.0, f64::max),
    );
    figs.add(
        &format!("{name}_min_share"),
        "% jobs",
        Better::Higher,
        None,
        d.masters.iter().map(share).fold(100.0, f64::min),
    );
}

/// Runs the single-server drain, then the cluster drains of every layout.
pub async fn run(b: &Bench, figs: &mut Figures, concurrency: usize) -> anyhow::Result<()> {
    let n = if b.quick { 3_000 } else { 100_000 };
    for run in 0..b.runs {
        let d = drain(b, 1, concurrency, n).await?;
        b.progress(&format!(
            "partitions: single server, run {}: {:.0} jobs/s, {:.2} us Redis CPU/job",
            run + 1,
            d.rate,
            d.cpu_us
        ));
        figs.add(
            "partitions_single_server",
            "jobs/s",
            Better::Higher,
            None,
            d.rate,
        );
        figs.add(
            "partitions_single_server_redis_cpu",
            "us/job",
            Better::Lower,
            None,
            d.cpu_us,
        );
        figs.add(
            "partitions_single_server_worker_cpu",
            "us/job",
            Better::Lower,
            None,
            d.worker_cpu_us,
        );
        // As for a master: the rate at which this server fills one core.
        figs.add(
            "partitions_single_server_master_bound",
            "jobs/s",
            Better::Higher,
            None,
            1e6 / d.cpu_us.max(1e-6),
        );
    }
    figs.note(
        "partitions_single_server",
        format!("1 plain redis-server, unpartitioned, {n} jobs, concurrency {concurrency}"),
    );
    b.progress("partitions: starting a local Redis Cluster (3 masters, 3 replicas)");
    let cluster = tokio::task::block_in_place(RedisCluster::start)?;
    let cp = ClusterProbe::connect(&cluster).await?;
    for (parts, spread) in LAYOUTS {
        let name = match (parts, spread) {
            (0, _) => "partitions_cluster_unpartitioned".to_owned(),
            (_, false) => format!("partitions_cluster_p{parts}"),
            (_, true) => format!("partitions_cluster_p{parts}_even"),
        };
        let queue = QUEUE;
        for run in 0..b.runs {
            let d = drain_cluster(b, &cluster, &cp, queue, (parts, spread), concurrency, n).await?;
            b.progress(&format!(
                "{name}, run {}: {:.0} jobs/s ({:.2} s), {:.2} us Redis CPU/job on the masters, {:.2} on the replicas, {:.2} worker, {}\n{}",
                run + 1,
                d.rate,
                d.wall,
                d.cpu_us,
                d.replica_cpu_us,
                d.worker_cpu_us,
                commands_text(&d.commands),
                masters_text(&d)
            ));
            record(figs, &name, &d);
        }
        figs.note(
            &name,
            format!(
                "3 masters, queue {queue}, {} labels, {n} jobs, concurrency {concurrency}",
                if spread { "spread" } else { "plain" }
            ),
        );
    }
    Ok(())
}
