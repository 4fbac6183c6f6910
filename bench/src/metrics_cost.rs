//! The cost of the worker's per-job metrics calls, measured in this
//! process: the `metrics` macro calls `millrace-worker` made for every job
//! before it cached handles (`started` + `finished_in`, building their
//! label strings each time), with no recorder and with a Prometheus
//! recorder installed; then the shape the worker uses now (see
//! `millrace_worker::metrics::JobMetrics`): handles registered once per
//! (queue, job) and only incremented per job.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram};

use crate::stats::{Better, Figures};

/// Mirrors the worker's former per-job `started` + `finished_in` calls.
fn per_job_calls(queue: &str, job: &str, enqueued_at: u64, took: Duration) {
    metrics::counter!("millrace_jobs_started_total", "queue" => queue.to_owned(), "job" => job.to_owned())
        .increment(1);
    metrics::gauge!("millrace_jobs_in_flight", "queue" => queue.to_owned()).increment(1.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(enqueued_at);
    let secs = now.saturating_sub(enqueued_at) as f64 / 1000.0;
    metrics::histogram!("millrace_job_pickup_latency_seconds", "queue" => queue.to_owned())
        .record(secs);
    metrics::gauge!("millrace_jobs_in_flight", "queue" => queue.to_owned()).decrement(1.0);
    metrics::histogram!("millrace_job_duration_seconds", "queue" => queue.to_owned(), "job" => job.to_owned())
        .record(took.as_secs_f64());
    metrics::counter!("millrace_jobs_finished_total", "queue" => queue.to_owned(), "job" => job.to_owned(), "outcome" => "success")
        .increment(1);
}

/// Handles registered once per (queue, job): the proposed fix.
struct Handles {
    started: Counter,
    in_flight: Gauge,
    pickup: Histogram,
    duration: Histogram,
    success: Counter,
}

impl Handles {
    fn new(queue: &str, job: &str) -> Self {
        Self {
            started: metrics::counter!("millrace_jobs_started_total", "queue" => queue.to_owned(), "job" => job.to_owned()),
            in_flight: metrics::gauge!("millrace_jobs_in_flight", "queue" => queue.to_owned()),
            pickup: metrics::histogram!("millrace_job_pickup_latency_seconds", "queue" => queue.to_owned()),
            duration: metrics::histogram!("millrace_job_duration_seconds", "queue" => queue.to_owned(), "job" => job.to_owned()),
            success: metrics::counter!("millrace_jobs_finished_total", "queue" => queue.to_owned(), "job" => job.to_owned(), "outcome" => "success"),
        }
    }

    fn per_job(&self, enqueued_at: u64, took: Duration) {
        self.started.increment(1);
        self.in_flight.increment(1.0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(enqueued_at);
        self.pickup
            .record(now.saturating_sub(enqueued_at) as f64 / 1000.0);
        self.in_flight.decrement(1.0);
        self.duration.record(took.as_secs_f64());
        self.success.increment(1);
    }
}

fn time_ns(n: u64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Measures the three variants with `n` simulated jobs each, once per run.
/// Installs a Prometheus recorder in this process, so it runs last.
pub fn run(figs: &mut Figures, n: u64, runs: usize) -> anyhow::Result<()> {
    let (queue, job) = ("default", "noop");
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let took = Duration::from_micros(3);
    let mut noop = Vec::new();
    for _ in 0..runs {
        noop.push(time_ns(n, || per_job_calls(queue, job, at, took)));
    }
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let handles = Handles::new(queue, job);
    for (i, ns) in noop.into_iter().enumerate() {
        figs.add(
            "metrics_per_job_no_recorder",
            "ns/job",
            Better::Lower,
            None,
            ns,
        );
        figs.add(
            "metrics_per_job_prometheus",
            "ns/job",
            Better::Lower,
            None,
            time_ns(n, || per_job_calls(queue, job, at, took)),
        );
        figs.add(
            "metrics_per_job_handles",
            "ns/job",
            Better::Lower,
            None,
            time_ns(n, || handles.per_job(at, took)),
        );
        if i % 2 == 0 {
            // Keep the recorder's histograms from growing without bound.
            handle.run_upkeep();
            let _ = handle.render();
        }
    }
    figs.note(
        "metrics_per_job_no_recorder",
        "per-job metrics macros with label strings (the worker before handles), no recorder",
    );
    figs.note(
        "metrics_per_job_prometheus",
        "the same macros with a Prometheus recorder installed",
    );
    figs.note(
        "metrics_per_job_handles",
        "handles cached per (queue, job), as the worker now does",
    );
    Ok(())
}
