//! A bounded pool of connections to one broker address.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::connection::Connection;
use crate::errors::connection;
use crate::{StreamBusConfig, DRIVER};
use tidewater_core::{Error, ErrorKind, Result};

/// Up to `pool_size` connections to one address. A connection is lent out for one
/// request and its response (the protocol has no multiplexing); one that failed in
/// any way is dropped, never returned. Idle connections are closed before the
/// broker's idle fault can reach them.
pub(crate) struct Pool {
    addr: String,
    config: Arc<StreamBusConfig>,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Connection>>,
    /// Consecutive failed dials and when the next may start: reconnects back off.
    dial_state: Mutex<(u32, Instant)>,
    /// Whether the last exchange with the broker went through, and when it ended.
    link: Mutex<(Link, Instant)>,
}

/// What the last exchange with a broker said of the way there: nothing yet, a request
/// answered, or a dial or connection that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Untried,
    Up,
    Down,
}

/// A connection lent by the pool. Dropping it closes the connection; [`Lease::release`]
/// gives it back.
pub(crate) struct Lease {
    pub(crate) conn: Connection,
    pool: Arc<Pool>,
    /// `None` for a connection lent outside the limit; see [`Pool::get_outside_limit`].
    _permit: Option<OwnedSemaphorePermit>,
}

impl Lease {
    /// Returns the connection to the pool, after a call that went well.
    pub(crate) fn release(self) {
        let Lease { conn, pool, _permit } = self;
        pool.idle.lock().unwrap().push(conn);
    }
}

impl Pool {
    pub(crate) fn new(addr: String, config: Arc<StreamBusConfig>) -> Arc<Self> {
        let pool = Arc::new(Self {
            addr,
            permits: Arc::new(Semaphore::new(config.pool_size.max(1))),
            config,
            idle: Mutex::new(Vec::new()),
            dial_state: Mutex::new((0, Instant::now())),
            link: Mutex::new((Link::Untried, Instant::now())),
        });
        spawn_reaper(Arc::downgrade(&pool), pool.config.idle_close);
        pool
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the last exchange with the broker went through, and when it ended.
    pub(crate) fn link(&self) -> (Link, Instant) {
        *self.link.lock().unwrap()
    }

    /// Notes how an exchange with the broker went (answered, or a connection that failed
    /// or timed out), and logs a change of what was known: the driver reconnects by
    /// itself, so without this a service's logs would show nothing of an outage for the
    /// first 30 s, until a fetch gave up.
    pub(crate) fn note(&self, link: Link) {
        let was = std::mem::replace(&mut *self.link.lock().unwrap(), (link, Instant::now())).0;
        match (was, link) {
            (Link::Up, Link::Down) => {
                tracing::warn!(broker = %self.addr, "lost the connection to StreamBus; reconnecting")
            }
            (Link::Down, Link::Up) => tracing::info!(broker = %self.addr, "connected to StreamBus again"),
            _ => {}
        }
    }

    /// A connection: an idle one, or a new one. Waits up to `acquire_timeout` when
    /// every connection is lent out.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Lease> {
        let deadline = Instant::now() + self.config.acquire_timeout;
        let permit = tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Busy,
                    format!(
                        "all {} connections to {} stayed busy for {:?}",
                        self.config.pool_size, self.addr, self.config.acquire_timeout
                    ),
                )
                .with_driver(DRIVER)
            })?
            .expect("the pool's semaphore is never closed");
        let conn = self.idle_or_dial(deadline).await?;
        Ok(Lease { conn, pool: Arc::clone(self), _permit: Some(permit) })
    }

    /// A connection that does not count against `pool_size`, for a request the broker
    /// may hold for a long time: a JoinGroup is answered only when its join round
    /// completes. Lent from the pool, a few members rejoining at once took every
    /// connection and starved the heartbeats, syncs and commits their round was waiting
    /// for, so rounds ended at their deadline without those members, who then rejoined
    /// and started another: the conformance stress run on the broker double livelocked
    /// this way. Given back, it joins the idle connections like any other.
    pub(crate) async fn get_outside_limit(self: &Arc<Self>) -> Result<Lease> {
        let conn = self.idle_or_dial(Instant::now() + self.config.acquire_timeout).await?;
        Ok(Lease { conn, pool: Arc::clone(self), _permit: None })
    }

    /// An idle connection that is not too old to trust, or a new one.
    async fn idle_or_dial(&self, deadline: Instant) -> Result<Connection> {
        let fresh = {
            let mut idle = self.idle.lock().unwrap();
            let limit = self.config.idle_close;
            idle.retain(|c| c.last_used.elapsed() < limit);
            idle.pop()
        };
        match fresh {
            Some(conn) => Ok(conn),
            None => self.dial(deadline).await,
        }
    }

    async fn dial(&self, deadline: Instant) -> Result<Connection> {
        let wait_until = self.dial_state.lock().unwrap().1;
        if wait_until > Instant::now() {
            if wait_until > deadline {
                return Err(connection(
                    format!("{} is unreachable; backing off before the next dial", self.addr),
                    "reconnect back-off",
                ));
            }
            tokio::time::sleep_until(wait_until).await;
        }
        let attempt = async {
            let tcp = Connection::dial_tcp(&self.addr).await?;
            self.wrap(tcp).await
        };
        match tokio::time::timeout(self.config.connect_timeout, attempt).await {
            Ok(Ok(conn)) => {
                *self.dial_state.lock().unwrap() = (0, Instant::now());
                Ok(conn)
            }
            outcome => {
                let mut state = self.dial_state.lock().unwrap();
                state.0 += 1;
                let backoff = Duration::from_millis(20).saturating_mul(1 << state.0.min(8)).min(Duration::from_secs(2));
                state.1 = Instant::now() + backoff;
                drop(state);
                self.note(Link::Down);
                let why = match outcome {
                    Ok(Err(e)) if refused_certificate(&e) => {
                        // Retrying with the same roots and certificate fails the same way.
                        let what = format!(
                            "TLS with the StreamBus broker at {} failed (check the root certificates, and the \
                             client certificate if the broker wants one)",
                            self.addr
                        );
                        return Err(Error::new(ErrorKind::Config, what).with_driver(DRIVER).with_source(e));
                    }
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no connection within {:?}", self.config.connect_timeout),
                };
                Err(connection(format!("cannot connect to the StreamBus broker at {}", self.addr), why))
            }
        }
    }

    #[cfg(feature = "tls")]
    async fn wrap(&self, tcp: tokio::net::TcpStream) -> std::io::Result<Connection> {
        match &self.config.tls {
            Some(tls) => Ok(Connection::new(Box::new(tls.connect(tcp).await?))),
            None => Ok(Connection::new(Box::new(tcp))),
        }
    }

    #[cfg(not(feature = "tls"))]
    async fn wrap(&self, tcp: tokio::net::TcpStream) -> std::io::Result<Connection> {
        Ok(Connection::new(Box::new(tcp)))
    }

    /// Idle connections, for tests.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().len()
    }
}

/// Closes connections that sat idle for `limit`, checking four times per period, and
/// ends with the pool.
fn spawn_reaper(pool: Weak<Pool>, limit: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let period = (limit / 4).max(Duration::from_millis(5));
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            pool.idle.lock().unwrap().retain(|c| c.last_used.elapsed() < limit);
        }
    });
}

/// Whether a failed dial was a TLS handshake that failed on a certificate.
#[cfg(feature = "tls")]
fn refused_certificate(err: &std::io::Error) -> bool {
    tidewater_core::reach::refused_certificate(err)
}

#[cfg(not(feature = "tls"))]
fn refused_certificate(_: &std::io::Error) -> bool {
    false
}
