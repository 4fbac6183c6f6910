//! Worker configuration: every knob with its default, and `validate()` with
//! exact messages. Binaries turn flags and environment into this struct;
//! the library reads the environment only when asked
//! ([`WorkerConfig::from_env`]).

use std::time::Duration;

use millrace_core::connect::{Durability, Endpoint, TlsConfig};
use millrace_core::keys::{DEFAULT_PREFIX, validate_queue_name};
use millrace_core::{ConfigError, DeadRetention, HistoryRetention};

mod env;

pub use env::{VARIABLES, parse_duration};

/// How a worker runs. Its `Debug` output hides the Redis password.
#[derive(Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Redis URL (`redis://`, `rediss://`, `redis+unix://`). Defaults to
    /// `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// `redis_url` names Redis Cluster nodes (one or more seed URLs,
    /// comma-separated): connect with the cluster client. Defaults to
    /// false.
    pub redis_cluster: bool,
    /// Replicas that must confirm the worker's acks and failed attempts
    /// (`WAIT` after each batch; see `QueueCtx::confirm`). Defaults to
    /// none. A shortfall is logged, never fatal: an unconfirmed outcome
    /// lost in a failover means the job runs again, not that it is lost.
    pub durability: Option<Durability>,
    /// TLS files for a `rediss://` URL: a private CA, a client certificate
    /// for mutual TLS. Defaults to none.
    pub tls: TlsConfig,
    /// Key prefix. Defaults to `millrace`.
    pub prefix: String,
    /// Queues to work, each with its own fetch loop. Defaults to empty:
    /// the queues of the registered jobs (`Job::QUEUE`). When given, every
    /// registered job's queue must be among them (see
    /// `WorkerBuilder::allow_unconsumed_jobs`).
    pub queues: Vec<String>,
    /// Jobs run at once, per queue. Defaults to 64.
    pub concurrency: usize,
    /// Longest a read waits for new jobs. Defaults to 2 s.
    pub block: Duration,
    /// An entry's lease: a running job's entry idle this long is taken over
    /// by another worker. Defaults to 30 s.
    pub lease: Duration,
    /// How often running jobs' leases are renewed. Defaults to 10 s.
    pub renew_every: Duration,
    /// How often expired leases are looked for. Defaults to 5 s.
    pub reclaim_every: Duration,
    /// Deliveries without an outcome (worker crashes) before an entry is
    /// dead-lettered. Defaults to 5.
    pub max_deliveries: u32,
    /// Longest the promoter sleeps between looks at the delayed set; it wakes
    /// sooner when a job is due. Defaults to 1 s.
    pub promote_every: Duration,
    /// On shutdown, how long running jobs may take to finish before they are
    /// cancelled and handed back. Defaults to 25 s.
    pub grace: Duration,
    /// Time limit of an attempt for jobs that set none. Defaults to none.
    pub job_timeout: Option<Duration>,
    /// How long an entry no handler here can run (an unknown job name, a
    /// newer wire version: producers deployed ahead of workers) is deferred
    /// with backoff (1 s doubling to 64 s) before it is dead-lettered,
    /// counted on server time from its first deferral. Zero dead-letters at
    /// once. Defaults to 15 min.
    pub unknown_job_window: Duration,
    /// Dead-letter stream retention. Defaults to 100,000 entries / 30 days.
    pub dead_retention: DeadRetention,
    /// History of finished jobs (succeeded, dead) per queue: a capped
    /// stream written by the scripts that write each outcome. Defaults to
    /// about 10,000 entries / 24 h; [`HistoryRetention::off`] writes
    /// nothing.
    pub history: HistoryRetention,
    /// How long a job's result (job types registered with
    /// `register_with_result`) is kept after it succeeds. Defaults to 1 h.
    pub result_ttl: Duration,
    /// Most entries acknowledged in one round trip. Defaults to 512.
    pub ack_batch: usize,
    /// Consumers silent this long with nothing pending are removed from the
    /// group. Defaults to 1 h.
    pub prune_consumers_after: Duration,
    /// Consumer name; defaults to `host-pid-random`, unique per process.
    pub consumer: Option<String>,
    /// How the lanes of a queue (priorities) are served: `None` (the
    /// default) is strict, `high` before `default` before `low`; weights
    /// give each lane a share of the first pick of every read, so `low`
    /// never starves (see [`LaneWeights`](crate::LaneWeights)).
    pub lane_weights: Option<crate::LaneWeights>,
    /// How often the per-queue gauges (ready, pending, delayed, dead,
    /// consumers, oldest ready age, backlog) are sampled from Redis, which
    /// also refreshes readiness. Defaults to 5 s.
    pub sample_every: Duration,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field(
                "redis_url",
                &millrace_core::Redacted(&self.redis_url).to_string(),
            )
            .field("redis_cluster", &self.redis_cluster)
            .field("durability", &self.durability)
            .field("tls", &self.tls)
            .field("prefix", &self.prefix)
            .field("queues", &self.queues)
            .field("concurrency", &self.concurrency)
            .field("block", &self.block)
            .field("lease", &self.lease)
            .field("renew_every", &self.renew_every)
            .field("reclaim_every", &self.reclaim_every)
            .field("max_deliveries", &self.max_deliveries)
            .field("promote_every", &self.promote_every)
            .field("grace", &self.grace)
            .field("job_timeout", &self.job_timeout)
            .field("unknown_job_window", &self.unknown_job_window)
            .field("dead_retention", &self.dead_retention)
            .field("history", &self.history)
            .field("result_ttl", &self.result_ttl)
            .field("ack_batch", &self.ack_batch)
            .field("prune_consumers_after", &self.prune_consumers_after)
            .field("consumer", &self.consumer)
            .field("sample_every", &self.sample_every)
            .field("lane_weights", &self.lane_weights)
            .finish()
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_cluster: false,
            durability: None,
            tls: TlsConfig::default(),
            prefix: DEFAULT_PREFIX.to_owned(),
            queues: Vec::new(),
            concurrency: 64,
            block: Duration::from_secs(2),
            lease: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            reclaim_every: Duration::from_secs(5),
            max_deliveries: 5,
            promote_every: Duration::from_secs(1),
            grace: Duration::from_secs(25),
            job_timeout: None,
            unknown_job_window: Duration::from_secs(15 * 60),
            dead_retention: DeadRetention::default(),
            history: HistoryRetention::default(),
            result_ttl: Duration::from_secs(3600),
            ack_batch: 512,
            prune_consumers_after: Duration::from_secs(3600),
            consumer: None,
            sample_every: Duration::from_secs(5),
            lane_weights: None,
        }
    }
}

impl WorkerConfig {
    /// The default configuration for a Redis URL.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            ..Self::default()
        }
    }

    /// Where Redis is: the URL, the TLS files and whether it is a cluster.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.redis_url.clone())
            .with_tls(self.tls.clone())
            .with_cluster(self.redis_cluster)
    }

    /// Checks the configuration; the message names the value and the rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        self.tls.validate()?;
        for q in &self.queues {
            validate_queue_name(q)?;
        }
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return bad(format!(
                "concurrency ({}) must be from 1 to 10000",
                self.concurrency
            ));
        }
        if self.lease <= self.renew_every {
            return bad(format!(
                "lease ({}) must exceed the renew interval ({})",
                fmt(self.lease),
                fmt(self.renew_every)
            ));
        }
        if self.block.is_zero() || self.block >= self.lease {
            return bad(format!(
                "block ({}) must be above zero and below the lease ({})",
                fmt(self.block),
                fmt(self.lease)
            ));
        }
        for (name, d) in [
            ("renew interval", self.renew_every),
            ("reclaim interval", self.reclaim_every),
            ("promote interval", self.promote_every),
            ("consumer prune threshold", self.prune_consumers_after),
            ("sample interval", self.sample_every),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be above zero"));
            }
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries must be at least 1".into());
        }
        if self.ack_batch == 0 || self.ack_batch > 4096 {
            return bad(format!(
                "ack batch ({}) must be from 1 to 4096",
                self.ack_batch
            ));
        }
        if self.result_ttl < Duration::from_millis(1) {
            return bad("result TTL must be at least 1ms".into());
        }
        if self.history.max_len > 100_000_000 {
            return bad(format!(
                "history max len ({}) must be at most 100000000 (0 turns the history off)",
                self.history.max_len
            ));
        }
        if self.job_timeout.is_some_and(|t| t.is_zero()) {
            return bad("job timeout must be above zero".into());
        }
        Ok(())
    }
}

fn fmt(d: Duration) -> String {
    format!("{d:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_redis_password() {
        let c = WorkerConfig::new("redis://app:s3cret@cache:6379");
        let text = format!("{c:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("cache:6379"), "{text}");
    }

    #[test]
    fn defaults_are_valid() {
        assert!(WorkerConfig::default().validate().is_ok());
    }

    #[test]
    fn messages_name_the_values() {
        let mut c = WorkerConfig {
            lease: Duration::from_secs(10),
            renew_every: Duration::from_secs(15),
            ..WorkerConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "lease (10s) must exceed the renew interval (15s)"
        );
        c = WorkerConfig {
            concurrency: 0,
            ..WorkerConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "concurrency (0) must be from 1 to 10000"
        );
        c = WorkerConfig {
            queues: vec![],
            ..WorkerConfig::default()
        };
        assert!(c.validate().is_ok(), "empty queues follow the jobs");
        c = WorkerConfig {
            queues: vec!["a b".into()],
            ..WorkerConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("invalid queue name")
        );
        c = WorkerConfig {
            block: Duration::from_secs(40),
            ..WorkerConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("block (40s)")
        );
    }
}
