//! The library surface a service adopts: one import per role, `?` on any
//! error in a handler.

use std::collections::HashMap;
use std::time::Duration;

use millrace::Client;
use millrace_worker::{Job, JobContext, JobError, RetryPolicy, Worker};
use serde::{Deserialize, Serialize};

use crate::common::*;

/// A job that fails with the error kind it names, through `?`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fallible {
    kind: String,
}

impl Job for Fallible {
    const NAME: &'static str = "fallible";
    fn retry() -> RetryPolicy {
        RetryPolicy::exponential(2)
            .base(Duration::from_millis(50))
            .jitter(0.0)
    }
}

/// Fails through `?` on an error of `kind`; never succeeds.
async fn fallible(job: Fallible) -> Result<(), JobError> {
    match job.kind.as_str() {
        "io" => {
            std::fs::read("/nonexistent/millrace-test")?;
        }
        "json" => {
            serde_json::from_str::<u32>("not json")?;
        }
        "parse_int" => {
            "forty-two".parse::<u32>()?;
        }
        "boxed" => {
            let e: Box<dyn std::error::Error + Send + Sync> = "boxed failure".into();
            Err(e)?;
        }
        "anyhow" => {
            let inner: anyhow::Result<()> = Err(anyhow::anyhow!("connection refused"));
            anyhow::Context::context(inner, "loading invoice 42")?;
        }
        other => Err(format!("unknown kind {other}"))?,
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_mark_on_any_error_retries_with_its_message() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(Worker::builder(fast_config(&url)).register(
        move |job: Fallible, ctx: JobContext| {
            let _ = tx.send((job.kind.clone(), ctx.attempt));
            fallible(job)
        },
    ));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let want = [
        ("io", "No such file or directory (os error 2)"),
        ("json", "expected ident at line 1 column 2"),
        ("parse_int", "invalid digit found in string"),
        ("boxed", "boxed failure"),
        ("anyhow", "loading invoice 42: connection refused"),
    ];
    for (kind, _) in want {
        client
            .enqueue(&Fallible { kind: kind.into() })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut c = conn(&url).await;
    wait_left(
        &c,
        "default",
        Left {
            dead: 5,
            ..Left::default()
        },
    )
    .await;
    let mut attempts: HashMap<String, Vec<u32>> = HashMap::new();
    while let Ok((kind, attempt)) = rx.try_recv() {
        attempts.entry(kind).or_default().push(attempt);
    }
    let dead = dead_entries(&mut c, "default").await;
    for (kind, message) in want {
        assert_eq!(attempts[kind], [1, 2], "{kind}: retried once");
        let payload = format!("{{\"kind\":\"{kind}\"}}");
        let d = dead
            .iter()
            .find(|d| d["payload"] == payload)
            .unwrap_or_else(|| panic!("{kind} not dead-lettered: {dead:?}"));
        assert_eq!(d["attempt"], "2", "{kind}");
        assert_eq!(d["error"], message, "{kind}");
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_is_clone_and_its_debug_hides_the_password() {
    let redis = redis();
    // The private server's default user has no password: any is accepted.
    let url = redis
        .url()
        .replacen("redis://", "redis://default:hunter2@", 1);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{client:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("default:***@"), "{text}");
    let clone = client.clone();
    let id = tokio::spawn(async move { clone.enqueue(&Fallible { kind: "io".into() }).await })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!id.as_str().is_empty());
    let mut c = conn(&redis.url()).await;
    assert_eq!(left(&mut c, "default").await.stream, 1);
}

/// A job on its own queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bill {
    n: u64,
}

impl Job for Bill {
    const NAME: &'static str = "bill";
    const QUEUE: &'static str = "billing";
}

async fn ok_fallible(_job: Fallible, _ctx: JobContext) -> Result<(), JobError> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_worker_consumes_its_jobs_queues() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let builder = Worker::builder(fast_config(&url))
        .register(ok_fallible)
        .register(move |job: Bill, _ctx: JobContext| {
            let _ = tx.send(job.n);
            async { Ok(()) }
        });
    let worker = builder.build().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(worker.queues(), ["billing", "default"]);
    let stop = millrace_worker::CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&Bill { n: 7 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n = tokio::time::timeout(WAIT, rx.recv()).await;
    assert_eq!(n, Ok(Some(7)), "the billing job ran");
    stop.cancel();
    match tokio::time::timeout(WAIT, handle).await {
        Ok(Ok(Ok(()))) => {}
        other => panic!("worker did not stop cleanly: {other:?}"),
    }
}

#[test]
fn a_job_whose_queue_is_not_consumed_fails_the_build() {
    let mut config = fast_config("redis://127.0.0.1:1");
    config.queues = vec!["default".into()];
    let builder = || {
        Worker::builder(config.clone())
            .register(ok_fallible)
            .register(|_job: Bill, _ctx: JobContext| async { Ok(()) })
    };
    let err = match builder().build() {
        Ok(_) => panic!("built a worker that never runs `bill`"),
        Err(e) => e,
    };
    assert!(matches!(
        err,
        millrace_worker::WorkerError::UnconsumedQueue {
            job: "bill",
            queue: "billing",
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "job `bill` goes to queue `billing`, which this worker does not consume (queues: default): add `billing` to WorkerConfig::queues"
        ),
        "{text}"
    );
    assert!(text.contains("allow_unconsumed_jobs()"), "{text}");
    let worker = builder()
        .allow_unconsumed_jobs()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(worker.queues(), ["default"], "explicit queues are kept");
}

/// Shared state handed to every handler.
struct App {
    greeting: String,
    seen: tokio::sync::mpsc::UnboundedSender<String>,
}

async fn greet(job: Bill, ctx: JobContext) -> Result<(), JobError> {
    let app = ctx.state::<App>()?;
    let _ = app.seen.send(format!("{} {}", app.greeting, job.n));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_read_the_workers_state() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let app = App {
        greeting: "hello".into(),
        seen: tx,
    };
    let worker = spawn(
        Worker::builder(fast_config(&url))
            .state(app)
            .register(greet),
    );
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&Bill { n: 3 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = tokio::time::timeout(WAIT, rx.recv()).await;
    assert_eq!(seen, Ok(Some("hello 3".to_owned())));
    worker.shutdown().await;
}

#[test]
fn state_of_another_type_is_a_retryable_error_naming_it() {
    let ctx = JobContext::new("id".into(), "1-0".into(), "default".into(), 1)
        .with_state(std::sync::Arc::new(42_u32));
    assert_eq!(ctx.state::<u32>().ok(), Some(&42));
    match ctx.state::<App>() {
        Err(JobError::Retry { message }) => {
            assert!(
                message.contains("no state of type `it::library::App`"),
                "{message}"
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// `WorkerBuilder::on_success` (the runner's `--record-runs`) sees the id of
/// a job that succeeds, and not of one that fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_success_sees_the_ids_of_succeeded_jobs_only() {
    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let builder = Worker::builder(fast_config(&url))
        .register(|job: Bill, _ctx: JobContext| async move {
            if job.n == 0 {
                return Err(JobError::permanent("zero"));
            }
            Ok(())
        })
        .on_success(move |id| {
            let _ = tx.send(id.to_owned());
        });
    let running = spawn(builder);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failed = client
        .enqueue(&Bill { n: 0 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = client
        .enqueue(&Bill { n: 1 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = tokio::time::timeout(WAIT, rx.recv()).await;
    assert_eq!(seen, Ok(Some(ok.as_str().to_owned())));
    running.shutdown().await;
    let rest: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(
        !rest.iter().any(|id| id == failed.as_str()),
        "the failed job {failed} was reported as a success: {rest:?}"
    );
}
