//! The 128-bit fingerprints the in-process stores keep instead of a key's two strings.
//!
//! A fingerprint is a keyed SipHash-1-3 of the key's id with SipHash's 128-bit output,
//! under a key of the key's group: the 128-bit SipHash-1-3 of the group's name under
//! the store's own random key. A store sees few groups, so each group's key is derived
//! once and kept, and a message hashes its id alone, in one piece: 36 bytes for a UUID,
//! eleven SipHash rounds, where hashing the group, a separator and the id took thirteen
//! and three writes that joined their pieces into words. The hash is written out here
//! rather than taken from std because std offers only a 64-bit output through the
//! `Hasher` trait: getting 128 bits from it meant finishing twice and feeding the key
//! as four writes, each buffering its bytes.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;

use super::DedupKey;

/// How many groups' keys a store keeps: one bus-wide `Deduplicate` serves every group a
/// service subscribes. The keys of further groups are derived again for each message
/// (about 150 instructions more), and each kept group before a message's costs a
/// comparison, a few instructions where the lengths differ.
const GROUPS: usize = 16;

/// Fingerprints of [`DedupKey`]s under one random key.
///
/// Two different keys colliding, which would skip a message, is about as likely as a
/// cosmic-ray bit flip: 2^-128 for a pair in the moka store, which keeps fingerprints
/// whole. [`InMemoryDedupStorage`](super::InMemoryDedupStorage) keeps 64 bits of one,
/// to fit five in a cache line, and picks the bucket by the other half: a new id is
/// compared with the few ids of its bucket (about ten at most, in two generations), so
/// a false skip is about 2^-61 a message, once in fifty thousand years at a million
/// messages a second. The hash key is random per store and secret, and so are the
/// groups' keys derived from it, so a producer cannot choose ids that collide with
/// another's, in its group or another, and a fingerprint means nothing outside the
/// store that made it.
#[derive(Clone, Debug)]
pub(super) struct Fingerprints {
    k0: u64,
    k1: u64,
    /// The keys of the first groups seen, each derived once.
    groups: [OnceLock<GroupKey>; GROUPS],
}

/// A group's name and the hash key its ids are fingerprinted under.
#[derive(Clone, Debug)]
struct GroupKey {
    group: Box<str>,
    k0: u64,
    k1: u64,
}

impl Default for Fingerprints {
    /// A fresh random key, from std's per-process random hasher keys.
    fn default() -> Self {
        let random = RandomState::new();
        Self::with_key(random.hash_one(0u8), random.hash_one(1u8))
    }
}

impl Fingerprints {
    fn with_key(k0: u64, k1: u64) -> Self {
        Self { k0, k1, groups: Default::default() }
    }

    /// The fingerprint of `key`: its id hashed under its group's key.
    pub(super) fn of(&self, key: &DedupKey<'_>) -> u128 {
        let (k0, k1) = self.key_of(key.group);
        Sip::<1, 3>::hash_128(k0, k1, key.id.as_bytes())
    }

    /// The hash key of `group`'s ids: kept, or derived and kept while there is room.
    #[inline]
    fn key_of(&self, group: &str) -> (u64, u64) {
        // The first slot on its own: a store that serves one group finds it there
        // without the loop, which as a loop cost it 8 instructions more.
        match self.groups[0].get() {
            Some(kept) if same_bytes(kept.group.as_bytes(), group.as_bytes()) => (kept.k0, kept.k1),
            _ => self.kept_or_derived(group),
        }
    }

    fn kept_or_derived(&self, group: &str) -> (u64, u64) {
        for slot in &self.groups {
            let kept = slot.get_or_init(|| {
                let (k0, k1) = self.derive(group);
                GroupKey { group: group.into(), k0, k1 }
            });
            if same_bytes(kept.group.as_bytes(), group.as_bytes()) {
                return (kept.k0, kept.k1);
            }
        }
        self.derive(group)
    }

    /// The hash key of `group`'s ids: the two halves of its name's hash.
    fn derive(&self, group: &str) -> (u64, u64) {
        let key = Sip::<1, 3>::hash_128(self.k0, self.k1, group.as_bytes());
        (key as u64, (key >> 64) as u64)
    }
}

/// Whether `a` and `b` hold the same bytes, compared in place up to 32 bytes (most
/// groups' names), where the library's `memcmp` cost about 35 instructions a message.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    // Words at these offsets cover every byte of 8 to 32, overlapping where shorter.
    let word = |bytes: &[u8], at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    n == b.len()
        && match n {
            0..8 => little_endian(a) == little_endian(b),
            8..16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
            16..=32 => [0, 8, n - 16, n - 8].iter().all(|&at| word(a, at) == word(b, at)),
            _ => a == b,
        }
}

/// SipHash with `C` rounds a word and `D` to finish, over one piece of bytes: every
/// key here is hashed whole, so there are no pieces to join into words.
struct Sip<const C: usize, const D: usize> {
    v: [u64; 4],
}

impl<const C: usize, const D: usize> Sip<C, D> {
    /// The 128-bit output of `bytes` under `(k0, k1)`: begun with `v1 ^ 0xee`, finished
    /// with `v2 ^ 0xee` rather than `0xff`, and then once more after `v1 ^ 0xdd`.
    // Always inlined: it is on every message's path, and the writer before it cost a
    // third again as a call.
    #[inline(always)]
    fn hash_128(k0: u64, k1: u64, bytes: &[u8]) -> u128 {
        let mut sip = Self::new(k0, k1);
        sip.v[1] ^= 0xee;
        sip.absorb(bytes);
        sip.v[2] ^= 0xee;
        sip.rounds(D);
        let first = sip.v.iter().fold(0, |h, v| h ^ v);
        sip.v[1] ^= 0xdd;
        sip.rounds(D);
        let second = sip.v.iter().fold(0, |h, v| h ^ v);
        (u128::from(second) << 64) | u128::from(first)
    }

    /// The 64-bit output of `bytes` under `(k0, k1)`.
    #[cfg(test)]
    fn hash_64(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
        let mut sip = Self::new(k0, k1);
        sip.absorb(bytes);
        sip.v[2] ^= 0xff;
        sip.rounds(D);
        sip.v.iter().fold(0, |h, v| h ^ v)
    }

    fn new(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
        }
    }

    /// Every whole word of `bytes`, then the last one: what is left of them and the
    /// length's low byte on top.
    #[inline(always)]
    fn absorb(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            self.compress(u64::from_le_bytes(*word));
            rest = tail;
        }
        self.compress(((bytes.len() as u64) << 56) | little_endian(rest));
    }

    #[inline]
    fn compress(&mut self, word: u64) {
        self.v[3] ^= word;
        self.rounds(C);
        self.v[0] ^= word;
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }

    fn round(&mut self) {
        let [v0, v1, v2, v3] = &mut self.v;
        *v0 = v0.wrapping_add(*v1);
        *v1 = v1.rotate_left(13) ^ *v0;
        *v0 = v0.rotate_left(32);
        *v2 = v2.wrapping_add(*v3);
        *v3 = v3.rotate_left(16) ^ *v2;
        *v0 = v0.wrapping_add(*v3);
        *v3 = v3.rotate_left(21) ^ *v0;
        *v2 = v2.wrapping_add(*v1);
        *v1 = v1.rotate_left(17) ^ *v2;
        *v2 = v2.rotate_left(32);
    }
}

/// Fewer than 8 bytes as a little-endian word, without a copy loop: two loads that may
/// overlap, which is how std's SipHash reads its tails too.
#[inline]
fn little_endian(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let low = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let high = u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes"));
        u64::from(low) | (u64::from(high) << (8 * (n - 4)))
    } else if n > 0 {
        // Bytes 0, n/2 and n-1 cover every position of 1 to 3 bytes.
        u64::from(bytes[0]) | (u64::from(bytes[n / 2]) << (8 * (n / 2))) | (u64::from(bytes[n - 1]) << (8 * (n - 1)))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::hash::Hasher;

    use super::*;

    /// The reference implementation's key: bytes 0 to 15.
    fn reference_key() -> (u64, u64) {
        (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)
    }

    #[test]
    fn matches_siphash_2_4_128_reference_vectors() {
        // From the SipHash authors' vectors for 128-bit output (`vectors_sip128`):
        // messages of 0, 1, 8 and 15 bytes, each byte its index, as output bytes.
        let (k0, k1) = reference_key();
        let cases: [(usize, [u8; 16]); 4] = [
            (0, [0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93]),
            (1, [0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45]),
            (8, [0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3, 0x14, 0x97, 0xb4]),
            (15, [0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97, 0xcf, 0xc3, 0xd9]),
        ];
        for (len, expected) in cases {
            let message: Vec<u8> = (0..len as u8).collect();
            assert_eq!(Sip::<2, 4>::hash_128(k0, k1, &message).to_le_bytes(), expected, "{len} bytes");
        }
    }

    #[test]
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4, the reference to compare with
    fn every_length_hashes_as_std_siphash_2_4() {
        let message: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        let (k0, k1) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        for len in 0..message.len() {
            let mut std = std::hash::SipHasher::new_with_keys(k0, k1);
            std.write(&message[..len]);
            assert_eq!(Sip::<2, 4>::hash_64(k0, k1, &message[..len]), std.finish(), "{len} bytes");
        }
    }

    #[test]
    fn an_id_is_hashed_under_its_groups_key_derived_from_the_stores() {
        let (k0, k1) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let fingerprints = Fingerprints::with_key(k0, k1);
        let hash = |(k0, k1): (u64, u64), bytes: &[u8]| Sip::<1, 3>::hash_128(k0, k1, bytes);
        let derived = hash((k0, k1), b"billing");
        let group_key = (derived as u64, (derived >> 64) as u64);
        let id = "0193a9e4-7f55-7c3b-b2d4-5e8f00112233";
        assert_eq!(fingerprints.of(&DedupKey { group: "billing", id }), hash(group_key, id.as_bytes()));
    }

    #[test]
    fn the_group_and_the_id_cannot_trade_bytes() {
        let fingerprints = Fingerprints::default();
        let of = |group, id| fingerprints.of(&DedupKey { group, id });
        assert_ne!(of("ab", "c"), of("a", "bc"));
        assert_ne!(of("", "a"), of("a", ""));
        assert_ne!(of("g", "id-1"), of("h", "id-1"));
        assert_eq!(of("g", "id-1"), of("g", "id-1"));
        assert_ne!(of("g", "id-1"), Fingerprints::default().of(&DedupKey { group: "g", id: "id-1" }), "keys differ");
    }

    #[test]
    fn bytes_compare_equal_only_when_all_of_them_are() {
        let text: Vec<u8> = (0..40u8).map(|b| b'a' + b % 26).collect();
        for n in 0..=text.len() {
            let (a, copy) = (&text[..n], text[..n].to_vec());
            assert!(same_bytes(a, &copy), "{n} bytes");
            for at in 0..n {
                let mut b = a.to_vec();
                b[at] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n} bytes, byte {at} differs");
            }
            if n > 0 {
                assert!(!same_bytes(a, &a[..n - 1]), "{n} bytes against one fewer");
            }
        }
    }

    #[test]
    fn groups_past_those_kept_fingerprint_as_if_kept() {
        let groups: Vec<String> = (0..3 * GROUPS).map(|i| format!("group-{i}")).collect();
        let all = |fingerprints: &Fingerprints, order: &mut dyn Iterator<Item = &String>| {
            let mut of: Vec<(String, u128)> =
                order.map(|g| (g.clone(), fingerprints.of(&DedupKey { group: g, id: "id-1" }))).collect();
            of.sort();
            of
        };
        // The first store keeps the first groups, the second the last ones.
        let (forwards, backwards) = (Fingerprints::with_key(1, 2), Fingerprints::with_key(1, 2));
        let first = all(&forwards, &mut groups.iter());
        assert_eq!(first, all(&backwards, &mut groups.iter().rev()));
        assert_eq!(first, all(&forwards, &mut groups.iter().rev()), "asked again, kept or not");
        let kept: Vec<&str> = forwards.groups.iter().filter_map(|s| s.get()).map(|k| &*k.group).collect();
        assert_eq!(kept, groups[..GROUPS]);
        let distinct: std::collections::HashSet<u128> = first.iter().map(|(_, f)| *f).collect();
        assert_eq!(distinct.len(), groups.len(), "one id, a different fingerprint in each group");
    }
}
