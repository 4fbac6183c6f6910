//! Worker processes: the `millrace-worker` binary (or this program's own
//! `child-worker` mode), started with the benchmark's settings, watched for
//! memory and stopped with SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A worker process, killed (SIGKILL) on drop if still running, with a
/// thread sampling its resident memory every 20 ms.
pub struct WorkerProc {
    child: Child,
    peak_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl WorkerProc {
    /// Starts `program` with `args`; its log goes to stderr, filtered by
    /// `log` (a `RUST_LOG` value).
    pub fn start(program: &Path, args: &[String], log: &str) -> anyhow::Result<Self> {
        Self::start_with_env(program, args, log, &[])
    }

    /// [`start`](Self::start) with extra environment variables.
    pub fn start_with_env(
        program: &Path,
        args: &[String],
        log: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file()?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let pid = child.id();
        let sampler = {
            let peak = peak_kb.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = rss_kb(pid, "VmRSS:") {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Ok(Self {
            child,
            peak_kb,
            stop,
            sampler: Some(sampler),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in MB.
    pub fn rss_mb(&self) -> Option<f64> {
        rss_kb(self.pid(), "VmRSS:").map(|kb| kb as f64 / 1024.0)
    }

    /// The highest resident memory seen so far (sampled, and the kernel's
    /// own high-water mark), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let sampled = self.peak_kb.load(Ordering::Relaxed);
        let hwm = rss_kb(self.pid(), "VmHWM:").unwrap_or(0);
        sampled.max(hwm) as f64 / 1024.0
    }

    /// CPU time the process has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds_of(&self.pid().to_string())
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `limit` for a
    /// clean exit.
    pub fn stop(mut self, limit: Duration) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.pid());
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("worker {} exited with {status}", self.pid());
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("worker {} did not exit within {limit:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where worker processes log: `$TMPDIR/millrace-bench-<pid>/workers.log`
/// (appended; printed by the benchmark when a check fails).
pub fn log_path() -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("millrace-bench-{}", std::process::id()))
        .join("workers.log")
}

/// The benchmark's scratch directory (beside the worker logs), created if
/// missing.
pub fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let log = log_path();
    let dir = log.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

fn log_file() -> anyhow::Result<std::fs::File> {
    let path = log_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// CPU time (user + system) used so far by process `pid` (`self` for this
/// one), in seconds.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parens.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`,
/// 100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// A field of `/proc/<pid>/status` in kB (`VmRSS:`, `VmHWM:`).
fn rss_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
