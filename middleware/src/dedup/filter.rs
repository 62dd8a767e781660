//! Bloom filters over fingerprints: whether each of a shard's two generations of ids
//! may hold one, answered from a few kilobytes that stay in cache.

/// Bits set for each id.
const PROBES: u32 = 3;
/// Bits a generation's filter has for each id it is sized for, at least: with three
/// probes in 32 bits, about 5% of the ids it does not hold answer "maybe".
const BITS_PER_ID: usize = 8;
/// The bits of a word that belong to one generation.
const HALF: u32 = 32;
const CURRENT: u64 = (1 << HALF) - 1;

/// Which ids each generation may hold: never "no" for one inserted into the current
/// generation since it began, rarely "maybe" for one that was not.
///
/// The two generations share their words, the current one in each word's low half
/// and the previous one in its high half, and an id's bits all lie in one word. So a
/// new id, which both generations are asked about (nearly every message), reads one word
/// of memory: beside a table larger than the cache the filters' lines do not all stay
/// there, and two filters of their own cost two reads from memory where this costs one.
/// A turn of generations shifts every word by a half, which is also what forgets the
/// previous generation.
pub(super) struct Filters {
    words: Box<[u64]>,
    /// The word count less one (a power of two, so a mask picks a word).
    mask: u64,
}

/// What the filters answer for an id: whether each generation may hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Maybe {
    pub(super) current: bool,
    pub(super) previous: bool,
}

impl Filters {
    /// Filters for generations of `ids` ids each.
    pub(super) fn new(ids: usize) -> Self {
        let words = ids.max(1).saturating_mul(BITS_PER_ID).div_ceil(HALF as usize).next_power_of_two();
        Self { words: vec![0; words].into_boxed_slice(), mask: words as u64 - 1 }
    }

    /// Puts `key` into the current generation.
    pub(super) fn insert(&mut self, key: u64) {
        let (word, bits) = self.place(key);
        self.words[word] |= bits;
    }

    /// Whether each generation may hold `key`: false means it certainly does not.
    pub(super) fn may_hold(&self, key: u64) -> Maybe {
        let (word, bits) = self.place(key);
        let word = self.words[word];
        Maybe { current: word & bits == bits, previous: (word >> HALF) & bits == bits }
    }

    /// The current generation becomes the previous one, the previous one is forgotten,
    /// and the new current one is empty.
    pub(super) fn turn(&mut self) {
        self.words.iter_mut().for_each(|w| *w <<= HALF);
    }

    /// The word of `key` and its bits in the current half. The key must be random bits
    /// already (a fingerprint's half): the word comes from its low bits and each bit from
    /// five of its high ones.
    fn place(&self, key: u64) -> (usize, u64) {
        let bits = (0..PROBES).fold(0, |bits, probe| bits | 1 << ((key >> (64 - 5 * (probe + 1))) & 31));
        debug_assert_eq!(bits & !CURRENT, 0);
        ((key & self.mask) as usize, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::super::random_bits as key;
    use super::*;

    const IDS: u64 = 3_125;

    fn held(filters: &Filters, ids: std::ops::Range<u64>) -> Vec<Maybe> {
        ids.map(|i| filters.may_hold(key(i))).collect()
    }

    #[test]
    fn every_inserted_key_may_be_held_and_few_others_are() {
        let mut filters = Filters::new(IDS as usize);
        (0..IDS).for_each(|i| filters.insert(key(i)));
        assert!(held(&filters, 0..IDS).iter().all(|m| m.current));
        let false_maybes = held(&filters, IDS..IDS + 100_000).iter().filter(|m| m.current).count();
        assert!(false_maybes < 7_000, "{false_maybes} of 100,000 not inserted answered maybe");
        // Nothing went into the previous generation.
        assert!(held(&filters, 0..IDS).iter().all(|m| !m.previous));
    }

    #[test]
    fn a_turn_moves_the_current_generation_to_previous_and_forgets_the_old_one() {
        let mut filters = Filters::new(IDS as usize);
        (0..IDS).for_each(|i| filters.insert(key(i)));
        filters.turn();
        (IDS..2 * IDS).for_each(|i| filters.insert(key(i)));
        assert!(held(&filters, 0..IDS).iter().all(|m| m.previous), "the first generation moved to previous");
        assert!(held(&filters, IDS..2 * IDS).iter().all(|m| m.current));
        let first_still_current = held(&filters, 0..IDS).iter().filter(|m| m.current).count();
        assert!(first_still_current < 250, "{first_still_current} of the first generation still answer current");
        filters.turn();
        filters.turn();
        assert!(held(&filters, 0..2 * IDS).iter().all(|m| *m == Maybe { current: false, previous: false }));
    }
}
