//! The end-to-end paths on a real local Redis Cluster (three masters,
//! three replicas; `millrace_tests::RedisCluster`): the producer, an
//! in-process worker and worker processes with `--redis-cluster`, queues
//! on different masters.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use millrace::{Client, EnqueueOptions};
use millrace_core::{Conn, JobId};
use millrace_jobs::Sleep;
use millrace_tests::RedisCluster;
use millrace_worker::Worker;

use crate::common::*;
use crate::processes::{read_runs, sigterm, start_worker, wait_exit};

pub fn cluster() -> RedisCluster {
    RedisCluster::start().unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"))
}

pub async fn cluster_conn(cluster: &RedisCluster) -> Conn {
    cluster
        .endpoint()
        .command_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn cluster_client(cluster: &RedisCluster) -> Client {
    Client::builder(&cluster.url())
        .cluster(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn stream(queue: &str) -> String {
    format!("millrace:{{{queue}}}:stream")
}

/// A queue name whose keys live on another master than `default`'s.
fn elsewhere(cluster: &RedisCluster) -> String {
    let home = cluster.master_of(&stream("default"));
    (0..100)
        .map(|i| format!("q{i}"))
        .find(|q| cluster.master_of(&stream(q)) != home)
        .unwrap_or_else(|| panic!("every queue name hashes to one master"))
}

async fn consumers(c: &mut Conn, queue: &str) -> usize {
    let list: Vec<millrace_core::redis::Value> = millrace_core::redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream(queue))
        .arg("millrace")
        .query_async(c)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    list.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_retries_dead_letters_and_delays_flow_through_a_cluster() {
    let cluster = cluster();
    let url = cluster.url();
    let other = elsewhere(&cluster);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.redis_cluster = true;
    config.queues = vec!["default".into(), other.clone()];
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let client = cluster_client(&cluster).await;
    let on = |q: &str| EnqueueOptions::new().queue(q);
    let mut want: HashMap<String, u32> = HashMap::new();
    for i in 0..20 {
        for q in ["default", other.as_str()] {
            let tag = format!("ok-{q}-{i}");
            client
                .enqueue_with(&probe_job(&tag, 1), on(q))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            want.insert(tag, 1);
        }
    }
    for i in 0..5 {
        let tag = format!("retry-{i}");
        client
            .enqueue_with(&probe_job(&tag, 2), on(&other))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        want.insert(tag, 2);
    }
    for i in 0..3 {
        let tag = format!("dead-{i}");
        let job = Probe {
            permanent: true,
            ..probe_job(&tag, 0)
        };
        client
            .enqueue_with(&job, on("default"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        want.insert(tag, 1);
    }
    for i in 0..3 {
        let tag = format!("later-{i}");
        client
            .enqueue_with(
                &probe_job(&tag, 1),
                on(&other).delay(Duration::from_millis(300)),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        want.insert(tag, 1);
    }
    let total: u32 = want.values().sum();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for _ in 0..total {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("attempts stopped at {seen:?}"));
        *seen.entry(s.tag).or_default() += 1;
    }
    assert_eq!(seen, want, "each job ran as often as its outcome asks");
    let c = cluster_conn(&cluster).await;
    wait_left(&c, &other, Left::default()).await;
    let three_dead = Left {
        dead: 3,
        ..Left::default()
    };
    wait_left(&c, "default", three_dead).await;
    let dead = dead_entries(&mut c.clone(), "default").await;
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|d| d.get("error").is_some_and(|e| e.contains("is hopeless"))),
        "{dead:?}"
    );
    let mut queues: Vec<String> = millrace_core::redis::cmd("SMEMBERS")
        .arg("millrace:queues")
        .query_async(&mut c.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    queues.sort();
    let mut expected = vec!["default".to_owned(), other.clone()];
    expected.sort();
    assert_eq!(queues, expected);
    worker.shutdown().await;
    // A clean shutdown leaves both groups, on their two masters.
    assert_eq!(consumers(&mut c.clone(), "default").await, 0);
    assert_eq!(consumers(&mut c.clone(), &other).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_job_is_reclaimed_on_a_cluster() {
    let cluster = cluster();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ra, rb) = (dir.path().join("a"), dir.path().join("b"));
    let flags = [
        "--redis-cluster",
        "--lease",
        "2s",
        "--reclaim-every",
        "200ms",
    ];
    let mut a = start_worker(&url, &ra, &flags);
    let client = cluster_client(&cluster).await;
    let id = client
        .enqueue(&Sleep { ms: 1_000 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let c = cluster_conn(&cluster).await;
    eventually("worker a to hold the job", || {
        let mut c = c.clone();
        async move { left(&mut c, "default").await.pending == 1 }
    })
    .await;
    let mut b = start_worker(&url, &rb, &flags);
    let _ = a.kill(); // SIGKILL, mid-job
    let _ = a.wait();
    eventually("worker b to finish the job", || {
        let rb = rb.clone();
        async move { !read_runs(&[&rb]).is_empty() }
    })
    .await;
    assert_eq!(read_runs(&[&rb]).get(id.as_str()), Some(&1));
    assert!(
        read_runs(&[&ra]).is_empty(),
        "worker a died before finishing"
    );
    wait_left(&c, "default", Left::default()).await;
    // A SIGTERM shuts the cluster worker down cleanly: exit 0, and it
    // leaves the group (only the killed worker's consumer is left).
    assert_eq!(consumers(&mut c.clone(), "default").await, 2);
    sigterm(&b);
    assert!(wait_exit(&mut b, Duration::from_secs(20)).success());
    assert_eq!(consumers(&mut c.clone(), "default").await, 1);
}

/// Enqueues `n` probe jobs on `default`, one at a time, each retried with
/// its own job id until it returns `Ok` (so a failed call never loses a
/// job it may have written: at worst it runs twice). Returns the ids
/// acknowledged and how many calls failed.
async fn produce(client: Client, n: usize, acked: Arc<Mutex<Vec<String>>>) -> usize {
    let mut failed = 0;
    for i in 0..n {
        let id = JobId::new();
        loop {
            let options = EnqueueOptions::new().job_id(id.clone());
            match client
                .enqueue_with(&probe_job(&format!("f{i}"), 1), options)
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    failed += 1;
                    assert!(failed < 1000, "enqueues keep failing: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        acked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(id.0);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    failed
}

/// SIGKILLs the master serving `default` while a producer with
/// durability (`WAIT 1`) enqueues and a worker runs there: the replica
/// takes over, the killed node rejoins as its replica, and every job
/// whose enqueue returned `Ok` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failover_mid_run_loses_no_durably_enqueued_job() {
    const JOBS: usize = 600;
    let mut cluster = cluster();
    let url = cluster.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.redis_cluster = true;
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let client = Client::builder(&url)
        .cluster(true)
        .durability(1, Duration::from_secs(1))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer = tokio::spawn(produce(client, JOBS, acked.clone()));
    let count = |a: &Arc<Mutex<Vec<String>>>| {
        a.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    };
    eventually("a third of the jobs to be enqueued", || {
        let n = count(&acked);
        async move { n >= JOBS / 3 }
    })
    .await;
    let before = count(&acked);
    let key = stream("default");
    let (cluster, killed) = tokio::task::spawn_blocking(move || {
        let killed = cluster.fail_over(&key).unwrap_or_else(|e| panic!("{e}"));
        let promoted = cluster.master_of(&key);
        cluster.rejoin(killed).unwrap_or_else(|e| panic!("{e}"));
        (cluster, (killed, promoted))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(Some(killed.0), killed.1, "a replica took over");
    let failed = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .unwrap_or_else(|_| panic!("the producer did not finish"))
        .unwrap_or_else(|e| panic!("{e}"));
    let want: HashSet<String> = acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    assert_eq!(want.len(), JOBS);
    let mut ran: HashMap<String, u32> = HashMap::new();
    while !want.iter().all(|id| ran.contains_key(id)) {
        let Ok(Some(s)) = tokio::time::timeout(WAIT, rx.recv()).await else {
            let lost = want.iter().filter(|id| !ran.contains_key(*id)).count();
            panic!("{lost} of {JOBS} acknowledged jobs never ran after the failover");
        };
        *ran.entry(s.job_id).or_default() += 1;
    }
    let twice = ran.values().filter(|n| **n > 1).count();
    eprintln!(
        "failover at {before} of {JOBS} jobs: 0 lost, {twice} ran twice, {failed} enqueue calls failed and were retried"
    );
    let c = cluster_conn(&cluster).await;
    wait_left(&c, "default", Left::default()).await;
    worker.shutdown().await;
}

/// A server without replicas cannot confirm: a durable enqueue says so in
/// one line and the job is still there (enqueued on the master); a worker
/// asking for replicas logs the shortfall and still finishes its jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_without_enough_replicas_says_so_and_keeps_the_job() {
    let redis = redis();
    let url = redis.url();
    let client = Client::builder(&url)
        .durability(1, Duration::from_millis(50))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = match client.enqueue(&probe_job("unconfirmed", 1)).await {
        Ok(id) => panic!("{id} was confirmed by a replica that does not exist"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            millrace::EnqueueError::NotReplicated {
                wanted: 1,
                acked: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "enqueued, but only 0 of 1 replica(s) confirmed it within 50ms: enqueue it again with the same job id to be sure it survives a failover"
    );
    let c = conn(&url).await;
    assert_eq!(left(&mut c.clone(), "default").await.stream, 1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.durability = millrace_core::connect::Durability::new(1, Duration::from_millis(20));
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let seen = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the job never ran"));
    assert_eq!(seen.tag, "unconfirmed");
    wait_left(&c, "default", Left::default()).await;
    worker.shutdown().await;
}

/// Priority lanes on a cluster: the lanes of a queue share its slot, so
/// the take script and the blocking wait across them run on one master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_serve_high_first_on_a_cluster() {
    let cluster = cluster();
    let url = cluster.url();
    let client = cluster_client(&cluster).await;
    for (p, tag) in [
        (millrace::Priority::Low, "low"),
        (millrace::Priority::Default, "default"),
        (millrace::Priority::High, "high"),
    ] {
        let jobs: Vec<Probe> = (0..5).map(|i| probe_job(&format!("{tag}{i}"), 1)).collect();
        client
            .enqueue_many_with(&jobs, EnqueueOptions::new().priority(p))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.redis_cluster = true;
    config.concurrency = 1;
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let mut order = Vec::new();
    while order.len() < 15 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {order:?} ran"));
        order.push(
            s.tag
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_owned(),
        );
    }
    let want: Vec<&str> = ["high"; 5]
        .into_iter()
        .chain(["default"; 5])
        .chain(["low"; 5])
        .collect();
    assert_eq!(order, want);
    // A new high job while the worker waits wakes its blocking wait.
    client
        .enqueue_with(
            &probe_job("late", 1),
            EnqueueOptions::new().priority(millrace::Priority::High),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = tokio::time::timeout(WAIT, rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the late high job never ran"));
    assert_eq!(s.tag, "late");
    worker.shutdown().await;
}

/// A partitioned queue on a cluster: its 8 partitions are placed 3/3/2
/// over the masters (the plain labels `0..8` of `default` would be 4/2/2),
/// the producer spreads jobs over them and one worker reads
/// them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_queue_spreads_over_masters_and_is_read_whole() {
    let cluster = cluster();
    let url = cluster.url();
    let mut c = cluster_conn(&cluster).await;
    let layout = millrace_core::Queue::new("default")
        .unwrap_or_else(|e| panic!("{e}"))
        .set_partitions(&mut c, 8)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let labels = layout.labels().to_vec();
    assert_eq!(labels.len(), 8);
    let mut per_master: std::collections::HashMap<usize, usize> = Default::default();
    for &l in &labels {
        let key = stream(&format!("default#{l}"));
        // The slot the layout was computed with is the server's.
        let slot: u16 = millrace_core::redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            slot,
            millrace_core::partition::layout::partition_slot("default", l)
        );
        let m = cluster
            .master_of(&key)
            .unwrap_or_else(|| panic!("no master serves {key}"));
        *per_master.entry(m).or_default() += 1;
    }
    let mut counts: Vec<usize> = per_master.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        vec![2, 3, 3],
        "8 partitions over 3 masters: {labels:?}"
    );
    let client = cluster_client(&cluster).await;
    for i in 0..80 {
        client
            .enqueue(&probe_job(&format!("p{i}"), 1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for &l in &labels {
        let len: u64 = millrace_core::redis::cmd("XLEN")
            .arg(stream(&format!("default#{l}")))
            .query_async(&mut c)
            .await
            .unwrap_or(0);
        assert_eq!(len, 10, "partition {l}");
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = fast_config(&url);
    config.redis_cluster = true;
    let worker =
        spawn(Worker::builder(config).register(move |job: Probe, ctx| probe(job, ctx, tx.clone())));
    let mut seen = HashSet::new();
    while seen.len() < 80 {
        let s = tokio::time::timeout(WAIT, rx.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("only {} of 80 ran", seen.len()));
        seen.insert(s.tag);
    }
    worker.shutdown().await;
}
