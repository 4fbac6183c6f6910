//! The relay: a loop that moves committed outbox rows to their queues,
//! woken by `NOTIFY millrace_outbox` (sent at commit by the table's
//! trigger) with a polling fallback, and that waits out Postgres or Redis
//! outages with backoff, logging one line per change of state.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use millrace_core::CancellationToken;
use millrace_core::Conn;
use millrace_core::connect::{Endpoint, TlsConfig};
use millrace_core::keys::DEFAULT_PREFIX;
use millrace_core::{ConnectError, QueueError, Redacted};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::metrics as m;
use crate::relay_batch::{BatchParams, BatchStats, relay_batch};

/// Longest a batch may take before it is abandoned (and rolled back).
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The channel the outbox trigger notifies at commit.
pub const CHANNEL: &str = "millrace_outbox";

/// Settings of a relay.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// Redis key prefix. Defaults to `millrace`.
    pub prefix: String,
    /// Most rows per batch (one Postgres transaction, one script call per
    /// queue). Defaults to 500.
    pub batch: usize,
    /// Longest wait between two looks at the outbox when no notification
    /// comes (the fallback when LISTEN is unavailable). Defaults to 1 s.
    pub poll_every: Duration,
    /// How long the mark of a relayed row is kept in the queue's relayed
    /// set when the relay could not remove it itself (it died between its
    /// Redis write and its commit): must be longer than any outage of all
    /// relays. Defaults to 7 days.
    pub mark_retention: Duration,
    /// How long the mark of a relayed row is kept after its delete has
    /// committed: longer than a batch can be in flight
    /// (`BATCH_TIMEOUT`), so a relay that lost its rows' locks (Postgres
    /// ended its session) while its Redis call was on its way still finds
    /// the mark. Zero removes marks at once (tests). Defaults to 5 min.
    pub mark_grace: Duration,
    /// How often the outbox gauges are sampled. Defaults to 5 s.
    pub sample_every: Duration,
    /// Processed-jobs rows (exactly-once effects) older than this are
    /// deleted hourly; `None` keeps them. Defaults to 14 days.
    pub processed_retention: Option<Duration>,
    /// Longest backoff while Postgres or Redis is down. Defaults to 10 s.
    pub max_backoff: Duration,
    /// A fault to inject, for the crash tests.
    #[doc(hidden)]
    pub failpoint: Option<Failpoint>,
    /// TLS files for a `rediss://` Redis URL. Defaults to none.
    pub tls: TlsConfig,
    /// The Redis URL names Redis Cluster nodes (seed URLs,
    /// comma-separated). Defaults to false.
    pub redis_cluster: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            batch: 500,
            poll_every: Duration::from_secs(1),
            mark_retention: Duration::from_secs(7 * 24 * 3600),
            mark_grace: Duration::from_secs(300),
            sample_every: Duration::from_secs(5),
            processed_retention: Some(crate::effects::DEFAULT_RETENTION),
            max_backoff: Duration::from_secs(10),
            failpoint: None,
            tls: TlsConfig::default(),
            redis_cluster: false,
        }
    }
}

impl RelayConfig {
    /// Checks the settings, with a message naming the bad one.
    pub fn validate(&self) -> Result<(), RelayError> {
        if self.batch == 0 || self.batch > 10_000 {
            return Err(RelayError::Config(format!(
                "relay batch ({}) must be from 1 to 10000",
                self.batch
            )));
        }
        if self.poll_every.is_zero() || self.sample_every.is_zero() {
            return Err(RelayError::Config(
                "relay poll and sample intervals must be above 0".into(),
            ));
        }
        if self.mark_retention < Duration::from_secs(3600) {
            return Err(RelayError::Config(format!(
                "relay mark retention ({}s) must be at least 1h: a mark must outlive any relay outage",
                self.mark_retention.as_secs()
            )));
        }
        if self.mark_grace > self.mark_retention {
            return Err(RelayError::Config(format!(
                "relay mark grace ({}s) must not exceed the mark retention ({}s)",
                self.mark_grace.as_secs(),
                self.mark_retention.as_secs()
            )));
        }
        Ok(())
    }
}

/// An injected fault (tests): after the Redis writes of a batch and before
/// its Postgres delete.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum Failpoint {
    /// Log `failpoint: paused after redis` and hang there forever (a test
    /// then SIGKILLs the process), at batch number `n` (from 0) that has
    /// rows.
    PauseAfterRedis(u64),
    /// Return an error there (the transaction rolls back, as in a crash),
    /// at every batch.
    FailAfterRedis,
}

impl Failpoint {
    /// Parses `pause-after-redis[:N]` or `fail-after-redis`.
    pub fn parse(s: &str) -> Result<Self, RelayError> {
        match s.split_once(':') {
            None if s == "pause-after-redis" => Ok(Self::PauseAfterRedis(0)),
            None if s == "fail-after-redis" => Ok(Self::FailAfterRedis),
            Some(("pause-after-redis", n)) => n
                .parse()
                .map(Self::PauseAfterRedis)
                .map_err(|_| RelayError::Config(format!("bad failpoint {s:?}"))),
            _ => Err(RelayError::Config(format!("unknown failpoint {s:?}"))),
        }
    }

    pub(crate) async fn hit(&self, batch: u64) -> Result<(), RelayError> {
        match self {
            Self::PauseAfterRedis(n) if *n == batch => {
                warn!("failpoint: paused after redis, before the outbox delete");
                std::future::pending::<()>().await;
                Ok(())
            }
            Self::PauseAfterRedis(_) => Ok(()),
            Self::FailAfterRedis => Err(RelayError::Config("failpoint: failed after redis".into())),
        }
    }
}

/// Why a relay could not start or a batch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A setting or URL is invalid.
    #[error("invalid relay configuration: {0}")]
    Config(String),
    /// Postgres failed (unreachable, or a statement failed).
    #[error("postgres: {0}")]
    Postgres(String),
    /// The outbox table does not exist yet.
    #[error(
        "the outbox table is missing: apply the migrations (`millrace outbox migrate` or millrace_postgres::migrate)"
    )]
    NoSchema,
    /// Redis could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Redis failed as a whole (connection refused, dropped, timed out).
    #[error(transparent)]
    Redis(QueueError),
}

impl RelayError {
    pub(crate) fn postgres(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("42P01")
        {
            return Self::NoSchema;
        }
        Self::Postgres(e.to_string().replace('\n', " "))
    }

    /// What failed, for state-change logs: `postgres`, `the outbox table`,
    /// `redis` or `config`.
    fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::NoSchema => "the outbox table",
            Self::Connect(_) | Self::Redis(_) => "redis",
            Self::Config(_) => "config",
        }
    }
}

/// Moves committed outbox rows to their queues. Any number may run at once
/// (each batch locks its rows with `FOR UPDATE SKIP LOCKED`).
pub struct Relay {
    pool: PgPool,
    database_url: String,
    endpoint: Endpoint,
    config: RelayConfig,
    redis: Option<Conn>,
    batches: u64,
    registered: HashSet<String>,
}

impl Relay {
    /// A relay for the outbox at `database_url` and the Redis at
    /// `redis_url`. Connects lazily: a database or Redis that is down now
    /// is waited for by [`run`](Self::run).
    pub fn new(
        database_url: &str,
        redis_url: &str,
        config: RelayConfig,
    ) -> Result<Self, RelayError> {
        config.validate()?;
        let endpoint = Endpoint::new(redis_url)
            .with_tls(config.tls.clone())
            .with_cluster(config.redis_cluster);
        endpoint.check()?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(database_url)
            .map_err(|e| {
                RelayError::Config(format!("database url {}: {e}", Redacted(database_url)))
            })?;
        Ok(Self {
            pool,
            database_url: database_url.to_owned(),
            endpoint,
            config,
            redis: None,
            batches: 0,
            registered: HashSet::new(),
        })
    }

    /// The relay's connection pool (two connections).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Relays one batch now (tests, benchmarks): at most `batch` rows.
    pub async fn relay_once(&mut self) -> Result<BatchStats, RelayError> {
        let redis = match &self.redis {
            Some(r) => r.clone(),
            None => {
                let r = self.endpoint.command_connection().await?;
                self.redis = Some(r.clone());
                r
            }
        };
        let params = BatchParams {
            prefix: &self.config.prefix,
            batch: self.config.batch,
            mark_retention: self.config.mark_retention,
            mark_grace: self.config.mark_grace,
            failpoint: self.config.failpoint.as_ref(),
        };
        // A batch that hangs (a black-holed connection) is abandoned: its
        // transaction never commits, so its rows are relayed again (and
        // found marked). Redis calls have their own 5 s reply timeout.
        let batch = relay_batch(
            &self.pool,
            &redis,
            &params,
            self.batches,
            &mut self.registered,
        );
        let stats = tokio::time::timeout(BATCH_TIMEOUT, batch)
            .await
            .map_err(|_| {
                RelayError::Postgres(format!(
                    "a batch took over {}s: abandoned",
                    BATCH_TIMEOUT.as_secs()
                ))
            })??;
        if stats.fetched > 0 {
            self.batches += 1;
        }
        Ok(stats)
    }

    /// Relays until `shutdown` is cancelled (the batch under way finishes
    /// first). Never fails: outages are waited out with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        m::describe();
        let wake = Arc::new(Notify::new());
        let listener = tokio::spawn(listen(
            self.database_url.clone(),
            wake.clone(),
            shutdown.clone(),
        ));
        let mut state = State::Ok;
        let mut backoff = Duration::from_millis(100);
        let mut next_sample = Instant::now();
        let mut next_purge = Instant::now() + Duration::from_secs(60);
        info!(prefix = %self.config.prefix, batch = self.config.batch, "outbox relay started");
        while !shutdown.is_cancelled() {
            let result = self.relay_once().await;
            let more = match result {
                Ok(stats) => {
                    if let State::Failing { kind, since, .. } = &state {
                        info!(
                            "outbox relay: {kind} is back after {:.1}s, relaying again",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    state = State::Ok;
                    backoff = Duration::from_millis(100);
                    set_now(m::OUTBOX_LAST_RELAY);
                    stats.fetched == self.config.batch
                }
                Err(e) => {
                    let kind = e.kind();
                    let label = if kind == "redis" { "redis" } else { "postgres" };
                    metrics::counter!(m::OUTBOX_RELAY_ERRORS, "kind" => label).increment(1);
                    let msg = e.to_string();
                    // One line per change of what fails, not one per retry.
                    let changed = match &state {
                        State::Ok => true,
                        State::Failing { kind: k, .. } => *k != kind,
                    };
                    if changed {
                        warn!(
                            "outbox relay: {msg}; nothing is lost, retrying with backoff (logged again when it changes)"
                        );
                        state = State::Failing {
                            kind,
                            since: Instant::now(),
                        };
                    } else {
                        debug!("outbox relay: still failing: {msg}");
                    }
                    if kind == "redis" {
                        self.redis = None;
                    }
                    let jitter = 1.0 - fastrand::f64() * 0.25;
                    let wait = backoff.mul_f64(jitter);
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            if Instant::now() >= next_sample {
                next_sample = Instant::now() + self.config.sample_every;
                self.sample().await;
            }
            if let Some(keep) = self.config.processed_retention
                && Instant::now() >= next_purge
            {
                next_purge = Instant::now() + Duration::from_secs(3600);
                match crate::effects::purge(&self.pool, keep).await {
                    Ok(n) if n > 0 => info!(rows = n, "purged old processed-jobs rows"),
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %e, "processed-jobs purge failed (retried in an hour)")
                    }
                }
            }
            if more {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.config.poll_every) => {}
            }
        }
        listener.abort();
        info!("outbox relay stopped");
    }

    /// Samples the oldest waiting row's age and the dead rows.
    async fn sample(&self) {
        let got: Result<(f64, i64), sqlx::Error> = sqlx::query_as(
            "SELECT coalesce((SELECT extract(epoch FROM clock_timestamp() - created_at)::float8
                              FROM millrace_outbox WHERE dead_at IS NULL ORDER BY id LIMIT 1), 0),
                    (SELECT count(*) FROM millrace_outbox WHERE dead_at IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await;
        match got {
            Ok((age, dead)) => {
                metrics::gauge!(m::OUTBOX_OLDEST_AGE).set(age.max(0.0));
                metrics::gauge!(m::OUTBOX_DEAD_ROWS).set(dead as f64);
            }
            Err(e) => debug!(error = %e, "outbox sample failed"),
        }
    }
}

enum State {
    Ok,
    Failing { kind: &'static str, since: Instant },
}

/// Forwards notifications to `wake`, reconnecting with backoff; the relay
/// polls meanwhile.
async fn listen(url: String, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    let mut logged = false;
    while !shutdown.is_cancelled() {
        let connected = async {
            let mut l = PgListener::connect(&url).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        let mut listener = match connected {
            Ok(l) => {
                if logged {
                    info!("outbox relay: LISTEN {CHANNEL} restored");
                    logged = false;
                }
                backoff = Duration::from_millis(200);
                l
            }
            Err(e) => {
                if !logged {
                    warn!(error = %e.to_string().replace('\n', " "), "outbox relay: cannot LISTEN; polling until it can");
                    logged = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        // Wake once after (re)connecting: notifications sent meanwhile are lost.
        wake.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => wake.notify_one(),
                Ok(None) => {
                    debug!("outbox relay: LISTEN connection lost, reconnecting");
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "outbox relay: LISTEN failed, reconnecting");
                    break;
                }
            }
        }
    }
}

fn set_now(name: &'static str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    metrics::gauge!(name).set(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_name_the_bad_setting() {
        assert!(RelayConfig::default().validate().is_ok());
        let c = RelayConfig {
            batch: 0,
            ..RelayConfig::default()
        };
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("relay batch (0) must be from 1 to 10000"), "{e}");
        let c = RelayConfig {
            mark_retention: Duration::from_secs(60),
            ..RelayConfig::default()
        };
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("mark retention (60s) must be at least 1h"),
            "{e}"
        );
        let c = RelayConfig {
            mark_grace: Duration::from_secs(8 * 24 * 3600),
            ..RelayConfig::default()
        };
        let e = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("must not exceed the mark retention"), "{e}");
    }

    #[test]
    fn failpoints_parse() {
        assert!(matches!(
            Failpoint::parse("pause-after-redis"),
            Ok(Failpoint::PauseAfterRedis(0))
        ));
        assert!(matches!(
            Failpoint::parse("pause-after-redis:3"),
            Ok(Failpoint::PauseAfterRedis(3))
        ));
        assert!(matches!(
            Failpoint::parse("fail-after-redis"),
            Ok(Failpoint::FailAfterRedis)
        ));
        assert!(Failpoint::parse("pause-after-redis:x").is_err());
        assert!(Failpoint::parse("explode").is_err());
    }
}
