//! The relay inside `millrace-worker` (`--database-url`), and what the
//! standalone relay logs when Redis goes away and comes back.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use millrace::{EnqueueOptions, Job, outbox};
use serde::{Deserialize, Serialize};

use crate::common::{env, eventually};

/// The catalogue's no-op job, as the worker binary knows it.
#[derive(Debug, Serialize, Deserialize)]
struct Noop {}

impl Job for Noop {
    const NAME: &'static str = "noop";
}

#[tokio::test]
async fn the_worker_binary_relays_the_outbox_and_exports_its_metrics() {
    let env = env().await;
    let bin = millrace_tests::workspace_bin("millrace-worker", "millrace-worker")
        .unwrap_or_else(|e| panic!("{e}"));
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let mut worker = Command::new(bin)
        .args([
            "--redis-url",
            &env.redis.url(),
            "--queues",
            "jobs",
            "--block",
            "500ms",
        ])
        .args([
            "--metrics-addr",
            "127.0.0.1",
            "--metrics-port",
            &port.to_string(),
        ])
        .args([
            "--database-url",
            &env.db_url,
            "--database-migrate",
            "--relay-poll",
            "5s",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..10 {
        outbox::enqueue_with(&mut tx, &Noop {}, EnqueueOptions::new().queue("jobs"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    eventually("the worker to run the outbox's jobs", || async {
        let processed: Option<u64> = millrace_core::redis::cmd("HGET")
            .arg("millrace:{jobs}:stats")
            .arg("processed")
            .query(&mut env.conn())
            .unwrap_or_else(|e| panic!("{e}"));
        processed == Some(10)
    })
    .await;
    assert_eq!(env.outbox_rows().await, 0);
    let metrics = metrics_text(port);
    assert!(
        metrics.contains(r#"millrace_outbox_relayed_total{queue="jobs"} 10"#),
        "{metrics}"
    );
    for name in [
        "millrace_outbox_relay_lag_seconds_bucket",
        "millrace_outbox_oldest_age_seconds",
        "millrace_outbox_relay_errors_total{kind=\"redis\"} 0",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(worker.id().to_string())
        .status();
    let status = worker.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}");
}

fn metrics_text(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{e}"));
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut body = String::new();
    s.read_to_string(&mut body)
        .unwrap_or_else(|e| panic!("{e}"));
    body
}

#[tokio::test]
async fn the_relay_logs_one_line_when_redis_goes_and_one_when_it_is_back() {
    let mut env = env().await;
    let bin =
        millrace_tests::workspace_bin("millrace-cli", "millrace").unwrap_or_else(|e| panic!("{e}"));
    let log = std::env::temp_dir().join(format!("millrace-relay-log-{}", fastrand::u64(..)));
    let mut relay = Command::new(bin)
        .args([
            "relay",
            "--redis-url",
            &env.redis.url(),
            "--database-url",
            &env.db_url,
            "--poll",
            "100ms",
        ])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}")))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the relay to start", || async {
        read().contains("outbox relay started")
    })
    .await;
    env.redis.kill();
    // A job committed while Redis is down waits in the outbox.
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let id = outbox::enqueue(&mut tx, &crate::common::Ping { n: 1 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let since = Instant::now();
    while since.elapsed() < Duration::from_secs(4) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.redis.restart().unwrap_or_else(|e| panic!("{e}"));
    eventually("the relay to say Redis is back", || async {
        read().contains("redis is back")
    })
    .await;
    eventually("the job to be relayed", || async {
        env.outbox_rows().await == 0
    })
    .await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(relay.id().to_string())
        .status();
    let _ = relay.wait();
    let text = read();
    let _ = std::fs::remove_file(&log);
    let down: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("retrying with backoff"))
        .collect();
    assert_eq!(
        down.len(),
        1,
        "one line per state change, not one per retry:\n{text}"
    );
    assert!(
        down[0].contains("redis") || down[0].contains("Redis"),
        "{}",
        down[0]
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("is back after")).count(),
        1,
        "{text}"
    );
    assert_eq!(env.jobs_in("outbox").get(&id.0), Some(&1));
}
