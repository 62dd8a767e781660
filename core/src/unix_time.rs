//! Times as Unix milliseconds, the unit of UUIDv7 ids and of brokers' timestamp fields.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ONE: Duration = Duration::from_millis(1);

thread_local! {
    /// The millisecond this thread converted last: where it starts, where the next one
    /// starts, and its number. Empty until the first conversion.
    static LAST: Cell<(SystemTime, SystemTime, u64)> = const { Cell::new((UNIX_EPOCH, UNIX_EPOCH, 0)) };
}

/// `time` in whole milliseconds since the Unix epoch, or 0 for a time before it.
///
/// Every message sent reads its time this way, for its UUIDv7 id and for a timestamp
/// header or field, and `duration_since` costs about 56 instructions, most of them
/// carrying nanoseconds between fields. A thread's messages mostly fall in the
/// millisecond it converted last, which two comparisons recognise.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tidewater_core::unix_time::millis;
///
/// assert_eq!(millis(UNIX_EPOCH + Duration::from_micros(1_796_208_746_005_999)), 1_796_208_746_005);
/// assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
/// ```
#[inline]
pub fn millis(time: SystemTime) -> u64 {
    match LAST.try_with(Cell::get) {
        Ok((start, end, millis)) if start <= time && time < end => millis,
        _ => convert_and_keep(time),
    }
}

/// The conversion, and its millisecond kept for the next: once a millisecond a thread,
/// so kept out of line, where its registers and calls do not weigh on the check.
#[cold]
#[inline(never)]
fn convert_and_keep(time: SystemTime) -> u64 {
    let millis = convert(time);
    if let Some((start, end)) = bounds(millis).filter(|(start, end)| *start <= time && time < *end) {
        // Gone only while the thread exits, when there is nothing to keep it for.
        let _ = LAST.try_with(|last| last.set((start, end, millis)));
    }
    millis
}

fn convert(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where millisecond `millis` starts and where the next one does, if a `SystemTime` can
/// hold both.
fn bounds(millis: u64) -> Option<(SystemTime, SystemTime)> {
    let start = UNIX_EPOCH.checked_add(Duration::from_millis(millis))?;
    Some((start, start.checked_add(ONE)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instant_of_a_millisecond_and_its_edges_convert_as_duration_since() {
        let base = UNIX_EPOCH + Duration::from_millis(1_796_208_746_005);
        let offsets = [0, 1, 999_999, 1_000_000, 1_000_001, 2_500_000];
        // Forwards, backwards and jumping about, so that each answer may come from the
        // kept millisecond or from a new conversion.
        let times: Vec<SystemTime> = offsets
            .iter()
            .chain(offsets.iter().rev())
            .map(|nanos| base + Duration::from_nanos(*nanos))
            .chain([base - Duration::from_nanos(1), base, UNIX_EPOCH, base + Duration::from_secs(3600), base])
            .collect();
        for time in times {
            assert_eq!(millis(time), convert(time), "{time:?}");
        }
    }

    #[test]
    fn times_before_the_epoch_are_zero_even_after_its_first_millisecond_was_kept() {
        assert_eq!(millis(UNIX_EPOCH + Duration::from_micros(500)), 0);
        assert_eq!(millis(UNIX_EPOCH - Duration::from_micros(500)), 0);
        assert_eq!(millis(UNIX_EPOCH - Duration::from_secs(86_400)), 0);
        assert_eq!(millis(UNIX_EPOCH + Duration::from_micros(1_500)), 1);
    }

    #[test]
    fn the_clock_converts_as_duration_since_on_each_thread() {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..20_000 {
                        let now = SystemTime::now();
                        assert_eq!(millis(now), convert(now));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
    }
}
