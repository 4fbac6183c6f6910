//! Shared helpers: a private Redis with jobs in every state, running the
//! `millrace` binary, and a real `millrace-worker`.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::queue::When;
use millrace_core::{DeadRetention, Envelope, Failure, JobId, Queue, ReadFrom};
use millrace_tests::{RedisOptions, RedisServer};

pub const WAIT: Duration = Duration::from_secs(30);
pub const Q: &str = "emails";

/// A private Redis server (or a local Redis Cluster) and the `millrace`
/// binary pointed at it.
pub struct Env {
    /// The server; on a cluster, one of its nodes.
    pub redis: RedisServer,
    /// Its URL; on a cluster, every node's, comma-separated.
    pub url: String,
    /// The cluster's other nodes (empty for a single server).
    others: Vec<RedisServer>,
}

/// What a run of the binary printed.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts success and returns self.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "millrace failed: {self:#?}");
        self
    }

    /// Asserts a one-line error with exit code 1 and returns the line.
    #[track_caller]
    pub fn err(self) -> String {
        assert_eq!(self.code, 1, "expected exit 1: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0].to_owned()
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

pub fn millrace_bin() -> &'static str {
    env!("CARGO_BIN_EXE_millrace")
}

impl Env {
    pub fn new() -> Self {
        Self::with(RedisOptions::default())
    }

    /// A private Redis started with `options` (TLS, extra arguments).
    pub fn with(options: RedisOptions) -> Self {
        let redis = RedisServer::start_options(options)
            .unwrap_or_else(|e| panic!("cannot start redis: {e}"));
        let url = redis.url();
        Self {
            redis,
            url,
            others: Vec::new(),
        }
    }

    /// A local Redis Cluster (three masters, three replicas); the binary
    /// runs with `MILLRACE_REDIS_CLUSTER=1`.
    pub fn cluster() -> Self {
        let cluster = millrace_tests::RedisCluster::start()
            .unwrap_or_else(|e| panic!("cannot start the cluster: {e}"));
        let url = cluster.url();
        let mut others = cluster.into_nodes();
        let redis = others.remove(0);
        Self { redis, url, others }
    }

    fn is_cluster(&self) -> bool {
        !self.others.is_empty()
    }

    /// Where Redis is, with the cluster flag when it is a cluster.
    pub fn endpoint(&self) -> millrace_core::connect::Endpoint {
        millrace_core::connect::Endpoint::new(self.url.as_str()).with_cluster(self.is_cluster())
    }

    /// The binary with this env's Redis, no colour, stdin from nowhere.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(millrace_bin());
        c.env("MILLRACE_REDIS_URL", &self.url)
            // Never relay (or touch) a database outbox from a test.
            .env_remove("MILLRACE_DATABASE_URL")
            .env_remove("MILLRACE_PREFIX")
            .env("NO_COLOR", "1")
            .args(args);
        if self.is_cluster() {
            c.env("MILLRACE_REDIS_CLUSTER", "1");
        } else {
            c.env_remove("MILLRACE_REDIS_CLUSTER");
        }
        c
    }

    /// Runs the binary with stdin closed (not a terminal).
    pub fn run(&self, args: &[&str]) -> Out {
        let out = self
            .cmd(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run millrace: {e}"));
        Out::from(out)
    }

    /// Runs the binary with `input` on a piped stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Out {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run millrace: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        Out::from(child.wait_with_output().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Runs `args` with `--json` and returns the parsed output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.run(&a).ok().json()
    }

    pub fn conn(&self) -> redis::Connection {
        self.redis.connection().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The stats of queue `q` from `millrace --json queues`.
    pub fn stats(&self, q: &str) -> serde_json::Value {
        let all = self.json(&["queues"]);
        all.as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == q).cloned())
            .unwrap_or_else(|| panic!("queue {q} not listed: {all}"))
    }

    /// Runs async protocol operations for test setup.
    pub fn setup<T>(&self, f: impl AsyncFnOnce(&mut Conn) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let endpoint = if self.is_cluster() {
                self.endpoint()
            } else {
                self.redis.endpoint()
            };
            let mut conn = endpoint
                .command_connection()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            f(&mut conn).await
        })
    }
}

/// Job ids of the seeded jobs, one per state.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// A `noop` waiting in the ready stream.
    pub ready: String,
    /// A `sleep` held by consumer "ghost", which never acks nor beats.
    pub stuck: String,
    /// The stuck job's entry id.
    pub stuck_entry: String,
    /// A `fail` job waiting an hour for attempt 2.
    pub retrying: String,
    /// A `sleep` scheduled an hour from now.
    pub scheduled: String,
    /// A `noop` dead-lettered with "HTTP 500 from upstream".
    pub dead_noop: String,
    /// A `fail` dead-lettered with "bad address".
    pub dead_fail: String,
}

fn job(name: &str, payload: &str) -> Envelope {
    let mut e = Envelope::new(JobId::new().0, name, payload.into());
    e.enqueued_at = Some(millrace_core::queue::unix_ms(std::time::SystemTime::now()));
    e
}

/// Enqueues `e` and reads it as `consumer`; returns its entry id.
async fn take(conn: &mut Conn, q: &Queue, consumer: &str, e: Envelope) -> String {
    q.enqueue(conn, &[e])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = q
        .read(
            conn,
            consumer,
            1,
            Duration::from_millis(100),
            &ReadFrom::New,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got[0].entry_id.clone()
}

/// Puts real jobs in every state on queue [`Q`], through the protocol's own
/// operations (the same scripts a worker runs): ready, pending with a dead
/// consumer, retrying, scheduled and dead. Consumer "w1" is alive (it sent
/// a heartbeat) and holds nothing.
pub fn seed(env: &Env) -> Seeded {
    env.setup(async |conn| {
        let q = Queue::new(Q).unwrap_or_else(|e| panic!("{e}"));
        q.declare(conn).await.unwrap_or_else(|e| panic!("{e}"));
        let stuck = job("sleep", r#"{"ms":10}"#);
        let stuck_entry = take(conn, &q, "ghost", stuck.clone()).await;

        let retrying = job("fail", r#"{"message":"upstream timeout"}"#);
        let entry = take(conn, &q, "w1", retrying.clone()).await;
        let retry = Failure::Retry {
            delay: Duration::from_secs(3600),
            next_attempt: 2,
        };
        q.fail(
            conn,
            "w1",
            &entry,
            retry,
            "upstream timeout (attempt 1)",
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));

        let dead_noop = job("noop", "{}");
        let entry = take(conn, &q, "w1", dead_noop.clone()).await;
        q.fail(
            conn,
            "w1",
            &entry,
            Failure::Dead,
            "HTTP 500 from upstream",
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let dead_fail = job("fail", r#"{"permanent":true,"message":"bad address"}"#);
        let entry = take(conn, &q, "w1", dead_fail.clone()).await;
        q.fail(
            conn,
            "w1",
            &entry,
            Failure::Dead,
            "bad address",
            DeadRetention::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        q.heartbeat(conn, "w1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let scheduled = job("sleep", r#"{"ms":10}"#);
        q.schedule(conn, &scheduled, When::In(Duration::from_secs(3600)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        let ready = job("noop", "{}");
        q.enqueue(conn, std::slice::from_ref(&ready))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Seeded {
            ready: ready.id,
            stuck: stuck.id,
            stuck_entry,
            retrying: retrying.id,
            scheduled: scheduled.id,
            dead_noop: dead_noop.id,
            dead_fail: dead_fail.id,
        }
    })
}

/// A real `millrace-worker`, killed on drop.
pub struct Worker(millrace_tests::WorkerProcess);

impl Worker {
    /// Starts a worker on `queues` recording every job that succeeds.
    pub fn start(env: &Env, queues: &str, extra: &[&str]) -> Self {
        Self(
            millrace_tests::WorkerProcess::start(&env.url, queues, extra)
                .unwrap_or_else(|e| panic!("cannot start millrace-worker: {e}")),
        )
    }

    /// How many times job `id` succeeded so far.
    pub fn runs_of(&self, id: &str) -> usize {
        self.0.runs_of(id)
    }

    /// The ids of every job that succeeded so far, in order.
    pub fn runs(&self) -> Vec<String> {
        self.0.runs()
    }

    /// Waits until job `id` succeeded at least once.
    #[track_caller]
    pub fn wait_ran(&self, id: &str) {
        wait_for(&format!("job {id} to run"), || self.runs_of(id) > 0);
    }
}

/// Polls `check` until it holds, or panics after [`WAIT`].
#[track_caller]
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    millrace_tests::wait_for(what, WAIT, || check().then_some(()))
        .unwrap_or_else(|e| panic!("{e}"));
}
