//! `millrace schedules` (list, pause, resume) against a real worker running
//! a one-second schedule, and `millrace ready list`.

use std::time::Duration;

use millrace_core::{Envelope, JobId, Queue};

use crate::common::*;

/// The fire times (unix ms) of the `tick` schedule's jobs that ran.
fn fired(w: &Worker) -> Vec<u64> {
    w.runs()
        .iter()
        .filter_map(|id| id.strip_prefix("tick@")?.parse().ok())
        .collect()
}

fn server_ms(env: &Env) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME")
        .query(&mut env.conn())
        .unwrap_or_else(|e| panic!("{e}"));
    s * 1000 + us / 1000
}

fn header(out: &str) -> Vec<String> {
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn schedules_lists_a_workers_schedule_and_pause_stops_its_fires_until_resume() {
    let env = Env::new();
    let w = Worker::start(
        &env,
        Q,
        &["--schedule", "tick[tz:Europe/Paris]=* * * * * *=noop={}"],
    );
    wait_for("the schedule to fire", || !fired(&w).is_empty());

    let rows = env.json(&["schedules"]);
    let row = &rows[0];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(
        (
            &row["name"],
            &row["queue"],
            &row["cron"],
            &row["tz"],
            &row["job"]
        ),
        (
            &"tick".into(),
            &Q.into(),
            &"* * * * * *".into(),
            &"Europe/Paris".into(),
            &"noop".into()
        ),
        "{row}"
    );
    assert_eq!(
        (&row["missed"], &row["paused"]),
        (&"skip".into(), &false.into())
    );
    assert!(
        row["last_fire_ms"].is_u64() && row["next_fire_ms"].is_u64(),
        "{row}"
    );
    let out = env.run(&["schedules", "--queue", Q]).ok().stdout;
    assert_eq!(
        header(&out),
        [
            "NAME",
            "QUEUE",
            "CRON",
            "TZ",
            "JOB",
            "MISSED",
            "LAST FIRE",
            "NEXT FIRE",
            "PAUSED"
        ],
        "{out}"
    );
    assert!(
        out.lines().nth(1).is_some_and(|l| l.starts_with("tick ")),
        "{out}"
    );

    let out = env.run(&["schedules", "pause", "tick"]).ok().stdout;
    assert!(
        out.starts_with("paused schedule \"tick\" in queue \"emails\""),
        "{out}"
    );
    let paused_at = server_ms(&env);
    assert_eq!(env.json(&["schedules"])[0]["paused"], true);
    assert!(
        env.run(&["schedules", "pause", "tick"])
            .ok()
            .stdout
            .contains("already paused")
    );
    // Three fire times pass while paused: none of them runs.
    std::thread::sleep(Duration::from_millis(3_000));
    let late: Vec<u64> = fired(&w).into_iter().filter(|f| *f > paused_at).collect();
    assert_eq!(late, Vec::<u64>::new(), "fires after the pause ran");

    let out = env.run(&["schedules", "resume", "tick"]).ok().stdout;
    assert!(out.starts_with("resumed schedule \"tick\""), "{out}");
    let resumed_at = server_ms(&env);
    wait_for("a fire after the resume", || {
        fired(&w).iter().any(|f| *f > resumed_at)
    });
    // The fires skipped while paused are not caught up.
    assert!(
        !fired(&w)
            .iter()
            .any(|f| *f > paused_at + 1_000 && *f + 1_000 < resumed_at),
        "a paused fire ran: {:?}",
        fired(&w)
    );
}

#[test]
fn pausing_an_unknown_or_ambiguous_schedule_says_which_exist() {
    let env = Env::new();
    let line = env.run(&["schedules", "pause", "tick"]).err();
    assert_eq!(
        line,
        "error: unknown schedule \"tick\": no schedules are registered"
    );
    // Two queues with a schedule named `tick`: registered as workers do.
    env.setup(async |conn| {
        for q in ["a", "b"] {
            let queue = Queue::new(q).unwrap_or_else(|e| panic!("{e}"));
            queue.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
            let def = millrace_core::schedule::Schedule::cron("0 * * * *")
                .unwrap_or_else(|e| panic!("{e}"))
                .job_named("noop", "{}")
                .name("tick")
                .queue(q)
                .definition(|_| None)
                .unwrap_or_else(|e| panic!("{e}"));
            millrace_core::schedule::store::register(conn, &queue, &def)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let line = env.run(&["schedules", "pause", "tock"]).err();
    assert_eq!(line, "error: unknown schedule \"tock\" (known: tick)");
    let line = env.run(&["schedules", "resume", "tick"]).err();
    assert_eq!(
        line,
        "error: schedule \"tick\" is in queues a, b: name one with --queue"
    );
    let v = env.json(&["schedules", "pause", "tick", "--queue", "b"]);
    assert_eq!(
        (&v["queue"], &v["paused"], &v["changed"]),
        (&"b".into(), &true.into(), &true.into())
    );
    let rows = env.json(&["schedules"]);
    let paused: Vec<(&str, bool)> = rows
        .as_array()
        .map(|r| {
            r.iter()
                .map(|s| (s["queue"].as_str().unwrap_or(""), s["paused"] == true))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(paused, [("a", false), ("b", true)]);
    let line = env.run(&["schedules", "--queue", "c"]).err();
    assert_eq!(line, "error: unknown queue \"c\" (known queues: a, b)");
}

#[test]
fn ready_list_shows_the_jobs_no_worker_claimed_yet() {
    let env = Env::new();
    let seeded = seed(&env);
    let ids: Vec<String> = env.setup(async |conn| {
        let q = Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        let jobs: Vec<Envelope> = (0..2)
            .map(|_| Envelope::new(JobId::new().0, "sleep", r#"{"ms":1}"#.into()))
            .collect();
        q.enqueue(conn, &jobs)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        jobs.into_iter().map(|j| j.id).collect()
    });
    let listed = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["ready", "list", Q];
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
    // The stuck (pending) job is in the stream too, but delivered: not ready.
    assert_eq!(
        listed(&[]),
        [seeded.ready.clone(), ids[0].clone(), ids[1].clone()]
    );
    assert_eq!(listed(&["--job", "sleep"]), ids);
    assert_eq!(
        listed(&["--limit", "1"]),
        std::slice::from_ref(&seeded.ready)
    );
    assert_eq!(listed(&["--job", "nope"]), Vec::<String>::new());

    let out = env.run(&["ready", "list", Q, "--limit", "2"]).ok().stdout;
    assert_eq!(
        header(&out),
        ["ENTRY", "JOB ID", "JOB", "ATTEMPT", "WAITING"],
        "{out}"
    );
    let row: Vec<&str> = out
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[1..4], [seeded.ready.as_str(), "noop", "1"], "{out}");
    assert!(out.ends_with("(2 shown of 3 ready)\n"), "{out}");
    let out = env.run(&["ready", "list", Q, "--job", "nope"]).ok().stdout;
    assert_eq!(
        out,
        "no ready jobs match in queue \"emails\" (3 ready in all)\n"
    );
    let line = env.run(&["ready", "list", "nope"]).err();
    assert_eq!(line, "error: unknown queue \"nope\" (known queues: emails)");
}
