//! Liveness and readiness, as `/healthz` and `/readyz` report them.
//!
//! A worker is **ready** when its last check of Redis succeeded recently
//! (the sampler checks every queue's consumer group each round) and it is
//! not shutting down. It is **alive** as long as the process serves HTTP.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The shared readiness state of one worker: cheap to clone, updated by the
/// worker's sampler and shutdown, read by the HTTP server.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<State>>,
    stale_after: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// When Redis last answered every check with all groups present.
    last_ok: Option<Instant>,
    /// What the last check found wrong, if anything.
    problem: Option<String>,
    shutting_down: bool,
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
        match s.last_ok {
            None => Err("starting: Redis not checked yet".to_owned()),
            Some(t) if t.elapsed() > self.stale_after => Err(format!(
                "no successful Redis check for {}s",
                t.elapsed().as_secs()
            )),
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
