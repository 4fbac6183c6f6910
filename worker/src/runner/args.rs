//! The runner's flags: one per [`WorkerConfig`] setting, each with its
//! `MILLRACE_*` variable (the list of `crate::config::VARIABLES`), plus the
//! process's own (threads, logging, the HTTP port, the record file and the
//! outbox relay).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use millrace_core::{DeadRetention, HistoryRetention};

use crate::WorkerConfig;
use crate::runner::TlsArgs;

/// Runs Millrace jobs from Redis Streams.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub(crate) struct Args {
    /// Redis URL (password is never logged).
    #[arg(
        long,
        env = "MILLRACE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub(crate) redis_url: String,
    /// The URL names Redis Cluster nodes (seed URLs, comma-separated).
    #[arg(long, env = "MILLRACE_REDIS_CLUSTER", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) redis_cluster: bool,
    /// Replicas that must confirm each batch of acks and failed attempts
    /// (WAIT); 0 waits for none. A shortfall is logged, never fatal.
    #[arg(long, env = "MILLRACE_WAIT_REPLICAS", default_value_t = 0)]
    pub(crate) wait_replicas: u32,
    /// How long --wait-replicas waits.
    #[arg(long, env = "MILLRACE_WAIT_TIMEOUT", default_value = "1s", value_parser = crate::config::parse_duration)]
    pub(crate) wait_timeout: Duration,
    /// TLS for a rediss:// URL: a private CA, a client certificate.
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Key prefix.
    #[arg(long, env = "MILLRACE_PREFIX", default_value = "millrace")]
    pub(crate) prefix: String,
    /// Queues to work, comma-separated; defaults to the queues of the
    /// registered jobs.
    #[arg(long, env = "MILLRACE_QUEUES", value_delimiter = ',')]
    pub(crate) queues: Vec<String>,
    /// Jobs run at once, per queue.
    #[arg(long, env = "MILLRACE_CONCURRENCY", default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Lease of a running job's entry (e.g. 30s).
    #[arg(long, env = "MILLRACE_LEASE", default_value = "30s", value_parser = crate::config::parse_duration)]
    pub(crate) lease: Duration,
    /// How often leases are renewed; defaults to a third of the lease.
    #[arg(long, env = "MILLRACE_RENEW_EVERY", value_parser = crate::config::parse_duration)]
    pub(crate) renew_every: Option<Duration>,
    /// How often expired leases are reclaimed.
    #[arg(long, env = "MILLRACE_RECLAIM_EVERY", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub(crate) reclaim_every: Duration,
    /// Serve a queue's priority lanes by weight instead of strictly:
    /// `high,default,low` weights of the first pick of each read (e.g.
    /// 6,3,1), so low never starves.
    #[arg(long, env = "MILLRACE_LANE_WEIGHTS")]
    pub(crate) lane_weights: Option<crate::LaneWeights>,
    /// Deliveries without outcome before an entry is dead-lettered.
    #[arg(long, env = "MILLRACE_MAX_DELIVERIES", default_value_t = 5)]
    pub(crate) max_deliveries: u32,
    /// How long running jobs may finish at shutdown.
    #[arg(long, env = "MILLRACE_GRACE", default_value = "25s", value_parser = crate::config::parse_duration)]
    pub(crate) grace: Duration,
    /// Longest a read blocks waiting for jobs; defaults to 2s, or half the
    /// lease when that is shorter.
    #[arg(long, env = "MILLRACE_BLOCK", value_parser = crate::config::parse_duration)]
    pub(crate) block: Option<Duration>,
    /// Time limit of an attempt for jobs that set none.
    #[arg(long, env = "MILLRACE_JOB_TIMEOUT", value_parser = crate::config::parse_duration)]
    pub(crate) job_timeout: Option<Duration>,
    /// How long a job no handler here knows (an unknown name, a newer wire
    /// version: producers deployed ahead of workers) is deferred with
    /// backoff before it is dead-lettered (0s = dead-letter at once).
    #[arg(long, env = "MILLRACE_UNKNOWN_JOB_WINDOW", default_value = "15m", value_parser = crate::config::parse_duration)]
    pub(crate) unknown_job_window: Duration,
    /// Dead-letter stream: keep about this many entries (0 = unbounded).
    #[arg(long, env = "MILLRACE_DEAD_MAX_LEN", default_value_t = 100_000)]
    pub(crate) dead_max_len: u64,
    /// Dead-letter stream: drop entries older than this (0s = never).
    #[arg(long, env = "MILLRACE_DEAD_MAX_AGE", default_value = "30days", value_parser = crate::config::parse_duration)]
    pub(crate) dead_max_age: Duration,
    /// History of finished jobs per queue: keep about this many entries
    /// (0 = no history; see also --no-history).
    #[arg(long, env = "MILLRACE_HISTORY_MAX_LEN", default_value_t = 10_000)]
    pub(crate) history_max_len: u64,
    /// History of finished jobs: drop entries older than this (0s = never).
    #[arg(long, env = "MILLRACE_HISTORY_MAX_AGE", default_value = "24h", value_parser = crate::config::parse_duration)]
    pub(crate) history_max_age: Duration,
    /// Keep no history of finished jobs (`millrace show` then says "no job"
    /// for a job that succeeded).
    #[arg(long, conflicts_with_all = ["history_max_len", "history_max_age"])]
    pub(crate) no_history: bool,
    /// How long the result of a job type registered with a result is kept
    /// after it succeeds.
    #[arg(long, env = "MILLRACE_RESULT_TTL", default_value = "1h", value_parser = crate::config::parse_duration)]
    pub(crate) result_ttl: Duration,
    /// Append the id of every job that succeeds to this file (tests, chaos).
    #[arg(long, env = "MILLRACE_RECORD_RUNS")]
    pub(crate) record_runs: Option<PathBuf>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "MILLRACE_METRICS_ADDR", default_value = "0.0.0.0")]
    pub(crate) metrics_addr: IpAddr,
    /// Port of /metrics, /healthz and /readyz (0 picks a free port, logged
    /// at start).
    #[arg(long, env = "MILLRACE_METRICS_PORT", default_value_t = 9464)]
    pub(crate) metrics_port: u16,
    /// How often per-queue gauges are sampled from Redis.
    #[arg(long, env = "MILLRACE_SAMPLE_EVERY", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub(crate) sample_every: Duration,
    /// Runtime threads; defaults to one per core. On a box shared with
    /// Redis, 1 can do more jobs per CPU second (see BENCHMARKS.md).
    #[arg(long, env = "MILLRACE_THREADS")]
    pub(crate) threads: Option<usize>,
    /// A periodic job, repeatable: NAME=CRON=JOB=JSON (e.g.
    /// 'tick=0 */5 * * * *=noop={}'), options in brackets after the name
    /// (NAME[tz:Europe/Paris,missed:once,queue:reports,grace:30s]). Its
    /// queue defaults to the first of --queues. In the variable, one per
    /// line.
    #[arg(
        long,
        env = "MILLRACE_SCHEDULE",
        value_name = "SPEC",
        value_delimiter = '\n'
    )]
    pub(crate) schedule: Vec<String>,
    /// Log format.
    #[arg(long, env = "MILLRACE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    /// The Postgres outbox's relay, run beside the worker when a database
    /// URL is given.
    #[cfg(feature = "postgres")]
    #[command(flatten)]
    pub(crate) outbox: super::outbox::OutboxArgs,
}

impl Args {
    /// The worker's configuration from the flags (validated by
    /// `WorkerBuilder::build`).
    pub(crate) fn config(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.redis_url.clone());
        config.redis_cluster = self.redis_cluster;
        config.durability =
            millrace_core::connect::Durability::new(self.wait_replicas, self.wait_timeout);
        config.tls = self.tls.config();
        config.prefix.clone_from(&self.prefix);
        config.queues.clone_from(&self.queues);
        config.concurrency = self.concurrency;
        config = config.with_lease(self.lease, self.renew_every, self.block);
        config.reclaim_every = self.reclaim_every;
        config.max_deliveries = self.max_deliveries;
        config.grace = self.grace;
        config.job_timeout = self.job_timeout;
        config.unknown_job_window = self.unknown_job_window;
        config.dead_retention = DeadRetention::new(self.dead_max_len, self.dead_max_age);
        config.sample_every = self.sample_every;
        config.history = if self.no_history {
            HistoryRetention::off()
        } else {
            HistoryRetention::new(self.history_max_len, self.history_max_age)
        };
        config.result_ttl = self.result_ttl;
        config.lane_weights = self.lane_weights;
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// `WorkerConfig::from_env` reads the variables of the runner's flags.
    #[test]
    fn from_env_reads_the_runners_variables() {
        let command = Args::command();
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        for (name, _) in crate::config::VARIABLES {
            assert!(envs.iter().any(|e| e == name), "{name} is no flag's env");
        }
    }

    /// The flags fill the configuration the user's closure is given.
    #[test]
    fn flags_fill_the_worker_config() {
        let args = Args::try_parse_from([
            "my-worker",
            "--redis-url",
            "redis://10.0.0.1:6380",
            "--queues",
            "billing,email",
            "--lease",
            "1m",
            "--max-deliveries",
            "9",
            "--dead-max-len",
            "7",
            "--tls-ca-file",
            "/etc/ca.pem",
            "--tls-cert-file",
            "/etc/c.pem",
            "--tls-key-file",
            "/etc/k.pem",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let config = args.config();
        assert_eq!(
            config.tls,
            crate::TlsConfig::default()
                .ca_file("/etc/ca.pem")
                .client_cert("/etc/c.pem", "/etc/k.pem")
        );
        assert_eq!(config.redis_url, "redis://10.0.0.1:6380");
        assert_eq!(config.queues, ["billing", "email"]);
        assert_eq!(config.lease, Duration::from_secs(60));
        assert_eq!(config.max_deliveries, 9);
        assert_eq!(config.history, HistoryRetention::default());
        assert_eq!(config.result_ttl, Duration::from_secs(3600));
        assert!(config.validate().is_ok());
        let off =
            Args::try_parse_from(["my-worker", "--no-history"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!off.config().history.is_on());
        let capped = Args::try_parse_from([
            "my-worker",
            "--history-max-len",
            "50",
            "--history-max-age",
            "10m",
            "--result-ttl",
            "5s",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let c = capped.config();
        assert_eq!(
            c.history,
            HistoryRetention::new(50, Duration::from_secs(600))
        );
        assert_eq!(c.result_ttl, Duration::from_secs(5));
        let both = Args::try_parse_from(["my-worker", "--no-history", "--history-max-len", "5"]);
        assert!(
            both.is_err(),
            "--no-history conflicts with --history-max-len"
        );
    }

    /// A client certificate without its key is refused by clap.
    #[test]
    fn a_tls_cert_needs_its_key() {
        let err = Args::try_parse_from(["my-worker", "--tls-cert-file", "c.pem"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--tls-key-file"), "{err}");
    }

    /// Without `--queues` the worker consumes its jobs' queues.
    #[test]
    fn queues_default_to_the_jobs_queues() {
        let args = Args::try_parse_from(["my-worker"]).unwrap_or_else(|e| panic!("{e}"));
        assert!(args.config().queues.is_empty());
    }
}
