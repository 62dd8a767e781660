//! A loopback proxy between the pulsar crate and pulsar-lite, for tests only.
//!
//! Why it exists: pulsar-lite leaves out the optional magic number and CRC32C checksum
//! in the payload frames it sends to consumers. Real Pulsar brokers always send them, and
//! the pulsar crate rejects frames without them, so against pulsar-lite the crate never
//! delivers a message (brokers.md). The driver must stay exactly what it is against a
//! real broker, so the tests fix the frames on the way instead:
//!
//! - broker to client: a frame with a payload section that does not start with the
//!   magic `0e 01` gets the magic and a CRC32C over what follows it (metadata size,
//!   metadata, payload), and its total size grows by 6, which is what a real broker sends;
//! - broker to client: topic-lookup answers name the proxy, not the address pulsar-lite
//!   advertises (its own `--addr`), so clients keep talking through the proxy;
//! - client to broker: passed on unchanged; the `Connect` commands are recorded so tests
//!   can check what clients sent (token authentication).
//!
//! With [`Proxy::start_tls`] it also terminates TLS, so the driver's `pulsar+ssl://`
//! connections can be tested (pulsar-lite has no TLS).
//!
//! It runs on a thread of its own, so it outlives the runtime of any one test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prost::Message as _;
use pulsar::message::proto::{base_command, BaseCommand};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_native_tls::TlsAcceptor;

const MAGIC: [u8; 2] = [0x0e, 0x01];
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// What a client sent in its `Connect` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    pub auth_method: Option<String>,
    pub auth_data: Option<Vec<u8>>,
}

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    tls: bool,
    connects: Arc<Mutex<Vec<Connect>>>,
}

impl Proxy {
    /// Starts a proxy on a free loopback port in front of the broker at `broker`.
    pub fn start(broker: SocketAddr) -> Self {
        Self::start_with(broker, None)
    }

    /// Starts a proxy that clients reach with TLS, with the server certificate and
    /// PKCS#8 key in `cert_pem` and `key_pem`.
    pub fn start_tls(broker: SocketAddr, cert_pem: &[u8], key_pem: &[u8]) -> Self {
        let identity = native_tls::Identity::from_pkcs8(cert_pem, key_pem).expect("a PEM certificate and key");
        let acceptor = native_tls::TlsAcceptor::new(identity).expect("a TLS acceptor");
        Self::start_with(broker, Some(TlsAcceptor::from(acceptor)))
    }

    fn start_with(broker: SocketAddr, tls: Option<TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let proxy = Self { port, tls: tls.is_some(), connects: Arc::clone(&connects) };
        let url = proxy.url();
        std::thread::Builder::new()
            .name(format!("pulsar-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((client, _)) = listener.accept().await else { continue };
                        let (connects, tls, url) = (Arc::clone(&connects), tls.clone(), url.clone());
                        tokio::spawn(async move {
                            let Ok(upstream) = TcpStream::connect(broker).await else { return };
                            let _ = client.set_nodelay(true);
                            let _ = upstream.set_nodelay(true);
                            match tls {
                                Some(tls) => {
                                    let Ok(client) = tls.accept(client).await else { return };
                                    relay(client, upstream, connects, url).await
                                }
                                None => relay(client, upstream, connects, url).await,
                            }
                        });
                    }
                });
            })
            .expect("proxy thread");
        proxy
    }

    /// The URL clients use.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "pulsar+ssl" } else { "pulsar" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The `Connect` commands clients sent so far.
    pub fn connects(&self) -> Vec<Connect> {
        self.connects.lock().unwrap().clone()
    }
}

async fn relay(
    client: impl AsyncRead + AsyncWrite + Send + 'static,
    broker: TcpStream,
    connects: Arc<Mutex<Vec<Connect>>>,
    url: String,
) {
    let (client_read, client_write) = tokio::io::split(client);
    let (broker_read, broker_write) = broker.into_split();
    tokio::select! {
        _ = to_broker(client_read, broker_write, connects) => {}
        _ = to_client(broker_read, client_write, url) => {}
    }
}

/// Reads one frame (its bytes after the total size), or `None` at the end.
async fn read_frame(from: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let total = from.read_u32().await.ok()? as usize;
    buf.resize(total, 0);
    from.read_exact(buf).await.ok()?;
    Some(())
}

async fn to_broker(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    connects: Arc<Mutex<Vec<Connect>>>,
) {
    let mut frame = Vec::new();
    let mut out = Vec::new();
    while read_frame(&mut from, &mut frame).await.is_some() {
        if let Some(command) = command_of(&frame) {
            if let Some(connect) = command.connect {
                connects
                    .lock()
                    .unwrap()
                    .push(Connect { auth_method: connect.auth_method_name, auth_data: connect.auth_data });
            }
        }
        out.clear();
        out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        out.extend_from_slice(&frame);
        if to.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn to_client(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, url: String) {
    let mut frame = Vec::new();
    let mut out = Vec::new();
    while read_frame(&mut from, &mut frame).await.is_some() {
        out.clear();
        if !fix_frame(&frame, &url, &mut out) {
            return;
        }
        if to.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn command_of(frame: &[u8]) -> Option<BaseCommand> {
    let size = u32::from_be_bytes(frame.get(..4)?.try_into().ok()?) as usize;
    BaseCommand::decode(frame.get(4..4 + size)?).ok()
}

/// Writes `frame` (without its total size) as a real broker would have sent it: lookup
/// answers pointing at `url`, and payloads with their checksum. False if it is malformed.
fn fix_frame(frame: &[u8], url: &str, out: &mut Vec<u8>) -> bool {
    let Some(size) = frame.get(..4).map(|b| u32::from_be_bytes(b.try_into().unwrap()) as usize) else {
        return false;
    };
    let Some(mut command) = frame.get(4..4 + size) else { return false };
    let rewritten;
    if let Ok(mut decoded) = BaseCommand::decode(command) {
        if decoded.r#type == base_command::Type::LookupResponse as i32 {
            if let Some(lookup) = decoded.lookup_topic_response.as_mut() {
                // The client takes the URL of the scheme it connected with.
                lookup.broker_service_url = Some(url.to_owned());
                lookup.broker_service_url_tls = Some(url.to_owned());
                rewritten = decoded.encode_to_vec();
                command = &rewritten;
            }
        }
    }
    let payload = &frame[4 + size..];
    let checksum = !payload.is_empty() && !payload.starts_with(&MAGIC);
    let total = 4 + command.len() + payload.len() + if checksum { 6 } else { 0 };
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(command.len() as u32).to_be_bytes());
    out.extend_from_slice(command);
    if checksum {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&CRC32C.checksum(payload).to_be_bytes());
    }
    out.extend_from_slice(payload);
    true
}
