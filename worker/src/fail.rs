//! The failure batcher: failed attempts (retries, deferrals, dead-letters)
//! are written many per round trip (`Queue::fail_many`, one `fail.lua` call:
//! one fence per entry, one XACK, one HSET/ZADD for the delayed ones, one
//! counter update). It gathers like the ack batcher: under load a batch
//! fills while the previous one is in flight, and before a flush it yields
//! to the running jobs as long as each yield brings more; a lone failure
//! goes at once. Each job task waits for its own outcome, so its slot stays
//! taken and its entry in flight until the outcome is written.

use std::sync::Arc;
use std::time::Instant;

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
    let mut wake = PromoterWake::default();
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
            flush(&q, &mut batch, &mut wake).await;
        }
        if last_round && rx.is_empty() {
            return;
        }
    }
}

/// Writes `batch` (retrying the write a few times), wakes the promoter
/// when a new delayed job is due before it would look anyway, and answers
/// every request. Leaves `batch` empty.
async fn flush(q: &QueueCtx, batch: &mut Vec<FailRequest>, wake: &mut PromoterWake) {
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
                        "failed entries had been deleted from the stream by hand while running; their retries were written anyway"
                    );
                }
                outcomes = Some(report.outcomes);
                q.confirm(&mut conn, "failed attempts").await;
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
    let mut notify = false;
    for (i, (entry, reply)) in entries.iter().zip(replies).enumerate() {
        let outcome = outcomes.as_ref().and_then(|o| o.get(i).copied());
        if outcome == Some(FailOutcome::Retried) && wake.needed(entry, now) {
            notify = true;
        }
        let _ = reply.send(outcome);
    }
    if notify {
        q.promote_now.notify_one();
    }
}

/// When the promoter will look at the delayed set anyway, so that a batch
/// of retries wakes it only when one is due before that: with a backoff,
/// waking it for every retry found nothing due and cost a script call each.
#[derive(Debug, Default)]
struct PromoterWake {
    /// The earliest due time this batcher woke the promoter for, while it
    /// is in the future: the promoter, woken, saw that job (or an earlier
    /// one) and sleeps at most until then, and looks at the set again then.
    at: Option<Instant>,
}

impl PromoterWake {
    /// True when the promoter must be woken for `entry`, just written as
    /// `Retried`; remembers the due time it is woken for.
    fn needed(&mut self, entry: &FailedEntry, now: Instant) -> bool {
        let delay = match entry.failure {
            Failure::Retry { delay, .. } => delay,
            // Runs again in its worker at once: nothing delayed.
            Failure::Again { .. } | Failure::Dead => return false,
            // A deferral: its backoff grows on the server, its due time is
            // not known here. Rare: always wake.
            Failure::Defer { .. } => return true,
        };
        let due = now + delay;
        match self.at {
            Some(at) if at > now && at <= due => false,
            _ => {
                self.at = Some(due);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn retry(ms: u64) -> FailedEntry {
        FailedEntry::new(
            "1-1",
            Failure::Retry {
                delay: Duration::from_millis(ms),
                next_attempt: 2,
            },
            "x",
        )
    }

    #[test]
    fn the_promoter_is_woken_only_for_retries_due_before_its_next_look() {
        let mut w = PromoterWake::default();
        let t = Instant::now();
        assert!(w.needed(&retry(10), t), "first one");
        assert!(!w.needed(&retry(10), t), "due no earlier");
        assert!(!w.needed(&retry(20), t + Duration::from_millis(5)));
        assert!(w.needed(&retry(2), t + Duration::from_millis(5)), "earlier");
        assert!(w.needed(&retry(10), t + Duration::from_millis(8)), "passed");
        // No backoff, written as a retry (not run again in place): due at
        // once in the delayed set.
        let ready = retry(0).with_fields(vec![(b"id".to_vec(), b"j".to_vec())]);
        assert!(w.needed(&ready, t), "due now, before its next look");
        let defer = FailedEntry::new(
            "1-1",
            Failure::Defer {
                delay: Duration::from_secs(1),
                window: Duration::from_secs(60),
            },
            "x",
        );
        assert!(w.needed(&defer, t));
        let again = FailedEntry::new("1-1", Failure::Again { next_attempt: 2 }, "x");
        assert!(!w.needed(&again, t), "runs again in place");
    }
}
