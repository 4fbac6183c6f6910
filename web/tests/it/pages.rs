//! Each page renders the right counts and rows, paged by cursors.

use crate::common::*;

/// The value of the count `col` on a queue page.
fn count(page: &str, col: &str) -> String {
    let tail = page
        .split(&format!("<div data-col=\"{col}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no count {col}: {page}"));
    let dd = tail.split("<dd>").nth(1).unwrap_or_default();
    strip_tags(dd.split("</dd>").next().unwrap_or_default())
}

#[test]
fn overview_shows_every_queue_with_its_counts() {
    let env = Env::new();
    seed(&env, Q);
    seed(&env, "reports");
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get("/").ok();
    for q in [Q, "reports"] {
        for (col, want) in [
            ("ready", "1"),
            ("in_flight", "1"),
            ("scheduled", "1"),
            ("retrying", "1"),
            ("dead", "2"),
            ("consumers", "2"),
            ("paused", "no"),
            ("processed", "0"),
            ("failed", "3"),
        ] {
            assert_eq!(cell(&page, q, col), want, "{q} {col}");
        }
    }
    // The fragment the page polls is the same table; a second read a
    // second later gives rates and a chart from two samples.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let frag = web.get("/fragments/overview").ok();
    assert!(!frag.contains("<html"), "a fragment, not a page");
    assert_eq!(cell(&frag, Q, "processed_rate"), "0");
    assert!(frag.contains("<svg class=\"spark\""), "{frag}");
}

#[test]
fn an_empty_redis_says_how_queues_appear() {
    let env = Env::new();
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get("/").ok();
    assert!(page.contains("No queues under prefix"), "{page}");
    let missing = web.get("/queues/nope");
    assert_eq!(missing.status, 404);
    assert!(
        missing.body.contains("no queue &quot;nope&quot;"),
        "{}",
        missing.body
    );
}

#[test]
fn queue_tabs_list_ready_pending_delayed_and_dead_jobs() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let ready = web.get("/queues/emails").ok();
    assert_eq!(count(&ready, "ready"), "1");
    assert_eq!(count(&ready, "dead"), "2");
    assert_eq!(count(&ready, "retrying"), "1");
    let polled = web.get("/queues/emails/counts").ok();
    assert!(
        ready.contains("data-poll=\"/queues/emails/counts\""),
        "{ready}"
    );
    assert_eq!(count(&polled, "dead"), "2");
    assert!(ready.contains(&s.ready), "{ready}");
    assert!(!ready.contains(&s.dead_noop));
    let pending = web.get("/queues/emails/pending").ok();
    assert!(
        pending.contains(&s.stuck_entry) && pending.contains("ghost"),
        "{pending}"
    );
    let delayed = web.get("/queues/emails/delayed").ok();
    assert!(
        delayed.contains(&s.retrying) && delayed.contains(&s.scheduled),
        "{delayed}"
    );
    assert!(delayed.contains("retrying") && delayed.contains("upstream timeout (attempt 1)"));
    let dead = web.get("/queues/emails/dead").ok();
    assert!(
        dead.contains(&s.dead_noop) && dead.contains(&s.dead_fail),
        "{dead}"
    );
    // The CLI's filters: job, error text, since.
    let noop = web.get("/queues/emails/dead?job=noop").ok();
    assert!(
        noop.contains(&s.dead_noop) && !noop.contains(&s.dead_fail),
        "{noop}"
    );
    let bad = web.get("/queues/emails/dead?error=BAD+ADDR").ok();
    assert!(
        bad.contains(&s.dead_fail) && !bad.contains(&s.dead_noop),
        "{bad}"
    );
    let recent = web.get("/queues/emails/dead?since=1h").ok();
    assert!(recent.contains(&s.dead_fail) && recent.contains(&s.dead_noop));
    let future = web
        .get("/queues/emails/dead?since=2999-01-01T00:00:00Z")
        .ok();
    assert!(future.contains("No dead jobs match"), "{future}");
    let wrong = web.get("/queues/emails/dead?since=yesterday-ish");
    assert_eq!(wrong.status, 400);
    assert!(
        wrong.body.contains("use a duration (e.g. 1h)"),
        "{}",
        wrong.body
    );
}

#[test]
fn the_dead_tab_pages_by_entry_id() {
    let env = Env::new();
    seed(&env, Q);
    // 118 more dead entries, added as the dead-letter step writes them.
    for i in 0..118 {
        let id = format!("bulk-{i}");
        env.redis::<String>(&[
            "XADD",
            "millrace:{emails}:dead",
            "*",
            "id",
            &id,
            "name",
            "noop",
            "payload",
            "{}",
            "error",
            "boom",
        ]);
    }
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let mut url = "/queues/emails/dead".to_owned();
    let mut rows = 0;
    let mut pages = 0;
    loop {
        let page = web.get(&url).ok();
        rows += page.matches("<tr data-entry=").count();
        pages += 1;
        let Some(next) = page.split("<p class=\"pager\"><a href=\"").nth(1) else {
            break;
        };
        url = next
            .split('"')
            .next()
            .unwrap_or_default()
            .replace("&amp;", "&");
        assert!(pages < 10, "paging never ends: {url}");
    }
    assert_eq!((rows, pages), (120, 3));
    // A filter that matches only the two seeded jobs pages the same way.
    let page = web.get("/queues/emails/dead?error=from+upstream").ok();
    assert_eq!(page.matches("<tr data-entry=").count(), 1, "{page}");
}

#[test]
fn the_job_page_shows_where_a_job_is_and_its_payload() {
    let env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let dead = web
        .get(&format!("/queues/emails/jobs/{}", s.dead_noop_entry))
        .ok();
    assert!(
        dead.contains(">dead<") && dead.contains("HTTP 500 from upstream"),
        "{dead}"
    );
    let by_job = web
        .get(&format!("/queues/emails/jobs/{}", s.dead_fail))
        .ok();
    assert!(
        by_job.contains("&quot;permanent&quot;: true"),
        "pretty payload: {by_job}"
    );
    let retrying = web.get(&format!("/queues/emails/jobs/{}", s.retrying)).ok();
    assert!(
        retrying.contains(">retrying<") && retrying.contains("runs in"),
        "{retrying}"
    );
    let stuck = web
        .get(&format!("/queues/emails/jobs/{}", s.stuck_entry))
        .ok();
    assert!(stuck.contains("held by consumer ghost"), "{stuck}");
    let found = web.get(&format!("/queues/emails/find?id={}", s.ready));
    assert_eq!(found.redirect(), format!("/queues/emails/jobs/{}", s.ready));
    let none = web.get("/queues/emails/jobs/no-such-job");
    assert_eq!(none.status, 404);
}

#[test]
fn the_consumers_page_shows_states_from_heartbeats() {
    let env = Env::new();
    seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get("/queues/emails/consumers").ok();
    let row = |name: &str| {
        let r = page
            .split(&format!("data-consumer=\"{name}\""))
            .nth(1)
            .unwrap_or_default();
        strip_tags(
            &r.split("</tr>")
                .next()
                .unwrap_or_default()
                .replace("</td>", " |"),
        )
    };
    assert!(row("w1").contains("alive"), "{}", row("w1"));
    assert!(row("ghost").contains("dead |1 |"), "{}", row("ghost"));
    assert!(
        !page.contains("Prune"),
        "ghost holds an entry: nothing to prune: {page}"
    );
    assert!(page.contains("holds 1 pending"), "{page}");
}

#[test]
fn the_redis_password_never_reaches_a_page() {
    let env = Env::new();
    let s = seed(&env, Q);
    env.redis::<String>(&["CONFIG", "SET", "requirepass", "s3cret-pa55"]);
    let port = env.redis.port();
    let url = format!("redis://:s3cret-pa55@127.0.0.1:{port}");
    let web = Dashboard::start_at(&url, {
        let mut c = millrace_web::WebConfig::new("millrace", &url);
        c.listen = "127.0.0.1:0".parse().unwrap_or(c.listen);
        c
    });
    for path in [
        "/".to_owned(),
        "/queues/emails".into(),
        "/queues/emails/dead".into(),
        format!("/queues/emails/jobs/{}", s.dead_fail),
        "/queues/emails/consumers".into(),
        "/queues/nope".into(),
    ] {
        let r = web.get(&path);
        assert!(
            !r.body.contains("s3cret"),
            "{path} shows the password: {}",
            r.body
        );
    }
    assert!(web.get("/").ok().contains("redis://:***@127.0.0.1"));
}

#[test]
fn job_ids_with_odd_characters_link_to_their_page() {
    let env = Env::new();
    seed(&env, Q);
    env.with(async |conn| {
        let q = millrace_core::Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        let mut e = job("noop", "{}");
        e.id = "a/b c?d#e".into();
        let when = millrace_core::queue::When::In(std::time::Duration::from_secs(600));
        q.schedule(conn, &e, when)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let delayed = web.get("/queues/emails/delayed").ok();
    let link = "/queues/emails/jobs/a%2Fb%20c%3Fd%23e?at=delayed";
    assert!(delayed.contains(link), "{delayed}");
    let page = web.get(link).ok();
    assert!(page.contains(">scheduled<"), "{page}");
    // Without the hint the page finds it too (by a scan, like `millrace show`).
    let page = web.get("/queues/emails/jobs/a%2Fb%20c%3Fd%23e").ok();
    assert!(page.contains(">scheduled<"), "{page}");
}

#[test]
fn errors_are_one_clear_page_with_a_status() {
    let mut env = Env::new();
    let s = seed(&env, Q);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let r = web.get("/queues/emails/dead/confirm?action=delete");
    assert_eq!(r.status, 400);
    assert!(
        r.body
            .contains("unknown action &quot;delete&quot;: replay or purge"),
        "{}",
        r.body
    );
    let r = web.get("/queues/emails/dead/confirm?action=purge&id=1-1");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no dead job &quot;1-1&quot;"), "{}", r.body);
    let r = web.get(&format!(
        "/queues/emails/dead/confirm?action=purge&id={}",
        s.ready
    ));
    assert_eq!(r.status, 400, "a job id is not a dead entry id");
    assert_eq!(web.get("/no/such/page").status, 404);
    // Redis gone: a 502 naming the failed operation, quickly.
    env.redis.kill();
    let started = std::time::Instant::now();
    let r = web.get("/queues/emails");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(r.body.contains("redis"), "{}", r.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

/// Calls of `command` since the last `CONFIG RESETSTAT`.
fn calls(env: &Env, command: &str) -> u64 {
    let info: String = env.redis(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_filtered_dead_page_reads_a_bounded_number_of_entries() {
    let env = Env::new();
    seed(&env, Q);
    let mut conn = env.redis.connection().unwrap_or_else(|e| panic!("{e}"));
    let mut pipe = redis::pipe();
    for i in 0..6000 {
        pipe.cmd("XADD")
            .arg("millrace:{emails}:dead")
            .arg("*")
            .arg(&[
                "id",
                &format!("bulk-{i}"),
                "name",
                "noop",
                "payload",
                "{}",
                "error",
                "boom",
            ])
            .ignore();
    }
    pipe.query::<()>(&mut conn)
        .unwrap_or_else(|e| panic!("{e}"));
    let web = Dashboard::start(&env, Dashboard::config(&env));
    env.redis::<String>(&["CONFIG", "RESETSTAT"]);
    let page = web.get("/queues/emails/dead?error=no+such+error").ok();
    assert!(
        page.contains("No dead jobs match among the 5000 read here"),
        "{page}"
    );
    assert!(page.contains("Next page"), "{page}");
    let reads = calls(&env, "xrevrange");
    assert!(reads <= 11, "{reads} XREVRANGE calls for one page");
    // The next page goes on where this one stopped and finds the seeded job.
    let next = page
        .split("<p class=\"pager\"><a href=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap_or_default()
        .replace("&amp;", "&");
    let later = web.get(&next.replace("no+such+error", "upstream")).ok();
    assert_eq!(later.matches("<tr data-entry=").count(), 1, "{later}");
}
