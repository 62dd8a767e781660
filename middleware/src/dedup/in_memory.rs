//! Deduplication storage in this process: the most recent ids, in two generations.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tidewater_core::Error;

use super::filter::Filters;
use super::table::Table;
use super::{clock, DedupKey, DeduplicationStorage, Fingerprints};

/// Shards, so concurrent workers rarely wait for one another's lock.
const SHARDS: usize = 16;

/// The default storage of [`Deduplicate`](super::Deduplicate): the most recent ids
/// committed in this process, each remembered for `ttl` unless room runs out, and never
/// answered as seen once older than `ttl`. A commit's time comes from the system's coarse
/// clock, which costs a fifth of the precise one's 33 ns a read: so an id may be
/// forgotten up to one clock tick (1 to 10 ms) before its `ttl` is up, never after.
///
/// Ids are kept in two generations: new ids go into the current one, and when it holds
/// half the capacity, or has been filling for `ttl`, the previous generation is
/// forgotten whole and the current one takes its place. So the store holds between half
/// of `capacity` and `capacity` ids, always the newest ones, which suits deduplication:
/// a broker redelivers recent messages. Forgetting a generation at once, rather than id
/// by id, saves a cache miss per message on a large store, its main cost.
///
/// Ids are spread over 16 shards by hash, each with its share of `capacity`, and kept
/// in tables whose buckets are one cache line each. A Bloom filter a generation lets a
/// new id, nearly every message, skip the tables, which do not fit the cache at the
/// default size; new ids are written to them a few dozen at a time, their trips to
/// memory overlapping. The store takes 13 to 26 bytes an id of `capacity` (21 at the
/// default 100,000: 2.2 MB in all), and 1 to 2 more in the filters.
///
/// A generation fills for at most 49 days (the tables keep times as 32-bit milliseconds),
/// so with a longer `ttl` an id may be forgotten after 49 to 98 days.
pub struct InMemoryDedupStorage {
    shards: Box<[Mutex<Shard>]>,
    /// The ttl in milliseconds, the unit of the stored times (milliseconds on the
    /// monotonic clock: half the room of an `Instant`).
    ttl: u64,
    fingerprints: Fingerprints,
}

/// A fingerprint as two halves: the high one picks the shard (its low bits) and the
/// bucket in a table (the rest), the low one is what tables and filters keep.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Id {
    high: u64,
    low: u64,
}

impl Id {
    /// The bucket a table looks for the id from: bits of the high half above those that
    /// pick the shard.
    fn home(&self) -> u64 {
        self.high >> SHARDS.ilog2()
    }
}

/// The ids of one shard, each with when it was committed.
struct Shard {
    current: Table,
    previous: Table,
    /// Which ids each generation may hold. A new id, most of them, is looked for in both
    /// generations, and each lookup in a large store is a trip to memory; the filters
    /// answer from a few kilobytes instead.
    filters: Filters,
    /// How many ids a generation takes.
    generation: usize,
}

/// The longest a generation fills for, in milliseconds: a table keeps times as 32-bit
/// offsets from its start, which reach 49 days.
const LONGEST_GENERATION: u64 = u32::MAX as u64;

impl Shard {
    fn new(generation: usize) -> Self {
        Self {
            current: Table::new(generation),
            previous: Table::new(generation),
            filters: Filters::new(generation),
            generation,
        }
    }

    fn committed(&self, id: &Id) -> Option<u64> {
        let maybe = self.filters.may_hold(id.low);
        look_up(&self.current, maybe.current, id).or_else(|| look_up(&self.previous, maybe.previous, id))
    }

    /// Claims `id` at `now` unless it was committed within the ttl before `clock()`;
    /// returns the time it holds if claimed. `clock` is read only when the id is found,
    /// which is rare: most messages are not duplicates.
    fn claim(&mut self, id: Id, now: u64, ttl: u64, clock: impl Fn() -> u64) -> Option<u64> {
        let seen = |at: u64| clock().saturating_sub(at) < ttl;
        // How long the current generation has been filling: its table counts times from
        // its first id.
        let span = now.saturating_sub(self.current.base());
        if self.current.len() >= self.generation || span >= ttl || span >= LONGEST_GENERATION {
            // Looked up before the turn, which would forget the previous generation.
            if self.committed(&id).is_some_and(seen) {
                return None;
            }
            // Clearing reuses the previous generation's memory for the new one.
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear(now);
            self.filters.turn();
        } else if self.current.is_empty() {
            self.current.rebase(now);
        }
        // Each generation is looked in only if its filter lets it hold the id: a new id
        // then reads no table, and its insert waits to be written with others (see
        // `Table`). An id seen keeps its first time, as for a delivery that raced the
        // first.
        let maybe = self.filters.may_hold(id.low);
        let found = if maybe.current { self.current.find(id.home(), id.low) } else { None };
        match found {
            Some(at) if seen(self.current.time(at)) => None,
            Some(at) => {
                self.current.set_time(at, now);
                Some(now)
            }
            None if look_up(&self.previous, maybe.previous, &id).is_some_and(seen) => None,
            None => {
                self.current.insert(id.home(), id.low, now);
                self.filters.insert(id.low);
                Some(now)
            }
        }
    }

    /// Forgets `id` if it still holds the claim made at `at` (a turn may have moved it
    /// to the previous generation, or forgotten it already).
    fn release(&mut self, id: &Id, at: u64) {
        for generation in [&mut self.current, &mut self.previous] {
            if let Some(slot) = generation.find(id.home(), id.low) {
                if generation.time(slot) == at {
                    generation.remove(slot);
                }
                return;
            }
        }
    }
}

/// When `generation` had `id` committed, asking it only if its filter says it `may_hold` it.
fn look_up(generation: &Table, may_hold: bool, id: &Id) -> Option<u64> {
    if may_hold {
        generation.find(id.home(), id.low).map(|at| generation.time(at))
    } else {
        None
    }
}

impl InMemoryDedupStorage {
    /// Remembers the newest ids, at most `capacity` of them (at least 2), each for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(2);
        // A power of two, so that a mask picks the shard rather than a division.
        let count = 1 << SHARDS.min(capacity / 2).ilog2();
        let shards = (0..count)
            .map(|i| {
                // The first `capacity % count` shards take one more, so the shares add up.
                let share = capacity / count + usize::from(i < capacity % count);
                Mutex::new(Shard::new(share / 2))
            })
            .collect();
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Self { shards, ttl, fingerprints: Fingerprints::default() }
    }

    /// How many ids are remembered, counting expired ones not yet forgotten (they already
    /// count as not seen).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s)).map(|s| s.current.len() + s.previous.len()).sum()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, id: Id) -> &Mutex<Shard> {
        // The high half picks the shard; the map hashes by the low half, independent of it.
        &self.shards[id.high as usize & (self.shards.len() - 1)]
    }

    pub(super) fn fingerprint(&self, key: &DedupKey<'_>) -> u128 {
        self.fingerprints.of(key)
    }

    pub(super) fn seen_now(&self, fingerprint: u128) -> bool {
        self.seen(fingerprint, clock::precise)
    }

    pub(super) fn commit_now(&self, fingerprint: u128) {
        // Coarse: a commit time behind the true one only makes the id look older, so
        // the check's precise reading never answers it seen past its ttl.
        self.commit_at(fingerprint, clock::coarse());
    }

    /// Checks and commits `fingerprint` at once, with one lock and one lookup where a
    /// check and a commit take two each: `None` if it was committed within the ttl,
    /// else the time it is committed at, which [`Self::release`] takes to undo it. The
    /// time is coarse, and whether an id found is still fresh is read precisely, as for
    /// a check and a commit.
    pub(super) fn claim_now(&self, fingerprint: u128) -> Option<u64> {
        let id = halves(fingerprint);
        lock(self.shard(id)).claim(id, clock::coarse(), self.ttl, clock::precise)
    }

    /// Undoes the claim of `fingerprint` made at `at`, unless a later one replaced it.
    pub(super) fn release(&self, fingerprint: u128, at: u64) {
        let id = halves(fingerprint);
        lock(self.shard(id)).release(&id, at);
    }

    /// Whether `fingerprint` was committed within the ttl before `now()`, in
    /// milliseconds. The clock is read only for an id found, which is rare: most
    /// messages are not duplicates.
    fn seen(&self, fingerprint: u128, now: impl FnOnce() -> u64) -> bool {
        let id = halves(fingerprint);
        let at = lock(self.shard(id)).committed(&id);
        at.is_some_and(|at| now().saturating_sub(at) < self.ttl)
    }

    /// Commits `fingerprint` at `now`, in milliseconds.
    fn commit_at(&self, fingerprint: u128, now: u64) {
        let id = halves(fingerprint);
        lock(self.shard(id)).claim(id, now, self.ttl, || now);
    }
}

fn halves(fingerprint: u128) -> Id {
    Id { high: (fingerprint >> 64) as u64, low: fingerprint as u64 }
}

/// A poisoned shard still holds valid ids: every update leaves it consistent between
/// statements that can panic (none of which are ours).
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for InMemoryDedupStorage {
    /// 100,000 ids for an hour.
    fn default() -> Self {
        Self::new(super::DEFAULT_CAPACITY, super::DEFAULT_TTL)
    }
}

#[async_trait]
impl DeduplicationStorage for InMemoryDedupStorage {
    async fn is_duplicate(&self, key: &DedupKey<'_>) -> Result<bool, Error> {
        Ok(self.seen_now(self.fingerprint(key)))
    }

    async fn commit(&self, key: &DedupKey<'_>) -> Result<(), Error> {
        self.commit_now(self.fingerprint(key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> u64 {
        n * 1000
    }

    fn fingerprint(i: u64) -> u128 {
        // Spread over shards and map buckets as real fingerprints are.
        let x = u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
        x ^ (x >> 61)
    }

    #[test]
    fn an_id_is_forgotten_after_the_ttl() {
        let store = InMemoryDedupStorage::new(100, Duration::from_secs(60));
        let t0 = clock::precise();
        store.commit_at(fingerprint(1), t0);
        assert!(store.seen(fingerprint(1), || t0 + secs(59)));
        assert!(!store.seen(fingerprint(1), || t0 + secs(60)));
        assert!(!store.seen(fingerprint(2), || t0));
        // An expired id can be committed anew, and counts from then.
        store.commit_at(fingerprint(1), t0 + secs(61));
        assert!(store.seen(fingerprint(1), || t0 + secs(62)));
        assert!(store.seen(fingerprint(1), || t0 + secs(120)));
    }

    #[test]
    fn expired_generations_are_forgotten_before_the_store_is_full() {
        let store = InMemoryDedupStorage::new(64_000, Duration::from_secs(10));
        let t0 = clock::precise();
        for i in 0..1000 {
            store.commit_at(fingerprint(i), t0);
        }
        // Each shard's generation has been filling for the ttl, so it moves to previous,
        // and the one before (empty here) is dropped; a ttl later, these go too.
        for i in 1000..2000 {
            store.commit_at(fingerprint(i), t0 + secs(11));
        }
        for i in 2000..3000 {
            store.commit_at(fingerprint(i), t0 + secs(22));
        }
        assert_eq!(store.len(), 2000, "the first thousand were dropped with their generation");
        let at = || t0 + secs(23);
        assert!((2000..3000).all(|i| store.seen(fingerprint(i), at)));
        assert!((0..2000).all(|i| !store.seen(fingerprint(i), at)), "held or not, older than the ttl is not seen");
    }

    #[test]
    fn the_newest_half_of_a_shard_is_always_remembered() {
        // One shard: capacity 2 holds generations of one id each.
        let store = InMemoryDedupStorage::new(2, Duration::from_secs(60));
        assert_eq!(store.shards.len(), 1);
        let t0 = clock::precise();
        for i in 0..10 {
            store.commit_at(fingerprint(i), t0);
            assert!(store.seen(fingerprint(i), || t0), "{i} just committed");
            assert!(store.len() <= 2);
        }
        assert!(store.seen(fingerprint(8), || t0) && !store.seen(fingerprint(7), || t0));
    }

    #[test]
    fn capacity_is_shared_exactly_among_shards() {
        for capacity in [2, 5, 32, 33, 100_000] {
            let store = InMemoryDedupStorage::new(capacity, Duration::from_secs(60));
            let total: usize = store.shards.iter().map(|s| lock(s).generation * 2).sum();
            assert!(total <= capacity && total + store.shards.len() >= capacity, "{capacity}: {total}");
            assert!(store.shards.iter().all(|s| lock(s).generation >= 1));
        }
    }

    #[test]
    fn an_id_committed_by_the_coarse_clock_is_seen_at_once() {
        let store = InMemoryDedupStorage::new(100, Duration::from_secs(60));
        for i in 0..1000 {
            store.commit_now(fingerprint(i));
            assert!(store.seen_now(fingerprint(i)), "{i} just committed");
        }
    }

    #[test]
    fn a_second_commit_keeps_the_first_time() {
        let store = InMemoryDedupStorage::new(10, Duration::from_secs(60));
        let t0 = clock::precise();
        store.commit_at(fingerprint(1), t0);
        store.commit_at(fingerprint(1), t0 + secs(30));
        assert_eq!(store.len(), 1);
        assert!(!store.seen(fingerprint(1), || t0 + secs(60)));
    }

    #[test]
    fn a_second_commit_due_to_rotate_keeps_the_first_time_and_the_generations() {
        // One shard of one id a generation: the third commit finds its generation full.
        let store = InMemoryDedupStorage::new(2, Duration::from_secs(60));
        let t0 = clock::precise();
        store.commit_at(fingerprint(1), t0);
        store.commit_at(fingerprint(2), t0);
        store.commit_at(fingerprint(1), t0 + secs(30));
        assert!(store.seen(fingerprint(2), || t0), "a commit of a known id drops no generation");
        assert!(!store.seen(fingerprint(1), || t0 + secs(60)), "the id keeps its first time");
    }

    #[test]
    fn a_claim_is_a_check_and_a_commit_at_once() {
        let store = InMemoryDedupStorage::new(100, Duration::from_secs(60));
        let at = store.claim_now(fingerprint(1)).expect("a new id is claimed");
        assert!(store.claim_now(fingerprint(1)).is_none(), "claimed: a second delivery is a duplicate");
        assert!(store.seen_now(fingerprint(1)), "a claim is a commit to a check through the trait");
        store.release(fingerprint(1), at);
        assert!(!store.seen_now(fingerprint(1)), "released: forgotten");
        assert!(store.claim_now(fingerprint(1)).is_some(), "and claimed again");
        assert!(store.claim_now(fingerprint(2)).is_some(), "claims are per id");
    }

    #[test]
    fn a_release_undoes_only_its_own_claim() {
        // One shard of one id a generation, so that claims move between generations.
        let store = InMemoryDedupStorage::new(2, Duration::from_secs(60));
        let t0 = clock::precise();
        let mut shard = lock(&store.shards[0]);
        let id = |i| halves(fingerprint(i));
        let at = shard.claim(id(1), t0, store.ttl, || t0).unwrap();
        shard.claim(id(2), t0, store.ttl, || t0).unwrap();
        shard.release(&id(1), at);
        assert!(shard.committed(&id(1)).is_none(), "released from the previous generation");
        assert!(shard.committed(&id(2)).is_some(), "the other id stays");
        // A claim that outlived the ttl was replaced by a later one, which stays.
        let first = shard.claim(id(3), t0, store.ttl, || t0).unwrap();
        let later = t0 + secs(61);
        assert_eq!(shard.claim(id(3), later, store.ttl, || later), Some(later));
        shard.release(&id(3), first);
        assert_eq!(shard.committed(&id(3)), Some(later));
    }
}
