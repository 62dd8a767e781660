//! The allocations of finished deliveries, kept by each thread for the next ones it makes.
//!
//! A driver makes a batch of deliveries at once and the runner drops them one by one as
//! their handlers return: dozens of allocations of one size, then as many frees. glibc
//! keeps only seven freed blocks of a size per thread at hand, so most of a batch's
//! allocations and frees took its slow path, through the shared lists (about 360
//! instructions an allocation and 250 a free, by callgrind on the core NATS reader,
//! against about 50 each on the fast path). A thread's own stack of spare blocks keeps
//! most of them out of the allocator: the last handle of a delivery drops its value in
//! place and keeps the block, and the thread's next delivery is made in it.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Inner;

/// Spare blocks a thread keeps: half a default batch (a task prefetches 256), and about
/// 42 KiB at most (336 bytes a block); as many as a whole batch measured no better.
const KEPT: usize = 128;

/// Spare blocks moved between a thread's stack and the shared one at once: one lock
/// for this many deliveries.
const HANDFUL: usize = KEPT / 2;

/// The most spare blocks the shared stack holds: eight handfuls, about 170 KiB.
const SHARED_MOST: usize = 8 * HANDFUL;

type Spare = Arc<MaybeUninit<Inner>>;

thread_local! {
    static SPARES: RefCell<Vec<Spare>> = const { RefCell::new(Vec::new()) };
}

/// Blocks that threads with a full stack handed over, for threads with none.
///
/// Where a reader makes its deliveries on one thread and its handlers finish them on
/// another (the runner's lanes, a runtime that moves tasks between its workers), one
/// thread's stack stays full and frees what comes after, while the other's stays empty
/// and allocates: half an allocation a message in the peer bench's row with four lanes.
static SHARED: Shared = Shared::new();

/// `inner` in a shared allocation: a spare one of this thread's if it has one.
#[inline]
pub(super) fn share(inner: Inner) -> Arc<Inner> {
    let spare = SPARES.try_with(|spares| pop(&mut *spares.try_borrow_mut().ok()?, &SHARED)).ok().flatten();
    match spare {
        Some(mut spare) => {
            // A spare was the only handle to its block when it was kept, and is since.
            Arc::get_mut(&mut spare).expect("a spare block has no other handle").write(inner);
            // SAFETY: just written.
            unsafe { spare.assume_init() }
        }
        None => Arc::new(inner),
    }
}

/// Drops a handle to a delivery; the last one's block is kept as a spare, if this thread
/// has room for it, rather than freed.
#[inline]
pub(super) fn release(mut shared: Arc<Inner>) {
    // Most handles but the last see another and only count down; the load spares them
    // `get_mut`'s two atomic writes.
    if Arc::strong_count(&shared) != 1 {
        return;
    }
    let Some(value) = Arc::get_mut(&mut shared).map(std::ptr::from_mut) else { return };
    // SAFETY: `get_mut` showed this is the only handle. From here the block is a
    // `MaybeUninit` of the same size and alignment, which `Arc::from_raw` allows and
    // which drops nothing, so the value is dropped once, below, even if its drop panics.
    let spare = unsafe { Arc::from_raw(Arc::into_raw(shared).cast::<MaybeUninit<Inner>>()) };
    // SAFETY: the value is valid and nothing else can reach it. Dropped in place rather
    // than moved out first, which copied it whole. Its drop may release other deliveries
    // (an in-place retry holds its first): they come back here, and find the spares free.
    unsafe { std::ptr::drop_in_place(value) };
    let _ = SPARES.try_with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut() {
            push(&mut spares, &SHARED, spare);
        }
    });
}

/// A spare block from `spares`, refilled from `shared` when empty.
fn pop(spares: &mut Vec<Spare>, shared: &Shared) -> Option<Spare> {
    if spares.is_empty() {
        shared.take(spares);
    }
    spares.pop()
}

/// Keeps `spare` in `spares`, handing a handful of them to `shared` when full; freed
/// when both are.
fn push(spares: &mut Vec<Spare>, shared: &Shared, spare: Spare) {
    if spares.len() >= KEPT {
        shared.give(spares);
    }
    if spares.len() < KEPT {
        if spares.capacity() == 0 {
            spares.reserve_exact(KEPT);
        }
        spares.push(spare);
    }
}

/// The spare blocks threads hand each other.
struct Shared {
    blocks: Mutex<Vec<Spare>>,
    /// How many `blocks` holds, read without the lock, so that a thread finding it
    /// empty allocates without taking the lock.
    len: AtomicUsize,
}

impl Shared {
    const fn new() -> Self {
        Self { blocks: Mutex::new(Vec::new()), len: AtomicUsize::new(0) }
    }

    /// Moves a handful of `spares` here, if there is room.
    #[cold]
    fn give(&self, spares: &mut Vec<Spare>) {
        if self.len.load(Ordering::Relaxed) + HANDFUL > SHARED_MOST {
            return;
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        if blocks.len() + HANDFUL <= SHARED_MOST {
            if blocks.capacity() == 0 {
                blocks.reserve_exact(SHARED_MOST);
            }
            blocks.extend(spares.drain(spares.len().saturating_sub(HANDFUL)..));
            self.len.store(blocks.len(), Ordering::Relaxed);
        }
    }

    /// Moves up to a handful from here to `spares`.
    #[cold]
    fn take(&self, spares: &mut Vec<Spare>) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let from = blocks.len().saturating_sub(HANDFUL);
        if spares.capacity() == 0 {
            spares.reserve_exact(KEPT);
        }
        spares.extend(blocks.drain(from..));
        self.len.store(blocks.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{Delivery, Message, Position};

    const QUEUE: Position = Position::Queue { partition: None, sequence: None };

    fn block(delivery: &Delivery) -> *const super::Inner {
        Arc::as_ptr(&delivery.0)
    }

    fn on_fresh_thread(test: impl FnOnce() + Send + 'static) {
        std::thread::spawn(test).join().unwrap();
    }

    #[test]
    fn a_finished_deliverys_block_serves_the_next_one_and_its_message_is_dropped_at_once() {
        on_fresh_thread(|| {
            let message = Arc::new(Message::new("orders", "{}"));
            let first = Delivery::new(Arc::clone(&message), 1, QUEUE, None);
            let at = block(&first);
            let copy = first.clone();
            drop(first);
            assert_eq!(Arc::strong_count(&message), 2, "a clone still holds the delivery");
            assert_eq!(copy.message().payload, "{}");
            drop(copy);
            assert_eq!(Arc::strong_count(&message), 1, "the last handle dropped the message");
            let next = Delivery::new(Message::new("orders", "[]"), 2, QUEUE, None);
            assert_eq!(block(&next), at, "the block was not reused");
            assert_eq!((next.attempt(), &next.message().payload[..]), (2, &b"[]"[..]));
        });
    }

    #[test]
    fn a_chain_of_retries_is_released_whole_in_any_order() {
        on_fresh_thread(|| {
            let message = Arc::new(Message::new("orders", "{}"));
            let first = Delivery::new(Arc::clone(&message), 1, QUEUE, None);
            let third = first.retried().retried();
            drop(first);
            assert_eq!((third.attempt(), third.retries()), (3, 2));
            assert_eq!(third.message().payload, "{}");
            // The third holds the first, which the second held too: dropping the third
            // releases the first from inside a release.
            drop(third);
            assert_eq!(Arc::strong_count(&message), 1);
            let made: Vec<Delivery> =
                (0..4).map(|i| Delivery::new(Message::new("t", "p"), i + 1, QUEUE, None)).collect();
            assert!(made.iter().enumerate().all(|(i, d)| d.attempt() == i as u32 + 1));
        });
    }

    #[test]
    fn a_thread_keeps_a_bounded_number_of_blocks_and_deliveries_cross_threads() {
        on_fresh_thread(|| {
            let made: Vec<Delivery> =
                (0..super::KEPT + 50).map(|_| Delivery::new(Message::new("t", "p"), 1, QUEUE, None)).collect();
            drop(made);
            let kept = super::SPARES.with(|s| s.borrow().len());
            assert!((super::KEPT - super::HANDFUL..=super::KEPT).contains(&kept), "{kept}");
            let elsewhere =
                std::thread::spawn(|| Delivery::new(Message::new("t", "q"), 1, QUEUE, None)).join().unwrap();
            assert_eq!(elsewhere.message().payload, "q");
            drop(elsewhere);
            assert!(super::SPARES.with(|s| s.borrow().len()) <= super::KEPT);
        });
    }

    fn spare() -> super::Spare {
        Arc::new(std::mem::MaybeUninit::uninit())
    }

    #[test]
    fn a_full_stack_hands_a_handful_to_an_empty_one_and_the_rest_is_freed() {
        use super::{pop, push, Shared, HANDFUL, KEPT, SHARED_MOST};
        let shared = Shared::new();
        let (mut full, mut empty) = (Vec::new(), Vec::new());
        let blocks: Vec<_> = (0..KEPT + 1).map(|_| spare()).collect();
        let at: Vec<_> = blocks.iter().map(Arc::as_ptr).collect();
        for block in blocks {
            push(&mut full, &shared, block);
        }
        assert_eq!(full.len(), KEPT - HANDFUL + 1);
        assert_eq!(shared.len.load(std::sync::atomic::Ordering::Relaxed), HANDFUL);

        let taken = pop(&mut empty, &shared).expect("a block handed over");
        assert!(at.contains(&Arc::as_ptr(&taken)), "not one of those kept");
        assert_eq!(empty.len(), HANDFUL - 1);
        assert_eq!(shared.len.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert!(pop(&mut Vec::new(), &shared).is_none(), "nothing left to hand over");

        // Past both bounds, blocks are freed: only the thread's and the shared ones live.
        let many: Vec<_> = (0..KEPT + SHARED_MOST + 100).map(|_| spare()).collect();
        let alive: Vec<_> = many.iter().map(Arc::downgrade).collect();
        let mut stack = Vec::new();
        for block in many {
            push(&mut stack, &shared, block);
        }
        assert_eq!(stack.len(), KEPT);
        assert_eq!(shared.len.load(std::sync::atomic::Ordering::Relaxed), SHARED_MOST);
        assert_eq!(alive.iter().filter(|w| w.strong_count() > 0).count(), KEPT + SHARED_MOST);
    }

    #[test]
    fn a_value_whose_drop_panics_is_dropped_once_and_its_block_freed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DROPS: AtomicUsize = AtomicUsize::new(0);
        struct Loud;
        impl Drop for Loud {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::SeqCst);
                panic!("dropped");
            }
        }
        on_fresh_thread(|| {
            let origin: Arc<dyn std::any::Any + Send + Sync> = Arc::new(Loud);
            let delivery = Delivery::with_origin(Message::new("t", "p"), 1, QUEUE, None, origin);
            // Making it may have taken a handful from the shared stack.
            let kept = || super::SPARES.with(|s| s.borrow().len());
            let before = kept();
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(delivery)));
            assert!(dropped.is_err());
            assert_eq!(DROPS.load(Ordering::SeqCst), 1);
            assert_eq!(kept(), before, "a block whose value panicked is not kept");
            let next = Delivery::new(Message::new("t", "q"), 1, QUEUE, None);
            let during = kept();
            drop(next);
            assert_eq!(kept(), during + 1);
            assert_eq!(DROPS.load(Ordering::SeqCst), 1);
        });
    }
}
