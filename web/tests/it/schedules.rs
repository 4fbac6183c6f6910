//! The schedules page lists what workers registered; pause and resume
//! change Redis as `millrace schedules pause|resume` do.

use millrace_core::Queue;
use millrace_core::schedule::Schedule;
use millrace_core::schedule::store;

use crate::common::*;

const PAUSED: &str = "paused:tick";
const KEY: &str = "millrace:{emails}:schedules";

/// Registers schedule "tick" (every minute, Paris time, job noop) on `Q`,
/// as a worker does at start.
fn register(env: &Env) {
    env.with(async |conn| {
        let queue = Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        let def = Schedule::cron("0 * * * * *")
            .and_then(|s| s.timezone("Europe/Paris"))
            .unwrap_or_else(|e| panic!("{e}"))
            .job_named("noop", "{}")
            .name("tick")
            .queue(Q)
            .definition(|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        store::register(conn, &queue, &def)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
}

fn paused(env: &Env) -> bool {
    env.redis(&["HEXISTS", KEY, PAUSED])
}

/// The text of the schedule row `name`'s cells, tags stripped.
fn row(page: &str, name: &str) -> Vec<String> {
    let row = page
        .split(&format!("data-schedule=\"{name}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for {name}: {page}"));
    let row = row.split("</tr>").next().unwrap_or_default();
    row.split("<td").skip(1).map(strip_tags_cell).collect()
}

fn strip_tags_cell(cell: &str) -> String {
    let cell = cell.split_once('>').map_or("", |(_, rest)| rest);
    strip_tags(cell.split("</td>").next().unwrap_or_default())
}

#[test]
fn the_page_lists_a_registered_schedule_with_its_next_fire() {
    let env = Env::new();
    seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let empty = web.get("/schedules").ok();
    assert!(empty.contains("No schedules"), "{empty}");
    register(&env);
    let page = web.get("/schedules").ok();
    let cells = row(&page, "tick");
    assert_eq!(
        cells[..6],
        ["tick", Q, "0 * * * * *", "Europe/Paris", "noop", "skip"],
        "{page}"
    );
    assert_eq!(cells[6], "–", "never fired: {cells:?}");
    assert!(cells[7].starts_with("in "), "{cells:?}");
    assert_eq!(cells[8], "no");
    assert!(cells[9].contains("Pause"), "{cells:?}");
    // The header links to the page from every page.
    assert!(web.get("/").ok().contains("href=\"/schedules\""));
}

#[test]
fn pause_and_resume_change_redis_as_the_cli_does() {
    let env = Env::new();
    seed(&env, Q);
    register(&env);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let to = web
        .post("/queues/emails/schedules/pause", &[("name", "tick")])
        .redirect();
    assert!(to.starts_with("/schedules?flash=paused+schedule"), "{to}");
    assert!(paused(&env), "the paused:tick field is set");
    let since: u64 = env.redis(&["HGET", KEY, PAUSED]);
    assert!(since > 1_700_000_000_000, "server time in ms: {since}");
    let page = web.get(&to).ok();
    assert!(
        page.contains("its fires are skipped until resumed"),
        "{page}"
    );
    let cells = row(&page, "tick");
    assert!(cells[8].starts_with("yes, "), "{cells:?}");
    assert!(cells[9].contains("Resume"), "{cells:?}");

    let to = web
        .post("/queues/emails/schedules/resume", &[("name", "tick")])
        .redirect();
    assert!(to.starts_with("/schedules?flash=resumed+schedule"), "{to}");
    assert!(!paused(&env), "the paused:tick field is gone");
    assert_eq!(row(&web.get("/schedules").ok(), "tick")[8], "no");
}

#[test]
fn an_unknown_schedule_or_queue_is_not_found() {
    let env = Env::new();
    seed(&env, Q);
    register(&env);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let r = web.post("/queues/emails/schedules/pause", &[("name", "nope")]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("no schedule"), "{}", r.body);
    let r = web.post("/queues/nowhere/schedules/pause", &[("name", "tick")]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(!paused(&env));
}

#[test]
fn read_only_hides_and_refuses_pause_and_resume() {
    let env = Env::new();
    seed(&env, Q);
    register(&env);
    let mut config = Dashboard::config(&env);
    config.read_only = true;
    let web = Dashboard::start(&env, config);
    let page = web.get("/schedules").ok();
    assert!(page.contains("data-schedule=\"tick\""), "{page}");
    assert!(!page.contains("method=\"post\""), "{page}");
    let origin = format!("http://127.0.0.1:{}", web.port);
    for path in [
        "/queues/emails/schedules/pause",
        "/queues/emails/schedules/resume",
    ] {
        let r = web.post_raw(
            path,
            &[("name", "tick"), ("csrf", "x")],
            &[("Origin", &origin)],
        );
        assert_eq!(r.status, 403, "{path}");
        assert!(r.body.contains("read-only"), "{}", r.body);
    }
    assert!(!paused(&env));
}
