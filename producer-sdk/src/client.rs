//! The producer client.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use millrace_core::Conn;
use millrace_core::connect::{Durability, Endpoint, TlsConfig};
use millrace_core::keys::DEFAULT_PREFIX;
use millrace_core::partition;
use millrace_core::queue::unix_ms;
use millrace_core::{
    Cancel, ConfigError, ConnectError, EnqueueStatus, Enqueued, Envelope, Job, JobId, Queue,
    QueueError, Redacted, Submit, Unique, UniqueMode, When,
};
use tracing::warn;

use crate::options::EnqueueOptions;
use crate::prepare::{Invalid, prepare};

/// Largest payload accepted by default: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// Why an enqueue failed. Nothing was enqueued when this is returned,
/// except possibly after a connection error mid-reply (see
/// [`ClientBuilder::retries`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnqueueError {
    /// Redis could not be reached at connect time.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The job could not be serialized to JSON.
    #[error("cannot serialize job `{job}`: {source}")]
    Serialize {
        /// The job's name.
        job: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The payload is larger than the limit.
    #[error("payload too large: {size} bytes > {limit} bytes limit (job `{job}`)")]
    PayloadTooLarge {
        /// The job's name.
        job: &'static str,
        /// The payload's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An option or name is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis failed (after the configured retries).
    #[error(transparent)]
    Redis(#[from] QueueError),
    /// With [`ClientBuilder::durability`]: the master took the job but
    /// fewer replicas than asked confirmed it in time. The job is
    /// enqueued unless that master fails before its replicas catch up;
    /// enqueue it again with the same job id to be sure (at worst it runs
    /// twice).
    #[error(
        "enqueued, but only {acked} of {wanted} replica(s) confirmed it within {timeout:?}: enqueue it again with the same job id to be sure it survives a failover"
    )]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that confirmed.
        acked: u32,
        /// How long the client waited.
        timeout: Duration,
    },
}

impl From<Invalid> for EnqueueError {
    fn from(e: Invalid) -> Self {
        match e {
            Invalid::Serialize { job, source } => Self::Serialize { job, source },
            Invalid::TooLarge { job, size, limit } => Self::PayloadTooLarge { job, size, limit },
            Invalid::Config(e) => Self::Config(e),
        }
    }
}

/// Builds a [`Client`]. Its `Debug` hides the URL's password.
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    tls: TlsConfig,
    cluster: bool,
    prefix: String,
    retries: u32,
    max_payload: usize,
    durability: Option<Durability>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &Redacted(&self.url).to_string())
            .field("tls", &self.tls)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("retries", &self.retries)
            .field("max_payload", &self.max_payload)
            .field("durability", &self.durability)
            .finish()
    }
}

impl ClientBuilder {
    /// Waits after every enqueue until `replicas` replicas of the master
    /// that took it have it too (`WAIT replicas timeout`, on the same
    /// connection, routed to that master on a cluster). An enqueue that
    /// returns `Ok` then survives the failover of that master to one of
    /// those replicas (Redis replication is otherwise asynchronous: a
    /// master that dies right after acknowledging a write can lose it).
    /// Fewer confirmations within `timeout` fail the call with
    /// [`EnqueueError::NotReplicated`]. It does not promise the job is on
    /// disk (that is the servers' `appendfsync`), nor survive losing the
    /// master and those replicas together. Costs one more round trip per
    /// call (a batch waits once). Defaults to none (`Ok` once the master
    /// has the job).
    pub fn durability(mut self, replicas: u32, timeout: Duration) -> Self {
        self.durability = Durability::new(replicas, timeout);
        self
    }

    /// TLS files for a `rediss://` URL: a private CA to trust, a client
    /// certificate for mutual TLS. Defaults to none (the system's
    /// certificate authorities). `rediss://` needs the cargo feature `tls`.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = tls;
        self
    }

    /// The URL names Redis Cluster nodes: one or more seed URLs,
    /// comma-separated (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`).
    /// Defaults to false (a single server).
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Key prefix. Defaults to `millrace`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Times an enqueue is retried after a connection error (refused,
    /// dropped, timed out), with backoff. Defaults to 3. A retry after a
    /// reply was lost may enqueue a job twice (same job id): delivery is at
    /// least once anyway.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Largest payload accepted. Defaults to 1 MiB.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Connects. Fails at once, in one line naming the URL (password
    /// hidden) and the reason, when Redis cannot be reached.
    pub async fn connect(self) -> Result<Client, EnqueueError> {
        let conn = Endpoint::new(self.url.as_str())
            .with_tls(self.tls)
            .with_cluster(self.cluster)
            .command_connection()
            .await?;
        Ok(Client {
            conn,
            url: Redacted(&self.url).to_string().into(),
            prefix: self.prefix,
            retries: self.retries,
            max_payload: self.max_payload,
            durability: self.durability,
            registered: Arc::default(),
            partitions: Arc::default(),
            round_robin: Arc::default(),
        })
    }
}

/// Enqueues jobs. Cheap to share and to clone: clones share one
/// multiplexed connection, which pipelines concurrent calls. Its `Debug`
/// shows the URL with any password hidden.
#[derive(Clone)]
pub struct Client {
    pub(crate) conn: Conn,
    /// The URL, password hidden (for `Debug`).
    url: Arc<str>,
    pub(crate) prefix: String,
    retries: u32,
    max_payload: usize,
    durability: Option<Durability>,
    /// Queues already added to the registry by this client and its clones.
    registered: Arc<Mutex<HashSet<String>>>,
    /// Partition layouts read from Redis, with when they were read.
    partitions: Arc<Mutex<HashMap<String, CachedLayout>>>,
    /// The next partition of jobs enqueued without a key.
    round_robin: Arc<AtomicU32>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("retries", &self.retries)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `url` with the default options.
    pub async fn connect(url: &str) -> Result<Self, EnqueueError> {
        Self::builder(url).connect().await
    }

    /// Starts building a client for `url`.
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            tls: TlsConfig::default(),
            cluster: false,
            prefix: DEFAULT_PREFIX.to_owned(),
            retries: 3,
            max_payload: DEFAULT_MAX_PAYLOAD,
            durability: None,
        }
    }

    /// Enqueues `job` on its queue; returns its id.
    pub async fn enqueue<J: Job>(&self, job: &J) -> Result<JobId, EnqueueError> {
        self.enqueue_with(job, EnqueueOptions::new()).await
    }

    /// Enqueues `job` to run after `delay`.
    pub async fn enqueue_in<J: Job>(
        &self,
        job: &J,
        delay: Duration,
    ) -> Result<JobId, EnqueueError> {
        self.enqueue_with(job, EnqueueOptions::new().delay(delay))
            .await
    }

    /// Enqueues `job` to run at `at`.
    pub async fn enqueue_at<J: Job>(&self, job: &J, at: SystemTime) -> Result<JobId, EnqueueError> {
        self.enqueue_with(job, EnqueueOptions::new().at(at)).await
    }

    /// Enqueues `job` with `options`; returns its id. With a unique key
    /// (`options.unique` or [`Job::unique`]) held by a live job, nothing is
    /// enqueued and that job's id is returned (as BullMQ's `add` returns
    /// the existing job); [`submit`](Self::submit) tells the two apart.
    pub async fn enqueue_with<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<JobId, EnqueueError> {
        Ok(self.submit(job, options).await?.id)
    }

    /// Enqueues `job` with `options` and tells what happened: a new job, a
    /// duplicate (a live job holds its unique key: nothing enqueued; the id
    /// is that job's) or a debounce (the waiting job with its key took this
    /// payload and due time).
    pub async fn submit<J: Job>(
        &self,
        job: &J,
        options: EnqueueOptions,
    ) -> Result<Enqueued, EnqueueError> {
        let unique = unique_of(job, &options)?;
        let queue = self
            .queue_for::<J>(&options, unique.as_ref().map(|u| u.key.as_str()))
            .await?;
        let (id, env) = self.envelope(job, &options)?;
        let when = match (options.delay, options.at, &unique) {
            (Some(d), _, _) => Some(When::In(d)),
            (None, Some(t), _) => Some(When::At(t)),
            // A debounce job runs its window after the latest enqueue.
            (None, None, Some(u)) if u.mode == UniqueMode::Debounce => Some(When::In(u.ttl)),
            (None, None, _) => None,
        };
        self.ensure_registered(&queue).await?;
        if unique.is_some() {
            let submit = [Submit::new(&env).unique(unique.as_ref()).when(when)];
            return self
                .submit_unique(&queue, &submit)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| QueueError::Protocol {
                    op: "enqueue",
                    detail: "no outcome".into(),
                })
                .map_err(Into::into);
        }
        self.with_retries(|mut conn| {
            let queue = &queue;
            let env = &env;
            async move {
                match when {
                    Some(w) => queue.schedule(&mut conn, env, w).await.map(drop),
                    None => queue
                        .enqueue(&mut conn, std::slice::from_ref(env))
                        .await
                        .map(drop),
                }
            }
        })
        .await?;
        self.replicated(&queue).await?;
        Ok(Enqueued::new(id, EnqueueStatus::New))
    }

    /// Enqueues many jobs of one type on their queue, pipelined: one round
    /// trip per batch. Returns their ids in order (for a job whose unique
    /// key a live job holds, that job's id).
    pub async fn enqueue_many<J: Job>(&self, jobs: &[J]) -> Result<Vec<JobId>, EnqueueError> {
        self.enqueue_many_with(jobs, EnqueueOptions::new()).await
    }

    /// Enqueues many jobs with shared `options` (a `job_id` option is
    /// refused here: each job gets its own id; `delay`/`at` are refused:
    /// use [`enqueue_with`](Self::enqueue_with) per job; so is `unique`:
    /// give each job its own key with [`Job::unique`]).
    pub async fn enqueue_many_with<J: Job>(
        &self,
        jobs: &[J],
        options: EnqueueOptions,
    ) -> Result<Vec<JobId>, EnqueueError> {
        let out = self.submit_many(jobs, options).await?;
        Ok(out.into_iter().map(|e| e.id).collect())
    }

    /// [`enqueue_many_with`](Self::enqueue_many_with), telling for each job
    /// what happened (see [`submit`](Self::submit)). Jobs with unique keys
    /// ([`Job::unique`]) are checked and locked in one script for the whole
    /// batch: two jobs of the batch with one key make one job.
    pub async fn submit_many<J: Job>(
        &self,
        jobs: &[J],
        options: EnqueueOptions,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        if options.job_id.is_some()
            || options.delay.is_some()
            || options.at.is_some()
            || options.unique.is_some()
        {
            return Err(ConfigError::Invalid(
                "enqueue_many takes no job_id, delay, at or unique option: enqueue such jobs one by one, or give each job its key with Job::unique"
                    .into(),
            )
            .into());
        }
        let queue = self.queue_for::<J>(&options, None).await?;
        let mut ids = Vec::with_capacity(jobs.len());
        let mut envs = Vec::with_capacity(jobs.len());
        let mut uniques = Vec::with_capacity(jobs.len());
        for job in jobs {
            uniques.push(unique_of(job, &options)?);
            let (id, env) = self.envelope(job, &options)?;
            ids.push(id);
            envs.push(env);
        }
        self.ensure_registered(&queue).await?;
        if uniques.iter().any(Option::is_some) {
            if partition::split_name(queue.name()).1.is_some() && options.key.is_none() {
                // A unique key is only unique within one partition.
                return Err(ConfigError::Invalid(format!(
                    "{} is partitioned: enqueue jobs with unique keys one by one (each goes to its key's partition), or give the batch one key",
                    partition::split_name(queue.name()).0
                ))
                .into());
            }
            let submit: Vec<Submit<'_>> = envs
                .iter()
                .zip(&uniques)
                .map(|(env, u)| {
                    let when = u
                        .as_ref()
                        .filter(|u| u.mode == UniqueMode::Debounce)
                        .map(|u| When::In(u.ttl));
                    Submit::new(env).unique(u.as_ref()).when(when)
                })
                .collect();
            return self.submit_unique(&queue, &submit).await;
        }
        self.with_retries(|mut conn| {
            let queue = &queue;
            let envs = &envs;
            async move { queue.enqueue(&mut conn, envs).await.map(drop) }
        })
        .await?;
        self.replicated(&queue).await?;
        Ok(ids
            .into_iter()
            .map(|id| Enqueued::new(id, EnqueueStatus::New))
            .collect())
    }

    /// Cancels job `job_id` of `queue`: a delayed job, or a ready one not
    /// yet delivered, is removed (its unique lock released); a running one
    /// is marked, and its worker cancels the attempt at its next lease
    /// renewal (the handler's `ctx.cancel` token fires) and ends it as
    /// cancelled: not retried, not dead-lettered. A dead-lettered job is
    /// [`Cancel::Dead`]; one the queue's history records as finished is
    /// [`Cancel::Finished`]; one not found anywhere is
    /// [`Cancel::NotFound`]. Looks for the job with a scan of the queue's
    /// streams: meant for occasional use, not for every job.
    pub async fn cancel(&self, queue: &str, job_id: &str) -> Result<Cancel, EnqueueError> {
        let mut last = Cancel::NotFound;
        for queue in self.with_partitions(queue).await? {
            last = self
                .with_retries_value(|mut conn| {
                    let queue = &queue;
                    async move { queue.cancel(&mut conn, job_id).await }
                })
                .await?;
            if !matches!(last, Cancel::NotFound) {
                break;
            }
        }
        Ok(last)
    }

    /// `queue` and, when it is partitioned, each of its partitions (by
    /// the count this client uses): where one of its jobs may be.
    pub(crate) async fn with_partitions(&self, queue: &str) -> Result<Vec<Queue>, EnqueueError> {
        let base = Queue::with_prefix(&self.prefix, queue)?;
        let layout = self.partition_layout(&base).await?;
        let mut all = Vec::with_capacity(layout.labels().len() + 1);
        if layout.is_partitioned() {
            for &label in layout.labels() {
                all.push(base.partition(label)?);
            }
        }
        all.insert(0, base);
        Ok(all)
    }

    /// The queue (partition and lane) a job goes to: on a partitioned
    /// queue the partition of its key (`options.key`, else its unique
    /// key), or the next one round-robin.
    async fn queue_for<J: Job>(
        &self,
        options: &EnqueueOptions,
        unique_key: Option<&str>,
    ) -> Result<Queue, EnqueueError> {
        let name = options.queue.as_deref().unwrap_or(J::QUEUE);
        let base = Queue::with_prefix(&self.prefix, name)?;
        let layout = self.partition_layout(&base).await?;
        let queue = if layout.is_partitioned() {
            let n = layout.count();
            let i = match options.key.as_deref().or(unique_key) {
                Some(key) => partition::partition_of(key, n),
                None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
            };
            base.partition(layout.label(i))?
        } else {
            base
        };
        Ok(queue.lane(options.priority))
    }

    /// The queue's partition layout, read from Redis at most every
    /// [`PARTITIONS_TTL`]. A partition (`orders#3`, named directly) is
    /// never partitioned again.
    pub(crate) async fn partition_layout(
        &self,
        queue: &Queue,
    ) -> Result<Arc<partition::Layout>, EnqueueError> {
        if partition::split_name(queue.name()).1.is_some() {
            return Ok(Arc::new(partition::Layout::single()));
        }
        let cached = self
            .partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(queue.name())
            .filter(|(_, at)| at.elapsed() < PARTITIONS_TTL)
            .map(|(l, _)| Arc::clone(l));
        if let Some(l) = cached {
            return Ok(l);
        }
        let l = Arc::new(
            self.with_retries_value(|mut conn| async move { queue.layout(&mut conn).await })
                .await?,
        );
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(queue.name().to_owned(), (Arc::clone(&l), Instant::now()));
        Ok(l)
    }

    fn envelope<J: Job>(
        &self,
        job: &J,
        options: &EnqueueOptions,
    ) -> Result<(JobId, Envelope), EnqueueError> {
        let p = prepare(job, options, self.max_payload)?;
        let mut env = Envelope::new(p.id.0.clone(), J::NAME, p.payload);
        env.max_attempts = Some(p.max_attempts);
        env.enqueued_at = Some(unix_ms(SystemTime::now()));
        env.trace = p.trace;
        env.priority = options.priority;
        Ok((p.id, env))
    }

    async fn ensure_registered(&self, queue: &Queue) -> Result<(), EnqueueError> {
        let known = self
            .registered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&registered_as(queue));
        if known {
            return Ok(());
        }
        self.with_retries(|mut conn| async move { queue.register(&mut conn).await })
            .await?;
        self.registered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(registered_as(queue));
        Ok(())
    }

    /// With durability on, waits until enough replicas of the master
    /// serving `queue` have every write made so far on this connection.
    /// Runs `unique.lua` for `submit` (with the connection retries), then
    /// waits for the replicas when durability is set.
    async fn submit_unique(
        &self,
        queue: &Queue,
        submit: &[Submit<'_>],
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        let out = self
            .with_retries_value(
                |mut conn| async move { queue.enqueue_unique(&mut conn, submit).await },
            )
            .await?;
        self.replicated(queue).await?;
        Ok(out)
    }

    async fn replicated(&self, queue: &Queue) -> Result<(), EnqueueError> {
        let Some(d) = self.durability else {
            return Ok(());
        };
        let acked = self
            .conn
            .clone()
            .wait_replicas(&queue.keys().stream, d)
            .await
            .map_err(QueueError::redis("wait"))?;
        if acked < d.replicas {
            return Err(EnqueueError::NotReplicated {
                wanted: d.replicas,
                acked,
                timeout: d.timeout,
            });
        }
        Ok(())
    }

    async fn with_retries<F, Fut>(&self, op: F) -> Result<(), EnqueueError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<(), QueueError>>,
    {
        self.with_retries_value(op).await
    }

    async fn with_retries_value<T, F, Fut>(&self, op: F) -> Result<T, EnqueueError>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut tries = 0;
        loop {
            match op(self.conn.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_connection() && tries < self.retries => {
                    tries += 1;
                    warn!(error = %e, try_ = tries, "enqueue failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The job's unique key: the options' or the job type's, checked.
/// The name a queue (lane view) is remembered under once registered:
/// `orders`, `orders/high`.
fn registered_as(queue: &Queue) -> String {
    match queue.priority() {
        millrace_core::Priority::Default => queue.name().to_owned(),
        p => format!("{}/{p}", queue.name()),
    }
}

/// How long a client trusts a partition count it read.
pub const PARTITIONS_TTL: Duration = Duration::from_secs(5);

/// A queue's partition layout as read from Redis, and when it was read.
type CachedLayout = (Arc<partition::Layout>, Instant);

fn unique_of<J: Job>(job: &J, options: &EnqueueOptions) -> Result<Option<Unique>, EnqueueError> {
    let unique = options.unique.clone().or_else(|| job.unique());
    if let Some(u) = &unique {
        u.validate()?;
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_hides_the_password() {
        let b = Client::builder("redis://bob:hunter2@cache:6379/1");
        let text = format!("{b:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://bob:***@cache:6379/1"), "{text}");
    }
}
