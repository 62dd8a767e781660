//! Name rules shared by drivers.

use crate::{Error, ErrorKind, Result};

/// Checks a topic name against Kafka's rules, the strictest of the brokers tidewater
/// supports: 1 to 249 characters of ASCII letters, digits, `.`, `_` and `-`, and not `.`
/// or `..`. The memory driver applies them too, so a service tested in memory does not
/// fail on a real broker.
///
/// ```
/// use tidewater_core::{names, ErrorKind};
///
/// assert!(names::check_topic("orders.eu-1").is_ok());
/// assert_eq!(names::check_topic("orders/eu").unwrap_err().kind(), ErrorKind::InvalidName);
/// ```
pub fn check_topic(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidName,
            format!(
                "{name:?} is not a valid topic name: use 1 to 249 ASCII letters, digits, '.', '_' or '-' \
                 (and not '.' or '..')"
            ),
        )
        .with_topic(name))
    }
}
