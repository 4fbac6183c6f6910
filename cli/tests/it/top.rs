//! `millrace top`: one frame with `--once`, and the live view in a
//! pseudo-terminal that quits on `q`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rexpect::process::wait::WaitStatus;
use rexpect::session::spawn_command;

use crate::common::*;

#[test]
fn top_once_shows_every_queue_with_rates() {
    let env = Env::new();
    seed(&env);
    env.run(&["enqueue", "rates", "noop", "{}", "--create"])
        .ok();
    let worker = Worker::start(&env, "rates", &[]);
    // Feed the worker while top measures.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        let mut conn = env.conn();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _: redis::Value = redis::cmd("XADD")
                    .arg("millrace:{rates}:stream")
                    .arg("*")
                    .arg("id")
                    .arg(format!(
                        "j{}",
                        std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos())
                            .unwrap_or(0)
                    ))
                    .arg("name")
                    .arg("noop")
                    .arg("payload")
                    .arg("{}")
                    .query(&mut conn)
                    .unwrap_or(redis::Value::Nil);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_for("the worker to process fed jobs", || {
        env.stats("rates")["processed"].as_u64().unwrap_or(0) > 5
    });
    let rows = env.json(&["top", "--once", "--interval", "1s"]);
    let text = env
        .run(&["top", "--once", "--interval", "300ms"])
        .ok()
        .stdout;
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    drop(worker);

    let by = |name: &str| {
        rows.as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or_else(|| panic!("{name} missing: {rows}"))
    };
    assert!(
        by("rates")["processed_per_sec"].as_f64().unwrap_or(0.0) > 0.0,
        "{rows}"
    );
    let emails = by("emails");
    assert_eq!(emails["dead"], 2);
    assert_eq!(emails["delayed"], 2);
    assert_eq!(emails["retrying"], 1);
    assert_eq!(emails["in_flight"], 1);
    assert_eq!(emails["processed_per_sec"], 0.0);

    assert!(
        text.starts_with("millrace top  redis://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("DONE/S") && text.contains("FAILED/S"),
        "{text}"
    );
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("emails"))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row[..7], ["emails", "1", "1", "2", "1", "2", "2"], "{text}");
}

#[test]
fn top_in_a_terminal_refreshes_and_quits_on_q() {
    let env = Env::new();
    seed(&env);
    let mut p = spawn_command(env.cmd(&["top", "--interval", "200ms"]), Some(20_000))
        .unwrap_or_else(|e| panic!("{e}"));
    p.exp_string("(q to quit)")
        .unwrap_or_else(|e| panic!("{e}"));
    p.exp_string("emails").unwrap_or_else(|e| panic!("{e}"));
    // A job enqueued now shows on a later frame: ready goes from 1 to 2.
    env.run(&["enqueue", Q, "noop", "{}"]).ok();
    p.exp_regex(r"emails\s+2\s+1")
        .unwrap_or_else(|e| panic!("{e}"));
    p.send("q").unwrap_or_else(|e| panic!("{e}"));
    p.flush().unwrap_or_else(|e| panic!("{e}"));
    p.exp_eof().unwrap_or_else(|e| panic!("{e}"));
    let status = p.process().wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
}
