//! # millrace-postgres
//!
//! Millrace on Postgres, through `sqlx`:
//!
//! - **The outbox** ([`outbox`]): jobs written into the table
//!   `millrace_outbox` inside the application's own transaction (the
//!   producer SDK's `millrace::outbox::enqueue`, feature `postgres`, builds
//!   on [`outbox::insert`]). Rolled back: no job, ever. Committed: exactly
//!   one job, always.
//! - **The relay** ([`Relay`]): moves committed rows to their queues in
//!   batches, woken by `LISTEN`/`NOTIFY` with a polling fallback, safe with
//!   any number of relays (`FOR UPDATE SKIP LOCKED`), exactly once (each
//!   row's mark is checked and set in the same Lua script as its `XADD`).
//!   It runs inside `millrace-worker` (`--database-url`) or alone
//!   (`millrace relay`).
//! - **Exactly-once effects** ([`effects`]): a handler's database writes
//!   commit together with a processed-jobs row keyed by the job, so a
//!   second delivery commits nothing twice.
//!
//! The tables come from embedded migrations: [`migrate`] (or `millrace
//! outbox migrate`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use millrace_postgres::{Relay, RelayConfig};
//! let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
//! millrace_postgres::migrate(&pool).await?;
//! let relay = Relay::new("postgres://app@127.0.0.1/app", "redis://127.0.0.1:6379", RelayConfig::default())?;
//! relay.run(millrace_core::CancellationToken::new()).await;
//! # Ok(()) }
//! ```

pub mod effects;
pub mod metrics;
pub mod outbox;
mod relay;
mod relay_batch;

pub use relay::{Failpoint, Relay, RelayConfig, RelayError};
pub use relay_batch::BatchStats;

/// Re-exported so users name one version of it.
pub use sqlx;

/// The table in which [`migrate`] records the migrations it applied: its
/// own, so an application's sqlx migrations (in `_sqlx_migrations`) and
/// ours never see each other's versions.
pub const MIGRATIONS_TABLE: &str = "millrace_migrations";

/// Creates or upgrades Millrace's tables (`millrace_outbox`,
/// `millrace_processed_jobs`) and the outbox's notify trigger. Idempotent,
/// and safe to run from several processes at once (sqlx takes an advisory
/// lock).
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator.run(pool).await
}
