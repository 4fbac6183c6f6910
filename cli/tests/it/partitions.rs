//! `millrace partitions`: show and set a queue's partition count; `pause`
//! and `resume` of a partitioned queue reach every partition.

use millrace_core::Queue;

use crate::common::*;

fn declared(env: &Env) {
    env.setup(async |c| {
        let q = Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        q.declare(c).await.unwrap_or_else(|e| panic!("{e}"));
    });
}

fn exists(env: &Env, key: &str) -> bool {
    let mut c = env.conn();
    redis::cmd("EXISTS")
        .arg(key)
        .query::<bool>(&mut c)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn partitions_are_set_shown_paused_and_retired() {
    let env = Env::new();
    declared(&env);
    let out = env.run(&["partitions", Q]).ok();
    assert!(out.stdout.contains("is not partitioned"), "{out:#?}");
    let out = env.run(&["partitions", Q, "--set", "3"]).ok();
    assert!(out.stdout.contains("1 → 3 partition(s)"), "{out:#?}");
    // A job in partition 1, as a producer would place it.
    env.setup(async |c| {
        let p = Queue::new(Q)
            .unwrap_or_else(|e| panic!("{e}"))
            .partition(1)
            .unwrap_or_else(|e| panic!("{e}"));
        p.declare(c).await.unwrap_or_else(|e| panic!("{e}"));
        let job = millrace_core::Envelope::new("j1".into(), "noop", "{}".into());
        p.enqueue(c, &[job]).await.unwrap_or_else(|e| panic!("{e}"));
    });
    let v = env.json(&["partitions", Q]);
    assert_eq!(v["count"], 3, "{v}");
    let parts = v["partitions"].as_array().cloned().unwrap_or_default();
    assert_eq!(parts.len(), 3, "{v}");
    assert_eq!(parts[1]["name"], format!("{Q}#1"));
    assert_eq!(parts[1]["ready"], 1, "{v}");
    let table = env.run(&["partitions", Q]).ok();
    assert!(table.stdout.contains(&format!("{Q}#2")), "{table:#?}");
    // `queues` lists each partition and, after them, the queue's total.
    let queues = env.run(&["queues"]).ok();
    let total = queues
        .stdout
        .lines()
        .find(|l| l.contains(&format!("{Q} (total)")))
        .unwrap_or_else(|| panic!("no total row: {queues:#?}"));
    assert!(
        total.contains(" 1 "),
        "the total counts the ready job: {total}"
    );

    // Pause and resume reach every partition.
    let out = env.run(&["pause", Q, "--reason", "deploy"]).ok();
    assert!(out.stdout.contains("paused 3 partition(s)"), "{out:#?}");
    for i in 0..3 {
        assert!(
            exists(&env, &format!("millrace:{{{Q}#{i}}}:paused")),
            "partition {i}"
        );
    }
    env.run(&["resume", Q]).ok();
    for i in 0..3 {
        assert!(
            !exists(&env, &format!("millrace:{{{Q}#{i}}}:paused")),
            "partition {i}"
        );
    }

    // Lowered to 1: the partition that holds a job (registered) is still
    // listed, as retired, and still read by workers.
    env.run(&["partitions", Q, "--set", "1"]).ok();
    let table = env.run(&["partitions", Q]).ok();
    assert!(table.stdout.contains("1 (retired)"), "{table:#?}");
}

#[test]
fn bad_counts_and_partitions_of_partitions_are_refused() {
    let env = Env::new();
    declared(&env);
    for bad in ["0", "257"] {
        let line = env.run(&["partitions", Q, "--set", bad]).err();
        assert!(line.contains("invalid partition count"), "{line}");
    }
    let line = env.run(&["partitions", "nope", "--set", "2"]).err();
    assert!(line.contains("unknown queue"), "{line}");
    env.run(&["partitions", Q, "--set", "2"]).ok();
    env.setup(async |c| {
        let p = Queue::new(&format!("{Q}#0")).unwrap_or_else(|e| panic!("{e}"));
        p.declare(c).await.unwrap_or_else(|e| panic!("{e}"));
    });
    let line = env
        .run(&["partitions", &format!("{Q}#0"), "--set", "2"])
        .err();
    assert!(line.contains("is a partition"), "{line}");
}

#[test]
fn enqueue_places_a_job_in_its_keys_partition() {
    let env = Env::new();
    declared(&env);
    env.run(&["partitions", Q, "--set", "4"]).ok();
    let want = millrace_core::partition::partition_of("customer-1", 4);
    for _ in 0..2 {
        let v = env.json(&["enqueue", Q, "noop", "{}", "--key", "customer-1"]);
        assert_eq!(v["partition"], want, "{v}");
    }
    let mut c = env.conn();
    let len: u64 = redis::cmd("XLEN")
        .arg(format!("millrace:{{{Q}#{want}}}:stream"))
        .query(&mut c)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(len, 2);
    let out = env
        .run(&[
            "enqueue",
            Q,
            "noop",
            "{}",
            "--key",
            "customer-1",
            "--priority",
            "high",
        ])
        .ok();
    assert!(
        out.stdout
            .contains(&format!("queue \"{Q}#{want}\" (lane high)")),
        "{out:#?}"
    );
}

/// `dead list`, `pending` and `delayed list` of a partitioned queue name
/// the partitions that hold what the queue's own listing does not.
#[test]
fn listings_of_a_partitioned_queue_name_the_partitions_that_hold_more() {
    let env = Env::new();
    declared(&env);
    env.run(&["partitions", Q, "--set", "2"]).ok();
    let before = env.run(&["dead", "list", Q]).ok();
    assert!(
        !before.stdout.contains("is partitioned"),
        "nothing held, no hint: {before:#?}"
    );
    env.setup(async |c| {
        let q = Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        let (p0, p1) = (
            q.partition(0).unwrap_or_else(|e| panic!("{e}")),
            q.partition(1).unwrap_or_else(|e| panic!("{e}")),
        );
        for p in [&p0, &p1] {
            p.declare(c).await.unwrap_or_else(|e| panic!("{e}"));
        }
        let job = |id: &str| millrace_core::Envelope::new(id.into(), "noop", "{}".into());
        // Partition 1: one job held by a consumer, two dead letters.
        p1.enqueue(c, &[job("held")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        p1.read(
            c,
            "ghost",
            1,
            std::time::Duration::from_millis(10),
            &millrace_core::ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..2 {
            let _: String = redis::cmd("XADD")
                .arg(&p1.keys().dead)
                .arg("*")
                .arg("id")
                .arg(format!("dead{i}"))
                .arg("name")
                .arg("noop")
                .arg("payload")
                .arg("{}")
                .query_async(c)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        // Partition 0: one job scheduled for later.
        p0.schedule(
            c,
            &job("later"),
            millrace_core::When::In(std::time::Duration::from_secs(3600)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    });
    for (args, line) in [
        (
            &["dead", "list", Q][..],
            format!(
                "its partitions hold 2 dead jobs ({Q}#1: 2); `millrace dead list {Q}#1` lists them"
            ),
        ),
        (
            &["pending", Q],
            format!("its partitions hold 1 pending entry ({Q}#1: 1)"),
        ),
        (
            &["delayed", "list", Q],
            format!("its partitions hold 1 delayed job ({Q}#0: 1)"),
        ),
    ] {
        let out = env.run(args).ok();
        assert!(out.stdout.contains(&line), "{args:?}: {out:#?}");
    }
    // The partition itself lists its own, and names no partitions.
    let own = env.run(&["dead", "list", &format!("{Q}#1")]).ok();
    assert!(own.stdout.contains("dead0"), "{own:#?}");
    assert!(!own.stdout.contains("is partitioned"), "{own:#?}");
}
