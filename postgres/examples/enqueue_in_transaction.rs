//! Enqueue in a transaction: an invoice row and the job that sends it
//! commit together, or not at all. The README's "Enqueue in a transaction"
//! example, compiled and run by the tests.
//!
//! ```sh
//! MILLRACE_DATABASE_URL=postgres://app@127.0.0.1/app \
//! MILLRACE_REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo run -p millrace-postgres --example enqueue_in_transaction
//! ```
//!
//! It applies the migrations, commits one invoice with its job, rolls
//! another back, then relays once (a worker with `--database-url`, or
//! `millrace relay`, does that all the time) and prints what reached Redis.

#![allow(clippy::print_stdout, reason = "an example binary")]

use std::time::Duration;

use millrace::{EnqueueOptions, Job, outbox};
use millrace_postgres::{Relay, RelayConfig};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

#[derive(Debug, Serialize, Deserialize)]
struct SendInvoice {
    invoice_id: i64,
}

impl Job for SendInvoice {
    const NAME: &'static str = "send_invoice";
    const QUEUE: &'static str = "billing";
}

/// Creates an invoice and, in the same transaction, the job that sends it.
async fn create_invoice(
    pool: &PgPool,
    total_cents: i64,
    commit: bool,
) -> Result<i64, Box<dyn std::error::Error>> {
    let mut tx = pool.begin().await?;
    let invoice_id: i64 =
        sqlx::query_scalar("INSERT INTO invoices (total_cents) VALUES ($1) RETURNING id")
            .bind(total_cents)
            .fetch_one(&mut *tx)
            .await?;
    // Written into millrace_outbox inside `tx`: bad input (a payload that
    // does not serialize, a bad queue name, too large) fails here.
    outbox::enqueue(&mut tx, &SendInvoice { invoice_id }).await?;
    // Options as with Client::enqueue_with: a reminder in a week.
    outbox::enqueue_with(
        &mut tx,
        &SendInvoice { invoice_id },
        EnqueueOptions::new()
            .queue("reminders")
            .delay(Duration::from_secs(7 * 24 * 3600)),
    )
    .await?;
    if commit {
        tx.commit().await?; // the jobs exist from here on, exactly once
    } else {
        tx.rollback().await?; // no invoice, and no job, ever
    }
    Ok(invoice_id)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url = std::env::var("MILLRACE_DATABASE_URL")?;
    let redis_url =
        std::env::var("MILLRACE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let pool = PgPool::connect(&database_url).await?;
    // Once per deploy (or `millrace outbox migrate`): idempotent.
    millrace::outbox::migrate(&pool).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS invoices (id bigserial PRIMARY KEY, total_cents bigint NOT NULL)")
        .execute(&pool)
        .await?;

    let kept = create_invoice(&pool, 4200, true).await?;
    let dropped = create_invoice(&pool, 999, false).await?;
    println!("committed invoice {kept}, rolled back invoice {dropped}");

    // What the relay in every worker does, once.
    let mut relay = Relay::new(&database_url, &redis_url, RelayConfig::default())?;
    let stats = relay.relay_once().await?;
    println!("relayed {} job(s) to Redis", stats.relayed);
    Ok(())
}
