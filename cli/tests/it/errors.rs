//! Each error is one clear line and exit code 1.

use crate::common::*;

#[test]
fn unknown_queue_lists_the_known_ones() {
    let env = Env::new();
    seed(&env);
    env.run(&["enqueue", "billing", "noop", "{}", "--create"])
        .ok();
    for args in [
        &["pending", "emials"][..],
        &["show", "emials", "x"],
        &["dead", "list", "emials"],
        &["pause", "emials"],
        &["enqueue", "emials", "noop", "{}"],
    ] {
        let line = env.run(args).err();
        assert_eq!(
            line,
            "error: unknown queue \"emials\" (known queues: billing, emails)"
        );
    }
    let fresh = Env::new();
    let line = fresh.run(&["pending", "emails"]).err();
    assert!(
        line.contains("unknown queue \"emails\": no queues are known under prefix \"millrace\""),
        "{line}"
    );
}

#[test]
fn unreachable_redis_names_the_url_without_its_password() {
    let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
    let env = Env::new();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/0");
    let line = env.run(&["--redis-url", &url, "queues"]).err();
    assert!(
        line.starts_with(&format!(
            "error: cannot connect to Redis at redis://:***@127.0.0.1:{port}/0: "
        )),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn bad_json_gives_its_position() {
    let env = Env::new();
    seed(&env);
    let line = env
        .run(&["enqueue", Q, "noop", "{\"ms\": 1,\n \"x\": }"])
        .err();
    assert_eq!(
        line,
        "error: bad JSON payload at line 2, column 7: expected value"
    );
}

#[test]
fn unknown_job_id() {
    let env = Env::new();
    seed(&env);
    let line = env
        .run(&["show", Q, "01900000-0000-7000-8000-000000000000"])
        .err();
    assert!(
        line.contains(
            "no job or entry \"01900000-0000-7000-8000-000000000000\" in queue \"emails\""
        ),
        "{line}"
    );
    let line = env.run(&["show", Q, "1-0"]).err();
    assert!(line.contains("no job or entry \"1-0\""), "{line}");
    let line = env.run(&["dead", "show", Q, "nope"]).err();
    assert_eq!(line, "error: no dead job \"nope\" in queue \"emails\"");
}
