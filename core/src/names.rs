//! Name rules shared by drivers.

use crate::{Error, ErrorKind, Result};

/// Checks a topic name against the one rule every driver maps without surprises: 1 to 249
/// characters (Kafka's limit) of ASCII letters, digits, `.`, `_` and `-`, where `.`
/// separates non-empty segments (NATS subjects are tokens split by dots, so no leading,
/// trailing or doubled dot). The scheduler checks every subscription's topic against it
/// at `start`, the [`EventRegistry`](crate::EventRegistry) every route, and the memory
/// driver every write, so a name that passes in a test passes on every broker.
///
/// Two names that differ only in `.` and `_` (`orders.eu`, `orders_eu`) are both valid,
/// but Kafka refuses the second as a collision and JetStream would map both to stream
/// `orders_eu`: those drivers refuse the second with an error that names the first.
///
/// ```
/// use tidewater_core::{names, ErrorKind};
///
/// assert!(names::check_topic("orders.eu-1").is_ok());
/// for bad in ["orders/eu", "a*b", "orders..eu", "orders.", ".orders", ""] {
///     assert_eq!(names::check_topic(bad).unwrap_err().kind(), ErrorKind::InvalidName, "{bad:?}");
/// }
/// ```
pub fn check_topic(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name.split('.').all(|segment| !segment.is_empty())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "{name:?} is not a valid topic name: use 1 to 249 ASCII letters, digits, '.', '_' or '-', with '.' \
                 only between non-empty segments"
            ),
        )
        .with_topic(name))
    }
}
