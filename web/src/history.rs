//! Throughput history per queue, for the overview's rates and charts: a
//! sample of each queue's counters whenever the overview is read (at most
//! one a second), kept for a few minutes in memory. Nobody watching costs
//! Redis nothing.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Samples kept per queue (with the page refreshing every 2 s: 4 minutes).
const KEEP: usize = 120;
/// Samples closer together than this are not kept.
const MIN_GAP: Duration = Duration::from_millis(900);
/// Rates are measured over about this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    processed: u64,
    failed: u64,
}

/// Counters over time, by queue.
#[derive(Debug, Default)]
pub(crate) struct History {
    queues: HashMap<String, VecDeque<Sample>>,
}

/// What the overview shows of a queue's history.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rates {
    /// Jobs processed per second over the last ~10 s.
    pub(crate) processed: Option<f64>,
    /// Failed attempts per second over the last ~10 s.
    pub(crate) failed: Option<f64>,
    /// Processed per second between consecutive samples, oldest first.
    pub(crate) series: Vec<f64>,
}

impl History {
    /// Records counters read now and returns the queue's rates.
    pub(crate) fn record(&mut self, queue: &str, processed: u64, failed: u64) -> Rates {
        let now = Instant::now();
        let samples = self.queues.entry(queue.to_owned()).or_default();
        if samples
            .back()
            .is_none_or(|last| now.duration_since(last.at) >= MIN_GAP)
        {
            samples.push_back(Sample {
                at: now,
                processed,
                failed,
            });
            if samples.len() > KEEP {
                samples.pop_front();
            }
        }
        rates(samples)
    }

    /// Forgets queues no longer registered.
    pub(crate) fn keep_only(&mut self, names: &[String]) {
        self.queues.retain(|k, _| names.contains(k));
    }
}

fn per_sec(new: u64, old: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        new.saturating_sub(old) as f64 / secs
    } else {
        0.0
    }
}

fn rates(samples: &VecDeque<Sample>) -> Rates {
    let Some(last) = samples.back() else {
        return Rates::default();
    };
    let series = samples
        .iter()
        .zip(samples.iter().skip(1))
        .map(|(a, b)| {
            per_sec(
                b.processed,
                a.processed,
                b.at.duration_since(a.at).as_secs_f64(),
            )
        })
        .collect();
    let first = samples
        .iter()
        .find(|s| last.at.duration_since(s.at) <= RATE_WINDOW)
        .filter(|s| s.at < last.at);
    let secs = first.map_or(0.0, |f| last.at.duration_since(f.at).as_secs_f64());
    Rates {
        processed: first.map(|f| per_sec(last.processed, f.processed, secs)),
        failed: first.map(|f| per_sec(last.failed, f.failed, secs)),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_need_two_samples() {
        let mut h = History::default();
        let r = h.record("q", 10, 1);
        assert!(r.processed.is_none());
        assert!(r.series.is_empty());
        // Too soon: not kept, still no rate.
        let r = h.record("q", 20, 1);
        assert!(r.processed.is_none());
        h.keep_only(&[]);
        assert!(h.queues.is_empty());
    }
}
