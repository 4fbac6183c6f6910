//! `millrace show` of a finished job and `millrace history`: read from the
//! history stream a real worker writes.

use crate::common::*;

#[test]
fn show_of_a_finished_job_says_how_and_where_it_finished() {
    let env = Env::new();
    let s = seed(&env);
    let v = env.json(&["enqueue", Q, "noop", "{}"]);
    let id = v["job_id"].as_str().unwrap_or_default().to_owned();
    let w = Worker::start(&env, Q, &[]);
    w.wait_ran(&id);
    // The ack (and its history record) follows the run.
    wait_for("the history record", || {
        env.run(&["show", Q, &id]).code == 0
    });
    let shown = env.json(&["show", Q, &id]);
    let found = &shown["found"][0];
    assert_eq!(found["state"], "succeeded", "{shown}");
    assert_eq!(found["name"], "noop");
    assert_eq!(found["finished"]["attempts"], 1);
    assert!(found["finished"]["took_ms"].is_u64(), "{shown}");
    let consumer = found["finished"]["consumer"].as_str().unwrap_or_default();
    assert!(!consumer.is_empty(), "{shown}");
    let human = env.run(&["show", Q, &id]).ok().stdout;
    assert!(human.contains("succeeded at "), "{human}");
    assert!(
        human.contains(&format!(" on {consumer} (1 attempt, took ")),
        "{human}"
    );

    // A dead job: the dead-letter stream's record (with its payload).
    let dead = env.json(&["show", Q, &s.dead_noop]);
    assert_eq!(dead["found"].as_array().map(Vec::len), Some(1), "{dead}");
    assert_eq!(dead["found"][0]["state"], "dead");
    // Purged from the dead-letter stream, the history still knows it.
    env.run(&["dead", "purge", Q, "--all", "--yes"]).ok();
    let human = env.run(&["show", Q, &s.dead_noop]).ok().stdout;
    assert!(human.contains("dead at "), "{human}");
    assert!(human.contains(" on w1 (1 attempt)"), "{human}");
    assert!(
        human.contains("error     HTTP 500 from upstream"),
        "{human}"
    );

    // Never enqueued: the error names the history among the places.
    let err = env.run(&["show", Q, "no-such-job"]).err();
    assert!(err.contains("the history of finished jobs"), "{err}");
}

#[test]
fn history_lists_finished_jobs_newest_first_and_filters_by_outcome() {
    let env = Env::new();
    let s = seed(&env);
    let all = env.json(&["history", Q]);
    let rows = all.as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 2, "{all}");
    // Newest first: dead_fail was dead-lettered after dead_noop.
    assert_eq!(rows[0]["job_id"], s.dead_fail.as_str());
    assert_eq!(rows[1]["job_id"], s.dead_noop.as_str());
    assert_eq!(rows[0]["outcome"], "dead");
    assert_eq!(rows[0]["error"], "bad address");
    assert_eq!(rows[0]["consumer"], "w1");
    let one = env.json(&["history", Q, "--limit", "1"]);
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    let none = env.json(&["history", Q, "--outcome", "succeeded"]);
    assert_eq!(none.as_array().map(Vec::len), Some(0), "{none}");
    let human = env.run(&["history", Q]).ok().stdout;
    assert!(human.starts_with("FINISHED"), "{human}");
    assert!(human.contains("bad address"), "{human}");
    let empty = env
        .run(&["history", Q, "--outcome", "cancelled"])
        .ok()
        .stdout;
    assert!(empty.contains("no finished jobs"), "{empty}");
    let err = env.run(&["history", Q, "--outcome", "won"]);
    assert_eq!(err.code, 2, "clap refuses an unknown outcome: {err:?}");
    let err = env.run(&["history", "nope"]).err();
    assert!(err.contains("unknown queue \"nope\""), "{err}");
    let help = env.run(&["history", "--help"]).ok().stdout;
    assert!(help.contains("--history-max-len"), "{help}");
    assert!(help.contains("--outcome"), "{help}");
}
