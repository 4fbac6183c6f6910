//! Observability: the worker binary's /metrics, /healthz and /readyz after
//! real jobs, and the producer's trace context on the worker's span.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{Client, EnqueueOptions};
use millrace_jobs::{Fail, Noop, Sleep};
use millrace_tests::wait_for;
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::common::*;
use crate::processes::{sigterm, wait_exit};

/// A GET over a plain TCP connection: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path)
}

/// A bodiless request over a plain TCP connection: (status, body), or
/// `None` while nothing listens yet.
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the sample `name{labels...}` whose labels include every
/// pair in `want` (the sum, when several match).
pub(crate) fn value(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if want
            .iter()
            .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += v.parse::<f64>().ok()?;
        }
    }
    found
}

pub(crate) fn start_worker(url: &str, port: u16, extra: &[&str]) -> Child {
    Command::new(worker_bin())
        .env("MILLRACE_REDIS_URL", url)
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        // Failed attempts log warnings by design: keep test output quiet.
        .env("RUST_LOG", "error")
        .args([
            "--block",
            "500ms",
            "--sample-every",
            "200ms",
            "--grace",
            "10s",
        ])
        .args(["--metrics-addr", "127.0.0.1", "--metrics-port"])
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start millrace-worker: {e}"))
}

/// Kills the worker on drop, so a failing test leaves no process behind.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_ready(port: u16) {
    wait_for("/readyz to answer 200", WAIT, || {
        http_get(port, "/readyz").filter(|(s, _)| *s == 200)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until /metrics satisfies `check`, returning the text.
pub(crate) fn scrape_until(port: u16, what: &str, check: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    let res = wait_for(what, WAIT, || {
        let (_, body) = http_get(port, "/metrics")?;
        let ok = check(&body);
        last = body;
        ok.then(|| last.clone())
    });
    res.unwrap_or_else(|e| panic!("{e}\n--- last /metrics ---\n{last}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_real_successes_retries_and_deaths() {
    let redis = redis();
    let url = redis.url();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let mut worker = Killed(start_worker(&url, port, &[]));
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(port, "/nope").map(|r| r.0), Some(404));

    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let noops: Vec<Noop> = (0..5).map(|_| Noop::default()).collect();
    client
        .enqueue_many(&noops)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let third_time_lucky = Fail {
        succeed_on: 3,
        permanent: false,
        message: "ERRTEXT-lucky".into(),
    };
    let hopeless = Fail {
        succeed_on: 0,
        permanent: true,
        message: "ERRTEXT-hopeless".into(),
    };
    let never = Fail {
        succeed_on: 0,
        permanent: false,
        message: "ERRTEXT-never".into(),
    };
    for job in [
        &third_time_lucky,
        &third_time_lucky,
        &hopeless,
        &hopeless,
        &hopeless,
    ] {
        client.enqueue(job).await.unwrap_or_else(|e| panic!("{e}"));
    }
    client
        .enqueue_with(&never, EnqueueOptions::new().max_attempts(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Per job `fail`: 2 × (retry, retry, success) + 3 × dead (permanent)
    // + (retry, dead) (out of attempts) = 11 attempts.
    let fail = [("queue", "default"), ("job", "fail")];
    let outcome = |o: &'static str| [("queue", "default"), ("job", "fail"), ("outcome", o)];
    let text = tokio::task::spawn_blocking(move || {
        scrape_until(
            port,
            "all 16 attempts finished and a sample after the last",
            |t| {
                value(t, "millrace_jobs_finished_total", &[]) == Some(16.0)
                    && value(t, "millrace_queue_dead", &[("queue", "default")]) == Some(4.0)
                    && value(t, "millrace_queue_backlog", &[("queue", "default")]) == Some(0.0)
                    && value(t, "millrace_queue_delayed", &[("queue", "default")]) == Some(0.0)
            },
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let noop = [("queue", "default"), ("job", "noop")];
    let v = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(v("millrace_jobs_started_total", &noop), Some(5.0), "{text}");
    assert_eq!(
        v("millrace_jobs_started_total", &fail),
        Some(11.0),
        "{text}"
    );
    let noop_success = [("job", "noop"), ("outcome", "success")];
    assert_eq!(v("millrace_jobs_finished_total", &noop_success), Some(5.0));
    assert_eq!(
        v("millrace_jobs_finished_total", &outcome("success")),
        Some(2.0)
    );
    assert_eq!(
        v("millrace_jobs_finished_total", &outcome("retry")),
        Some(5.0)
    );
    assert_eq!(
        v("millrace_jobs_finished_total", &outcome("dead")),
        Some(4.0)
    );
    assert_eq!(
        v("millrace_jobs_finished_total", &outcome("lost_lease")),
        Some(0.0)
    );
    assert_eq!(v("millrace_job_duration_seconds_count", &fail), Some(11.0));
    assert_eq!(
        v("millrace_job_pickup_latency_seconds_count", &[]),
        Some(16.0)
    );
    assert_eq!(
        v("millrace_jobs_in_flight", &[("queue", "default")]),
        Some(0.0)
    );
    // Four retries scheduled and promoted back (the last retry of `never`
    // too): 2 × 2 + 1.
    assert_eq!(
        v("millrace_promoted_total", &[("queue", "default")]),
        Some(5.0)
    );
    for gauge in [
        "millrace_queue_ready",
        "millrace_queue_pending",
        "millrace_queue_delayed",
        "millrace_queue_oldest_ready_age_seconds",
    ] {
        assert_eq!(v(gauge, &[("queue", "default")]), Some(0.0), "{gauge}");
    }
    assert_eq!(
        v("millrace_queue_consumers", &[("queue", "default")]),
        Some(1.0)
    );
    assert!(text.contains("# TYPE millrace_job_duration_seconds histogram"));
    assert!(!text.contains("ERRTEXT"), "error text in labels");

    // A running job: the gauges see it; at SIGTERM /readyz turns 503 while
    // the job drains, and the job still finishes.
    client
        .enqueue(&Sleep { ms: 1500 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::task::spawn_blocking(move || {
        scrape_until(port, "the sleep job in flight and pending", |t| {
            value(t, "millrace_jobs_in_flight", &[]) == Some(1.0)
                && value(t, "millrace_queue_pending", &[]) == Some(1.0)
                && value(t, "millrace_queue_backlog", &[]) == Some(1.0)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    sigterm(&worker.0);
    let (status, body) = tokio::task::spawn_blocking(move || {
        wait_for("/readyz to answer 503", WAIT, || {
            http_get(port, "/readyz").filter(|(s, _)| *s == 503)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((status, body.trim()), (503, "not ready: shutting down"));
    let status = wait_exit(&mut worker.0, WAIT);
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_ready_job_age_grows_while_every_slot_is_busy() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // One slot, taken by a long job: the noops behind it stay ready.
    client
        .enqueue(&Sleep { ms: 60_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3 {
        client
            .enqueue(&Noop::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    client
        .enqueue_with(
            &Noop::default(),
            EnqueueOptions::new().delay(Duration::from_secs(3600)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A queue no worker runs: sampled from the registry all the same.
    for _ in 0..2 {
        client
            .enqueue_with(&Noop::default(), EnqueueOptions::new().queue("orphan"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let _worker = Killed(start_worker(&url, port, &["--concurrency", "1"]));
    let text = tokio::task::spawn_blocking(move || {
        // The jobs may be older than 1 s before the worker starts (its
        // binary built on first use): wait too for a sample taken after
        // the long job was claimed.
        scrape_until(port, "an oldest ready age of 1 s or more", |t| {
            let default = [("queue", "default")];
            value(t, "millrace_queue_oldest_ready_age_seconds", &default).is_some_and(|v| v >= 1.0)
                && value(t, "millrace_queue_pending", &default) == Some(1.0)
                && value(
                    t,
                    "millrace_queue_oldest_ready_age_seconds",
                    &[("queue", "orphan")],
                )
                .is_some_and(|v| v >= 1.0)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let v = |name: &str| value(&text, name, &[("queue", "default")]);
    assert_eq!(v("millrace_queue_ready"), Some(3.0), "{text}");
    assert_eq!(v("millrace_queue_pending"), Some(1.0));
    assert_eq!(v("millrace_queue_delayed"), Some(1.0));
    assert_eq!(v("millrace_jobs_in_flight"), Some(1.0));
    // The delayed job is not due: it is not part of the backlog.
    assert_eq!(v("millrace_queue_backlog"), Some(4.0));
    assert!(v("millrace_queue_oldest_ready_age_seconds").is_some_and(|a| a < 60.0));
    assert_eq!(v("millrace_queue_consumers"), Some(1.0));

    let orphan = |name: &str| value(&text, name, &[("queue", "orphan")]);
    assert_eq!(orphan("millrace_queue_ready"), Some(2.0), "{text}");
    assert_eq!(orphan("millrace_queue_backlog"), Some(2.0));
    assert_eq!(orphan("millrace_queue_consumers"), Some(0.0));
    assert!(orphan("millrace_queue_oldest_ready_age_seconds").is_some_and(|a| a >= 1.0));
    // Nobody works `orphan`: the worker is ready all the same.
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let mut redis = redis();
    let url = redis.url();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let _worker = Killed(start_worker(&url, port, &[]));
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis.kill();
    let body = tokio::task::spawn_blocking(move || {
        wait_for("/readyz to answer 503", WAIT, || {
            http_get(port, "/readyz").filter(|(s, _)| *s == 503)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|e| panic!("{e}"))
    .1;
    assert!(body.contains("queue default"), "{body}");
    // Still alive: only readiness fails.
    assert_eq!(http_get(port, "/healthz").map(|r| r.0), Some(200));
    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_stops_the_worker_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = taken.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
    let redis = redis();
    let out = Command::new(worker_bin())
        .env("MILLRACE_REDIS_URL", redis.url())
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .env("RUST_LOG", "off")
        .args(["--metrics-addr", "127.0.0.1", "--metrics-port"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for metrics and health"
        )),
        "{err}"
    );
}

// --- tracing -----------------------------------------------------------

/// Records the fields of every `job` span.
#[derive(Clone, Default)]
struct JobSpans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

/// The index of a span's entry in the record, kept in the span's
/// extensions so later `record` calls land on the same entry.
struct Slot(usize);

impl<S> tracing_subscriber::Layer<S> for JobSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if attrs.metadata().name() != "job" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        spans.push(fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Slot(spans.len() - 1));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let Some(span) = ctx.span(id) else { return };
        let Some(slot) = span.extensions().get::<Slot>().map(|s| s.0) else {
            return;
        };
        let mut spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fields) = spans.get_mut(slot) {
            values.record(&mut Fields(fields));
        }
    }
}

/// Current-thread runtime: the worker's tasks run on this thread, under
/// this test's scoped subscriber.
#[tokio::test]
async fn the_producers_trace_id_is_on_the_workers_job_span() {
    let spans = JobSpans::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let id = client
        .enqueue_with(
            &probe_job("traced", 1),
            EnqueueOptions::new().trace(traceparent),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let untraced = client
        .enqueue(&probe_job("untraced", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the probes did not run"));
    }
    worker.shutdown().await;

    let spans = spans.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let of = |id: &str| {
        spans
            .iter()
            .find(|f| f.get("job_id").map(String::as_str) == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no job span for {id}: {spans:?}"))
    };
    let traced = of(id.as_str());
    assert_eq!(traced["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(traced["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(traced["queue"], "default");
    assert_eq!(traced["job"], "probe");
    assert_eq!(traced["attempt"], "1");
    let plain = of(untraced.as_str());
    assert!(!plain.contains_key("trace_id"), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_and_fetch_progress_are_exported() {
    let redis = redis();
    let url = redis.url();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let _worker = Killed(start_worker(&url, port, &[]));
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A job no handler of this worker knows: deferred, not dead-lettered.
    let mut c = conn(&url).await;
    let unknown = millrace_core::Envelope::new(
        millrace_core::JobId::new().0,
        "from_a_newer_producer",
        "{}".into(),
    );
    millrace_core::Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .enqueue(&mut c, &[unknown])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = tokio::task::spawn_blocking(move || {
        scrape_until(port, "a deferral and the fetch progress gauge", |t| {
            value(t, "millrace_jobs_deferred_total", &[("queue", "default")]) == Some(1.0)
                && value(
                    t,
                    "millrace_fetch_last_progress_timestamp_seconds",
                    &[("queue", "default")],
                )
                .is_some()
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let v = |name: &str| value(&text, name, &[("queue", "default")]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let progress = v("millrace_fetch_last_progress_timestamp_seconds").unwrap_or(0.0);
    assert!(
        (now - progress).abs() < 10.0,
        "progress {progress}, now {now}"
    );
    assert_eq!(v("millrace_fetch_stalls_total"), Some(0.0), "{text}");
    assert_eq!(v("millrace_queue_dead"), Some(0.0), "dead-lettered at once");
    assert!(text.contains("# TYPE millrace_jobs_deferred_total counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_attempt_is_counted_as_cancelled_not_retried() {
    let redis = redis();
    let url = redis.url();
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let _worker = Killed(start_worker(&url, port, &["--lease", "3s"]));
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let id = client
        .enqueue(&Sleep { ms: 60_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sleep = |o: &'static str| [("queue", "default"), ("job", "sleep"), ("outcome", o)];
    tokio::task::spawn_blocking(move || {
        scrape_until(port, "the sleep job to start", |t| {
            value(t, "millrace_jobs_started_total", &[("job", "sleep")]) == Some(1.0)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let done = client
        .cancel("default", id.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(done, millrace::Cancel::Running { .. }), "{done:?}");
    let text = tokio::task::spawn_blocking(move || {
        scrape_until(port, "the attempt to end as cancelled", |t| {
            value(t, "millrace_jobs_finished_total", &sleep("cancelled")) == Some(1.0)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    for o in ["retry", "dead", "success", "lost_lease"] {
        assert_eq!(
            value(&text, "millrace_jobs_finished_total", &sleep(o)),
            Some(0.0),
            "{o}"
        );
    }
}
