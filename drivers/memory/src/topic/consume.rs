//! What a group's members do with a topic: join, leave, fetch, settle.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tidewater_core::StartFrom;
use tokio::time::Instant;

use super::group::Retry;
use super::{Cursor, Fetch, FetchBuffers, Fetched, Group, Head, MemberId, Settled, Slot, Topic};

impl Topic {
    /// Whether a publisher waits for room.
    pub(crate) fn publishers_blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst) > 0
    }

    /// Applies `settled` of `group` now, rather than with its reader's next fetch.
    pub(crate) fn settle(&self, group: &str, settled: &[Settled]) {
        let mut state = self.lock();
        let moved = state.groups.get_mut(group).is_some_and(|g| g.apply(settled));
        if moved {
            state.wake_publishers(&self.space);
        }
        drop(state);
        self.wake_watchers();
    }

    /// Adds a member to `group`, creating the group at `start` if new.
    pub(crate) fn join(&self, group: Option<&str>, start: StartFrom) -> (Arc<str>, MemberId) {
        let mut state = self.lock();
        let member = state.next_member;
        state.next_member += 1;
        let (name, private): (Arc<str>, bool) = match group {
            Some(g) => (Arc::from(g), false),
            None => (Arc::from(format!("~private-{member}").as_str()), true),
        };
        if !state.groups.contains_key(&name) {
            let cursors = state
                .partitions
                .iter()
                .map(|p| {
                    let at = match start {
                        StartFrom::Earliest => p.base,
                        StartFrom::Latest => p.end(),
                    };
                    Cursor::at(at)
                })
                .collect();
            state.groups.insert(Arc::clone(&name), Group { members: Vec::new(), cursors, private, acked: 0 });
        }
        let g = state.groups.get_mut(&name).expect("group exists");
        g.members.push(member);
        g.rebalance();
        drop(state);
        self.wake_readers();
        (name, member)
    }

    /// Removes a member after applying what it settled; what it still had in flight is
    /// redelivered to the group.
    pub(crate) fn leave(&self, group: &str, member: MemberId, settled: &[Settled]) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(g) = state.groups.get_mut(group) else { return };
        let floor_moved = g.apply(settled);
        g.members.retain(|m| *m != member);
        let now = Instant::now();
        for cursor in &mut g.cursors {
            for (i, slot) in cursor.slots.iter_mut().enumerate() {
                if let Slot::InFlight { member: m, attempt } = *slot {
                    if m == member {
                        *slot = Slot::Waiting;
                        cursor.retry.push(Retry {
                            offset: cursor.floor + i as u64,
                            attempt: attempt + 1,
                            ready_at: now,
                        });
                    }
                }
            }
        }
        if g.private {
            state.groups.remove(group);
            state.wake_publishers(&self.space);
        } else {
            g.rebalance();
            if floor_moved {
                state.wake_publishers(&self.space);
            }
        }
        self.wake_readers();
        self.wake_watchers();
    }

    /// Applies what `member` settled, then appends up to `max` deliveries for it to
    /// `buffers.fetched` (empty on entry): due redeliveries first, then new messages.
    /// Returns when the earliest pending redelivery falls due, or `None` once the topic
    /// is closed.
    pub(crate) fn fetch(
        &self,
        group: &str,
        member: MemberId,
        max: usize,
        settled: &[Settled],
        buffers: &mut FetchBuffers,
    ) -> Option<Fetch> {
        let FetchBuffers { fetched: out, heads } = buffers;
        let mut state = self.lock();
        let state = &mut *state;
        if state.closed {
            return None;
        }
        let mut wake: Option<Instant> = None;
        let mut redelivered = false;
        let Some(g) = state.groups.get_mut(group) else {
            return Some(Fetch { wake });
        };
        let floor_moved = g.apply(settled);
        if !settled.is_empty() {
            self.wake_watchers();
        }
        // Read the clock only when there are redeliveries to time: it is a cost paid
        // under the lock.
        let now = g.cursors.iter().any(|c| !c.retry.is_empty()).then(Instant::now);
        for (p, cursor) in g.cursors.iter_mut().enumerate() {
            if cursor.owner != Some(member) {
                continue;
            }
            let log = &mut state.partitions[p];
            let mut i = 0;
            while i < cursor.retry.len() {
                let ready_at = cursor.retry[i].ready_at;
                let now = now.expect("read when a retry is pending");
                if ready_at > now || out.len() >= max {
                    if ready_at > now {
                        wake = Some(wake.map_or(ready_at, |w| w.min(ready_at)));
                    }
                    i += 1;
                    continue;
                }
                let r = cursor.retry.swap_remove(i);
                let Some(stored) = log.get_mut(r.offset) else { continue };
                if let Some(slot @ Slot::Waiting) = cursor.slot(r.offset) {
                    *slot = Slot::InFlight { member, attempt: r.attempt };
                    redelivered = true;
                    out.push(Fetched {
                        partition: p as u32,
                        offset: r.offset,
                        attempt: r.attempt,
                        message: stored.share(),
                    });
                }
            }
        }
        // New messages oldest first across the member's partitions, as they were
        // published: a slow reader then frees room in each partition as publishers
        // filled it (draining one partition after another left publishers to the others
        // waiting), and one publisher's keyless messages arrive in its order.
        // Each partition's next message, with its publish sequence, so that picking the
        // oldest compares numbers at hand rather than looking into every log each time.
        heads.extend(g.cursors.iter().enumerate().filter_map(|(p, c)| {
            let log = &state.partitions[p];
            (c.owner == Some(member) && c.next() < log.end())
                .then(|| Head { partition: p, sequence: log.sequence_at(c.next()) })
        }));
        while out.len() < max {
            let Some(k) = (0..heads.len()).min_by_key(|&k| heads[k].sequence) else { break };
            let p = heads[k].partition;
            let (cursor, log) = (&mut g.cursors[p], &mut state.partitions[p]);
            let offset = cursor.next();
            cursor.slots.push_back(Slot::InFlight { member, attempt: 1 });
            if let Some(stored) = log.get_mut(offset) {
                // The handler reads the payload a few hundred instructions from here.
                stored.prefetch();
                out.push(Fetched { partition: p as u32, offset, attempt: 1, message: stored.share() });
            }
            if offset + 1 < log.end() {
                heads[k].sequence = log.sequence_at(offset + 1);
            } else {
                heads.swap_remove(k);
            }
        }
        heads.clear();
        if redelivered {
            // Retries were taken by swap_remove; give each partition's in offset order.
            out.sort_by_key(|f| (f.partition, f.offset));
        }
        if floor_moved {
            state.wake_publishers(&self.space);
        }
        Some(Fetch { wake })
    }
}
