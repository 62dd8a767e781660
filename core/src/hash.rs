//! Stable hashing for keys.

use std::hash::Hasher;

/// 64-bit FNV-1a of `bytes`. Stable across processes and platforms, unlike std's
/// `DefaultHasher`, so a key maps to the same lane or partition every run.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash = Fnv1a::default();
    hash.write(bytes);
    hash.finish()
}

/// 64-bit FNV-1a as a [`Hasher`], fed in any pieces: for maps keyed by short names that
/// come from a service's own code, where std's SipHash costs several times as much and
/// its defence against chosen collisions buys nothing.
///
/// ```
/// use std::collections::HashMap;
/// use std::hash::BuildHasherDefault;
/// use tidewater_core::hash::Fnv1a;
///
/// let mut groups: HashMap<&str, u32, BuildHasherDefault<Fnv1a>> = HashMap::default();
/// groups.insert("billing", 1);
/// assert_eq!(groups["billing"], 1);
/// ```
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The lane (of `lanes`) that messages with `key` run in when a task's concurrency is
/// above 1: all of one key in one lane, in order.
///
/// The key's FNV-1a hash is mixed (SplitMix64's finalizer) before the modulo, because
/// drivers that partition by the same hash (the memory driver, StreamBus) would
/// otherwise tie lanes to partitions: with 4 partitions and 8 lanes, a partition's keys
/// would all fall to 2 lanes.
///
/// ```
/// use tidewater_core::hash::lane_of;
///
/// assert_eq!(lane_of(b"customer-7", 8), lane_of(b"customer-7", 8));
/// assert!(lane_of(b"customer-7", 8) < 8);
/// ```
pub fn lane_of(key: &[u8], lanes: usize) -> usize {
    let mut z = fnv1a_64(key);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % lanes.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_keys_of_one_partition_spread_over_every_lane() {
        // Partition as the memory driver does (FNV-1a modulo 4), lanes modulo 8.
        let keys: Vec<String> = (0..400).map(|i| format!("customer-{i}")).collect();
        for partition in 0..4u64 {
            let lanes: std::collections::HashSet<usize> = keys
                .iter()
                .filter(|k| super::fnv1a_64(k.as_bytes()) % 4 == partition)
                .map(|k| super::lane_of(k.as_bytes(), 8))
                .collect();
            assert_eq!(lanes.len(), 8, "partition {partition} reaches lanes {lanes:?}");
        }
    }

    #[test]
    fn matches_reference_values() {
        assert_eq!(super::fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(super::fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(super::fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }
}
