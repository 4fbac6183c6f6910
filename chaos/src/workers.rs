//! The worker processes: start, SIGKILL one and restart it, SIGTERM one
//! and replace it (a rolling deploy), stop all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::redis;

/// The record file of worker slot `i`.
pub fn record_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("worker-{i}.runs"))
}

/// One kill: which slot, when, and the job ids its consumer had pending.
pub struct Kill {
    pub slot: usize,
    pub at: Instant,
    pub in_flight: Vec<String>,
}

/// Worker processes, one per slot; a killed slot is restarted at once.
pub struct Workers {
    bin: PathBuf,
    url: String,
    dir: PathBuf,
    args: Vec<String>,
    procs: Vec<Child>,
}

impl Workers {
    /// Starts `n` workers.
    pub fn start(
        bin: &Path,
        url: &str,
        dir: &Path,
        n: usize,
        args: Vec<String>,
    ) -> anyhow::Result<Self> {
        let mut w = Self {
            bin: bin.to_owned(),
            url: url.to_owned(),
            dir: dir.to_owned(),
            args,
            procs: Vec::new(),
        };
        for i in 0..n {
            let p = w.spawn(i)?;
            w.procs.push(p);
        }
        Ok(w)
    }

    fn spawn(&self, slot: usize) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("worker-{slot}.log")))?;
        Command::new(&self.bin)
            .env("MILLRACE_REDIS_URL", &self.url)
            // Never relay (or touch) a database outbox from a test.
            .env_remove("MILLRACE_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .args(["--metrics-port", "0"])
            .arg("--record-runs")
            .arg(record_path(&self.dir, slot))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))
    }

    /// How many worker slots there are.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// The process id of the worker in `slot`.
    pub fn pid(&self, slot: usize) -> u32 {
        self.procs[slot].id()
    }

    /// Sends SIGTERM to the worker in `slot` (a graceful shutdown starts).
    pub fn sigterm(&self, slot: usize) -> anyhow::Result<()> {
        let pid = self.pid(slot);
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        Ok(())
    }

    /// The exit status of the worker in `slot`, once it has exited.
    pub fn try_exit(&mut self, slot: usize) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.procs[slot].try_wait()?)
    }

    /// SIGKILLs the worker in `slot` and reaps it (it outlived its grace).
    pub fn force_kill(&mut self, slot: usize) {
        let _ = self.procs[slot].kill();
        let _ = self.procs[slot].wait();
    }

    /// Starts a new worker in `slot`, whose previous process has exited;
    /// returns its process id.
    pub fn respawn(&mut self, slot: usize) -> anyhow::Result<u32> {
        self.procs[slot] = self.spawn(slot)?;
        Ok(self.pid(slot))
    }

    /// SIGKILLs the worker of `slot`, reads what its consumer had pending
    /// (frozen until its lease expires), and restarts the slot.
    pub async fn kill_one(
        &mut self,
        conn: &mut Conn,
        queue: &Queue,
        slot: usize,
    ) -> anyhow::Result<Kill> {
        let pid = self.procs[slot].id();
        self.procs[slot].kill()?;
        self.procs[slot].wait()?;
        let at = Instant::now();
        // The first commands after a Redis restart may fail while the
        // connection reconnects: keep trying for a few seconds.
        let mut in_flight = Vec::new();
        for _ in 0..50 {
            match pending_jobs_of_pid(conn, queue, pid).await {
                Ok(ids) => {
                    in_flight = ids;
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        self.procs[slot] = self.spawn(slot)?;
        Ok(Kill {
            slot,
            at,
            in_flight,
        })
    }

    /// SIGTERMs every worker and waits (then SIGKILLs what is left).
    pub fn stop_all(&mut self) {
        for p in &self.procs {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(p.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for p in &mut self.procs {
            while matches!(p.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// The lane views of `queue` in use (`default` and any lane the producer
/// wrote to).
async fn lanes_of(conn: &mut Conn, queue: &Queue) -> anyhow::Result<Vec<Queue>> {
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&queue.keys().lanes)
        .query_async(conn)
        .await?;
    Ok(millrace_core::lane::lanes_from_names(&names)
        .into_iter()
        .map(|p| queue.lane(p))
        .collect())
}

/// The group's consumer of process `pid` (`host-pid-random`) and how many
/// entries are pending for it in every lane; `None` when it is in no
/// lane's group.
pub async fn consumer_of_pid(
    conn: &mut Conn,
    queue: &Queue,
    pid: u32,
) -> anyhow::Result<Option<(String, u64)>> {
    let mut found: Option<(String, u64)> = None;
    for lane in lanes_of(conn, queue).await? {
        if let Some((name, n)) = consumer_in(conn, &lane, pid).await? {
            let total = found.as_ref().map_or(0, |f| f.1) + n;
            found = Some((name, total));
        }
    }
    Ok(found)
}

/// [`consumer_of_pid`] in one lane's group.
async fn consumer_in(
    conn: &mut Conn,
    queue: &Queue,
    pid: u32,
) -> anyhow::Result<Option<(String, u64)>> {
    let infos: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(&queue.keys().stream)
        .arg(queue.group())
        .query_async(conn)
        .await?;
    let marker = format!("-{pid}-");
    Ok(infos.iter().find_map(|m| {
        let name = m
            .get("name")
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .filter(|n| n.contains(&marker))?;
        let pending = m
            .get("pending")
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0);
        Some((name, pending))
    }))
}

/// Whether the worker of process `pid` has written its heartbeat (it does
/// at start, before its first read): the replacement of a deploy is up.
pub async fn heartbeating(conn: &mut Conn, queue: &Queue, pid: u32) -> anyhow::Result<bool> {
    let names: Vec<String> = redis::cmd("ZRANGE")
        .arg(&queue.keys().workers)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let marker = format!("-{pid}-");
    Ok(names.iter().any(|n| n.contains(&marker)))
}

/// Job ids pending for the consumer of process `pid` (`host-pid-random`),
/// in every lane.
async fn pending_jobs_of_pid(
    conn: &mut Conn,
    queue: &Queue,
    pid: u32,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for lane in lanes_of(conn, queue).await? {
        let Some((name, _)) = consumer_in(conn, &lane, pid).await? else {
            continue;
        };
        let entries = lane.pending_of(conn, &name, 100_000).await?;
        if entries.is_empty() {
            // An empty pipeline's reply does not parse: a worker killed with
            // nothing pending made every lookup fail, and the run stalled 5 s.
            continue;
        }
        let mut pipe = redis::pipe();
        for e in &entries {
            pipe.cmd("XRANGE").arg(&lane.keys().stream).arg(e).arg(e);
        }
        let rows: Vec<Vec<(String, std::collections::HashMap<String, String>)>> =
            pipe.query_async(conn).await?;
        ids.extend(
            rows.into_iter()
                .flatten()
                .filter_map(|(_, f)| f.get("id").cloned()),
        );
    }
    Ok(ids)
}
