//! The lanes of one queue in a worker (see `millrace_core::lane`). Each
//! lane has a context of its own, with its own ack, failure, lease,
//! promote and upkeep tasks, as a queue without lanes has; the contexts of
//! one queue share its job slots (the concurrency is per queue, not per
//! lane), its fetch progress and one fetch loop, which reads across the
//! lanes highest first (`fetch.rs`). A lane a producer starts using while
//! the worker runs is started by the worker's look-out task
//! (`partitions.rs`) at its next round, and the fetch loop takes it at its
//! next reclaim round.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use millrace_core::{ConfigError, Conn, Priority, Queue, QueueError};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::WorkerConfig;
use crate::health::Progress;
use crate::registry::Handlers;
use crate::state::QueueCtx;
use crate::{ack, fail, lease, maintain, promote};

/// Weighted lane order: each read serves first a lane picked at random in
/// proportion to its weight, then the others highest first, so `low` is
/// never starved by a flood of `high`. Without weights the order is strict
/// (always `high`, then `default`, then `low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneWeights {
    /// Weight of the `high` lane.
    pub high: u32,
    /// Weight of the `default` lane.
    pub default: u32,
    /// Weight of the `low` lane.
    pub low: u32,
}

impl LaneWeights {
    /// The weight of `lane`.
    pub fn of(&self, lane: Priority) -> u32 {
        match lane {
            Priority::High => self.high,
            Priority::Default => self.default,
            Priority::Low => self.low,
        }
    }
}

impl fmt::Display for LaneWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{},{}", self.high, self.default, self.low)
    }
}

impl FromStr for LaneWeights {
    type Err = ConfigError;

    /// Parses `high,default,low` weights, e.g. `6,3,1`; at least one must
    /// be above zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ConfigError::Invalid(format!(
                "invalid lane weights {s:?}: give three whole numbers for high,default,low (e.g. 6,3,1), not all zero"
            ))
        };
        let parts: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        match parts[..] {
            [high, default, low]
                if high + default + low > 0 && high.max(default).max(low) <= 1000 =>
            {
                Ok(Self { high, default, low })
            }
            _ => Err(bad()),
        }
    }
}

/// The order in which to read `lanes` (indexes into it; `lanes` is in
/// serving order): strict, or with a weighted first pick.
pub(crate) fn read_order(lanes: &[Arc<QueueCtx>], weights: Option<LaneWeights>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lanes.len()).collect();
    let Some(w) = weights else { return order };
    let total: u32 = lanes.iter().map(|l| w.of(l.queue.priority())).sum();
    if total == 0 {
        return order;
    }
    let mut pick = fastrand::u32(..total);
    for (i, l) in lanes.iter().enumerate() {
        let weight = w.of(l.queue.priority());
        if pick < weight {
            order.remove(i);
            order.insert(0, i);
            break;
        }
        pick -= weight;
    }
    order
}

/// What a lane's context needs from the worker, to start one while it runs.
pub(crate) struct Spawner {
    pub consumer: Arc<str>,
    pub conn: Conn,
    pub handlers: Arc<Handlers>,
    pub cfg: Arc<WorkerConfig>,
    pub stop: CancellationToken,
    pub hard: CancellationToken,
    pub jobs_done: CancellationToken,
    /// Ack and failure writers: stopped after the jobs.
    pub ackers: TaskTracker,
    /// Lease, promote and upkeep tasks: stopped with the fetch loops.
    pub background: TaskTracker,
    /// Readiness: fetch loops started later (partitions) are watched too.
    pub health: crate::health::Health,
}

impl Spawner {
    /// Declares lane view `queue` (its stream and group), joins it, and
    /// starts the lane's tasks; `slots` and `progress` are its queue's.
    pub async fn lane(
        &self,
        queue: Queue,
        slots: Arc<Semaphore>,
        progress: Arc<Progress>,
    ) -> Result<Arc<QueueCtx>, QueueError> {
        let mut conn = self.conn.clone();
        crate::declare_with_retries(&queue, &mut conn).await?;
        queue.join(&mut conn, &self.consumer).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (fail_tx, fail_rx) = mpsc::unbounded_channel();
        let q = Arc::new(QueueCtx::new(
            queue,
            self.consumer.clone(),
            self.conn.clone(),
            self.handlers.clone(),
            self.cfg.clone(),
            (tx, fail_tx),
            (slots, progress),
            self.stop.clone(),
            self.hard.clone(),
        ));
        self.ackers
            .spawn(ack::ack_loop(q.clone(), rx, self.jobs_done.clone()));
        self.ackers
            .spawn(fail::fail_loop(q.clone(), fail_rx, self.jobs_done.clone()));
        self.background
            .spawn(lease::renew_loop(q.clone(), self.jobs_done.clone()));
        self.background.spawn(promote::promote_loop(q.clone()));
        self.background.spawn(maintain::maintain_loop(q.clone()));
        Ok(q)
    }
}

/// The lanes of one queue in use, in serving order, with the default
/// lane's context apart (it is always there).
pub(crate) struct LaneSet {
    /// The default lane's context: the queue's pause flag, interrupt and
    /// progress are read from it.
    pub base: Arc<QueueCtx>,
    lanes: Mutex<Vec<Arc<QueueCtx>>>,
    spawner: Arc<Spawner>,
    /// The job slots are shared with other partitions of the queue.
    shared: AtomicBool,
    /// Bumped when a lane is added: the fetch loop takes the new list.
    version: AtomicU64,
}

impl LaneSet {
    /// Starts the contexts of `queue`'s lanes in use now, on the job slots
    /// `slots` (the queue's, shared by its partitions).
    pub async fn start(
        queue: Queue,
        slots: Arc<Semaphore>,
        spawner: Arc<Spawner>,
    ) -> Result<Arc<Self>, QueueError> {
        let in_use = crate::at_start(queue.name(), "reading the queue's lanes", || {
            let (queue, mut conn) = (&queue, spawner.conn.clone());
            async move { queue.lanes(&mut conn).await }
        })
        .await?;
        let progress = Arc::new(Progress::new(queue.name()));
        let mut lanes = Vec::with_capacity(in_use.len());
        // The default lane always exists: start it first, then the others.
        let base = spawner
            .lane(
                queue.lane(Priority::Default),
                slots.clone(),
                progress.clone(),
            )
            .await?;
        lanes.push(base.clone());
        for p in in_use.into_iter().filter(|p| *p != Priority::Default) {
            lanes.push(
                spawner
                    .lane(queue.lane(p), slots.clone(), progress.clone())
                    .await?,
            );
        }
        lanes.sort_by_key(|l| l.queue.priority());
        Ok(Arc::new(Self {
            base,
            lanes: Mutex::new(lanes),
            spawner,
            shared: AtomicBool::new(false),
            version: AtomicU64::new(0),
        }))
    }

    /// Marks the job slots as shared with other partitions of the queue.
    pub fn share_slots(&self) {
        self.shared.store(true, Ordering::Relaxed);
    }

    /// True when the job slots are shared with other partitions.
    pub fn shares_slots(&self) -> bool {
        self.shared.load(Ordering::Relaxed)
    }

    /// How many times a lane was added: the fetch loop compares it at its
    /// reclaim rounds, with no Redis call of its own.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every lane's context, in serving order.
    pub fn all(&self) -> Vec<Arc<QueueCtx>> {
        self.lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Starts the lanes producers began to use since the last look (run by
    /// the worker's look-out task at every reclaim round); bumps the
    /// version when it added one. Errors are logged: the lanes known so
    /// far go on.
    pub async fn refresh(&self) {
        let base = &self.base;
        let mut conn = base.conn();
        let in_use = match base.queue.lanes(&mut conn).await {
            Ok(l) => l,
            Err(e) => {
                warn!(queue = base.queue.name(), error = %e, "cannot read the queue's lanes");
                return;
            }
        };
        let known: Vec<Priority> = self.all().iter().map(|l| l.queue.priority()).collect();
        let mut added = Vec::new();
        for p in in_use.into_iter().filter(|p| !known.contains(p)) {
            match self
                .spawner
                .lane(
                    base.queue.lane(p),
                    base.slots.clone(),
                    base.progress.clone(),
                )
                .await
            {
                Ok(ctx) => {
                    info!(queue = base.queue.name(), lane = %p, "reading a new lane");
                    added.push(ctx);
                }
                Err(e) => {
                    warn!(queue = base.queue.name(), lane = %p, error = %e, "cannot start a new lane")
                }
            }
        }
        if added.is_empty() {
            return;
        }
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lanes.extend(added);
        lanes.sort_by_key(|l| l.queue.priority());
        self.version.fetch_add(1, Ordering::Release);
    }
}
