//! [`Conn`], the one command-connection type every component uses: a
//! single Redis server's self-reconnecting multiplexed connection, or a
//! Redis Cluster connection (which follows MOVED/ASK redirects, slot
//! migrations and failovers by itself).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// `ConnectionLike` for an enum of two connection kinds, each call
/// passed to the variant's own connection.
macro_rules! delegate_connection_like {
    ($ty:ident: $a:ident, $b:ident) => {
        impl ConnectionLike for $ty {
            fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
                match self {
                    Self::$a(c) => c.req_packed_command(cmd),
                    Self::$b(c) => c.req_packed_command(cmd),
                }
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                cmd: &'a Pipeline,
                offset: usize,
                count: usize,
            ) -> RedisFuture<'a, Vec<Value>> {
                match self {
                    Self::$a(c) => c.req_packed_commands(cmd, offset, count),
                    Self::$b(c) => c.req_packed_commands(cmd, offset, count),
                }
            }

            fn get_db(&self) -> i64 {
                match self {
                    Self::$a(c) => c.get_db(),
                    Self::$b(c) => c.get_db(),
                }
            }
        }
    };
}

/// The shared command connection: cheap to clone (both kinds are
/// multiplexed handles), and a [`ConnectionLike`], so every queue
/// operation takes it as it is.
#[derive(Clone)]
#[non_exhaustive]
pub enum Conn {
    /// One Redis server (or a proxy in front of one).
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the master owning their keys' slot.
    Cluster(ClusterConnection),
}

impl Conn {
    /// True for a Redis Cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl From<ConnectionManager> for Conn {
    fn from(c: ConnectionManager) -> Self {
        Self::Single(c)
    }
}

impl From<ClusterConnection> for Conn {
    fn from(c: ClusterConnection) -> Self {
        Self::Cluster(c)
    }
}

delegate_connection_like!(Conn: Single, Cluster);

impl Conn {
    /// Runs `cmd` on the node serving `key`: on a cluster, a command
    /// whose routing redis-rs cannot infer from its arguments (`WAIT`,
    /// `CLIENT UNBLOCK`) goes to the master owning `key`'s slot; on a
    /// single server it simply runs.
    pub async fn query_at<T: FromRedisValue>(&mut self, cmd: &Cmd, key: &str) -> RedisResult<T> {
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => at_key(c, cmd, key).await,
        }
    }
}

/// Runs `cmd` on the master owning `key`'s slot.
pub(super) async fn at_key<T: FromRedisValue>(
    c: &mut ClusterConnection,
    cmd: &Cmd,
    key: &str,
) -> RedisResult<T> {
    let route = Route::with_key(key, SlotAddr::Master);
    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
    let value = c.route_command(cmd.clone(), routing).await?;
    T::from_redis_value(value).map_err(Into::into)
}

/// Where blocking readers come from: a pool of dedicated connections to a
/// single server, or, on a cluster, a plain connection per reader to the
/// master serving its queue.
#[derive(Clone)]
#[non_exhaustive]
pub enum Readers {
    /// Dedicated connections to one server.
    Pool(deadpool_redis::Pool),
    /// One connection per reader to its queue's master (see
    /// [`ClusterReaders`](super::ClusterReaders)).
    Cluster(std::sync::Arc<super::ClusterReaders>),
}

impl Readers {
    /// A reader connection for reads of `key` (a queue's stream): from the
    /// pool, or a new connection to the master serving `key`.
    pub async fn get(&self, key: &str) -> RedisResult<ReaderConn> {
        match self {
            Self::Pool(pool) => pool
                .get()
                .await
                .map(ReaderConn::Pooled)
                .map_err(|e| redis::RedisError::from(std::io::Error::other(e.to_string()))),
            Self::Cluster(readers) => readers.get(key).await.map(ReaderConn::Node),
        }
    }
}

/// A dedicated connection for blocking reads.
#[non_exhaustive]
pub enum ReaderConn {
    /// From the single server's pool (back to the pool on drop).
    Pooled(deadpool_redis::Connection),
    /// A connection of its own to one cluster master.
    Node(redis::aio::MultiplexedConnection),
}

impl ReaderConn {
    /// The server-side client id of this connection (for `CLIENT UNBLOCK`
    /// on the node serving `_key`: a reader talks to that node alone).
    pub async fn client_id(&mut self, _key: &str) -> RedisResult<i64> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("ID");
        match self {
            Self::Pooled(c) => cmd.query_async(c).await,
            Self::Node(c) => cmd.query_async(c).await,
        }
    }

    /// Closes the connection for good (a pooled one is not returned: it
    /// may still be blocked on the server).
    pub fn discard(self) {
        match self {
            Self::Pooled(c) => drop(deadpool_redis::Connection::take(c)),
            Self::Node(c) => drop(c),
        }
    }
}

delegate_connection_like!(ReaderConn: Pooled, Node);

/// How many replicas must confirm a write before it counts as made
/// (`WAIT replicas timeout`): a write confirmed by a replica survives its
/// master's failover to that replica. See the SDK's
/// `ClientBuilder::durability` and `WorkerConfig::durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Durability {
    /// Replicas that must confirm. At least 1.
    pub replicas: u32,
    /// How long to wait for them.
    pub timeout: std::time::Duration,
}

impl Durability {
    /// `replicas` replicas within `timeout`; `None` for 0 replicas (no
    /// waiting).
    pub fn new(replicas: u32, timeout: std::time::Duration) -> Option<Self> {
        (replicas > 0).then_some(Self { replicas, timeout })
    }
}

impl Conn {
    /// `WAIT` on the node serving `key`, on the connection that wrote to
    /// it: how many replicas have every write this connection made there
    /// so far (at most `d.replicas`; fewer when `d.timeout` ran out).
    pub async fn wait_replicas(&mut self, key: &str, d: Durability) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        let ms = u64::try_from(d.timeout.as_millis()).unwrap_or(u64::MAX);
        wait.arg(d.replicas).arg(ms.max(1));
        self.query_at(&wait, key).await
    }
}
