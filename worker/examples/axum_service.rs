//! An HTTP service that enqueues in a handler and runs its own worker in the
//! same process: an axum app whose state holds a `millrace::Client`,
//! `POST /invoices/{id}` enqueues a `SendInvoice` job and answers 202 with
//! its id, and a `millrace_worker::Worker` given the same state runs it.
//! Ctrl-C stops both: the server stops taking requests and the worker stops
//! claiming, lets running jobs finish and hands the rest back.
//!
//! ```sh
//! cargo run -p millrace-worker --example axum_service  # MILLRACE_REDIS_URL, PORT
//! curl -i -X POST http://127.0.0.1:3000/invoices/42
//! ```
//!
//! `MILLRACE_REDIS_URL` defaults to `redis://127.0.0.1:6379`, `PORT` to
//! 3000; `INVOICES_SENT` names a file that gets a line (`job_id invoice_id`)
//! per invoice sent (the tests wait on it).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use millrace::{Client, EnqueueError};
use millrace_worker::{CancellationToken, Job, JobContext, JobError, Worker, WorkerConfig};
use serde::{Deserialize, Serialize};

/// Sends invoice `invoice_id`.
#[derive(Serialize, Deserialize)]
struct SendInvoice {
    invoice_id: u64,
}
impl Job for SendInvoice {
    const NAME: &'static str = "send_invoice";
    const QUEUE: &'static str = "billing";
}

/// The app's shared state: the HTTP handlers' (`State<App>`) and the job
/// handlers' (`ctx.state::<App>()`).
#[derive(Clone)]
struct App {
    client: Client,
    sent_log: Option<PathBuf>,
}

/// The worker's handler: "sends" the invoice. Its `?`s retry the job.
async fn send_invoice(job: SendInvoice, ctx: JobContext) -> Result<(), JobError> {
    let app = ctx.state::<App>()?;
    if let Some(path) = &app.sent_log {
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(log, "{} {}", ctx.job_id, job.invoice_id)?;
    }
    tracing::info!(invoice = job.invoice_id, job = %ctx.job_id, "invoice sent");
    Ok(())
}

/// `202 Accepted` with the job's id.
#[derive(Serialize)]
struct Enqueued {
    job_id: String,
}

/// `POST /invoices/{id}`: enqueues the invoice's job.
async fn enqueue_invoice(
    State(app): State<App>,
    Path(invoice_id): Path<u64>,
) -> Result<(StatusCode, Json<Enqueued>), ApiError> {
    let id = app.client.enqueue(&SendInvoice { invoice_id }).await?;
    let job_id = id.to_string();
    Ok((StatusCode::ACCEPTED, Json(Enqueued { job_id })))
}

/// An enqueue that failed, as `503 Service Unavailable`.
struct ApiError(EnqueueError);

impl From<EnqueueError> for ApiError {
    fn from(e: EnqueueError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self.0, "enqueue failed");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot enqueue, try again\n",
        )
            .into_response()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url =
        std::env::var("MILLRACE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().with_context(|| format!("PORT={p:?}"))?,
        Err(_) => 3000,
    };
    let app = App {
        client: Client::connect(&url).await?,
        sent_log: std::env::var_os("INVOICES_SENT").map(PathBuf::from),
    };

    let worker = Worker::builder(WorkerConfig::new(&url))
        .state(app.clone())
        .register(send_invoice)
        .build()?;
    let router = axum::Router::new()
        .route("/invoices/{id}", post(enqueue_invoice))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    tracing::info!(port, "listening");

    // One token stops both: Ctrl-C, or either half ending on its own.
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
        }
        on_ctrl_c.cancel();
    });
    let http = async {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        served
    };
    let work = async {
        let worked = worker.run(shutdown.clone()).await;
        shutdown.cancel();
        worked
    };
    let (served, worked) = tokio::join!(http, work);
    served.context("http server")?;
    worked.context("worker")?;
    tracing::info!("stopped");
    Ok(())
}
