//! Commit bookkeeping for log-style brokers.

use std::collections::BTreeSet;

/// Tracks one partition's records in flight and says what may be committed.
///
/// The commit point is the lowest offset not yet processed: records can finish out of
/// order when handlers for different keys run concurrently, but the commit never passes
/// a record that is still running, so a crash redelivers it rather than losing it.
///
/// ```
/// use tidewater_core::PartitionCommits;
///
/// let mut p = PartitionCommits::new(10);
/// p.dispatched(10);
/// p.dispatched(11);
/// p.dispatched(12);
/// assert_eq!(p.processed(11), None);      // 10 still runs
/// assert_eq!(p.processed(10), Some(12));  // 10 and 11 done: commit 12
/// assert_eq!(p.processed(12), Some(13));
/// ```
#[derive(Clone, Debug)]
pub struct PartitionCommits {
    in_flight: BTreeSet<u64>,
    next: u64,
    committable: u64,
}

impl PartitionCommits {
    /// Starts at `offset`, the position the partition is read from.
    pub fn new(offset: u64) -> Self {
        Self { in_flight: BTreeSet::new(), next: offset, committable: offset }
    }

    /// Records that `offset` was handed to a handler.
    pub fn dispatched(&mut self, offset: u64) {
        self.in_flight.insert(offset);
        self.next = self.next.max(offset + 1);
    }

    /// Records that `offset` was processed. Returns the new commit point if it moved.
    pub fn processed(&mut self, offset: u64) -> Option<u64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        let point = self.in_flight.first().copied().unwrap_or(self.next);
        (point > self.committable).then(|| {
            self.committable = point;
            point
        })
    }

    /// The offset that may be committed now.
    pub fn committable(&self) -> u64 {
        self.committable
    }

    /// Forgets everything in flight and restarts at `offset` (after a seek or a nack that
    /// rewinds the partition).
    pub fn reset(&mut self, offset: u64) {
        self.in_flight.clear();
        self.next = offset;
        self.committable = self.committable.min(offset);
    }

    /// Whether records are in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_commits_past_a_running_record() {
        let mut p = PartitionCommits::new(0);
        for o in 0..5 {
            p.dispatched(o);
        }
        assert_eq!(p.processed(4), None);
        assert_eq!(p.processed(2), None);
        assert_eq!(p.committable(), 0);
        assert_eq!(p.processed(0), Some(1));
        assert_eq!(p.processed(1), Some(3));
        assert_eq!(p.processed(3), Some(5));
        assert!(p.is_idle());
        assert_eq!(p.processed(3), None, "a second report is ignored");
    }

    #[test]
    fn reset_rewinds() {
        let mut p = PartitionCommits::new(0);
        p.dispatched(0);
        p.dispatched(1);
        assert_eq!(p.processed(0), Some(1));
        p.reset(1);
        assert_eq!(p.processed(1), None);
        p.dispatched(1);
        assert_eq!(p.processed(1), Some(2));
    }
}
