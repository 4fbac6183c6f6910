//! One headless Chromium session (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver with fantoccini): the overview
//! shows a queue's dead count and refreshes by itself; a dead job is
//! replayed through the confirmation page, leaves the dead list and is run
//! by a real `millrace-worker`. With `MILLRACE_SCREENSHOTS=<dir>` (relative
//! to the workspace root) it also saves a screenshot of each main page
//! there: `MILLRACE_SCREENSHOTS=docs/screenshots cargo test -p millrace-web
//! --test it -- browser`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::common::*;

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Self {
        let port = millrace_tests::free_tcp_port().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}): install Debian's chromium and chromium-driver (.ci/run does)")
            });
        millrace_tests::wait_for("chromedriver to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Self { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go, if anywhere.
fn shots() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("MILLRACE_SCREENSHOTS")?);
    let dir = if dir.is_absolute() {
        dir
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir)
    };
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    Some(dir)
}

async fn shot(c: &Client, name: &str) {
    if let Some(dir) = shots() {
        let png = c.screenshot().await.unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap_or_else(|e| panic!("{e}"));
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `css`'s text until `check` holds (the page refreshes itself).
async fn wait_text(c: &Client, css: &str, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = match c.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if check(&t) {
            return;
        }
        if Instant::now() > deadline {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let page = c.source().await.unwrap_or_default();
            panic!("timed out waiting for {what} (last {css}: {t:?}) at {url}: {page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// For the overview's screenshot only: a few seconds of uneven traffic,
/// so the throughput chart has a shape.
async fn feed(env: &Env) {
    for burst in [5, 20, 40, 10, 60, 30, 80, 20, 50, 10, 40, 70] {
        for _ in 0..burst {
            let e = job("noop", "{}");
            env.redis::<String>(&[
                "XADD",
                "millrace:{emails}:stream",
                "*",
                "id",
                &e.id,
                "name",
                "noop",
                "payload",
                "{}",
            ]);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
}

#[test]
fn browser_replays_a_dead_job_through_the_confirmation() {
    let env = Env::new();
    let s = seed(&env, Q);
    let other = seed(&env, "reports");
    let worker =
        millrace_tests::WorkerProcess::start(&env.url, Q, &[]).unwrap_or_else(|e| panic!("{e}"));
    let web = Dashboard::start(&env, Dashboard::config(&env));
    let driver = Driver::start();
    let base = format!("http://127.0.0.1:{}", web.port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/lib/chromium/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,800"]
            }
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));

        // The overview: the dead count, then a refresh without a reload.
        c.goto(&format!("{base}/")).await.unwrap_or_else(|e| panic!("{e}"));
        let dead = r#"tr[data-queue="emails"] td[data-col="dead"]"#;
        assert_eq!(text(&c, dead).await, "2");
        env.redis::<String>(&["XADD", "millrace:{reports}:dead", "*", "id", "late", "name", "noop", "payload", "{}", "error", "late"]);
        wait_text(&c, r#"tr[data-queue="reports"] td[data-col="dead"]"#, "the overview to refresh", |t| t == "3").await;
        // The worker ran the ready job meanwhile: processed shows it.
        wait_text(&c, r#"tr[data-queue="emails"] td[data-col="processed"]"#, "processed to count the ready job", |t| t != "0").await;
        if shots().is_some() {
            feed(&env).await;
        }
        shot(&c, "overview").await;

        // The dead tab, filtered, then the bulk replay's confirmation.
        c.goto(&format!("{base}/queues/emails/dead?job=noop")).await.unwrap_or_else(|e| panic!("{e}"));
        let row = format!(r#"tr[data-entry="{}"]"#, s.dead_noop_entry);
        c.find(Locator::Css(&row)).await.unwrap_or_else(|e| panic!("the dead job is listed: {e}"));
        c.find(Locator::LinkText("Replay all matching…")).await.unwrap_or_else(|e| panic!("{e}")).click().await.unwrap_or_else(|e| panic!("{e}"));
        let confirm = text(&c, "p.confirm").await;
        assert!(confirm.starts_with("Will replay 1 dead job of queue emails (job \"noop\")"), "{confirm}");
        shot(&c, "confirm").await;
        c.find(Locator::Css("form[method=post] button[type=submit]")).await.unwrap_or_else(|e| panic!("{e}")).click().await.unwrap_or_else(|e| panic!("{e}"));
        wait_text(&c, "p.flash", "the replay's message", |t| t.contains("replayed 1 dead job")).await;
        assert!(c.find(Locator::Css(&row)).await.is_err(), "the replayed job left the dead list");
        assert_eq!(text(&c, r#"div[data-col="dead"] dd"#).await, "1");

        // Screenshots of the other main pages, on the queue nobody works.
        for (name, path) in [
            ("queue", "/queues/reports/delayed".to_owned()),
            ("dead", "/queues/reports/dead".to_owned()),
            ("job", format!("/queues/reports/jobs/{}", other.dead_fail)),
            ("consumers", "/queues/reports/consumers".to_owned()),
        ] {
            c.goto(&format!("{base}{path}")).await.unwrap_or_else(|e| panic!("{e}"));
            c.find(Locator::Css("main h1")).await.unwrap_or_else(|e| panic!("{path}: {e}"));
            shot(&c, name).await;
        }
        c.close().await.unwrap_or_else(|e| panic!("{e}"));
    });
    millrace_tests::wait_for(
        "the worker to run the replayed job",
        Duration::from_secs(30),
        || (worker.runs_of(&s.dead_noop) > 0).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}
