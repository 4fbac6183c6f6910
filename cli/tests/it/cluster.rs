//! The CLI on a local Redis Cluster (`MILLRACE_REDIS_CLUSTER=1`, every
//! node a seed): reads, fixes and enqueues across queues on different
//! masters, and a worker process with `--redis-cluster` runs the jobs.

use crate::common::*;

#[test]
fn the_cli_reads_fixes_and_enqueues_on_a_cluster() {
    let env = Env::cluster();
    let s = seed(&env);
    let st = env.stats(Q);
    assert_eq!(
        [
            &st["ready"],
            &st["in_flight"],
            &st["scheduled"],
            &st["retrying"],
            &st["dead"]
        ],
        [1, 1, 1, 1, 2],
        "{st}"
    );
    assert_eq!(
        env.json(&["dead", "list", Q]).as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        env.json(&["show", Q, &s.stuck])["found"][0]["state"],
        "in_flight"
    );
    // Queues spread over the masters by name: a dozen new ones certainly
    // land on more than one, and `queues` lists them all.
    for i in 0..12 {
        env.run(&["enqueue", &format!("billing{i}"), "noop", "{}", "--create"])
            .ok();
    }
    for i in 0..12 {
        assert_eq!(env.stats(&format!("billing{i}"))["ready"], 1);
    }
    env.run(&["dead", "replay", Q, &s.dead_noop]).ok();
    env.run(&["pause", Q, "--reason", "cluster test"]).ok();
    assert_eq!(env.stats(Q)["paused"], true);
    env.run(&["resume", Q]).ok();
    let st = env.stats(Q);
    assert_eq!(
        (&st["dead"], &st["ready"], &st["paused"]),
        (&1.into(), &2.into(), &false.into())
    );
    // Partitions are placed evenly over the three masters (slots split
    // 0-5460, 5461-10922, 10923-16383 by `redis-cli --cluster create`),
    // and the table shows each one's slot.
    env.run(&["enqueue", "spread", "noop", "{}", "--create"])
        .ok();
    env.run(&["partitions", "spread", "--set", "6"]).ok();
    let v = env.json(&["partitions", "spread"]);
    let mut per_master = [0; 3];
    let mut per_node = std::collections::HashMap::new();
    for p in v["partitions"].as_array().cloned().unwrap_or_default() {
        let slot = p["slot"].as_u64().unwrap_or(u64::MAX);
        per_master[usize::from(slot > 5460) + usize::from(slot > 10922)] += 1;
        *per_node
            .entry(p["node"].as_str().unwrap_or("none").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(per_master, [2, 2, 2], "{v}");
    assert_eq!(per_node.len(), 3, "{v}");
    assert!(per_node.values().all(|n| *n == 2), "{v}");
    let table = env.run(&["partitions", "spread"]).ok().stdout;
    assert!(
        table.contains("SLOT") && table.contains("NODE") && table.contains("127.0.0.1:"),
        "no SLOT and NODE columns on a cluster: {table}"
    );
    // A worker process on the cluster runs the ready and replayed jobs.
    let w = Worker::start(&env, &format!("{Q},billing0"), &["--redis-cluster"]);
    w.wait_ran(&s.ready);
    w.wait_ran(&s.dead_noop);
    wait_for("billing0 to empty", || env.stats("billing0")["ready"] == 0);
}

#[test]
fn several_urls_without_cluster_mode_are_refused_in_one_line() {
    let env = Env::new();
    let two = format!("{},{}", env.url, env.url);
    let line = env.run(&["--redis-url", &two, "queues"]).err();
    assert!(
        line.contains(
            "several URLs are Redis Cluster seeds: turn on cluster mode (--redis-cluster"
        ),
        "{line}"
    );
}
