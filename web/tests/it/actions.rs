//! Each action changes Redis as its CLI twin does; bulk ones go through
//! the confirmation page.

use crate::common::*;

/// XLEN / ZCARD of the queue's keys: ready stream, delayed set, dead.
fn sizes(env: &Env) -> (u64, u64, u64) {
    (
        env.redis(&["XLEN", "millrace:{emails}:stream"]),
        env.redis(&["ZCARD", "millrace:{emails}:delayed"]),
        env.redis(&["XLEN", "millrace:{emails}:dead"]),
    )
}

/// Job ids in the ready stream.
fn stream_job_ids(env: &Env) -> Vec<String> {
    let entries: Vec<(String, Vec<(String, String)>)> =
        env.redis(&["XRANGE", "millrace:{emails}:stream", "-", "+"]);
    entries
        .into_iter()
        .filter_map(|(_, f)| f.into_iter().find(|(k, _)| k == "id").map(|(_, v)| v))
        .collect()
}

/// The hidden fields of the confirmation page's form.
fn confirm_form(page: &str) -> Vec<(String, String)> {
    let form = page
        .split("<form method=\"post\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no form: {page}"));
    let form = form.split("</form>").next().unwrap_or_default();
    form.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|i| {
            let name = i.split("name=\"").nth(1)?.split('"').next()?;
            let value = i.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), value.replace("&quot;", "\"")))
        })
        .filter(|(k, _)| k != "csrf")
        .collect()
}

#[test]
fn replay_one_dead_job_sends_it_back_as_a_first_attempt() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let (stream, delayed, dead) = sizes(&env);
    let to = web
        .post("/queues/emails/dead/replay", &[("id", &s.dead_noop_entry)])
        .redirect();
    assert!(
        to.starts_with("/queues/emails/dead?flash=replayed+1+dead+job"),
        "{to}"
    );
    assert_eq!(sizes(&env), (stream + 1, delayed, dead - 1));
    // As `millrace dead replay`: attempt 1, no error, no dead-letter fields.
    let entries: Vec<(String, Vec<(String, String)>)> =
        env.redis(&["XRANGE", "millrace:{emails}:stream", "-", "+"]);
    let (_, fields) = entries
        .iter()
        .find(|(_, f)| f.iter().any(|(k, v)| k == "id" && *v == s.dead_noop))
        .unwrap_or_else(|| panic!("not replayed: {entries:?}"));
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    assert_eq!(get("attempt"), Some("1"));
    assert_eq!(
        (get("error"), get("dead_at"), get("entry")),
        (None, None, None)
    );
    let page = web.get(&to).ok();
    assert!(page.contains("replayed 1 dead job of queue"), "{page}");
    // Again: already gone, nothing done.
    let to = web
        .post("/queues/emails/dead/replay", &[("id", &s.dead_noop_entry)])
        .redirect();
    assert!(to.contains("replayed+0+dead+jobs"), "{to}");
}

#[test]
fn purge_goes_through_its_confirmation_page() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let before = sizes(&env);
    // Straight to the action: refused, nothing purged.
    let r = web.post("/queues/emails/dead/purge", &[("id", &s.dead_noop_entry)]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("goes through its confirmation page first"),
        "{}",
        r.body
    );
    assert_eq!(sizes(&env), before);
    let page = web
        .get(&format!(
            "/queues/emails/dead/confirm?action=purge&id={}",
            s.dead_noop_entry
        ))
        .ok();
    assert!(
        page.contains("Will purge <strong>1 dead job</strong>"),
        "{page}"
    );
    assert!(page.contains(&s.dead_noop));
    let form = confirm_form(&page);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    web.post("/queues/emails/dead/purge", &pairs).redirect();
    assert_eq!(sizes(&env), (before.0, before.1, before.2 - 1));
    assert!(
        !stream_job_ids(&env).contains(&s.dead_noop),
        "purge never replays"
    );
}

#[test]
fn bulk_replay_of_a_filter_counts_first_and_stops_at_what_it_counted() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web
        .get("/queues/emails/dead/confirm?action=replay&error=bad+address")
        .ok();
    assert!(
        page.contains("Will replay <strong>1 dead job</strong>"),
        "{page}"
    );
    assert!(
        page.contains("error containing &quot;bad address&quot;"),
        "{page}"
    );
    let form = confirm_form(&page);
    // A job with the same error dies after the count: left alone.
    env.redis::<String>(&[
        "XADD",
        "millrace:{emails}:dead",
        "*",
        "id",
        "late",
        "name",
        "fail",
        "payload",
        "{}",
        "error",
        "bad address",
    ]);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let to = web.post("/queues/emails/dead/replay", &pairs).redirect();
    assert!(to.contains("replayed+1+dead+job"), "{to}");
    let ids = stream_job_ids(&env);
    assert!(
        ids.contains(&s.dead_fail) && !ids.contains(&"late".to_owned()),
        "{ids:?}"
    );
    assert_eq!(sizes(&env).2, 2, "the noop and the late one stay dead");
    // A bulk replay without the confirmation's `until` is refused.
    let r = web.post("/queues/emails/dead/replay", &[("job", "noop")]);
    assert_eq!(r.status, 400, "{}", r.body);
    // Nothing matches: the page says so and offers no button.
    let none = web
        .get("/queues/emails/dead/confirm?action=purge&job=nope")
        .ok();
    assert!(
        none.contains("No dead jobs match") && !none.contains("<form method=\"post\""),
        "{none}"
    );
}

#[test]
fn requeue_and_run_now_make_jobs_ready() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let pending = || -> u64 {
        let v: Vec<redis::Value> = env.redis(&["XPENDING", "millrace:{emails}:stream", "millrace"]);
        match v.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        }
    };
    assert_eq!(pending(), 1);
    // Less idle than the page saw (a live worker renewed it): left alone.
    let to = web
        .post(
            "/queues/emails/requeue",
            &[("id", &s.stuck_entry), ("min_idle_ms", "3600000")],
        )
        .redirect();
    assert!(to.contains("left+entry"), "{to}");
    assert_eq!(pending(), 1);
    // The form as the pending tab renders it.
    let tab = web.get("/queues/emails/pending").ok();
    let idle = tab
        .split("name=\"min_idle_ms\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_else(|| panic!("no min_idle_ms: {tab}"))
        .to_owned();
    let to = web
        .post(
            "/queues/emails/requeue",
            &[("id", &s.stuck_entry), ("min_idle_ms", &idle)],
        )
        .redirect();
    assert!(to.contains("requeued+entry"), "{to}");
    assert_eq!(pending(), 0);
    let to = web
        .post("/queues/emails/requeue", &[("id", &s.stuck_entry)])
        .redirect();
    assert!(to.contains("left+entry"), "{to}");
    let (stream, delayed, _) = sizes(&env);
    let to = web
        .post("/queues/emails/run-now", &[("id", &s.retrying)])
        .redirect();
    assert!(to.contains("is+ready+now"), "{to}");
    assert_eq!((sizes(&env).0, sizes(&env).1), (stream + 1, delayed - 1));
    assert!(stream_job_ids(&env).contains(&s.retrying));
    let bad = web.post("/queues/emails/requeue", &[("id", "not-an-entry")]);
    assert_eq!(bad.status, 400);
}

#[test]
fn pause_with_a_reason_and_resume() {
    let env = Env::new();
    seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    web.post("/queues/emails/pause", &[("reason", "deploy freeze")])
        .redirect();
    let flag: String = env.redis(&["GET", "millrace:{emails}:paused"]);
    assert!(flag.contains("\"reason\":\"deploy freeze\""), "{flag}");
    assert!(cell(&web.get("/").ok(), Q, "paused").contains("deploy freeze"));
    web.post("/queues/emails/resume", &[]).redirect();
    let exists: u64 = env.redis(&["EXISTS", "millrace:{emails}:paused"]);
    assert_eq!(exists, 0);
}

#[test]
fn prune_removes_dead_consumers_that_hold_nothing() {
    let env = Env::new();
    seed(&env, Q);
    let mut config = Dashboard::config(&env);
    config.dead_after = std::time::Duration::from_millis(1);
    let web = Dashboard::start(&env, config);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let page = web.get("/queues/emails/consumers").ok();
    assert!(page.contains("Prune 1 dead consumer"), "{page}");
    let to = web.post("/queues/emails/consumers/prune", &[]).redirect();
    assert!(to.contains("pruned+1+dead+consumer"), "{to}");
    assert!(to.contains("kept+ghost"), "ghost holds an entry: {to}");
    let names: Vec<Vec<redis::Value>> =
        env.redis(&["XINFO", "CONSUMERS", "millrace:{emails}:stream", "millrace"]);
    assert_eq!(names.len(), 1, "only ghost is left");
}
