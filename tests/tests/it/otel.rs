//! Feature `otel`: the producer's `tracing` span and the worker's `job`
//! span in one OpenTelemetry trace, through `tracing-opentelemetry`, with
//! no traceparent passed by hand.

use std::sync::{Arc, Mutex};

use millrace::Client;
use opentelemetry::trace::{TraceContextExt, TracerProvider};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use crate::common::*;

/// Keeps every exported span in memory. (Written here rather than
/// `opentelemetry_sdk`'s `InMemorySpanExporter`: that one is behind the
/// SDK's `testing` feature, which also builds its metrics, logs and async
/// runtimes.)
#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(batch);
        Ok(())
    }
}

impl Spans {
    fn named(&self, name: &str) -> SpanData {
        let spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        spans
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no `{name}` span exported: {spans:?}"))
    }
}

/// Current-thread runtime: the worker's tasks run on this thread, under
/// this test's scoped subscriber. The OpenTelemetry layer is filtered at
/// INFO, the usual level: the `job` span is INFO with the feature on.
#[tokio::test]
async fn the_job_span_continues_the_producers_opentelemetry_trace() {
    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("millrace-test"))
        .with_filter(LevelFilter::INFO);
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(otel));

    let redis = redis();
    let url = redis.url();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let worker = spawn(probe_worker(&url, tx));
    let client = Client::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let checkout = tracing::info_span!("checkout");
    let producer = checkout.context().span().span_context().clone();
    assert!(producer.is_valid(), "the producer span has an OTel context");
    client
        .enqueue(&probe_job("otel", 1))
        .instrument(checkout.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(checkout);
    let seen = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the probe did not run"))
        .unwrap_or_else(|| panic!("the probe channel closed"));
    worker.shutdown().await;

    let traceparent = format!(
        "00-{:032x}-{:016x}-01",
        producer.trace_id(),
        producer.span_id()
    );
    assert_eq!(
        seen.trace.as_deref(),
        Some(traceparent.as_str()),
        "the envelope carries the current span's context by itself"
    );
    let job = spans.named("job");
    assert_eq!(job.span_context.trace_id(), producer.trace_id());
    assert_eq!(job.parent_span_id, producer.span_id());
    assert!(job.parent_span_is_remote);
    let exported = spans.named("checkout");
    assert_eq!(exported.span_context.span_id(), producer.span_id());
    if let Err(e) = provider.shutdown() {
        panic!("{e}");
    }
}
