//! Lanes in the CLI: `enqueue --priority`, the per-lane rows of `queues`,
//! the LANE column and `lane` field of the listings, and show, cancel,
//! requeue, run-now and dead replay on jobs in a `high` or `low` lane. No
//! worker reads lanes here: entries go to pending with a direct read of
//! the lane's stream.

use std::time::Duration;

use millrace_core::queue::When;
use millrace_core::{DeadRetention, Envelope, Failure, JobId, Priority, Queue, ReadFrom};

use crate::common::*;

const L: &str = "orders";

/// Jobs of queue [`L`] in its lanes.
struct Laned {
    /// A `noop` ready in the high lane.
    high_ready: String,
    /// A `sleep` of the high lane held by "ghost".
    high_stuck: String,
    /// A `noop` ready in the default lane.
    plain: String,
    /// A `sleep` of the low lane scheduled an hour from now.
    low_later: String,
    /// A `fail` of the high lane, dead-lettered.
    high_dead: String,
}

fn job(name: &str, lane: Priority) -> Envelope {
    let mut e = Envelope::new(JobId::new().0, name, "{}".into());
    e.priority = lane;
    e
}

fn seed_lanes(env: &Env) -> Laned {
    env.setup(async |conn| {
        let q = Queue::new(L).unwrap_or_else(|e| panic!("{e}"));
        q.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let high = q.lane(Priority::High);
        high.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let mut take = async |e: &Envelope, consumer: &str| {
            high.enqueue(conn, std::slice::from_ref(e))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let got = high
                .read(conn, consumer, 1, Duration::from_millis(50), &ReadFrom::New)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            got[0].entry_id.clone()
        };
        let stuck = job("sleep", Priority::High);
        take(&stuck, "ghost").await;
        let dead = job("fail", Priority::High);
        let entry = take(&dead, "w1").await;
        high.fail(
            conn,
            "w1",
            &entry,
            Failure::Dead,
            "bad address",
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let ready = job("noop", Priority::High);
        high.enqueue(conn, std::slice::from_ref(&ready))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let plain = job("noop", Priority::Default);
        q.enqueue(conn, std::slice::from_ref(&plain))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let later = job("sleep", Priority::Low);
        q.lane(Priority::Low)
            .schedule(conn, &later, When::In(Duration::from_secs(3600)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Laned {
            high_ready: ready.id,
            high_stuck: stuck.id,
            plain: plain.id,
            low_later: later.id,
            high_dead: dead.id,
        }
    })
}

/// The header cells and the rows (split on whitespace) of a table.
fn table(out: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = out.lines();
    let header = lines
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let rows = lines
        .filter(|l| !l.starts_with('('))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn enqueue_takes_a_priority_and_refuses_a_bad_one() {
    let env = Env::new();
    let v = env.json(&["enqueue", L, "noop", "{}", "--create", "--priority", "high"]);
    assert_eq!(v["lane"], "high", "{v}");
    let id = v["job_id"].as_str().unwrap_or_default().to_owned();
    let out = env
        .run(&[
            "enqueue",
            L,
            "noop",
            "{}",
            "--priority",
            "LOW",
            "--in",
            "10m",
        ])
        .ok()
        .stdout;
    assert!(out.contains("on queue \"orders\" (lane low)"), "{out}");
    let v = env.json(&["enqueue", L, "noop", "{}"]);
    assert_eq!(v["lane"], "default", "{v}");
    let line = env
        .run(&["enqueue", L, "noop", "{}", "--priority", "urgent"])
        .err();
    assert_eq!(
        line,
        "error: invalid priority \"urgent\": use high, default or low"
    );

    let s = env.stats(L);
    assert_eq!(
        (s["ready"].as_u64(), s["scheduled"].as_u64()),
        (Some(2), Some(1))
    );
    let lanes: Vec<(String, u64, u64)> = s["lanes"]
        .as_array()
        .unwrap_or_else(|| panic!("{s}"))
        .iter()
        .map(|l| {
            (
                l["lane"].as_str().unwrap_or_default().to_owned(),
                l["ready"].as_u64().unwrap_or(99),
                l["delayed"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        lanes,
        [
            ("high".to_owned(), 1, 0),
            ("default".to_owned(), 1, 0),
            ("low".to_owned(), 0, 1)
        ]
    );
    let shown = env.json(&["show", L, &id]);
    assert_eq!(shown["found"][0]["state"], "ready");
    assert_eq!(shown["found"][0]["lane"], "high");
    let out = env.run(&["show", L, &id]).ok().stdout;
    assert!(out.lines().any(|l| l == "lane      high"), "{out}");
}

#[test]
fn queues_add_a_row_per_lane_only_for_queues_with_lanes() {
    let env = Env::new();
    seed(&env);
    seed_lanes(&env);
    let (header, rows) = table(&env.run(&["queues"]).ok().stdout);
    assert_eq!(header.len(), 12, "{header:?}");
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        [
            "emails",
            "orders",
            "orders:high",
            "orders:default",
            "orders:low"
        ]
    );
    // orders: 2 ready (high, default), 1 in flight, 1 scheduled, 1 dead.
    assert_eq!(
        rows[1][..6],
        ["orders", "2", "1", "1", "0", "1"],
        "{rows:?}"
    );
    assert_eq!(rows[2][..4], ["orders:high", "1", "1", "0"], "{rows:?}");
    assert_eq!(rows[3][..4], ["orders:default", "1", "0", "0"], "{rows:?}");
    assert_eq!(rows[4][..4], ["orders:low", "0", "0", "1"], "{rows:?}");
    assert_eq!(rows[4][4..7], ["-", "-", "-"], "{rows:?}");
    let emails = env.stats(Q);
    assert_eq!(
        emails["lanes"].as_array().map(Vec::len),
        Some(1),
        "{emails}"
    );
}

#[test]
fn listings_show_the_lane_where_the_queue_has_lanes() {
    let env = Env::new();
    seed(&env);
    let s = seed_lanes(&env);

    let (header, rows) = table(&env.run(&["pending", L]).ok().stdout);
    assert_eq!(header[..3], ["ENTRY", "LANE", "JOB ID"], "{header:?}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][1..3], ["high".to_owned(), s.high_stuck.clone()]);
    let v = env.json(&["pending", L]);
    assert_eq!(v[0]["lane"], "high", "{v}");
    let (header, _) = table(&env.run(&["pending", Q]).ok().stdout);
    assert!(!header.iter().any(|h| h == "LANE"), "{header:?}");

    let (header, rows) = table(&env.run(&["ready", "list", L]).ok().stdout);
    assert_eq!(header[..3], ["ENTRY", "LANE", "JOB ID"], "{header:?}");
    let ready: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r[1].as_str(), r[2].as_str()))
        .collect();
    assert_eq!(
        ready,
        [
            ("high", s.high_ready.as_str()),
            ("default", s.plain.as_str())
        ]
    );
    let v = env.json(&["ready", "list", L]);
    assert_eq!(v[1]["lane"], "default", "{v}");

    let (header, rows) = table(&env.run(&["delayed", "list", L]).ok().stdout);
    assert_eq!(header[..2], ["JOB ID", "LANE"], "{header:?}");
    assert_eq!(rows[0][..2], [s.low_later.clone(), "low".to_owned()]);
    let v = env.json(&["delayed", "list", L]);
    assert_eq!(v[0]["lane"], "low", "{v}");
    let (header, _) = table(&env.run(&["delayed", "list", Q]).ok().stdout);
    assert!(!header.iter().any(|h| h == "LANE"), "{header:?}");

    let v = env.json(&["dead", "list", L]);
    assert_eq!(v[0]["job_id"], s.high_dead.as_str(), "{v}");
    assert_eq!(v[0]["lane"], "high", "{v}");
}

#[test]
fn fixes_work_on_jobs_in_the_high_and_low_lanes() {
    let env = Env::new();
    let s = seed_lanes(&env);
    let lane_of = |id: &str| {
        let v = env.json(&["show", L, id]);
        (
            v["found"][0]["state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            v["found"][0]["lane"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    assert_eq!(lane_of(&s.high_stuck), ("in_flight".into(), "high".into()));

    let v = env.json(&["requeue", L, "--min-idle", "0s", "--yes"]);
    assert_eq!(
        (v["matched"].as_u64(), v["done"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(lane_of(&s.high_stuck), ("ready".into(), "high".into()));

    let v = env.json(&["delayed", "run-now", L, &s.low_later]);
    assert_eq!(v["done"], 1, "{v}");
    assert_eq!(lane_of(&s.low_later), ("ready".into(), "low".into()));
    let line = env.run(&["delayed", "run-now", L, &s.low_later]).err();
    assert!(line.contains("no delayed job"), "{line}");

    let v = env.json(&["dead", "replay", L, &s.high_dead]);
    assert_eq!(v["done"], 1, "{v}");
    assert_eq!(lane_of(&s.high_dead), ("ready".into(), "high".into()));

    let v = env.json(&["cancel", L, &s.high_ready, "--yes"]);
    assert_eq!(v["was"], "ready", "{v}");
    let line = env.run(&["cancel", L, &s.high_ready, "--yes"]).err();
    assert!(line.contains("already finished (cancelled"), "{line}");
    let s2 = env.stats(L);
    assert_eq!(s2["lanes"][0]["ready"], 2, "{s2}");
    assert_eq!(s2["lanes"][2]["ready"], 1, "{s2}");
}

#[test]
fn run_now_all_moves_delayed_jobs_of_every_lane() {
    let env = Env::new();
    let s = seed_lanes(&env);
    env.run(&["enqueue", L, "noop", "{}", "--in", "1h"]).ok();
    let v = env.json(&["delayed", "run-now", L, "--all", "--yes"]);
    assert_eq!(
        (v["matched"].as_u64(), v["done"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let v = env.json(&["show", L, &s.low_later]);
    assert_eq!(v["found"][0]["lane"], "low", "{v}");
    assert_eq!(env.stats(L)["scheduled"], 0);
}

#[test]
fn lanes_work_on_a_cluster() {
    let env = Env::cluster();
    let s = seed_lanes(&env);
    let (_, rows) = table(&env.run(&["queues"]).ok().stdout);
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        names,
        ["orders", "orders:high", "orders:default", "orders:low"]
    );
    // The replay script names every lane's stream and the lanes set: one
    // slot, by the queue's hash tag.
    let v = env.json(&["dead", "replay", L, &s.high_dead]);
    assert_eq!(v["done"], 1, "{v}");
    let v = env.json(&["show", L, &s.high_dead]);
    assert_eq!(v["found"][0]["lane"], "high", "{v}");
    let v = env.json(&["delayed", "run-now", L, &s.low_later]);
    assert_eq!(v["done"], 1, "{v}");
    let v = env.json(&["cancel", L, &s.low_later, "--yes"]);
    assert_eq!(v["was"], "ready", "{v}");
    let v = env.json(&["requeue", L, "--min-idle", "0s", "--yes"]);
    assert_eq!(v["done"], 1, "{v}");
    let v = env.json(&["enqueue", L, "noop", "{}", "--priority", "low"]);
    assert_eq!(v["lane"], "low", "{v}");
    let st = env.stats(L);
    assert_eq!(st["lanes"][0]["ready"], 3, "{st}");
    assert_eq!(st["lanes"][2]["ready"], 1, "{st}");
}
