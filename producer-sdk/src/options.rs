//! Per-call enqueue options.

use std::time::{Duration, SystemTime};

use millrace_core::{JobId, Priority, Unique};

/// Options of one enqueue: everything defaults to the job type's settings.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EnqueueOptions {
    /// Queue to use instead of the job's `QUEUE`.
    pub queue: Option<String>,
    /// Attempts allowed instead of the job's retry policy's.
    pub max_attempts: Option<u32>,
    /// Run no sooner than this delay from now (server clock).
    pub delay: Option<Duration>,
    /// Run no sooner than this time.
    pub at: Option<SystemTime>,
    /// The job id to use (e.g. derived from the caller's own key); a fresh
    /// UUIDv7 when unset.
    pub job_id: Option<JobId>,
    /// The producer's W3C traceparent, to parent the worker's span. With
    /// feature `otel` and this unset, the current `tracing` span's
    /// OpenTelemetry context is sent instead (when it has one).
    pub trace: Option<String>,
    /// The job's unique key and mode (see [`Unique`]); wins over the job
    /// type's [`Job::unique`](millrace_core::Job::unique).
    pub unique: Option<Unique>,
    /// The lane the job waits in: workers serve `High` before `Default`
    /// before `Low` (see the worker's lane order).
    pub priority: Priority,
    /// On a partitioned queue, the key that picks the job's partition:
    /// jobs with one key go to one partition, in order. Without it a
    /// unique job goes by its unique key, any other round-robin.
    pub key: Option<String>,
}

impl EnqueueOptions {
    /// No options: the job type's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the job to `queue`.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Allows `n` attempts in all.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Runs the job after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Runs the job at `at`.
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
        self
    }

    /// Uses `id` as the job id.
    pub fn job_id(mut self, id: JobId) -> Self {
        self.job_id = Some(id);
        self
    }

    /// Carries the producer's trace context (`traceparent`). With feature
    /// `otel` there is no need: the current span's context is sent by
    /// itself; this one wins when set.
    pub fn trace(mut self, traceparent: impl Into<String>) -> Self {
        self.trace = Some(traceparent.into());
        self
    }

    /// Makes the job unique by `unique`: a key (`"invoice:42"`, held while
    /// the job lives, at most 24 h) or a [`Unique`] with its mode
    /// ([`Unique::throttle`], [`Unique::debounce`], a TTL). While a job
    /// holds the key, an enqueue with it is a duplicate: nothing is
    /// enqueued and the existing job's id is returned (see
    /// [`Client::submit`](crate::Client::submit)).
    pub fn unique(mut self, unique: impl Into<Unique>) -> Self {
        self.unique = Some(unique.into());
        self
    }

    /// Puts the job in the `priority` lane of its queue: a `High` job is
    /// taken before any `Default` or `Low` one waiting, whatever their
    /// number (at most one read later).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Places the job by `key` on a partitioned queue (see
    /// `millrace partitions`): every job with this key goes to the same
    /// partition, so they run in the order they were enqueued (with one
    /// worker slot per key's partition, or `max_attempts(1)`, for a strict
    /// order). No effect on a queue that is not partitioned.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The traceparent the envelope carries: [`trace`](Self::trace()), or
    /// with feature `otel` the current span's OpenTelemetry context.
    pub(crate) fn traceparent(&self) -> Option<String> {
        #[cfg(feature = "otel")]
        if self.trace.is_none() {
            return crate::otel::current_traceparent();
        }
        self.trace.clone()
    }
}
