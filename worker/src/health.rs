//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! A worker is **ready** when its last check of Redis succeeded recently
//! (the sampler checks every queue's consumer group each round), every
//! queue's fetch loop made progress recently (a read returned, even empty;
//! or it waits for its own jobs to free a slot; or the queue is paused),
//! and it is not shutting down. It is **alive** as long as the process
//! serves HTTP.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The progress of one queue's fetch loop: when a read last returned, and
/// whether the loop is waiting (for a free slot, or paused) rather than
/// reading. Written by the fetch loop, read by readiness and the sampler.
#[derive(Debug)]
pub struct Progress {
    queue: String,
    base: Instant,
    /// Milliseconds after `base` of the last progress.
    last_ms: AtomicU64,
    /// True while the loop waits for its own jobs or is paused: healthy.
    waiting: AtomicBool,
}

impl Progress {
    /// A new record for `queue`, counting as progress now.
    pub fn new(queue: &str) -> Self {
        Self {
            queue: queue.to_owned(),
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        }
    }

    /// The loop made progress (a read returned, or a pause tick).
    pub fn beat(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// The loop starts or stops waiting for a slot (or being paused).
    pub fn waiting(&self, waiting: bool) {
        self.beat();
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// How long the loop has gone without progress (zero while waiting).
    pub fn stalled_for(&self) -> Duration {
        if self.waiting.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }

    /// Unix time (seconds) of the last progress (now while waiting): the
    /// `millrace_fetch_last_progress_timestamp_seconds` gauge.
    pub fn last_progress_unix(&self) -> f64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        now.saturating_sub(self.stalled_for()).as_secs_f64()
    }

    /// The queue this record belongs to.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

/// The shared readiness state of one worker: cheap to clone, updated by the
/// worker's sampler and shutdown, read by the HTTP server.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<State>>,
    stale_after: Duration,
}

/// The fetch loops' progress records and the bound past which a loop counts
/// as stalled.
#[derive(Debug, Default)]
struct Loops {
    progress: Vec<Arc<Progress>>,
    stall_after: Duration,
}

impl Loops {
    /// Adds a loop's progress unless it is watched already.
    fn add(&mut self, progress: Arc<Progress>) {
        if !self.progress.iter().any(|p| Arc::ptr_eq(p, &progress)) {
            self.progress.push(progress);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// When Redis last answered every check with all groups present.
    last_ok: Option<Instant>,
    /// What the last check found wrong, if anything.
    problem: Option<String>,
    shutting_down: bool,
    loops: Loops,
}

impl Health {
    /// A new state: not ready until the first successful check. A success
    /// older than `stale_after` no longer counts (a hung connection).
    pub fn new(stale_after: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State::default())),
            stale_after,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a single assignment: a poisoned lock holds a
        // valid state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a check: `None` when Redis answered and every consumer group
    /// is present, else what is wrong.
    pub fn checked(&self, problem: Option<String>) {
        let mut s = self.state();
        if problem.is_none() {
            s.last_ok = Some(Instant::now());
        }
        s.problem = problem;
    }

    /// Watches the progress of fetch loops: readiness fails, naming the
    /// queue, when one made no progress for longer than `stall_after`.
    /// Loops already watched (see [`watch_more`](Self::watch_more)) stay.
    pub fn watch(&self, progress: Vec<Arc<Progress>>, stall_after: Duration) {
        let mut s = self.state();
        for p in progress {
            s.loops.add(p);
        }
        s.loops.stall_after = stall_after;
    }

    /// Watches one more fetch loop, started after the worker (a partition
    /// a reclaim round found).
    pub fn watch_more(&self, progress: Arc<Progress>) {
        self.state().loops.add(progress);
    }

    /// Marks the worker as shutting down: no longer ready, for good.
    pub fn shutting_down(&self) {
        self.state().shutting_down = true;
    }

    /// `Ok(())` when ready, else why not (one line, for `/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        let s = self.state();
        if s.shutting_down {
            return Err("shutting down".to_owned());
        }
        if let Some(p) = &s.problem {
            return Err(p.clone());
        }
        for p in &s.loops.progress {
            let stalled = p.stalled_for();
            if stalled > s.loops.stall_after {
                return Err(format!(
                    "queue {}: fetch loop made no progress for {:.1}s",
                    p.queue(),
                    stalled.as_secs_f64()
                ));
            }
        }
        match s.last_ok {
            None => Err("starting: Redis not checked yet".to_owned()),
            Some(t) if t.elapsed() > self.stale_after => {
                let queues: Vec<&str> = s.loops.progress.iter().map(|p| p.queue()).collect();
                let prefix = match queues.as_slice() {
                    [] => String::new(),
                    [one] => format!("queue {one}: "),
                    many => format!("queues {}: ", many.join(", ")),
                };
                Err(format!(
                    "{prefix}no successful Redis check for {:.1}s",
                    t.elapsed().as_secs_f64()
                ))
            }
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_a_good_check_and_until_shutdown() {
        let h = Health::new(Duration::from_secs(60));
        assert!(h.readiness().unwrap_err().contains("starting"));
        h.checked(None);
        assert_eq!(h.readiness(), Ok(()));
        h.checked(Some("queue default: consumer group missing".into()));
        assert!(h.readiness().unwrap_err().contains("group missing"));
        h.checked(None);
        assert_eq!(h.readiness(), Ok(()));
        h.shutting_down();
        assert_eq!(h.readiness(), Err("shutting down".to_owned()));
    }

    #[test]
    fn a_stalled_fetch_loop_is_not_ready_until_it_progresses_or_waits() {
        let h = Health::new(Duration::from_secs(60));
        h.checked(None);
        let p = Arc::new(Progress::new("orders"));
        h.watch(vec![p.clone()], Duration::from_millis(20));
        assert_eq!(h.readiness(), Ok(()));
        std::thread::sleep(Duration::from_millis(40));
        let err = h.readiness().unwrap_err();
        assert!(
            err.starts_with("queue orders: fetch loop made no progress"),
            "{err}"
        );
        p.beat();
        assert_eq!(h.readiness(), Ok(()));
        p.waiting(true);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(h.readiness(), Ok(()), "waiting for slots is progress");
        assert_eq!(p.stalled_for(), Duration::ZERO);
    }

    #[test]
    fn a_loop_watched_later_counts_too() {
        let h = Health::new(Duration::from_secs(60));
        h.checked(None);
        h.watch(
            vec![Arc::new(Progress::new("orders"))],
            Duration::from_millis(20),
        );
        let late = Arc::new(Progress::new("orders#3"));
        h.watch_more(late.clone());
        h.watch_more(late.clone());
        std::thread::sleep(Duration::from_millis(40));
        let err = h.readiness().unwrap_err();
        assert!(err.starts_with("queue orders"), "{err}");
        assert_eq!(h.state().loops.progress.len(), 2);
        late.beat();
        assert!(late.stalled_for() < Duration::from_millis(20));
    }

    #[test]
    fn a_stale_success_is_not_ready() {
        let h = Health::new(Duration::ZERO);
        h.checked(None);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            h.readiness()
                .unwrap_err()
                .contains("no successful Redis check")
        );
    }
}
