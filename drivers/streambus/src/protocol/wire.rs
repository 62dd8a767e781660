//! The encoding of the coordination payloads (spec §1.7), once: each field type knows how
//! it is written and read, and [`wire_struct!`] makes a payload type from its fields in
//! wire order. Strings have `i32` lengths, bytes may be null (−1), arrays are an `i32`
//! count followed by the elements.

use bytes::{BufMut, Bytes, BytesMut};

use super::primitives::{put_wire_bytes, put_wire_string, Cursor};
use super::{DecodeError, ErrorCode};

pub(crate) type R<T> = Result<T, DecodeError>;

/// A value of a coordination payload.
pub(crate) trait Wire: Sized {
    /// The fewest bytes one value takes, so that an array count larger than what is left
    /// could fit is refused before anything is allocated.
    const MIN: usize;

    /// Appends the value.
    fn put(&self, buf: &mut BytesMut);

    /// Reads a value; `what` names the field in errors.
    fn get(c: &mut Cursor, what: &'static str) -> R<Self>;
}

impl Wire for String {
    const MIN: usize = 4;

    fn put(&self, buf: &mut BytesMut) {
        put_wire_string(buf, self);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        c.wire_string(what)
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

impl Wire for bool {
    const MIN: usize = 1;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_u8(u8::from(*self));
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        c.bool(what)
    }
}

/// Big-endian integers, as `BufMut` writes and the cursor reads them.
macro_rules! wire_integer {
    ($($int:ty: $put:ident, $get:ident;)*) => {$(
        impl Wire for $int {
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
    i16: put_i16, i16;
    i32: put_i32, i32;
    i64: put_i64, i64;
}

impl<T: Wire> Wire for Vec<T> {
    const MIN: usize = 4;

    fn put(&self, buf: &mut BytesMut) {
        buf.put_i32(self.len() as i32);
        for item in self {
            item.put(buf);
        }
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        let n = c.wire_count(what, T::MIN)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(T::get(c, what)?);
        }
        Ok(items)
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    const MIN: usize = A::MIN + B::MIN;

    fn put(&self, buf: &mut BytesMut) {
        self.0.put(buf);
        self.1.put(buf);
    }

    fn get(c: &mut Cursor, what: &'static str) -> R<Self> {
        Ok((A::get(c, what)?, B::get(c, what)?))
    }
}

impl<A: Wire, B: Wire, C: Wire> Wire for (A, B, C) {
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
/// is read with its name in errors.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::protocol::wire::Wire for $name {
            const MIN: usize = 0 $( + <$ty as $crate::protocol::wire::Wire>::MIN )*;

            fn put(&self, buf: &mut ::bytes::BytesMut) {
                $( $crate::protocol::wire::Wire::put(&self.$field, buf); )*
            }

            fn get(
                c: &mut $crate::protocol::primitives::Cursor,
                _what: &'static str,
            ) -> $crate::protocol::wire::R<Self> {
                Ok(Self { $( $field: $crate::protocol::wire::Wire::get(c, stringify!($field))?, )* })
            }
        }

        impl $name {
            /// Appends the payload.
            pub fn encode(&self, buf: &mut ::bytes::BytesMut) {
                $crate::protocol::wire::Wire::put(self, buf);
            }

            /// Reads the payload.
            pub fn decode(payload: ::bytes::Bytes) -> Result<Self, $crate::protocol::DecodeError> {
                let mut c = $crate::protocol::primitives::Cursor::new(payload);
                $crate::protocol::wire::Wire::get(&mut c, stringify!($name))
            }
        }
    };
}

pub(crate) use wire_struct;
