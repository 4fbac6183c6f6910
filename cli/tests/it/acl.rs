//! The `millrace` command as the README's least-privilege users (its
//! `acl-users` block, read by the harness): the ops user runs every
//! command without one denied command; the inspector reads everything and
//! is refused every fix, in one line, with nothing changed.

use millrace_tests::{AclUser, readme_acl_users};

use crate::common::*;

fn env_with_users() -> (Env, Vec<AclUser>) {
    let env = Env::new();
    let users = readme_acl_users().unwrap_or_else(|e| panic!("{e}"));
    env.redis
        .create_users(&users)
        .unwrap_or_else(|e| panic!("the README's ACL lines fail: {e}"));
    (env, users)
}

/// Runs the binary as the README's user `name`.
fn run_as(env: &Env, users: &[AclUser], name: &str, args: &[&str]) -> Out {
    let user = users
        .iter()
        .find(|u| u.name == name)
        .unwrap_or_else(|| panic!("the README has no user {name}"));
    let url = env.redis.url_as(user);
    env.run(&[&["--redis-url", url.as_str()][..], args].concat())
}

fn denials(env: &Env, user: &str) -> Vec<String> {
    env.redis
        .acl_denials(user)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The read commands, each as `user`.
fn read_everything(env: &Env, users: &[AclUser], user: &str, s: &Seeded) {
    for args in [
        &["queues"][..],
        &["--json", "queues"],
        &["pending", Q],
        &["show", Q, &s.stuck],
        &["show", Q, &s.dead_noop],
        &["dead", "list", Q],
        &["dead", "show", Q, &s.dead_noop],
        &["delayed", "list", Q],
        &["consumers", Q],
        &["top", "--once"],
        &["partitions", Q],
    ] {
        run_as(env, users, user, args).ok();
    }
}

#[test]
fn the_inspector_reads_everything_and_fixes_nothing() {
    let (env, users) = env_with_users();
    let s = seed(&env);
    let inspector = "millrace-inspector";
    read_everything(&env, &users, inspector, &s);
    assert_eq!(denials(&env, inspector), Vec::<String>::new());

    // What a change would show (ages move with the clock).
    let counts = || {
        let mut v = env.stats(Q);
        for age in ["lag_ms", "oldest_ms"] {
            v[age] = serde_json::Value::Null;
        }
        if let Some(lanes) = v["lanes"].as_array_mut() {
            for lane in lanes {
                lane["lag_ms"] = serde_json::Value::Null;
            }
        }
        v
    };
    let before = counts();
    for args in [
        &["requeue", Q, "--min-idle", "0s", "--yes"][..],
        &["dead", "replay", Q, &s.dead_noop],
        &["dead", "purge", Q, "--all", "--yes"],
        &["delayed", "run-now", Q, &s.scheduled],
        &["pause", Q],
        &["enqueue", Q, "noop", "{}"],
        &["partitions", Q, "--set", "2"],
        &["consumers", Q, "--prune", "--dead-after", "1s"],
    ] {
        if args[0] == "consumers" {
            // "w1" holds nothing: idle past the threshold, it is one to prune.
            std::thread::sleep(std::time::Duration::from_millis(1_200));
        }
        let line = run_as(&env, &users, inspector, args).err();
        assert!(
            line.contains("this user has no permissions to run the"),
            "{args:?}: {line}"
        );
    }
    assert_eq!(counts(), before, "the inspector changed something");
}

#[test]
fn the_ops_user_runs_every_command() {
    let (env, users) = env_with_users();
    let s = seed(&env);
    let ops = "millrace-ops";
    read_everything(&env, &users, ops, &s);
    for args in [
        &["requeue", Q, "--min-idle", "0s", "--yes"][..],
        &["dead", "replay", Q, &s.dead_noop],
        &["dead", "purge", Q, "--all", "--yes"],
        &["delayed", "run-now", Q, &s.scheduled],
        &["pause", Q, "--reason", "acl test"],
        &["resume", Q],
        &["enqueue", Q, "noop", "{}"],
        &["enqueue", Q, "noop", "{}", "--in", "1h"],
        &["enqueue", "billing", "noop", "{}", "--create"],
        &["partitions", "billing", "--set", "2"],
        &["partitions", "billing"],
        &["partitions", "billing", "--set", "1"],
    ] {
        run_as(&env, &users, ops, args).ok();
    }
    // The requeue left the dead consumer "ghost" empty, and "w1" holds
    // nothing: once both are idle past the threshold, the prune
    // (leave.lua) removes them.
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let out = run_as(
        &env,
        &users,
        ops,
        &["consumers", Q, "--prune", "--dead-after", "1s"],
    )
    .ok()
    .stdout;
    assert!(out.contains("pruned 2 dead consumers"), "{out}");
    assert_eq!(denials(&env, ops), Vec::<String>::new());
    let stats = env.stats(Q);
    assert_eq!(stats["dead"], 0, "{stats}");
}
