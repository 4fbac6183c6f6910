//! The quick start's demo: it runs end to end, and says how to install
//! redis-server when it is missing.

use std::process::Command;

use crate::common::*;

fn demo_bin() -> std::path::PathBuf {
    millrace_tests::workspace_bin("millrace-demo", "millrace-demo")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_demo_runs_and_loses_nothing() {
    let redis = redis();
    let out = Command::new(demo_bin())
        .env("MILLRACE_REDIS_URL", redis.url())
        // Never relay (or touch) a database outbox from a test.
        .env_remove("MILLRACE_DATABASE_URL")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Using Redis at"), "{stdout}");
    assert!(
        stdout.contains("attempt 3/5 succeeded"),
        "a retried job succeeded: {stdout}"
    );
    assert!(
        stdout.contains("upstream returned 500 (attempt 5)"),
        "a dead-lettered job: {stdout}"
    );
    // At least the two failing jobs; a flaky one may exhaust its attempts too.
    assert!(stdout.contains("invoice 42 does not exist"), "{stdout}");
    assert!(stdout.contains("  lost:      0"), "{stdout}");
}

#[test]
fn the_demo_says_how_to_install_a_missing_redis_server() {
    let out = Command::new(demo_bin())
        .env_remove("MILLRACE_REDIS_URL")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("redis-server not found on PATH"), "{all}");
    assert!(all.contains("apt-get install redis-server"), "{all}");
}
