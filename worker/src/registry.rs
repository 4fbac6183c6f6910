//! Handler registry: job name → a type-erased handler that decodes the
//! payload into the job type and runs the user's function.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use millrace_core::{Job, JobContext, JobError, RetryPolicy};

/// A running handler's future: its result as JSON for job types
/// registered with one (`register_with_result`), `None` otherwise.
pub(crate) type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Option<String>, JobError>> + Send>>;

/// Largest result a handler may return, as JSON: 1 MiB (as a payload). A
/// larger one fails the attempt for good: results are for small answers.
pub(crate) const MAX_RESULT: usize = 1 << 20;

type Call = Box<dyn Fn(&str, JobContext) -> Result<HandlerFuture, JobError> + Send + Sync>;

/// One registered job type.
pub(crate) struct Handler {
    /// The job's name (`Job::NAME`).
    pub name: &'static str,
    pub call: Call,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    /// The job type's default queue (`Job::QUEUE`).
    pub queue: &'static str,
}

/// All registered job types, by name.
#[derive(Default)]
pub(crate) struct Handlers {
    map: HashMap<&'static str, Handler>,
    /// The state every attempt's context carries (`WorkerBuilder::state`).
    pub state: Option<Arc<dyn Any + Send + Sync>>,
    /// Called with the job id of each attempt that succeeds
    /// (`WorkerBuilder::on_success`).
    pub on_success: Option<OnSuccess>,
}

/// A hook called with the id of each job that succeeds.
pub(crate) type OnSuccess = Arc<dyn Fn(&str) + Send + Sync>;

impl Handlers {
    pub fn insert<J, F, Fut>(&mut self, handler: F)
    where
        J: Job,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let call: Call = Box::new(move |payload: &str, ctx: JobContext| {
            let job: J = decode::<J>(payload)?;
            let fut = handler(job, ctx);
            Ok(Box::pin(async move { fut.await.map(|()| None) }) as HandlerFuture)
        });
        self.add::<J>(call);
    }

    /// Registers a handler whose output is kept as the job's result
    /// (serialized to JSON, stored with the result TTL by the ack).
    pub fn insert_with_result<J, T, F, Fut>(&mut self, handler: F)
    where
        J: Job,
        T: serde::Serialize + Send + 'static,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, JobError>> + Send + 'static,
    {
        let call: Call = Box::new(move |payload: &str, ctx: JobContext| {
            let job: J = decode::<J>(payload)?;
            let fut = handler(job, ctx);
            Ok(Box::pin(async move {
                let out = fut.await?;
                let json = serde_json::to_string(&out).map_err(|e| {
                    JobError::permanent(format!(
                        "cannot serialize the result of job `{}`: {e}",
                        J::NAME
                    ))
                })?;
                if json.len() > MAX_RESULT {
                    return Err(JobError::permanent(format!(
                        "result too large: {} bytes > {MAX_RESULT} bytes limit (job `{}`)",
                        json.len(),
                        J::NAME
                    )));
                }
                Ok(Some(json))
            }) as HandlerFuture)
        });
        self.add::<J>(call);
    }

    fn add<J: Job>(&mut self, call: Call) {
        self.map.insert(
            J::NAME,
            Handler {
                name: J::NAME,
                call,
                retry: J::retry(),
                timeout: J::timeout(),
                queue: J::QUEUE,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<&Handler> {
        self.map.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The registered names, sorted.
    pub fn name_list(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.map.keys().copied().collect();
        names.sort_unstable();
        names
    }

    /// The registered names, sorted, for messages.
    pub fn names(&self) -> String {
        self.name_list().join(", ")
    }

    /// Each registered job's name and default queue, sorted by name.
    pub fn queues(&self) -> Vec<(&'static str, &'static str)> {
        let mut pairs: Vec<_> = self.map.iter().map(|(k, h)| (*k, h.queue)).collect();
        pairs.sort_unstable();
        pairs
    }

    pub fn policies(&self) -> impl Iterator<Item = (&'static str, &RetryPolicy)> {
        self.map.iter().map(|(k, h)| (*k, &h.retry))
    }
}

fn decode<J: Job>(payload: &str) -> Result<J, JobError> {
    serde_json::from_str(payload)
        .map_err(|e| JobError::permanent(format!("undecodable payload for job `{}`: {e}", J::NAME)))
}
