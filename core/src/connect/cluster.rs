//! Redis Cluster connections: redis-rs's cluster client over the
//! endpoint's seed URLs, with the same timeouts and TLS files as a single
//! server's connections.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};

use super::{CONNECT_TIMEOUT, Conn, Endpoint, RESPONSE_TIMEOUT, Readers, tls};
use crate::error::{ConnectError, Redacted};

/// How many times the cluster client retries a command (redirects,
/// reconnects, a failover under way) before it fails.
const RETRIES: u32 = 8;

/// A cluster client for `endpoint`'s seeds, each command's reply awaited
/// at most `response` (and at most twice that with its retries).
pub(super) fn client(
    endpoint: &Endpoint,
    response: Duration,
) -> Result<ClusterClient, ConnectError> {
    let fail = |reason: String| ConnectError {
        url: Redacted(&endpoint.url).to_string(),
        reason,
    };
    let seeds = endpoint.seeds();
    if seeds.is_empty() {
        return Err(fail("no Redis Cluster seed URL given".into()));
    }
    let tls = seeds.iter().any(|s| tls::wants_tls(s));
    if !tls && !endpoint.tls.is_empty() {
        return Err(fail(
            "TLS files are given but the URLs are not rediss:// (use rediss:// for TLS)".into(),
        ));
    }
    #[cfg(not(feature = "tls"))]
    if tls {
        return Err(fail(
            "rediss:// needs TLS support, which this build lacks (cargo feature `tls`)".into(),
        ));
    }
    let builder = ClusterClientBuilder::new(seeds)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(response)
        .overall_response_timeout(Some(response * 2))
        .retries(RETRIES);
    #[cfg(feature = "tls")]
    let builder = if tls {
        tls::install_crypto_provider();
        if endpoint.tls.is_empty() {
            builder
        } else {
            builder.certs(endpoint.tls.certificates().map_err(fail)?)
        }
    } else {
        builder
    };
    builder.build().map_err(|e| endpoint.error(&e))
}

/// The shared cluster command connection. Fails at once with the seeds
/// and the reason when no seed answers.
pub(super) async fn command_connection(endpoint: &Endpoint) -> Result<Conn, ConnectError> {
    client(endpoint, RESPONSE_TIMEOUT)?
        .get_async_connection()
        .await
        .map(Conn::Cluster)
        .map_err(|e| endpoint.error(&e))
}

/// Blocking readers on a cluster: each its own cluster connection whose
/// replies may take `response` (BLOCK plus a margin).
pub(super) fn readers(endpoint: &Endpoint, response: Duration) -> Result<Readers, ConnectError> {
    client(endpoint, response).map(|c| Readers::Cluster(Box::new(c)))
}
