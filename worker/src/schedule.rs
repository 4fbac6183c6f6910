//! The scheduler: one task per schedule, in every worker. Each sleeps until
//! the schedule's next fire time (on the server's clock, estimated from
//! the last reply), then claims the due fires with `cron.lua`: the claim
//! is a compare-and-set of the schedule's cursor in the same script that
//! enqueues the jobs, so whichever worker comes first enqueues them and
//! the others find the cursor moved. No leader, no lock to expire.

use std::time::{Duration, Instant};

use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::schedule::store::{self, Claimed};
use millrace_core::schedule::{Plan, Schedule, ScheduleDef, ScheduleError, Timing, plan};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::metrics;
use crate::registry::Handlers;
use crate::{WorkerError, declare_with_retries};

/// Longest wait without reading the cursor again (a schedule that fires
/// rarely still notices a cursor moved by hand, and clock drift).
const RESYNC: Duration = Duration::from_secs(60);

/// The schedules' checked definitions (`WorkerBuilder::build`): a job
/// known by name only takes its registered handler's queue, and a name
/// used twice in one queue is an error.
pub(crate) fn settle(
    schedules: &[Schedule],
    handlers: &Handlers,
) -> Result<Vec<ScheduleDef>, WorkerError> {
    let mut defs: Vec<ScheduleDef> = Vec::with_capacity(schedules.len());
    for s in schedules {
        let def = s.definition(|job| handlers.get(job).map(|h| h.queue.to_owned()))?;
        if defs
            .iter()
            .any(|d| d.name == def.name && d.queue == def.queue)
        {
            return Err(ScheduleError::Invalid {
                schedule: def.name,
                reason: format!(
                    "two schedules share this name in queue `{}`: give one a .name(..)",
                    def.queue
                ),
            }
            .into());
        }
        defs.push(def);
    }
    Ok(defs)
}

/// At start: declares each schedule's queue, writes its definition for
/// the CLI and spawns its task, which runs until `stop`.
pub(crate) async fn start(
    defs: &[ScheduleDef],
    prefix: &str,
    conn: &Conn,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), WorkerError> {
    for def in defs {
        let queue = Queue::with_prefix(prefix, &def.queue)?;
        declare_with_retries(&queue, &mut conn.clone()).await?;
        store::register(&mut conn.clone(), &queue, def).await?;
        let timing = def.timing()?;
        let task = Scheduled {
            queue,
            def: def.clone(),
            timing,
        };
        tasks.spawn(schedule_loop(task, conn.clone(), stop.clone()));
    }
    Ok(())
}

/// One schedule's task: what it needs to plan and claim.
struct Scheduled {
    queue: Queue,
    def: ScheduleDef,
    timing: Timing,
}

/// The cursor and the server time it was known at, with the local instant
/// of that reply: `now` is estimated as server time plus the time since.
struct Known {
    cursor: Option<u64>,
    server_now: u64,
    at: Instant,
}

impl Known {
    fn new(cursor: Option<u64>, server_now: u64) -> Self {
        Self {
            cursor,
            server_now,
            at: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.server_now + millrace_core::queue::duration_ms(self.at.elapsed())
    }
}

/// Runs until `stop` fires.
async fn schedule_loop(s: Scheduled, mut conn: Conn, stop: CancellationToken) {
    let name = s.def.name.as_str();
    let queue = s.queue.name();
    let mut backoff = Backoff::default();
    let mut known: Option<Known> = None;
    loop {
        let state = match known.take() {
            Some(k) => k,
            None => match store::cursor(&mut conn, &s.queue, name).await {
                Ok((cursor, now)) => Known::new(cursor, now),
                Err(e) => {
                    metrics::redis_error(queue, "schedule");
                    warn!(queue, schedule = name, error = %e, "reading the schedule failed");
                    if pause(backoff.next(), &stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let now = state.now();
        match plan(&s.timing, s.def.missed, s.def.grace(), state.cursor, now) {
            Plan::Wait { next } => {
                let wait = next.map_or(RESYNC, |n| {
                    Duration::from_millis(n.saturating_sub(now).max(1)).min(RESYNC)
                });
                if pause(wait, &stop).await {
                    return;
                }
                // Keep the estimate unless the wait was a resync.
                if wait < RESYNC {
                    known = Some(state);
                }
            }
            Plan::Claim(claim) => match store::claim(&mut conn, &s.queue, &s.def, &claim).await {
                Ok(done) => {
                    backoff.reset();
                    known = Some(match done {
                        Claimed::Enqueued {
                            enqueued,
                            cursor,
                            now,
                        } => {
                            if enqueued > 0 {
                                debug!(queue, schedule = name, enqueued, "schedule fired");
                            }
                            if claim.dropped > 0 || claim.more {
                                info!(
                                    queue,
                                    schedule = name,
                                    enqueued,
                                    dropped = claim.dropped,
                                    more_dropped = claim.more,
                                    policy = %s.def.missed,
                                    "caught up on missed fires"
                                );
                            }
                            Known::new(Some(cursor), now)
                        }
                        Claimed::Paused { cursor, now } => {
                            debug!(queue, schedule = name, "schedule paused: fire skipped");
                            Known::new(Some(cursor), now)
                        }
                        Claimed::Lost { cursor, now } => Known::new(cursor, now),
                        Claimed::Early { now } => Known::new(claim.expected, now),
                        _ => Known::new(claim.expected, now),
                    });
                }
                Err(e) => {
                    metrics::redis_error(queue, "schedule");
                    warn!(queue, schedule = name, error = %e, "claiming a schedule's fire failed");
                    if pause(backoff.next(), &stop).await {
                        return;
                    }
                }
            },
            _ => {
                if pause(RESYNC, &stop).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps `d`; true when `stop` fired first.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stop.cancelled() => true,
    }
}
