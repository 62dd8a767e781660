//! The in-process deduplication stores, through the `DeduplicationStorage` trait.

use std::time::Duration;

use tidewater_middleware::{DedupKey, DeduplicationStorage, InMemoryDedupStorage, MokaDedupStorage};

fn id(i: usize) -> String {
    format!("order-{i}")
}

async fn remembered(store: &dyn DeduplicationStorage, ids: std::ops::Range<usize>) -> usize {
    let mut n = 0;
    for i in ids {
        n += usize::from(store.is_duplicate(&DedupKey { group: "billing", id: &id(i) }).await.unwrap());
    }
    n
}

/// Ten times the capacity goes through the store. A broker redelivers recent messages,
/// so the newest ids must be the ones remembered, at least half the capacity and no
/// more than all of it.
async fn full_store_remembers_the_newest_ids(store: &dyn DeduplicationStorage, settle: impl Fn()) {
    const CAPACITY: usize = 1000;
    for i in 0..10 * CAPACITY {
        store.commit(&DedupKey { group: "billing", id: &id(i) }).await.unwrap();
    }
    settle();
    // A fifth of the capacity: the in-memory store's 16 shards each always keep their
    // newest half, and hash spreads a fifth of the capacity well within that.
    let newest = 10 * CAPACITY - CAPACITY / 5..10 * CAPACITY;
    assert_eq!(remembered(store, newest.clone()).await, newest.len(), "every one of the newest ids");
    let all = remembered(store, 0..10 * CAPACITY).await;
    assert!(all <= CAPACITY, "{all} ids remembered by a store of {CAPACITY}");
    assert!(all >= CAPACITY / 2, "only {all} ids remembered by a store of {CAPACITY}");
}

#[tokio::test]
async fn in_memory_store_remembers_the_newest_ids() {
    let store = InMemoryDedupStorage::new(1000, Duration::from_secs(3600));
    full_store_remembers_the_newest_ids(&store, || {}).await;
}

#[tokio::test]
async fn moka_store_remembers_the_newest_ids() {
    let store = MokaDedupStorage::new(1000, Duration::from_secs(3600));
    full_store_remembers_the_newest_ids(&store, || store.run_pending_tasks()).await;
}

#[tokio::test]
async fn keys_differ_by_group_and_by_id() {
    let stores: [Box<dyn DeduplicationStorage>; 2] =
        [Box::new(InMemoryDedupStorage::default()), Box::new(MokaDedupStorage::default())];
    for store in stores {
        let k = DedupKey { group: "billing", id: "a" };
        assert!(!store.is_duplicate(&k).await.unwrap());
        store.commit(&k).await.unwrap();
        assert!(store.is_duplicate(&k).await.unwrap());
        assert!(!store.is_duplicate(&DedupKey { group: "shipping", id: "a" }).await.unwrap());
        assert!(!store.is_duplicate(&DedupKey { group: "billing", id: "b" }).await.unwrap());
        // Fingerprints hash the two strings as fields, not concatenated.
        assert!(!store.is_duplicate(&DedupKey { group: "billin", id: "ga" }).await.unwrap());
    }
}
