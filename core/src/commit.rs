//! Commit bookkeeping for log-style brokers.

use std::collections::BTreeMap;

/// Identifies one dispatch of a record: its offset, and which dispatch of that offset
/// it was, so that a handler finishing after its partition was rewound cannot settle the
/// record's later dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The offset of the record.
    pub offset: u64,
    serial: u64,
}

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
/// let a = p.dispatched(10);
/// let b = p.dispatched(11);
/// let c = p.dispatched(12);
/// assert_eq!(p.processed(b), None);      // 10 still runs
/// assert_eq!(p.processed(a), Some(12));  // 10 and 11 done: commit 12
/// assert_eq!(p.processed(c), Some(13));
/// ```
#[derive(Clone, Debug)]
pub struct PartitionCommits {
    /// Offset -> serial of its current dispatch.
    in_flight: BTreeMap<u64, u64>,
    next: u64,
    committable: u64,
    serial: u64,
}

impl PartitionCommits {
    /// Starts at `offset`, the position the partition is read from.
    pub fn new(offset: u64) -> Self {
        Self { in_flight: BTreeMap::new(), next: offset, committable: offset, serial: 0 }
    }

    /// Records that the record at `offset` was handed to a handler.
    pub fn dispatched(&mut self, offset: u64) -> Ticket {
        self.serial += 1;
        self.in_flight.insert(offset, self.serial);
        self.next = self.next.max(offset + 1);
        Ticket { offset, serial: self.serial }
    }

    /// Whether `ticket` is still the record's current dispatch: false once the partition
    /// was rewound to or below its offset.
    pub fn is_current(&self, ticket: Ticket) -> bool {
        self.in_flight.get(&ticket.offset) == Some(&ticket.serial)
    }

    /// Records that the dispatch `ticket` was processed. Returns the new commit point if
    /// it moved. A ticket that is no longer current changes nothing.
    pub fn processed(&mut self, ticket: Ticket) -> Option<u64> {
        if !self.is_current(ticket) {
            return None;
        }
        self.in_flight.remove(&ticket.offset);
        let point = self.in_flight.keys().next().copied().unwrap_or(self.next);
        (point > self.committable).then(|| {
            self.committable = point;
            point
        })
    }

    /// The offset that may be committed now.
    pub fn committable(&self) -> u64 {
        self.committable
    }

    /// Rewinds the partition to `offset` (a nack, or a seek): records from `offset` on
    /// are forgotten, so their running handlers settle nothing, and reading goes on from
    /// `offset`. Records below it stay in flight and still hold the commit point back.
    pub fn rewind(&mut self, offset: u64) {
        self.in_flight.split_off(&offset);
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
        let t: Vec<Ticket> = (0..5).map(|o| p.dispatched(o)).collect();
        assert_eq!(p.processed(t[4]), None);
        assert_eq!(p.processed(t[2]), None);
        assert_eq!(p.committable(), 0);
        assert_eq!(p.processed(t[0]), Some(1));
        assert_eq!(p.processed(t[1]), Some(3));
        assert_eq!(p.processed(t[3]), Some(5));
        assert!(p.is_idle());
        assert_eq!(p.processed(t[3]), None, "a second report is ignored");
    }

    #[test]
    fn rewind_keeps_what_lies_below() {
        let mut p = PartitionCommits::new(0);
        let t: Vec<Ticket> = (0..4).map(|o| p.dispatched(o)).collect();
        p.rewind(2);
        assert!(p.is_current(t[1]));
        assert!(!p.is_current(t[2]) && !p.is_current(t[3]));
        assert_eq!(p.processed(t[3]), None, "a rewound record settles nothing");
        assert_eq!(p.processed(t[1]), None, "0 still runs");
        assert_eq!(p.processed(t[0]), Some(2), "the commit stops at the rewind point");
        let again = p.dispatched(2);
        assert_eq!(p.processed(t[2]), None, "the old dispatch of 2 cannot settle the new one");
        assert_eq!(p.processed(again), Some(3));
    }
}
