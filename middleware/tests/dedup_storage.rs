//! The in-process deduplication stores, through the `DeduplicationStorage` trait.

use std::time::Duration;

use tidewater_middleware::{DedupKey, DeduplicationStorage, InMemoryDedupStorage, MokaDedupStorage};

fn key(i: usize) -> DedupKey {
    DedupKey { group: "billing".into(), id: format!("order-{i}") }
}

async fn remembered(store: &dyn DeduplicationStorage, ids: std::ops::Range<usize>) -> usize {
    let mut n = 0;
    for i in ids {
        n += usize::from(store.is_duplicate(&key(i)).await.unwrap());
    }
    n
}

/// Ten times the capacity goes through the store. A broker redelivers recent messages,
/// so the newest ids must be the ones remembered, and no more than the capacity.
async fn full_store_remembers_the_newest_ids(store: &dyn DeduplicationStorage, settle: impl Fn()) {
    const CAPACITY: usize = 1000;
    for i in 0..10 * CAPACITY {
        store.commit(&key(i)).await.unwrap();
    }
    settle();
    // Half the capacity, so the in-memory store's shards (a 16th of it each) hold their
    // share of the newest ids with room to spare.
    let newest = 10 * CAPACITY - CAPACITY / 2..10 * CAPACITY;
    assert_eq!(remembered(store, newest.clone()).await, newest.len(), "every one of the newest ids");
    let all = remembered(store, 0..10 * CAPACITY).await;
    assert!(all <= CAPACITY, "{all} ids remembered by a store of {CAPACITY}");
    assert!(all >= CAPACITY * 9 / 10, "only {all} ids remembered by a store of {CAPACITY}");
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
        let k = DedupKey { group: "billing".into(), id: "a".into() };
        assert!(!store.is_duplicate(&k).await.unwrap());
        store.commit(&k).await.unwrap();
        assert!(store.is_duplicate(&k).await.unwrap());
        assert!(!store.is_duplicate(&DedupKey { group: "shipping".into(), id: "a".into() }).await.unwrap());
        assert!(!store.is_duplicate(&DedupKey { group: "billing".into(), id: "b".into() }).await.unwrap());
        // Fingerprints hash the two strings as fields, not concatenated.
        assert!(!store.is_duplicate(&DedupKey { group: "billin".into(), id: "ga".into() }).await.unwrap());
    }
}
