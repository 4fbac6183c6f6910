//! Redis Cluster connections: redis-rs's cluster client over the
//! endpoint's seed URLs, with the same timeouts and TLS files as a single
//! server's connections.

use std::time::Duration;

use std::sync::Arc;

use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;

use super::conn::at_key;
use super::{CONNECT_TIMEOUT, Conn, Endpoint, RESPONSE_TIMEOUT, Readers, tls};
use crate::error::{ConnectError, Redacted};
use crate::slot::SlotMap;

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

/// Blocking readers on a cluster: each a plain connection to the master
/// serving its queue, whose replies may take `response` (BLOCK plus a
/// margin). A cluster connection per reader would open a connection to
/// every node, replicas included, for each reader.
pub(super) fn readers(endpoint: &Endpoint, response: Duration) -> Result<Readers, ConnectError> {
    let client = client(endpoint, RESPONSE_TIMEOUT)?;
    Ok(Readers::Cluster(Arc::new(ClusterReaders {
        client,
        endpoint: endpoint.clone(),
        response,
    })))
}

/// Where a cluster's blocking readers come from: a short-lived cluster
/// connection reads the slot map (`CLUSTER SLOTS`, as the cluster client
/// does) from the master serving a reader's key, and the reader connects
/// to the endpoint that master announces, alone. The announced endpoint is
/// what the cluster client itself connects to: a hostname when the
/// cluster announces hostnames (what a TLS certificate names), else an
/// IP. After a failover or a slot move the reader's reads fail (an error,
/// a dropped connection, a `MOVED`), the worker drops it and asks again.
pub struct ClusterReaders {
    client: ClusterClient,
    endpoint: Endpoint,
    response: Duration,
}

impl ClusterReaders {
    /// A plain connection to the master serving `key`.
    pub(super) async fn get(&self, key: &str) -> RedisResult<MultiplexedConnection> {
        // A fresh cluster connection each time, dropped once it named the
        // master: it reads the cluster's current map (a long-lived one may
        // still point at a master that just died).
        let mut router = self.client.get_async_connection().await?;
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply: redis::Value = at_key(&mut router, &slots, key).await?;
        let master = SlotMap::parse(&reply)
            .and_then(|map| map.master_for_key(key).cloned())
            .ok_or_else(|| {
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "CLUSTER SLOTS names no master for the queue's slot",
                ))
            })?;
        let addr = match master.host.as_str() {
            // No endpoint announced: the node that answered (the master
            // itself) is meant; it tells its own address.
            "" => self_address(&mut router, key).await?,
            "?" => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the cluster announces no endpoint for the queue's master (?)",
                )));
            }
            host if host.contains(':') => format!("[{host}]:{}", master.port),
            host => format!("{host}:{}", master.port),
        };
        drop(router);
        let seed = self.endpoint.seeds().first().copied().unwrap_or_default();
        let url = node_url(seed, &addr);
        let node = Endpoint::new(url.as_str())
            .with_tls(self.endpoint.tls.clone())
            .client()
            .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string())))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(self.response));
        node.get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// The address (`host:port`) the master serving `key` is reached at, as it
/// sees it (`CLIENT INFO`'s `laddr`): for a cluster that announces empty
/// endpoints.
async fn self_address(router: &mut ClusterConnection, key: &str) -> RedisResult<String> {
    let mut info = redis::cmd("CLIENT");
    info.arg("INFO");
    let info: String = at_key(router, &info, key).await?;
    info.split(' ')
        .find_map(|f| f.strip_prefix("laddr="))
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Client,
                "CLIENT INFO named no server address (laddr)",
            ))
        })
}

/// `seed` (`redis[s]://[user:pass@]host:port[/db]`) with its host and port
/// replaced by `addr` (`host:port`): the same scheme, user and TLS.
fn node_url(seed: &str, addr: &str) -> String {
    let Some((scheme, rest)) = seed.split_once("://") else {
        return format!("redis://{addr}");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let user = match authority.rfind('@') {
        Some(i) => &authority[..=i],
        None => "",
    };
    format!("{scheme}://{user}{addr}{path}")
}

#[cfg(test)]
mod tests {
    use super::node_url;

    #[test]
    fn node_urls_keep_scheme_user_and_path() {
        assert_eq!(
            node_url("rediss://bob:pw@10.0.0.1:7000/0", "10.0.0.2:7003"),
            "rediss://bob:pw@10.0.0.2:7003/0"
        );
        assert_eq!(
            node_url("redis://h:1", "127.0.0.1:7001"),
            "redis://127.0.0.1:7001"
        );
        assert_eq!(node_url("nonsense", "h:2"), "redis://h:2");
    }
}
