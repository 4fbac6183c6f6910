//! Transactional enqueue: rollback, commit, options, schedules, bad input.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use millrace::outbox::{self, OutboxError};
use millrace::{EnqueueOptions, Job};
use millrace_core::redis;
use serde::{Deserialize, Serialize};

use crate::common::{Ping, assert_exactly_once, env};

#[tokio::test]
async fn rollback_leaves_no_job_and_commit_yields_exactly_one() {
    let env = env().await;
    let mut committed = Vec::new();
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for n in 0..3 {
        let id = outbox::enqueue(&mut tx, &Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        committed.push(id.0);
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    for n in 10..12 {
        outbox::enqueue(&mut tx, &Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    tx.rollback().await.unwrap_or_else(|e| panic!("{e}"));
    // A transaction dropped without commit rolls back too.
    {
        let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
        outbox::enqueue(&mut tx, &Ping { n: 20 })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    env.drain().await;
    let jobs = env.jobs_in("outbox");
    assert_exactly_once(&jobs, &committed);
    assert_eq!(env.outbox_rows().await, 0, "relayed rows are deleted");
    assert_eq!(
        env.marks("outbox"),
        0,
        "marks are forgotten once the rows are gone"
    );
    let queues: Vec<String> = redis::cmd("SMEMBERS")
        .arg("millrace:queues")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        queues.contains(&"outbox".to_owned()),
        "relayed queues are registered: {queues:?}"
    );
}

#[tokio::test]
async fn options_schedules_and_batches_reach_redis_as_given() {
    let env = env().await;
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let custom = outbox::enqueue_with(
        &mut tx,
        &Ping { n: 1 },
        EnqueueOptions::new()
            .queue("other")
            .max_attempts(3)
            .trace(tp)
            .job_id(millrace::JobId("my-id-1".into())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(custom.0, "my-id-1");
    let later = outbox::enqueue_in(&mut tx, &Ping { n: 2 }, Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let past = outbox::enqueue_at(
        &mut tx,
        &Ping { n: 3 },
        SystemTime::now() - Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let many: Vec<Ping> = (100..300).map(|n| Ping { n }).collect();
    let many_ids = outbox::enqueue_many(&mut tx, &many)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(many_ids.len(), 200);
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    env.drain().await;

    let mut conn = env.conn();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg("millrace:{other}:stream")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(entries.len(), 1);
    let f: HashMap<String, String> = entries[0]
        .1
        .chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    assert_eq!(f["id"], "my-id-1");
    assert_eq!(f["name"], Ping::NAME);
    assert_eq!(f["payload"], r#"{"n":1}"#);
    assert_eq!(f["max_attempts"], "3");
    assert_eq!(f["attempt"], "1");
    assert_eq!(f["trace"], tp);
    assert!(f["enqueued_at"].parse::<u64>().is_ok());

    // Scheduled in an hour: in the delayed set, due about an hour from now.
    let due: f64 = redis::cmd("ZSCORE")
        .arg("millrace:{outbox}:delayed")
        .arg(&later.0)
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("{e}"));
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as f64;
    assert!(
        (due - now_ms - 3_600_000.0).abs() < 60_000.0,
        "due {due}, now {now_ms}"
    );
    // Due in the past: straight to the ready stream, in outbox id order.
    let jobs = env.jobs_in("outbox");
    assert_eq!(jobs.get(&past.0), Some(&1));
    let ids: Vec<String> = {
        let e: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg("millrace:{outbox}:stream")
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("{e}"));
        e.into_iter()
            .filter_map(|(_, f)| f.chunks(2).find(|kv| kv[0] == "id").map(|kv| kv[1].clone()))
            .collect()
    };
    let expected: Vec<String> = std::iter::once(past.0.clone())
        .chain(many_ids.iter().map(|i| i.0.clone()))
        .collect();
    assert_eq!(
        ids, expected,
        "one relay keeps outbox id order within a queue"
    );
}

/// Serializing this fails: JSON object keys must be strings.
#[derive(Debug, Serialize, Deserialize)]
struct Unserializable {
    map: HashMap<(u8, u8), u8>,
}

impl Job for Unserializable {
    const NAME: &'static str = "unserializable";
}

#[derive(Debug, Serialize, Deserialize)]
struct Big {
    blob: String,
}

impl Job for Big {
    const NAME: &'static str = "big";
}

#[tokio::test]
async fn bad_input_is_refused_inside_the_transaction_and_leaves_no_poison_row() {
    let env = env().await;
    let mut tx = env.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));

    let err = outbox::enqueue(
        &mut tx,
        &Unserializable {
            map: HashMap::from([((1, 2), 3)]),
        },
    )
    .await
    .err();
    assert!(
        matches!(err, Some(OutboxError::Serialize { .. })),
        "{err:?}"
    );
    assert!(
        format!("{}", err.unwrap_or_else(|| panic!()))
            .contains("cannot serialize job `unserializable`")
    );

    let err = outbox::enqueue_with(
        &mut tx,
        &Ping { n: 1 },
        EnqueueOptions::new().queue("bad:queue"),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("invalid queue name"), "{err}");

    let err = outbox::enqueue(
        &mut tx,
        &Big {
            blob: "x".repeat(2 << 20),
        },
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("payload too large"), "{err}");

    let err = outbox::enqueue_with(
        &mut tx,
        &Ping { n: 1 },
        EnqueueOptions::new().max_attempts(0),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("max_attempts (0)"), "{err}");

    let err = outbox::enqueue_many_with(
        &mut tx,
        &[Ping { n: 1 }],
        EnqueueOptions::new().delay(Duration::from_secs(1)),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("enqueue_many takes no"), "{err}");

    let err = outbox::enqueue_with(&mut tx, &Ping { n: 1 }, EnqueueOptions::new().unique("k"))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "job `ping` has a unique key: the outbox does not take unique jobs yet; enqueue it with Client"
    );

    // The transaction is still good: nothing was sent to the database.
    let good = outbox::enqueue(&mut tx, &Ping { n: 7 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));

    // Plain SQL is held to the same rules by the table's constraints.
    for (queue, name, payload) in [("a b", "x", "{}"), ("", "x", "{}"), ("q", "", "{}")] {
        let r =
            sqlx::query("INSERT INTO millrace_outbox (queue, name, payload) VALUES ($1, $2, $3)")
                .bind(queue)
                .bind(name)
                .bind(payload)
                .execute(&env.pool)
                .await;
        assert!(r.is_err(), "{queue:?}/{name:?} was accepted");
    }

    env.drain().await;
    assert_exactly_once(&env.jobs_in("outbox"), &[good.0]);
    assert_eq!(env.outbox_rows().await, 0);
}

#[tokio::test]
async fn the_readme_example_runs() {
    let env = env().await;
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--quiet",
                "-p",
                "millrace-postgres",
                "--example",
                "enqueue_in_transaction",
            ])
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap_or_else(|| panic!("no target dir"))
        .join("examples")
        .join("enqueue_in_transaction");
    let out = std::process::Command::new(bin)
        .env("MILLRACE_DATABASE_URL", &env.db_url)
        .env("MILLRACE_REDIS_URL", env.redis.url())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("committed invoice 1, rolled back invoice 2"),
        "{stdout}"
    );
    assert!(stdout.contains("relayed 2 job(s)"), "{stdout}");
    assert_eq!(env.jobs_in("billing").len(), 1);
    assert_eq!(
        env.jobs_in("reminders").len(),
        1,
        "the reminder waits in the delayed set"
    );
}
