//! Connections: one `millrace-worker` process on a local Redis Cluster
//! working 10 queues, each partitioned into 8, each partition with jobs in
//! the three priority lanes. Once the worker is ready and has drained
//! them, counts the connections it holds on every node (`CLIENT LIST`:
//! the clients opened since it started), and how many are blocked in a
//! read.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use millrace::EnqueueOptions;
use millrace_core::partition::partition_of;
use millrace_core::{Priority, Queue};
use millrace_tests::RedisCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Bench;
use crate::cluster_probe::{ClusterProbe, Placed, processed, tally};
use crate::procs::WorkerProc;
use crate::scenarios::noop;
use crate::scenarios::partitions::{cluster_client, cluster_worker_args};
use crate::stats::{Better, Figures};

/// Queues the worker works.
const QUEUES: u32 = 10;
/// Partitions of each.
const PARTITIONS: u32 = 8;

/// Runs the count on a cluster of its own.
pub async fn run(b: &Bench, figs: &mut Figures) -> anyhow::Result<()> {
    b.progress("connections: starting a local Redis Cluster (3 masters, 3 replicas)");
    let cluster = tokio::task::block_in_place(RedisCluster::start)?;
    let cp = ClusterProbe::connect(&cluster).await?;
    let queues: Vec<Queue> = (0..QUEUES)
        .map(|i| Queue::with_prefix(&b.prefix, &format!("conn-{i}")))
        .collect::<Result<_, _>>()?;
    let mut placed = Vec::new();
    {
        let mut conn = cluster.endpoint().command_connection().await?;
        let client = cluster_client(b, &cluster).await?;
        for q in &queues {
            let layout = q.set_partitions(&mut conn, PARTITIONS).await?;
            for i in 0..PARTITIONS {
                let key = key_of(i);
                for p in Priority::ALL {
                    let opts = EnqueueOptions::new()
                        .queue(q.name())
                        .priority(p)
                        .key(key.clone());
                    client.enqueue_with(&noop(), opts).await?;
                }
            }
            let parts = layout.labels().iter().map(|&l| q.partition(l));
            placed.extend(Placed::all(&cluster, parts.collect::<Result<_, _>>()?)?);
        }
    }
    let jobs = u64::from(QUEUES * PARTITIONS) * 3;
    let before = cp.last_client_ids().await?;
    let port = millrace_tests::free_tcp_port()?;
    let names: Vec<&str> = queues.iter().map(Queue::name).collect();
    let worker = WorkerProc::start(
        &b.worker_bin,
        &cluster_worker_args(b, &cluster, &names.join(","), 64, port),
        &b.worker_log,
    )?;
    let ready_in = wait_ready(port, Duration::from_secs(60)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed(&cp, &placed).await? < jobs {
        if Instant::now() > deadline {
            bail!("connections: the worker did not run the {jobs} jobs within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Idle now: every fetch loop waits in a blocked read. Count until two
    // counts a second apart agree on the totals (the last commands change
    // as idle readers wake up and block again).
    let totals = |c: &[NodeCount]| -> Vec<(usize, usize)> {
        c.iter().map(|n| (n.total, n.blocked)).collect()
    };
    let mut last = Vec::new();
    let counts = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let c = count(&cp, &before).await?;
        if totals(&c) == last || Instant::now() > deadline {
            break c;
        }
        last = totals(&c);
    };
    worker.stop(Duration::from_secs(30))?;
    let got = processed(&cp, &placed).await?;
    if got != jobs {
        b.fail(format!(
            "connections: expected {jobs} processed, the partitions counted {got}"
        ));
    }

    let total: usize = counts.iter().map(|c| c.total).sum();
    let blocked: usize = counts.iter().map(|c| c.blocked).sum();
    let nodes = counts.iter().filter(|c| c.total > 0).count();
    println!(
        "  connections: 1 worker, {QUEUES} queues x {PARTITIONS} partitions x 3 lanes, ready in {:.1} s",
        ready_in.as_secs_f64()
    );
    for (i, c) in counts.iter().enumerate() {
        let node = &cp.nodes()[i];
        println!(
            "    {} {}: {} connections, {} blocked, by last command {:?}",
            if node.master { "master " } else { "replica" },
            node.addr,
            c.total,
            c.blocked,
            c.by_cmd
        );
    }
    figs.add(
        "connections_per_worker",
        "conns",
        Better::Lower,
        None,
        total as f64,
    );
    figs.note(
        "connections_per_worker",
        format!(
            "{QUEUES} queues x {PARTITIONS} partitions x 3 lanes, on {nodes} of {} nodes",
            cp.nodes().len()
        ),
    );
    figs.add(
        "connections_blocked",
        "conns",
        Better::Lower,
        None,
        blocked as f64,
    );
    figs.note(
        "connections_blocked",
        format!(
            "expected {} readers: one per (queue, partition) plus the queue itself",
            QUEUES * (PARTITIONS + 1)
        ),
    );
    let most = counts.iter().map(|c| c.total).max().unwrap_or(0);
    figs.add(
        "connections_busiest_node",
        "conns",
        Better::Lower,
        None,
        most as f64,
    );
    Ok(())
}

/// A key that [`partition_of`] puts on partition `i` of [`PARTITIONS`].
fn key_of(i: u32) -> String {
    (0..)
        .map(|k| format!("k{k}"))
        .find(|k| partition_of(k, PARTITIONS) == i)
        .unwrap_or_default()
}

/// The worker's connections on one node.
#[derive(Debug)]
struct NodeCount {
    total: usize,
    blocked: usize,
    by_cmd: std::collections::BTreeMap<String, usize>,
}

/// Clients opened on every node since `before` (the highest ids then).
async fn count(cp: &ClusterProbe, before: &[u64]) -> anyhow::Result<Vec<NodeCount>> {
    let mut out = Vec::with_capacity(before.len());
    for (i, &last) in before.iter().enumerate() {
        let new: Vec<_> = cp
            .clients(i)
            .await?
            .into_iter()
            .filter(|c| c.id > last && !c.flags.contains('S') && !c.flags.contains('M'))
            .collect();
        out.push(NodeCount {
            total: new.len(),
            blocked: new.iter().filter(|c| c.flags.contains('b')).count(),
            by_cmd: tally(new.iter().map(|c| c.cmd.as_str())),
        });
    }
    Ok(out)
}

/// Polls `GET /readyz` on the worker's HTTP port until it answers 200;
/// returns how long that took.
async fn wait_ready(port: u16, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if readyz(port).await.unwrap_or(false) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the worker was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `GET /readyz`: true on a 200.
async fn readyz(port: u16) -> anyhow::Result<bool> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connect")?;
    s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    Ok(reply.starts_with(b"HTTP/1.1 200") || reply.starts_with(b"HTTP/1.0 200"))
}
