//! The 128-bit fingerprints the in-process stores keep instead of a key's two strings.
//!
//! A fingerprint is a randomly keyed SipHash-1-3 of the key with SipHash's 128-bit
//! output. The hash is written out here rather than taken from std because std offers
//! only a 64-bit output through the `Hasher` trait: getting 128 bits from it meant
//! finishing twice and feeding the key as four writes, each buffering its bytes. For a
//! UUID id that took about 520 instructions, more than half of deduplicating a message;
//! this one reads the key in 8-byte words once and finishes once, in about 320.

use std::hash::{BuildHasher, RandomState};

use super::DedupKey;

/// Fingerprints of [`DedupKey`]s under one random key.
///
/// Two different keys colliding, which would skip a message, is about as likely as a
/// cosmic-ray bit flip: 2^-128 for a pair in the moka store, which keeps fingerprints
/// whole. [`InMemoryDedupStorage`](super::InMemoryDedupStorage) keeps 64 bits of one,
/// to fit five in a cache line, and picks the bucket by the other half: a new id is
/// compared with the few ids of its bucket (about ten at most, in two generations), so
/// a false skip is about 2^-61 a message, once in fifty thousand years at a million
/// messages a second. The hash key is random per store and secret, so a
/// producer cannot choose ids that collide with another's, and a fingerprint means
/// nothing outside the store that made it.
#[derive(Clone, Debug)]
pub(super) struct Fingerprints {
    k0: u64,
    k1: u64,
}

impl Default for Fingerprints {
    /// A fresh random key, from std's per-process random hasher keys.
    fn default() -> Self {
        let random = RandomState::new();
        Self { k0: random.hash_one(0u8), k1: random.hash_one(1u8) }
    }
}

impl Fingerprints {
    /// The fingerprint of `key`: its group, a 0xFF byte and its id. No UTF-8 text holds
    /// a 0xFF byte, so the byte marks where the group ends and no two keys read alike.
    pub(super) fn of(&self, key: &DedupKey<'_>) -> u128 {
        let mut words = Words::<1, 3>::new(self.k0, self.k1);
        words.write(key.group.as_bytes());
        words.write_byte(0xff);
        words.write(key.id.as_bytes());
        words.finish_128()
    }
}

/// SipHash with `C` rounds a word and `D` to finish, fed bytes in any pieces.
struct Words<const C: usize, const D: usize> {
    v: [u64; 4],
    /// Bytes waiting for a whole word, the first in the low byte.
    tail: u64,
    /// How many bytes `tail` holds (0 to 7).
    held: usize,
    /// How many bytes were written in all; SipHash's last word carries its low byte.
    length: usize,
}

impl<const C: usize, const D: usize> Words<C, D> {
    /// A hash with the 128-bit output, which differs from the 64-bit one from the start.
    fn new(k0: u64, k1: u64) -> Self {
        let mut words = Self::new_64(k0, k1);
        words.v[1] ^= 0xee;
        words
    }

    /// A hash with the 64-bit output.
    fn new_64(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            tail: 0,
            held: 0,
            length: 0,
        }
    }

    // Always inlined: `of` calls it twice, and as a call it cost a third again.
    #[inline(always)]
    fn write(&mut self, mut bytes: &[u8]) {
        self.length += bytes.len();
        if self.held > 0 {
            let take = bytes.len().min(8 - self.held);
            self.tail |= little_endian(&bytes[..take]) << (8 * self.held);
            self.held += take;
            bytes = &bytes[take..];
            if self.held < 8 {
                return;
            }
            self.compress(self.tail);
            (self.tail, self.held) = (0, 0);
        }
        while let Some((word, rest)) = bytes.split_first_chunk::<8>() {
            self.compress(u64::from_le_bytes(*word));
            bytes = rest;
        }
        (self.tail, self.held) = (little_endian(bytes), bytes.len());
    }

    /// One byte, as `write(&[byte])` would take it, without its loops.
    #[inline]
    fn write_byte(&mut self, byte: u8) {
        self.length += 1;
        self.tail |= u64::from(byte) << (8 * self.held);
        self.held += 1;
        if self.held == 8 {
            self.compress(self.tail);
            (self.tail, self.held) = (0, 0);
        }
    }

    #[inline]
    fn compress(&mut self, word: u64) {
        self.v[3] ^= word;
        self.rounds(C);
        self.v[0] ^= word;
    }

    fn last_word(&self) -> u64 {
        ((self.length as u64) << 56) | self.tail
    }

    /// SipHash's 64-bit output, of a hash made by [`Self::new_64`].
    #[cfg(test)]
    fn finish_64(mut self) -> u64 {
        self.compress(self.last_word());
        self.v[2] ^= 0xff;
        self.rounds(D);
        self.v.iter().fold(0, |h, v| h ^ v)
    }

    /// SipHash's 128-bit output, of a hash made by [`Self::new`]: finished with
    /// `v2 ^ 0xee` rather than `0xff`, and then once more after `v1 ^ 0xdd`.
    fn finish_128(mut self) -> u128 {
        self.compress(self.last_word());
        self.v[2] ^= 0xee;
        self.rounds(D);
        let first = self.v.iter().fold(0, |h, v| h ^ v);
        self.v[1] ^= 0xdd;
        self.rounds(D);
        let second = self.v.iter().fold(0, |h, v| h ^ v);
        (u128::from(second) << 64) | u128::from(first)
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
            let mut words = Words::<2, 4>::new(k0, k1);
            words.write(&message);
            assert_eq!(words.finish_128().to_le_bytes(), expected, "{len} bytes");
        }
    }

    #[test]
    #[allow(deprecated)] // std's SipHasher is SipHash-2-4, the reference to compare with
    fn bytes_in_any_pieces_hash_as_std_siphash_2_4() {
        let message: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
        let (k0, k1) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        for len in 0..message.len() {
            let mut std = std::hash::SipHasher::new_with_keys(k0, k1);
            std.write(&message[..len]);
            let expected = std.finish();
            // Every split into three pieces, as a key's group, separator and id come.
            for a in 0..=len {
                for b in a..=len {
                    let mut words = Words::<2, 4>::new_64(k0, k1);
                    words.write(&message[..a]);
                    words.write(&message[a..b]);
                    words.write(&message[b..len]);
                    assert_eq!(words.finish_64(), expected, "{len} bytes split at {a} and {b}");
                    if b < len {
                        // The same with the byte at `b` written alone.
                        let mut words = Words::<2, 4>::new_64(k0, k1);
                        words.write(&message[..a]);
                        words.write(&message[a..b]);
                        words.write_byte(message[b]);
                        words.write(&message[b + 1..len]);
                        assert_eq!(words.finish_64(), expected, "{len} bytes, byte {b} alone");
                    }
                }
            }
        }
    }

    #[test]
    fn the_group_and_the_id_cannot_trade_bytes() {
        let fingerprints = Fingerprints::default();
        let of = |group, id| fingerprints.of(&DedupKey { group, id });
        assert_ne!(of("ab", "c"), of("a", "bc"));
        assert_ne!(of("", "a"), of("a", ""));
        assert_eq!(of("g", "id-1"), of("g", "id-1"));
        assert_ne!(of("g", "id-1"), Fingerprints::default().of(&DedupKey { group: "g", id: "id-1" }), "keys differ");
    }
}
