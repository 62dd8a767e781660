//! A Bloom filter over fingerprints: whether a generation of ids may hold one, answered
//! from a few kilobytes that stay in cache.

/// Bits set for each id.
const PROBES: u32 = 3;
/// Bits the filter has for each id it is sized for, at least: with three probes, about
/// 3% of the ids it does not hold answer "maybe".
const BITS_PER_ID: usize = 8;

/// Which ids may be in a set: never "no" for one that was inserted since the last
/// clear, rarely "maybe" for one that was not.
pub(super) struct Filter {
    words: Box<[u64]>,
    /// The bit count less one (a power of two, so a mask picks a bit).
    mask: u64,
}

impl Filter {
    /// A filter sized for `ids` ids.
    pub(super) fn new(ids: usize) -> Self {
        let bits = ids.max(1).saturating_mul(BITS_PER_ID).next_power_of_two().max(64);
        Self { words: vec![0; bits / 64].into_boxed_slice(), mask: bits as u64 - 1 }
    }

    pub(super) fn insert(&mut self, key: u64) {
        for probe in 0..PROBES {
            let (word, bit) = self.bit(key, probe);
            self.words[word] |= bit;
        }
    }

    /// Whether `key` may have been inserted: false means it certainly was not.
    pub(super) fn may_hold(&self, key: u64) -> bool {
        (0..PROBES).all(|probe| {
            let (word, bit) = self.bit(key, probe);
            self.words[word] & bit != 0
        })
    }

    pub(super) fn clear(&mut self) {
        self.words.fill(0);
    }

    /// The word and bit of `key`'s `probe`th bit. The key must be random bits already
    /// (a fingerprint's half): each probe takes a different stretch of it.
    fn bit(&self, key: u64, probe: u32) -> (usize, u64) {
        let bit = key.rotate_right(21 * probe) & self.mask;
        ((bit / 64) as usize, 1 << (bit % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> u64 {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }

    #[test]
    fn every_inserted_key_may_be_held_and_few_others_are() {
        let mut filter = Filter::new(3_125);
        (0..3_125).for_each(|i| filter.insert(key(i)));
        assert!((0..3_125).all(|i| filter.may_hold(key(i))));
        let false_maybes = (3_125..103_125).filter(|&i| filter.may_hold(key(i))).count();
        assert!(false_maybes < 5_000, "{false_maybes} of 100,000 not inserted answered maybe");
        filter.clear();
        assert!((0..3_125).all(|i| !filter.may_hold(key(i))));
    }
}
