//! Commit bookkeeping for log-style brokers.

use std::collections::VecDeque;

/// Identifies one dispatch of a record: its offset, and which dispatch of that offset
/// it was, so that a handler finishing after its partition was rewound cannot settle the
/// record's later dispatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket {
    /// The offset of the record.
    pub offset: u64,
    serial: u64,
}

impl Ticket {
    /// Which dispatch of its partition this was: with the offset, all a ticket holds. For
    /// a driver that keeps its tickets on the deliveries themselves (a
    /// [`DispatchNote`](crate::DispatchNote)) rather than in a settle handle of each.
    pub fn serial(self) -> u64 {
        self.serial
    }

    /// The ticket whose [`Ticket::serial`] was `serial`, of the record at `offset`.
    ///
    /// ```
    /// use tidewater_core::{PartitionCommits, Ticket};
    ///
    /// let mut commits = PartitionCommits::new(0);
    /// let ticket = commits.dispatched(0);
    /// assert_eq!(Ticket::from_parts(ticket.offset, ticket.serial()), ticket);
    /// ```
    pub fn from_parts(offset: u64, serial: u64) -> Self {
        Self { offset, serial }
    }
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
    /// Records dispatched and not yet passed by the commit point, by ascending offset.
    /// Records arrive in offset order, so a dispatch appends and the commit point pops
    /// from the front: a ring, where a tree would allocate and rebalance per record.
    in_flight: VecDeque<Dispatch>,
    next: u64,
    committable: u64,
    serial: u64,
}

/// One dispatch of a record, kept until every record below it was processed too.
#[derive(Clone, Copy, Debug)]
struct Dispatch {
    offset: u64,
    serial: u64,
    processed: bool,
}

impl PartitionCommits {
    /// Starts at `offset`, the position the partition is read from.
    pub fn new(offset: u64) -> Self {
        Self { in_flight: VecDeque::new(), next: offset, committable: offset, serial: 0 }
    }

    /// Records that the record at `offset` was handed to a handler.
    pub fn dispatched(&mut self, offset: u64) -> Ticket {
        self.serial += 1;
        let dispatch = Dispatch { offset, serial: self.serial, processed: false };
        match self.in_flight.back() {
            None => self.in_flight.push_back(dispatch),
            Some(last) if last.offset < offset => self.in_flight.push_back(dispatch),
            // Out of order (a driver handing an offset again without a rewind): keep the
            // order, replacing an earlier dispatch of the same offset.
            Some(_) => match self.find(offset) {
                Ok(i) => self.in_flight[i] = dispatch,
                Err(i) => self.in_flight.insert(i, dispatch),
            },
        }
        self.next = self.next.max(offset + 1);
        Ticket { offset, serial: self.serial }
    }

    fn find(&self, offset: u64) -> Result<usize, usize> {
        // Offsets are mostly consecutive, so the distance from the front is usually the
        // index; gaps (compaction, transaction markers) fall back to a search.
        if let Some(front) = self.in_flight.front() {
            let guess = offset.wrapping_sub(front.offset);
            if let Some(d) = usize::try_from(guess).ok().and_then(|i| self.in_flight.get(i)) {
                if d.offset == offset {
                    return Ok(guess as usize);
                }
            }
        }
        self.in_flight.binary_search_by_key(&offset, |d| d.offset)
    }

    /// The position of `ticket`'s dispatch while it is current and unprocessed.
    fn position(&self, ticket: Ticket) -> Option<usize> {
        let i = self.find(ticket.offset).ok()?;
        let d = &self.in_flight[i];
        (d.serial == ticket.serial && !d.processed).then_some(i)
    }

    /// Whether `ticket` is still the record's current dispatch: false once the partition
    /// was rewound to or below its offset.
    pub fn is_current(&self, ticket: Ticket) -> bool {
        self.position(ticket).is_some()
    }

    /// Records that the dispatch `ticket` was processed. Returns the new commit point if
    /// it moved. A ticket that is no longer current changes nothing.
    pub fn processed(&mut self, ticket: Ticket) -> Option<u64> {
        let before = self.committable;
        (self.mark_processed(ticket) && self.committable > before).then_some(self.committable)
    }

    /// Records that the dispatch `ticket` was processed if it is still current, moving
    /// the commit point with it; returns whether it was current (a ticket that is not
    /// changes nothing). One lookup, where [`Self::is_current`] and then
    /// [`Self::processed`] take two: a driver that fails a stale ack calls this on
    /// every ack.
    pub fn mark_processed(&mut self, ticket: Ticket) -> bool {
        let Some(i) = self.position(ticket) else { return false };
        self.in_flight[i].processed = true;
        while self.in_flight.front().is_some_and(|d| d.processed) {
            self.in_flight.pop_front();
        }
        let point = self.in_flight.front().map_or(self.next, |d| d.offset);
        self.committable = self.committable.max(point);
        true
    }

    /// The offset after the highest dispatched (or the start, or where a rewind went
    /// back to): where reading goes on from. A record below it is dispatched again out of
    /// order, and replaces its earlier dispatch.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The offset that may be committed now.
    pub fn committable(&self) -> u64 {
        self.committable
    }

    /// Rewinds the partition to `offset` (a nack, or a seek): records from `offset` on
    /// are forgotten, so their running handlers settle nothing, and reading goes on from
    /// `offset`. Records below it stay in flight and still hold the commit point back.
    pub fn rewind(&mut self, offset: u64) {
        let keep = self.find(offset).unwrap_or_else(|i| i);
        self.in_flight.truncate(keep);
        self.next = offset;
        self.committable = self.committable.min(offset);
    }

    /// Whether records are in flight.
    pub fn is_idle(&self) -> bool {
        // The front is never a processed record: those are popped as the point passes.
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_offset_follows_dispatches_and_rewinds() {
        let mut p = PartitionCommits::new(7);
        assert_eq!(p.next_offset(), 7);
        for o in 7..10 {
            let _ = p.dispatched(o);
        }
        assert_eq!(p.next_offset(), 10);
        let _ = p.dispatched(8);
        assert_eq!(p.next_offset(), 10, "a record again below it leaves it");
        p.rewind(8);
        assert_eq!(p.next_offset(), 8);
    }

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
    fn marking_a_record_processed_says_whether_it_was_current() {
        let mut p = PartitionCommits::new(0);
        let t: Vec<Ticket> = (0..3).map(|o| p.dispatched(o)).collect();
        assert!(p.mark_processed(t[1]));
        assert_eq!(p.committable(), 0, "0 still runs");
        assert!(!p.mark_processed(t[1]), "a second report is not current");
        assert!(p.mark_processed(t[0]));
        assert_eq!(p.committable(), 2);
        p.rewind(2);
        assert!(!p.mark_processed(t[2]), "rewound");
        assert_eq!(p.committable(), 2);
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

    #[test]
    fn an_offset_dispatched_out_of_order_keeps_the_point_right() {
        let mut p = PartitionCommits::new(0);
        let (a, c) = (p.dispatched(0), p.dispatched(2));
        let b = p.dispatched(1);
        let c_again = p.dispatched(2);
        assert!(!p.is_current(c), "a second dispatch of an offset replaces the first");
        assert_eq!(p.processed(a), Some(1));
        assert_eq!(p.processed(c_again), None, "1 still runs");
        assert_eq!(p.processed(b), Some(3));
        assert!(p.is_idle());
    }

    #[test]
    fn a_rewind_below_a_processed_record_forgets_it() {
        let mut p = PartitionCommits::new(0);
        let t: Vec<Ticket> = (0..4).map(|o| p.dispatched(o)).collect();
        assert_eq!(p.processed(t[2]), None);
        p.rewind(1);
        assert_eq!(p.processed(t[0]), Some(1));
        assert!(p.is_idle());
        let again: Vec<Ticket> = (1..4).map(|o| p.dispatched(o)).collect();
        assert_eq!(p.processed(again[0]), Some(2));
        assert_eq!(p.processed(again[2]), None, "2 must run again first");
        assert_eq!(p.processed(again[1]), Some(4));
    }
}
