//! Shared helpers: a private Redis with jobs in every state, the dashboard
//! served in-process on a free port, and a plain-TCP HTTP client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::queue::When;
use millrace_core::{DeadRetention, Envelope, Failure, JobId, Queue, ReadFrom};
use millrace_tests::RedisServer;
use millrace_web::{Server, WebConfig};

/// The queue the seed fills.
pub const Q: &str = "emails";

fn fail<E: std::fmt::Display>(e: E) -> ! {
    panic!("{e}")
}

/// A private Redis server.
pub struct Env {
    pub redis: RedisServer,
    pub url: String,
}

impl Env {
    pub fn new() -> Self {
        let redis = RedisServer::start().unwrap_or_else(|e| fail(e));
        let url = redis.url();
        Self { redis, url }
    }

    /// Runs async protocol operations (setup and checks).
    pub fn with<T>(&self, f: impl AsyncFnOnce(&mut Conn) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(e));
        rt.block_on(async {
            let mut conn = millrace_core::connect::command_connection(&self.url)
                .await
                .unwrap_or_else(|e| fail(e));
            f(&mut conn).await
        })
    }

    /// A plain redis command's reply.
    pub fn redis<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut conn = self.redis.connection().unwrap_or_else(|e| fail(e));
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).unwrap_or_else(|e| fail(e))
    }
}

/// Job ids of the seeded jobs, one per state.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub ready: String,
    pub stuck_entry: String,
    pub retrying: String,
    pub scheduled: String,
    pub dead_noop: String,
    pub dead_noop_entry: String,
    pub dead_fail: String,
}

/// A job of `name` with `payload`, stamped now.
pub fn job(name: &str, payload: &str) -> Envelope {
    let mut e = Envelope::new(JobId::new().0, name, payload.into());
    e.enqueued_at = Some(millrace_core::queue::unix_ms(std::time::SystemTime::now()));
    e
}

/// Enqueues `e`, reads it as `consumer` and returns its entry id.
async fn claim(conn: &mut Conn, q: &Queue, consumer: &str, e: Envelope) -> String {
    q.enqueue(conn, &[e]).await.unwrap_or_else(|e| fail(e));
    let read = q
        .read(conn, consumer, 1, Duration::from_millis(50), &ReadFrom::New)
        .await
        .unwrap_or_else(|e| fail(e));
    read[0].entry_id.clone()
}

/// Fails entry `entry` of `consumer` with `outcome` and `error`.
async fn fail_entry(conn: &mut Conn, q: &Queue, entry: &str, outcome: Failure, error: &str) {
    q.fail(conn, "w1", entry, outcome, error, DeadRetention::default())
        .await
        .unwrap_or_else(|e| fail(e));
}

/// Fills queue `name` through the protocol's own operations: one ready
/// job, one held by consumer "ghost" (never acks, never beats), one
/// retrying in an hour, one scheduled in an hour, two dead ("noop" with
/// "HTTP 500 from upstream", "fail" with "bad address"); "w1" beats.
pub fn seed(env: &Env, name: &str) -> Seeded {
    env.with(async |conn| {
        let q = Queue::new(name).unwrap_or_else(|e| fail(e));
        q.declare(conn).await.unwrap_or_else(|e| fail(e));
        let stuck_entry = claim(conn, &q, "ghost", job("sleep", r#"{"ms":10}"#)).await;
        let retrying = job("fail", r#"{"message":"upstream timeout"}"#);
        let entry = claim(conn, &q, "w1", retrying.clone()).await;
        let retry = Failure::Retry {
            delay: Duration::from_secs(3600),
            next_attempt: 2,
        };
        fail_entry(conn, &q, &entry, retry, "upstream timeout (attempt 1)").await;
        let dead_noop = job("noop", "{}");
        let dead_noop_entry = claim(conn, &q, "w1", dead_noop.clone()).await;
        fail_entry(
            conn,
            &q,
            &dead_noop_entry,
            Failure::Dead,
            "HTTP 500 from upstream",
        )
        .await;
        let dead_fail = job("fail", r#"{"permanent":true,"message":"bad address"}"#);
        let entry = claim(conn, &q, "w1", dead_fail.clone()).await;
        fail_entry(conn, &q, &entry, Failure::Dead, "bad address").await;
        q.heartbeat(conn, "w1").await.unwrap_or_else(|e| fail(e));
        let scheduled = job("sleep", r#"{"ms":10}"#);
        q.schedule(conn, &scheduled, When::In(Duration::from_secs(3600)))
            .await
            .unwrap_or_else(|e| fail(e));
        let ready = job("noop", "{}");
        q.enqueue(conn, std::slice::from_ref(&ready))
            .await
            .unwrap_or_else(|e| fail(e));
        // The dead entry id of the noop job (the dead stream's own id).
        let dead: Vec<millrace_core::inspect::RawEntry> =
            millrace_core::inspect::range(conn, &q.keys().dead, "-", "+", 10, false)
                .await
                .unwrap_or_else(|e| fail(e));
        let dead_noop_entry = dead
            .iter()
            .find(|e| e.get("id") == Some(dead_noop.id.as_str()))
            .map_or(dead_noop_entry, |e| e.id.clone());
        Seeded {
            ready: ready.id,
            stuck_entry,
            retrying: retrying.id,
            scheduled: scheduled.id,
            dead_noop: dead_noop.id,
            dead_noop_entry,
            dead_fail: dead_fail.id,
        }
    })
}

/// The dashboard served on a thread of its own, stopped on drop.
pub struct Dashboard {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dashboard {
    /// Serves `config` (its `listen` replaced by 127.0.0.1:0) for `env`.
    pub fn start(env: &Env, mut config: WebConfig) -> Self {
        config.listen = "127.0.0.1:0".parse().unwrap_or_else(|e| fail(e));
        Self::start_at(&env.url, config)
    }

    /// Serves `config` with the Redis at `url`.
    pub fn start_at(url: &str, config: WebConfig) -> Self {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let url = url.to_owned();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| fail(e));
            rt.block_on(async move {
                let conn = millrace_core::connect::command_connection(&url)
                    .await
                    .unwrap_or_else(|e| fail(e));
                let server = Server::bind(config, conn).await.unwrap_or_else(|e| fail(e));
                let _ = port_tx.send(server.local_addr().port());
                let _ = server
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the dashboard did not start: {e}"));
        Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The default configuration for `env`.
    pub fn config(env: &Env) -> WebConfig {
        WebConfig::new("millrace", &env.url)
    }

    /// GET `path`.
    pub fn get(&self, path: &str) -> Resp {
        http(self.port, "GET", path, &[], "")
    }

    /// POST a form to `path` as the dashboard's own page would: same
    /// origin, with the page's CSRF token.
    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        let csrf = self.csrf();
        let mut pairs: Vec<(&str, &str)> = form.to_vec();
        pairs.push(("csrf", &csrf));
        let origin = format!("http://127.0.0.1:{}", self.port);
        self.post_raw(
            path,
            &pairs,
            &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
        )
    }

    /// POST `form` with exactly `headers`.
    pub fn post_raw(&self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Resp {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut h = headers.to_vec();
        h.push(("Content-Type", "application/x-www-form-urlencoded"));
        http(self.port, "POST", path, &h, &body)
    }

    /// The CSRF token, read from a page's form.
    pub fn csrf(&self) -> String {
        let page = self.get("/queues/emails/dead").ok();
        let tail = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no csrf field: {page}"));
        tail.split('"').next().unwrap_or_default().to_owned()
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// Asserts 200 and returns the body.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body
    }

    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a 303 and returns where to.
    #[track_caller]
    pub fn redirect(&self) -> String {
        assert_eq!(self.status, 303, "{}", self.body);
        self.header("location").unwrap_or_default().to_owned()
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| fail(e));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| fail(e));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap_or_else(|e| fail(e));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap_or_else(|e| fail(e));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The text of the overview cell `col` of queue `queue` (tags stripped).
pub fn cell(page: &str, queue: &str, col: &str) -> String {
    let row = page
        .split(&format!("data-queue=\"{queue}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no row for {queue}: {page}"));
    let row = row.split("</tr>").next().unwrap_or_default();
    let cell = row
        .split(&format!("data-col=\"{col}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no column {col}: {row}"));
    let cell = cell.split("</td>").next().unwrap_or_default();
    let cell = cell.split("</div>").next().unwrap_or_default();
    strip_tags(cell.trim_start_matches('>'))
}

/// `html` without its tags.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}
