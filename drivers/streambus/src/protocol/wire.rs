//! The two payload encodings (spec §1.4), once: each field type knows how it is written
//! and read in each, and [`wire_struct!`] makes a payload type from its fields in wire
//! order.
//!
//! [`Coordination`] (operations 0x08–0x13): strings have `i32` lengths, bytes may be
//! null (−1), arrays are an `i32` count followed by the elements. [`Legacy`] (the data
//! path, 0x01–0x07): strings and counts have `u32` lengths and nothing is null.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{put_bytes, put_wire_bytes, Cursor};
use super::{DecodeError, ErrorCode};

pub(crate) type R<T> = Result<T, DecodeError>;

/// One of the two encodings. They differ in how a length (of a string or an array) is
/// read; written, a length is the same four bytes in both.
pub(crate) trait Encoding {
    /// Reads a length.
    fn get_len(c: &mut Cursor, what: &'static str) -> R<usize>;
}

/// The encoding of the coordination and transaction payloads: `i32` lengths, negative
/// ones refused.
#[derive(Debug)]
pub(crate) enum Coordination {}

impl Encoding for Coordination {
    fn get_len(c: &mut Cursor, what: &'static str) -> R<usize> {
        c.wire_len(what)
    }
}

/// The encoding of the data-path payloads: `u32` lengths.
#[derive(Debug)]
pub(crate) enum Legacy {}

impl Encoding for Legacy {
    fn get_len(c: &mut Cursor, what: &'static str) -> R<usize> {
        Ok(c.u32(what)? as usize)
    }
}

/// A value of a payload in the encoding `E`.
pub(crate) trait Wire<E = Coordination>: Sized {
    /// The fewest bytes one value takes, so that an array count larger than what is left
    /// could fit is refused before anything is allocated.
    const MIN: usize;

    /// Appends the value.
    fn put(&self, buf: &mut BytesMut);

    /// Reads a value; `what` names the field in errors.
    fn get(c: &mut Cursor, what: &'static str) -> R<Self>;
}

impl<E: Encoding> Wire<E> for String {
    const MIN: usize = 4;

    fn put(&self, buf: &mut BytesMut) {
        put_bytes(buf, self.as_bytes());
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        let len = E::get_len(c, what)?;
        c.text(len, what)
    }
}

impl Wire for Option<Bytes> {
    const MIN: usize = 4;

    fn put(&self, buf: &mut BytesMut) {
        put_wire_bytes(buf, self.as_deref());
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        c.wire_bytes(what)
    }
}

impl Wire for ErrorCode {
    const MIN: usize = 2;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_u16(self.0);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        c.u16(what).map(ErrorCode)
    }
}

impl<E> Wire<E> for bool {
    const MIN: usize = 1;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_u8(u8::from(*self));
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        c.bool(what)
    }
}

/// Big-endian integers, as `BufMut` writes and the cursor reads them, the same in both
/// encodings.
macro_rules! wire_integer {
    ($($int:ty: $put:ident, $get:ident;)*) => {$(
        impl<E> Wire<E> for $int {
            const MIN: usize = std::mem::size_of::<$int>();

            fn put(&self, buf: &mut BytesMut) {
                buf.$put(*self);
            }

            fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
                c.$get(what)
            }
        }
    )*};
}

wire_integer! {
    u8: put_u8, u8;
    u16: put_u16, u16;
    i16: put_i16, i16;
    u32: put_u32, u32;
    i32: put_i32, i32;
    u64: put_u64, u64;
    i64: put_i64, i64;
}

impl<E: Encoding, T: Wire<E>> Wire<E> for Vec<T> {
    const MIN: usize = 4;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_u32(self.len() as u32);
        for item in self {
            item.put(buf);
        }
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        let n = E::get_len(c, what)?;
        let n = c.check_count(n, T::MIN, what)?;
        (0..n).map(|_| T::get(c, what)).collect()
    }
}

impl<E, A: Wire<E>, B: Wire<E>> Wire<E> for (A, B) {
    const MIN: usize = A::MIN + B::MIN;

    fn put(&self, buf: &mut BytesMut) {
        self.0.put(buf);
        self.1.put(buf);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        Ok((A::get(c, what)?, B::get(c, what)?))
    }
}

impl<E, A: Wire<E>, B: Wire<E>, C: Wire<E>> Wire<E> for (A, B, C) {
    const MIN: usize = A::MIN + B::MIN + C::MIN;

    fn put(&self, buf: &mut BytesMut) {
        self.0.put(buf);
        self.1.put(buf);
        self.2.put(buf);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        Ok((A::get(c, what)?, B::get(c, what)?, C::get(c, what)?))
    }
}

/// Defines a payload struct from its fields in wire order, with [`Wire`] for it and
/// `encode`/`decode` for a whole payload. The fields are the table of the spec; a field
/// is read with its name in errors. `in Legacy;` before the struct picks the data-path
/// encoding; the default is [`Coordination`].
macro_rules! wire_struct {
    (
        in $enc:ident;
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::protocol::wire::Wire<$crate::protocol::wire::$enc> for $name {
            const MIN: usize =
                0 $( + <$ty as $crate::protocol::wire::Wire<$crate::protocol::wire::$enc>>::MIN )*;

            fn put(&self, buf: &mut ::bytes::BytesMut) {
                $( <$ty as $crate::protocol::wire::Wire<$crate::protocol::wire::$enc>>::put(&self.$field, buf); )*
            }

            fn get(
                c: &mut $crate::protocol::primitives::Cursor,
                _what: &'static str,
            ) -> $crate::protocol::wire::R<Self> {
                Ok(Self { $(
                    $field: <$ty as $crate::protocol::wire::Wire<$crate::protocol::wire::$enc>>::get(
                        c,
                        stringify!($field),
                    )?,
                )* })
            }
        }

        impl $name {
            /// Appends the payload.
            pub fn encode(&self, buf: &mut ::bytes::BytesMut) {
                <Self as $crate::protocol::wire::Wire<$crate::protocol::wire::$enc>>::put(self, buf);
            }

            /// Reads the payload.
            pub fn decode(payload: ::bytes::Bytes) -> Result<Self, $crate::protocol::DecodeError> {
                let mut c = $crate::protocol::primitives::Cursor::new(payload);
                <Self as $crate::protocol::wire::Wire<$crate::protocol::wire::$enc>>::get(&mut c, stringify!($name))
            }
        }
    };
    ($(#[$meta:meta])* pub struct $($rest:tt)*) => {
        $crate::protocol::wire::wire_struct! { in Coordination; $(#[$meta])* pub struct $($rest)* }
    };
}

pub(crate) use wire_struct;
