//! Bounds-checked reading and writing of the two primitive encodings (spec §1.4).
//!
//! Legacy operations (0x01–0x07) use `u32` lengths with no null; coordination and
//! transaction payloads (0x08–0x13) use `i32` lengths where −1 is a null byte string.
//! Every read checks the bytes left first, so no input can make decoding panic or
//! allocate more than the input's own size.

use bytes::{BufMut, Bytes, BytesMut};

use super::DecodeError;

/// Reads primitives from a payload. Byte strings are slices of the payload, not copies.
#[derive(Debug)]
pub struct Cursor {
    buf: Bytes,
    pos: usize,
}

type R<T> = Result<T, DecodeError>;

impl Cursor {
    /// A cursor at the start of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> R<&[u8]> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what, needed: n, left: self.remaining() });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    fn take_bytes(&mut self, n: usize, what: &'static str) -> R<Bytes> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { what, needed: n, left: self.remaining() });
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..self.pos))
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &'static str) -> R<u8> {
        Ok(self.take(1, what)?[0])
    }

    /// An `i8`.
    pub fn i8(&mut self, what: &'static str) -> R<i8> {
        Ok(self.u8(what)? as i8)
    }

    /// A bool byte: 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> R<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { what, why: "a bool must be 0 or 1" }),
        }
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> R<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `i16`.
    pub fn i16(&mut self, what: &'static str) -> R<i16> {
        Ok(self.u16(what)? as i16)
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> R<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A big-endian `i32`.
    pub fn i32(&mut self, what: &'static str) -> R<i32> {
        Ok(self.u32(what)? as i32)
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> R<u64> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// A big-endian `i64` (offsets and timestamps are written as u64 bits).
    pub fn i64(&mut self, what: &'static str) -> R<i64> {
        Ok(self.u64(what)? as i64)
    }

    /// Legacy byte string: `u32` length, then the bytes.
    pub fn bytes(&mut self, what: &'static str) -> R<Bytes> {
        let len = self.u32(what)? as usize;
        self.take_bytes(len, what)
    }

    /// Legacy string: `u32` length, then UTF-8.
    pub fn string(&mut self, what: &'static str) -> R<String> {
        let len = self.u32(what)? as usize;
        self.text(len, what)
    }

    /// `len` bytes of UTF-8.
    pub fn text(&mut self, len: usize, what: &'static str) -> R<String> {
        utf8(self.take(len, what)?, what)
    }

    /// A coordination length: `i32`, not negative.
    pub fn wire_len(&mut self, what: &'static str) -> R<usize> {
        match self.i32(what)? {
            len if len < 0 => Err(DecodeError::Invalid { what, why: "negative length" }),
            len => Ok(len as usize),
        }
    }

    /// Coordination bytes: `i32` length, −1 for null, then the bytes.
    pub fn wire_bytes(&mut self, what: &'static str) -> R<Option<Bytes>> {
        match self.i32(what)? {
            -1 => Ok(None),
            len if len < 0 => Err(DecodeError::Invalid { what, why: "byte length below -1" }),
            len => self.take_bytes(len as usize, what).map(Some),
        }
    }

    /// Legacy count: `u32`, and not more elements than `min_size`-byte elements could
    /// fit in what is left.
    pub fn count(&mut self, what: &'static str, min_size: usize) -> R<usize> {
        let count = self.u32(what)? as usize;
        self.check_count(count, min_size, what)
    }

    /// `count`, unless more `min_size`-byte elements than that could fit in what is left.
    pub fn check_count(&self, count: usize, min_size: usize, what: &'static str) -> R<usize> {
        if count.saturating_mul(min_size.max(1)) > self.remaining() {
            return Err(DecodeError::Invalid { what, why: "more elements than bytes left" });
        }
        Ok(count)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self, what: &'static str) -> R<()> {
        if self.remaining() != 0 {
            return Err(DecodeError::Trailing { what, left: self.remaining() });
        }
        Ok(())
    }
}

fn utf8(b: &[u8], what: &'static str) -> R<String> {
    std::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::Invalid { what, why: "not UTF-8" })
}

/// Writes legacy byte strings (`u32` length).
pub fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(b.len() as u32);
    buf.put_slice(b);
}

/// Writes coordination bytes (`i32` length, −1 for `None`).
pub fn put_wire_bytes(buf: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
        None => buf.put_i32(-1),
    }
}
