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
    if is_valid_topic(name.as_bytes()) {
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

/// The rule of [`check_topic`] in one pass over the bytes: the memory driver checks every
/// message's topic, and splitting at dots first searched the name for them once more (a
/// fifth of the check's instructions, counted by callgrind on the peer bench).
fn is_valid_topic(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 249 {
        return false;
    }
    let mut segment_empty = true;
    for &b in name {
        if b == b'.' {
            if segment_empty {
                return false;
            }
            segment_empty = true;
        } else if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            segment_empty = false;
        } else {
            return false;
        }
    }
    !segment_empty
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as the docs state it, segment by segment.
    fn by_segments(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 249
            && name.split('.').all(|segment| !segment.is_empty())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    #[test]
    fn the_one_pass_check_agrees_with_the_rule_on_every_short_name() {
        let alphabet = ["a", "7", ".", "_", "-", "/", "é"];
        let mut names = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> =
                names.iter().flat_map(|n| alphabet.iter().map(move |c| format!("{n}{c}"))).collect();
            for name in &longer {
                assert_eq!(check_topic(name).is_ok(), by_segments(name), "{name:?}");
            }
            names = longer;
        }
        for len in [248, 249, 250] {
            let name = "a".repeat(len);
            assert_eq!(check_topic(&name).is_ok(), by_segments(&name), "{len} letters");
        }
    }
}
