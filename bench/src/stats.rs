//! Figures: the samples of one measured quantity over several runs, their
//! median and range, and how they compare with the ceiling.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// Whether more or less of a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Rates: jobs per second.
    Higher,
    /// Costs and latencies.
    Lower,
}

/// One figure: its samples (one per run) and what it is compared with.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Name in the summary and the JSON file, e.g. `process_1_worker`.
    pub name: String,
    /// Unit, e.g. `jobs/s`, `ms`, `MB`, `us/job`.
    pub unit: &'static str,
    /// One value per run.
    pub samples: Vec<f64>,
    /// Which direction is better.
    pub better: Better,
    /// The name of the ceiling figure this one is compared with, if any.
    pub ceiling: Option<&'static str>,
    /// A note for the summary (the setting that produced it, say).
    pub note: String,
}

impl Figure {
    /// The median of the samples (the mean of the two middle ones for an
    /// even count); 0 when there are none.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }

    /// The smallest sample.
    pub fn min(&self) -> f64 {
        self.samples.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest sample.
    pub fn max(&self) -> f64 {
        self.samples
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The median of `xs`; 0 when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// All figures of a run, in the order they were first recorded.
#[derive(Debug, Default)]
pub struct Figures {
    order: Vec<String>,
    map: BTreeMap<String, Figure>,
}

impl Figures {
    /// Adds a sample to figure `name`, creating it on first use.
    pub fn add(
        &mut self,
        name: &str,
        unit: &'static str,
        better: Better,
        ceiling: Option<&'static str>,
        value: f64,
    ) {
        let fig = self.map.entry(name.to_owned()).or_insert_with(|| {
            self.order.push(name.to_owned());
            Figure {
                name: name.to_owned(),
                unit,
                samples: Vec::new(),
                better,
                ceiling,
                note: String::new(),
            }
        });
        fig.samples.push(value);
    }

    /// Sets the note of figure `name` (no-op when it does not exist).
    pub fn note(&mut self, name: &str, note: impl Into<String>) {
        if let Some(f) = self.map.get_mut(name) {
            f.note = note.into();
        }
    }

    /// Figure `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.map.get(name)
    }

    /// The figures in recording order.
    pub fn iter(&self) -> impl Iterator<Item = &Figure> {
        self.order.iter().filter_map(|n| self.map.get(n))
    }

    /// How close figure `fig` comes to its ceiling, as a fraction where 1.0
    /// is "as good as Redis alone": figure ÷ ceiling for rates, ceiling ÷
    /// figure for costs. `None` when it has no ceiling.
    pub fn ratio(&self, fig: &Figure) -> Option<f64> {
        let ceiling = self.get(fig.ceiling?)?.median();
        let value = fig.median();
        if ceiling <= 0.0 || value <= 0.0 {
            return None;
        }
        Some(match fig.better {
            Better::Higher => value / ceiling,
            Better::Lower => ceiling / value,
        })
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s, 3 significant
/// digits.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// The value at `q` (0..1) of a µs histogram, in milliseconds.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn ratio_follows_the_direction() {
        let mut f = Figures::default();
        f.add("ceil", "jobs/s", Better::Higher, None, 100.0);
        f.add("rate", "jobs/s", Better::Higher, Some("ceil"), 70.0);
        f.add("ceil_cpu", "us/job", Better::Lower, None, 2.0);
        f.add("cpu", "us/job", Better::Lower, Some("ceil_cpu"), 4.0);
        let r = |n: &str| f.get(n).and_then(|x| f.ratio(x));
        assert_eq!(r("rate"), Some(0.7));
        assert_eq!(r("cpu"), Some(0.5));
        assert_eq!(r("ceil"), None);
    }
}
