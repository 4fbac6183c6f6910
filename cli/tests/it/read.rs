//! Read commands: queues, pending, show, dead list/show, delayed list,
//! consumers, in tables and JSON, with each filter.

use crate::common::*;

#[test]
fn queues_counts_every_state_in_table_and_json() {
    let env = Env::new();
    seed(&env);
    let s = env.stats(Q);
    assert_eq!(s["ready"], 1, "{s}");
    assert_eq!(s["in_flight"], 1, "{s}");
    assert_eq!(s["scheduled"], 1, "{s}");
    assert_eq!(s["retrying"], 1, "{s}");
    assert_eq!(s["dead"], 2, "{s}");
    assert_eq!(s["consumers"], 2, "{s}");
    assert_eq!(s["paused"], false, "{s}");
    assert_eq!(s["retried"], 1, "{s}");
    assert_eq!(s["dead_lettered"], 2, "{s}");
    assert!(s["lag_ms"].is_u64() && s["oldest_ms"].is_u64(), "{s}");

    let out = env.run(&["queues"]).ok().stdout;
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "QUEUE",
            "READY",
            "IN FLIGHT",
            "DELAYED",
            "RETRYING",
            "DEAD",
            "CONSUMERS",
            "LAG",
            "OLDEST",
            "PAUSED",
            "PROCESSED",
            "FAILED"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..7], ["emails", "1", "1", "1", "1", "2", "2"], "{out}");
    assert_eq!(row[9..], ["no", "0", "3"], "{out}");
    assert!(!out.contains('\x1b'), "no colour when piped: {out:?}");
}

#[test]
fn pending_lists_the_stuck_entry_and_filters_it() {
    let env = Env::new();
    let s = seed(&env);
    let rows = env.json(&["pending", Q]);
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    let p = &rows[0];
    assert_eq!(p["entry_id"], s.stuck_entry.as_str());
    assert_eq!(p["job_id"], s.stuck.as_str());
    assert_eq!(p["job"], "sleep");
    assert_eq!(p["consumer"], "ghost");
    assert_eq!(p["deliveries"], 1);
    assert_eq!(p["deleted"], false);

    let table = env.run(&["pending", Q]).ok().stdout;
    assert!(table.starts_with("ENTRY"), "{table}");
    assert!(
        table.contains(&s.stuck_entry) && table.contains("ghost"),
        "{table}"
    );

    let count = |args: &[&str]| {
        let mut a = vec!["pending", Q];
        a.extend_from_slice(args);
        env.json(&a).as_array().map_or(0, Vec::len)
    };
    assert_eq!(count(&["--consumer", "ghost"]), 1);
    assert_eq!(count(&["--consumer", "w1"]), 0);
    assert_eq!(count(&["--job", "sleep"]), 1);
    assert_eq!(count(&["--job", "noop"]), 0);
    assert_eq!(count(&["--min-idle", "1h"]), 0);
    assert_eq!(count(&["--min-idle", "1ms"]), 1);
    assert_eq!(count(&["--limit", "0"]), 0);
    let none = env.run(&["pending", Q, "--min-idle", "5m"]).ok().stdout;
    assert!(
        none.contains("no pending entries match") && none.contains("1 pending in all"),
        "{none}"
    );
}

#[test]
fn show_finds_a_job_in_every_state() {
    let env = Env::new();
    let s = seed(&env);
    let state = |id: &str| {
        let v = env.json(&["show", Q, id]);
        assert_eq!(v["found"].as_array().map(Vec::len), Some(1), "{v}");
        v["found"][0].clone()
    };
    assert_eq!(state(&s.ready)["state"], "ready");
    let stuck = state(&s.stuck);
    assert_eq!(stuck["state"], "in_flight");
    assert_eq!(stuck["consumer"], "ghost");
    assert_eq!(stuck["payload"]["ms"], 10);
    assert_eq!(state(&s.stuck_entry)["job_id"], s.stuck.as_str());
    let retrying = state(&s.retrying);
    assert_eq!(retrying["state"], "retrying");
    assert_eq!(retrying["attempt"], 2);
    assert_eq!(retrying["error"], "upstream timeout (attempt 1)");
    assert!(retrying["due_at_ms"].is_u64());
    assert_eq!(state(&s.scheduled)["state"], "scheduled");
    let dead = state(&s.dead_noop);
    assert_eq!(dead["state"], "dead");
    assert_eq!(dead["error"], "HTTP 500 from upstream");

    let human = env.run(&["show", Q, &s.stuck]).ok().stdout;
    assert!(
        human.contains("in flight: held by consumer ghost"),
        "{human}"
    );
    assert!(
        human.contains("payload\n  {\n    \"ms\": 10\n  }"),
        "pretty payload: {human}"
    );
    let human = env.run(&["show", Q, &s.retrying]).ok().stdout;
    assert!(human.contains("retrying: runs in 59m"), "{human}");
    assert!(
        human.contains("error     upstream timeout (attempt 1)"),
        "{human}"
    );
}

#[test]
fn dead_list_and_show_with_each_filter() {
    let env = Env::new();
    let s = seed(&env);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["dead", "list", Q];
        a.extend_from_slice(args);
        env.json(&a)
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["job_id"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        ids(&[]),
        [s.dead_fail.as_str(), s.dead_noop.as_str()],
        "newest first"
    );
    assert_eq!(ids(&["--job", "noop"]), [s.dead_noop.as_str()]);
    assert_eq!(
        ids(&["--error-contains", "http 500"]),
        [s.dead_noop.as_str()]
    );
    assert_eq!(
        ids(&["--error-contains", "nothing like it"]),
        Vec::<&str>::new()
    );
    assert_eq!(ids(&["--since", "1h"]).len(), 2);
    assert_eq!(ids(&["--since", "2999-01-01T00:00:00Z"]).len(), 0);
    assert_eq!(ids(&["--limit", "1"]), [s.dead_fail.as_str()]);

    let rows = env.json(&["dead", "list", Q]);
    let r = &rows[1];
    assert_eq!(r["job"], "noop");
    assert_eq!(r["attempt"], 1);
    assert!(
        r["dead_at_ms"].is_u64() && r["original_entry_id"].is_string(),
        "{r}"
    );

    let table = env.run(&["dead", "list", Q]).ok().stdout;
    assert!(
        table.starts_with("ENTRY") && table.contains("HTTP 500 from upstream"),
        "{table}"
    );

    let shown = env.json(&["dead", "show", Q, &s.dead_noop]);
    assert_eq!(shown[0]["state"], "dead");
    let entry = rows[1]["entry_id"].as_str().unwrap_or_default();
    let human = env.run(&["dead", "show", Q, entry]).ok().stdout;
    assert!(
        human.contains("dead: dead-lettered") && human.contains("HTTP 500"),
        "{human}"
    );
}

#[test]
fn delayed_list_tells_retrying_from_scheduled() {
    let env = Env::new();
    let s = seed(&env);
    let rows = env.json(&["delayed", "list", Q]);
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    let only = |flag: &str| env.json(&["delayed", "list", Q, flag]);
    let r = only("--retrying");
    assert_eq!(r.as_array().map(Vec::len), Some(1));
    assert_eq!(r[0]["job_id"], s.retrying.as_str());
    assert_eq!(r[0]["state"], "retrying");
    assert_eq!(r[0]["attempt"], 2);
    let sch = only("--scheduled");
    assert_eq!(sch[0]["job_id"], s.scheduled.as_str());
    assert_eq!(sch[0]["state"], "scheduled");
    let by_name = env.json(&["delayed", "list", Q, "--job", "fail"]);
    assert_eq!(by_name.as_array().map(Vec::len), Some(1));
    let table = env.run(&["delayed", "list", Q]).ok().stdout;
    assert!(
        table.contains("retrying") && table.contains("scheduled") && table.contains("59m"),
        "{table}"
    );
}

#[test]
fn consumers_marks_the_ghost_dead_and_prune_keeps_what_holds_work() {
    let env = Env::new();
    seed(&env);
    // A consumer that read nothing and never beat: dead and empty.
    let _: redis::Value = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg("millrace:{emails}:stream")
        .arg("millrace")
        .arg("empty-ghost")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = env.json(&["consumers", Q]);
    let by = |name: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} missing: {rows}"))
    };
    assert_eq!(by("ghost")["state"], "dead");
    assert_eq!(by("ghost")["pending"], 1);
    assert_eq!(by("w1")["state"], "alive");
    assert_eq!(by("empty-ghost")["state"], "dead");

    // Pruning also needs the group's own idle time past the threshold: the
    // consumer created a moment ago is kept, whatever its heartbeat says.
    let out = env.run(&["consumers", Q, "--prune"]).ok().stdout;
    assert!(
        out.contains("kept consumer empty-ghost: the group saw it within 30s"),
        "{out}"
    );
    assert!(out.contains("pruned 0 dead consumers"), "{out}");
    // Once idle past a (short) threshold, it goes; w1 beats again just
    // before, so only its heartbeat keeps it.
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    env.setup(async |conn| {
        let q = millrace_core::Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        q.heartbeat(conn, "w1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let out = env
        .run(&["consumers", Q, "--prune", "--dead-after", "1s"])
        .ok()
        .stdout;
    assert!(
        out.contains("kept dead consumer ghost because it holds 1 pending"),
        "{out}"
    );
    assert!(out.contains("pruned 1 dead consumer"), "{out}");
    let names: Vec<String> = env
        .json(&["consumers", Q])
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["name"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["ghost", "w1"], "only the empty dead consumer went");
}

#[test]
fn pause_and_resume_set_the_flag_workers_follow() {
    let env = Env::new();
    seed(&env);
    let v = env.json(&["pause", Q]);
    assert_eq!(v["paused"], true);
    assert_eq!(v["changed"], true);
    assert_eq!(env.stats(Q)["paused"], true);
    let exists: bool = redis::cmd("EXISTS")
        .arg("millrace:{emails}:paused")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(exists);
    assert!(
        env.run(&["pause", Q])
            .ok()
            .stdout
            .contains("already paused")
    );
    assert!(
        env.run(&["resume", Q])
            .ok()
            .stdout
            .contains("resumed queue \"emails\"")
    );
    assert_eq!(env.stats(Q)["paused"], false);
}

#[test]
fn enqueue_now_and_later() {
    let env = Env::new();
    seed(&env);
    let v = env.json(&["enqueue", Q, "sleep", r#"{"ms": 5}"#]);
    let id = v["job_id"].as_str().unwrap_or_default().to_owned();
    assert!(v["entry_id"].is_string(), "{v}");
    let shown = env.json(&["show", Q, &id]);
    assert_eq!(shown["found"][0]["state"], "ready");
    assert_eq!(shown["found"][0]["payload"]["ms"], 5);
    let later = env.json(&[
        "enqueue",
        Q,
        "noop",
        "{}",
        "--in",
        "10m",
        "--max-attempts",
        "3",
    ]);
    assert!(later["due_at_ms"].is_u64(), "{later}");
    let shown = env.json(&["show", Q, later["job_id"].as_str().unwrap_or_default()]);
    assert_eq!(shown["found"][0]["state"], "scheduled");
    assert_eq!(shown["found"][0]["max_attempts"], 3);
    let out = env
        .run(&["enqueue", "new-queue", "noop", "{}", "--create"])
        .ok()
        .stdout;
    assert!(out.contains("enqueued job"), "{out}");
    assert_eq!(env.stats("new-queue")["ready"], 1);
}

#[test]
fn the_prefix_flag_and_env_select_another_keyspace() {
    let env = Env::new();
    seed(&env);
    env.run(&[
        "--prefix", "other", "enqueue", "side", "noop", "{}", "--create",
    ])
    .ok();
    let names = |v: serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|q| q["name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(env.json(&["--prefix", "other", "queues"])), ["side"]);
    assert_eq!(names(env.json(&["queues"])), ["emails"]);
    let out = env
        .cmd(&["--json", "queues"])
        .env("MILLRACE_PREFIX", "other")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(v), ["side"]);
}

#[test]
fn colour_only_on_a_terminal() {
    let env = Env::new();
    seed(&env);
    let piped = env.run(&["queues"]).ok().stdout;
    assert!(!piped.contains('\x1b'), "{piped:?}");
    let mut cmd = env.cmd(&["queues"]);
    cmd.env_remove("NO_COLOR");
    let mut p =
        rexpect::session::spawn_command(cmd, Some(20_000)).unwrap_or_else(|e| panic!("{e}"));
    let shown = p.exp_eof().unwrap_or_else(|e| panic!("{e}"));
    assert!(shown.contains("\x1b["), "styled on a terminal: {shown:?}");
    assert!(shown.contains("emails"), "{shown:?}");
}

#[test]
fn a_pause_records_why_and_since_when() {
    let env = Env::new();
    seed(&env);
    let v = env.json(&["pause", Q, "--reason", "deploy freeze until 18:00"]);
    assert_eq!(v["paused"], true);
    let s = env.stats(Q);
    assert_eq!(s["pause_reason"], "deploy freeze until 18:00");
    assert!(s["paused_since_ms"].as_u64().is_some_and(|t| t > 0), "{s}");
    let table = env.run(&["queues"]).ok().stdout;
    assert!(
        table.contains("yes (") && table.contains("deploy freeze"),
        "{table}"
    );
    let refused = env.run(&["resume", Q, "--reason", "x"]);
    assert!(
        refused
            .stderr
            .contains("--reason goes with `millrace pause`"),
        "{refused:?}"
    );
    env.run(&["resume", Q]).ok();
    let s = env.stats(Q);
    assert_eq!(s["paused"], false);
    assert!(s["pause_reason"].is_null());
}

#[test]
fn consumers_are_late_after_missed_beats_before_they_are_dead() {
    let env = Env::new();
    seed(&env);
    // A worker whose last beat was 10 s ago (server time): late, not dead.
    let (secs, _): (u64, u64) = redis::cmd("TIME")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = redis::cmd("ZADD")
        .arg("millrace:{emails}:workers")
        .arg((secs - 10) * 1000)
        .arg("slowpoke")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = env.json(&["consumers", Q]);
    let state = |name: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name))
            .map(|r| r["state"].clone())
    };
    assert_eq!(state("slowpoke"), Some("late".into()), "{rows}");
    assert_eq!(state("ghost"), Some("dead".into()), "{rows}");
    let help = env.run(&["consumers", "--help"]).ok().stdout;
    assert!(help.contains("late    3 s to --dead-after"), "{help}");
    assert!(help.contains("IDLE is Redis's own idle time"), "{help}");
    let help = env.run(&["queues", "--help"]).ok().stdout;
    assert!(
        help.contains("LAG ") && help.contains("cumulative"),
        "{help}"
    );
}

#[test]
fn long_dead_letter_errors_are_reachable_without_json() {
    let env = Env::new();
    let long = format!("upstream said: {}", "no ".repeat(40));
    env.setup(async |conn| {
        let q = millrace_core::Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        q.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let _: String = redis::cmd("XADD")
            .arg("millrace:{emails}:dead")
            .arg("*")
            .arg("id")
            .arg("j-long")
            .arg("name")
            .arg("fail")
            .arg("payload")
            .arg("{}")
            .arg("error")
            .arg(long.trim_end())
            .arg("dead_at")
            .arg("1")
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let cut = env.run(&["dead", "list", Q]).ok().stdout;
    assert!(cut.contains('…'), "{cut}");
    assert!(cut.contains("--wide shows them in full"), "{cut}");
    let wide = env.run(&["dead", "list", Q, "--wide"]).ok().stdout;
    let joined: String = wide.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(joined.contains(long.trim_end()), "{wide}");
    assert!(!wide.contains("--wide shows"), "{wide}");
}

#[test]
fn every_output_ends_its_lines() {
    let env = Env::new();
    seed(&env);
    // A dry run: the plan on stdout, the verdict on stderr, each on lines
    // of their own (so a terminal never shows `1dry run: ...`).
    let dry = env.run(&["dead", "replay", Q, "--all", "--dry-run"]);
    assert!(dry.stdout.ends_with('\n'), "{dry:?}");
    assert_eq!(dry.stderr, "dry run: nothing was changed\n", "{dry:?}");
    let json = env.run(&["--json", "dead", "purge", Q, "--all", "--dry-run"]);
    assert!(json.stdout.ends_with("}\n"), "{json:?}");
    // A refusal after a plan table: the table ends its line before `error:`.
    let refused = env.run(&["dead", "purge", Q, "--all"]);
    assert!(refused.stdout.ends_with('\n'), "{refused:?}");
    assert!(refused.stderr.starts_with("error: refusing"), "{refused:?}");
    assert!(refused.stderr.ends_with('\n'), "{refused:?}");
}
