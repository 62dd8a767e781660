//! One topic: its partitions, its consumer groups and their cursors.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tidewater_core::{Message, StartFrom};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A consumer group member's id.
pub(crate) type MemberId = u64;

pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    state: Mutex<TopicState>,
    /// Something to fetch may be there (publish, nack, rebalance, close).
    pub(crate) data: Notify,
    /// Room to publish may be there.
    pub(crate) space: Notify,
    /// Messages were settled (for test waits).
    pub(crate) settled: Notify,
    /// Tasks waiting on `settled` or on publishes, so the hot path skips the wake-up when
    /// nobody listens.
    pub(crate) watchers: AtomicUsize,
}

pub(crate) struct TopicState {
    pub(crate) partitions: Vec<Partition>,
    groups: HashMap<Arc<str>, Group>,
    next_member: MemberId,
    round_robin: u32,
    published: u64,
    pub(crate) closed: bool,
    publishers_waiting: usize,
}

pub(crate) struct Partition {
    base: u64,
    log: VecDeque<Stored>,
}

#[derive(Clone)]
pub(crate) struct Stored {
    pub(crate) sequence: u64,
    pub(crate) message: Arc<Message>,
}

impl Partition {
    fn end(&self) -> u64 {
        self.base + self.log.len() as u64
    }

    fn get(&self, offset: u64) -> Option<&Stored> {
        offset.checked_sub(self.base).and_then(|i| self.log.get(i as usize))
    }
}

struct Group {
    members: Vec<MemberId>,
    cursors: Vec<Cursor>,
    private: bool,
    acked: u64,
}

#[derive(Default)]
struct Cursor {
    owner: Option<MemberId>,
    /// The next offset never dispatched.
    next: u64,
    /// Every offset below is acked.
    floor: u64,
    /// Acked offsets at or above `floor`.
    acked: BTreeSet<u64>,
    /// Dispatched and unsettled: offset -> (member, attempt).
    in_flight: HashMap<u64, (MemberId, u32)>,
    /// Waiting for redelivery.
    retry: Vec<Retry>,
}

struct Retry {
    offset: u64,
    attempt: u32,
    ready_at: Instant,
}

/// One message handed out by a fetch.
pub(crate) struct Fetched {
    pub(crate) partition: u32,
    pub(crate) offset: u64,
    pub(crate) attempt: u32,
    pub(crate) message: Arc<Message>,
}

/// What a publish found.
pub(crate) enum Append {
    Done,
    /// The partition is full and its oldest message is still unsettled by a group.
    Full(Message),
    /// The broker was closed.
    Closed,
}

impl Topic {
    pub(crate) fn new(name: &str, partitions: u32) -> Self {
        let partitions = (0..partitions.max(1)).map(|_| Partition { base: 0, log: VecDeque::new() }).collect();
        Self {
            name: Arc::from(name),
            state: Mutex::new(TopicState {
                partitions,
                groups: HashMap::new(),
                next_member: 1,
                round_robin: 0,
                published: 0,
                closed: false,
                publishers_waiting: 0,
            }),
            data: Notify::new(),
            space: Notify::new(),
            settled: Notify::new(),
            watchers: AtomicUsize::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic while holding the lock leaves plain bookkeeping behind, never a broken
        // invariant worth poisoning every later caller for.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_watchers(&self) {
        if self.watchers.load(Ordering::Acquire) > 0 {
            self.settled.notify_waiters();
        }
    }

    /// Appends `message` to the partition its key picks, or hands it back if full.
    pub(crate) fn append(&self, message: Message, capacity: usize) -> Append {
        let mut state = self.lock();
        if state.closed {
            return Append::Closed;
        }
        let count = state.partitions.len() as u32;
        let partition = match &message.key {
            Some(key) => (tidewater_core::hash::fnv1a_64(key) % u64::from(count)) as u32,
            None => {
                state.round_robin = state.round_robin.wrapping_add(1);
                state.round_robin % count
            }
        };
        if state.partitions[partition as usize].log.len() >= capacity {
            state.make_room(partition, capacity);
            if state.partitions[partition as usize].log.len() >= capacity {
                state.publishers_waiting += 1;
                return Append::Full(message);
            }
        }
        state.published += 1;
        let sequence = state.published;
        state.partitions[partition as usize].log.push_back(Stored { sequence, message: Arc::new(message) });
        drop(state);
        self.data.notify_waiters();
        self.wake_watchers();
        Append::Done
    }

    /// Called by a publisher that waited after `Append::Full`.
    pub(crate) fn done_waiting(&self) {
        let mut state = self.lock();
        state.publishers_waiting = state.publishers_waiting.saturating_sub(1);
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
                    Cursor { next: at, floor: at, ..Cursor::default() }
                })
                .collect();
            state.groups.insert(Arc::clone(&name), Group { members: Vec::new(), cursors, private, acked: 0 });
        }
        let g = state.groups.get_mut(&name).expect("group exists");
        g.members.push(member);
        g.rebalance();
        drop(state);
        self.data.notify_waiters();
        (name, member)
    }

    /// Removes a member; what it had in flight is redelivered to the group.
    pub(crate) fn leave(&self, group: &str, member: MemberId) {
        let mut state = self.lock();
        let Some(g) = state.groups.get_mut(group) else { return };
        g.members.retain(|m| *m != member);
        let now = Instant::now();
        for cursor in &mut g.cursors {
            let mine: Vec<u64> =
                cursor.in_flight.iter().filter(|(_, (m, _))| *m == member).map(|(o, _)| *o).collect();
            for offset in mine {
                let (_, attempt) = cursor.in_flight.remove(&offset).expect("listed");
                cursor.retry.push(Retry { offset, attempt: attempt + 1, ready_at: now });
            }
        }
        if g.private {
            state.groups.remove(group);
            state.wake_publishers(&self.space);
        } else {
            g.rebalance();
        }
        drop(state);
        self.data.notify_waiters();
    }

    /// Up to `max` deliveries for `member`: due redeliveries first, then new messages.
    /// Also returns when the earliest pending redelivery falls due.
    pub(crate) fn fetch(&self, group: &str, member: MemberId, max: usize) -> (Vec<Fetched>, Option<Instant>) {
        let mut state = self.lock();
        let state = &mut *state;
        let mut out = Vec::new();
        let mut wake: Option<Instant> = None;
        let Some(g) = state.groups.get_mut(group) else { return (out, wake) };
        let now = Instant::now();
        for (p, cursor) in g.cursors.iter_mut().enumerate() {
            if cursor.owner != Some(member) {
                continue;
            }
            let log = &state.partitions[p];
            let mut i = 0;
            while i < cursor.retry.len() {
                let due = cursor.retry[i].ready_at <= now;
                if due && out.len() < max {
                    let r = cursor.retry.swap_remove(i);
                    if r.offset < cursor.floor || cursor.acked.contains(&r.offset) {
                        continue;
                    }
                    if let Some(stored) = log.get(r.offset) {
                        cursor.in_flight.insert(r.offset, (member, r.attempt));
                        out.push(Fetched {
                            partition: p as u32,
                            offset: r.offset,
                            attempt: r.attempt,
                            message: Arc::clone(&stored.message),
                        });
                    }
                } else {
                    if !due {
                        let at = cursor.retry[i].ready_at;
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                    }
                    i += 1;
                }
            }
            let end = log.end();
            while cursor.next < end && out.len() < max {
                let offset = cursor.next;
                cursor.next += 1;
                if let Some(stored) = log.get(offset) {
                    cursor.in_flight.insert(offset, (member, 1));
                    out.push(Fetched { partition: p as u32, offset, attempt: 1, message: Arc::clone(&stored.message) });
                }
            }
        }
        // Retries were taken by swap_remove; give each partition's in offset order.
        out.sort_by_key(|f| (f.partition, f.offset));
        (out, wake)
    }

    /// Acks one delivery.
    pub(crate) fn ack(&self, group: &str, partition: u32, offset: u64) {
        let mut state = self.lock();
        let Some(g) = state.groups.get_mut(group) else { return };
        let cursor = &mut g.cursors[partition as usize];
        cursor.in_flight.remove(&offset);
        if offset < cursor.floor || !cursor.acked.insert(offset) {
            return;
        }
        cursor.retry.retain(|r| r.offset != offset);
        g.acked += 1;
        let mut floor_moved = false;
        while cursor.acked.remove(&cursor.floor) {
            cursor.floor += 1;
            floor_moved = true;
        }
        if floor_moved {
            state.wake_publishers(&self.space);
        }
        drop(state);
        self.wake_watchers();
    }

    /// Nacks one delivery: it comes again after `delay`.
    pub(crate) fn nack(&self, group: &str, partition: u32, offset: u64, delay: std::time::Duration) {
        let mut state = self.lock();
        let Some(g) = state.groups.get_mut(group) else { return };
        let cursor = &mut g.cursors[partition as usize];
        let Some((_, attempt)) = cursor.in_flight.remove(&offset) else { return };
        cursor.retry.push(Retry { offset, attempt: attempt + 1, ready_at: Instant::now() + delay });
        drop(state);
        self.data.notify_waiters();
    }

    /// Messages settled by `group` so far.
    pub(crate) fn acked_count(&self, group: &str) -> u64 {
        self.lock().groups.get(group).map_or(0, |g| g.acked)
    }

    /// Messages published to the topic so far.
    pub(crate) fn published_count(&self) -> u64 {
        self.lock().published
    }

    /// The retained messages, in publish order.
    pub(crate) fn retained(&self) -> Vec<Message> {
        let state = self.lock();
        let mut all: Vec<&Stored> = state.partitions.iter().flat_map(|p| p.log.iter()).collect();
        all.sort_by_key(|s| s.sequence);
        all.into_iter().map(|s| Message::clone(&s.message)).collect()
    }

    /// Forgets a consumer group and its positions.
    pub(crate) fn delete_group(&self, group: &str) -> bool {
        let mut state = self.lock();
        let removed = state.groups.remove(group).is_some();
        if removed {
            state.wake_publishers(&self.space);
        }
        removed
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.data.notify_waiters();
        self.space.notify_waiters();
        self.settled.notify_waiters();
    }
}

impl TopicState {
    /// Drops what every group has settled from the front of a full partition; with no
    /// group at all, drops the oldest message (retention).
    fn make_room(&mut self, partition: u32, capacity: usize) {
        let p = partition as usize;
        let floor = self.groups.values().map(|g| g.cursors[p].floor).min();
        let log = &mut self.partitions[p];
        let keep_from = floor.unwrap_or_else(|| log.end().saturating_sub(capacity as u64 - 1));
        while log.base < keep_from && !log.log.is_empty() {
            log.log.pop_front();
            log.base += 1;
        }
    }

    fn wake_publishers(&self, space: &Notify) {
        if self.publishers_waiting > 0 {
            space.notify_waiters();
        }
    }
}

impl Group {
    /// Spreads the partitions over the members, round robin in join order.
    fn rebalance(&mut self) {
        let n = self.members.len();
        for (p, cursor) in self.cursors.iter_mut().enumerate() {
            cursor.owner = (n > 0).then(|| self.members[p % n]);
        }
    }
}
