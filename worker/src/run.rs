//! Running one delivered entry: decode, find the handler, run it with its
//! timeout, a panic guard and its cancellation token, then write the
//! outcome (ack, retry, dead-letter, or hand back on shutdown).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use millrace_core::queue::{Acked, FailedEntry};
use millrace_core::trace::TraceParent;
use millrace_core::{DecodeError, Delivery, Envelope, FailOutcome, Failure, JobContext, JobError};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Level, debug, info, warn};

use crate::fail::FailRequest;
use crate::metrics;
use crate::metrics::Outcome as MetricOutcome;
use crate::registry::Handler;
use crate::state::QueueCtx;

/// The `job` span's level: DEBUG, so that the default `info` filter builds
/// no span per job; INFO with feature `otel`, so that a service that turns
/// OpenTelemetry on exports the job span (and so the producer's trace goes
/// on) under the usual `info` filter, paying for the span only then.
const JOB_SPAN_LEVEL: Level = if cfg!(feature = "otel") {
    Level::INFO
} else {
    Level::DEBUG
};

/// How long a cancelled handler (shutdown, lost lease or timeout) may take
/// to return by itself after its token fired, before it is dropped.
const CANCEL_WAIT: Duration = Duration::from_secs(1);
/// First backoff of an entry no handler here can run yet; it doubles at
/// each deferral (up to 64 times).
const DEFER_FIRST: Duration = Duration::from_secs(1);
/// True for the fields `Envelope::decode` reads (see
/// `core/src/envelope.rs`); an entry's other fields are kept aside for its
/// retry. A `match` (length first), as it runs for every field of every job.
fn is_envelope_field(name: &[u8]) -> bool {
    matches!(
        name,
        b"v" | b"id"
            | b"name"
            | b"payload"
            | b"attempt"
            | b"max_attempts"
            | b"enqueued_at"
            | b"trace"
            | b"unique"
            | b"error"
    )
}

/// Fields of an entry as read: name, value.
type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// How an attempt ended.
enum Outcome {
    /// With the result (JSON) of a job type registered with one.
    Success(Option<String>),
    Failed(JobError),
    /// The token fired: a cancel mark, shutdown (hand back) or a lost
    /// lease.
    Cancelled,
}

/// Starts a task for `d` unless this worker already runs it; the permit
/// comes back (`Err`) when the delivery was skipped.
pub(crate) fn start(
    q: &Arc<QueueCtx>,
    d: Delivery,
    permit: OwnedSemaphorePermit,
) -> Result<(), OwnedSemaphorePermit> {
    let Some(token) = q.track(&d.entry_id) else {
        return Err(permit);
    };
    spawn_tracked(q, d, permit, token);
    Ok(())
}

/// Spawns the task of a delivery already marked in flight (`QueueCtx::track`).
pub(crate) fn spawn_tracked(
    q: &Arc<QueueCtx>,
    d: Delivery,
    permit: OwnedSemaphorePermit,
    token: CancellationToken,
) {
    q.jobs.spawn(run_delivery(q.clone(), d, permit, token));
}

/// Runs one delivery to its outcome. `permit` is the job's slot, freed when
/// the task ends; the entry is already in the in-flight map (see `start`).
async fn run_delivery(
    q: Arc<QueueCtx>,
    d: Delivery,
    permit: OwnedSemaphorePermit,
    token: CancellationToken,
) {
    let _permit = permit;
    let entry_id = d.entry_id;
    let Some(fields) = d.fields else {
        // Deleted while pending: nothing to run, just clear it.
        let _ = q.acks.send(Acked::bare(entry_id));
        return;
    };
    // A retry is written from the decoded envelope plus the fields it does
    // not know (kept here: nothing is allocated when there are none), so
    // the retry script need not read the entry again.
    let extras: RawFields = fields
        .iter()
        .filter(|(k, _)| !is_envelope_field(k))
        .cloned()
        .collect();
    let env = match Envelope::decode(fields) {
        Ok(env) => env,
        Err(e @ DecodeError::Version { .. }) if is_newer(&e) => {
            // Written by a newer producer: a newer worker may be on its way.
            let reason = format!("undecodable entry: {e}");
            defer(&q, &entry_id, &reason).await;
            return;
        }
        Err(e) => {
            let reason = format!("undecodable entry: {e}");
            warn!(queue = q.queue.name(), entry = %entry_id, %reason, "dead-lettering");
            q.metrics.undecodable.finished(MetricOutcome::Dead);
            record_failure(&q, FailedEntry::new(entry_id, Failure::Dead, reason)).await;
            return;
        }
    };
    let Some(handler) = q.handlers.get(&env.name) else {
        let reason = format!(
            "unknown job name `{}`: this worker runs {}",
            env.name,
            q.handlers.names()
        );
        defer(&q, &entry_id, &reason).await;
        return;
    };
    // DEBUG, so that at the default level no span is built per job (it was
    // about a tenth of a no-op job's CPU); the few warnings a job can log
    // carry its queue, name, id and attempt themselves. INFO with feature
    // `otel` (see JOB_SPAN_LEVEL).
    let span = tracing::span!(
        JOB_SPAN_LEVEL,
        "job",
        queue = q.queue.name(),
        job = %env.name,
        job_id = %env.id,
        attempt = env.attempt,
        trace_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    // The producer's trace context (W3C traceparent) parents this span.
    if let Some(parent) = env.trace.as_deref().and_then(TraceParent::parse) {
        span.record("trace_id", parent.trace_id());
        span.record("parent_span_id", parent.parent_id());
        #[cfg(feature = "otel")]
        crate::otel::set_remote_parent(&span, &parent);
    }
    run_envelope(&q, handler, env, extras, entry_id, token)
        .instrument(span)
        .await;
}

/// Runs the attempts of one entry here: the first, and those of retries
/// with no backoff (run again at once, the entry still pending for this
/// worker, once their attempt record is written); then writes the outcome.
async fn run_envelope(
    q: &QueueCtx,
    handler: &Handler,
    mut env: Envelope,
    mut extras: RawFields,
    entry_id: String,
    token: CancellationToken,
) {
    let max_attempts = env.max_attempts.unwrap_or(handler.retry.max_attempts);
    let timeout = handler.timeout.or(q.cfg.job_timeout);
    let m = q.metrics.job(&env.name);
    loop {
        // The id and the trace are cloned: the warnings below name the id
        // after the context has gone to the handler, and a retry carries
        // the trace on (jobs without a trace allocate nothing for it).
        let mut ctx = JobContext::new(
            env.id.clone(),
            entry_id.clone(),
            q.queue.name().to_owned(),
            env.attempt,
        );
        ctx.max_attempts = max_attempts;
        ctx.enqueued_at = env.enqueued_at;
        ctx.trace = env.trace.clone();
        ctx.cancel = token.clone();
        if let Some(state) = &q.handlers.state {
            ctx = ctx.with_state(state.clone());
        }
        m.started(env.enqueued_at);
        let started = Instant::now();
        let outcome = run_handler(handler, &env.payload, ctx, timeout, &token).await;
        let elapsed = started.elapsed();
        let err = match outcome {
            Outcome::Success(result) => {
                debug!(?elapsed, "done");
                m.finished_in(MetricOutcome::Success, elapsed);
                if let Some(hook) = &q.handlers.on_success {
                    hook(env.id.as_str());
                }
                // The ack batcher removes the entry from the in-flight map
                // once the ack is written (with the history record, the
                // result and the unique lock's release: the job's id moves
                // there, nothing is cloned).
                let mut done = Acked::new(entry_id, env.id, handler.name, env.attempt, elapsed)
                    .with_unique(env.unique);
                if let Some(json) = result {
                    done = done.with_result(json);
                }
                let _ = q.acks.send(done);
                return;
            }
            Outcome::Cancelled if q.take_cancelled(&entry_id) => {
                finish_cancelled(q, &env, handler.name, &entry_id, elapsed).await;
                return;
            }
            Outcome::Cancelled if q.hard.is_cancelled() => {
                hand_back(q, &entry_id).await;
                return;
            }
            Outcome::Cancelled => {
                warn!(queue = q.queue.name(), job = %env.name, job_id = %env.id,
                    attempt = env.attempt, "lease lost: another worker owns this entry now; result dropped");
                m.finished_in(MetricOutcome::LostLease, elapsed);
                q.inflight().remove(&entry_id);
                return;
            }
            Outcome::Failed(err) => err,
        };
        let failure = next_step(&err, env.attempt, max_attempts, handler);
        let metric = match failure {
            Failure::Retry { delay, .. } => {
                warn!(queue = q.queue.name(), job = %env.name, job_id = %env.id,
                    attempt = env.attempt, error = %err, ?delay, "attempt failed, retrying");
                MetricOutcome::Retry
            }
            Failure::Again { .. } => {
                warn!(queue = q.queue.name(), job = %env.name, job_id = %env.id,
                    attempt = env.attempt, error = %err, "attempt failed, retrying at once");
                MetricOutcome::Retry
            }
            Failure::Dead | Failure::Defer { .. } => {
                warn!(queue = q.queue.name(), job = %env.name, job_id = %env.id,
                    attempt = env.attempt, error = %err, "attempt failed, dead-lettering");
                MetricOutcome::Dead
            }
        };
        m.finished_in(metric, elapsed);
        let message = err.message().to_owned();
        let mut failed =
            FailedEntry::new(entry_id.as_str(), failure, message.as_str()).with_took(elapsed);
        if matches!(failure, Failure::Retry { .. }) {
            // The next attempt is written from what was read: the
            // envelope (with its `v`) and the fields it does not know.
            let mut fields: RawFields = env
                .fields()
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
                .collect();
            // A parked retry ends this task: the fields it does not know
            // go with it (nothing is cloned).
            fields.append(&mut extras);
            failed = failed.with_fields(fields);
        }
        // The failure batcher wakes the promoter when a retry is due
        // before it would look anyway.
        let written = record_failure(q, failed).await;
        match (failure, written) {
            (Failure::Again { next_attempt }, Some(FailOutcome::Retried)) => {
                // Recorded: run the next attempt here and now.
                env.attempt = next_attempt;
                env.error = Some(message);
            }
            _ => return,
        }
    }
}

/// Ends an attempt that a cancel mark cancelled (`millrace cancel`): the
/// one place the `cancelled` outcome is recorded (metric, log and the
/// fenced write: acknowledged, not retried nor dead-lettered, its unique
/// lock released). If the write fails the entry stays pending: it is
/// reclaimed after its lease and its mark cancels it again there.
async fn finish_cancelled(
    q: &QueueCtx,
    env: &Envelope,
    name: &'static str,
    entry_id: &str,
    elapsed: Duration,
) {
    q.metrics
        .job(&env.name)
        .finished_in(MetricOutcome::Cancelled, elapsed);
    let job = Acked::new(entry_id, env.id.as_str(), name, env.attempt, elapsed)
        .with_unique(env.unique.clone());
    let mut conn = q.conn();
    match q.queue.finish_cancelled(&mut conn, &q.consumer, &job).await {
        Ok(true) => info!(queue = q.queue.name(), job = %env.name, job_id = %env.id,
            attempt = env.attempt, "cancelled"),
        Ok(false) => {
            warn!(entry = %entry_id, "lease lost before the cancel was written; another worker owns the entry");
            metrics::lease_lost(q.queue.name());
        }
        Err(e) => {
            metrics::redis_error(q.queue.name(), "cancel");
            warn!(queue = q.queue.name(), error = %e, "cannot write the cancel; the entry will be reclaimed and cancelled there");
        }
    }
    q.inflight().remove(entry_id);
}

/// Hands an entry whose attempt shutdown cancelled back to the ready
/// stream, so another worker runs it now (else it is reclaimed).
async fn hand_back(q: &QueueCtx, entry_id: &str) {
    let mut conn = q.conn();
    let ids = [entry_id.to_owned()];
    match q
        .queue
        .release(&mut conn, &q.consumer, &ids, q.cfg.dead_retention)
        .await
    {
        Ok(n) => debug!(handed_back = n, "cancelled by shutdown, handed back"),
        Err(e) => warn!(error = %e, "hand-back failed; the entry will be reclaimed"),
    }
    q.inflight().remove(entry_id);
}

async fn run_handler(
    handler: &Handler,
    payload: &str,
    ctx: JobContext,
    timeout: Option<Duration>,
    token: &CancellationToken,
) -> Outcome {
    let fut = match (handler.call)(payload, ctx) {
        Ok(fut) => fut,
        Err(e) => return Outcome::Failed(e),
    };
    let guarded = AssertUnwindSafe(fut).catch_unwind();
    tokio::pin!(guarded);
    // A timer only when there is a limit: no timer-wheel entry per job
    // otherwise (the common case, on the hot path).
    let timer = async {
        match timeout {
            Some(limit) => {
                tokio::time::sleep(limit).await;
                limit
            }
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    let result = tokio::select! {
        biased;
        // First: a handler that returns because it saw its token was
        // cancelled (shutdown, lost lease), not failed.
        () = token.cancelled() => {
            // Let the handler see its token and stop by itself, briefly;
            // then drop it. Either way the attempt counts as cancelled.
            let _ = tokio::time::timeout(CANCEL_WAIT, &mut guarded).await;
            return Outcome::Cancelled;
        }
        result = &mut guarded => result,
        limit = &mut timer => {
            // Timed out: the token fires first, so the handler sees
            // `ctx.cancel` and may stop cleanly within the same short grace
            // as for a lost lease; then it is dropped. A failed attempt.
            token.cancel();
            let _ = tokio::time::timeout(CANCEL_WAIT, &mut guarded).await;
            return Outcome::Failed(JobError::retry(format!("timed out after {limit:?}")));
        }
    };
    match result {
        Ok(Ok(result)) => Outcome::Success(result),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(panic) => Outcome::Failed(JobError::retry(format!(
            "handler panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// True for a wire version above this build's (a newer producer), false
/// for one that is no version at all (`0`, `abc`): that is just bad input.
fn is_newer(e: &DecodeError) -> bool {
    match e {
        DecodeError::Version { found, .. } => found
            .parse::<u32>()
            .is_ok_and(|v| v > millrace_core::envelope::WIRE_VERSION),
        _ => false,
    }
}

/// Defers an entry no handler here can run yet (an unknown job name, a
/// newer wire version: in a rolling deploy, producers may run ahead of
/// workers) for the configured window, with backoff; past the window it is
/// dead-lettered with `reason`. A zero window dead-letters at once.
async fn defer(q: &QueueCtx, entry_id: &str, reason: &str) {
    let window = q.cfg.unknown_job_window;
    let failure = if window.is_zero() {
        Failure::Dead
    } else {
        Failure::Defer {
            delay: DEFER_FIRST,
            window,
        }
    };
    match record_failure(q, FailedEntry::new(entry_id, failure, reason)).await {
        Some(FailOutcome::Retried) => {
            debug!(queue = q.queue.name(), entry = %entry_id, %reason, "deferred: no handler here yet");
            metrics::deferred(q.queue.name());
        }
        Some(FailOutcome::Dead) => {
            warn!(queue = q.queue.name(), entry = %entry_id, %reason, "dead-lettered: no handler here");
            q.metrics.unknown.finished(MetricOutcome::Dead);
        }
        _ => {}
    }
}

/// Retry (with the policy's backoff, or the handler's explicit delay) or
/// dead-letter (permanent error, or no attempts left).
fn next_step(err: &JobError, attempt: u32, max_attempts: u32, handler: &Handler) -> Failure {
    let next_attempt = attempt.saturating_add(1);
    let delay = match err {
        JobError::Permanent { .. } => return Failure::Dead,
        _ if attempt >= max_attempts => return Failure::Dead,
        JobError::RetryAfter { delay, .. } => *delay,
        _ => handler.retry.delay(attempt),
    };
    if delay.is_zero() {
        // No backoff: run it again here, without copying the entry.
        Failure::Again { next_attempt }
    } else {
        Failure::Retry {
            delay,
            next_attempt,
        }
    }
}

/// Writes a retry, deferral or dead-letter (fenced) through the failure
/// batcher (`fail.rs`, which retries the write a few times) and waits for
/// it; if it cannot be written the entry stays pending and is reclaimed
/// after its lease, so nothing is lost. Returns what was written (`None`:
/// nothing could be).
/// The entry leaves the in-flight map, except after a [`Failure::Again`]
/// that was written: it runs again here.
pub(crate) async fn record_failure(q: &QueueCtx, failed: FailedEntry) -> Option<FailOutcome> {
    let entry_id = failed.entry_id.clone();
    let again = matches!(failed.failure, Failure::Again { .. });
    let (reply, outcome) = oneshot::channel();
    let sent = q.fails.send(FailRequest {
        entry: failed,
        reply,
    });
    let outcome = match sent {
        Ok(()) => outcome.await.ok().flatten(),
        Err(_) => None,
    };
    if outcome == Some(FailOutcome::LeaseLost) {
        warn!(
            entry = %entry_id,
            "lease lost before the outcome was written; another worker owns the entry"
        );
        metrics::lease_lost(q.queue.name());
    }
    if outcome == Some(FailOutcome::Cancelled) {
        info!(queue = q.queue.name(), entry = %entry_id,
            "cancelled while its attempt ran: ended as cancelled, not retried");
    }
    if !(again && outcome == Some(FailOutcome::Retried)) {
        q.inflight().remove(&entry_id);
    }
    outcome
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_newer_version_is_deferred() {
        let version = |found: &str| DecodeError::Version {
            found: found.to_owned(),
            supported: millrace_core::envelope::WIRE_VERSION,
        };
        assert!(is_newer(&version("2")));
        assert!(is_newer(&version("9")));
        for garbage in ["0", "abc", "-1", ""] {
            assert!(!is_newer(&version(garbage)), "{garbage:?}");
        }
        assert!(!is_newer(&DecodeError::Missing("name")));
    }
}
