//! Connection setup, the one place every component connects through (the
//! SDK, the worker, the CLI, the outbox relay, the benchmark): a
//! multiplexed, self-reconnecting connection for commands, a pool of
//! dedicated connections for blocking reads, and the one-line error when
//! Redis cannot be reached. An [`Endpoint`] is where Redis is and how to
//! reach it (the URL and its [`TlsConfig`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), millrace_core::ConnectError> {
//! use millrace_core::connect::{Endpoint, TlsConfig};
//! // A private CA and a client certificate (mutual TLS); `rediss://`
//! // needs the cargo feature `tls`.
//! let tls = TlsConfig::default()
//!     .ca_file("/etc/millrace/ca.pem")
//!     .client_cert("/etc/millrace/client.pem", "/etc/millrace/client.key");
//! let conn = Endpoint::new("rediss://redis.internal:6380")
//!     .with_tls(tls)
//!     .command_connection()
//!     .await?;
//! # drop(conn); Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{ConnectError, Redacted};

mod cluster;
mod conn;
mod tls;

pub use cluster::ClusterReaders;
pub use conn::{Conn, Durability, ReaderConn, Readers};
pub use tls::{ENV_CA_FILE, ENV_CERT_FILE, ENV_KEY_FILE, TlsConfig};

/// How long to wait for a TCP connection before giving up. 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may wait for its reply. 5 s.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Redis is and how to reach it. Its `Debug` hides the URL's
/// password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoint {
    /// Redis URL: `redis://`, `rediss://` (TLS, cargo feature `tls`) or
    /// `redis+unix://`. For a Redis Cluster, one or more seed node URLs,
    /// comma-separated (any reachable one finds the rest).
    pub url: String,
    /// TLS files for a `rediss://` URL. Defaults to none (the system's
    /// certificate authorities, no client certificate).
    pub tls: TlsConfig,
    /// The URL names Redis Cluster nodes: connect with the cluster client
    /// (slots, MOVED/ASK redirects, failovers). Defaults to false.
    pub cluster: bool,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &Redacted(&self.url).to_string())
            .field("tls", &self.tls)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Endpoint {
    /// The endpoint at `url`, without TLS files.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: TlsConfig::default(),
            cluster: false,
        }
    }

    /// The same endpoint as a Redis Cluster (`true`) or a single server.
    #[must_use]
    pub fn with_cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// The seed URLs: the URL split at commas, blanks dropped.
    pub fn seeds(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The same endpoint with these TLS files.
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// A redis-rs client: the URL parsed and the TLS files read. Fails in
    /// one line naming the URL (password hidden) and the reason: a
    /// malformed URL, a file that cannot be read, TLS files with a URL that
    /// is not `rediss://`, or `rediss://` in a build without TLS.
    pub fn client(&self) -> Result<redis::Client, ConnectError> {
        let fail = |reason: String| ConnectError {
            url: Redacted(&self.url).to_string(),
            reason,
        };
        if self.url.contains(',') {
            return Err(fail(
                "several URLs are Redis Cluster seeds: turn on cluster mode (--redis-cluster, MILLRACE_REDIS_CLUSTER=1)".into(),
            ));
        }
        let tls = tls::wants_tls(&self.url);
        if !tls && !self.tls.is_empty() {
            return Err(fail(
                "TLS files are given but the URL is not rediss:// (use rediss:// for TLS)".into(),
            ));
        }
        #[cfg(not(feature = "tls"))]
        if tls {
            return Err(fail(
                "rediss:// needs TLS support, which this build lacks (cargo feature `tls`)".into(),
            ));
        }
        #[cfg(feature = "tls")]
        if tls {
            tls::install_crypto_provider();
            if !self.tls.is_empty() {
                let certificates = self.tls.certificates().map_err(fail)?;
                return redis::Client::build_with_tls(self.url.as_str(), certificates)
                    .map_err(|e| self.error(&e));
            }
        }
        redis::Client::open(self.url.as_str()).map_err(|e| self.error(&e))
    }

    /// Checks the URL(s) and TLS files without connecting: the one-line
    /// error [`client`](Self::client) (or, for a cluster, the cluster
    /// client) would give.
    pub fn check(&self) -> Result<(), ConnectError> {
        if self.cluster {
            cluster::client(self, RESPONSE_TIMEOUT).map(drop)
        } else {
            self.client().map(drop)
        }
    }

    /// Connects the shared command connection: multiplexed (it pipelines
    /// concurrent commands) and reconnecting by itself with backoff. Fails
    /// at once with the URL and the reason when Redis cannot be reached.
    pub async fn command_connection(&self) -> Result<Conn, ConnectError> {
        if self.cluster {
            return cluster::command_connection(self).await;
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        ConnectionManager::new_with_config(self.client()?, config)
            .await
            .map(Conn::Single)
            .map_err(|e| self.error(&e))
    }

    /// Dedicated connections for blocking `XREADGROUP ... BLOCK`, with the
    /// same TLS setup as the command connection: each connection's
    /// response timeout is `block` plus a margin, so the client never
    /// gives up on a read the server is still holding. A pool of `size`
    /// for a single server; for a cluster, each reader is its own cluster
    /// connection (a blocked read never stalls the shared one).
    pub fn reader_pool(&self, block: Duration, size: usize) -> Result<Readers, ConnectError> {
        if self.cluster {
            return cluster::readers(self, block + RESPONSE_TIMEOUT);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(block + RESPONSE_TIMEOUT));
        let info = self.client()?.get_connection_info().clone();
        let manager =
            deadpool_redis::Manager::new_with_config(info, config).map_err(|e| self.error(&e))?;
        deadpool_redis::Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map(Readers::Pool)
            .map_err(|e| ConnectError {
                url: Redacted(&self.url).to_string(),
                reason: e.to_string(),
            })
    }

    /// The one-line error for a failure to reach this endpoint.
    pub fn error(&self, err: &redis::RedisError) -> ConnectError {
        connect_error(&self.url, err)
    }
}

/// Opens a redis-rs client for `url` (no TLS files), with a one-line
/// error naming the URL (password hidden) when it is malformed.
pub fn client(url: &str) -> Result<redis::Client, ConnectError> {
    Endpoint::new(url).client()
}

/// [`Endpoint::command_connection`] for `url` (no TLS files).
pub async fn command_connection(url: &str) -> Result<Conn, ConnectError> {
    Endpoint::new(url).command_connection().await
}

/// [`Endpoint::reader_pool`] for `url` (no TLS files).
pub fn reader_pool(url: &str, block: Duration, size: usize) -> Result<Readers, ConnectError> {
    Endpoint::new(url).reader_pool(block, size)
}

/// A one-line connection error: the URL with its password hidden, and the
/// reason in plain words. A plain `redis://` connection the server drops
/// at once is most often a TLS port; the reason says so.
pub fn connect_error(url: &str, err: &redis::RedisError) -> ConnectError {
    #[cfg(feature = "tls")]
    let explained = tls::explain(err);
    #[cfg(not(feature = "tls"))]
    let explained: Option<String> = None;
    let reason = if let Some(reason) = explained {
        reason
    } else if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connection_dropped() && !tls::wants_tls(url) {
        format!("{err} (a TLS port? then use rediss://)")
    } else {
        err.to_string()
    };
    ConnectError {
        url: Redacted(url).to_string(),
        reason: reason.replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(endpoint: &Endpoint) -> String {
        match endpoint.client() {
            Ok(_) => panic!("{endpoint:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tls_files_need_a_rediss_url() {
        let e =
            Endpoint::new("redis://:pw@h:6379").with_tls(TlsConfig::default().ca_file("ca.pem"));
        assert_eq!(
            reason(&e),
            "cannot connect to Redis at redis://:***@h:6379: TLS files are given but the URL is not rediss:// (use rediss:// for TLS)"
        );
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_without_the_feature_says_which_feature() {
        assert_eq!(
            reason(&Endpoint::new("rediss://h:6380")),
            "cannot connect to Redis at rediss://h:6380: rediss:// needs TLS support, which this build lacks (cargo feature `tls`)"
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rediss_builds_a_client_with_the_feature() {
        assert!(Endpoint::new("rediss://h:6380").client().is_ok());
        let half = TlsConfig::from_files(None, None, Some("k.pem".into()));
        assert!(
            reason(&Endpoint::new("rediss://h:6380").with_tls(half))
                .contains("needs its certificate")
        );
    }

    #[test]
    fn several_urls_need_cluster_mode() {
        let e = Endpoint::new("redis://a:7000, redis://b:7000");
        assert!(reason(&e).ends_with(
            "several URLs are Redis Cluster seeds: turn on cluster mode (--redis-cluster, MILLRACE_REDIS_CLUSTER=1)"
        ));
        let e = e.with_cluster(true);
        assert_eq!(e.seeds(), ["redis://a:7000", "redis://b:7000"]);
        assert!(e.check().is_ok());
        let bad = |e: Endpoint| match e.check() {
            Ok(()) => panic!("{e:?} was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(
            bad(Endpoint::new(" , ").with_cluster(true))
                .ends_with("no Redis Cluster seed URL given")
        );
        let files = TlsConfig::default().ca_file("ca.pem");
        assert!(
            bad(Endpoint::new("redis://a:7000")
                .with_cluster(true)
                .with_tls(files))
            .contains("TLS files are given but the URLs are not rediss://")
        );
        assert!(
            bad(Endpoint::new("redis+unix:///tmp/r.sock").with_cluster(true))
                .contains("unix socket")
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", Endpoint::new("rediss://u:s3cret@h:6380"));
        assert!(!text.contains("s3cret"), "{text}");
    }
}
