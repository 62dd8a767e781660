//! The inbox against a real PostgreSQL of the test's own: a message whose handler
//! committed but was delivered again changes the database once; a claim rolled back
//! leaves the message to its next delivery; two claims at once, one wins; groups keep
//! apart; old rows are forgotten.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tidewater_core::{handler_fn, Bus, Delivery, ErrorKind, EventRegistry, HandlerError, Message, Position};
use tidewater_memory::MemoryBroker;
use tidewater_outbox::Inbox;
use tidewater_testkit::PostgresServer;

const WAIT: Duration = Duration::from_secs(10);

/// A server of the test's own, a pool on it, the inbox table and a table of charges.
async fn setup() -> (PostgresServer, PgPool, Inbox) {
    let server = PostgresServer::start();
    let pool =
        PgPoolOptions::new().max_connections(8).connect(&server.url()).await.expect("connect to the test PostgreSQL");
    let inbox = Inbox::new();
    inbox.create_table(&pool).await.unwrap();
    sqlx::query("CREATE TABLE charges (order_id TEXT NOT NULL)").execute(&pool).await.unwrap();
    (server, pool, inbox)
}

async fn charges(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM charges").fetch_one(pool).await.unwrap()
}

fn delivery(id: &str, group: &str) -> Delivery {
    let message = Message::new("orders", "{}").with_id(id);
    Delivery::new(message, 1, Position::Queue { partition: None, sequence: None }, Some(Arc::from(group)))
}

/// What a handler does on its first call, before or after its commit.
#[derive(Clone, Copy)]
enum FirstCall {
    /// Commits, then fails as if the broker never got the acknowledgement.
    FailsAfterCommit,
    /// Fails before its commit: the transaction rolls back, the claim with it.
    FailsBeforeCommit,
}

/// Runs one message through a bus whose handler charges the order in the inbox's
/// transaction, failing its first call as `first` says; returns the handler's calls.
async fn charge_once(pool: &PgPool, inbox: &Inbox, first: FirstCall) -> u32 {
    let broker = MemoryBroker::new();
    let mut bus = Bus::new(&broker, EventRegistry::new());
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let (pool, inbox, calls) = (pool.clone(), inbox.clone(), Arc::clone(&calls));
        handler_fn(move |d: Delivery| {
            let (pool, inbox, calls) = (pool.clone(), inbox.clone(), Arc::clone(&calls));
            async move {
                let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
                let mut tx = pool.begin().await?;
                if !inbox.claim(&mut tx, &d).await? {
                    return Ok(());
                }
                sqlx::query("INSERT INTO charges VALUES ('o-1')").execute(&mut *tx).await?;
                match first {
                    FirstCall::FailsBeforeCommit if call == 1 => {
                        return Err(HandlerError::transient("the card gateway timed out"));
                    }
                    _ => tx.commit().await?,
                }
                match first {
                    FirstCall::FailsAfterCommit if call == 1 => {
                        Err(HandlerError::transient("the acknowledgement was lost"))
                    }
                    _ => Ok(()),
                }
            }
        })
    };
    bus.subscribe("orders", handler).group("billing").nack_delay(Some(Duration::from_millis(10)));
    bus.start().await.unwrap();
    bus.publisher().publish_message(Message::new("orders", "{}").with_id("m-1")).await.unwrap();
    broker.wait_acked("orders", "billing", 1, WAIT).await.unwrap();
    let report = bus.shutdown(WAIT).await.unwrap();
    assert_eq!((report.acked(), report.dead_lettered()), (1, 0), "{report:?}");
    calls.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_after_its_commit_changes_the_database_once() {
    let (_server, pool, inbox) = setup().await;
    let calls = charge_once(&pool, &inbox, FirstCall::FailsAfterCommit).await;
    assert_eq!(calls, 2, "delivered again after the first call failed");
    assert_eq!(charges(&pool).await, 1, "the second delivery found the message claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_rolled_back_leaves_the_message_to_its_next_delivery() {
    let (_server, pool, inbox) = setup().await;
    let calls = charge_once(&pool, &inbox, FirstCall::FailsBeforeCommit).await;
    assert_eq!(calls, 2);
    assert_eq!(charges(&pool).await, 1, "the second delivery claimed it and charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_claims_at_once_the_second_waits_for_the_first_transaction() {
    let (_server, pool, inbox) = setup().await;
    for commit in [true, false] {
        let id = if commit { "m-committed" } else { "m-rolled-back" };
        let mut first = pool.begin().await.unwrap();
        assert!(inbox.claim(&mut first, &delivery(id, "billing")).await.unwrap());
        let second = {
            let (pool, inbox) = (pool.clone(), inbox.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await.unwrap();
                let claimed = inbox.claim(&mut tx, &delivery(id, "billing")).await.unwrap();
                tx.commit().await.unwrap();
                claimed
            })
        };
        if commit {
            first.commit().await.unwrap();
        } else {
            first.rollback().await.unwrap();
        }
        let claimed = tokio::time::timeout(WAIT, second).await.expect("the second claim ends").unwrap();
        assert_eq!(claimed, !commit, "after the first {}", if commit { "committed" } else { "rolled back" });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_claim_apart_and_old_rows_are_forgotten() {
    let (_server, pool, inbox) = setup().await;
    let claim = |id: &'static str, group: &'static str| {
        let (pool, inbox) = (pool.clone(), inbox.clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            let claimed = inbox.claim(&mut tx, &delivery(id, group)).await.unwrap();
            tx.commit().await.unwrap();
            claimed
        }
    };
    assert!(claim("m-1", "billing").await);
    assert!(claim("m-1", "audit").await, "another group processes it too");
    assert!(!claim("m-1", "billing").await);
    assert_eq!(inbox.forget_older_than(&pool, Duration::from_secs(3600)).await.unwrap(), 0, "none is that old");
    assert_eq!(inbox.forget_older_than(&pool, Duration::ZERO).await.unwrap(), 2);
    assert!(claim("m-1", "billing").await, "forgotten, it is processed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_without_an_id_cannot_be_claimed() {
    let (_server, pool, inbox) = setup().await;
    let mut tx = pool.begin().await.unwrap();
    let err = inbox.claim(&mut tx, &delivery("", "billing")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("has no id"), "{err}");
    let table = Inbox::with_table("Inbox").unwrap_err();
    assert_eq!(table.kind(), ErrorKind::InvalidName);
    assert!(table.to_string().contains("inbox table \"Inbox\""), "{table}");
}
