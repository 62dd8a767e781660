//! Stable hashing for keys.

/// 64-bit FNV-1a of `bytes`. Stable across processes and platforms, unlike std's
/// `DefaultHasher`, so a key maps to the same lane or partition every run.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_reference_values() {
        assert_eq!(super::fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(super::fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(super::fnv1a_64(b"foobar"), 0x85944171f73967e8);
    }
}
