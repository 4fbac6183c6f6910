//! # millrace
//!
//! What an application depends on to enqueue background jobs with Millrace:
//! a [`Client`] with [`enqueue`](Client::enqueue),
//! [`enqueue_many`](Client::enqueue_many) (one round trip per batch),
//! [`enqueue_in`](Client::enqueue_in) / [`enqueue_at`](Client::enqueue_at)
//! and [`EnqueueOptions`] (queue, attempts, job id, trace context).
//! With feature `postgres`, [`outbox`](crate::outbox) enqueues inside a
//! Postgres transaction (sqlx): the job exists if and only if the
//! transaction commits.
//!
//! ```no_run
//! use millrace::{Client, Job};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: u64 }
//! impl Job for SendInvoice { const NAME: &'static str = "send_invoice"; }
//!
//! # async fn demo() -> Result<(), millrace::EnqueueError> {
//! let client = Client::connect("redis://127.0.0.1:6379").await?;
//! let id = client.enqueue(&SendInvoice { invoice_id: 42 }).await?;
//! println!("enqueued {id}");
//! # Ok(()) }
//! ```

mod client;
mod options;
#[cfg(feature = "postgres")]
pub mod outbox;

pub use client::{Client, ClientBuilder, EnqueueError};
pub use millrace_core::{Job, JobId, RetryPolicy};
pub use options::EnqueueOptions;
