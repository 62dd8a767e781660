//! Exactly once from topic to topic, with the process killed mid-transaction.
//!
//! A child process (this test binary run again with `--child`) forwards every record of
//! an input topic to an output topic, one Kafka transaction per record that carries the
//! record's offset (`Transaction::consumed`). The test kills it with SIGKILL eight times
//! as it goes, after some commits: half the time right after a commit (so mostly as the
//! next transaction begins), half the time right after a transaction's write reached
//! the broker and before its commit (so the log holds a record that must never be
//! seen); each time it starts the child again with the same transactional id and group
//! member. Then a `read_committed` reader of the output must see every input exactly
//! once, and a `read_uncommitted` one the aborted writes as well. Run by `cargo test`,
//! against the Kafka `scripts/test` starts.
//!
//! Its own `main` (no test harness), so that the child is the same binary.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use tidewater_core::{
    handler_fn, Delivery, Driver, EventRegistry, HandlerError, Message, PartitionLag, ReadTask, StartFrom,
    SubscriberScheduler,
};
use tidewater_kafka::Kafka;

const INPUTS: usize = 400;
const KILLS: usize = 8;
const PARTITIONS: i32 = 3;
const PATIENCE: Duration = Duration::from_secs(180);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        let [brokers, input, output] = [&args[at + 1], &args[at + 2], &args[at + 3]];
        return child(brokers, input, output);
    }
    // `cargo test --no-run`/`--list` and filters meant for other tests: nothing to do.
    if args.iter().any(|a| a == "--list") {
        println!("exactly_once_across_sigkill: test");
        return;
    }
    let filters: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "exactly_once_across_sigkill".contains(f.as_str())) {
        return;
    }
    exactly_once_across_sigkill();
    println!("test exactly_once_across_sigkill ... ok");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

fn exactly_once_across_sigkill() {
    let brokers = support::shared_brokers();
    let run = tidewater_conformance::fresh_topic("eos");
    let (input, output) = (format!("{run}-in"), format!("{run}-out"));
    let rt = runtime();
    let kafka = rt.block_on(Kafka::connect(support::config(&brokers))).expect("connect to the test Kafka");
    rt.block_on(async {
        kafka.create_topic(&input, PARTITIONS as u32).await.expect("input topic");
        kafka.create_topic(&output, PARTITIONS as u32).await.expect("output topic");
        let inputs = (0..INPUTS)
            .map(|i| {
                Message::new(&input, format!("record {i}")).with_id(format!("in-{i}")).with_key(format!("k{}", i % 17))
            })
            .collect();
        kafka.writer().write(inputs).await.expect("write the inputs");
    });

    // Every `forwarded` line of every child, and the transactions a kill interrupted
    // (begun in a child that died before saying it committed them).
    let mut forwarded = 0usize;
    let mut interrupted = 0usize;
    for kill in 0..=KILLS {
        let mut child = spawn_child(&brokers, &input, &output);
        let lines = read_lines(&mut child);
        if kill == KILLS {
            // The last one runs until the group has committed every input.
            wait_for_lag_zero(&rt, &kafka, &input);
            child.kill().expect("stop the last child");
            child.wait().expect("reap the last child");
            let (f, _) = tally(&lines, usize::MAX, false);
            forwarded += f;
            break;
        }
        // Kill after this child's n-th commit, or at the first write after it. Varying n
        // moves the point.
        let n = 15 + 4 * kill;
        let (f, open) = tally(&lines, n, kill % 2 == 1);
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        forwarded += f;
        interrupted += usize::from(open);
    }

    let (committed, uncommitted) = read_output(&brokers, &output);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &committed {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("{id} x{n}")).collect();
    let missing: Vec<_> =
        (0..INPUTS).map(|i| format!("in-{i}")).filter(|id| !counts.contains_key(id.as_str())).collect();
    println!(
        "exactly once: {INPUTS} inputs, {KILLS} kills ({interrupted} inside a transaction), {forwarded} commits \
         reported, {} outputs read committed, {} output records in the log in all (aborted ones included)",
        committed.len(),
        uncommitted
    );
    assert!(twice.is_empty(), "outputs seen more than once by a read_committed reader: {twice:?}");
    assert!(missing.is_empty(), "inputs never forwarded: {missing:?}");
    assert_eq!(committed.len(), INPUTS);
    assert!(interrupted >= KILLS / 2, "only {interrupted} kills landed inside a transaction");
    assert!(
        uncommitted >= INPUTS + KILLS / 2,
        "the log should hold the writes of the {} transactions killed after their write",
        KILLS / 2
    );
}

fn spawn_child(brokers: &str, input: &str, output: &str) -> Child {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--child", brokers, input, output])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child")
}

/// The child's standard output, a line at a time.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `lines` until `n` commits were reported and, with `until_written`, a
/// transaction's write after them (or until the child's output ends, for
/// `usize::MAX`); returns the commits and whether a transaction was begun but not
/// reported committed.
fn tally(lines: &mpsc::Receiver<String>, n: usize, until_written: bool) -> (usize, bool) {
    let (mut commits, mut open, mut written) = (0, false, false);
    let deadline = Instant::now() + PATIENCE;
    while commits < n || (until_written && !written) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("begun ") => open = true,
            Ok(line) if line.starts_with("written ") => written = commits >= n,
            Ok(line) if line.starts_with("committed ") => {
                commits += 1;
                open = false;
            }
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if n == usize::MAX => break,
            Err(err) => panic!("the child reported {commits} of {n} commits, then: {err:?}"),
        }
    }
    // What it printed before the kill took effect counts too.
    while let Ok(line) = lines.try_recv() {
        if line.starts_with("begun ") {
            open = true;
        } else if line.starts_with("committed ") {
            commits += 1;
            open = false;
        }
    }
    (commits, open)
}

fn wait_for_lag_zero(rt: &tokio::runtime::Runtime, kafka: &Kafka, input: &str) {
    let admin = kafka.admin();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lag = rt.block_on(admin.lag(input, "eos"));
        if matches!(&lag, Ok(lags) if PartitionLag::total(lags) == 0) {
            return;
        }
        assert!(Instant::now() < deadline, "the forwarding group never caught up; last lag: {lag:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The output's record ids as a `read_committed` reader sees them, and how many records
/// a `read_uncommitted` reader sees (aborted ones too).
fn read_output(brokers: &str, topic: &str) -> (Vec<String>, usize) {
    let committed = read_all(brokers, topic, "read_committed");
    let everything = read_all(brokers, topic, "read_uncommitted");
    (committed, everything.len())
}

fn read_all(brokers: &str, topic: &str, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("eos-check-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a checking consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("offset");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = HashSet::new();
    let mut ids = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while at_end.len() < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "reading the output to its end took too long");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(record)) => {
                at_end.remove(&record.partition());
                let headers = rdkafka::message::Headers::iter(record.headers().expect("tidewater headers"));
                let id = headers
                    .filter(|h| h.key == "tw-id")
                    .find_map(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .expect("a tw-id header");
                ids.push(id);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(err)) => panic!("reading the output failed: {err}"),
            None => {}
        }
    }
    ids
}

/// The forwarder: one transaction per input record, with the record's offset.
fn child(brokers: &str, input: &str, output: &str) {
    let rt = runtime();
    rt.block_on(async {
        let config = support::config(brokers)
            // The same member as the killed child: it takes the partitions back at once,
            // without waiting for the dead member's session to time out.
            .set("group.instance.id", format!("{input}-forwarder"));
        let kafka = Kafka::connect(config).await.expect("connect");
        // The same transactional id as the killed child: registering it aborts the
        // transaction that child left open.
        let transactions = kafka.transactions(&format!("{input}-forwarder")).expect("transactions");
        let output = Arc::<str>::from(output);
        let handler = handler_fn(move |delivery: Delivery| {
            let (transactions, output) = (Arc::clone(&transactions), Arc::clone(&output));
            async move {
                let id = &delivery.message().id;
                say(&format!("begun {id}"));
                let mut tx = transactions.begin().await?;
                let copy = Message::new(&*output, delivery.message().payload.clone()).with_id(id.as_str());
                let copy = match delivery.message().key.clone() {
                    Some(key) => copy.with_key(key),
                    None => copy,
                };
                tx.write_one(copy).await?;
                say(&format!("written {id}"));
                tx.consumed(&delivery)?;
                tx.commit().await?;
                say(&format!("committed {id}"));
                Ok::<_, HandlerError>(())
            }
        });
        let mut scheduler = SubscriberScheduler::new(kafka.reader(), EventRegistry::new());
        scheduler.add(ReadTask::new(input).with_group("eos").with_start(StartFrom::Earliest), Arc::new(handler));
        scheduler.start().await.expect("subscribe");
        // Until killed.
        std::future::pending::<()>().await;
    });
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
