//! One generation of the in-memory store's ids: a hash table whose buckets are one
//! cache line each, keys and times together.
//!
//! A std `HashMap` keeps its control bytes apart from its entries, so adding an id to a
//! table larger than the cache is two trips to memory: one to find the slot, one to
//! write it. Here a bucket holds five keys, their times and its count in one aligned
//! line: looking an id up and adding it touch that line alone, unless the bucket
//! overflowed into the next one (about one in eleven when a table is as full as it gets).
//!
//! Even one line is a trip to memory a new id when the table is larger than the cache,
//! and a trip the processor waits for: the next message's work is too far on to run
//! meanwhile. So new keys wait in a short list, in cache, and are written to their
//! buckets [`PENDING`] at a time: first each bucket is read, loads that do not wait for
//! one another, so their trips overlap, then the keys are written. The store asks a
//! table only for keys its Bloom filter may hold, so a new id, nearly every message,
//! does not wait for memory at all.

/// Slots in a bucket: five keys and five times fill 60 of its 64 bytes.
const SLOTS: usize = 5;
/// A bucket's `meta`: how many slots are used (the first ones) in its low bits...
const USED: u32 = 0b111;
/// ...this bit, set once an insert found the bucket full and went on to the next: a key
/// not found here may then be further on. Never unset until the table is cleared, so a
/// lookup never stops short of a key that overflowed...
const OVERFLOWED: u32 = 1 << 3;
/// ...and above them the epoch the bucket was last written in. A bucket of an earlier
/// epoch counts as empty, so clearing a table is a new epoch rather than a write to each
/// of its lines (a megabyte or two of memory at the default size, once every few
/// thousand messages a shard).
const EPOCH_SHIFT: u32 = 4;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    keys: [u64; SLOTS],
    /// Each key's time, in milliseconds after the table's `base`.
    times: [u32; SLOTS],
    /// [`USED`], [`OVERFLOWED`] and the epoch.
    meta: u32,
}

impl Bucket {
    const EMPTY: Self = Self { keys: [0; SLOTS], times: [0; SLOTS], meta: 0 };

    /// How many slots are used, and whether the bucket overflowed, in `epoch`.
    fn state(&self, epoch: u32) -> (usize, bool) {
        if self.meta >> EPOCH_SHIFT == epoch {
            ((self.meta & USED) as usize, self.meta & OVERFLOWED != 0)
        } else {
            (0, false)
        }
    }
}

/// How many new keys wait before they are written to their buckets together.
const PENDING: usize = 32;

/// A key waiting to be written to its bucket.
#[derive(Clone, Copy)]
struct Waiting {
    home: u64,
    key: u64,
    offset: u32,
}

/// Where a key is.
#[derive(Clone, Copy, Debug)]
pub(super) enum Slot {
    /// In `bucket`, at `slot`.
    Bucket { bucket: usize, slot: usize },
    /// Still waiting, at this index.
    Waiting(usize),
}

/// Keys, each with a time in milliseconds.
///
/// A key is a fingerprint's `(home, key)`: `home` picks the bucket it is looked for
/// from and `key` is what is compared, so both must be random bits and independent
/// of each other (the two halves of a fingerprint are). Times are kept as 32-bit
/// offsets from the time the table was last cleared or rebased at, so a table must be
/// cleared within `u32::MAX` milliseconds (49 days) of the times it holds.
pub(super) struct Table {
    buckets: Box<[Bucket]>,
    /// The bucket count less one (a power of two, so a mask picks a bucket).
    mask: usize,
    len: usize,
    /// The time the stored offsets count from.
    base: u64,
    /// The buckets of this epoch are the table's; the rest count as empty.
    epoch: u32,
    /// New keys not yet in their buckets: the first `waiting` of them.
    pending: [Waiting; PENDING],
    waiting: usize,
}

impl Table {
    /// A table for up to `keys` keys. It is sized so that even when it holds them all,
    /// most buckets have a free slot; it never fills, so an insert always finds one.
    pub(super) fn new(keys: usize) -> Self {
        // At most about 61% of the slots used when full (`keys` over the next power of two
        // of `keys / SLOTS` buckets): few buckets overflow.
        let count = keys.max(1).div_ceil(SLOTS).next_power_of_two();
        let count = if count * SLOTS == keys { count * 2 } else { count };
        Self {
            buckets: vec![Bucket::EMPTY; count].into_boxed_slice(),
            mask: count - 1,
            len: 0,
            base: 0,
            epoch: 0,
            pending: [Waiting { home: 0, key: 0, offset: 0 }; PENDING],
            waiting: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The time the table counts times from: the one it was last cleared or rebased at.
    pub(super) fn base(&self) -> u64 {
        self.base
    }

    /// Forgets every key; times are counted from `base` from now on.
    pub(super) fn clear(&mut self, base: u64) {
        self.epoch = (self.epoch + 1) & (u32::MAX >> EPOCH_SHIFT);
        if self.epoch == 0 {
            // Every epoch was used: buckets of this one may be left from long ago.
            self.buckets.fill(Bucket::EMPTY);
        }
        self.len = 0;
        self.waiting = 0;
        self.base = base;
    }

    /// Counts times from `base` from now on, for a table that holds no key. Overflow
    /// marks stay, which costs a lookup at most a bucket more, where a new epoch would
    /// be used up at every message by a store whose handlers all fail (each release
    /// empties the table again).
    pub(super) fn rebase(&mut self, base: u64) {
        debug_assert!(self.is_empty());
        self.base = base;
    }

    /// Where `key` is, looked for from bucket `home`.
    pub(super) fn find(&self, home: u64, key: u64) -> Option<Slot> {
        // Waiting keys are of any bucket, so their home is compared too: a key alone would
        // make each of them a chance of a false match, where a bucket holds a handful.
        if let Some(i) = self.pending[..self.waiting].iter().position(|w| w.key == key && w.home == home) {
            return Some(Slot::Waiting(i));
        }
        let mut bucket = home as usize & self.mask;
        // Bounded: after removals every bucket may be marked overflowed.
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[bucket];
            let (used, overflowed) = b.state(self.epoch);
            // All five compared at once, without a branch a key: which of them match,
            // as bits, of those used.
            let matches = (0..SLOTS).fold(0u32, |bits, i| bits | u32::from(b.keys[i] == key) << i) & ((1 << used) - 1);
            if matches != 0 {
                return Some(Slot::Bucket { bucket, slot: matches.trailing_zeros() as usize });
            }
            if !overflowed {
                return None;
            }
            bucket = (bucket + 1) & self.mask;
        }
        None
    }

    /// The time of the key at `at`.
    pub(super) fn time(&self, at: Slot) -> u64 {
        self.base + u64::from(*self.offset_at(at))
    }

    /// Sets the time of the key at `at`.
    pub(super) fn set_time(&mut self, at: Slot, time: u64) {
        let offset = self.offset(time);
        *self.offset_at_mut(at) = offset;
    }

    fn offset_at(&self, at: Slot) -> &u32 {
        match at {
            Slot::Bucket { bucket, slot } => &self.buckets[bucket].times[slot],
            Slot::Waiting(i) => &self.pending[i].offset,
        }
    }

    fn offset_at_mut(&mut self, at: Slot) -> &mut u32 {
        match at {
            Slot::Bucket { bucket, slot } => &mut self.buckets[bucket].times[slot],
            Slot::Waiting(i) => &mut self.pending[i].offset,
        }
    }

    /// Adds `key`, which must not be in the table already, at `time`. The table must
    /// have room: fewer keys than it was made for.
    pub(super) fn insert(&mut self, home: u64, key: u64, time: u64) {
        self.pending[self.waiting] = Waiting { home, key, offset: self.offset(time) };
        self.waiting += 1;
        self.len += 1;
        if self.waiting == PENDING {
            self.write_pending();
        }
    }

    /// Writes the waiting keys to their buckets.
    fn write_pending(&mut self) {
        // Each bucket read first, in loads that do not depend on one another, so that
        // their trips to memory overlap; the writes then find the lines in cache.
        let touched =
            self.pending[..self.waiting].iter().fold(0, |all, w| all | self.buckets[w.home as usize & self.mask].meta);
        std::hint::black_box(touched);
        for i in 0..std::mem::take(&mut self.waiting) {
            let Waiting { home, key, offset } = self.pending[i];
            self.write(home, key, offset);
        }
    }

    fn write(&mut self, home: u64, key: u64, offset: u32) {
        let mut bucket = home as usize & self.mask;
        loop {
            let b = &mut self.buckets[bucket];
            let (used, overflowed) = b.state(self.epoch);
            let epoch = self.epoch << EPOCH_SHIFT;
            if used < SLOTS {
                (b.keys[used], b.times[used]) = (key, offset);
                b.meta = epoch | (u32::from(overflowed) * OVERFLOWED) | (used as u32 + 1);
                return;
            }
            b.meta = epoch | OVERFLOWED | used as u32;
            bucket = (bucket + 1) & self.mask;
        }
    }

    /// Removes the key at `at`.
    pub(super) fn remove(&mut self, at: Slot) {
        self.len -= 1;
        let (bucket, slot) = match at {
            Slot::Bucket { bucket, slot } => (bucket, slot),
            Slot::Waiting(i) => {
                self.waiting -= 1;
                self.pending[i] = self.pending[self.waiting];
                return;
            }
        };
        let b = &mut self.buckets[bucket];
        // The last key of the bucket takes the slot, so used slots stay the first ones.
        // A found key is in a bucket of this epoch, whose count the low bits are.
        let last = (b.meta & USED) as usize - 1;
        b.keys[slot] = b.keys[last];
        b.times[slot] = b.times[last];
        b.meta -= 1;
    }

    /// `time` as an offset from `base`; a time before it (which the store never gives)
    /// counts as `base`, and one past the offsets' range as their last.
    fn offset(&self, time: u64) -> u32 {
        u32::try_from(time.saturating_sub(self.base)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::super::random_bits as random;
    use super::*;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn a_full_table_finds_every_key_and_no_other() {
        for keys in [1, 2, 5, 10, 3_125, 50_000] {
            let mut table = Table::new(keys);
            table.clear(1_000);
            for i in 0..keys as u64 {
                table.insert(random(2 * i), random(2 * i + 1), 1_000 + i);
            }
            assert_eq!(table.len(), keys);
            for i in 0..keys as u64 {
                let at = table.find(random(2 * i), random(2 * i + 1)).unwrap_or_else(|| panic!("{keys}: {i} lost"));
                assert_eq!(table.time(at), 1_000 + i);
            }
            let strangers =
                (keys as u64..keys as u64 + 10_000).filter(|&i| table.find(random(2 * i), random(2 * i + 1)).is_some());
            assert_eq!(strangers.count(), 0);
        }
    }

    #[test]
    fn keys_of_one_home_overflow_and_are_still_found_after_removals() {
        // Every key in bucket 0: the first five fill it, the rest go on to the next ones.
        let mut table = Table::new(40);
        table.clear(0);
        for key in 1..=20 {
            table.insert(0, key, key);
        }
        table.write_pending();
        // Removing from the first bucket must not hide the keys past it.
        for key in [1, 3, 5] {
            let at = table.find(0, key).unwrap();
            table.remove(at);
        }
        assert_eq!(table.len(), 17);
        for key in 1..=20 {
            assert_eq!(table.find(0, key).is_some(), ![1, 3, 5].contains(&key), "{key}");
        }
        // A freed slot is used again.
        table.insert(0, 21, 21);
        assert_eq!(table.find(0, 21).map(|at| table.time(at)), Some(21));
        table.clear(100);
        assert!(table.is_empty() && (1..=21).all(|key| table.find(0, key).is_none()));
    }

    #[test]
    fn times_are_kept_to_the_millisecond_and_set_anew() {
        let mut table = Table::new(10);
        let base = 1 << 40;
        table.clear(base);
        table.insert(7, 7, base + 123_456);
        let at = table.find(7, 7).unwrap();
        assert!(matches!(at, Slot::Waiting(_)));
        assert_eq!(table.time(at), base + 123_456);
        table.set_time(at, base + u64::from(u32::MAX));
        assert_eq!(table.time(at), base + u64::from(u32::MAX));
        table.write_pending();
        let at = table.find(7, 7).unwrap();
        assert!(matches!(at, Slot::Bucket { .. }));
        assert_eq!(table.time(at), base + u64::from(u32::MAX));
        table.set_time(at, base + 1);
        assert_eq!(table.time(table.find(7, 7).unwrap()), base + 1);
    }

    #[test]
    fn keys_wait_until_a_batch_is_full_and_are_found_and_removed_either_way() {
        let mut table = Table::new(1_000);
        table.clear(0);
        for i in 0..PENDING as u64 - 1 {
            table.insert(random(2 * i), random(2 * i + 1), i);
        }
        assert_eq!((table.waiting, table.len()), (PENDING - 1, PENDING - 1));
        assert!(table.find(random(2) ^ 1, random(3)).is_none(), "a waiting key is found only from its own home");
        // A waiting key removed: the last waiting one takes its place.
        table.remove(table.find(random(0), random(1)).unwrap());
        assert!(table.find(random(0), random(1)).is_none());
        let last = PENDING as u64 - 2;
        assert_eq!(table.time(table.find(random(2 * last), random(2 * last + 1)).unwrap()), last);
        for i in PENDING as u64 - 1..PENDING as u64 + 1 {
            table.insert(random(2 * i), random(2 * i + 1), i);
        }
        assert_eq!(table.waiting, 0, "a full batch is written to the buckets");
        assert_eq!(table.len(), PENDING);
        for i in 1..PENDING as u64 + 1 {
            let at = table.find(random(2 * i), random(2 * i + 1)).unwrap();
            assert!(matches!(at, Slot::Bucket { .. }));
            assert_eq!(table.time(at), i);
        }
        table.remove(table.find(random(2), random(3)).unwrap());
        assert!(table.find(random(2), random(3)).is_none());
        assert_eq!(table.len(), PENDING - 1);
        table.clear(0);
        assert!(table.is_empty() && table.find(random(4), random(5)).is_none());
    }

    #[test]
    fn a_lookup_ends_when_every_bucket_overflowed() {
        let mut table = Table::new(10);
        table.clear(0);
        let buckets = table.buckets.len() as u64;
        // Fill each bucket from its own home, overflow it once, then empty it.
        for home in 0..buckets {
            for key in 0..=SLOTS as u64 {
                table.insert(home, home * 100 + key, 0);
            }
            table.write_pending();
            while let Some(at) = (0..=SLOTS as u64).find_map(|key| table.find(home, home * 100 + key)) {
                table.remove(at);
            }
        }
        assert!(table.is_empty());
        assert!(table.find(0, 12345).is_none());
    }

    #[test]
    fn keys_of_an_earlier_epoch_are_gone_and_so_after_every_epoch_was_used() {
        let mut table = Table::new(10);
        table.clear(0);
        table.insert(1, 1, 0);
        table.clear(0);
        assert!(table.find(1, 1).is_none());
        table.insert(1, 2, 0);
        // The epochs wrap: the table is cleared whole rather than take the first one back.
        table.epoch = u32::MAX >> EPOCH_SHIFT;
        table.insert(1, 3, 0);
        table.clear(0);
        assert_eq!(table.epoch, 0);
        assert!(table.find(1, 2).is_none() && table.find(1, 3).is_none());
        table.insert(2, 4, 0);
        assert!(table.find(2, 4).is_some());
    }

    #[test]
    fn a_table_never_fills() {
        // Sizes where the slots would be exactly the keys without the doubling.
        for keys in [5, 10, 20, 40, 640] {
            let table = Table::new(keys);
            assert!(table.buckets.len() * SLOTS > keys, "{keys}");
        }
    }
}
