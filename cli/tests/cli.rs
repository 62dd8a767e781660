//! The `tidewater` command end to end, as a user runs it, against the real brokers that
//! `scripts/test` starts.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use tidewater_streambus_double::{BrokerDouble, DoubleConfig, Profile};

fn tidewater(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidewater"));
    // Where StreamBus v1.0.x group positions go, apart from the user's own.
    command.env("TIDEWATER_OFFSETS_DIR", std::env::temp_dir().join(format!("tidewater-cli-{}", std::process::id())));
    command.arg("--url").arg(url).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("the binary runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    finish(child, args)
}

/// Waits for the run's end and its output. A run that does not end (a redrive that never
/// goes idle) fails its test rather than holding the whole run: killed after two minutes.
fn finish(child: std::process::Child, args: &[&str]) -> Output {
    let (ended, watch) = std::sync::mpsc::channel::<()>();
    let pid = child.id().to_string();
    let watchdog = std::thread::spawn(move || {
        let late = watch.recv_timeout(RUN_LIMIT).is_err();
        if late {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        late
    });
    let out = child.wait_with_output().unwrap();
    let _ = ended.send(());
    assert!(!watchdog.join().unwrap(), "tidewater {args:?} did not end within {RUN_LIMIT:?}");
    out
}

/// The longest a run of the command may take in these tests.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The command started with `args` (the URL among them), its stdout and stderr piped, for
/// a test that reads them while it runs.
fn running(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs")
}

/// The lines of `from` as they come, read on a thread of their own, so that a test can
/// wait for one with a limit.
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (lines, read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(from)) {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    read
}

fn ok(url: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = tidewater(url, args, stdin);
    assert!(out.status.success(), "tidewater {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Reading a topic that does not exist ends at once with a line that names it, and makes
/// no topic: where topics are made on first use, a misspelt name used to make one and
/// wait on it without a word. `admin` goes before the command (Pulsar's `--admin-url`).
fn missing_topics_are_refused(url: &str, admin: &[&str], topic: &str) {
    let dlq = format!("{topic}.dlq");
    let reads: [(&[&str], &str); 3] =
        [(&["tail", topic, "--count", "1"], topic), (&["dlq", "list", &dlq], &dlq), (&["dlq", "redrive", &dlq], &dlq)];
    for (read, named) in reads {
        let args: Vec<&str> = admin.iter().chain(read).copied().collect();
        let out = tidewater(url, &args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "tidewater {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&format!("topic {named:?} does not exist")), "{err}");
    }
    let listed = ok(url, &[admin, &["topics", "list"]].concat(), None);
    assert!(!listed.lines().any(|t| t == topic || t == dlq), "a refused read made its topic: {listed}");
}

/// Create, publish three lines, tail them back as JSON, list, delete.
fn round_trip(url: &str) {
    let topic = format!("cli-{}", std::process::id());
    missing_topics_are_refused(url, &[], &topic);
    ok(url, &["topics", "create", &topic, "--partitions", "1"], None);
    let ids =
        ok(url, &["publish", &topic, "--lines", "--key", "k1", "--header", "tenant=acme"], Some("one\ntwo\nthree\n"));
    assert_eq!(ids.lines().count(), 3, "an id a message: {ids}");

    let tailed = ok(url, &["tail", &topic, "--from", "start", "--count", "3", "--json"], None);
    let lines: Vec<serde_json::Value> = tailed.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let payloads: Vec<&str> = lines.iter().map(|l| l["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads, ["one", "two", "three"], "one key, in order");
    assert!(lines.iter().all(|l| l["key"] == "k1" && l["headers"]["tenant"] == "acme"), "{tailed}");
    let sent: Vec<&str> = ids.lines().collect();
    let got: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(got, sent, "the ids publish printed");

    // A group that read the three is behind by nothing; two more put it two behind.
    ok(url, &["tail", &topic, "--group", "cli-readers", "--from", "start", "--count", "3"], None);
    assert_eq!(total_lag(url, &topic), 0);
    ok(url, &["publish", &topic, "--lines"], Some("four\nfive\n"));
    assert_eq!(total_lag(url, &topic), 2);

    assert!(ok(url, &["topics", "list"], None).lines().any(|t| t == topic), "listed after create");
    ok(url, &["topics", "delete", &topic], None);
    assert!(!ok(url, &["topics", "list"], None).lines().any(|t| t == topic), "gone after delete");
}

/// The total `lag --json` prints for group cli-readers on `topic`.
fn total_lag(url: &str, topic: &str) -> u64 {
    total_lag_of(url, "cli-readers", topic)
}

/// The total `lag --json` prints for `group` on `topic`.
fn total_lag_of(url: &str, group: &str, topic: &str) -> u64 {
    let out = ok(url, &["lag", group, topic, "--json"], None);
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["topic"], topic, "{out}");
    line["total"].as_u64().expect("a total")
}

#[test]
fn on_nats() {
    round_trip(&tidewater_testkit::shared::nats_url());
}

#[test]
fn on_kafka() {
    round_trip(&format!("kafka://{}", tidewater_testkit::shared::kafka_brokers()));
}

/// A Kafka that wants SASL over TLS: the properties from a file (`--kafka-config`), with
/// `-X` over them; a wrong password is one line that says so, and properties given for
/// another broker are refused rather than left unused.
#[test]
fn on_a_secured_kafka() {
    let dir = std::env::temp_dir().join(format!("tidewater-cli-tls-{}", std::process::id()));
    tidewater_conformance::certs::test_certificates(&dir);
    let broker = tidewater_testkit::KafkaBroker::start_secured(&tidewater_testkit::KafkaSecurity {
        certificate: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: dir.join("ca.pem"),
        users: vec![("alice".to_owned(), "alice-secret".to_owned())],
    });
    let url = format!("kafka://127.0.0.1:{}", broker.secured.expect("secured listeners").sasl_ssl);
    let file = dir.join("client.properties");
    let properties = format!(
        "# SASL over TLS\nsecurity.protocol=sasl_ssl\nsasl.mechanism=SCRAM-SHA-256\n\n\
         sasl.username=alice\nsasl.password = alice-secret\nssl.ca.location={}\n",
        dir.join("ca.pem").display()
    );
    std::fs::write(&file, properties).unwrap();
    let file = file.to_str().unwrap();
    let topic = format!("cli-secured-{}", std::process::id());
    fn options<'a>(file: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        [&["--kafka-config", file][..], args].concat()
    }

    ok(&url, &options(file, &["topics", "create", &topic, "--partitions", "1"]), None);
    ok(&url, &options(file, &["-X", "sasl.mechanism=SCRAM-SHA-512", "publish", &topic, "over TLS"]), None);
    let tailed = ok(&url, &options(file, &["tail", &topic, "--from", "start", "--count", "1", "--json"]), None);
    let line: serde_json::Value = serde_json::from_str(tailed.trim()).unwrap();
    assert_eq!(line["payload"], "over TLS", "{tailed}");

    let out = tidewater(&url, &options(file, &["-X", "sasl.password=guess", "topics", "list"]), None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("refused the login"), "{err}");

    let out = tidewater(&tidewater_testkit::shared::nats_url(), &options(file, &["topics", "list"]), None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--kafka-config is not for nats:// URLs"), "{err}");

    std::fs::write(dir.join("bad.properties"), "# one\nsecurity.protocol\n").unwrap();
    let bad = dir.join("bad.properties");
    let out = tidewater(&url, &["--kafka-config", bad.to_str().unwrap(), "topics", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.properties, line 2: \"security.protocol\" is not KEY=VALUE"), "{err}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NATS server with TLS under a CA of the test's own and a token: `--ca-file` and
/// `--token` get in; a wrong token, or no CA, is one line that says which.
#[test]
fn on_a_nats_server_with_tls_and_a_token() {
    let dir = std::env::temp_dir().join(format!("tidewater-cli-nats-tls-{}", std::process::id()));
    tidewater_conformance::certs::test_certificates(&dir);
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    let server = tidewater_testkit::NatsServer::start_with(
        tidewater_testkit::NatsRelease::Current,
        true,
        &["--tls", "--tlscert", &cert, "--tlskey", &key, "--auth", "cli-token"],
    );
    let url = server.url();
    let access = ["--ca-file", ca.as_str(), "--token", "cli-token"];
    let topic = format!("cli.secured.{}", std::process::id());
    ok(&url, &[&access[..], &["topics", "create", &topic]].concat(), None);
    ok(&url, &[&access[..], &["publish", &topic, "over TLS"]].concat(), None);
    let tailed =
        ok(&url, &[&access[..], &["tail", &topic, "--from", "start", "--count", "1", "--json"]].concat(), None);
    let line: serde_json::Value = serde_json::from_str(tailed.trim()).unwrap();
    assert_eq!(line["payload"], "over TLS", "{tailed}");

    let refused = [
        (["--ca-file", ca.as_str(), "--token", "guess"], "refused the credentials"),
        (["--ca-file", ca.as_str(), "--nats-creds", "/nonexistent.creds"], "cannot read credentials file"),
        (["--token", "cli-token", "--nats-creds", "/nonexistent.creds"], "give --token or --nats-creds, not both"),
    ];
    for (given, says) in refused {
        let out = tidewater(&url, &[&given[..], &["topics", "list"]].concat(), None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(says), "{given:?}: {err}");
    }
    let out = tidewater(&url, &["--token", "cli-token", "topics", "list"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS with the NATS server failed"), "without our CA: {err}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn on_pulsar() {
    let url = tidewater_testkit::shared::pulsar_url();
    let admin = tidewater_testkit::shared::pulsar_admin_url();
    let topic = format!("cli-{}", std::process::id());
    let with_admin = |args: &[&'static str]| -> Vec<String> {
        ["--admin-url", admin.as_str()].iter().chain(args).map(|s| s.to_string()).collect()
    };
    let run = |args: Vec<String>| ok(&url, &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    let with = |mut args: Vec<String>, topic_args: &[&str]| {
        args.extend(topic_args.iter().map(|s| s.to_string()));
        args
    };
    missing_topics_are_refused(&url, &["--admin-url", &admin], &topic);
    run(with(with_admin(&["topics", "create"]), &[&topic]));
    run(with(with_admin(&["publish"]), &[&topic, "hello"]));
    let tailed = run(with(with_admin(&["tail"]), &[&topic, "--from", "start", "--count", "1", "--json"]));
    assert!(tailed.contains("\"payload\":\"hello\""), "{tailed}");
    run(with(with_admin(&["topics", "delete"]), &[&topic]));
}

/// Dead letters published with the CLI itself, then listed, filtered, shown, tried in a
/// dry run, redriven to their topic without their dead-letter headers, and not redriven
/// twice by one group.
fn dlq_round_trip(url: &str, name: &str) {
    let topic = format!("cli-dlq-{}-{name}", std::process::id());
    let dlq = format!("{topic}.dlq");
    if !url.starts_with("pulsar") {
        ok(url, &["topics", "create", &topic], None);
        ok(url, &["topics", "create", &dlq], None);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let dead_letter = |payload: &str, error: &str, failed_ms: u64| {
        let (original, error, failed) = (
            format!("tw-dlq-original-topic={topic}"),
            format!("tw-dlq-error={error}"),
            format!("tw-dlq-last-failure={failed_ms}"),
        );
        let args = ["publish", &dlq, payload, "--header", &original, "--header", &error, "--header", &failed];
        ok(url, &args, None).trim().to_owned()
    };
    let a = dead_letter("a", "no such customer", now - 2 * 3_600_000);
    let b = dead_letter("b", "timeout talking to the bank", now);
    let c = dead_letter("c", "no such customer", now);
    let read = ["--idle", "2s"];
    let run = |args: &[&str]| ok(url, &[args, &read[..]].concat(), None);

    assert_eq!(run(&["dlq", "list", &dlq]).lines().count(), 3);
    let customers: Vec<serde_json::Value> = run(&["dlq", "list", &dlq, "--reason", "customer", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = customers.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = [a.as_str(), c.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let old = run(&["dlq", "list", &dlq, "--older-than", "1h"]);
    assert!(old.lines().count() == 1 && old.starts_with(&a), "{old}");
    // Ends at the match, long before five minutes without a dead letter (and the test's
    // two-minute limit): before, every dead letter was read first.
    let shown = ok(url, &["dlq", "show", &dlq, &b, "--idle", "300s"], None);
    assert!(shown.contains("timeout talking to the bank") && shown.ends_with("b\n"), "{shown}");

    let dry = run(&["dlq", "redrive", &dlq, "--reason", "customer", "--dry-run"]);
    assert!(dry.ends_with("dry run: 2 would be redriven\n"), "{dry}");
    let done = run(&["dlq", "redrive", &dlq, "--reason", "customer", "--group", "fixers"]);
    assert_eq!(done, "redriven 2, passed over 1\n");
    let back = ok(url, &["tail", &topic, "--from", "start", "--count", "2", "--json"], None);
    let back: Vec<serde_json::Value> = back.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut payloads: Vec<&str> = back.iter().map(|l| l["payload"].as_str().unwrap()).collect();
    payloads.sort();
    assert_eq!(payloads, ["a", "c"], "the customers' dead letters are back where they came from");
    assert!(
        back.iter().all(|l| l["headers"].get("tw-dlq-error").is_none()),
        "without their dead-letter headers: {back:?}"
    );
    let again = run(&["dlq", "redrive", &dlq, "--reason", "customer", "--group", "fixers"]);
    assert_eq!(again, "redriven 0, passed over 0\n", "one group redrives a dead letter once");

    // One that can never be written back (its topic's name is not valid) is said and
    // passed over, and the run fails; before, it came back after each nack delay and
    // the redrive never ended.
    let bad = {
        let (original, error) = ("tw-dlq-original-topic=no spaces", "tw-dlq-error=no such customer");
        ok(url, &["publish", &dlq, "d", "--header", original, "--header", error], None).trim().to_owned()
    };
    // Nor is one written without its payload (too large for the dead-letter topic):
    // before, it went back as an empty message under the original's id.
    let emptied = {
        let (original, error) = (format!("tw-dlq-original-topic={topic}"), "tw-dlq-error=no such customer");
        let args =
            ["publish", &dlq, "", "--header", &original, "--header", error, "--header", "tw-dlq-payload-dropped=1800"];
        ok(url, &args, None).trim().to_owned()
    };
    // A dry run names both, as the redrive below refuses them; before, the one with
    // the invalid name counted as one that would be redriven.
    let dry = run(&["dlq", "redrive", &dlq, "--reason", "customer", "--dry-run"]);
    assert!(dry.contains(&format!("would not redrive (written without its payload) {emptied}")), "{dry}");
    assert!(dry.contains(&format!("would not redrive (invalid original topic) {bad}")), "{dry}");
    assert!(dry.ends_with("dry run: 2 would be redriven, 2 would not\n"), "{dry}");
    let out =
        tidewater(url, &["dlq", "redrive", &dlq, "--reason", "customer", "--group", "fixers", "--idle", "2s"], None);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(stdout, "redriven 0, passed over 0, not redriven 2\n", "{stderr}");
    assert!(stderr.contains(&format!("not redriven: {bad}: invalid name")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "not redriven: {emptied}: dead letter {emptied} on {dlq} was written without its payload"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("they stay in") && stderr.contains("another --group"), "{stderr}");
}

#[test]
fn dlq_on_nats() {
    dlq_round_trip(&tidewater_testkit::shared::nats_url(), "nats");
}

#[test]
fn dlq_on_kafka() {
    dlq_round_trip(&format!("kafka://{}", tidewater_testkit::shared::kafka_brokers()), "kafka");
}

#[test]
fn dlq_on_pulsar() {
    dlq_round_trip(&tidewater_testkit::shared::pulsar_url(), "pulsar");
}

/// Both StreamBus generations, on the broker double (no real StreamBus broker can be
/// installed here: see the README).
#[test]
fn on_streambus() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (profile, name) in [(Profile::Later, "streambus-later"), (Profile::V1, "streambus-v1")] {
        let double = runtime.block_on(BrokerDouble::start(profile));
        let url = format!("streambus://{}", double.addr());
        round_trip(&url);
        dlq_round_trip(&url, name);
    }
}

/// `dlq list` prints each dead letter as it comes: before, it printed nothing until the
/// whole topic was read and none came for `--idle`, holding every dead letter meanwhile.
#[test]
fn dlq_list_prints_as_it_reads() {
    let url = tidewater_testkit::shared::nats_url();
    let dlq = format!("cli-streamed-{}.dlq", std::process::id());
    ok(&url, &["topics", "create", &dlq], None);
    ok(&url, &["publish", &dlq, "--lines", "--header", "tw-dlq-error=no such customer"], Some("a\nb\n"));
    let mut child = running(&["--url", &url, "dlq", "list", &dlq, "--idle", "300s"]);
    let printed = lines_of(child.stdout.take().unwrap());
    let first = printed.recv_timeout(RUN_LIMIT);
    let second = first.as_ref().ok().map(|_| printed.recv_timeout(RUN_LIMIT));
    child.kill().unwrap();
    child.wait().unwrap();
    let (first, second) = (first.expect("a line while the list still reads"), second.unwrap().expect("a second"));
    assert!(first.ends_with("no such customer") && second.ends_with("no such customer"), "{first}\n{second}");
}

/// A redrive whose writes the broker refuses for the writer's sake (here, not authorized
/// to write the original topic) stops at the first, says why, and acknowledges nothing:
/// run again once writing is allowed, it redrives them all. Before, each dead letter was
/// called one that can never be written back and passed over in the group, so the run
/// after the fix found nothing to redrive.
#[test]
fn a_redrive_the_broker_refuses_to_write_stops_and_passes_nothing_over() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let topic = format!("cli-unwritable-{}", std::process::id());
    let dlq = format!("{topic}.dlq");
    let mut config = DoubleConfig::new(Profile::Later);
    config.unwritable_topics = vec![topic.clone()];
    let double = runtime.block_on(BrokerDouble::start_with(config));
    let url = format!("streambus://{}", double.addr());
    ok(&url, &["topics", "create", &topic], None);
    ok(&url, &["topics", "create", &dlq], None);
    let original = format!("tw-dlq-original-topic={topic}");
    ok(&url, &["publish", &dlq, "--lines", "--header", &original], Some("a\nb\nc\n"));

    let out = tidewater(&url, &["dlq", "redrive", &dlq, "--group", "fixers"], None);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "redriven 0, passed over 0, then stopped", "{stderr}");
    assert!(stderr.contains("the redrive stopped") && stderr.contains("not authorized"), "{stderr}");
    assert!(!stderr.contains("not redriven"), "nothing was passed over: {stderr}");
    assert_eq!(total_lag_of(&url, "fixers", &dlq), 3, "the group acknowledged none");

    let (addr, mut config, storage) = runtime.block_on(double.stop());
    config.unwritable_topics.clear();
    let _double = runtime.block_on(BrokerDouble::restart(addr, config, storage));
    let again = ok(&url, &["dlq", "redrive", &dlq, "--group", "fixers", "--idle", "1s"], None);
    assert_eq!(again.trim(), "redriven 3, passed over 0");
    let back = ok(&url, &["tail", &topic, "--from", "start", "--count", "3", "--json"], None);
    assert_eq!(back.lines().count(), 3, "{back}");
}

/// A redrive killed (SIGKILL) in the middle loses nothing: the next run redrives the
/// rest, and every dead letter is back on its topic, some perhaps twice.
#[test]
fn an_interrupted_redrive_loses_nothing() {
    const N: usize = 3000;
    let url = tidewater_testkit::shared::nats_url();
    let topic = format!("cli-interrupted-{}", std::process::id());
    let dlq = format!("{topic}.dlq");
    ok(&url, &["topics", "create", &topic], None);
    ok(&url, &["topics", "create", &dlq], None);
    let lines: String = (0..N).map(|i| format!("letter {i}\n")).collect();
    let original = format!("tw-dlq-original-topic={topic}");
    ok(&url, &["publish", &dlq, "--lines", "--header", &original], Some(&lines));

    let mut first = Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["--url", &url, "dlq", "redrive", &dlq, "--group", "fixers"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lag = || -> u64 {
        let out = ok(&url, &["lag", "fixers", &dlq, "--json"], None);
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()["total"].as_u64().unwrap()
    };
    // Killed once it has begun: the group exists and is behind by less than all.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = tidewater(&url, &["lag", "fixers", &dlq, "--json"], None);
        let behind = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok().and_then(|v| v["total"].as_u64());
        if behind.is_some_and(|b| (b as usize) < N) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the redrive began within a minute");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let left = lag();
    assert!(left > 0, "the kill came before the end (else the test proves nothing); raise N");

    let second = ok(&url, &["dlq", "redrive", &dlq, "--group", "fixers", "--idle", "2s"], None);
    let redriven: u64 = second.split_whitespace().nth(1).unwrap().trim_end_matches(',').parse().unwrap();
    assert!(redriven >= left, "the second run took what was left ({left}): {second}");
    // `dlq list` reads any topic to its end and lists each id once.
    let back = ok(&url, &["dlq", "list", &topic, "--idle", "2s", "--json"], None);
    assert_eq!(back.lines().count(), N, "every dead letter is back on {topic}");
}

/// A tail whose reader went away ends, with no error, as `tail -f | head -1` does: on a
/// quiet topic too, where no later write would fail to tell it.
#[test]
fn a_tail_ends_when_its_reader_goes() {
    let url = tidewater_testkit::shared::nats_url();
    let topic = format!("cli-reader-gone-{}", std::process::id());
    ok(&url, &["topics", "create", &topic], None);
    ok(&url, &["publish", &topic, "one"], None);
    let args = ["--url", &url, "tail", &topic, "--from", "start"];
    let mut child = running(&args);
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with(&format!("--- {topic} ")), "{first}");
    drop(stdout);
    let out = finish(child, &args);
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A tail whose broker goes away (killed, as in a crash) says so on stderr, rather than
/// seeming only to hang: the command once kept the library's warnings to itself, and the
/// NATS client tells of a lost connection only at debug level, the pulsar crate only
/// through `log` (at each attempt of its reconnects), and the StreamBus driver said
/// nothing at all for the first 30 s. It reads on once the broker is back.
#[test]
fn a_tail_says_when_its_broker_goes_away() {
    use tidewater_testkit::{NatsRelease, NatsServer, PulsarStandalone, Restart};
    let mut nats = NatsServer::start(NatsRelease::Current);
    let url = nats.url();
    let lost = "lost the connection to NATS";
    tail_through_an_outage(&url, &[], |up| if up { nats.restart() } else { nats.kill() }, lost);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let double = runtime.block_on(BrokerDouble::start(Profile::Later));
    let url = format!("streambus://{}", double.addr());
    let (mut serving, mut stopped) = (Some(double), None);
    let serve = |up| match up {
        false => stopped = Some(runtime.block_on(serving.take().unwrap().stop())),
        true => {
            let (addr, config, storage) = stopped.take().unwrap();
            serving = Some(runtime.block_on(BrokerDouble::restart(addr, config, storage)));
        }
    };
    tail_through_an_outage(&url, &[], serve, "lost the connection to StreamBus");

    let mut pulsar = PulsarStandalone::start("");
    let (url, admin) = (pulsar.url(), pulsar.admin_url());
    let lost = "lost the connection to Pulsar";
    let serve = |up| if up { pulsar.restart() } else { pulsar.kill() };
    tail_through_an_outage(&url, &["--admin-url", &admin], serve, lost);
}

/// Tails a new topic on the broker at `url` (`options` go before each command), takes
/// the broker away with `serve(false)`, waits for a line on stderr that holds `lost`,
/// brings the broker back with `serve(true)`, and waits for a message published then to
/// be printed.
fn tail_through_an_outage(url: &str, options: &[&str], mut serve: impl FnMut(bool), lost: &str) {
    let topic = format!("cli-broker-gone-{}", std::process::id());
    let command = |args: &[&str]| -> Vec<String> { options.iter().chain(args).map(|s| s.to_string()).collect() };
    let run = |args: Vec<String>| ok(url, &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
    run(command(&["topics", "create", &topic]));
    run(command(&["publish", &topic, "before"]));
    let mut tail = vec!["--url".to_owned(), url.to_owned()];
    tail.extend(command(&["tail", &topic, "--from", "start"]));
    let mut child = running(&tail.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let printed = |want: &str| loop {
        match stdout.recv_timeout(RUN_LIMIT) {
            Ok(line) if line == want => return,
            Ok(_) => {}
            Err(_) => panic!("the tail on {url} printed no {want:?}"),
        }
    };
    printed("before");

    serve(false);
    let mut said = Vec::new();
    while !said.iter().any(|line: &String| line.contains(lost)) {
        match stderr.recv_timeout(RUN_LIMIT) {
            Ok(line) => said.push(line),
            Err(_) => panic!("no {lost:?} on stderr once the broker at {url} went away: {said:?}"),
        }
    }
    serve(true);
    // A broker just started may not serve the topic at once (Pulsar loads it anew, and
    // its bookie may still count as faulty): the publish is tried again, as a user
    // would, while it fails with an error of a kind that says a retry helps.
    let retryable = ["connection failed", "timed out", "busy", "transient broker error"];
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    loop {
        let args = command(&["publish", &topic, "after"]);
        let out = tidewater(url, &args.iter().map(String::as_str).collect::<Vec<_>>(), None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let again = retryable.iter().any(|kind| stderr.starts_with(&format!("tidewater: {kind}")));
        match out.status.success() {
            true => break,
            false if again && std::time::Instant::now() < deadline => {}
            false => panic!("the publish after the restart failed: {stderr}"),
        }
    }
    printed("after");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `tail --since` passes over what is older.
#[test]
fn tail_since_passes_over_older_messages() {
    let url = tidewater_testkit::shared::nats_url();
    let topic = format!("cli-since-{}", std::process::id());
    ok(&url, &["topics", "create", &topic], None);
    ok(&url, &["publish", &topic, "old"], None);
    // The age of the first message is what the command looks at.
    std::thread::sleep(std::time::Duration::from_secs(2));
    ok(&url, &["publish", &topic, "new"], None);
    let tailed = ok(&url, &["tail", &topic, "--since", "1s", "--count", "1", "--json"], None);
    let line: serde_json::Value = serde_json::from_str(tailed.trim()).unwrap();
    assert_eq!(line["payload"], "new", "{tailed}");
}

#[test]
fn a_missing_broker_is_one_clear_line_and_a_failure_code() {
    let out = tidewater("nats://127.0.0.1:1", &["topics", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("tidewater: connection failed") && err.contains("refused"), "{err}");

    let out = tidewater("htp://nope", &["topics", "list"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("names no broker"));
}
