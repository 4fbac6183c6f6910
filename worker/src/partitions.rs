//! Partitions in a worker (see `millrace_core::partition`): for each queue
//! it works, a worker reads the queue itself and every partition `q#i`,
//! each with its own lanes, fetch loop and reader connection, all on the
//! queue's job slots (the concurrency is per queue). The partitions read
//! are `0..N` for the stored count `N`, plus any partition in the registry
//! (a queue whose count was lowered keeps its old partitions read until
//! they are empty and beyond: nothing is stranded). One task, the
//! look-out, finds new partitions and new lanes at every reclaim round, so
//! the fetch loops make no Redis call for it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use millrace_core::connect::Readers;
use millrace_core::keys::registry_key;
use millrace_core::partition::split_name;
use millrace_core::{Queue, QueueError};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::fetch;
use crate::lanes::{LaneSet, Spawner};
use crate::metrics;

/// One queue a worker works: the queue itself and its partitions.
pub(crate) struct QueueGroup {
    base: Queue,
    slots: Arc<Semaphore>,
    /// The queue's own lane set (index `None`) and its partitions'.
    sets: Mutex<Vec<(Option<u32>, Arc<LaneSet>)>>,
}

impl QueueGroup {
    /// Every lane set of the queue: its own first, then the partitions'.
    pub fn sets(&self) -> Vec<Arc<LaneSet>> {
        self.lock().iter().map(|(_, s)| s.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Option<u32>, Arc<LaneSet>)>> {
        self.sets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn has(&self, i: u32) -> bool {
        self.lock().iter().any(|(p, _)| *p == Some(i))
    }
}

/// Starts the fetch loops of one queue and of its partitions known now.
pub(crate) async fn start_group(
    base: Queue,
    spawner: &Arc<Spawner>,
    fetchers: &TaskTracker,
    pool: &Readers,
) -> Result<Arc<QueueGroup>, QueueError> {
    let slots = Arc::new(Semaphore::new(spawner.cfg.concurrency));
    let own = LaneSet::start(base.clone(), slots.clone(), spawner.clone()).await?;
    fetchers.spawn(fetch::fetch_loop(own.clone(), pool.clone()));
    let group = Arc::new(QueueGroup {
        base,
        slots,
        sets: Mutex::new(vec![(None, own)]),
    });
    let name = group.base.name().to_owned();
    let registry =
        crate::at_start(&name, "reading the queue registry", || registered(spawner)).await?;
    let found = crate::at_start(&name, "reading the partition count", || {
        wanted(&group, spawner, &registry)
    })
    .await?;
    for i in found {
        add(&group, i, spawner, fetchers, pool).await?;
    }
    Ok(group)
}

/// The look-out: at every reclaim round, starts the lanes and partitions
/// of every group that producers or an operator started using, until the
/// worker stops claiming.
pub(crate) async fn partitions_loop(
    groups: Vec<Arc<QueueGroup>>,
    spawner: Arc<Spawner>,
    fetchers: TaskTracker,
    pool: Readers,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(spawner.cfg.reclaim_every) => {}
            () = spawner.stop.cancelled() => return,
        }
        let registry = match registered(&spawner).await {
            Ok(r) => r,
            Err(e) => {
                metrics::redis_error("", "partitions");
                warn!(error = %e, "cannot read the queue registry");
                continue;
            }
        };
        for group in &groups {
            // Lanes producers started using, in the queue and each partition.
            for set in group.sets() {
                set.refresh().await;
            }
            let found = match wanted(group, &spawner, &registry).await {
                Ok(f) => f,
                Err(e) => {
                    metrics::redis_error(group.base.name(), "partitions");
                    warn!(queue = group.base.name(), error = %e, "cannot read the partition count");
                    continue;
                }
            };
            for i in found {
                if spawner.stop.is_cancelled() {
                    return;
                }
                if let Err(e) = add(group, i, &spawner, &fetchers, &pool).await {
                    warn!(queue = group.base.name(), partition = i, error = %e, "cannot start a partition");
                }
            }
        }
    }
}

/// The queue names in the registry.
async fn registered(spawner: &Spawner) -> Result<Vec<String>, QueueError> {
    let mut conn = spawner.conn.clone();
    redis::cmd("SMEMBERS")
        .arg(registry_key(&spawner.cfg.prefix))
        .query_async(&mut conn)
        .await
        .map_err(QueueError::redis("partitions"))
}

/// Partitions (labels) of `group` to read that are not read yet: those of
/// its layout, and those in the registry.
async fn wanted(
    group: &QueueGroup,
    spawner: &Spawner,
    registry: &[String],
) -> Result<BTreeSet<u32>, QueueError> {
    let mut conn = spawner.conn.clone();
    let layout = group.base.layout(&mut conn).await?;
    let mut want: BTreeSet<u32> = if layout.is_partitioned() {
        layout.labels().iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    want.extend(registry.iter().filter_map(|name| match split_name(name) {
        (base, Some(i)) if base == group.base.name() => Some(i),
        _ => None,
    }));
    want.retain(|i| !group.has(*i));
    Ok(want)
}

/// Starts the partition labelled `i` of `group`: its lanes and its fetch
/// loop.
async fn add(
    group: &QueueGroup,
    i: u32,
    spawner: &Arc<Spawner>,
    fetchers: &TaskTracker,
    pool: &Readers,
) -> Result<(), QueueError> {
    let queue = group.base.partition(i)?;
    let set = LaneSet::start(queue, group.slots.clone(), spawner.clone()).await?;
    let mut sets = group.lock();
    sets.push((Some(i), set.clone()));
    for (_, s) in sets.iter() {
        s.share_slots();
    }
    drop(sets);
    spawner.health.watch_more(set.base.progress.clone());
    fetchers.spawn(fetch::fetch_loop(set, pool.clone()));
    info!(
        queue = group.base.name(),
        partition = i,
        "reading a partition"
    );
    Ok(())
}
