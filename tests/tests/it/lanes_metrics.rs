//! Lanes in the sampled gauges: jobs waiting in the high, default and low
//! lanes of a paused queue, seen per lane (`millrace_lane_*`) and summed
//! into the queue's gauges on the worker binary's /metrics; once resumed,
//! every lane drains and its gauges fall to zero.

use millrace::{Client, EnqueueOptions};
use millrace_core::{Priority, Queue};
use millrace_jobs::Noop;

use crate::common::*;
use crate::metrics::{Killed, scrape_until, start_worker, value, wait_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_gauges_count_each_lane_and_the_queue_gauges_sum_them() {
    let redis = redis();
    let url = redis.url();
    let queue = Queue::new("default").unwrap();
    let mut c = conn(&url).await;
    // Paused: the worker samples the queue but claims nothing from it.
    queue.pause(&mut c, Some("lane gauges test")).await.unwrap();
    let client = Client::connect(&url).await.unwrap();
    for (priority, n) in [
        (Priority::High, 3),
        (Priority::Default, 1),
        (Priority::Low, 2),
    ] {
        let jobs = vec![Noop::default(); n];
        client
            .enqueue_many_with(&jobs, EnqueueOptions::new().priority(priority))
            .await
            .unwrap();
    }

    let port = millrace_tests::free_tcp_port().unwrap();
    let _worker = Killed(start_worker(&url, port, &["--queues", "default"]));
    let lane =
        |t: &str, name: &str, lane: &str| value(t, name, &[("queue", "default"), ("lane", lane)]);
    let queue_gauge = |t: &str, name: &str| value(t, name, &[("queue", "default")]);
    let text = tokio::task::spawn_blocking(move || {
        wait_ready(port);
        scrape_until(port, "each lane's ready jobs sampled", |t| {
            lane(t, "millrace_lane_ready", "high") == Some(3.0)
                && lane(t, "millrace_lane_ready", "default") == Some(1.0)
                && lane(t, "millrace_lane_ready", "low") == Some(2.0)
        })
    })
    .await
    .unwrap();
    assert_eq!(
        queue_gauge(&text, "millrace_queue_ready"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        queue_gauge(&text, "millrace_queue_backlog"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        queue_gauge(&text, "millrace_queue_pending"),
        Some(0.0),
        "{text}"
    );
    for l in ["high", "default", "low"] {
        let age = lane(&text, "millrace_lane_oldest_ready_age_seconds", l);
        assert!(age.is_some_and(|a| a >= 0.0), "lane {l}: {age:?}\n{text}");
    }
    // The queue's oldest ready age is the oldest lane's: the high jobs
    // were enqueued first.
    assert_eq!(
        queue_gauge(&text, "millrace_queue_oldest_ready_age_seconds"),
        lane(&text, "millrace_lane_oldest_ready_age_seconds", "high"),
        "{text}"
    );

    queue.set_paused(&mut c, false).await.unwrap();
    tokio::task::spawn_blocking(move || {
        scrape_until(port, "every lane drained and sampled empty", |t| {
            value(t, "millrace_jobs_finished_total", &[("outcome", "success")]) == Some(6.0)
                && ["high", "default", "low"]
                    .iter()
                    .all(|l| lane(t, "millrace_lane_ready", l) == Some(0.0))
                && queue_gauge(t, "millrace_queue_backlog") == Some(0.0)
        })
    })
    .await
    .unwrap();
}
