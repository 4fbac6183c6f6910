//! Connection setup: a multiplexed, self-reconnecting connection for
//! commands, and a pool of dedicated connections for blocking reads.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{ConnectError, Redacted};

/// How long to wait for a TCP connection before giving up. 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may wait for its reply. 5 s.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a redis-rs client for `url`, with a one-line error naming the URL
/// (password hidden) when the URL is malformed.
pub fn client(url: &str) -> Result<redis::Client, ConnectError> {
    redis::Client::open(url).map_err(|e| connect_error(url, &e))
}

/// Connects the shared command connection: multiplexed (it pipelines
/// concurrent commands) and reconnecting by itself with backoff. Fails at
/// once with the URL and the reason when Redis cannot be reached.
pub async fn command_connection(url: &str) -> Result<ConnectionManager, ConnectError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    let client = client(url)?;
    ConnectionManager::new_with_config(client, config)
        .await
        .map_err(|e| connect_error(url, &e))
}

/// A pool of dedicated connections for blocking `XREADGROUP ... BLOCK`:
/// each connection's response timeout is `block` plus a margin, so the
/// client never gives up on a read the server is still holding.
pub fn reader_pool(
    url: &str,
    block: Duration,
    size: usize,
) -> Result<deadpool_redis::Pool, ConnectError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(block + RESPONSE_TIMEOUT));
    let manager = deadpool_redis::Manager::new_with_config(url, config)
        .map_err(|e| connect_error(url, &e))?;
    deadpool_redis::Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .map_err(|e| ConnectError {
            url: Redacted(url).to_string(),
            reason: e.to_string(),
        })
}

/// A one-line connection error: the URL with its password hidden, and the
/// reason in plain words.
pub fn connect_error(url: &str, err: &redis::RedisError) -> ConnectError {
    let reason = if err.is_connection_refusal() {
        "connection refused".to_owned()
    } else if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    ConnectError {
        url: Redacted(url).to_string(),
        reason: reason.replace('\n', " "),
    }
}
