//! Whether a broker's address takes connections at all: for the error of a connect that
//! timed out.
//!
//! Some clients retry a refused connection until their timeout and then report only that
//! they timed out (librdkafka says "broker transport failure", the pulsar crate nothing),
//! so a mistyped port or a broker that is not running reads like a slow one. After such
//! a timeout, a driver asks [`probe`] and says the system's reason when there is one.

//!
//! With the `rustls` feature, [`refused_certificate`] tells a TLS handshake that failed
//! on a certificate from one that was cut off, for drivers whose clients use rustls.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What one TCP connection to each of a broker's addresses found.
#[derive(Debug)]
pub enum Reach {
    /// This `host:port` took the connection: the broker, or something, listens there.
    Answers(String),
    /// None took it; the first that failed for a reason other than a timeout, and why
    /// ("connection refused", a name that does not resolve).
    Fails(String, std::io::Error),
    /// None answered within the wait: the client's own timeout already says as much.
    Silent,
}

/// How long a probe waits for each address: a broker on a reachable host answers a TCP
/// connection at once, whatever its own handshake then takes.
const WAIT: Duration = Duration::from_secs(1);

/// Tries each of `hosts` (`host:port`) in turn, each address it resolves to for at most
/// a second, on a blocking thread, and stops at the first that takes the connection.
///
/// ```
/// use tidewater_core::reach::{probe, Reach};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
/// let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let open = listening.local_addr().unwrap();
///
/// let found = probe(vec![closed.to_string()]).await;
/// assert!(matches!(found, Reach::Fails(host, e) if host == closed.to_string()
///     && e.kind() == std::io::ErrorKind::ConnectionRefused));
/// let found = probe(vec![closed.to_string(), open.to_string()]).await;
/// assert!(matches!(found, Reach::Answers(host) if host == open.to_string()));
/// # }
/// ```
pub async fn probe(hosts: Vec<String>) -> Reach {
    tokio::task::spawn_blocking(move || probe_now(&hosts)).await.unwrap_or(Reach::Silent)
}

/// `host` as `host:port`, with `port` where it names none (an IPv6 address in brackets
/// has colons of its own): for the address lists of clients that take both forms.
///
/// ```
/// use tidewater_core::reach::with_port;
///
/// assert_eq!(with_port("broker", 9092), "broker:9092");
/// assert_eq!(with_port("broker:9093", 9092), "broker:9093");
/// assert_eq!(with_port("[::1]", 6650), "[::1]:6650");
/// assert_eq!(with_port("[::1]:6651", 6650), "[::1]:6651");
/// ```
pub fn with_port(host: &str, port: u16) -> String {
    match host.rsplit_once(':') {
        Some((_, given)) if !given.is_empty() && !given.contains(']') => host.to_owned(),
        _ => format!("{host}:{port}"),
    }
}

fn probe_now(hosts: &[String]) -> Reach {
    let mut failed = None;
    for host in hosts {
        let addresses = match host.to_socket_addrs() {
            Ok(addresses) => addresses,
            Err(err) => {
                failed.get_or_insert((host, err));
                continue;
            }
        };
        for address in addresses {
            match TcpStream::connect_timeout(&address, WAIT) {
                Ok(_) => return Reach::Answers(host.clone()),
                Err(err) if err.kind() == std::io::ErrorKind::TimedOut => {}
                Err(err) => {
                    failed.get_or_insert((host, err));
                }
            }
        }
    }
    match failed {
        Some((host, err)) => Reach::Fails(host.clone(), err),
        None => Reach::Silent,
    }
}

/// Whether `err` (or a cause of it) is a TLS handshake that failed on a certificate: the
/// broker's is not trusted here, or the broker refused the client's (missing, of an
/// unknown CA, expired, revoked). Retrying with the same settings fails the same way,
/// so a driver makes it a [`Config`](crate::ErrorKind::Config) error. rustls hands it
/// over inside a `std::io::Error`, as the clients built on it do.
#[cfg(feature = "rustls")]
pub fn refused_certificate(err: &(dyn std::error::Error + 'static)) -> bool {
    use rustls::AlertDescription as Alert;
    let mut next = Some(err);
    while let Some(cause) = next {
        let tls = cause
            .downcast_ref::<rustls::Error>()
            .or_else(|| cause.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => return true,
            Some(rustls::Error::AlertReceived(alert)) => {
                return matches!(
                    alert,
                    Alert::BadCertificate
                        | Alert::UnsupportedCertificate
                        | Alert::CertificateRevoked
                        | Alert::CertificateExpired
                        | Alert::CertificateUnknown
                        | Alert::UnknownCA
                        | Alert::CertificateRequired
                );
            }
            _ => next = cause.source(),
        }
    }
    false
}

#[cfg(all(test, feature = "rustls"))]
mod tls_tests {
    use std::io;

    use super::refused_certificate;

    #[test]
    fn certificate_failures_are_told_from_other_failures() {
        let wrapped = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        let untrusted = wrapped(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        assert!(refused_certificate(&untrusted));
        assert!(refused_certificate(&wrapped(rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate))));
        // Said by the other side for reasons of its own, or not TLS at all: retry.
        assert!(!refused_certificate(&wrapped(rustls::Error::AlertReceived(rustls::AlertDescription::InternalError))));
        assert!(!refused_certificate(&io::Error::from(io::ErrorKind::ConnectionReset)));
        // Found as the cause of a client's own error, as async-nats's connect error holds it.
        #[derive(Debug)]
        struct ConnectError(io::Error);
        impl std::fmt::Display for ConnectError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("IO error")
            }
        }
        impl std::error::Error for ConnectError {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert!(refused_certificate(&ConnectError(untrusted)));
    }
}
