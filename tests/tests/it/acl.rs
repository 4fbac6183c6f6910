//! The README's least-privilege ACL users (its `acl-users` block, read by
//! the harness): a producer enqueues, now and later, and cannot delete,
//! trim or acknowledge; a worker runs, retries, dead-letters, promotes,
//! reclaims, reads priority lanes, samples, prunes and shuts down without
//! one denied command.

use std::time::Duration;

use millrace::{Client, EnqueueOptions};
use millrace_core::redis;
use millrace_core::{Envelope, JobId, Queue};
use millrace_tests::{AclUser, RedisServer, readme_acl_users};
use millrace_worker::Worker;

use crate::common::*;

/// A private Redis with the README's users.
fn redis_with_users() -> (RedisServer, Vec<AclUser>) {
    let redis = redis();
    let users = readme_acl_users().unwrap_or_else(|e| panic!("{e}"));
    redis
        .create_users(&users)
        .unwrap_or_else(|e| panic!("the README's ACL lines fail: {e}"));
    (redis, users)
}

fn user<'a>(users: &'a [AclUser], name: &str) -> &'a AclUser {
    users
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("the README has no user {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_enqueues_and_cannot_delete_trim_or_ack() {
    let (redis, users) = redis_with_users();
    let producer = user(&users, "millrace-producer");
    let url = redis.url_as(producer);
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue(&probe_job("now", 1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .enqueue_with(
            &probe_job("later", 1),
            EnqueueOptions::new().delay(Duration::from_secs(60)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Status and results are reads it may do.
    let status = client
        .status("default", "no-such-job")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, millrace::JobStatus::Unknown);
    let result: Option<u64> = client
        .result("default", "no-such-job")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(result, None);
    let mut c = conn(&url).await;
    let (stream, delayed) = ("millrace:{default}:stream", "millrace:{default}:delayed");
    for (what, cmd) in [
        ("del", redis::cmd("DEL").arg(stream).clone()),
        ("xdel", redis::cmd("XDEL").arg(stream).arg("0-1").clone()),
        (
            "xtrim",
            redis::cmd("XTRIM").arg(stream).arg("MAXLEN").arg(0).clone(),
        ),
        (
            "xack",
            redis::cmd("XACK")
                .arg(stream)
                .arg("millrace")
                .arg("0-1")
                .clone(),
        ),
        ("zrem", redis::cmd("ZREM").arg(delayed).arg("x").clone()),
        ("flushall", redis::cmd("FLUSHALL").clone()),
    ] {
        let err = cmd
            .query_async::<redis::Value>(&mut c)
            .await
            .err()
            .unwrap_or_else(|| panic!("the producer ran {what}"));
        assert_eq!(err.code(), Some("NOPERM"), "{what}: {err}");
        assert!(err.to_string().contains(&format!("'{what}'")), "{err}");
    }
    // Nor can it reach keys outside the prefix.
    let err = redis::cmd("XADD")
        .arg("other:stream")
        .arg("*")
        .arg("a")
        .arg("b")
        .query_async::<redis::Value>(&mut c)
        .await
        .err()
        .unwrap_or_else(|| panic!("the producer wrote outside millrace:*"));
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
    let left = left(&mut conn(&redis.url()).await, "default").await;
    assert_eq!((left.stream, left.delayed), (1, 1));
    // Only the commands denied on purpose are in the ACL log.
    let denied = redis
        .acl_denials("millrace-producer")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(denied.len(), 7, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_does_everything_without_a_denied_command() {
    let (redis, users) = redis_with_users();
    let admin = redis.url();
    let producer = Client::connect(&redis.url_as(user(&users, "millrace-producer")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // An entry held by a consumer that died: the worker reclaims it.
    let mut c = conn(&admin).await;
    let queue = Queue::new("default").unwrap_or_else(|e| panic!("{e}"));
    queue
        .declare(&mut c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let held = Envelope::new(
        JobId::new().0,
        "probe",
        serde_json::to_string(&probe_job("reclaimed", 1)).unwrap_or_default(),
    );
    held_by(&mut c, &queue, "ghost", held).await;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&redis.url_as(user(&users, "millrace-worker")));
    config.lease = Duration::from_secs(1);
    config.renew_every = Duration::from_millis(300);
    config.block = Duration::from_millis(400);
    config.sample_every = Duration::from_millis(200);
    config.prune_consumers_after = Duration::from_secs(1);
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    for job in [
        probe_job("ok", 1),
        probe_job("retried", 2),
        Probe {
            permanent: true,
            ..probe_job("dead", 0)
        },
    ] {
        producer
            .enqueue(&job)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    producer
        .enqueue_in(&probe_job("delayed", 1), Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Priority lanes: the worker reads across them (take.lua, XREAD).
    for (tag, p) in [
        ("high", millrace::Priority::High),
        ("low", millrace::Priority::Low),
    ] {
        producer
            .enqueue_with(&probe_job(tag, 1), EnqueueOptions::new().priority(p))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut seen = Vec::new();
    while ![
        "ok",
        "retried",
        "dead",
        "delayed",
        "reclaimed",
        "high",
        "low",
    ]
    .iter()
    .all(|t| seen.iter().any(|(s, _)| s == t))
        || !seen.contains(&("retried".to_owned(), 2))
    {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {seen:?} ran"));
        seen.push((s.tag, s.attempt));
    }
    let one_dead = Left {
        dead: 1,
        ..Left::default()
    };
    wait_left(&c, "default", one_dead).await;
    // The dead consumer is pruned (leave.lua) once idle past 1 s.
    eventually("the ghost consumer to be pruned", || {
        let (mut c, queue) = (c.clone(), queue.clone());
        async move {
            let consumers = millrace_core::inspect::consumers(&mut c, &queue)
                .await
                .unwrap_or_default();
            !consumers.iter().any(|i| i.name == "ghost")
        }
    })
    .await;
    worker.shutdown().await;
    let denied = redis
        .acl_denials("millrace-worker")
        .unwrap_or_else(|e| panic!("{e}"));
    // CONFIG GET (the start-up settings check) is left out on purpose: the
    // worker skips the check when it is denied.
    assert_eq!(denied, ["command config|get"], "the worker was denied more");
    let denied = redis
        .acl_denials("millrace-producer")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(denied.is_empty(), "the producer was denied {denied:?}");
}

/// What the README adds to every user on a Redis Cluster.
const CLUSTER_RULES: [&str; 3] = ["+cluster|slots", "+asking", "+ping"];

/// The README's users on a Redis Cluster, each with the cluster rules the
/// README names, created on every node (ACL is per node): the ops user
/// partitions a queue (placing partitions from the slot map), a producer
/// enqueues by key, later and in a lane, and a worker runs, retries and
/// promotes them across masters: no command denied on any node but the
/// worker's `CONFIG GET` (as on one server: it only checks settings).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_work_on_a_cluster_with_the_cluster_rules() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .unwrap_or_default();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme.contains(&format!("`{}`", CLUSTER_RULES.join(" "))),
        "the README no longer names the cluster rules {CLUSTER_RULES:?}"
    );
    let cluster = crate::cluster::cluster();
    let users: Vec<AclUser> = readme_acl_users()
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|mut u| {
            u.words.extend(CLUSTER_RULES.map(str::to_owned));
            u
        })
        .collect();
    for n in cluster.nodes() {
        n.create_users(&users)
            .unwrap_or_else(|e| panic!("the README's ACL lines fail on a node: {e}"));
    }
    let seeds = |name: &str| {
        let u = user(&users, name);
        cluster
            .nodes()
            .iter()
            .map(|n| n.url_as(u))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ops = millrace_core::connect::Endpoint::new(seeds("millrace-ops"))
        .with_cluster(true)
        .command_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let layout = Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .set_partitions(&mut ops.clone(), 3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(layout.count(), 3);
    let producer = Client::builder(&seeds("millrace-producer"))
        .cluster(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..6 {
        producer
            .enqueue_with(
                &probe_job(&format!("k{i}"), 1),
                EnqueueOptions::new().key(format!("customer-{i}")),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    producer
        .enqueue(&probe_job("retried", 2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    producer
        .enqueue_in(&probe_job("delayed", 1), Duration::from_millis(300))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    producer
        .enqueue_with(
            &probe_job("high", 1),
            EnqueueOptions::new().priority(millrace::Priority::High),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&seeds("millrace-worker"));
    config.redis_cluster = true;
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {seen:?} ran"));
        seen.push((s.tag, s.attempt));
    }
    assert!(seen.contains(&("retried".to_owned(), 2)), "{seen:?}");
    assert!(seen.contains(&("delayed".to_owned(), 1)), "{seen:?}");
    worker.shutdown().await;
    let mut denied = std::collections::BTreeSet::new();
    for n in cluster.nodes() {
        for u in ["millrace-ops", "millrace-producer", "millrace-worker"] {
            for d in n.acl_denials(u).unwrap_or_else(|e| panic!("{e}")) {
                denied.insert(format!("{u}: {d}"));
            }
        }
    }
    denied.remove("millrace-worker: command config|get");
    assert!(denied.is_empty(), "denied on the cluster: {denied:?}");
}
