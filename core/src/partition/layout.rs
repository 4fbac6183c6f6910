//! A partitioned queue's layout: which partitions (by label: `q#<label>`)
//! make up its current count, in order. Position `i` of the layout is
//! where [`partition_of`](super::partition_of) sends a key (`i` of `N`).
//!
//! On one Redis server the layout is `0..N`. On a Redis Cluster a
//! partition's master is decided by the hash slot of its tag `{q#label}`,
//! so `0..N` may put most partitions on one master; [`spread`] picks the
//! labels instead so that each master serves as many partitions as any
//! other (±1), from the cluster's slot map at the time the count is set.
//! The layout is stored, so producers and workers never need the slot map.

use super::MAX_PARTITIONS;
use crate::slot::{SlotMap, key_slot};

/// Largest partition label + 1: labels beyond `0..N` exist only to land
/// partitions on the masters that need one.
pub const MAX_LABEL: u32 = 65_536;

/// The partitions of a queue, by label, in placement order. One entry means
/// the queue is not partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout(Vec<u32>);

impl Layout {
    /// The plain layout `0..n` (`n` at least 1).
    pub fn plain(n: u32) -> Self {
        Self((0..n.max(1)).collect())
    }

    /// The layout of an unpartitioned queue.
    pub fn single() -> Self {
        Self::plain(1)
    }

    /// How many partitions new jobs are placed over.
    pub fn count(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(MAX_PARTITIONS)
    }

    /// True when the queue is partitioned (more than one partition).
    pub fn is_partitioned(&self) -> bool {
        self.0.len() > 1
    }

    /// The label of the partition at `position` (`position` modulo the
    /// count, so any `u32` is safe).
    pub fn label(&self, position: u32) -> u32 {
        let n = self.0.len().max(1);
        self.0.get(position as usize % n).copied().unwrap_or(0)
    }

    /// Every label, in placement order.
    pub fn labels(&self) -> &[u32] {
        &self.0
    }

    /// Parses the stored form: a count `N` (the plain layout) or the
    /// labels joined by `,`. Anything else (out of range, repeated,
    /// malformed) is `None`.
    pub fn parse(stored: &str) -> Option<Self> {
        let stored = stored.trim();
        if !stored.contains(',') {
            let n: u32 = stored.parse().ok()?;
            return (1..=MAX_PARTITIONS).contains(&n).then(|| Self::plain(n));
        }
        let mut labels = Vec::new();
        for part in stored.split(',') {
            let label: u32 = part.trim().parse().ok()?;
            if label >= MAX_LABEL || labels.contains(&label) {
                return None;
            }
            labels.push(label);
        }
        (labels.len() <= MAX_PARTITIONS as usize).then_some(Self(labels))
    }

    /// The stored form: the count for a plain layout, else the labels.
    pub fn stored(&self) -> String {
        if *self == Self::plain(self.count()) {
            return self.count().to_string();
        }
        let mut s = String::with_capacity(self.0.len() * 4);
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&l.to_string());
        }
        s
    }
}

/// The hash slot of partition `label` of `queue` on a Redis Cluster (the
/// slot of every key of that partition: its tag is `queue#label`).
pub fn partition_slot(queue: &str, label: u32) -> u16 {
    key_slot(&super::partition_name(queue, label))
}

/// A layout of `n` partitions of `queue` with each master of `map` serving
/// as many as any other, give or take one. Labels of `old` (the current
/// layout) are kept, in their order, while their master is below its
/// share, so setting the same count again only moves what is out of
/// balance (after a resharding, say); new partitions get the smallest free
/// labels that land on the emptiest masters.
pub fn spread(queue: &str, n: u32, old: &Layout, map: &SlotMap) -> Layout {
    let n = n.clamp(1, MAX_PARTITIONS);
    let masters = map.masters();
    if masters == 0 || n == 1 {
        return Layout::plain(n);
    }
    let base = n as usize / masters;
    let extra = n as usize % masters;
    let mut count = vec![0usize; masters];
    let mut labels: Vec<u32> = Vec::with_capacity(n as usize);
    // A master may take one more while it is below its share: `base`, or
    // `base + 1` for the first `extra` masters to reach it.
    let fits = |count: &[usize], m: usize| {
        let full = count.iter().filter(|c| **c > base).count();
        count[m] < base || (count[m] == base && full < extra)
    };
    for &label in old.labels() {
        if labels.len() == n as usize {
            break;
        }
        if let Some(m) = map.master_of(partition_slot(queue, label))
            && fits(&count, m)
        {
            count[m] += 1;
            labels.push(label);
        }
    }
    while labels.len() < n as usize {
        let Some(m) = (0..masters).min_by_key(|m| count[*m]) else {
            break;
        };
        let free = |l: &u32| !labels.contains(l);
        let on_m = (0..MAX_LABEL)
            .filter(free)
            .find(|l| map.master_of(partition_slot(queue, *l)) == Some(m));
        // A master no label reaches (it serves no slot): any free label.
        let label = on_m.or_else(|| (0..MAX_LABEL).find(free)).unwrap_or(0);
        count[m] += 1;
        labels.push(label);
    }
    Layout(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three masters with the slots split as `redis-cli --cluster create`
    /// splits them.
    fn map(ranges: &[(u16, u16, &str)]) -> SlotMap {
        SlotMap::new(ranges.iter().map(|(first, last, id)| {
            let master = crate::slot::Master {
                id: (*id).to_owned(),
                host: "127.0.0.1".into(),
                port: 7000,
            };
            (*first, *last, master)
        }))
    }

    fn three() -> SlotMap {
        map(&[(0, 5460, "a"), (5461, 10922, "b"), (10923, 16383, "c")])
    }

    fn per_master(queue: &str, l: &Layout, map: &SlotMap) -> Vec<usize> {
        let mut c = vec![0; map.masters()];
        for &label in l.labels() {
            if let Some(m) = map.master_of(partition_slot(queue, label)) {
                c[m] += 1;
            }
        }
        c
    }

    #[test]
    fn the_stored_form_round_trips() {
        for l in [
            Layout::plain(1),
            Layout::plain(8),
            Layout(vec![0, 5, 2, 17]),
        ] {
            assert_eq!(Layout::parse(&l.stored()), Some(l.clone()));
        }
        assert_eq!(Layout::plain(8).stored(), "8");
        assert_eq!(Layout(vec![0, 5, 2]).stored(), "0,5,2");
        for bad in ["", "0", "257", "x", "1,1", "1,,2", "1,65536", "-1,2"] {
            assert_eq!(Layout::parse(bad), None, "{bad}");
        }
        assert_eq!(Layout::parse(" 3 "), Some(Layout::plain(3)));
    }

    #[test]
    fn labels_wrap_around_the_count() {
        let l = Layout(vec![4, 9, 1]);
        assert_eq!(l.label(0), 4);
        assert_eq!(l.label(4), 9);
        assert_eq!(l.count(), 3);
        assert!(l.is_partitioned());
        assert!(!Layout::single().is_partitioned());
    }

    #[test]
    fn partitions_spread_evenly_over_the_masters() {
        let map = three();
        for queue in ["orders", "partitioned", "q", "emails-outbound"] {
            for n in (1..=48).chain([100, MAX_PARTITIONS]) {
                let l = spread(queue, n, &Layout::single(), &map);
                assert_eq!(l.count(), n);
                let c = per_master(queue, &l, &map);
                let (lo, hi) = (c.iter().min().copied(), c.iter().max().copied());
                assert!(
                    hi.unwrap_or(0) - lo.unwrap_or(0) <= 1 || n == 1,
                    "{queue} × {n}: {c:?}"
                );
                let mut uniq = l.labels().to_vec();
                uniq.sort_unstable();
                uniq.dedup();
                assert_eq!(uniq.len(), n as usize);
            }
        }
    }

    #[test]
    fn setting_the_count_again_keeps_what_is_balanced() {
        let map = three();
        let eight = spread("orders", 8, &Layout::single(), &map);
        assert_eq!(spread("orders", 8, &eight, &map), eight);
        // Raising keeps every partition; lowering keeps a balanced subset.
        let twelve = spread("orders", 12, &eight, &map);
        assert_eq!(&twelve.labels()[..8], eight.labels());
        let six = spread("orders", 6, &twelve, &map);
        assert_eq!(per_master("orders", &six, &map), vec![2, 2, 2]);
        assert!(six.labels().iter().all(|l| twelve.labels().contains(l)));
        // The plain layout, out of balance, is rebalanced by moving the few.
        let plain = Layout::plain(8);
        let fixed = spread("orders", 8, &plain, &map);
        let kept = fixed
            .labels()
            .iter()
            .filter(|l| plain.labels().contains(l))
            .count();
        let c = per_master("orders", &plain, &map);
        let over: usize = c.iter().map(|c| c.saturating_sub(3)).sum();
        assert_eq!(kept, 8 - over, "{c:?} → {fixed:?}");
    }

    #[test]
    fn one_master_or_none_gives_the_plain_layout() {
        let one = map(&[(0, 16383, "a")]);
        assert_eq!(spread("q", 4, &Layout::single(), &one), Layout::plain(4));
        assert_eq!(
            spread("q", 4, &Layout::single(), &SlotMap::default()),
            Layout::plain(4)
        );
    }

    #[test]
    fn a_master_without_slots_still_gets_a_count_but_no_label_is_lost() {
        // A map naming a master whose range is empty: every label lands
        // elsewhere, and the layout still has n distinct labels.
        let m = map(&[(0, 16383, "a"), (1, 0, "b")]);
        let l = spread("q", 4, &Layout::single(), &m);
        assert_eq!(l.count(), 4);
    }
}
