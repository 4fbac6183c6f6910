//! Producer errors: each one line, naming what failed.

use millrace::{Client, EnqueueError, EnqueueOptions};

use crate::common::*;

#[tokio::test]
async fn a_refused_connection_names_the_url_in_one_line() {
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    let err = match Client::connect(&url).await {
        Ok(_) => panic!("connected to a closed port"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with(&format!(
            "cannot connect to Redis at redis://:***@127.0.0.1:{port}: "
        )),
        "{err}"
    );
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");
    assert!(!err.contains('\n'), "not one line: {err}");
}

#[tokio::test]
async fn a_malformed_url_is_refused_in_one_line() {
    let err = match Client::connect("http://nope").await {
        Ok(_) => panic!("accepted an http URL"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("cannot connect to Redis at http://nope: "),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn bad_options_are_refused_before_anything_is_sent() {
    let redis = redis();
    let url = redis.url();
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = client
        .enqueue_with(&probe_job("x", 1), EnqueueOptions::new().queue("bad name"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("invalid queue name \"bad name\""), "{err}");
    let err = client
        .enqueue_with(&probe_job("x", 1), EnqueueOptions::new().max_attempts(0))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(err, "max_attempts (0) must be from 1 to 10000");
    // An empty job id would enqueue an entry every worker dead-letters.
    let err = client
        .enqueue_with(
            &probe_job("x", 1),
            EnqueueOptions::new().job_id(millrace::JobId(String::new())),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(err, "job id must not be empty");
    let small = Client::builder(&url)
        .max_payload(10)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = small.enqueue(&probe_job("a long tag", 1)).await.err();
    assert!(
        matches!(err, Some(EnqueueError::PayloadTooLarge { limit: 10, .. })),
        "{err:?}"
    );
    let mut c = conn(&url).await;
    assert_eq!(
        left(&mut c, "default").await,
        Left::default(),
        "nothing was enqueued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_fails_clearly_while_redis_is_down_and_works_after() {
    let mut redis = redis();
    let url = redis.url();
    let client = Client::builder(&url)
        .retries(1)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("before", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis.kill();
    let err = client
        .enqueue(&probe_job("during", 1))
        .await
        .err()
        .map(|e| e.to_string());
    let err = err.unwrap_or_else(|| panic!("enqueue succeeded with Redis down"));
    assert!(err.starts_with("redis enqueue failed"), "{err}");
    redis.restart().unwrap_or_else(|e| panic!("{e}"));
    // The connection manager reconnects by itself.
    let mut ok = false;
    for _ in 0..50 {
        if client.enqueue(&probe_job("after", 1)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "enqueue did not recover after Redis came back");
}
