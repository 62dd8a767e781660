//! Dialing through TLS, as deployments with a TLS-terminating proxy in front of the
//! broker do: a rustls proxy of the test's own in front of the double, with a CA and
//! server certificate made by Debian's openssl. Needs the crate's `tls` feature
//! (`scripts/test` builds with all features). The group read goes through the proxy
//! too, with [`CoordinatorAddress::Bootstrap`]: the double advertises its own plain
//! address, as a broker behind such a proxy does.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Driver, Message, ReadTask};
use tidewater_streambus::{CoordinatorAddress, StreamBus, TlsOptions};
use tidewater_streambus_double::{BrokerDouble, Profile};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Terminates TLS on a free port and relays the plain bytes to `upstream`.
async fn tls_proxy(dir: &Path, upstream: SocketAddr) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("server.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut client) = acceptor.accept(client).await else { return };
                let Ok(mut broker) = TcpStream::connect(upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
            });
        }
    });
    addr
}

fn client_config(roots: RootCertStore) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_dials_through_a_terminating_proxy_and_refuses_an_unknown_ca() {
    let dir = std::env::temp_dir().join(format!("tidewater-streambus-tls-{}", std::process::id()));
    tidewater_conformance::certs::test_certificates(&dir);
    let double = BrokerDouble::start(Profile::Later).await;
    let proxy = tls_proxy(&dir, double.addr()).await;

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = support::config(proxy);
    config.tls = Some(TlsOptions::new(client_config(roots), "127.0.0.1").unwrap());
    // The double advertises its own plain address for coordinators, as a broker behind
    // a TLS-terminating proxy would.
    config.coordinator_address = CoordinatorAddress::Bootstrap;
    let bus = StreamBus::connect(config).await.expect("TLS with our CA connects");
    bus.writer().write(vec![Message::new("tls-check", "over TLS").with_id("t-1")]).await.unwrap();
    let recorder = tidewater_core::testing::Recorder::new();
    let mut scheduler = tidewater_core::SubscriberScheduler::new(bus.reader(), tidewater_core::EventRegistry::new());
    scheduler.add(ReadTask::new("tls-check").with_group("tls"), Arc::new(recorder.clone()));
    scheduler.start().await.unwrap();
    let got = recorder.wait_for(1, Duration::from_secs(30)).await.unwrap();
    scheduler.shutdown(Duration::from_secs(5)).await;
    assert_eq!(got[0].message().id, "t-1");
    assert_eq!(got[0].message().payload.as_ref(), b"over TLS");

    let mut untrusted = support::config(proxy);
    untrusted.request_timeout = Duration::from_secs(3);
    untrusted.tls = Some(TlsOptions::new(client_config(RootCertStore::empty()), "127.0.0.1").unwrap());
    let err = StreamBus::connect(untrusted).await.unwrap_err();
    // Before, a `Connection` error after the whole request timeout, which says retry.
    tidewater_conformance::assert_refused_for_good(&err, "TLS with the StreamBus broker at");
    let _ = std::fs::remove_dir_all(&dir);
}
