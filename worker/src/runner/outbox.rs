//! The runner's outbox relay (feature `postgres`): with `--database-url`
//! (`MILLRACE_DATABASE_URL`) the worker also relays committed rows of the
//! Postgres outbox to their queues (`millrace_postgres::Relay`), and stops
//! it with the worker. Any number of workers may relay at once.

use std::time::Duration;

use millrace_postgres::{Relay, RelayConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::RunnerError;

/// The relay's flags.
#[derive(Debug, clap::Args)]
pub(crate) struct OutboxArgs {
    /// Postgres URL of the outbox to relay (password never logged); no
    /// relay runs without it.
    #[arg(long, env = "MILLRACE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Apply the outbox migrations at start (safe from many replicas).
    #[arg(long, env = "MILLRACE_DATABASE_MIGRATE")]
    pub database_migrate: bool,
    /// Most outbox rows relayed per batch.
    #[arg(long, env = "MILLRACE_RELAY_BATCH", default_value_t = 500)]
    pub relay_batch: usize,
    /// Longest wait between looks at the outbox when no NOTIFY comes.
    #[arg(long, env = "MILLRACE_RELAY_POLL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub relay_poll: Duration,
    /// Processed-jobs rows (exactly-once effects) older than this are
    /// deleted (0s keeps them).
    #[arg(long, env = "MILLRACE_PROCESSED_RETENTION", default_value = "14days", value_parser = humantime::parse_duration)]
    pub processed_retention: Duration,
}

/// Starts the relay when a database URL is given.
pub(crate) async fn start(
    args: &OutboxArgs,
    redis_url: &str,
    redis_cluster: bool,
    tls: millrace_core::connect::TlsConfig,
    prefix: &str,
    shutdown: CancellationToken,
) -> Result<Option<JoinHandle<()>>, RunnerError> {
    let Some(url) = args.database_url.as_deref() else {
        return Ok(None);
    };
    let mut config = RelayConfig::default();
    config.prefix = prefix.to_owned();
    config.tls = tls;
    config.redis_cluster = redis_cluster;
    config.batch = args.relay_batch;
    config.poll_every = args.relay_poll;
    config.processed_retention =
        (!args.processed_retention.is_zero()).then_some(args.processed_retention);
    let relay = Relay::new(url, redis_url, config).map_err(Box::new)?;
    if args.database_migrate {
        millrace_postgres::migrate(relay.pool())
            .await
            .map_err(|source| RunnerError::Migrate {
                url: millrace_core::Redacted(url).to_string(),
                source: Box::new(source),
            })?;
        info!("outbox migrations applied");
    }
    Ok(Some(tokio::spawn(relay.run(shutdown))))
}
