//! Message id factories.

use crate::MessageId;

/// Makes message ids.
pub trait IdFactory: Send + Sync + 'static {
    /// A new, unique id.
    fn next_id(&self) -> MessageId;

    /// A new, unique id for a message made at `time`. A factory whose ids carry a time
    /// (UUIDv7) takes it from there rather than reading the clock a second time for the
    /// same message; the default is [`IdFactory::next_id`].
    fn id_at(&self, time: std::time::SystemTime) -> MessageId {
        let _ = time;
        self.next_id()
    }
}

/// UUID version 7 ids: time-ordered, 36 characters. The default.
///
/// Made without a system call per id: each thread seeds a generator once from the
/// operating system and then steps SplitMix64, whose outputs never repeat within its
/// period of 2^64, and all 64 bits of each output go into the id's random fields. So ids
/// of one thread never collide, and ids of two threads or processes only if their
/// random seeds put them on the same stretch of the sequence in the same millisecond.
#[derive(Clone, Copy, Debug, Default)]
pub struct UuidV7Ids;

impl IdFactory for UuidV7Ids {
    fn next_id(&self) -> MessageId {
        self.id_at(std::time::SystemTime::now())
    }

    fn id_at(&self, time: std::time::SystemTime) -> MessageId {
        MessageId::from_uuid_v7(hyphenated(fast_v7::next(time)))
    }
}

/// Two lowercase hexadecimal digits for each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
        b += 1;
    }
    pairs
};

/// A UUID's 36-character form (8-4-4-4-12 lowercase hexadecimal digits), written two
/// digits a byte from a table: half the work of uuid's formatter, which looks each digit
/// up on its own, on a path every publish takes.
fn hyphenated(bytes: [u8; 16]) -> [u8; 36] {
    /// Where each byte's two digits go, past the hyphens.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = [b'-'; 36];
    for (byte, at) in bytes.into_iter().zip(AT) {
        text[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    text
}

mod fast_v7 {
    use std::cell::Cell;
    use std::time::SystemTime;

    thread_local! {
        /// The SplitMix64 state, and 10 more random bits for the id's last field.
        static STATE: (Cell<u64>, u16) = seed();
    }

    /// Seeds from the operating system, through uuid's own random v7: once per thread.
    fn seed() -> (Cell<u64>, u16) {
        let (high, low) = uuid::Uuid::now_v7().as_u64_pair();
        // `low` holds 62 random bits, `high` 12 in its lowest bits (rand_a).
        (Cell::new(low ^ (high << 52)), ((low >> 52) as u16) & 0x3FF)
    }

    /// The 16 bytes of a UUIDv7 for `now` (RFC 9562, section 5.7): 48 bits of Unix
    /// milliseconds, the version, 12 bits of `rand_a`, the variant and 62 bits of
    /// `rand_b`.
    pub(super) fn next(now: SystemTime) -> [u8; 16] {
        let millis = crate::unix_time::millis(now) & 0xFFFF_FFFF_FFFF;
        let (z, tag) = STATE.with(|(state, tag)| {
            let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            state.set(s);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31), *tag)
        });
        let rand_a = (z >> 52) as u16;
        // Variant 0b10, the thread's 10 bits, then the output's other 52 bits.
        let rand_b = (0b10u64 << 62) | (u64::from(tag) << 52) | (z & 0x000F_FFFF_FFFF_FFFF);
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        b[6] = 0x70 | (rand_a >> 8) as u8;
        b[7] = rand_a as u8;
        b[8..].copy_from_slice(&rand_b.to_be_bytes());
        b
    }
}

/// The Unix time in milliseconds that a UUID version 7 id carries in its first 48 bits
/// (RFC 9562), or `None` if `id` is not a UUIDv7. Drivers whose brokers have no time
/// field of their own use it to leave out a time header the id already holds. For a
/// message's own id, [`MessageId::uuid_v7_millis`] answers the same, without a parse
/// when [`UuidV7Ids`] made the id.
///
/// ```
/// use tidewater_core::{id::uuid_v7_millis, IdFactory, UuidV7Ids};
/// use std::time::{SystemTime, UNIX_EPOCH};
///
/// let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
/// let millis = uuid_v7_millis(&UuidV7Ids.next_id()).unwrap();
/// assert!(millis.abs_diff(now) < 1_000);
/// assert_eq!(uuid_v7_millis("order-17"), None);
/// assert_eq!(uuid_v7_millis("67e55044-10b1-426f-9247-bb680e5fe0c8"), None); // version 4
/// ```
pub fn uuid_v7_millis(id: &str) -> Option<u64> {
    // Only the 36-character form tidewater makes: other spellings of the same UUID
    // would not come back as the same id string anyway.
    if id.len() != 36 {
        return None;
    }
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    if uuid.get_version_num() != 7 || uuid.get_variant() != uuid::Variant::RFC4122 {
        return None;
    }
    // RFC 9562: a UUIDv7 begins with its 48-bit big-endian `unix_ts_ms`. Read directly, as
    // uuid's `get_timestamp` would split it into seconds and nanoseconds only for this to
    // multiply them back, on every message a driver sends or reads.
    let b = uuid.as_bytes();
    Some(u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]))
}

/// KSUID ids: time-ordered, 27 base-62 characters, as Segment's KSUID and Watermill use.
#[derive(Clone, Copy, Debug, Default)]
pub struct KsuidIds;

impl IdFactory for KsuidIds {
    fn next_id(&self) -> MessageId {
        use svix_ksuid::KsuidLike;
        let ksuid = svix_ksuid::Ksuid::now(None);
        let text = ksuid_text(ksuid.bytes());
        MessageId::from(std::str::from_utf8(&text).expect("base-62 digits are ASCII"))
    }
}

/// A KSUID's 20 bytes as its 27 base-62 digits, written on the stack: the id then fits
/// inside its `MessageId`, where formatting through a `String` cost an allocation.
fn ksuid_text(bytes: &[u8; 20]) -> [u8; 27] {
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // The 160-bit number as five big-endian 32-bit words, divided by 62 once a digit,
    // least significant digit first.
    let mut words = [0u32; 5];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_be_bytes(chunk.try_into().expect("4 bytes"));
    }
    let mut text = [b'0'; 27];
    for digit in text.iter_mut().rev() {
        let mut remainder = 0u64;
        for word in &mut words {
            let value = (remainder << 32) | u64::from(*word);
            *word = (value / 62) as u32;
            remainder = value % 62;
        }
        *digit = DIGITS[remainder as usize];
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_uuid_is_written_as_the_uuid_crate_writes_it() {
        let mut state = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            let mut bytes = [0u8; 16];
            for chunk in bytes.chunks_mut(8) {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                chunk.copy_from_slice(&state.to_le_bytes());
            }
            let ours = hyphenated(bytes);
            assert_eq!(std::str::from_utf8(&ours).unwrap(), uuid::Uuid::from_bytes(bytes).hyphenated().to_string());
        }
        assert_eq!(&hyphenated([0xff; 16]), b"ffffffff-ffff-ffff-ffff-ffffffffffff");
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let uuids: HashSet<MessageId> = (0..1000).map(|_| UuidV7Ids.next_id()).collect();
        assert_eq!(uuids.len(), 1000);
        assert!(uuids.iter().all(|id| uuid::Uuid::parse_str(id).unwrap().get_version_num() == 7));

        let ksuids: HashSet<MessageId> = (0..1000).map(|_| KsuidIds.next_id()).collect();
        assert!(ksuids.iter().all(MessageId::is_inline), "a KSUID id is kept inside its MessageId");
        assert_eq!(ksuids.len(), 1000);
        assert!(ksuids.iter().all(|id| id.len() == 27 && id.chars().all(|c| c.is_ascii_alphanumeric())));
    }

    #[test]
    fn ids_are_v7_of_this_millisecond_and_in_order_across_threads() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        // Fewer under Miri, which runs the threads by turns, a step at a time.
        let each = if cfg!(miri) { 200 } else { 20_000 };
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || (0..each).map(|_| UuidV7Ids.next_id()).collect::<Vec<_>>()))
            .collect();
        let ids: Vec<MessageId> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let distinct: HashSet<&MessageId> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "{} ids from 4 threads, all different", ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!((uuid.get_version_num(), uuid.get_variant()), (7, uuid::Variant::RFC4122), "{id}");
            assert_eq!(id, &uuid.hyphenated().to_string(), "lower-case hyphenated form");
            let millis = uuid_v7_millis(id).unwrap();
            assert!(before <= millis && millis <= after, "{id} carries {millis}, not in {before}..={after}");
        }
    }

    #[test]
    fn the_time_of_a_uuid_v7_is_its_first_48_bits() {
        // The example UUIDv7 of RFC 9562, appendix A.5: 2022-02-22 19:22:22 UTC.
        assert_eq!(uuid_v7_millis("017f22e2-79b0-7cc3-98c4-dc0c0c07398f"), Some(0x017F_22E2_79B0));
        assert_eq!(uuid_v7_millis("017F22E2-79B0-7CC3-98C4-DC0C0C07398F"), Some(1_645_557_742_000));
        for _ in 0..100 {
            let id = UuidV7Ids.next_id();
            let (secs, nanos) = uuid::Uuid::parse_str(&id).unwrap().get_timestamp().unwrap().to_unix();
            assert_eq!(uuid_v7_millis(&id), Some(secs * 1_000 + u64::from(nanos) / 1_000_000));
        }
        // Not the 36-character form, or not version 7.
        assert_eq!(uuid_v7_millis("017f22e279b07cc398c4dc0c0c07398f"), None);
        assert_eq!(uuid_v7_millis("017f22e2-79b0-4cc3-98c4-dc0c0c07398f"), None);
        assert_eq!(uuid_v7_millis("017f22e2-79b0-7cc3-98c4-dc0c0c07398g"), None);
    }

    #[test]
    fn an_id_made_for_a_time_carries_it() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_208_746_005);
        let (a, b) = (UuidV7Ids.id_at(at), UuidV7Ids.id_at(at));
        assert_eq!(uuid_v7_millis(&a), Some(1_796_208_746_005));
        assert_ne!(a, b, "ids of one millisecond still differ");
    }
}

#[test]
fn ksuid_digits_are_those_of_the_ksuid_crate() {
    use svix_ksuid::KsuidLike;
    let mut edges = vec![svix_ksuid::Ksuid::from_bytes([0; 20]), svix_ksuid::Ksuid::from_bytes([255; 20])];
    edges.extend((0..1000).map(|_| svix_ksuid::Ksuid::now(None)));
    for ksuid in edges {
        assert_eq!(std::str::from_utf8(&ksuid_text(ksuid.bytes())).unwrap(), ksuid.to_string());
    }
}
