//! Feature `otel`: the envelope's W3C `traceparent` as the `job` span's
//! OpenTelemetry parent, through `tracing-opentelemetry`.

use millrace_core::trace::TraceParent;
use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Makes the producer's span (`parent`, a remote span context) the
/// OpenTelemetry parent of `span`, so that an exporter shows producer and
/// job in one trace. Does nothing when the subscriber has no
/// `tracing-opentelemetry` layer or `span` is disabled.
pub(crate) fn set_remote_parent(span: &tracing::Span, parent: &TraceParent) {
    // `TraceParent::parse` checked the hex and the non-zero ids already.
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(parent.trace_id()),
        SpanId::from_hex(parent.parent_id()),
    ) else {
        return;
    };
    let flags = if parent.sampled() {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    // An error only says there is no OpenTelemetry layer: nothing to parent.
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}
