//! Dropped connections: every few hundred milliseconds, `CLIENT LIST`, pick
//! one client at random that is not the chaos run's own, and `CLIENT KILL
//! ID` it. The victims are the workers' connections (command connections
//! and blocking readers alike), cut wherever they are: mid-read, mid-ack,
//! mid-script.
//!
//! The run's own connections are spared by name (`CLIENT SETNAME`,
//! repeated every round because a reconnected connection has no name) and
//! by id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use millrace_core::Conn;
use millrace_core::redis::{self, aio::MultiplexedConnection};
use tokio::task::JoinHandle;

/// The name the chaos run gives its own connections.
pub const CHAOS_CLIENT: &str = "millrace-chaos";

/// The background task that drops connections.
pub struct NetDrops {
    stop: Arc<AtomicBool>,
    task: JoinHandle<usize>,
}

impl NetDrops {
    /// Starts dropping a worker connection every `every` on average (each
    /// wait is drawn from 60–140 % of it). `own` is the run's shared
    /// connection, spared.
    pub fn start(
        redis: &millrace_core::connect::Endpoint,
        own: Conn,
        every: Duration,
    ) -> anyhow::Result<Self> {
        let client = redis.client()?;
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drop_loop(client, own, every, stop.clone()));
        Ok(Self { stop, task })
    }

    /// Stops dropping (the round under way, if any, still finishes).
    pub fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops dropping and waits for the task; returns how many connections
    /// were killed.
    pub async fn stop(self) -> usize {
        self.halt();
        self.task.await.unwrap_or(0)
    }
}

async fn drop_loop(
    client: redis::Client,
    mut own: Conn,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut conn = None;
    let mut dropped = 0;
    loop {
        tokio::time::sleep(every.mul_f64(0.6 + 0.8 * fastrand::f64())).await;
        if stop.load(Ordering::Relaxed) {
            return dropped;
        }
        match drop_one(&client, &mut conn, &mut own).await {
            Ok(true) => dropped += 1,
            Ok(false) => {}
            // Redis is restarting, or our connection broke: connect
            // afresh next round.
            Err(_) => conn = None,
        }
    }
}

/// Kills one client that is not ours; false when there was none.
async fn drop_one(
    client: &redis::Client,
    conn: &mut Option<MultiplexedConnection>,
    own: &mut Conn,
) -> redis::RedisResult<bool> {
    let ((), own_id): ((), i64) = redis::pipe()
        .cmd("CLIENT")
        .arg("SETNAME")
        .arg(CHAOS_CLIENT)
        .cmd("CLIENT")
        .arg("ID")
        .query_async(own)
        .await?;
    let c = match conn {
        Some(c) => c,
        None => conn.insert(client.get_multiplexed_async_connection().await?),
    };
    let ((), my_id, list): ((), i64, String) = redis::pipe()
        .cmd("CLIENT")
        .arg("SETNAME")
        .arg(CHAOS_CLIENT)
        .cmd("CLIENT")
        .arg("ID")
        .cmd("CLIENT")
        .arg("LIST")
        .query_async(c)
        .await?;
    let victims: Vec<i64> = others(&list)
        .filter(|id| *id != own_id && *id != my_id)
        .collect();
    if victims.is_empty() {
        return Ok(false);
    }
    let victim = victims[fastrand::usize(..victims.len())];
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(victim)
        .query_async(c)
        .await?;
    Ok(killed > 0)
}

/// Ids of the clients in a `CLIENT LIST` reply not named [`CHAOS_CLIENT`].
fn others(list: &str) -> impl Iterator<Item = i64> + '_ {
    list.lines().filter_map(|line| {
        let field = |key: &str| {
            line.split_ascii_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let id = field("id")?.parse().ok()?;
        (field("name") != Some(CHAOS_CLIENT)).then_some(id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn others_skips_the_chaos_runs_clients() {
        let list = "id=3 addr=127.0.0.1:5 laddr=127.0.0.1:6379 fd=8 name=millrace-chaos age=1 cmd=client|list\n\
                    id=4 addr=127.0.0.1:6 laddr=127.0.0.1:6379 fd=9 name= age=1 cmd=xreadgroup\n\
                    id=7 addr=127.0.0.1:7 fd=10 name=other age=2 cmd=evalsha\n";
        assert_eq!(others(list).collect::<Vec<_>>(), vec![4, 7]);
    }
}
