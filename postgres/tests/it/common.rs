//! A private Redis and PostgreSQL per test, jobs, and counts of what
//! reached Redis.

use std::collections::HashMap;
use std::time::Duration;

use millrace::Job;
use millrace_core::redis;
use millrace_postgres::{Relay, RelayConfig};
use millrace_tests::{PostgresServer, RedisServer};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub const WAIT: Duration = Duration::from_secs(60);

/// A test job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ping {
    pub n: u64,
}

impl Job for Ping {
    const NAME: &'static str = "ping";
    const QUEUE: &'static str = "outbox";
}

/// A Redis, a PostgreSQL with the migrations applied, and a pool.
pub struct Env {
    pub redis: RedisServer,
    pub pg: PostgresServer,
    pub db_url: String,
    pub pool: PgPool,
}

pub async fn env() -> Env {
    env_with(millrace_tests::Persistence::None).await
}

pub async fn env_with(persistence: millrace_tests::Persistence) -> Env {
    let redis = RedisServer::start_with(persistence).unwrap_or_else(|e| panic!("{e}"));
    let pg = PostgresServer::start().unwrap_or_else(|e| panic!("{e}"));
    let db_url = if pg.is_external() {
        // A fresh database per test on the shared server.
        let admin = PgPool::connect(&pg.url())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let name = format!("millrace_test_{}", fastrand::u64(..));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        pg.url_of(&name)
    } else {
        pg.url()
    };
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&db_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}\n{}", pg.log()));
    millrace_postgres::migrate(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Env {
        redis,
        pg,
        db_url,
        pool,
    }
}

impl Env {
    pub fn config(&self) -> RelayConfig {
        let mut c = RelayConfig::default();
        c.poll_every = Duration::from_millis(200);
        c.max_backoff = Duration::from_millis(500);
        c.sample_every = Duration::from_millis(200);
        // Marks go at once after the commit, so tests can count them.
        c.mark_grace = Duration::ZERO;
        c
    }

    pub fn relay(&self) -> Relay {
        self.relay_with(self.config())
    }

    pub fn relay_with(&self, config: RelayConfig) -> Relay {
        Relay::new(&self.db_url, &self.redis.url(), config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Relays batches until the outbox has nothing ready.
    pub async fn drain(&self) {
        let mut relay = self.relay();
        loop {
            let s = relay.relay_once().await.unwrap_or_else(|e| panic!("{e}"));
            if s.fetched == 0 {
                return;
            }
        }
    }

    pub fn conn(&self) -> redis::Connection {
        self.redis.connection().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Job id → how many times it is in `queue` (ready stream and delayed).
    pub fn jobs_in(&self, queue: &str) -> HashMap<String, usize> {
        let mut conn = self.conn();
        let mut out = HashMap::new();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(format!("millrace:{{{queue}}}:stream"))
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("{e}"));
        for (_, fields) in entries {
            let id = fields
                .chunks(2)
                .find(|kv| kv[0] == "id")
                .map(|kv| kv[1].clone())
                .unwrap_or_default();
            *out.entry(id).or_default() += 1;
        }
        let delayed: Vec<String> = redis::cmd("HKEYS")
            .arg(format!("millrace:{{{queue}}}:jobs"))
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("{e}"));
        for id in delayed {
            *out.entry(id).or_default() += 1;
        }
        out
    }

    /// Rows left in the outbox (dead ones too).
    pub async fn outbox_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM millrace_outbox")
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Outbox row ids of the marks of a queue that would be kept for the
    /// whole retention (7 days) rather than the grace after a commit (5 min).
    pub fn marks_kept(&self, queue: &str) -> Vec<i64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let retention = 7 * 24 * 3600 * 1000u64;
        let grace_end = now - retention + 301_000;
        let marks: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("millrace:{{{queue}}}:relayed"))
            .arg(format!("({grace_end}"))
            .arg("+inf")
            .arg("BYSCORE")
            .query(&mut self.conn())
            .unwrap_or_else(|e| panic!("{e}"));
        marks
            .iter()
            .map(|m| {
                m.split(':')
                    .next()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_else(|| panic!("a mark without a row id: {m}"))
            })
            .collect()
    }

    /// Ids of the rows left in the outbox.
    pub async fn outbox_ids(&self) -> std::collections::HashSet<i64> {
        sqlx::query_scalar::<_, i64>("SELECT id FROM millrace_outbox")
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect()
    }

    /// Marks left in a queue's relayed set.
    pub fn marks(&self, queue: &str) -> usize {
        redis::cmd("ZCARD")
            .arg(format!("millrace:{{{queue}}}:relayed"))
            .query(&mut self.conn())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Asserts every id of `committed` is in `jobs` exactly once and nothing
/// else is there.
pub fn assert_exactly_once(jobs: &HashMap<String, usize>, committed: &[String]) {
    let twice: Vec<_> = jobs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "jobs relayed more than once: {twice:?}");
    let missing: Vec<_> = committed
        .iter()
        .filter(|id| !jobs.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} committed jobs missing, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert_eq!(
        jobs.len(),
        committed.len(),
        "jobs that were never committed reached Redis"
    );
}

/// Polls `check` until it holds, or panics after `WAIT`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
