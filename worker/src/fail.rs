//! The failure batcher: failed attempts (retries, deferrals, dead-letters)
//! are written many per round trip (`Queue::fail_many`, one `fail.lua` call:
//! one fence for the batch, one XCLAIM to park the retries with a backoff,
//! one HSET of attempt records, one ZADD of due times, one counter update). It gathers like the ack batcher: under load a batch
//! fills while the previous one is in flight, and before a flush it yields
//! to the running jobs as long as each yield brings more; a lone failure
//! goes at once. Each job task waits for its own outcome, so its slot stays
//! taken and its entry in flight until the outcome is written.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use millrace_core::queue::FailedEntry;
use millrace_core::{FailOutcome, Failure};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::backoff::Backoff;
use crate::metrics;
use crate::state::QueueCtx;

/// Tries to write one batch before giving its entries up to reclaim.
const FAIL_TRIES: u32 = 5;
/// Most times the batcher yields to running jobs before a flush.
const LINGER_YIELDS: usize = 8;
/// Most failures written by one flush.
const FAIL_CAP: usize = millrace_core::queue::FAIL_BATCH;

/// A failed attempt waiting to be written, and where its outcome goes
/// (`None`: it could not be written; the entry stays pending and is
/// reclaimed after its lease).
pub(crate) struct FailRequest {
    /// The failed attempt.
    pub entry: FailedEntry,
    /// The job task waiting for the outcome.
    pub reply: oneshot::Sender<Option<FailOutcome>>,
}

fn drain(rx: &mut mpsc::UnboundedReceiver<FailRequest>, batch: &mut Vec<FailRequest>, cap: usize) {
    while batch.len() < cap {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// Runs until `done` fires (every job task has ended), then writes what
/// is queued and returns.
pub(crate) async fn fail_loop(
    q: Arc<QueueCtx>,
    mut rx: mpsc::UnboundedReceiver<FailRequest>,
    done: CancellationToken,
) {
    let mut batch: Vec<FailRequest> = Vec::with_capacity(FAIL_CAP);
    loop {
        let first = tokio::select! {
            biased;
            r = rx.recv() => r,
            () = done.cancelled() => None,
        };
        let last_round = first.is_none();
        batch.extend(first);
        drain(&mut rx, &mut batch, FAIL_CAP);
        if !last_round {
            for _ in 0..LINGER_YIELDS {
                let before = batch.len();
                tokio::task::yield_now().await;
                drain(&mut rx, &mut batch, FAIL_CAP);
                if batch.len() == before || batch.len() >= FAIL_CAP {
                    break;
                }
            }
        }
        if !batch.is_empty() {
            flush(&q, &mut batch).await;
        }
        if last_round && rx.is_empty() {
            return;
        }
    }
}

/// Writes `batch` (retrying the write a few times), tells the fetch loop
/// when the earliest retry it parked is due (and wakes the promoter for a
/// deferral), and answers every request. Leaves `batch` empty.
async fn flush(q: &QueueCtx, batch: &mut Vec<FailRequest>) {
    let (entries, replies): (Vec<FailedEntry>, Vec<_>) =
        batch.drain(..).map(|r| (r.entry, r.reply)).unzip();
    let mut conn = q.conn();
    let mut backoff = Backoff::default();
    let mut outcomes = None;
    for attempt in 1..=FAIL_TRIES {
        match q
            .queue
            .fail_many(&mut conn, &q.consumer, &entries, q.cfg.dead_retention)
            .await
        {
            Ok(report) => {
                if report.vanished > 0 {
                    warn!(
                        queue = q.queue.name(),
                        n = report.vanished,
                        "failed entries had been deleted from the stream by hand while running; nothing to retry"
                    );
                }
                outcomes = Some(report.outcomes);
                break;
            }
            Err(e) if attempt < FAIL_TRIES => {
                metrics::redis_error(q.queue.name(), "fail");
                warn!(queue = q.queue.name(), error = %e, n = entries.len(),
                    "writing failures failed, retrying");
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                metrics::redis_error(q.queue.name(), "fail");
                error!(queue = q.queue.name(), error = %e, n = entries.len(),
                    "could not write failures; these entries will be reclaimed after their lease");
            }
        }
    }
    let now = Instant::now();
    let mut earliest: Option<Duration> = None;
    let mut deferred = false;
    for (i, (entry, reply)) in entries.iter().zip(replies).enumerate() {
        let outcome = outcomes.as_ref().and_then(|o| o.get(i).copied());
        if outcome == Some(FailOutcome::Retried) {
            match entry.failure {
                Failure::Retry { delay, .. } => {
                    earliest = Some(earliest.map_or(delay, |e| e.min(delay)));
                }
                Failure::Defer { .. } => deferred = true,
                Failure::Again { .. } | Failure::Dead => {}
            }
        }
        let _ = reply.send(outcome);
    }
    if let Some(delay) = earliest {
        q.note_retry_due(now + delay);
    }
    if deferred {
        // A deferral waits in the delayed set; its backoff grows on the
        // server, so its due time is not known here. Rare: wake the promoter.
        q.promote_now.notify_one();
    }
}
