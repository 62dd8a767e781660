//! Transactions: writes that land together or not at all, and consumed positions
//! committed with them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tidewater_core::{handler_fn, Delivery, ErrorKind, HandlerError, Message, MessageId, ReadTask, StartFrom};

use crate::cases::{topic, GRACE};
use crate::support::{batch, fresh_topic, subscribe, write_each, Probe};
use crate::Fixture;

/// Case 23: A committed transaction's writes all arrive; an aborted one's and a dropped
/// one's never do. A handler that forwards each input in a transaction with the input's
/// position (consume-transform-produce) forwards each committed input once. A driver
/// without transactions says `Unsupported`, never anything else.
pub async fn transactions_land_whole_or_not_at_all(f: Arc<dyn Fixture>) {
    let caps = f.capabilities();
    let opened = f.transactions(&fresh_topic("txn-id")).await;
    if !caps.transactions {
        match opened {
            Err(err) => assert_eq!(err.kind(), ErrorKind::Unsupported, "a driver without transactions: {err}"),
            Ok(_) => panic!("the fixture declares no transactions, but the driver opened them"),
        }
        return;
    }
    let transactions = opened.unwrap_or_else(|err| panic!("opening transactions failed: {err}"));
    let input = topic(&*f, "txn-in").await;
    let output = topic(&*f, "txn-out").await;
    // One key: one partition, so what a reader gets after the last message written is
    // everything it will ever get.
    let phase = |name: &'static str, n: usize| {
        batch(&input, n, move |i, m| {
            let id = format!("{}-{name}-{i}", m.stream);
            m.with_id(id).with_key("one")
        })
    };

    let mut tx = transactions.begin().await.unwrap_or_else(|err| panic!("begin failed: {err}"));
    tx.write(phase("aborted", 3)).await.expect("write in a transaction");
    tx.abort().await.expect("abort");
    {
        let mut tx = transactions.begin().await.expect("begin after an abort");
        tx.write(phase("dropped", 3)).await.expect("write in a transaction");
    }
    let committed = phase("committed", 5);
    let mut want: HashSet<MessageId> = committed.iter().map(|m| m.id.clone()).collect();
    let mut tx = transactions.begin().await.expect("begin after a drop");
    tx.write(committed).await.expect("write in a transaction");
    tx.commit().await.unwrap_or_else(|err| panic!("commit failed: {err}"));
    let end = Message::new(&input, "end").with_id(format!("{input}-end")).with_key("one");
    want.insert(end.id.clone());
    write_each(&*f.writer().await, vec![end.clone()]).await;

    let seen: Arc<Mutex<Vec<MessageId>>> = Arc::default();
    let forward = {
        let (transactions, output, seen) = (Arc::clone(&transactions), output.clone(), Arc::clone(&seen));
        handler_fn(move |delivery: Delivery| {
            let (transactions, output, seen) = (Arc::clone(&transactions), output.clone(), Arc::clone(&seen));
            async move {
                let id = delivery.message().id.clone();
                let mut tx = transactions.begin().await?;
                let copy = Message::new(&output, delivery.message().payload.clone()).with_id(format!("{id}-out"));
                tx.write_one(copy.with_key("one")).await?;
                tx.consumed(&delivery)?;
                tx.commit().await?;
                seen.lock().unwrap().push(id);
                Ok::<_, HandlerError>(())
            }
        })
    };
    let task = ReadTask::new(&input).with_group("forward").with_start(StartFrom::Earliest);
    let mut forwarder = subscribe(&*f, task, forward).await;
    let check = Probe::succeeding();
    let task = ReadTask::new(&output).with_group("check").with_start(StartFrom::Earliest);
    let mut checker = subscribe(&*f, task, check.clone()).await;
    let outputs: HashSet<MessageId> = want.iter().map(|id| MessageId::from(format!("{id}-out"))).collect();
    let state = check.wait_ids(caps.patience, &outputs).await;
    forwarder.shutdown(GRACE).await;
    checker.shutdown(GRACE).await;

    let forwarded = seen.lock().unwrap().clone();
    assert_eq!(
        forwarded.iter().cloned().collect::<HashSet<_>>(),
        want,
        "the forwarder got exactly the committed messages and the plain one after them"
    );
    assert_eq!(state.done_ids(), outputs, "the reader of the outputs got exactly the committed forwards");
    assert_eq!(state.duplicates(), 0, "no forward came twice");
}
