//! Destructive commands: the confirmation prompt, --dry-run, --yes, and
//! replay, requeue and run-now leading to jobs actually run by a live
//! `millrace-worker`.

use rexpect::session::spawn_command;

use crate::common::*;

/// Counts that must not move when nothing is supposed to change.
fn counts(env: &Env) -> [serde_json::Value; 6] {
    let s = env.stats(Q);
    [
        "ready",
        "in_flight",
        "scheduled",
        "retrying",
        "dead",
        "consumers",
    ]
    .map(|k| s[k].clone())
}

#[test]
fn dry_run_shows_and_changes_nothing() {
    let env = Env::new();
    seed(&env);
    let before = counts(&env);
    let out = env.run(&["dead", "replay", Q, "--all", "--dry-run"]).ok();
    assert!(
        out.stdout
            .contains("will replay 2 dead jobs of queue \"emails\" (all)"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("dry run: nothing was changed"),
        "{out:?}"
    );
    let out = env
        .run(&["dead", "purge", Q, "--job", "noop", "--dry-run"])
        .ok();
    assert!(out.stdout.contains("will purge 1 dead job"), "{out:?}");
    let out = env
        .run(&["requeue", Q, "--min-idle", "0s", "--dry-run"])
        .ok();
    assert!(
        out.stdout.contains("will requeue 1 pending entry"),
        "{out:?}"
    );
    let out = env
        .run(&["delayed", "run-now", Q, "--all", "--dry-run"])
        .ok();
    assert!(out.stdout.contains("will run 2 delayed jobs"), "{out:?}");
    let v = env.json(&["dead", "purge", Q, "--all", "--dry-run"]);
    assert_eq!(v["matched"], 2);
    assert_eq!(v["done"], 0);
    assert_eq!(v["dry_run"], true);
    assert_eq!(counts(&env), before);
}

#[test]
fn without_a_terminal_or_yes_destructive_commands_refuse() {
    let env = Env::new();
    seed(&env);
    let before = counts(&env);
    for args in [
        &["dead", "purge", Q, "--all"][..],
        &["dead", "replay", Q, "--all"],
        &["requeue", Q, "--min-idle", "0s"],
        &["delayed", "run-now", Q, "--all"],
    ] {
        let line = env.run(args).err();
        assert!(
            line.contains("without confirmation: stdin is not a terminal (pass --yes"),
            "{line}"
        );
    }
    // A piped "y" is not a terminal either: still refused, never hangs.
    let line = env
        .run_with_stdin(&["dead", "purge", Q, "--all"], "y\n")
        .err();
    assert!(line.contains("refusing to purge 2 dead jobs"), "{line}");
    assert_eq!(counts(&env), before);
    let line = env.run(&["dead", "replay", Q]).err();
    assert!(line.contains("say which dead jobs to replay"), "{line}");
}

#[test]
fn the_prompt_on_a_terminal_takes_no_then_yes() {
    let env = Env::new();
    seed(&env);
    let ask = |answer: &str| {
        let mut p = spawn_command(
            env.cmd(&["dead", "purge", Q, "--job", "noop"]),
            Some(20_000),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        p.exp_string("will purge 1 dead job of queue \"emails\" (job \"noop\")")
            .unwrap_or_else(|e| panic!("{e}"));
        p.exp_string("purge 1 dead job? [y/N]")
            .unwrap_or_else(|e| panic!("{e}"));
        p.send_line(answer).unwrap_or_else(|e| panic!("{e}"));
        p.exp_eof().unwrap_or_else(|e| panic!("{e}"))
    };
    let said = ask("n");
    assert!(said.contains("aborted: nothing was changed"), "{said}");
    assert_eq!(env.stats(Q)["dead"], 2);
    let said = ask("y");
    assert!(
        said.contains("purged 1 dead job of queue \"emails\""),
        "{said}"
    );
    let left = env.json(&["dead", "list", Q]);
    assert_eq!(left.as_array().map(Vec::len), Some(1));
    assert_eq!(left[0]["job"], "fail", "only the noop was purged");
}

#[test]
fn replayed_dead_job_runs_again_with_attempts_reset() {
    let env = Env::new();
    let s = seed(&env);
    // One by job id: no prompt needed.
    let out = env.run(&["dead", "replay", Q, &s.dead_noop]).ok().stdout;
    assert!(out.contains("replayed 1 dead job"), "{out}");
    let found = env.json(&["show", Q, &s.dead_noop]);
    let f = &found["found"][0];
    assert_eq!(f["state"], "ready", "{found}");
    assert_eq!(f["attempt"], 1);
    assert!(f["error"].is_null(), "error cleared: {found}");
    // Running it again finds nothing to replay: never a duplicate.
    let line = env.run(&["dead", "replay", Q, &s.dead_noop]).err();
    assert!(line.contains("no dead job"), "{line}");
    let worker = Worker::start(&env, Q, &["--lease", "10m"]);
    worker.wait_ran(&s.dead_noop);
    wait_for("the ready noop to run too", || {
        worker.runs_of(&s.ready) == 1
    });
    assert_eq!(worker.runs_of(&s.dead_noop), 1);
}

#[test]
fn bulk_replay_with_a_filter_moves_only_matches_and_is_idempotent() {
    let env = Env::new();
    seed(&env);
    // Twelve more dead noops whose error names a 503: enough for a scan.
    env.setup(async |conn| {
        let q = millrace_core::Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..12 {
            let e =
                millrace_core::Envelope::new(millrace_core::JobId::new().0, "noop", "{}".into());
            q.enqueue(conn, &[e])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let got = q
                .read(
                    conn,
                    "w1",
                    1,
                    std::time::Duration::from_millis(50),
                    &millrace_core::ReadFrom::New,
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            q.fail(
                conn,
                "w1",
                &got[0].entry_id,
                millrace_core::Failure::Dead,
                "HTTP 503",
                millrace_core::DeadRetention::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let ready_before = env.stats(Q)["ready"].as_u64().unwrap_or(0);
    let v = env.json(&["dead", "replay", Q, "--error-contains", "http 503", "--yes"]);
    assert_eq!(v["matched"], 12, "{v}");
    assert_eq!(v["done"], 12, "{v}");
    let s = env.stats(Q);
    assert_eq!(s["dead"], 2, "the two others stay: {s}");
    assert_eq!(s["ready"].as_u64(), Some(ready_before + 12));
    let again = env.json(&["dead", "replay", Q, "--error-contains", "http 503", "--yes"]);
    assert_eq!(
        again["matched"], 0,
        "a re-run replays nothing twice: {again}"
    );
    assert_eq!(env.stats(Q)["ready"].as_u64(), Some(ready_before + 12));
    let v = env.json(&["dead", "purge", Q, "--all", "--yes"]);
    assert_eq!(v["done"], 2);
    assert_eq!(env.stats(Q)["dead"], 0);
}

#[test]
fn requeued_stuck_entry_runs_on_a_live_worker() {
    let env = Env::new();
    let s = seed(&env);
    // A long lease: the worker's own reclaim will not rescue the entry.
    let worker = Worker::start(&env, Q, &["--lease", "10m"]);
    worker.wait_ran(&s.ready);
    assert_eq!(worker.runs_of(&s.stuck), 0);
    let out = env
        .run(&[
            "requeue",
            Q,
            "--min-idle",
            "1ms",
            "--consumer",
            "ghost",
            "--yes",
        ])
        .ok()
        .stdout;
    assert!(out.contains("will requeue 1 pending entry"), "{out}");
    assert!(
        out.contains("requeued 1 entry of queue \"emails\""),
        "{out}"
    );
    worker.wait_ran(&s.stuck);
    let rows = env.json(&["pending", Q, "--consumer", "ghost"]);
    assert_eq!(rows.as_array().map(Vec::len), Some(0), "{rows}");
}

#[test]
fn requeue_leaves_a_live_workers_running_job_alone() {
    let env = Env::new();
    env.run(&["enqueue", Q, "noop", "{}", "--create"]).ok();
    // Lease 3s: renewed every second, so its idle time stays under 2s.
    let worker = Worker::start(&env, Q, &["--lease", "3s"]);
    let v = env.json(&["enqueue", Q, "sleep", r#"{"ms": 4000}"#]);
    let id = v["job_id"].as_str().unwrap_or_default().to_owned();
    wait_for("the sleep job to be in flight", || {
        env.json(&["pending", Q, "--job", "sleep"])
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    // Watch it run past the requeue threshold: renewals keep it fresh.
    let seen = std::time::Instant::now();
    wait_for("the job to run 2.5s with renewed leases", || {
        let rows = env.json(&["pending", Q, "--job", "sleep"]);
        let idle = rows[0]["idle_ms"].as_u64().unwrap_or(0);
        assert!(idle < 2000, "lease not renewed: {rows}");
        seen.elapsed() >= std::time::Duration::from_millis(2500)
    });
    let v = env.json(&["requeue", Q, "--min-idle", "2s", "--yes"]);
    assert_eq!(v["matched"], 0, "a renewed lease is not stuck: {v}");
    worker.wait_ran(&id);
    assert_eq!(worker.runs_of(&id), 1);
}

#[test]
fn delayed_jobs_run_now_on_a_live_worker() {
    let env = Env::new();
    let s = seed(&env);
    let worker = Worker::start(&env, Q, &["--lease", "10m"]);
    let out = env
        .run(&["delayed", "run-now", Q, &s.scheduled])
        .ok()
        .stdout;
    assert!(out.contains("moved 1 delayed job"), "{out}");
    worker.wait_ran(&s.scheduled);
    let line = env.run(&["delayed", "run-now", Q, "no-such-job"]).err();
    assert!(line.contains("no delayed job no-such-job"), "{line}");
    let v = env.json(&["delayed", "run-now", Q, "--all", "--retrying", "--yes"]);
    assert_eq!(v["matched"], 1);
    assert_eq!(v["done"], 1);
    wait_for("the retried fail job to fail again", || {
        env.stats(Q)["retried"].as_u64().unwrap_or(0) >= 2
    });
}

#[test]
fn bulk_replay_goes_in_batches_and_a_rerun_after_a_partial_one_never_duplicates() {
    let env = Env::new();
    let v = env.json(&["enqueue", "bulk", "noop", "{}", "--create"]);
    let first = v["job_id"].as_str().unwrap_or_default().to_owned();
    // 1,234 dead entries, as fail.lua writes them: more than two batches.
    let mut pipe = redis::pipe();
    for i in 0..1234 {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        pipe.cmd("XADD")
            .arg("millrace:{bulk}:dead")
            .arg("*")
            .arg("v")
            .arg(1)
            .arg("id")
            .arg(format!("job-{i}"))
            .arg("name")
            .arg("noop")
            .arg("payload")
            .arg("{}")
            .arg("attempt")
            .arg(5)
            .arg("error")
            .arg(format!("{parity} failure"))
            .arg("dead_at")
            .arg(1)
            .arg("entry")
            .arg("1-0")
            .ignore();
    }
    let () = pipe
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    // A first, partial run (as if interrupted after some batches) ...
    let v = env.json(&["dead", "replay", "bulk", "--error-contains", "odd", "--yes"]);
    assert_eq!(v["done"], 617, "{v}");
    // ... then the whole thing again.
    let v = env.json(&["dead", "replay", "bulk", "--all", "--yes"]);
    assert_eq!(v["matched"], 617, "{v}");
    assert_eq!(v["done"], 617, "{v}");
    let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("millrace:{bulk}:stream")
        .arg("-")
        .arg("+")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut ids: Vec<String> = rows
        .iter()
        .filter_map(|(_, f)| f.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone()))
        .filter(|id| *id != first)
        .collect();
    assert_eq!(ids.len(), 1234);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1234, "no job replayed twice");
    for (_, f) in &rows {
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("attempt"), Some("1"));
        assert_eq!(get("error"), None);
        assert_eq!(get("dead_at"), None);
    }
    assert_eq!(env.stats("bulk")["dead"], 0);
}

#[test]
fn requeue_filters_by_job_and_drops_entries_deleted_while_pending() {
    let env = Env::new();
    let s = seed(&env);
    // A second stuck entry, a noop, whose fields were deleted while pending.
    let entry: String = redis::cmd("XADD")
        .arg("millrace:{emails}:stream")
        .arg("*")
        .arg("id")
        .arg("gone")
        .arg("name")
        .arg("noop")
        .arg("payload")
        .arg("{}")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    // The ready noop is older: read both, then delete the new one's fields.
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("millrace")
        .arg("ghost")
        .arg("COUNT")
        .arg(2)
        .arg("STREAMS")
        .arg("millrace:{emails}:stream")
        .arg(">")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let _: u64 = redis::cmd("XDEL")
        .arg("millrace:{emails}:stream")
        .arg(&entry)
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = env.json(&["show", Q, &entry]);
    assert_eq!(shown["found"][0]["state"], "pending_deleted", "{shown}");

    let v = env.json(&["requeue", Q, "--min-idle", "0s", "--job", "sleep", "--yes"]);
    assert_eq!(
        (v["matched"].as_u64(), v["done"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(
        env.json(&["show", Q, &s.stuck])["found"][0]["state"],
        "ready"
    );
    let v = env.json(&["requeue", Q, "--min-idle", "0s", "--yes"]);
    assert_eq!(
        v["matched"], 2,
        "the ready noop read by ghost, and the deleted one: {v}"
    );
    assert_eq!(v["done"], 1);
    assert_eq!(v["dropped"], 1);
    assert_eq!(env.stats(Q)["in_flight"], 0);
}
