//! A queue with lanes on the dashboard: the queue page breaks its counts
//! down by lane, a job page names a job's lane, and requeue acts in the
//! lane the job page says. A partitioned queue gets a total row on the
//! overview.

use std::time::Duration;

use millrace_core::{Priority, Queue, ReadFrom};

use crate::common::*;

/// A high-lane job held by "ghost" and a default-lane ready job on queue
/// `orders`; returns the held entry id.
fn seed_lanes(env: &Env) -> String {
    env.with(async |conn| {
        let q = Queue::new("orders").unwrap_or_else(|e| panic!("{e}"));
        q.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let high = q.lane(Priority::High);
        high.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let mut held = job("sleep", "{}");
        held.priority = Priority::High;
        high.enqueue(conn, &[held])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        q.enqueue(conn, &[job("noop", "{}")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let got = high
            .read(conn, "ghost", 1, Duration::from_millis(50), &ReadFrom::New)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        got[0].entry_id.clone()
    })
}

/// The cells of the lanes table's row for `lane`.
fn lane_row(page: &str, lane: &str) -> Vec<String> {
    let row = page
        .split(&format!("<tr data-lane=\"{lane}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for lane {lane}: {page}"));
    let row = row.split("</tr>").next().unwrap_or_default();
    row.split("<td>")
        .skip(1)
        .map(|c| strip_tags(c.split("</td>").next().unwrap_or_default()))
        .collect()
}

#[test]
fn the_queue_page_breaks_a_queue_with_lanes_down_by_lane() {
    let env = Env::new();
    seed(&env, Q);
    seed_lanes(&env);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get("/queues/orders").ok();
    assert_eq!(lane_row(&page, "high")[..4], ["high", "0", "1", "0"]);
    assert_eq!(lane_row(&page, "default")[..4], ["default", "1", "0", "0"]);
    assert!(
        !page.contains("data-lane=\"low\""),
        "low is not used: {page}"
    );
    assert!(page.contains("href=\"/queues/orders?lane=high\""), "{page}");
    let plain = web.get("/queues/emails").ok();
    assert!(!plain.contains("data-lane="), "no lanes, no breakdown");
    assert!(!plain.contains("Lane: "), "no lanes, no lane links");
}

#[test]
fn the_tabs_list_the_lane_asked_for() {
    let env = Env::new();
    let entry = seed_lanes(&env);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let ready = web.get("/queues/orders").ok();
    assert!(
        ready.contains("noop") && ready.contains("Lane: "),
        "{ready}"
    );
    let high = web.get("/queues/orders?lane=high").ok();
    assert!(
        high.contains("No ready jobs"),
        "the high job is in flight: {high}"
    );
    let pending = web.get("/queues/orders/pending?lane=high").ok();
    assert!(pending.contains(&entry), "{pending}");
    assert!(
        pending.contains("name=\"lane\" value=\"high\""),
        "{pending}"
    );
    let plain = web.get("/queues/orders/pending").ok();
    assert!(plain.contains("Nothing in flight."), "{plain}");
    let bad = web.get("/queues/orders/delayed?lane=urgent");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("unknown lane"), "{}", bad.body);
}

#[test]
fn requeue_from_a_job_page_acts_in_the_jobs_lane() {
    let env = Env::new();
    seed(&env, Q); // the harness reads its CSRF token on this queue's page
    let entry = seed_lanes(&env);
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get(&format!("/queues/orders/jobs/{entry}")).ok();
    assert!(page.contains("<dt>lane</dt><dd>high</dd>"), "{page}");
    assert!(
        page.contains("name=\"lane\" value=\"high\""),
        "the requeue form names the lane: {page}"
    );
    let r = web.post(
        "/queues/orders/requeue",
        &[("id", &entry), ("lane", "urgent")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let to = web
        .post("/queues/orders/requeue", &[("id", &entry)])
        .redirect();
    assert!(
        to.contains("left+entry"),
        "not pending in the default lane: {to}"
    );
    let to = web
        .post(
            "/queues/orders/requeue",
            &[("id", &entry), ("lane", "high")],
        )
        .redirect();
    assert!(to.contains("requeued+entry"), "{to}");
    let len: u64 = env.redis(&["XLEN", "millrace:{orders}:high:stream"]);
    assert_eq!(len, 1, "the copy is in the high lane");
}

#[test]
fn the_overview_totals_a_partitioned_queue_after_its_partitions() {
    let env = Env::new();
    seed(&env, Q);
    env.with(async |conn| {
        let q = Queue::new("orders").unwrap_or_else(|e| panic!("{e}"));
        let layout = q
            .set_partitions(conn, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        q.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        q.enqueue(conn, &[job("noop", "{}")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (n, &label) in layout.labels().iter().enumerate() {
            let p = q.partition(label).unwrap_or_else(|e| panic!("{e}"));
            p.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
            let jobs: Vec<_> = (0..=n).map(|_| job("noop", "{}")).collect();
            p.enqueue(conn, &jobs)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let page = web.get("/").ok();
    assert_eq!(cell(&page, "orders#1", "ready"), "2");
    assert_eq!(cell(&page, "orders (total)", "ready"), "4", "{page}");
    let at = |name: &str| {
        page.find(&format!("data-queue=\"{name}\""))
            .unwrap_or_else(|| panic!("no row {name}"))
    };
    assert!(at("orders") < at("orders#1") && at("orders#1") < at("orders (total)"));
    assert!(
        !page.contains(&format!("data-queue=\"{Q} (total)\"")),
        "an unpartitioned queue has no total"
    );
    // The queue's page lists its partitions, each linked to its own page.
    let queue_page = web.get("/queues/orders").ok();
    let row = queue_page
        .split("data-partition=\"orders#1\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no partition row: {queue_page}"));
    assert!(row.contains("href=\"/queues/orders%231\""), "{row}");
    let ready = row
        .split("<td class=\"n\">")
        .nth(1)
        .and_then(|c| c.split('<').next());
    assert_eq!(ready, Some("2"), "{row}");
    let plain = web.get(&format!("/queues/{Q}")).ok();
    assert!(
        !plain.contains("data-partition="),
        "no partitions, no table"
    );
}
