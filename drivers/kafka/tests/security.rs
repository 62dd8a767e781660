//! The Kafka driver's TLS and SASL options against a private Apache Kafka with secured
//! listeners (SASL over TLS, SASL without it, and TLS that requires a client
//! certificate): each way in carries messages, and a wrong password, an untrusted CA or
//! a missing client certificate is a clear error that retrying will not fix.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use tidewater_conformance::{fresh_topic, subscribe_reader as subscribe};
use tidewater_core::testing::Recorder;
use tidewater_core::{Driver, IdFactory, Message, ReadTask, UuidV7Ids};
use tidewater_kafka::{Kafka, KafkaConfig, Sasl, SaslMechanism, Tls};
use tidewater_testkit::{KafkaBroker, KafkaSecurity};

const PATIENCE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(10);

fn sasl(mechanism: SaslMechanism, password: &str) -> Option<Sasl> {
    Some(Sasl { mechanism, username: "alice".to_owned(), password: password.to_owned() })
}

fn trusting(ca: &Path) -> Option<Tls> {
    Some(Tls { ca_location: Some(ca.display().to_string()), ..Tls::default() })
}

/// A write and a read in a group through `config`.
async fn round_trip(config: KafkaConfig, what: &str) {
    let kafka = Kafka::connect(config).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let topic = fresh_topic("secured");
    kafka.writer().write(vec![Message::new(&topic, what.to_owned()).with_id(what)]).await.unwrap();
    let recorder = Recorder::new();
    let mut sub = subscribe(kafka.reader(), ReadTask::new(&topic).with_group("secured"), recorder.clone()).await;
    let got = recorder.wait_for(1, PATIENCE).await.unwrap();
    sub.shutdown(GRACE).await;
    assert_eq!(got[0].message().id, what);
    assert_eq!(&got[0].message().payload[..], what.as_bytes());
}

/// Every way in that `KafkaConfig` offers, on one broker: SCRAM-SHA-512, SCRAM-SHA-256
/// and PLAIN over TLS, SCRAM without TLS, and mutual TLS; then five ways of being turned
/// away, each a `Config` error that names the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_sasl_on_a_secured_broker() {
    let dir = std::env::temp_dir().join(format!("tidewater-kafka-tls-{}", UuidV7Ids.next_id()));
    tidewater_conformance::certs::mutual_tls_certificates(&dir);
    let stranger = dir.join("stranger");
    let security = KafkaSecurity {
        certificate: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: dir.join("ca.pem"),
        users: vec![("alice".to_owned(), "alice-secret".to_owned())],
    };
    let broker = tokio::task::spawn_blocking(move || KafkaBroker::start_secured(&security)).await.unwrap();
    let ports = broker.secured.expect("secured listeners");
    let ca = dir.join("ca.pem");
    let at = |port: u16| KafkaConfig::new(format!("127.0.0.1:{port}"));

    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::ScramSha256, SaslMechanism::Plain] {
        let config = KafkaConfig { sasl: sasl(mechanism, "alice-secret"), tls: trusting(&ca), ..at(ports.sasl_ssl) };
        round_trip(config, &format!("{mechanism:?} over TLS")).await;
    }
    let config = KafkaConfig { sasl: sasl(SaslMechanism::ScramSha256, "alice-secret"), ..at(ports.sasl_plaintext) };
    round_trip(config, "SCRAM without TLS").await;
    let mutual = |dir: &Path, name: &str| Tls {
        certificate_location: Some(dir.join(format!("{name}.pem")).display().to_string()),
        key_location: Some(dir.join(format!("{name}.key")).display().to_string()),
        ..trusting(&ca).unwrap()
    };
    round_trip(KafkaConfig { tls: Some(mutual(&dir, "service-a")), ..at(ports.mutual_tls) }, "mutual TLS").await;

    let refused = [
        (
            "a wrong password",
            KafkaConfig { sasl: sasl(SaslMechanism::ScramSha512, "guess"), tls: trusting(&ca), ..at(ports.sasl_ssl) },
            "refused the login",
        ),
        (
            "an unknown user",
            KafkaConfig {
                sasl: Some(Sasl { mechanism: SaslMechanism::Plain, username: "mallory".into(), password: "x".into() }),
                tls: trusting(&ca),
                ..at(ports.sasl_ssl)
            },
            "refused the login",
        ),
        (
            "an untrusted CA",
            KafkaConfig {
                sasl: sasl(SaslMechanism::ScramSha512, "alice-secret"),
                tls: trusting(&stranger.join("ca.pem")),
                ..at(ports.sasl_ssl)
            },
            "certificate verify failed",
        ),
        (
            "no client certificate",
            KafkaConfig { tls: trusting(&ca), ..at(ports.mutual_tls) },
            "TLS with a Kafka broker failed",
        ),
        (
            "a client certificate of another CA",
            KafkaConfig { tls: Some(mutual(&stranger, "intruder")), ..at(ports.mutual_tls) },
            "TLS with a Kafka broker failed",
        ),
    ];
    for (what, config, says) in refused {
        let redacted = format!("{config:?}");
        assert!(!redacted.contains("alice-secret") && !redacted.contains("guess"), "a password shows: {redacted}");
        let started = Instant::now();
        let err = Kafka::connect(config).await.err().unwrap_or_else(|| panic!("{what} was let in"));
        // Before, each of these waited out the request timeout and then read as a
        // broker that was not there: a `Connection` error, which says to retry.
        println!("{what}: refused after {:?}: {err}", started.elapsed());
        tidewater_conformance::assert_refused_for_good(&err, says);
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
