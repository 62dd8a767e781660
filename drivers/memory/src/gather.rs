//! A reader's short pause before its next fetch while messages stream in.
//!
//! A reader faster than its publishers finds one or two messages a fetch, handles them,
//! finds the partitions empty and parks its task; the next publish then wakes it through
//! the runtime, a system call on the publisher's thread and a thread switch on the
//! reader's. Each fetch also takes the topic lock the publishers need, and the lock's
//! cache lines move between the two cores every time. Waiting a few microseconds after
//! a small fetch lets publishers add a batch meanwhile, which the next fetch takes at
//! once: the peer bench's counting row went from a median of 1,322k to 1,741k msg/s with
//! it (eight runs each, by turns), and context switches from thousands a run to about a
//! hundred (`BENCHMARKS.md`, session 23).
//!
//! The wait spins, as a task cannot sleep for microseconds: timers tick by the
//! millisecond. So it is kept for when it pays: only on a runtime with more than one
//! worker thread and a machine with more than one core (on one thread the spin would
//! hold up the very publisher it waits for); only after two fetches in a row found
//! messages, so a reader of a trickle, which finds one and then none, never spins; and
//! after a pause that brought too little, not again for a millisecond.

use std::time::{Duration, Instant};

/// How long a reader waits before fetching again after a small fetch: at the peer
/// bench's publish rate (about 1.8M msg/s), time for two dozen messages. 8 µs (a dozen)
/// was measured best in session 23; on the machines CI has run on since, the counting
/// row ran at 1.60-1.73M msg/s with it and 1.76-1.93M with 16 µs (12 and 24 µs: no
/// better than 16), paired runs by turns (`BENCHMARKS.md`, session 45). Spin hints take
/// 10-25 ns each depending on the processor, so the wait is timed, not counted.
const PAUSE: Duration = Duration::from_micros(16);

/// A fetch that found fewer messages than this (and not none) asks for a pause.
const FEW: usize = 16;

/// A pause that brought fewer messages than this did not pay.
const WORTH_IT: usize = 4;

/// How long a reader does not pause after a pause that did not pay.
const COOL_DOWN: Duration = Duration::from_millis(1);

/// One reader's pacing of its fetches.
#[derive(Debug, Default)]
pub(crate) struct Gather {
    /// Whether the next fetch waits first.
    pause_next: bool,
    /// Whether the current fetch waited.
    paused: bool,
    /// What the last fetch found.
    last_found: usize,
    /// No pause before this, after one that did not pay.
    quiet_until: Option<Instant>,
    /// Whether the runtime has threads to spare; read at the first small fetch.
    allowed: Option<bool>,
}

impl Gather {
    /// Before a fetch: waits if the last fetch found only a few messages.
    pub(crate) fn before_fetch(&mut self) {
        self.paused = std::mem::take(&mut self.pause_next);
        if self.paused {
            // The standard clock, not tokio's: a test may have paused tokio's.
            let until = Instant::now() + PAUSE;
            while Instant::now() < until {
                for _ in 0..8 {
                    std::hint::spin_loop();
                }
            }
        }
    }

    /// After a fetch that found `found` messages, of at most `max`.
    pub(crate) fn after_fetch(&mut self, found: usize, max: usize) {
        let streaming = std::mem::replace(&mut self.last_found, found) > 0;
        if self.paused && found < WORTH_IT {
            self.quiet_until = Some(Instant::now() + COOL_DOWN);
            return;
        }
        // Two fetches in a row found something: messages are streaming in. A reader of a
        // trickle finds one, then none, and parks; it never pauses.
        let few = streaming && found > 0 && found < max.min(FEW);
        self.pause_next = few
            && self.quiet_until.is_none_or(|t| Instant::now() >= t)
            && *self.allowed.get_or_insert_with(spare_threads);
    }
}

/// Whether the current runtime has more than one worker thread, on more than one core.
fn spare_threads() -> bool {
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    workers > 1 && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Gather {
        Gather { allowed: Some(true), ..Gather::default() }
    }

    /// A reader that has just found `found` messages.
    fn streaming(found: usize) -> Gather {
        let mut gather = allowed();
        gather.after_fetch(found, 256);
        gather
    }

    #[test]
    fn a_second_small_fetch_in_a_row_asks_for_a_pause() {
        let mut gather = allowed();
        gather.after_fetch(3, 256);
        assert!(!gather.pause_next, "the first of a trickle");
        gather.after_fetch(2, 256);
        assert!(gather.pause_next);
        for (found, max) in [(0, 256), (256, 256), (16, 256), (3, 3)] {
            let mut gather = streaming(1);
            gather.after_fetch(found, max);
            assert!(!gather.pause_next, "{found} of {max}");
        }
    }

    #[test]
    fn a_trickle_never_pauses() {
        let mut gather = allowed();
        for _ in 0..10 {
            gather.after_fetch(1, 256);
            assert!(!gather.pause_next);
            gather.after_fetch(0, 256);
        }
    }

    #[test]
    fn a_pause_that_brought_too_little_stops_pausing_for_a_while() {
        let mut gather = streaming(1);
        gather.after_fetch(2, 256);
        let started = Instant::now();
        gather.before_fetch();
        assert!(started.elapsed() >= PAUSE);
        gather.after_fetch(1, 256);
        assert!(!gather.pause_next);
        gather.before_fetch();
        gather.after_fetch(2, 256);
        assert!(!gather.pause_next, "no pause within the cool-down");
    }

    #[test]
    fn a_pause_that_paid_is_kept_up() {
        let mut gather = streaming(1);
        gather.after_fetch(2, 256);
        gather.before_fetch();
        gather.after_fetch(12, 256);
        assert!(gather.pause_next);
    }

    #[test]
    fn a_reader_on_one_thread_never_pauses() {
        let one_worker = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for runtime in [one_worker, current] {
            let mut gather = Gather::default();
            runtime.block_on(async {
                gather.after_fetch(2, 256);
                gather.after_fetch(2, 256);
            });
            assert!(!gather.pause_next);
        }
    }

    #[test]
    fn a_reader_on_two_workers_pauses() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        let mut gather = Gather::default();
        runtime.block_on(async {
            gather.after_fetch(2, 256);
            gather.after_fetch(2, 256);
        });
        assert_eq!(gather.pause_next, std::thread::available_parallelism().unwrap().get() > 1);
    }
}
