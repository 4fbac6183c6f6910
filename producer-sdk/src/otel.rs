//! Feature `otel`: the current `tracing` span's OpenTelemetry context as a
//! W3C `traceparent`, for an envelope enqueued without an explicit trace.

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The current span's OpenTelemetry span context as a version-00
/// `traceparent`, or `None` when there is no valid one (no current span, or
/// no `tracing-opentelemetry` layer in the subscriber).
///
/// Formatted by hand (`00-{trace id}-{span id}-{flags}`, lower-case hex)
/// rather than through a propagator: the envelope carries one field, and
/// the W3C propagator lives in `opentelemetry_sdk`, which a producer need
/// not depend on. The trace state is not carried.
pub(crate) fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    Some(format!(
        "00-{:032x}-{:016x}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    ))
}
