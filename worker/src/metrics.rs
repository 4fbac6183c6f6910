//! Metric names and the calls that record them, through the `metrics`
//! facade (the binary installs a Prometheus exporter). Labels are bounded:
//! queue, job name (registered names only) and outcome — never ids or
//! error text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attempts started, by queue and job.
pub const JOBS_STARTED: &str = "millrace_jobs_started_total";
/// Attempts finished, by queue, job and outcome (success, retry, dead,
/// lost_lease).
pub const JOBS_FINISHED: &str = "millrace_jobs_finished_total";
/// Handler run time in seconds, by queue and job.
pub const JOB_DURATION: &str = "millrace_job_duration_seconds";
/// Time from enqueue to handler start in seconds, by queue.
pub const PICKUP_LATENCY: &str = "millrace_job_pickup_latency_seconds";
/// Jobs running now, by queue.
pub const IN_FLIGHT: &str = "millrace_jobs_in_flight";
/// Entries taken over from expired leases, by queue.
pub const RECLAIMED: &str = "millrace_reclaimed_total";
/// Entries dead-lettered for passing max deliveries, by queue.
pub const MAX_DELIVERIES_DEAD: &str = "millrace_max_deliveries_dead_total";
/// Lease renewals done, by queue.
pub const LEASE_RENEWALS: &str = "millrace_lease_renewals_total";
/// Leases found lost (another worker took the entry), by queue.
pub const LEASES_LOST: &str = "millrace_leases_lost_total";
/// Redis errors, by queue and operation.
pub const REDIS_ERRORS: &str = "millrace_redis_errors_total";
/// Jobs moved from the delayed set to the ready stream, by queue.
pub const PROMOTED: &str = "millrace_promoted_total";

pub(crate) fn started(queue: &str, job: &str, enqueued_at: Option<u64>) {
    metrics::counter!(JOBS_STARTED, "queue" => queue.to_owned(), "job" => job.to_owned())
        .increment(1);
    metrics::gauge!(IN_FLIGHT, "queue" => queue.to_owned()).increment(1.0);
    if let Some(at) = enqueued_at {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(at);
        let secs = now.saturating_sub(at) as f64 / 1000.0;
        metrics::histogram!(PICKUP_LATENCY, "queue" => queue.to_owned()).record(secs);
    }
}

pub(crate) fn finished_in(queue: &str, job: &str, outcome: &'static str, took: Duration) {
    metrics::gauge!(IN_FLIGHT, "queue" => queue.to_owned()).decrement(1.0);
    metrics::histogram!(JOB_DURATION, "queue" => queue.to_owned(), "job" => job.to_owned())
        .record(took.as_secs_f64());
    finished(queue, job, outcome);
}

pub(crate) fn finished(queue: &str, job: &str, outcome: &'static str) {
    metrics::counter!(JOBS_FINISHED, "queue" => queue.to_owned(), "job" => job.to_owned(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn lease_lost(queue: &str) {
    metrics::counter!(LEASES_LOST, "queue" => queue.to_owned()).increment(1);
}

pub(crate) fn renewed(queue: &str, n: u64) {
    metrics::counter!(LEASE_RENEWALS, "queue" => queue.to_owned()).increment(n);
}

pub(crate) fn reclaimed(queue: &str, claimed: u64, dead: u64) {
    metrics::counter!(RECLAIMED, "queue" => queue.to_owned()).increment(claimed);
    metrics::counter!(MAX_DELIVERIES_DEAD, "queue" => queue.to_owned()).increment(dead);
}

pub(crate) fn promoted(queue: &str, n: u64) {
    metrics::counter!(PROMOTED, "queue" => queue.to_owned()).increment(n);
}

pub(crate) fn redis_error(queue: &str, op: &'static str) {
    metrics::counter!(REDIS_ERRORS, "queue" => queue.to_owned(), "op" => op).increment(1);
}
