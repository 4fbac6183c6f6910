//! A user's own worker binary: two jobs and the runner (README, "Using it").
use millrace_worker::{Job, JobContext, JobError, runner::Runner};
use serde::{Deserialize, Serialize};

/// Sends an invoice.
#[derive(Serialize, Deserialize)]
struct SendInvoice {
    invoice_id: u64,
}
impl Job for SendInvoice {
    const NAME: &'static str = "send_invoice";
}

/// Resizes an image.
#[derive(Serialize, Deserialize)]
struct Resize {
    width: u32,
}
impl Job for Resize {
    const NAME: &'static str = "resize";
    const QUEUE: &'static str = "images";
}

async fn send_invoice(job: SendInvoice, _: JobContext) -> Result<(), JobError> {
    tracing::info!(invoice = job.invoice_id, "sent");
    Ok(())
}

async fn resize(job: Resize, _: JobContext) -> Result<(), JobError> {
    tracing::info!(width = job.width, "resized");
    Ok(())
}

fn main() -> std::process::ExitCode {
    Runner::new(|worker| worker.register(send_invoice).register(resize)).run()
}
