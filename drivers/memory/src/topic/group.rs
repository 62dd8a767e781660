//! A consumer group of a topic: its members and, per partition, its cursor.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use tidewater_core::hash::Fnv1a;
use tokio::time::Instant;

use super::{MemberId, Settled};

/// A topic's groups by name.
///
/// Hashed with FNV-1a rather than std's SipHash: a member's settlements look its group
/// up by name, once per message while a publisher waits for room, and SipHash took about
/// 150 instructions a lookup there (callgrind, the peer bench's counting row). The names
/// come from the service's own code, not from the network, so there is no flood of
/// chosen collisions to guard against.
pub(super) type Groups = HashMap<Arc<str>, Group, BuildHasherDefault<Fnv1a>>;

pub(super) struct Group {
    pub(super) members: Vec<MemberId>,
    pub(super) cursors: Vec<Cursor>,
    pub(super) private: bool,
    pub(super) acked: u64,
}

/// A group's position in one partition: everything below `floor` is acked, and `slots`
/// holds the state of each offset from `floor` up to the next one never dispatched.
#[derive(Default)]
pub(super) struct Cursor {
    pub(super) owner: Option<MemberId>,
    pub(super) floor: u64,
    pub(super) slots: VecDeque<Slot>,
    /// Offsets in `Slot::Waiting`, with when they fall due.
    pub(super) retry: Vec<Retry>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    InFlight {
        member: MemberId,
        attempt: u32,
    },
    /// Waiting for redelivery; its attempt is in `Cursor::retry`.
    Waiting,
    Acked,
}

impl Cursor {
    pub(super) fn at(offset: u64) -> Self {
        Self { floor: offset, ..Self::default() }
    }

    /// The next offset never dispatched.
    pub(super) fn next(&self) -> u64 {
        self.floor + self.slots.len() as u64
    }

    pub(super) fn slot(&mut self, offset: u64) -> Option<&mut Slot> {
        offset.checked_sub(self.floor).and_then(|i| self.slots.get_mut(i as usize))
    }

    /// Moves the floor past acked offsets; returns whether it moved.
    pub(super) fn advance(&mut self) -> bool {
        let before = self.floor;
        while self.slots.front() == Some(&Slot::Acked) {
            self.slots.pop_front();
            self.floor += 1;
        }
        self.floor != before
    }
}

pub(super) struct Retry {
    pub(super) offset: u64,
    pub(super) attempt: u32,
    pub(super) ready_at: Instant,
}

impl Group {
    /// Applies settlements; returns whether a floor moved (room for publishers).
    pub(super) fn apply(&mut self, settled: &[Settled]) -> bool {
        let mut now = None;
        let mut moved = false;
        for s in settled {
            let cursor = &mut self.cursors[s.partition as usize];
            let Some(slot) = cursor.slot(s.offset) else { continue };
            let Slot::InFlight { attempt, .. } = *slot else { continue };
            match s.nack {
                None => {
                    *slot = Slot::Acked;
                    self.acked += 1;
                    moved |= cursor.advance();
                }
                Some(delay) => {
                    *slot = Slot::Waiting;
                    cursor.retry.push(Retry {
                        offset: s.offset,
                        attempt: attempt + 1,
                        ready_at: *now.get_or_insert_with(Instant::now) + delay,
                    });
                }
            }
        }
        moved
    }

    /// Spreads the partitions over the members, round robin in join order.
    pub(super) fn rebalance(&mut self) {
        let n = self.members.len();
        for (p, cursor) in self.cursors.iter_mut().enumerate() {
            cursor.owner = (n > 0).then(|| self.members[p % n]);
        }
    }
}
