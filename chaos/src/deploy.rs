//! Rolling deploys: SIGTERM one worker, wait for it to exit (it must exit 0
//! within its grace, having handed back its jobs and left the consumer
//! group), start a replacement, wait until it heartbeats, pause, then the
//! next worker; round and round while the faults last.
//!
//! The deployer is a state machine stepped by the run's main loop, so it
//! never holds the workers while a SIGKILL or a Redis restart is due.

use std::time::{Duration, Instant};

use millrace_core::Conn;
use millrace_core::Queue;

use crate::workers::{self, Workers};

/// How long past its grace a SIGTERMed worker may live before it is
/// SIGKILLed (and counted as a bad exit either way).
const EXIT_MARGIN: Duration = Duration::from_secs(5);
/// How long a replacement may take to write its first heartbeat.
const START_LIMIT: Duration = Duration::from_secs(15);
/// A worker SIGTERMed this soon after a Redis restart (or during one) may
/// fail to hand back its entries (Redis was down): those it leaves
/// pending are not held against it.
const REDIS_EXCUSE: Duration = Duration::from_secs(2);

/// Where the rolling deploy stands.
enum Phase {
    /// Between two restarts: the next SIGTERM is due at `until`.
    Waiting { until: Instant },
    /// `slot`'s worker (process `pid`) was SIGTERMed at `since`.
    Stopping {
        slot: usize,
        pid: u32,
        since: Instant,
    },
    /// `slot`'s replacement (process `pid`) was started at `since`; the
    /// old worker took `exit` to go and left `left` entries pending.
    Starting {
        slot: usize,
        pid: u32,
        since: Instant,
        exit: Duration,
        left: u64,
    },
}

/// The rolling deploy and what it saw.
pub struct Deployer {
    grace: Duration,
    pause: Duration,
    next_slot: usize,
    phase: Phase,
    /// Workers SIGTERMed and replaced.
    pub restarts: usize,
    /// What went wrong: a non-zero exit, an exit later than the grace, a
    /// replacement that never came up.
    pub failures: Vec<String>,
    /// The slowest exit after a SIGTERM.
    pub slowest_exit: Duration,
    /// Entries still pending, after the exit, for the consumers of workers
    /// that exited: nobody runs them until their lease expires. Not counted
    /// when the worker stopped during or just after a Redis restart.
    pub left_pending: u64,
    /// When Redis last came back from a restart.
    redis_back: Option<Instant>,
}

impl Deployer {
    /// A deploy whose workers have `grace` to stop, with `pause` between
    /// two restarts (and before the first).
    pub fn new(grace: Duration, pause: Duration) -> Self {
        Self {
            grace,
            pause,
            next_slot: 0,
            phase: Phase::Waiting {
                until: Instant::now() + pause,
            },
            restarts: 0,
            failures: Vec::new(),
            slowest_exit: Duration::ZERO,
            left_pending: 0,
            redis_back: None,
        }
    }

    /// Notes that Redis was just restarted (a worker stopping meanwhile
    /// may not hand back its entries).
    pub fn redis_restarted(&mut self) {
        self.redis_back = Some(Instant::now());
    }

    /// The slot being stopped or replaced, which a SIGKILL must spare.
    pub fn busy_slot(&self) -> Option<usize> {
        match self.phase {
            Phase::Waiting { .. } => None,
            Phase::Stopping { slot, .. } | Phase::Starting { slot, .. } => Some(slot),
        }
    }

    /// Advances the deploy by at most one step. With `go_on` false it
    /// finishes the restart under way but starts no new one. Returns a
    /// line for the log when a restart finished or went wrong.
    pub async fn step(
        &mut self,
        workers: &mut Workers,
        conn: &mut Conn,
        queue: &Queue,
        go_on: bool,
    ) -> anyhow::Result<Option<String>> {
        match self.phase {
            Phase::Waiting { until } => {
                if go_on && Instant::now() >= until {
                    let slot = self.next_slot % workers.len();
                    let pid = workers.pid(slot);
                    // As a rollout waits for readiness: a worker restarted
                    // by a SIGKILL a moment ago may not handle SIGTERM yet
                    // (it would die of it, exit status "signal 15").
                    if !workers::heartbeating(conn, queue, pid)
                        .await
                        .unwrap_or(false)
                    {
                        return Ok(None);
                    }
                    self.next_slot = slot + 1;
                    workers.sigterm(slot)?;
                    self.phase = Phase::Stopping {
                        slot,
                        pid,
                        since: Instant::now(),
                    };
                }
                Ok(None)
            }
            Phase::Stopping { slot, pid, since } => {
                let took = since.elapsed();
                let status = match workers.try_exit(slot)? {
                    Some(status) => Some(status),
                    None if took > self.grace + EXIT_MARGIN => {
                        workers.force_kill(slot);
                        None
                    }
                    None => return Ok(None),
                };
                self.slowest_exit = self.slowest_exit.max(took);
                match status {
                    Some(s) if s.success() && took <= self.grace => {}
                    Some(s) => self.fail(format!(
                        "worker {slot} (pid {pid}) exited with {s} after {took:?} (grace {:?})",
                        self.grace
                    )),
                    None => self.fail(format!(
                        "worker {slot} (pid {pid}) still running {took:?} after SIGTERM (grace {:?}): SIGKILLed",
                        self.grace
                    )),
                }
                // A worker that exited cleanly has handed back its entries
                // and left the group; anything still pending for it waits
                // for its lease to expire.
                let left = match workers::consumer_of_pid(conn, queue, pid).await {
                    Ok(Some((_, pending))) => pending,
                    _ => 0,
                };
                let excused = self.redis_back.is_some_and(|t| t + REDIS_EXCUSE >= since);
                if !excused {
                    self.left_pending += left;
                }
                let new_pid = workers.respawn(slot)?;
                self.phase = Phase::Starting {
                    slot,
                    pid: new_pid,
                    since: Instant::now(),
                    exit: took,
                    left,
                };
                Ok(None)
            }
            Phase::Starting {
                slot,
                pid,
                since,
                exit,
                left,
            } => {
                let up = workers::heartbeating(conn, queue, pid)
                    .await
                    .unwrap_or(false);
                if !up && since.elapsed() < START_LIMIT {
                    if let Some(s) = workers.try_exit(slot)? {
                        self.fail(format!("replacement of worker {slot} exited at start: {s}"));
                        workers.respawn(slot)?;
                        self.phase = Phase::Waiting {
                            until: Instant::now() + self.pause,
                        };
                    }
                    return Ok(None);
                }
                if !up {
                    self.fail(format!(
                        "replacement of worker {slot} wrote no heartbeat within {START_LIMIT:?}"
                    ));
                }
                self.restarts += 1;
                self.phase = Phase::Waiting {
                    until: Instant::now() + self.pause,
                };
                let kept = if left > 0 {
                    format!(" (its consumer kept {left} entries pending)")
                } else {
                    String::new()
                };
                Ok(Some(format!(
                    "deploy: worker {slot} exited after {} ms{kept}, replacement up after {} ms",
                    exit.as_millis(),
                    since.elapsed().as_millis()
                )))
            }
        }
    }

    /// Finishes the restart under way, if any (at most the grace plus a
    /// few seconds), starting none.
    pub async fn finish(
        &mut self,
        workers: &mut Workers,
        conn: &mut Conn,
        queue: &Queue,
    ) -> anyhow::Result<()> {
        while self.busy_slot().is_some() {
            self.step(workers, conn, queue, false).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn fail(&mut self, what: String) {
        println!("deploy FAILED: {what}");
        self.failures.push(what);
    }
}
