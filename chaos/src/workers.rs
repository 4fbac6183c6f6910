//! The worker processes: start, SIGKILL one and restart it, stop all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use millrace_core::Queue;
use millrace_core::redis::{self, aio::ConnectionManager};

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

    /// SIGKILLs the worker of slot `n % workers`, reads what its consumer
    /// had pending (frozen until its lease expires), and restarts the slot.
    pub async fn kill_one(
        &mut self,
        conn: &mut ConnectionManager,
        queue: &Queue,
        n: usize,
    ) -> anyhow::Result<Kill> {
        let slot = n % self.procs.len();
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

/// Job ids pending for the consumer of process `pid` (`host-pid-random`).
async fn pending_jobs_of_pid(
    conn: &mut ConnectionManager,
    queue: &Queue,
    pid: u32,
) -> anyhow::Result<Vec<String>> {
    let stream = &queue.keys().stream;
    let infos: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(queue.group())
        .query_async(conn)
        .await?;
    let marker = format!("-{pid}-");
    let Some(name) = infos
        .iter()
        .filter_map(|m| {
            m.get("name")
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        })
        .find(|n| n.contains(&marker))
    else {
        return Ok(Vec::new());
    };
    let entries = queue.pending_of(conn, &name, 100_000).await?;
    let mut pipe = redis::pipe();
    for e in &entries {
        pipe.cmd("XRANGE").arg(stream).arg(e).arg(e);
    }
    let rows: Vec<Vec<(String, std::collections::HashMap<String, String>)>> =
        pipe.query_async(conn).await?;
    Ok(rows
        .into_iter()
        .flatten()
        .filter_map(|(_, f)| f.get("id").cloned())
        .collect())
}
