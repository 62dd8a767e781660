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
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.len() > SMALL {
            return Bytes::copy_from_slice(bytes);
        }
        if self.buffer.capacity() - self.buffer.len() < bytes.len() {
            self.buffer = BytesMut::with_capacity(CHUNK);
        }
        self.buffer.extend_from_slice(bytes);
        self.buffer.split().freeze()
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
}
