//! `millrace enqueue --unique` and `millrace cancel`.

use crate::common::*;

/// Enqueues `noop` on queue `jobs` with `extra` flags.
fn enqueue(env: &Env, extra: &[&str]) -> Out {
    let mut a = vec!["enqueue", "jobs", "noop", "{}", "--create"];
    a.extend_from_slice(extra);
    env.run(&a)
}

#[test]
fn enqueue_unique_prints_duplicate_of_the_live_job() {
    let env = Env::new();
    let first = env.json(&[
        "enqueue", "jobs", "noop", "{}", "--create", "--unique", "k1",
    ]);
    assert_eq!(first["status"], "new");
    let id = first["job_id"].as_str().unwrap_or_default().to_owned();
    let out = enqueue(&env, &["--unique", "k1"]).ok();
    assert_eq!(out.stdout.trim(), format!("duplicate of {id}"));
    let v = env.json(&["enqueue", "jobs", "noop", "{}", "--unique", "k1"]);
    assert_eq!(v["status"], "duplicate");
    assert_eq!(v["existing_job_id"], id.as_str());
    // Another key, and a throttle one: new jobs.
    let out = enqueue(
        &env,
        &[
            "--unique",
            "k2",
            "--unique-mode",
            "throttle",
            "--unique-ttl",
            "1h",
        ],
    )
    .ok();
    assert!(out.stdout.starts_with("enqueued job "), "{out:?}");
    assert_eq!(env.stats("jobs")["ready"], 2);
    // A debounce key needs its window; a mode needs a key.
    let line = enqueue(&env, &["--unique", "k3", "--unique-mode", "debounce"]).err();
    assert_eq!(
        line,
        "error: --unique-mode debounce needs --unique-ttl (its window, e.g. 10m)"
    );
    let out = enqueue(&env, &["--unique-mode", "throttle"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--unique <KEY>"), "{out:?}");
    // Debounce: the second enqueue replaces the first, waiting job.
    let debounce = [
        "--unique",
        "k4",
        "--unique-mode",
        "debounce",
        "--unique-ttl",
        "1h",
    ];
    for want in ["scheduled job ", "debounced into job "] {
        let out = enqueue(&env, &debounce).ok();
        assert!(out.stdout.starts_with(want), "{out:?}");
    }
    assert_eq!(env.stats("jobs")["scheduled"], 1);
}

#[test]
fn cancel_asks_first_and_says_what_it_did() {
    let env = Env::new();
    let ready = env.json(&["enqueue", "jobs", "noop", "{}", "--create", "--unique", "k"]);
    let id = ready["job_id"].as_str().unwrap_or_default().to_owned();
    let later = env.json(&["enqueue", "jobs", "noop", "{}", "--in", "1h"]);
    let later_id = later["job_id"].as_str().unwrap_or_default().to_owned();
    // No terminal and no --yes: refused, nothing changed.
    let line = env.run(&["cancel", "jobs", &id]).err();
    assert!(
        line.starts_with(&format!(
            "error: refusing to cancel job {id} of queue \"jobs\" without confirmation"
        )),
        "{line}"
    );
    let out = env.run(&["cancel", "jobs", &id, "--dry-run"]).ok();
    assert!(out.stdout.contains("ready: it would be removed"), "{out:?}");
    assert_eq!(env.stats("jobs")["ready"], 1);
    let out = env.run(&["cancel", "jobs", &id, "--yes"]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!("cancelled job {id}: removed from queue \"jobs\" before any worker took it")
    );
    let v = env.json(&["cancel", "jobs", &later_id, "--yes"]);
    assert_eq!(v["was"], "delayed");
    assert_eq!(env.stats("jobs")["ready"], 0);
    assert_eq!(env.stats("jobs")["scheduled"], 0);
    // Its key is free again.
    let again = env.json(&["enqueue", "jobs", "noop", "{}", "--unique", "k"]);
    assert_eq!(again["status"], "new");
    // Cancelled already: the history says so, exit 1.
    let line = env.run(&["cancel", "jobs", &id, "--yes"]).err();
    let want = format!("error: job {id} of queue \"jobs\" is already finished (cancelled at ");
    assert!(line.starts_with(&want), "{line}");
    assert!(line.ends_with("): nothing to cancel"), "{line}");
    // Never there: says so, exit 1.
    let line = env.run(&["cancel", "jobs", "no-such-job", "--yes"]).err();
    assert_eq!(
        line,
        "error: no job no-such-job in queue \"jobs\" to cancel: it finished before the history kept it, or was never there"
    );
    let line = env.run(&["cancel", "nope", "x", "--yes"]).err();
    assert!(line.starts_with("error: unknown queue \"nope\""), "{line}");
}

#[test]
fn cancel_marks_a_running_job_and_refuses_a_dead_one() {
    let env = Env::new();
    let s = seed(&env);
    let out = env.run(&["cancel", Q, &s.stuck, "--yes"]).ok();
    assert_eq!(
        out.stdout.trim(),
        format!(
            "cancel requested for running job {}: ghost cancels it at its next lease renewal and records it as cancelled",
            s.stuck
        )
    );
    let v = env.json(&["cancel", Q, &s.stuck, "--yes"]);
    assert_eq!(v["was"], "running");
    assert_eq!(v["consumer"], "ghost");
    // Still pending for its worker: only marked.
    assert_eq!(env.stats(Q)["in_flight"], 1);
    let line = env.run(&["cancel", Q, &s.dead_noop, "--yes"]).err();
    assert_eq!(
        line,
        format!(
            "error: job {} of queue \"emails\" is already finished (dead-lettered): nothing to cancel",
            s.dead_noop
        )
    );
}
