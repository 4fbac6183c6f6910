//! [`Conn`], the one command-connection type every component uses: a
//! single Redis server's self-reconnecting multiplexed connection, or a
//! Redis Cluster connection (which follows MOVED/ASK redirects, slot
//! migrations and failovers by itself).

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
