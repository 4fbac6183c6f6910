//! `millrace outbox migrate|status|revive` (the Postgres outbox) and
//! `millrace relay` (a standalone relay). These need only Postgres (and
//! Redis for the relay), never the command connection the other commands
//! open first.

use std::time::Duration;

use anyhow::Context;
use millrace_core::CancellationToken;
use millrace_postgres::outbox as table;
use millrace_postgres::{Failpoint, Relay, RelayConfig};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;

use crate::{duration, output};

/// Where the outbox lives.
#[derive(Debug, clap::Args)]
pub struct Db {
    /// Postgres URL of the database holding the outbox (password never shown).
    #[arg(long, env = "MILLRACE_DATABASE_URL")]
    database_url: String,
}

/// `millrace outbox ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create or upgrade the outbox and processed-jobs tables (idempotent).
    Migrate(Db),
    /// Rows waiting, failing and dead, the oldest row's age, and the rows
    /// that failed or were refused with their errors.
    Status(StatusArgs),
    /// Make dead rows relayable again, after fixing their cause.
    Revive(ReviveArgs),
}

/// Flags of `millrace outbox status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    db: Db,
    /// Most problem rows listed.
    #[arg(long, default_value_t = 20)]
    limit: i64,
}

/// Flags of `millrace outbox revive`.
#[derive(Debug, clap::Args)]
pub struct ReviveArgs {
    #[command(flatten)]
    db: Db,
    /// Outbox row ids (see `millrace outbox status`).
    ids: Vec<i64>,
    /// Every dead row.
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

/// Flags of `millrace relay`.
#[derive(Debug, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    db: Db,
    /// Most rows per batch.
    #[arg(long, env = "MILLRACE_RELAY_BATCH", default_value_t = 500)]
    batch: usize,
    /// Longest wait between looks at the outbox without a notification.
    #[arg(long, env = "MILLRACE_RELAY_POLL", default_value = "1s", value_parser = duration)]
    poll: Duration,
    /// Apply the migrations first.
    #[arg(long, env = "MILLRACE_DATABASE_MIGRATE")]
    migrate: bool,
    /// Log format.
    #[arg(long, env = "MILLRACE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Fault injection for the crash tests.
    #[arg(long, env = "MILLRACE_RELAY_FAILPOINT", hide = true)]
    failpoint: Option<String>,
}

async fn pool(db: &Db) -> anyhow::Result<sqlx::PgPool> {
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&db.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to Postgres at {}",
                millrace_core::Redacted(&db.database_url)
            )
        })
}

#[derive(Debug, Serialize)]
struct StatusOut {
    waiting: i64,
    failing: i64,
    dead: i64,
    oldest_age_ms: u64,
    problems: Vec<Problem>,
}

#[derive(Debug, Serialize)]
struct Problem {
    id: i64,
    queue: String,
    job_id: String,
    job: String,
    attempts: i32,
    dead: bool,
    error: Option<String>,
}

/// Runs `millrace outbox ...`.
pub async fn run(c: Command, json: bool) -> anyhow::Result<()> {
    match c {
        Command::Migrate(db) => {
            let pool = pool(&db).await?;
            millrace_postgres::migrate(&pool)
                .await
                .context("migration failed")?;
            if json {
                output::print_json(&serde_json::json!({ "migrated": true }))?;
            } else {
                println!("outbox tables are up to date");
            }
        }
        Command::Status(a) => {
            let pool = pool(&a.db).await?;
            let mut conn = pool.acquire().await?;
            let s = table::status(&mut conn).await.context(
                "cannot read the outbox (migrations applied? `millrace outbox migrate`)",
            )?;
            let problems = table::problems(&mut conn, a.limit).await?;
            let out = StatusOut {
                waiting: s.waiting,
                failing: s.failing,
                dead: s.dead,
                oldest_age_ms: (s.oldest_age_seconds * 1000.0) as u64,
                problems: problems
                    .into_iter()
                    .map(|p| Problem {
                        id: p.id,
                        queue: p.queue,
                        job_id: p.job_id,
                        job: p.name,
                        attempts: p.attempts,
                        dead: p.dead,
                        error: p.last_error,
                    })
                    .collect(),
            };
            if json {
                return output::print_json(&out);
            }
            println!(
                "waiting {}  failing {}  dead {}  oldest {}",
                out.waiting,
                out.failing,
                out.dead,
                output::ms(out.oldest_age_ms)
            );
            if !out.problems.is_empty() {
                let mut t =
                    output::table(&["ID", "QUEUE", "JOB ID", "JOB", "ATTEMPTS", "STATE", "ERROR"]);
                for p in &out.problems {
                    t.add_row(vec![
                        p.id.to_string(),
                        p.queue.clone(),
                        p.job_id.clone(),
                        p.job.clone(),
                        p.attempts.to_string(),
                        if p.dead { "dead" } else { "retrying" }.to_owned(),
                        output::clip(p.error.as_deref().unwrap_or(""), 80),
                    ]);
                }
                output::print_table(&t);
            }
        }
        Command::Revive(a) => {
            if a.ids.is_empty() && !a.all {
                anyhow::bail!("name the rows to revive, or --all");
            }
            let pool = pool(&a.db).await?;
            let mut conn = pool.acquire().await?;
            let n = table::revive(&mut conn, &a.ids).await?;
            if json {
                output::print_json(&serde_json::json!({ "revived": n }))?;
            } else {
                println!("revived {}", output::plural(n, "row", "rows"));
            }
        }
    }
    Ok(())
}

/// Runs `millrace relay` until SIGINT or SIGTERM.
pub async fn relay(
    a: RelayArgs,
    redis_url: &str,
    redis_cluster: bool,
    tls: millrace_core::connect::TlsConfig,
    prefix: &str,
) -> anyhow::Result<()> {
    init_logging(&a.log_format);
    if a.migrate {
        let pool = pool(&a.db).await?;
        millrace_postgres::migrate(&pool)
            .await
            .context("migration failed")?;
    }
    let mut config = RelayConfig::default();
    config.prefix = prefix.to_owned();
    config.batch = a.batch;
    config.poll_every = a.poll;
    config.failpoint = a.failpoint.as_deref().map(Failpoint::parse).transpose()?;
    config.tls = tls;
    config.redis_cluster = redis_cluster;
    let relay = Relay::new(&a.db.database_url, redis_url, config)?;
    let stop = CancellationToken::new();
    let signals = stop.clone();
    tokio::spawn(async move {
        crate::stop_signal().await;
        signals.cancel();
    });
    relay.run(stop).await;
    Ok(())
}

fn init_logging(format: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
