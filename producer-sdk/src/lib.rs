//! # millrace
//!
//! What an application depends on to enqueue background jobs with Millrace:
//! a [`Client`] with [`enqueue`](Client::enqueue),
//! [`enqueue_many`](Client::enqueue_many) (one round trip per batch),
//! [`enqueue_in`](Client::enqueue_in) / [`enqueue_at`](Client::enqueue_at)
//! and [`EnqueueOptions`] (queue, attempts, job id, trace context).
//! With feature `postgres`, [`outbox`] enqueues inside a
//! Postgres transaction (sqlx): the job exists if and only if the
//! transaction commits.
//!
//! Everything a producer names comes from this crate (`Client`, `Job`,
//! `JobId`, `EnqueueOptions`, `RetryPolicy`, the errors): no need to
//! depend on `millrace-core`.
//!
//! ```no_run
//! use millrace::{Client, EnqueueError, EnqueueOptions, Job, JobId, RetryPolicy};
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendInvoice { invoice_id: u64 }
//! impl Job for SendInvoice {
//!     const NAME: &'static str = "send_invoice";
//!     fn retry() -> RetryPolicy { RetryPolicy::exponential(10) }
//! }
//!
//! # async fn demo() -> Result<(), EnqueueError> {
//! let client = Client::connect("redis://127.0.0.1:6379").await?;
//! let id: JobId = client.enqueue(&SendInvoice { invoice_id: 42 }).await?;
//! println!("enqueued {id}");
//! let options = EnqueueOptions::new().queue("billing").delay(std::time::Duration::from_secs(60));
//! client.enqueue_with(&SendInvoice { invoice_id: 43 }, options).await?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `tls` | no | `rediss://` URLs through rustls (the `ring` provider, the system's trust store), and [`ClientBuilder::tls`] files: a private CA, a client certificate for mutual TLS |
//! | `postgres` | no | [`outbox`]: enqueue inside a Postgres transaction (sqlx), through `millrace-postgres` |
//! | `otel` | no | with no [`EnqueueOptions::trace`](EnqueueOptions::trace()), the envelope carries the current `tracing` span's OpenTelemetry context (`tracing-opentelemetry`) as its W3C traceparent |

mod client;
mod options;
#[cfg(feature = "otel")]
mod otel;
#[cfg(feature = "postgres")]
pub mod outbox;
mod prepare;
mod status;

pub use client::{Client, ClientBuilder, EnqueueError};
/// The errors an [`EnqueueError`] carries.
pub use millrace_core::connect::TlsConfig;
/// Unique jobs and cancel: the key and its mode, what an enqueue did, what
/// a cancel did.
pub use millrace_core::{Cancel, EnqueueStatus, Enqueued, Unique, UniqueMode};
pub use millrace_core::{ConfigError, ConnectError, QueueError};
/// The job contract, re-exported so a producer depends on this crate alone.
pub use millrace_core::{Job, JobId, Priority, RetryPolicy};
/// A job's status ([`Client::status`]) and a finished job's history record.
pub use millrace_core::{
    JobStatus,
    history::{Finished, Outcome},
};
pub use options::EnqueueOptions;
pub use status::ResultError;
