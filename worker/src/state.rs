//! What the tasks of one queue share.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use millrace_core::Conn;
use millrace_core::Queue;
use millrace_core::queue::Acked;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::config::WorkerConfig;
use crate::fail::FailRequest;
use crate::health::Progress;
use crate::metrics;
use crate::metrics::QueueMetrics;
use crate::registry::Handlers;

/// Entries this consumer owns whose outcome is not yet written, with the
/// cancellation token of the attempt running them.
pub(crate) type InFlight = HashMap<String, CancellationToken>;

/// Shared by the fetch loop, the job tasks and the background tasks of one
/// lane of a queue (a queue without lanes has one: `default`). The job
/// slots and the fetch progress are the queue's, shared by its lanes.
pub(crate) struct QueueCtx {
    pub queue: Queue,
    pub consumer: Arc<str>,
    pub conn: Conn,
    pub handlers: Arc<Handlers>,
    pub cfg: Arc<WorkerConfig>,
    /// One permit per free job slot.
    pub slots: Arc<Semaphore>,
    inflight: Mutex<InFlight>,
    /// In-flight entries whose attempt a cancel mark cancelled (seen by
    /// the lease renewer), to end as `cancelled` rather than as a lost
    /// lease or a hand-back.
    cancelled: Mutex<HashSet<String>>,
    /// Finished entries waiting to be acknowledged in a batch.
    pub acks: mpsc::UnboundedSender<Acked>,
    /// Failed attempts waiting to be written in a batch.
    pub fails: mpsc::UnboundedSender<FailRequest>,
    /// Set while the queue is paused: the fetch loop stops claiming.
    pub paused: AtomicBool,
    /// Stop claiming (first stage of shutdown).
    pub stop: CancellationToken,
    /// Cancel running jobs and hand them back (second stage).
    pub hard: CancellationToken,
    /// Wakes the promoter early (a retry was just scheduled).
    pub promote_now: Notify,
    /// Interrupts the fetch loop's blocked read (the queue was paused).
    pub interrupt: Notify,
    /// The fetch loop's progress, for readiness and its gauge.
    pub progress: Arc<Progress>,
    /// Tracks job tasks, so shutdown can wait for them.
    pub jobs: TaskTracker,
    /// Per-job metric handles, registered once.
    pub metrics: QueueMetrics,
}

impl QueueCtx {
    #[allow(
        clippy::too_many_arguments,
        reason = "internal constructor, called once"
    )]
    pub fn new(
        queue: Queue,
        consumer: Arc<str>,
        conn: Conn,
        handlers: Arc<Handlers>,
        cfg: Arc<WorkerConfig>,
        (acks, fails): (
            mpsc::UnboundedSender<Acked>,
            mpsc::UnboundedSender<FailRequest>,
        ),
        (slots, progress): (Arc<Semaphore>, Arc<Progress>),
        stop: CancellationToken,
        hard: CancellationToken,
    ) -> Self {
        let metrics = QueueMetrics::new(queue.name(), &handlers.name_list());
        Self {
            progress,
            slots,
            queue,
            consumer,
            conn,
            handlers,
            cfg,
            inflight: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(HashSet::new()),
            acks,
            fails,
            paused: AtomicBool::new(false),
            stop,
            hard,
            promote_now: Notify::new(),
            interrupt: Notify::new(),
            jobs: TaskTracker::new(),
            metrics,
        }
    }

    /// The in-flight map. The lock is held for map operations only, never
    /// across an await.
    pub fn inflight(&self) -> MutexGuard<'_, InFlight> {
        // A panic while holding this lock cannot leave the map invalid (each
        // operation is a single insert/remove), so a poisoned lock is reused.
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `entry_id` in flight and returns the token of its attempt, or
    /// `None` when it already is (seen again on a re-read or a reclaim).
    /// Check and insert happen under one lock, before the job's task is
    /// spawned, so an entry can never be started twice by this worker.
    pub fn track(&self, entry_id: &str) -> Option<CancellationToken> {
        let mut inflight = self.inflight();
        if inflight.contains_key(entry_id) {
            return None;
        }
        let token = self.hard.child_token();
        inflight.insert(entry_id.to_owned(), token.clone());
        Some(token)
    }

    /// Cancels the attempts of in-flight `entry_ids` for a cancel mark
    /// (their tokens fire; the attempts end as cancelled); returns how many
    /// were running here. Entries no longer in flight are forgotten.
    pub fn cancel_marked(&self, entry_ids: &[String]) -> usize {
        let inflight = self.inflight();
        let mut cancelled = self
            .cancelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cancelled.retain(|id| inflight.contains_key(id));
        let mut n = 0;
        for id in entry_ids {
            if let Some(token) = inflight.get(id) {
                cancelled.insert(id.clone());
                token.cancel();
                n += 1;
            }
        }
        n
    }

    /// True (once) when `entry_id`'s attempt was cancelled by a cancel mark.
    pub fn take_cancelled(&self, entry_id: &str) -> bool {
        self.cancelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(entry_id)
    }

    /// A clone of the shared command connection (cheap: it is multiplexed).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// With [`WorkerConfig::durability`]: waits until enough replicas of
    /// this queue's master have what `conn` wrote (its acks or failed
    /// attempts, `what`). A shortfall is logged and counted, nothing more:
    /// the outcome is written on the master, and if that master fails
    /// before its replicas catch up the entries run again (never lost).
    pub async fn confirm(&self, conn: &mut Conn, what: &'static str) {
        let Some(d) = self.cfg.durability else { return };
        match conn.wait_replicas(&self.queue.keys().stream, d).await {
            Ok(n) if n >= d.replicas => {}
            Ok(n) => {
                metrics::redis_error(self.queue.name(), "wait");
                warn!(
                    queue = self.queue.name(),
                    what,
                    replicas = n,
                    wanted = d.replicas,
                    "not confirmed by enough replicas in time; after a failover these jobs may run again"
                );
            }
            Err(e) => {
                metrics::redis_error(self.queue.name(), "wait");
                warn!(queue = self.queue.name(), what, error = %e, "WAIT for replicas failed");
            }
        }
    }
}
