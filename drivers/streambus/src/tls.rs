//! Dialing through TLS (rustls), for brokers behind a TLS-terminating proxy: StreamBus
//! brokers themselves listen in plain TCP.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::{client::TlsStream, TlsConnector};

use tidewater_core::{Error, ErrorKind, Result};

/// How to dial TLS: a rustls client configuration (roots, client certificate) and the
/// name to verify the server certificate against.
#[derive(Clone)]
pub struct TlsOptions {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// TLS with `config`, verifying the server as `server_name` (a DNS name or an IP).
    pub fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
            Error::new(ErrorKind::Config, format!("{server_name:?} is not a valid TLS server name"))
                .with_driver(crate::DRIVER)
                .with_source(e)
        })?;
        Ok(Self { connector: TlsConnector::from(config), server_name })
    }

    pub(crate) async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}
