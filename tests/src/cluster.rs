//! A private Redis Cluster on loopback: six `redis-server`s with
//! `cluster-enabled yes` (three masters, three replicas), joined by
//! `redis-cli --cluster create ... --cluster-replicas 1`, ready once every
//! node says `cluster_state:ok` and every replica's link is up; killed on
//! drop. A test can SIGKILL the master serving a key and wait for its
//! replica to take over. [`RedisCluster::start_tls`] starts one over TLS
//! (client, bus and replication links) that announces the hostname
//! `localhost`, with certificates naming only that host, as managed
//! clusters announce hostnames their certificates name.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use millrace_core::connect::Endpoint;
use millrace_core::slot::{SlotMap, key_slot};

use crate::{HarnessError, RedisOptions, RedisServer, TestCerts, TlsMode, free_port};

/// How long a node may be unreachable before the cluster fails it over, in
/// ms (`cluster-node-timeout`). Short, so a failover test is quick.
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// How long the cluster gets to form, or to recover from a failover.
const SETTLE: Duration = Duration::from_secs(30);

/// Six cluster nodes (three masters with a replica each), killed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// The shared certificates' directory of a TLS cluster.
    _certs: Option<tempfile::TempDir>,
}

impl RedisCluster {
    /// Starts six nodes on free loopback ports, creates the cluster and
    /// waits until it serves every slot with every replica in sync.
    pub fn start() -> Result<Self, HarnessError> {
        Self::start_inner(None)
    }

    /// As [`start`](Self::start), over TLS in `mode`: every link is TLS,
    /// the nodes announce the hostname `localhost` (`CLUSTER SLOTS` names
    /// it, not their IP) and their certificate names only `localhost`.
    pub fn start_tls(mode: TlsMode) -> Result<Self, HarnessError> {
        Self::start_inner(Some(mode))
    }

    fn start_inner(tls: Option<TlsMode>) -> Result<Self, HarnessError> {
        let certs_dir = match tls {
            Some(_) => Some(
                tempfile::Builder::new()
                    .prefix("millrace-cluster-certs")
                    .tempdir()?,
            ),
            None => None,
        };
        let certs = match &certs_dir {
            Some(d) => Some(TestCerts::in_dir_for(d.path(), &["localhost"])?),
            None => None,
        };
        let mut nodes = Vec::with_capacity(6);
        for _ in 0..6 {
            let bus = free_port()?;
            let mut args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                "--cluster-port",
                &bus.to_string(),
                // A replica takes over however long its link was down.
                "--cluster-replica-validity-factor",
                "0",
            ]
            .map(str::to_owned)
            .to_vec();
            let mut options = RedisOptions::default();
            if let Some(mode) = tls {
                args.extend(
                    [
                        "--tls-cluster",
                        "yes",
                        "--tls-replication",
                        "yes",
                        "--cluster-announce-hostname",
                        "localhost",
                        "--cluster-preferred-endpoint-type",
                        "hostname",
                    ]
                    .map(str::to_owned),
                );
                options = options.tls(mode);
                options.certs.clone_from(&certs);
                options.host = "localhost".to_owned();
            }
            options.args = args;
            nodes.push(RedisServer::start_options(options)?);
        }
        let mut create = Command::new("redis-cli");
        if let (Some(mode), Some(certs)) = (tls, &certs) {
            create.arg("--tls").arg("--cacert").arg(certs.ca());
            if mode == TlsMode::Mutual {
                create
                    .arg("--cert")
                    .arg(certs.client_cert())
                    .arg("--key")
                    .arg(certs.client_key());
            }
        }
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port()));
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => HarnessError::NotStarted {
                    port: nodes[0].port(),
                    reason: "redis-cli not found on PATH (it comes with redis-server)".into(),
                    log: String::new(),
                },
                _ => e.into(),
            })?;
        let cluster = Self {
            nodes,
            _certs: certs_dir,
        };
        if !out.status.success() {
            return Err(cluster.failed(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        cluster.wait_settled()?;
        Ok(cluster)
    }

    fn failed(&self, reason: String) -> HarnessError {
        HarnessError::NotStarted {
            port: self.nodes.first().map_or(0, RedisServer::port),
            reason,
            log: self.nodes.iter().map(RedisServer::log).collect(),
        }
    }

    /// Waits until every running node says `cluster_state:ok`, knows the
    /// same three masters, and every running replica's link is up.
    fn wait_settled(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + SETTLE;
        while !self.settled() {
            if Instant::now() > deadline {
                return Err(self.failed(format!("cluster not settled within {SETTLE:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts node `i` again (after [`fail_over`](Self::fail_over)) on
    /// its port and directory: it rejoins as a replica of the master that
    /// replaced it. Waits until every replica is in sync again.
    pub fn rejoin(&mut self, i: usize) -> Result<(), HarnessError> {
        self.nodes[i].restart()?;
        let deadline = Instant::now() + SETTLE;
        while !(self.settled() && self.replicas() == 3) {
            if Instant::now() > deadline {
                return Err(self.failed(format!("node {i} did not rejoin within {SETTLE:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn replicas(&self) -> usize {
        self.running()
            .filter(|n| {
                query::<String>(n, &["INFO", "replication"])
                    .is_some_and(|r| r.contains("role:slave"))
            })
            .count()
    }

    fn settled(&self) -> bool {
        let mut masters = 0;
        for n in self.running() {
            let Some(info) = query::<String>(n, &["CLUSTER", "INFO"]) else {
                return false;
            };
            if !info.contains("cluster_state:ok") {
                return false;
            }
            let Some(repl) = query::<String>(n, &["INFO", "replication"]) else {
                return false;
            };
            if repl.contains("role:master") {
                masters += 1;
            } else if !repl.contains("master_link_status:up") {
                return false;
            }
        }
        masters == 3
    }

    fn running(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.child_running())
    }

    /// The seed URLs, comma-separated (every node: a client needs one).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cluster endpoint: the seed URLs with the cluster flag (and the
    /// TLS files of a TLS cluster).
    pub fn endpoint(&self) -> Endpoint {
        let tls = self
            .nodes
            .first()
            .map(RedisServer::tls_config)
            .unwrap_or_default();
        Endpoint::new(self.url()).with_cluster(true).with_tls(tls)
    }

    /// The nodes, for a caller that keeps them running (each is killed
    /// when dropped). Not for a TLS cluster: its certificates go with it.
    pub fn into_nodes(self) -> Vec<RedisServer> {
        self.nodes
    }

    /// The nodes, masters and replicas in no particular order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The index (in [`nodes`](Self::nodes)) of the running master
    /// serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let slot = key_slot(key);
        self.nodes
            .iter()
            .position(|n| n.child_running() && serves(n, slot))
    }

    /// Kills (SIGKILL) the master serving `key` and waits until its
    /// replica has taken over and the cluster is whole again (three
    /// masters, `cluster_state:ok` everywhere). Returns the killed node's
    /// index.
    pub fn fail_over(&mut self, key: &str) -> Result<usize, HarnessError> {
        let Some(i) = self.master_of(key) else {
            return Err(self.failed(format!("no master serves {key}")));
        };
        self.nodes[i].kill();
        let deadline = Instant::now() + SETTLE;
        loop {
            let promoted = self.master_of(key).is_some_and(|m| m != i);
            if promoted && self.settled() {
                return Ok(i);
            }
            if Instant::now() > deadline {
                return Err(self.failed(format!("no failover of {key} within {SETTLE:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// True when node `n` serves `slot` itself (no MOVED for it), by its own
/// slot map.
fn serves(n: &RedisServer, slot: u16) -> bool {
    let Ok(mut conn) = n.connection() else {
        return false;
    };
    let Ok(my_id) = redis::cmd("CLUSTER").arg("MYID").query::<String>(&mut conn) else {
        return false;
    };
    let Ok(reply) = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query::<redis::Value>(&mut conn)
    else {
        return false;
    };
    SlotMap::parse(&reply)
        .and_then(|map| map.master(map.master_of(slot)?).map(|m| m.id == my_id))
        .unwrap_or(false)
}

fn query<T: redis::FromRedisValue>(n: &RedisServer, args: &[&str]) -> Option<T> {
    let mut conn = n.connection().ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut conn).ok()
}
