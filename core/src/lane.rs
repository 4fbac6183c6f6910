//! Lanes: the streams of one queue. A queue has one lane per priority
//! level (`high`, `default`, `low`); every lane of a queue shares the
//! queue's hash tag, so one script or one blocking read spans them on a
//! Redis Cluster. The `default` lane is the queue's original stream, so a
//! queue that never sees a priority is exactly what it was before lanes.
//!
//! A lane has its own ready stream (with the queue's consumer group), its
//! own delayed set and its own in-place retry counts (entry ids are unique
//! per stream only); everything else (the dead-letter stream, stats,
//! history, unique locks, the pause flag) belongs to the queue. The lanes a
//! queue uses are recorded in a set (`millrace:{q}:lanes`) by the producer
//! that first writes to one, and workers read that set to learn them.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// A queue's priority level, the name of one of its lanes. Workers serve
/// `High` before `Default` before `Low` (strictly, or weighted: see the
/// worker's `LaneOrder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Served first.
    High,
    /// The queue's original lane; jobs without a priority go here.
    #[default]
    Default,
    /// Served last.
    Low,
}

impl Priority {
    /// Every level, in serving order (highest first).
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Default, Priority::Low];

    /// The level's name: `high`, `default` or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Default => "default",
            Priority::Low => "low",
        }
    }

    /// The level's position in serving order (0 = served first).
    pub fn rank(self) -> usize {
        match self {
            Priority::High => 0,
            Priority::Default => 1,
            Priority::Low => 2,
        }
    }

    /// The segment this lane adds to the queue's key names; `None` for the
    /// default lane, whose keys are the queue's own.
    pub(crate) fn segment(self) -> Option<&'static str> {
        match self {
            Priority::Default => None,
            p => Some(p.as_str()),
        }
    }

    /// Reads a level as written on the wire (`high`, `default`, `low`);
    /// `None` for anything else.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "high" => Some(Priority::High),
            "default" => Some(Priority::Default),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = ConfigError;

    /// Parses `high`, `default` or `low` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::from_wire(&s.to_ascii_lowercase()).ok_or_else(|| {
            ConfigError::Invalid(format!("invalid priority {s:?}: use high, default or low"))
        })
    }
}

/// Parses the lane names stored in a queue's lanes set, ignoring names
/// this build does not know, always including the default lane, in
/// serving order.
pub fn lanes_from_names<S: AsRef<str>>(names: &[S]) -> Vec<Priority> {
    let mut lanes = vec![Priority::Default];
    for n in names {
        if let Some(p) = Priority::from_wire(n.as_ref())
            && !lanes.contains(&p)
        {
            lanes.push(p);
        }
    }
    lanes.sort();
    lanes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_and_order() {
        assert_eq!("HIGH".parse::<Priority>().unwrap(), Priority::High);
        assert_eq!("low".parse::<Priority>().unwrap(), Priority::Low);
        let err = "urgent".parse::<Priority>().unwrap_err().to_string();
        assert!(err.contains("use high, default or low"), "{err}");
        assert!(Priority::High < Priority::Default && Priority::Default < Priority::Low);
        assert_eq!(Priority::default(), Priority::Default);
    }

    #[test]
    fn lane_names_always_include_default_in_order() {
        assert_eq!(lanes_from_names::<&str>(&[]), vec![Priority::Default]);
        assert_eq!(
            lanes_from_names(&["low", "bogus", "high", "low"]),
            vec![Priority::High, Priority::Default, Priority::Low]
        );
    }
}
