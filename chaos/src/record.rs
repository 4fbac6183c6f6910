//! Reading the workers' run records: each worker appends the id of every
//! job it finishes to its own file; we tail the files and note when each id
//! first (and again) appeared.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the record files say so far.
pub struct Records {
    files: Vec<(PathBuf, u64, String)>,
    runs: HashMap<String, Vec<Instant>>,
}

impl Records {
    /// Records of `workers` files in `dir`.
    pub fn new(dir: &Path, workers: usize) -> Self {
        Self {
            files: (0..workers)
                .map(|i| (crate::workers::record_path(dir, i), 0, String::new()))
                .collect(),
            runs: HashMap::new(),
        }
    }

    /// Reads what was appended since the last poll.
    pub fn poll(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        for (path, offset, partial) in &mut self.files {
            let Ok(mut f) = std::fs::File::open(&*path) else {
                continue;
            };
            f.seek(SeekFrom::Start(*offset))?;
            let mut buf = String::new();
            let n = f.read_to_string(&mut buf)?;
            *offset += n as u64;
            partial.push_str(&buf);
            while let Some(nl) = partial.find('\n') {
                let id: String = partial.drain(..=nl).collect();
                self.runs
                    .entry(id.trim_end().to_owned())
                    .or_default()
                    .push(now);
            }
        }
        Ok(())
    }

    /// Jobs of `want` that ran at least once.
    pub fn distinct_in(&self, want: &HashSet<&str>) -> usize {
        if self.runs.len() <= want.len() {
            self.runs
                .keys()
                .filter(|k| want.contains(k.as_str()))
                .count()
        } else {
            want.iter().filter(|k| self.runs.contains_key(**k)).count()
        }
    }

    /// Jobs of `want` that ran more than once.
    pub fn duplicated_in(&self, want: &HashSet<&str>) -> usize {
        self.runs
            .iter()
            .filter(|(k, v)| v.len() > 1 && want.contains(k.as_str()))
            .count()
    }

    /// When the run first saw `id` finished (`None`: it never ran).
    pub fn first_run(&self, id: &str) -> Option<Instant> {
        self.runs.get(id)?.first().copied()
    }

    /// Ids that ran but were never enqueued (must be 0).
    pub fn unexpected(&self, want: &HashSet<&str>) -> usize {
        self.runs
            .keys()
            .filter(|k| !want.contains(k.as_str()))
            .count()
    }

    /// How long after `at` the last of `ids` ran (each id's first run after
    /// `at`); `None` when none ran after `at`.
    pub fn recovery_time(&self, at: Instant, ids: &[String]) -> Option<Duration> {
        ids.iter()
            .filter_map(|id| {
                self.runs
                    .get(id)?
                    .iter()
                    .find(|t| **t >= at)
                    .map(|t| t.duration_since(at))
            })
            .max()
    }
}
