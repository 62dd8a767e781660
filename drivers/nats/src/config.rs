//! Connecting to NATS.

use async_nats::ConnectErrorKind;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tidewater_core::{Error, ErrorKind, Result};

use crate::DRIVER;

/// How to authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token.
    Token(String),
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes them.
    CredentialsFile(PathBuf),
    /// An NKey seed.
    NKey(String),
}

impl fmt::Debug for Auth {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::CredentialsFile(path) => write!(f, "CredentialsFile({path:?})"),
            Auth::NKey(_) => f.write_str("NKey(<redacted>)"),
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// Refuse to connect without TLS.
    pub required: bool,
    /// A PEM file of root certificates to trust besides the system's.
    pub root_certificates: Option<PathBuf>,
    /// A PEM client certificate and key, for mutual TLS.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// Where and how to connect.
///
/// ```
/// use tidewater_nats::{Auth, NatsConfig};
///
/// let config = NatsConfig::new("nats://127.0.0.1:4222")
///     .auth(Auth::Token("s3cret".into()))
///     .name("billing");
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// Server URLs; the client picks one and fails over to the others.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS, if any.
    pub tls: Option<Tls>,
    /// The connection name the server shows.
    pub name: Option<String>,
    /// Reconnect attempts before giving up; `None` (the default) retries forever, so a
    /// restarted server is found again.
    pub max_reconnects: Option<usize>,
    /// The longest wait between reconnect attempts (they back off up to it).
    pub max_reconnect_delay: Duration,
    /// How long a connection attempt may take.
    pub connection_timeout: Duration,
    /// How long JetStream API requests and publish acknowledgements may take. A publish
    /// whose acknowledgement is lost (the server restarted) fails with `Timeout` after
    /// this, and can be sent again: its `Nats-Msg-Id` keeps the server from storing it
    /// twice. Default 10 s.
    pub request_timeout: Duration,
}

impl NatsConfig {
    /// A configuration for one server URL, with the defaults.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            servers: vec![server.into()],
            auth: Auth::None,
            tls: None,
            name: None,
            max_reconnects: None,
            max_reconnect_delay: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Sets the credentials.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Sets TLS.
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the connection name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Connects. A server that refuses the credentials or the TLS handshake (its
    /// certificate not trusted here, the client's refused) is a `Config` error, which
    /// retrying cannot help; one that cannot be reached is a `Connection` error.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        let mut options = match &self.auth {
            Auth::None => async_nats::ConnectOptions::new(),
            Auth::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
            Auth::CredentialsFile(path) => {
                async_nats::ConnectOptions::with_credentials_file(path).await.map_err(|e| {
                    Error::new(ErrorKind::Config, format!("cannot read credentials file {path:?}")).with_source(e)
                })?
            }
            Auth::NKey(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
        };
        if let Some(tls) = &self.tls {
            options = options.require_tls(tls.required);
            if let Some(roots) = &tls.root_certificates {
                options = options.add_root_certificates(roots.clone());
            }
            if let Some((cert, key)) = &tls.client_certificate {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        let max_delay = self.max_reconnect_delay;
        let servers: Arc<str> = self.servers.join(",").into();
        options = options
            .event_callback(move |event| {
                log_event(&servers, &event);
                std::future::ready(())
            })
            .max_reconnects(self.max_reconnects)
            .reconnect_delay_callback(move |attempt| {
                let exp = Duration::from_millis(50).saturating_mul(1u32 << attempt.min(16));
                exp.min(max_delay)
            })
            .connection_timeout(self.connection_timeout)
            .request_timeout(Some(self.request_timeout))
            // Every subject the driver publishes to passed its own check first, stricter
            // than the client's (tokens, no wildcards, no white space or control
            // characters; `subjects.rs` keeps what it checked), or came from the server
            // or the client (inboxes, replies). The client's second look took about 140
            // instructions a publish (callgrind, core publish). JetStream names are
            // checked by the client whatever this says.
            .skip_subject_validation(true);
        let servers: Vec<async_nats::ServerAddr> =
            self.servers.iter().map(|s| server_addr(s)).collect::<Result<_>>()?;
        options.connect(servers).await.map_err(|e| {
            const TLS: &str = "TLS with the NATS server failed (check the root certificates, and the client \
                               certificate if the server wants one) at";
            let (kind, what) = match e.kind() {
                // Retrying with the same settings would be refused the same way.
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => (
                    ErrorKind::Config,
                    "the NATS server refused the credentials (check the user, password, token, nkey or \
                     credentials file) at",
                ),
                ConnectErrorKind::Tls => (ErrorKind::Config, TLS),
                // A handshake that failed on a certificate comes as an I/O error.
                ConnectErrorKind::Io if tidewater_core::reach::refused_certificate(&e) => (ErrorKind::Config, TLS),
                _ => (ErrorKind::Connection, "cannot connect to"),
            };
            Error::new(kind, format!("{what} {:?}", self.servers)).with_source(e).with_driver(DRIVER)
        })
    }
}

/// `url` as a server address, or a configuration error: a URL that can never reach a
/// server (a mistyped scheme, no host) must not look like a broker that is down.
fn server_addr(url: &str) -> Result<async_nats::ServerAddr> {
    let invalid = |why: &str| {
        Error::new(ErrorKind::Config, format!("{url:?} is not a NATS server URL: {why}")).with_driver(DRIVER)
    };
    let addr: async_nats::ServerAddr = url.parse().map_err(|e| invalid("it does not parse").with_source(e))?;
    let parsed = addr.clone().into_inner();
    if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
        return Err(invalid("the scheme must be nats, tls, ws or wss"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    // A URL without a scheme gets `nats://` put in front, so `htp:/nope` would be host
    // `htp` with path `/nope`; a server address has no path.
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(invalid("a server URL has no path or query"));
    }
    Ok(addr)
}

/// The client's connection events in the log. The client reconnects on its own and says
/// so only at debug level, so without these a lost connection shows only as readers and
/// writers that wait.
fn log_event(servers: &str, event: &async_nats::Event) {
    use async_nats::Event as E;
    match event {
        E::Disconnected => tracing::warn!(servers, "lost the connection to NATS; reconnecting"),
        E::Connected => tracing::info!(servers, "connected to NATS"),
        E::LameDuckMode => tracing::warn!(servers, "the NATS server is shutting down (lame duck mode)"),
        E::SlowConsumer(sid) => {
            tracing::warn!(servers, subscription = sid, "NATS dropped messages of a subscription that fell behind")
        }
        E::ServerError(err) => tracing::error!(servers, error = %err, "the NATS server reported an error"),
        E::ClientError(err) => tracing::warn!(servers, error = %err, "the NATS client reported an error"),
        E::Draining | E::Closed => tracing::debug!(servers, %event, "NATS connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_cannot_name_a_server_is_a_configuration_error() {
        for url in ["htp:/nope", "http://example.com", "nats://"] {
            let err = server_addr(url).expect_err(url);
            assert_eq!(err.kind(), ErrorKind::Config, "{url}: {err}");
            assert!(!err.is_retryable());
        }
        for url in ["nats://127.0.0.1:4222", "127.0.0.1:4222", "tls://demo.example:4443", "localhost"] {
            server_addr(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
}
