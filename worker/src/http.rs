//! The worker's HTTP port: `/metrics` (Prometheus text exposition),
//! `/healthz` (200 while the process serves) and `/readyz` (200 when
//! connected to Redis with every consumer group present and not shutting
//! down, else 503 with the reason).
//!
//! A small HTTP/1.1 server on `hyper` (server + http1 only): the Prometheus
//! exporter's own listener serves nothing but the metrics, and probes
//! belong on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::health::Health;

/// How often the exporter's upkeep runs (drains histogram buffers).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// A connection idle this long without a full request header is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at accept (a scraper and a
/// few probes need a handful).
const MAX_CONNECTIONS: usize = 64;

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound (in use, or no permission).
    #[error("cannot listen on {addr} for metrics and health: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Binds the metrics and health port. Port 0 picks a free one; see
/// [`TcpListener::local_addr`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `stop`
/// fires, running the exporter's upkeep on the side.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Health,
    stop: CancellationToken,
) {
    let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = upkeep.tick() => metrics.run_upkeep(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        debug!(%peer, "too many metrics connections: closing this one");
                        continue;
                    };
                    let metrics = metrics.clone();
                    let health = health.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let res = respond(&req, &metrics, &health);
                            async move { Ok::<_, Infallible>(res) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service);
                        if let Err(e) = conn.await {
                            debug!(%peer, error = %e, "metrics connection ended with an error");
                        }
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

fn respond(
    req: &Request<Incoming>,
    metrics: &PrometheusHandle,
    health: &Health,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut res = text(StatusCode::OK, metrics.render());
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            res
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match health.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
