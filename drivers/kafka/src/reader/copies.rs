//! Where the payloads and keys of fetched records are copied to.

use bytes::{Bytes, BytesMut};

/// Bytes copied into one shared buffer before a new one is started.
const CHUNK: usize = 64 * 1024;

/// Payloads larger than this get a buffer of their own.
const SMALL: usize = 4 * 1024;

/// Copies the small payloads and keys of fetched records into shared buffers of
/// [`CHUNK`] bytes: a few dozen records to an allocation rather than two allocations each.
///
/// A record's bytes live in librdkafka's fetch buffer, which a message cannot keep, so
/// they are copied. Copied one to an allocation, a 1 KiB payload took glibc's slow path
/// to allocate and again to free (a chunk that size is past its per-thread cache). As
/// with the Go clients that slice records out of the fetch response, a message kept after
/// its handler returns keeps its chunk alive: at most [`CHUNK`] bytes, since larger
/// payloads are not shared.
#[derive(Debug, Default)]
pub(crate) struct Copies {
    buffer: BytesMut,
}

impl Copies {
    /// A copy of `bytes`.
    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.len() > SMALL {
            return Bytes::copy_from_slice(bytes);
        }
        self.make_room(bytes.len());
        self.buffer.extend_from_slice(bytes);
        self.buffer.split().freeze()
    }

    /// Starts a new shared buffer unless the current one has room for `length` bytes.
    fn make_room(&mut self, length: usize) {
        if self.buffer.capacity() - self.buffer.len() < length {
            self.buffer = BytesMut::with_capacity(CHUNK);
        }
    }

    /// Copies of a record's `key` and `payload`. A small pair is copied side by side and
    /// split off the buffer as one: taking a piece of the shared buffer is most of what
    /// a copy costs (about 140 instructions, an atomic increment among them), and a
    /// piece of that piece costs a fifth of it.
    pub(crate) fn copy_record(&mut self, key: Option<&[u8]>, payload: &[u8]) -> (Option<Bytes>, Bytes) {
        let Some(key) = key else {
            return (None, self.copy(payload));
        };
        let length = key.len() + payload.len();
        if length > SMALL {
            return (Some(self.copy(key)), self.copy(payload));
        }
        self.make_room(length);
        self.buffer.extend_from_slice(key);
        self.buffer.extend_from_slice(payload);
        let mut payload = self.buffer.split().freeze();
        let key = payload.split_to(key.len());
        (Some(key), payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_equal_their_source_whatever_their_size() {
        let mut copies = Copies::default();
        let small: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i; 1000]).collect();
        let made: Vec<Bytes> = small.iter().map(|s| copies.copy(s)).collect();
        assert!(made.iter().zip(&small).all(|(m, s)| m[..] == s[..]), "a copy differs from its source");
        let large = vec![9u8; SMALL + 1];
        assert_eq!(copies.copy(&large)[..], large[..]);
        assert!(copies.copy(&[]).is_empty());
        drop(made);
        assert_eq!(copies.copy(b"key")[..], b"key"[..]);
    }

    #[test]
    fn a_records_key_and_payload_are_copied_apart_whatever_their_sizes() {
        let mut copies = Copies::default();
        let large = vec![7u8; SMALL];
        let cases: [(Option<&[u8]>, &[u8]); 6] = [
            (Some(b"k1"), b"payload"),
            (None, b"no key"),
            (Some(b""), b"empty key"),
            (Some(b"key"), b""),
            (Some(b"k2"), &large),
            (Some(&large), b"p"),
        ];
        // Enough rounds to fill several shared buffers.
        for _ in 0..40 {
            for (key, payload) in cases {
                let (k, p) = copies.copy_record(key, payload);
                assert_eq!(k.as_deref(), key);
                assert_eq!(&p[..], payload);
            }
        }
    }
}
