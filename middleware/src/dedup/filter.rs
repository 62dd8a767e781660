//! A Bloom filter over fingerprints: whether a generation of ids may hold one, answered
//! from a few kilobytes that stay in cache.

/// Bits set for each id.
const PROBES: u32 = 3;
/// Bits the filter has for each id it is sized for, at least: with three probes in one
/// word, about 5% of the ids it does not hold answer "maybe".
const BITS_PER_ID: usize = 8;

/// Which ids may be in a set: never "no" for one that was inserted since the last
/// clear, rarely "maybe" for one that was not.
///
/// An id's bits all lie in one 64-bit word, so asking or inserting reads one word of
/// memory where spread bits would read three lines: the filter is asked for every
/// message, and beside a table larger than the cache its lines do not all stay there.
pub(super) struct Filter {
    words: Box<[u64]>,
    /// The word count less one (a power of two, so a mask picks a word).
    mask: u64,
}

impl Filter {
    /// A filter sized for `ids` ids.
    pub(super) fn new(ids: usize) -> Self {
        let words = ids.max(1).saturating_mul(BITS_PER_ID).div_ceil(64).next_power_of_two();
        Self { words: vec![0; words].into_boxed_slice(), mask: words as u64 - 1 }
    }

    pub(super) fn insert(&mut self, key: u64) {
        let (word, bits) = self.place(key);
        self.words[word] |= bits;
    }

    /// Whether `key` may have been inserted: false means it certainly was not.
    pub(super) fn may_hold(&self, key: u64) -> bool {
        let (word, bits) = self.place(key);
        self.words[word] & bits == bits
    }

    pub(super) fn clear(&mut self) {
        self.words.fill(0);
    }

    /// The word of `key` and its bits there. The key must be random bits already (a
    /// fingerprint's half): the word comes from its low bits and each bit from six of
    /// its high ones.
    fn place(&self, key: u64) -> (usize, u64) {
        let bits = (0..PROBES).fold(0, |bits, probe| bits | 1 << ((key >> (64 - 6 * (probe + 1))) & 63));
        ((key & self.mask) as usize, bits)
    }
}

#[cfg(test)]
mod tests {
    use super::super::random_bits as key;
    use super::*;

    #[test]
    fn every_inserted_key_may_be_held_and_few_others_are() {
        let mut filter = Filter::new(3_125);
        (0..3_125).for_each(|i| filter.insert(key(i)));
        assert!((0..3_125).all(|i| filter.may_hold(key(i))));
        let false_maybes = (3_125..103_125).filter(|&i| filter.may_hold(key(i))).count();
        assert!(false_maybes < 7_000, "{false_maybes} of 100,000 not inserted answered maybe");
        filter.clear();
        assert!((0..3_125).all(|i| !filter.may_hold(key(i))));
    }
}
