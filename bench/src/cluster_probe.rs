//! What the benchmark reads from each node of a local Redis Cluster: CPU
//! time per node (`INFO cpu`), which master serves a queue, a queue's
//! counters there, and the clients connected to each node
//! (`CLIENT LIST`).

use std::collections::BTreeMap;

use anyhow::Context;
use millrace_core::Queue;
use millrace_tests::RedisCluster;

use crate::probe::{Counters, Probe};

/// One node: its address, its role when the probe connected, and a plain
/// connection to it (no redirects: commands run on that node).
pub struct Node {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// True for a master.
    pub master: bool,
    /// A plain connection to this node alone.
    pub probe: Probe,
}

/// Plain connections to every node of a cluster.
pub struct ClusterProbe {
    nodes: Vec<Node>,
}

/// One client connection seen in `CLIENT LIST`.
#[derive(Debug, Clone)]
pub struct ClientEntry {
    /// The server's client id (grows with every new connection).
    pub id: u64,
    /// `flags=` (`b`: blocked in a command; `S`/`M`: replication link).
    pub flags: String,
    /// `cmd=`: the last command it ran.
    pub cmd: String,
}

impl ClusterProbe {
    /// Connects to every node of `cluster` and notes which are masters.
    pub async fn connect(cluster: &RedisCluster) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for n in cluster.nodes() {
            let probe = Probe::connect(&n.endpoint()).await?;
            let repl: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut probe.conn())
                .await?;
            nodes.push(Node {
                addr: format!("127.0.0.1:{}", n.port()),
                master: repl.contains("role:master"),
                probe,
            });
        }
        Ok(Self { nodes })
    }

    /// Every node, in the cluster's order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Indexes of the masters.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].master)
            .collect()
    }

    /// CPU seconds (`used_cpu_sys` + `used_cpu_user`) of every node so far.
    pub async fn cpu_seconds(&self) -> anyhow::Result<Vec<f64>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            out.push(n.probe.cpu_seconds().await?);
        }
        Ok(out)
    }

    /// Calls per command so far, summed over the masters.
    pub async fn command_calls(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut sum = BTreeMap::new();
        for i in self.masters() {
            for (k, v) in self.nodes[i].probe.command_calls().await? {
                *sum.entry(k).or_insert(0) += v;
            }
        }
        Ok(sum)
    }

    /// Every client connected to node `i`.
    pub async fn clients(&self, i: usize) -> anyhow::Result<Vec<ClientEntry>> {
        let text: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut self.nodes[i].probe.conn())
            .await?;
        Ok(text.lines().filter_map(parse_client).collect())
    }

    /// The highest client id on every node, to tell later connections
    /// from earlier ones.
    pub async fn last_client_ids(&self) -> anyhow::Result<Vec<u64>> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for i in 0..self.nodes.len() {
            out.push(
                self.clients(i)
                    .await?
                    .iter()
                    .map(|c| c.id)
                    .max()
                    .unwrap_or(0),
            );
        }
        Ok(out)
    }
}

/// A queue placed on the master serving it, with the probe to read it.
pub struct Placed {
    /// The queue (a partition, or the queue itself).
    pub queue: Queue,
    /// Index of its master in [`ClusterProbe::nodes`].
    pub node: usize,
}

impl Placed {
    /// Places every queue of `queues` on its master (`cluster`'s node
    /// indexes are the probe's).
    pub fn all(cluster: &RedisCluster, queues: Vec<Queue>) -> anyhow::Result<Vec<Self>> {
        queues
            .into_iter()
            .map(|queue| {
                let node = tokio::task::block_in_place(|| cluster.master_of(&queue.keys().stats))
                    .with_context(|| format!("no master serves {}", queue.name()))?;
                Ok(Self { queue, node })
            })
            .collect()
    }

    /// The queue's counters, read on its master.
    pub async fn counters(&self, cp: &ClusterProbe) -> anyhow::Result<Counters> {
        cp.nodes[self.node].probe.counters(self.queue.keys()).await
    }
}

/// Processed jobs summed over `placed`.
pub async fn processed(cp: &ClusterProbe, placed: &[Placed]) -> anyhow::Result<u64> {
    let mut sum = 0;
    for p in placed {
        sum += p.counters(cp).await?.processed;
    }
    Ok(sum)
}

/// Counts per key, e.g. the worker's connections by last command.
pub fn tally<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in items {
        *out.entry(i.to_owned()).or_insert(0) += 1;
    }
    out
}

/// One line of `CLIENT LIST`: `id=7 addr=... flags=N ... cmd=xread ...`.
fn parse_client(line: &str) -> Option<ClientEntry> {
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    Some(ClientEntry {
        id: field("id")?.parse().ok()?,
        flags: field("flags").unwrap_or_default().to_owned(),
        cmd: field("cmd").unwrap_or_default().to_owned(),
    })
}
