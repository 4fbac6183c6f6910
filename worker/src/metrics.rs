//! Metric names and the calls that record them, through the `metrics`
//! facade. `install_prometheus` (feature `http`) installs the Prometheus exporter (the
//! binary does, and tests may); [`crate::http`] serves it. Labels are
//! bounded: queue (and partition, for a partitioned queue's), job name
//! (registered names only), outcome and Redis operation — never ids or
//! error text.
//!
//! Every name here is listed with its labels in the README
//! ("Observability"), and `dashboards/check-metrics.sh` fails when a
//! dashboard or alert rule queries a name that is not defined here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{Label, Unit};
#[cfg(feature = "http")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use millrace_core::Priority;
use millrace_core::partition::split_name;

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
/// Entries no handler of this worker can run yet (an unknown job name, a
/// newer wire version), deferred with backoff, by queue.
pub const JOBS_DEFERRED: &str = "millrace_jobs_deferred_total";
/// Reads abandoned for outliving their BLOCK (a stalled connection, closed
/// and replaced), by queue.
pub const FETCH_STALLS: &str = "millrace_fetch_stalls_total";
/// Unix time (seconds) of the fetch loop's last progress (a read returned,
/// or it waits for a free slot, or the queue is paused), by queue.
pub const FETCH_LAST_PROGRESS: &str = "millrace_fetch_last_progress_timestamp_seconds";

/// Sampled from Redis: entries in the ready stream not yet delivered to any
/// consumer, by queue.
pub const QUEUE_READY: &str = "millrace_queue_ready";
/// Sampled: entries delivered and not yet acknowledged (the group's PEL),
/// by queue.
pub const QUEUE_PENDING: &str = "millrace_queue_pending";
/// Sampled: scheduled jobs and retries waiting in the delayed set, by queue.
pub const QUEUE_DELAYED: &str = "millrace_queue_delayed";
/// Sampled: entries in the dead-letter stream, by queue.
pub const QUEUE_DEAD: &str = "millrace_queue_dead";
/// Sampled: consumers whose heartbeat is recent, by queue.
pub const QUEUE_CONSUMERS: &str = "millrace_queue_consumers";
/// Sampled: how long the oldest ready entry has waited in the ready stream,
/// in seconds (0 when nothing is ready), by queue.
pub const QUEUE_OLDEST_READY_AGE: &str = "millrace_queue_oldest_ready_age_seconds";
/// Sampled: ready + pending + delayed jobs already due, by queue — the work
/// there is to do now; the autoscaling signal.
pub const QUEUE_BACKLOG: &str = "millrace_queue_backlog";
/// Sampled: entries in one lane's ready stream not yet delivered, by queue
/// and lane (`high`, `default`, `low`; lanes in use only).
pub const LANE_READY: &str = "millrace_lane_ready";
/// Sampled: how long the oldest ready entry of one lane has waited, in
/// seconds (0 when none), by queue and lane.
pub const LANE_OLDEST_READY_AGE: &str = "millrace_lane_oldest_ready_age_seconds";
/// Unix time (seconds) of the last successful sample of a queue, by queue.
pub const QUEUE_SAMPLED_AT: &str = "millrace_queue_sampled_timestamp_seconds";

/// Job slots of this worker (its concurrency), by queue: utilization is
/// [`IN_FLIGHT`] over this.
pub const CONCURRENCY: &str = "millrace_worker_concurrency";
/// Always 1, labelled with this worker's version: which versions run.
pub const BUILD_INFO: &str = "millrace_build_info";

/// Every `op` label value of [`REDIS_ERRORS`] (keep in step with the calls
/// of `redis_error`).
pub const REDIS_OPS: [&str; 13] = [
    "connect",
    "declare",
    "read",
    "pending",
    "ack",
    "fail",
    "renew",
    "reclaim",
    "promote",
    "heartbeat",
    "sample",
    "schedule",
    "cancel",
];

/// Every outcome label value of [`JOBS_FINISHED`].
pub const OUTCOMES: [&str; 5] = ["success", "retry", "dead", "lost_lease", "cancelled"];

/// Histogram buckets (seconds) of job duration and pickup latency: 1 ms to
/// 1 h, roughly ×2.5 apart.
pub const BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Why the Prometheus exporter could not be installed.
#[cfg(feature = "http")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The exporter refused its configuration, or another recorder is
    /// already installed in this process.
    #[error("cannot install the Prometheus exporter: {0}")]
    Install(#[from] metrics_exporter_prometheus::BuildError),
}

/// Installs the Prometheus exporter as this process's `metrics` recorder,
/// with [`BUCKETS`] for every `_seconds` histogram, and describes every
/// metric (HELP and unit). Returns the handle that renders the text
/// exposition; call [`PrometheusHandle::run_upkeep`] now and then (the
/// [`crate::http`] server does). Fails if a recorder is already installed.
#[cfg(feature = "http")]
pub fn install_prometheus() -> Result<PrometheusHandle, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// Registers the HELP text and unit of every metric with the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(JOBS_STARTED, Unit::Count, "Job attempts started.");
    describe_counter!(
        JOBS_FINISHED,
        Unit::Count,
        "Job attempts finished, by outcome: success, retry, dead, lost_lease, cancelled."
    );
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Handler run time of an attempt."
    );
    describe_histogram!(
        PICKUP_LATENCY,
        Unit::Seconds,
        "Time from enqueue to the start of an attempt."
    );
    describe_gauge!(IN_FLIGHT, Unit::Count, "Attempts running in this worker.");
    describe_counter!(
        RECLAIMED,
        Unit::Count,
        "Entries taken over from expired leases."
    );
    describe_counter!(
        MAX_DELIVERIES_DEAD,
        Unit::Count,
        "Entries dead-lettered for passing max deliveries."
    );
    describe_counter!(LEASE_RENEWALS, Unit::Count, "Lease renewals done.");
    describe_counter!(
        LEASES_LOST,
        Unit::Count,
        "Leases found lost to another worker."
    );
    describe_counter!(REDIS_ERRORS, Unit::Count, "Redis errors, by operation.");
    describe_counter!(PROMOTED, Unit::Count, "Jobs moved from delayed to ready.");
    describe_counter!(
        JOBS_DEFERRED,
        Unit::Count,
        "Entries no handler here can run yet (unknown job name, newer wire version), deferred."
    );
    describe_counter!(
        FETCH_STALLS,
        Unit::Count,
        "Reads abandoned for outliving their BLOCK; the connection was replaced."
    );
    describe_gauge!(
        FETCH_LAST_PROGRESS,
        Unit::Seconds,
        "Unix time of the fetch loop's last progress (read returned, waiting for a slot, or paused)."
    );
    describe_gauge!(
        QUEUE_READY,
        Unit::Count,
        "Entries ready, not yet delivered."
    );
    describe_gauge!(
        QUEUE_PENDING,
        Unit::Count,
        "Entries delivered, not yet acknowledged."
    );
    describe_gauge!(
        QUEUE_DELAYED,
        Unit::Count,
        "Scheduled jobs and retries waiting."
    );
    describe_gauge!(
        QUEUE_DEAD,
        Unit::Count,
        "Entries in the dead-letter stream."
    );
    describe_gauge!(
        QUEUE_CONSUMERS,
        Unit::Count,
        "Consumers with a recent heartbeat."
    );
    describe_gauge!(
        QUEUE_OLDEST_READY_AGE,
        Unit::Seconds,
        "Age of the oldest ready entry (0 when none)."
    );
    describe_gauge!(
        QUEUE_BACKLOG,
        Unit::Count,
        "Ready + pending + due delayed jobs: the autoscaling signal."
    );
    describe_gauge!(
        LANE_READY,
        Unit::Count,
        "Entries ready in one lane of the queue, not yet delivered."
    );
    describe_gauge!(
        LANE_OLDEST_READY_AGE,
        Unit::Seconds,
        "Age of the oldest ready entry of one lane (0 when none)."
    );
    describe_gauge!(CONCURRENCY, Unit::Count, "Job slots of this worker.");
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label tells the worker's version."
    );
    describe_gauge!(
        QUEUE_SAMPLED_AT,
        Unit::Seconds,
        "Unix time of the last successful sample of the queue."
    );
}

/// The labels naming `queue`: a partition (`orders#3`) is labelled as its
/// queue plus a `partition` label (`queue="orders", partition="3"`), so a
/// sum by queue takes in every partition and a partitioned queue is one
/// queue with a per-partition breakdown.
fn queue_labels(queue: &str) -> Vec<Label> {
    match split_name(queue) {
        (base, Some(i)) => vec![
            Label::new("queue", base.to_owned()),
            Label::new("partition", i.to_string()),
        ],
        _ => vec![Label::new("queue", queue.to_owned())],
    }
}

/// [`queue_labels`] and `extra`.
fn with_labels<const N: usize>(queue: &str, extra: [(&'static str, String); N]) -> Vec<Label> {
    let mut labels = queue_labels(queue);
    labels.extend(extra.into_iter().map(|(k, v)| Label::new(k, v)));
    labels
}

/// Creates every bounded series at zero (each queue × registered job ×
/// outcome, and the per-queue counters), so rates and alerts see a zero
/// before the first event rather than no series at all. Adds 0, never
/// sets: a second worker in the same process resets nothing.
pub(crate) fn init_series(queues: &[String], jobs: &[&str], concurrency: usize) {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for queue in queues {
        metrics::gauge!(CONCURRENCY, queue_labels(queue)).set(concurrency as f64);
        for &job in jobs {
            metrics::counter!(JOBS_STARTED, with_labels(queue, [("job", job.to_owned())]))
                .increment(0);
            for outcome in OUTCOMES {
                metrics::counter!(
                    JOBS_FINISHED,
                    with_labels(
                        queue,
                        [("job", job.to_owned()), ("outcome", outcome.to_owned())]
                    )
                )
                .increment(0);
            }
        }
        metrics::gauge!(IN_FLIGHT, queue_labels(queue)).increment(0.0);
        for name in [
            RECLAIMED,
            MAX_DELIVERIES_DEAD,
            LEASE_RENEWALS,
            LEASES_LOST,
            PROMOTED,
            JOBS_DEFERRED,
            FETCH_STALLS,
        ] {
            metrics::counter!(name, queue_labels(queue)).increment(0);
        }
        for op in REDIS_OPS {
            metrics::counter!(REDIS_ERRORS, with_labels(queue, [("op", op.to_owned())]))
                .increment(0);
        }
    }
}

/// One sample of one lane of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LaneSample {
    pub lane: Priority,
    pub ready: u64,
    pub pending: u64,
    pub delayed: u64,
    pub delayed_due: u64,
    pub oldest_ready_age_ms: u64,
}

/// One sample of a queue's state in Redis: the sums over its lanes, and
/// each lane's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct QueueSample {
    pub ready: u64,
    pub pending: u64,
    pub delayed: u64,
    pub delayed_due: u64,
    pub dead: u64,
    pub consumers: u64,
    pub oldest_ready_age_ms: u64,
    pub sampled_at_ms: u64,
    /// Whether the queue's consumer group exists (not a gauge: readiness).
    pub group_present: bool,
    /// Each lane in use, in serving order.
    pub lanes: Vec<LaneSample>,
}

impl QueueSample {
    /// A queue's sample from its lanes': counts summed, the oldest ready
    /// age the largest.
    pub fn from_lanes(
        lanes: Vec<LaneSample>,
        dead: u64,
        consumers: u64,
        sampled_at_ms: u64,
        group_present: bool,
    ) -> Self {
        let sum = |f: fn(&LaneSample) -> u64| lanes.iter().map(f).sum::<u64>();
        Self {
            ready: sum(|l| l.ready),
            pending: sum(|l| l.pending),
            delayed: sum(|l| l.delayed),
            delayed_due: sum(|l| l.delayed_due),
            dead,
            consumers,
            oldest_ready_age_ms: lanes
                .iter()
                .map(|l| l.oldest_ready_age_ms)
                .max()
                .unwrap_or(0),
            sampled_at_ms,
            group_present,
            lanes,
        }
    }

    /// Ready + pending + delayed jobs already due.
    pub fn backlog(&self) -> u64 {
        self.ready + self.pending + self.delayed_due
    }

    pub fn record(&self, queue: &str) {
        let set = |name: &'static str, v: f64| {
            metrics::gauge!(name, queue_labels(queue)).set(v);
        };
        set(QUEUE_READY, self.ready as f64);
        set(QUEUE_PENDING, self.pending as f64);
        set(QUEUE_DELAYED, self.delayed as f64);
        set(QUEUE_DEAD, self.dead as f64);
        set(QUEUE_CONSUMERS, self.consumers as f64);
        set(
            QUEUE_OLDEST_READY_AGE,
            self.oldest_ready_age_ms as f64 / 1000.0,
        );
        set(QUEUE_BACKLOG, self.backlog() as f64);
        set(QUEUE_SAMPLED_AT, self.sampled_at_ms as f64 / 1000.0);
        for l in &self.lanes {
            let lane = l.lane.as_str();
            metrics::gauge!(LANE_READY, with_labels(queue, [("lane", lane.to_owned())]))
                .set(l.ready as f64);
            metrics::gauge!(
                LANE_OLDEST_READY_AGE,
                with_labels(queue, [("lane", lane.to_owned())])
            )
            .set(l.oldest_ready_age_ms as f64 / 1000.0);
        }
    }
}

/// Handles of the per-attempt metrics of one (queue, job) pair, registered
/// once at start: recording an attempt then costs a few atomic operations,
/// with no label strings built and no registry lookup per job. Handles bind
/// to the recorder installed when they are made, so install a recorder
/// before `Worker::run`.
pub(crate) struct JobMetrics {
    started: metrics::Counter,
    success: metrics::Counter,
    retry: metrics::Counter,
    dead: metrics::Counter,
    lost_lease: metrics::Counter,
    cancelled: metrics::Counter,
    duration: metrics::Histogram,
    pickup: metrics::Histogram,
    in_flight: metrics::Gauge,
}

/// How an attempt ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Retry,
    Dead,
    LostLease,
    /// Cancelled by `millrace cancel` / `Client::cancel` while running.
    Cancelled,
}

impl JobMetrics {
    pub fn new(queue: &str, job: &str) -> Self {
        let j = || ("job", job.to_owned());
        let finished = |outcome: &'static str| {
            metrics::counter!(
                JOBS_FINISHED,
                with_labels(queue, [j(), ("outcome", outcome.to_owned())])
            )
        };
        Self {
            started: metrics::counter!(JOBS_STARTED, with_labels(queue, [j()])),
            success: finished("success"),
            retry: finished("retry"),
            dead: finished("dead"),
            lost_lease: finished("lost_lease"),
            cancelled: finished("cancelled"),
            duration: metrics::histogram!(JOB_DURATION, with_labels(queue, [j()])),
            pickup: metrics::histogram!(PICKUP_LATENCY, queue_labels(queue)),
            in_flight: metrics::gauge!(IN_FLIGHT, queue_labels(queue)),
        }
    }

    /// An attempt started; `enqueued_at` (unix ms) gives the pickup latency.
    pub fn started(&self, enqueued_at: Option<u64>) {
        self.started.increment(1);
        self.in_flight.increment(1.0);
        if let Some(at) = enqueued_at {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(at);
            self.pickup.record(now.saturating_sub(at) as f64 / 1000.0);
        }
    }

    /// A started attempt ended after `took`.
    pub fn finished_in(&self, outcome: Outcome, took: Duration) {
        self.in_flight.decrement(1.0);
        self.duration.record(took.as_secs_f64());
        self.finished(outcome);
    }

    /// An attempt ended (or an entry was dead-lettered without starting).
    pub fn finished(&self, outcome: Outcome) {
        match outcome {
            Outcome::Success => &self.success,
            Outcome::Retry => &self.retry,
            Outcome::Dead => &self.dead,
            Outcome::LostLease => &self.lost_lease,
            Outcome::Cancelled => &self.cancelled,
        }
        .increment(1);
    }
}

/// The [`JobMetrics`] of every registered job of one queue, plus `_unknown`
/// and `_undecodable` for entries no handler takes.
pub(crate) struct QueueMetrics {
    jobs: std::collections::HashMap<&'static str, JobMetrics>,
    /// Entries whose job name no handler knows.
    pub unknown: JobMetrics,
    /// Entries that are not valid envelopes.
    pub undecodable: JobMetrics,
}

impl QueueMetrics {
    pub fn new(queue: &str, jobs: &[&'static str]) -> Self {
        Self {
            jobs: jobs
                .iter()
                .map(|j| (*j, JobMetrics::new(queue, j)))
                .collect(),
            unknown: JobMetrics::new(queue, "_unknown"),
            undecodable: JobMetrics::new(queue, "_undecodable"),
        }
    }

    /// The metrics of job `name` (`_unknown` for a name not registered).
    pub fn job(&self, name: &str) -> &JobMetrics {
        self.jobs.get(name).unwrap_or(&self.unknown)
    }
}

pub(crate) fn lease_lost(queue: &str) {
    metrics::counter!(LEASES_LOST, queue_labels(queue)).increment(1);
}

pub(crate) fn renewed(queue: &str, n: u64) {
    metrics::counter!(LEASE_RENEWALS, queue_labels(queue)).increment(n);
}

pub(crate) fn reclaimed(queue: &str, claimed: u64, dead: u64) {
    metrics::counter!(RECLAIMED, queue_labels(queue)).increment(claimed);
    metrics::counter!(MAX_DELIVERIES_DEAD, queue_labels(queue)).increment(dead);
}

pub(crate) fn promoted(queue: &str, n: u64) {
    metrics::counter!(PROMOTED, queue_labels(queue)).increment(n);
}

pub(crate) fn deferred(queue: &str) {
    metrics::counter!(JOBS_DEFERRED, queue_labels(queue)).increment(1);
}

pub(crate) fn fetch_stalled(queue: &str) {
    metrics::counter!(FETCH_STALLS, queue_labels(queue)).increment(1);
}

/// Sets the fetch-progress gauge of `queue`.
pub(crate) fn fetch_progress(queue: &str, unix_seconds: f64) {
    metrics::gauge!(FETCH_LAST_PROGRESS, queue_labels(queue)).set(unix_seconds);
}

pub(crate) fn redis_error(queue: &str, op: &'static str) {
    metrics::counter!(REDIS_ERRORS, with_labels(queue, [("op", op.to_owned())])).increment(1);
}

#[cfg(test)]
#[cfg(feature = "http")]
mod tests {
    use super::*;

    fn render(record: impl FnOnce()) -> String {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        handle.render()
    }

    #[test]
    fn bounded_series_start_at_zero_and_are_never_reset() {
        let text = render(|| {
            init_series(&["billing".to_owned()], &["send_invoice"], 8);
            JobMetrics::new("billing", "send_invoice").finished(Outcome::Retry);
            init_series(&["billing".to_owned()], &["send_invoice"], 8);
        });
        for outcome in ["success", "dead", "lost_lease", "cancelled"] {
            let line = format!(
                "millrace_jobs_finished_total{{queue=\"billing\",job=\"send_invoice\",outcome=\"{outcome}\"}} 0"
            );
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(text.contains(
            "millrace_jobs_finished_total{queue=\"billing\",job=\"send_invoice\",outcome=\"retry\"} 1"
        ));
        assert!(text.contains("millrace_redis_errors_total{queue=\"billing\",op=\"sample\"} 0"));
        assert!(text.contains("millrace_jobs_in_flight{queue=\"billing\"} 0"));
        assert!(text.contains("millrace_worker_concurrency{queue=\"billing\"} 8"));
        assert!(text.contains(&format!(
            "millrace_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn a_partition_is_labelled_as_its_queue_and_partition() {
        let text = render(|| {
            JobMetrics::new("orders#3", "charge").finished(Outcome::Success);
            redis_error("orders#3", "ack");
            QueueSample {
                ready: 5,
                ..QueueSample::default()
            }
            .record("orders#3");
            QueueSample {
                ready: 2,
                ..QueueSample::default()
            }
            .record("orders");
        });
        for line in [
            "millrace_jobs_finished_total{queue=\"orders\",partition=\"3\",job=\"charge\",outcome=\"success\"} 1",
            "millrace_redis_errors_total{queue=\"orders\",partition=\"3\",op=\"ack\"} 1",
            "millrace_queue_ready{queue=\"orders\",partition=\"3\"} 5",
            "millrace_queue_ready{queue=\"orders\"} 2",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        // A name that only looks like one stays a queue of its own.
        assert_eq!(queue_labels("a#03").len(), 1);
    }

    #[test]
    fn a_sample_becomes_the_queue_gauges() {
        let text = render(|| {
            QueueSample {
                ready: 3,
                pending: 2,
                delayed: 7,
                delayed_due: 1,
                dead: 4,
                consumers: 2,
                oldest_ready_age_ms: 1500,
                sampled_at_ms: 1_700_000_000_000,
                group_present: true,
                lanes: Vec::new(),
            }
            .record("billing");
        });
        for (name, value) in [
            (QUEUE_READY, "3"),
            (QUEUE_PENDING, "2"),
            (QUEUE_DELAYED, "7"),
            (QUEUE_DEAD, "4"),
            (QUEUE_CONSUMERS, "2"),
            (QUEUE_OLDEST_READY_AGE, "1.5"),
            (QUEUE_BACKLOG, "6"),
            (QUEUE_SAMPLED_AT, "1700000000"),
        ] {
            let line = format!("{name}{{queue=\"billing\"}} {value}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(text.contains("# HELP millrace_queue_backlog "));
    }

    #[test]
    fn lanes_sum_into_the_queue_and_keep_their_own_gauges() {
        let lane = |lane, ready, pending, delayed_due, age| LaneSample {
            lane,
            ready,
            pending,
            delayed: delayed_due + 1,
            delayed_due,
            oldest_ready_age_ms: age,
        };
        let s = QueueSample::from_lanes(
            vec![
                lane(Priority::High, 2, 1, 0, 250),
                lane(Priority::Default, 0, 3, 1, 0),
                lane(Priority::Low, 40, 0, 2, 9000),
            ],
            5,
            1,
            1_700_000_000_000,
            true,
        );
        assert_eq!(
            (s.ready, s.pending, s.delayed, s.delayed_due),
            (42, 4, 6, 3)
        );
        assert_eq!(s.oldest_ready_age_ms, 9000);
        assert_eq!(s.backlog(), 49);
        let text = render(|| s.record("billing"));
        for (name, value) in [
            (QUEUE_READY, "42"),
            (QUEUE_BACKLOG, "49"),
            (QUEUE_OLDEST_READY_AGE, "9"),
        ] {
            let line = format!("{name}{{queue=\"billing\"}} {value}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        for (name, lane, value) in [
            (LANE_READY, "high", "2"),
            (LANE_READY, "default", "0"),
            (LANE_READY, "low", "40"),
            (LANE_OLDEST_READY_AGE, "high", "0.25"),
            (LANE_OLDEST_READY_AGE, "low", "9"),
        ] {
            let line = format!("{name}{{queue=\"billing\",lane=\"{lane}\"}} {value}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        assert!(text.contains("# HELP millrace_lane_ready "));
    }

    #[test]
    fn durations_are_histograms_with_the_documented_buckets() {
        let text = render(|| {
            let m = JobMetrics::new("billing", "send_invoice");
            m.started(None);
            m.finished_in(Outcome::Success, Duration::from_millis(30));
        });
        assert!(text.contains("# TYPE millrace_job_duration_seconds histogram"));
        assert!(text.contains(
            "millrace_job_duration_seconds_bucket{queue=\"billing\",job=\"send_invoice\",le=\"0.05\"} 1"
        ));
        assert!(text.contains(
            "millrace_job_duration_seconds_bucket{queue=\"billing\",job=\"send_invoice\",le=\"0.025\"} 0"
        ));
        assert!(text.contains("millrace_jobs_in_flight{queue=\"billing\"} 0"));
    }
}
