//! Finding where a JSON string's plain text ends: the first quote, backslash or control
//! byte, a block of bytes at a time.

#[cfg(any(not(target_arch = "x86_64"), test))]
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
#[cfg(any(not(target_arch = "x86_64"), test))]
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The high bit of each of a word's eight bytes that needs escaping, and maybe of some
/// bytes above one that does: a control character (below 0x20), a quote or a backslash
/// (which the XORs turn into zero bytes). Subtracting `n` from every byte at once sets a
/// byte's high bit in `(x - n) & !x` only below `n` (at most 0x80), or through a borrow
/// from a lower byte that was below `n` itself; so whether the result is zero is exact,
/// whichever byte order the word was read in, and so is its lowest byte that is set
/// when the word was read little-endian.
#[cfg(any(not(target_arch = "x86_64"), test))]
fn escapes(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    (below_space | zero_byte(quote) | zero_byte(backslash)) & HIGHS
}

/// Where the plain text that starts at `from` ends: the index of the first quote,
/// backslash or control byte at or after `from` (`bytes.len()` if there is none), and
/// whether a byte of 0x80 or above comes before it, in which case the text needs
/// checking as UTF-8. The check rides on the search, so that plain ASCII text, most of
/// it, is read once rather than searched and then validated.
#[cfg(target_arch = "x86_64")]
pub(super) fn to_special(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut at = from;
    let mut high = 0;
    // Most text (names, short values) ends within its first sixteen bytes.
    if let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        // SAFETY: as below.
        let (special, top) = unsafe { block_masks(block) };
        if special != 0 {
            let before = (special & special.wrapping_neg()) - 1;
            return (at + special.trailing_zeros() as usize, top & before != 0);
        }
        high = top;
        at += 16;
    }
    // Then sixty-four bytes at a time while none is special: long text, most of it. Two
    // 32-byte blocks a step where the processor has AVX2 (checked once, then read from
    // std's cache), four 16-byte blocks where it does not.
    if bytes.len().saturating_sub(at) >= 64 {
        let (end, top) = if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, as just checked.
            unsafe { plain_run_avx2(bytes, at) }
        } else {
            plain_run_sse2(bytes, at)
        };
        (at, high) = (end, high | top);
    }
    while let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        // SAFETY: SSE2 is part of x86-64, so every processor this runs on has it.
        let (special, top) = unsafe { block_masks(block) };
        if special != 0 {
            let before = (special & special.wrapping_neg()) - 1;
            return (at + special.trailing_zeros() as usize, high | (top & before) != 0);
        }
        high |= top;
        at += 16;
    }
    let (end, tail_high) = byte_by_byte(bytes, at);
    (end, high != 0 || tail_high)
}

/// Where the run of 64-byte stretches from `from` with no special byte ends (the start
/// of the first stretch that has one, or of the last partial one), and a bit set if any
/// byte before that is 0x80 or above.
#[cfg(target_arch = "x86_64")]
fn plain_run_sse2(bytes: &[u8], from: usize) -> (usize, u32) {
    let mut at = from;
    let mut high = 0;
    while let Some(blocks) = bytes.get(at..).and_then(|rest| rest.first_chunk::<64>()) {
        // SAFETY: SSE2 is part of x86-64, so every processor this runs on has it.
        let (special, top) = unsafe { four_blocks_masks(blocks) };
        if special {
            break;
        }
        high |= top;
        at += 64;
    }
    (at, high)
}

/// [`plain_run_sse2`] in 32-byte blocks, about half the instructions a byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn plain_run_avx2(bytes: &[u8], from: usize) -> (usize, u32) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_min_epu8, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_setzero_si256,
    };
    let mut at = from;
    let mut high = 0;
    while let Some(blocks) = bytes.get(at..).and_then(|rest| rest.first_chunk::<64>()) {
        let (mut special, mut any) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for block in blocks.chunks_exact(32) {
            // SAFETY: reads the 32 bytes of `block`, and an unaligned load may read from
            // any address.
            let block = unsafe { _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()) };
            let quote = _mm256_cmpeq_epi8(block, _mm256_set1_epi8(b'"' as i8));
            let backslash = _mm256_cmpeq_epi8(block, _mm256_set1_epi8(b'\\' as i8));
            let control = _mm256_cmpeq_epi8(_mm256_min_epu8(block, _mm256_set1_epi8(0x1f)), block);
            special = _mm256_or_si256(special, _mm256_or_si256(_mm256_or_si256(quote, backslash), control));
            any = _mm256_or_si256(any, block);
        }
        if _mm256_movemask_epi8(special) != 0 {
            break;
        }
        high |= _mm256_movemask_epi8(any) as u32;
        at += 64;
    }
    (at, high)
}

/// Whether any of the 64 bytes of `blocks` is a quote, a backslash or a control byte,
/// and a bit set if any is 0x80 or above: the checks of [`block_masks`], four blocks to
/// one answer, in about half the instructions a byte.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn four_blocks_masks(blocks: &[u8; 64]) -> (bool, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let (mut special, mut any) = (_mm_set1_epi8(0), _mm_set1_epi8(0));
    for block in blocks.chunks_exact(16) {
        // SAFETY: reads the sixteen bytes of `block`, and an unaligned load may read
        // from any address.
        let block = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let quote = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
        let control = _mm_cmpeq_epi8(_mm_min_epu8(block, _mm_set1_epi8(0x1f)), block);
        special = _mm_or_si128(special, _mm_or_si128(_mm_or_si128(quote, backslash), control));
        any = _mm_or_si128(any, block);
    }
    (_mm_movemask_epi8(special) != 0, _mm_movemask_epi8(any) as u32)
}

/// A bit for each byte of `block` that is a quote, a backslash or a control byte, and
/// one for each of 0x80 or above: sixteen bytes in about as many instructions as
/// serde_json's scan spends on two.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn block_masks(block: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: reads the sixteen bytes of `block`, and an unaligned load may read from
    // any address.
    let block = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
    let quote = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
    let backslash = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
    // A byte below 0x20 is its own minimum with 0x1f (compared unsigned).
    let control = _mm_cmpeq_epi8(_mm_min_epu8(block, _mm_set1_epi8(0x1f)), block);
    let special = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control));
    (special as u32, _mm_movemask_epi8(block) as u32)
}

/// [`to_special`] a word of eight bytes at a time, where no vector instructions are
/// known to be there.
#[cfg(any(not(target_arch = "x86_64"), test))]
pub(super) fn to_special_by_words(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut at = from;
    let mut high = 0;
    while let Some(word) = bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let word = u64::from_le_bytes(*word);
        let special = escapes(word);
        if special != 0 {
            let first = special.trailing_zeros() as usize / 8;
            // The bytes before the first special one: a mask of their bits.
            let before = (1u64 << (8 * first)) - 1;
            return (at + first, high | (word & before & HIGHS) != 0);
        }
        high |= word & HIGHS;
        at += 8;
    }
    let (end, tail_high) = byte_by_byte(bytes, at);
    (end, high != 0 || tail_high)
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) use to_special_by_words as to_special;

fn byte_by_byte(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut high = false;
    for (at, &byte) in bytes.iter().enumerate().skip(from) {
        if byte == b'"' || byte == b'\\' || byte < 0x20 {
            return (at, high);
        }
        high |= byte >= 0x80;
    }
    (bytes.len(), high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both 64-byte runs stop at the same place and see the same high bytes, as far as
    /// the processor running the test has the instructions for the wide one.
    #[cfg(target_arch = "x86_64")]
    #[track_caller]
    fn same_runs(text: &[u8], from: usize) {
        let (at, high) = plain_run_sse2(text, from);
        let expected = (at, high != 0);
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, as just checked.
            let (wide_at, wide_high) = unsafe { plain_run_avx2(text, from) };
            assert_eq!((wide_at, wide_high != 0), expected, "{text:?} from {from}");
        }
        // Everything before the stop is plain, and the stop is a whole number of steps.
        assert_eq!((at - from) % 64, 0);
        assert!(text[from..at].iter().all(|&b| b != b'"' && b != b'\\' && b >= 0x20));
    }

    /// Each special byte, and a high byte, at every place of a block and around its
    /// edges, from every start, against the byte-by-byte answer.
    #[test]
    fn the_block_scans_agree_with_the_byte_by_byte_one() {
        // Under Miri, which checks the loads rather than the answers, a grid that still
        // puts a special byte before, inside and past each kind of block: Miri ran the
        // whole one for over twelve minutes without finishing it.
        let lens: Vec<usize> = if cfg!(miri) {
            vec![0, 7, 15, 16, 17, 31, 64, 65, 81, 130]
        } else {
            (0..40).chain([63, 64, 65, 79, 80, 81, 130]).collect()
        };
        let specials: &[u8] = if cfg!(miri) { &[b'"', 0x1f] } else { &[b'"', b'\\', 0x00, 0x1f, b'\n'] };
        for &special in specials {
            for &len in &lens {
                let places: Vec<usize> =
                    if cfg!(miri) { vec![0, len / 2, len.saturating_sub(1), len] } else { (0..=len).collect() };
                for place in places {
                    for high in [None, Some(0), Some(place.saturating_sub(1)), Some(len.saturating_sub(1))] {
                        let mut text = vec![b'a'; len];
                        if let Some(h) = high.filter(|&h| h < len) {
                            text[h] = 0xc3;
                        }
                        if place < len {
                            text[place] = special;
                        }
                        // Bytes 0x20 and 0x7f border the control range and ASCII.
                        if len > 3 && place != 2 && high != Some(2) {
                            text[2] = if len % 2 == 0 { 0x20 } else { 0x7f };
                        }
                        for from in 0..=len.min(3) {
                            let expected = byte_by_byte(&text, from);
                            assert_eq!(to_special(&text, from), expected, "{text:?} from {from}");
                            assert_eq!(to_special_by_words(&text, from), expected, "{text:?} from {from}");
                            #[cfg(target_arch = "x86_64")]
                            same_runs(&text, from);
                        }
                    }
                }
            }
        }
    }
}
