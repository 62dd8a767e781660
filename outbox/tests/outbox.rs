//! The outbox against a real PostgreSQL of the test's own (Debian's server, started by
//! the test kit in a temporary directory): a rolled-back transaction publishes nothing;
//! a relay stopped dead mid-run loses nothing (its duplicates are counted); two relays at
//! once never reorder a key; a row the broker refuses is set aside and the rest flows; a
//! relay that cannot write waits longer each time; one stopped leaves no duplicates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tidewater_core::{Driver, Message, Writer};
use tidewater_memory::{MemoryBroker, MemoryConfig};
use tidewater_outbox::{Outbox, Relay};
use tidewater_testkit::PostgresServer;

/// A server of the test's own, a pool on it, and the outbox table made.
async fn setup() -> (PostgresServer, PgPool, Outbox) {
    let server = PostgresServer::start();
    let pool =
        PgPoolOptions::new().max_connections(8).connect(&server.url()).await.expect("connect to the test PostgreSQL");
    let outbox = Outbox::new();
    outbox.create_table(&pool).await.unwrap();
    (server, pool, outbox)
}

/// Stores `n` messages over `keys` keys in one committed transaction; message `i` has
/// id `m{i}` and key `k{i % keys}`.
async fn store(pool: &PgPool, outbox: &Outbox, n: usize, keys: usize) {
    let mut tx = pool.begin().await.unwrap();
    for i in 0..n {
        let message =
            Message::new("orders", format!("{i}")).with_id(format!("m{i}")).with_key(format!("k{}", i % keys));
        outbox.store(&mut tx, &message).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Everything on `orders` so far, in the order it was written.
fn written(broker: &MemoryBroker) -> Vec<Message> {
    broker.published("orders")
}

async fn remaining(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tidewater_outbox").fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_transaction_publishes_nothing() {
    let (_server, pool, outbox) = setup().await;
    sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY)").execute(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES ('o-1')").execute(&mut *tx).await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "o-1").with_id("rolled-back")).await.unwrap();
    tx.rollback().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders VALUES ('o-2')").execute(&mut *tx).await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "o-2").with_id("committed")).await.unwrap();
    tx.commit().await.unwrap();

    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer());
    while relay.relay_once().await.unwrap().rows() > 0 {}
    let ids: Vec<tidewater_core::MessageId> = written(&broker).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["committed"], "only what was committed is relayed");
    assert_eq!(remaining(&pool).await, 0, "and deleted once relayed");
}

/// A writer slow enough that a relay can be stopped in the middle of a run.
struct Slow(Arc<dyn Writer>);

#[async_trait::async_trait]
impl Writer for Slow {
    fn driver(&self) -> &'static str {
        self.0.driver()
    }

    async fn write(&self, batch: Vec<Message>) -> tidewater_core::Result<()> {
        self.0.write(batch).await?;
        // After the broker took the batch and before the relay deletes it: where a
        // relay that dies leaves duplicates behind.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(())
    }
}

/// Rows that `relay_a_quarter` stores.
const STORED: usize = 2000;

/// [`STORED`] rows stored over 10 keys, and a relay of them through a slow writer that
/// runs until `stop`, spawned; returns once a quarter of them reached the broker.
async fn relay_a_quarter<S>(pool: &PgPool, outbox: &Outbox, broker: &MemoryBroker, stop: S) -> RelayTask
where
    S: std::future::Future<Output = ()> + Send + 'static,
{
    const N: usize = STORED;
    store(pool, outbox, N, 10).await;
    let relay = Relay::new(pool.clone(), Arc::new(Slow(broker.writer()))).batch(50);
    let task = tokio::spawn(async move { relay.run_until(stop).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while written(broker).len() < N / 4 {
        assert!(tokio::time::Instant::now() < deadline, "the first relay forwards");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task
}

type RelayTask = tokio::task::JoinHandle<tidewater_core::Result<tidewater_outbox::RelayReport>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_dead_loses_nothing() {
    const N: usize = STORED;
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::new();
    // The task is aborted mid-run, as a process killed would stop: its open
    // transaction goes with its connection.
    let first = relay_a_quarter(&pool, &outbox, &broker, std::future::pending()).await;
    first.abort();
    let _ = first.await;
    let left = remaining(&pool).await;
    assert!(left > 0, "stopped before the end (else the test proves nothing)");

    let second = Relay::new(pool.clone(), broker.writer());
    while second.relay_once().await.unwrap().rows() > 0 {}
    assert_eq!(remaining(&pool).await, 0);
    let all = written(&broker);
    let distinct: HashSet<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(distinct.len(), N, "every stored message was relayed");
    println!("relay stopped with {left} rows left: {} messages written, {} duplicates", all.len(), all.len() - N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_never_reorder_a_key() {
    const N: usize = 3000;
    let (_server, pool, outbox) = setup().await;
    store(&pool, &outbox, N, 20).await;
    let broker = MemoryBroker::new();

    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = Relay::new(pool.clone(), broker.writer()).batch(25);
            tokio::spawn(async move {
                let mut forwarded = 0;
                loop {
                    match relay.relay_once().await.unwrap().forwarded {
                        0 => break forwarded,
                        n => forwarded += n,
                    }
                }
            })
        })
        .collect();
    let mut shares = Vec::new();
    for relay in relays {
        shares.push(relay.await.unwrap());
    }
    // A relay can find every bucket taken in a pass and stop early: finish the rest.
    let last = Relay::new(pool.clone(), broker.writer());
    while last.relay_once().await.unwrap().rows() > 0 {}
    assert_eq!(remaining(&pool).await, 0);

    let mut by_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for m in written(&broker) {
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        by_key.entry(m.key.clone().unwrap().to_vec()).or_default().push(i);
    }
    assert_eq!(by_key.values().map(Vec::len).sum::<usize>(), N, "each once");
    for (key, order) in &by_key {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key {key:?} in order: {order:?}");
    }
    println!("two relays forwarded {shares:?} messages side by side");
    assert!(shares.iter().all(|&n| n > 0), "both relays worked: {shares:?}");
}

/// Relays until a pass takes no row; what the passes did together.
async fn drain(relay: &Relay) -> tidewater_outbox::RelayReport {
    let mut total = tidewater_outbox::RelayReport::default();
    loop {
        let pass = relay.relay_once().await.expect("a pass fails only when the writer cannot write");
        if pass.rows() == 0 {
            return total;
        }
        total.forwarded += pass.forwarded;
        total.refused += pass.refused;
    }
}

fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

/// Before, the first row the broker refused failed every pass at its bucket: that
/// bucket's keys, and every bucket after it, never moved again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_broker_refuses_is_set_aside_and_the_rest_flow() {
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::with_config(MemoryConfig::default().max_message_bytes(2048).auto_create(false));
    broker.admin().create_topic("orders", 4).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    for i in 0..60 {
        let message = Message::new("orders", format!("{i}")).with_id(format!("m{i}")).with_key(format!("k{}", i % 6));
        outbox.store(&mut tx, &message).await.unwrap();
        let poison = match i {
            10 => Message::new("orders", vec![b'x'; 4096]).with_id("too-big").with_key("k1"),
            20 => Message::new("nowhere", "0").with_id("no-topic").with_key("k2"),
            30 => Message::new("orders", "0").with_id("garbled").with_key("k3"),
            _ => continue,
        };
        outbox.store(&mut tx, &poison).await.unwrap();
    }
    tx.commit().await.unwrap();
    // Headers that a hand-made row or another program's left unreadable.
    sqlx::query("UPDATE tidewater_outbox SET headers = 'not json' WHERE id = 'garbled'").execute(&pool).await.unwrap();

    let relay = Relay::new(pool.clone(), broker.writer()).batch(8);
    let report = drain(&relay).await;
    assert_eq!((report.forwarded, report.refused), (60, 3));
    assert_eq!(remaining(&pool).await, 0);
    let written = written(&broker);
    let distinct: HashSet<&str> = ids(&written).into_iter().collect();
    assert_eq!((written.len(), distinct.len()), (60, 60), "every good row once: {:?}", ids(&written));
    let mut by_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for m in &written {
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        assert_eq!(m.id.as_str(), format!("m{i}"));
        by_key.entry(m.key.clone().unwrap().to_vec()).or_default().push(i);
    }
    for (key, order) in &by_key {
        assert!(order.windows(2).all(|w| w[0] < w[1]), "key {key:?} in order: {order:?}");
    }

    let refused = outbox.refused(&pool).await.unwrap();
    let refused_ids: Vec<&str> = refused.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(refused_ids, ["too-big", "no-topic", "garbled"], "in the order stored");
    assert!(
        refused[0].error.contains("too large") && refused[0].error.contains("the limit is 2048"),
        "{}",
        refused[0].error
    );
    assert!(refused[1].error.contains("unknown topic") && refused[1].topic == "nowhere", "{:?}", refused[1]);
    assert!(refused[2].error.contains("not a JSON object"), "{}", refused[2].error);
    assert!(refused.iter().all(|r| r.refused_at.elapsed().unwrap() < Duration::from_secs(60)));

    // The cause of one fixed: that one is put back and goes; the others stay aside.
    broker.admin().create_topic("nowhere", 1).await.unwrap();
    assert_eq!(outbox.requeue_refused(&pool, Some("nowhere")).await.unwrap(), 1);
    assert_eq!(drain(&relay).await.forwarded, 1);
    assert_eq!(ids(&broker.published("nowhere")), ["no-topic"]);
    // The rest put back are refused again, as before.
    assert_eq!(outbox.requeue_refused(&pool, None).await.unwrap(), 2);
    let again = drain(&relay).await;
    assert_eq!((again.forwarded, again.refused), (0, 2));
    let refused_ids: Vec<String> = outbox.refused(&pool).await.unwrap().into_iter().map(|r| r.id.to_string()).collect();
    assert_eq!(refused_ids, ["too-big", "garbled"]);
    assert_eq!(written.len(), 60, "nothing of them reached orders");
}

/// Before, a relay whose writer failed tried again every poll interval (100 ms), and
/// logged each, for as long as the broker was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_write_waits_longer_each_time() {
    let (_server, pool, outbox) = setup().await;
    store(&pool, &outbox, 10, 2).await;
    let writer = MemoryBroker::new().writer();
    writer.close().await.unwrap();

    let relay = Relay::new(pool.clone(), writer).max_retry_wait(Duration::from_secs(10));
    let report = relay.run_until(tokio::time::sleep(Duration::from_secs(3))).await.unwrap();
    // Waits of 0.1, 0.2, 0.4, 0.8 and 1.6 s (each up to twice that with jitter) come
    // to 3.1 s: at most five passes in three seconds, where a steady 100 ms made 30.
    assert!((3..=5).contains(&report.passes), "{report:?}");
    assert_eq!(report.failed_passes, report.passes, "{report:?}");
    assert_eq!(report.rows(), 0);
    assert_eq!(remaining(&pool).await, 10, "a closed writer refuses no row: they wait");
    assert!(outbox.refused(&pool).await.unwrap().is_empty());
}

/// Before, the stop dropped the bucket being relayed, after the broker took its rows
/// and before they were deleted: they went out again with the next relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_through_run_until_leaves_no_duplicates() {
    const N: usize = STORED;
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = relay_a_quarter(&pool, &outbox, &broker, async move { stopped.await.unwrap_or(()) }).await;
    stop.send(()).unwrap();
    let report = first.await.unwrap().unwrap();
    let left = remaining(&pool).await;
    assert!(left > 0, "stopped before the end (else the test proves nothing)");
    assert_eq!(report.forwarded + left as u64, N as u64, "what it reported forwarded is gone from the table");

    let second = Relay::new(pool.clone(), broker.writer());
    drain(&second).await;
    assert_eq!(remaining(&pool).await, 0);
    let all = written(&broker);
    let distinct: HashSet<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!((all.len(), distinct.len()), (N, N), "each once");
}

/// Table names are quoted, so one that is also a keyword works; a name PostgreSQL
/// would cut short (and so could share with another) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_named_like_a_keyword_works_and_a_long_name_is_refused() {
    let (_server, pool, _) = setup().await;
    let outbox = Outbox::with_table("order").unwrap();
    outbox.create_table(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "o-1").with_id("o-1")).await.unwrap();
    tx.commit().await.unwrap();
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), broker.writer()).outbox(outbox.clone());
    assert_eq!(drain(&relay).await.forwarded, 1);
    assert_eq!(ids(&written(&broker)), ["o-1"]);
    assert!(outbox.refused(&pool).await.unwrap().is_empty());

    assert!(Outbox::with_table(&"a".repeat(Outbox::MAX_TABLE_NAME)).is_ok());
    let err = Outbox::with_table(&"a".repeat(Outbox::MAX_TABLE_NAME + 1)).unwrap_err();
    assert_eq!(err.kind(), tidewater_core::ErrorKind::InvalidName);
    assert!(err.to_string().contains("at most 48 bytes"), "{err}");
}

/// Before, the relay made each message anew, so the broker got the time of the relay's
/// pass: an event stored before a broker outage went out stamped hours late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_out_with_its_own_time_to_the_microsecond() {
    let (_server, pool, outbox) = setup().await;
    let broker = MemoryBroker::with_config(MemoryConfig::default().auto_create(false));
    broker.admin().create_topic("orders", 1).await.unwrap();
    let at = |micros: i64| {
        let offset = Duration::from_micros(micros.unsigned_abs());
        if micros >= 0 {
            UNIX_EPOCH + offset
        } else {
            UNIX_EPOCH - offset
        }
    };
    let times = [
        ("made-now", SystemTime::now()),
        ("last-year", at(1_765_000_000_123_456)),
        ("before-the-epoch", at(-86_400_000_001)),
        // A topic that is missing at first: set aside, put back, then sent.
        ("refused-first", at(1_700_000_000_000_001)),
    ];
    let mut tx = pool.begin().await.unwrap();
    for (id, time) in times {
        let topic = if id == "refused-first" { "later" } else { "orders" };
        outbox.store(&mut tx, &Message::new(topic, id).with_id(id).with_timestamp(time)).await.unwrap();
    }
    tx.commit().await.unwrap();

    let relay = Relay::new(pool.clone(), broker.writer());
    assert_eq!(drain(&relay).await.refused, 1);
    broker.admin().create_topic("later", 1).await.unwrap();
    assert_eq!(outbox.requeue_refused(&pool, None).await.unwrap(), 1);
    assert_eq!(drain(&relay).await.forwarded, 1);

    let mut sent = written(&broker);
    sent.extend(broker.published("later"));
    assert_eq!(sent.len(), times.len());
    for (id, time) in times {
        let message = sent.iter().find(|m| m.id.as_str() == id).unwrap();
        // PostgreSQL keeps microseconds; what is below them goes.
        let micros = |t: SystemTime| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i128,
            Err(e) => -(e.duration().as_micros() as i128),
        };
        assert_eq!(micros(message.timestamp), micros(time), "{id}");
    }
}

/// A table made before `created_at` existed gains it from `create_table`; a row stored
/// in it before then goes out with the time it was stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_message_times_is_brought_up_to_date() {
    let server = PostgresServer::start();
    let pool = PgPoolOptions::new().max_connections(2).connect(&server.url()).await.unwrap();
    // The tables as the previous version made them.
    let message = "bucket INT NOT NULL, topic TEXT NOT NULL, id TEXT NOT NULL, key BYTEA, content_type TEXT, \
                   headers TEXT NOT NULL, payload BYTEA NOT NULL";
    for statement in [
        format!(
            "CREATE TABLE tidewater_outbox (seq BIGSERIAL PRIMARY KEY, {message}, \
             stored_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        "CREATE INDEX tidewater_outbox_bucket_seq ON tidewater_outbox (bucket, seq)".to_owned(),
        format!(
            "CREATE TABLE tidewater_outbox_refused (seq BIGINT PRIMARY KEY, {message}, stored_at TIMESTAMPTZ NOT NULL, \
             error TEXT NOT NULL, refused_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ),
        "INSERT INTO tidewater_outbox (bucket, topic, id, headers, payload, stored_at) \
         VALUES (0, 'orders', 'old', '{}', 'x', TIMESTAMPTZ '2026-11-30 12:00:00.654321+00')"
            .to_owned(),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
    }

    let outbox = Outbox::new();
    outbox.create_table(&pool).await.unwrap();
    outbox.create_table(&pool).await.expect("a second time changes nothing");
    let now = SystemTime::now();
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &Message::new("orders", "y").with_id("new").with_timestamp(now)).await.unwrap();
    tx.commit().await.unwrap();

    let broker = MemoryBroker::new();
    assert_eq!(drain(&Relay::new(pool.clone(), broker.writer())).await.forwarded, 2);
    let sent = written(&broker);
    assert_eq!(ids(&sent), ["old", "new"]);
    let stored = UNIX_EPOCH + Duration::from_micros(1_796_040_000_654_321);
    assert_eq!(sent[0].timestamp, stored);
    assert_eq!(
        sent[1].timestamp.duration_since(UNIX_EPOCH).unwrap().as_micros(),
        now.duration_since(UNIX_EPOCH).unwrap().as_micros()
    );
}

/// A writer that times out on one topic and writes the others.
struct TimesOutOn(&'static str, Arc<dyn Writer>);

#[async_trait::async_trait]
impl Writer for TimesOutOn {
    fn driver(&self) -> &'static str {
        self.1.driver()
    }

    async fn write(&self, batch: Vec<Message>) -> tidewater_core::Result<()> {
        if batch.iter().any(|m| &*m.stream == self.0) {
            let err = tidewater_core::Error::new(tidewater_core::ErrorKind::Timeout, "the partition's leader is away");
            return Err(err.with_topic(self.0));
        }
        self.1.write(batch).await
    }
}

/// A bucket whose write fails in a way the others need not share (a timeout on one
/// topic) is left for the next pass, and the other buckets go on in the same pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_times_out_leaves_the_others_going() {
    let (_server, pool, outbox) = setup().await;
    store(&pool, &outbox, 200, 40).await;
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &Message::new("stalled", "s").with_id("s-1").with_key("k0")).await.unwrap();
    tx.commit().await.unwrap();
    // The rows that share the stalled row's bucket (keys spread over 16 buckets).
    let stalled_bucket: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tidewater_outbox WHERE bucket = (SELECT bucket FROM tidewater_outbox WHERE id = 's-1')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(stalled_bucket < 201, "other buckets hold rows too");
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), Arc::new(TimesOutOn("stalled", broker.writer())));

    let err = relay.relay_once().await.unwrap_err();
    assert_eq!(err.kind(), tidewater_core::ErrorKind::Timeout, "{err}");
    assert_eq!(remaining(&pool).await, stalled_bucket, "only the stalled row's bucket is left for the next pass");
    assert_eq!(written(&broker).len() as i64, 201 - stalled_bucket, "every other bucket was forwarded in the pass");
    assert!(outbox.refused(&pool).await.unwrap().is_empty(), "a timeout sets nothing aside");
}

/// Before, a relay whose passes each failed in part (one bucket's writes time out while
/// the other buckets move) said so on every pass: under load, passes follow each other
/// at once, and the log filled with the same warning. It says so once every longest
/// retry wait (10 s here), with how many passes failed.
#[tokio::test]
async fn a_bucket_failing_on_every_pass_is_said_once_a_while() {
    let (_server, pool, outbox) = setup().await;
    // First in its bucket, so that the bucket fails from the first pass on.
    let mut tx = pool.begin().await.unwrap();
    outbox.store(&mut tx, &Message::new("stalled", "s").with_id("s-1").with_key("k0")).await.unwrap();
    tx.commit().await.unwrap();
    store(&pool, &outbox, 1_000, 40).await;
    let stalled_bucket: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tidewater_outbox WHERE bucket = (SELECT bucket FROM tidewater_outbox WHERE id = 's-1')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let broker = MemoryBroker::new();
    let relay = Relay::new(pool.clone(), Arc::new(TimesOutOn("stalled", broker.writer())))
        .batch(5)
        .max_retry_wait(Duration::from_secs(10));

    // This test's runtime has one thread, so the relay logs to this thread's subscriber.
    let log = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer({
            let log = Arc::clone(&log);
            move || Captured(Arc::clone(&log))
        })
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let stalled_bucket_left = async {
        // The relay's progress has no event to wait on: looked at every 50 ms.
        while remaining(&pool).await > stalled_bucket {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let report = relay.run_until(stalled_bucket_left).await.unwrap();

    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let said = log.lines().filter(|l| l.contains("failed in part")).count();
    assert!(report.failed_passes >= 10, "passes enough for the warning to repeat: {report:?}");
    assert_eq!(said, 1, "{report:?}\n{log}");
    assert!(log.contains("failed_passes=1"), "{log}");
}

/// A writer into a shared buffer, for a test that reads what was logged.
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
