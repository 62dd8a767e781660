//! The deduplication store's clock: milliseconds on the monotonic clock, read precisely
//! where an answer depends on it and coarsely where a commit only records it.
//!
//! A precise read took 33 ns on the 2-core VM the store was measured on, a coarse one 7;
//! the store reads the clock once a commit, and the precise read was about a tenth of
//! what deduplicating a message cost. A coarse read lags the precise clock by up to one
//! kernel tick (1 to 10 ms, by the kernel's timer frequency) and never runs ahead of it,
//! so an id stamped with it looks older than it is: it can be forgotten up to a tick
//! before its ttl, and is never answered as seen after it.

/// Milliseconds on the monotonic clock, to the millisecond.
pub(super) fn precise() -> u64 {
    imp::read(imp::PRECISE)
}

/// Milliseconds on the same clock as [`precise`], up to one kernel tick behind it.
pub(super) fn coarse() -> u64 {
    imp::read(imp::COARSE)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    pub(super) const PRECISE: libc::clockid_t = libc::CLOCK_MONOTONIC;
    /// The time of the kernel's last tick, on `CLOCK_MONOTONIC`'s scale: read from the
    /// vDSO without the timestamp counter.
    pub(super) const COARSE: libc::clockid_t = libc::CLOCK_MONOTONIC_COARSE;

    pub(super) fn read(clock: libc::clockid_t) -> u64 {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `now` is a valid, writable timespec, and both clocks exist on every
        // Linux since 2.6.32; for a clock that did not, the call would fail and leave
        // `now` at zero, which makes every id look old: forgotten, never wrongly seen.
        unsafe { libc::clock_gettime(clock, &mut now) };
        (now.tv_sec as u64).saturating_mul(1000) + now.tv_nsec as u64 / 1_000_000
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::sync::OnceLock;
    use std::time::Instant;

    /// Elsewhere both reads are precise: std's clock is all there is.
    pub(super) const PRECISE: () = ();
    pub(super) const COARSE: () = ();

    pub(super) fn read((): ()) -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coarse_read_is_at_most_a_tick_behind_a_precise_one() {
        for _ in 0..10_000 {
            let before = precise();
            let coarse = coarse();
            let after = precise();
            // Reads in this order hold however long the thread is held up between them:
            // the coarse read is never ahead of a precise read made after it, and at most
            // a tick (10 ms at the slowest kernel timer, and 1 for the rounding to
            // milliseconds) behind one made before it.
            assert!(coarse <= after, "coarse {coarse} ahead of precise {after}");
            assert!(coarse + 11 >= before, "coarse {coarse} more than a tick behind {before}");
        }
    }
}
