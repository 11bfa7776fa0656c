//! TLS on both listeners (gRPC and /metrics) from PEM files — a certificate
//! chain, its key, and optionally the CA that client certificates must chain
//! to (mTLS) — re-read on SIGHUP: new connections get the new certificate,
//! open ones keep theirs, none is dropped. Handshakes run beside the accept
//! loop with a time limit, so a slow or silent client delays nobody else.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::net::{LimitedListener, LimitedStream};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 128;

/// The PEM files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate chaining to this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Why TLS cannot be served from the files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Which protocols a listener speaks over TLS (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// gRPC: HTTP/2 only.
    Grpc,
    /// The /metrics shim: HTTP/2 or HTTP/1.1.
    Http,
}

/// The server configurations in force, replaced when the files are read again.
#[derive(Debug)]
pub struct TlsConfig {
    files: TlsFiles,
    grpc: RwLock<Arc<ServerConfig>>,
    http: RwLock<Arc<ServerConfig>>,
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), message: message.to_string() }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(path, err))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles, protocol: Protocol) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|err| file_error(ca, err))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| TlsError::Config(err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| file_error(&files.key, err))?;
    let mut config =
        builder.with_single_cert(certificates(&files.cert)?, key).map_err(|err| TlsError::Config(err.to_string()))?;
    config.alpn_protocols = match protocol {
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(config)
}

impl TlsConfig {
    /// Reads the files.
    ///
    /// # Errors
    /// A file is missing or unusable, or the key does not match the certificate.
    pub fn load(files: TlsFiles) -> Result<TlsConfig, TlsError> {
        let grpc = server_config(&files, Protocol::Grpc)?;
        let http = server_config(&files, Protocol::Http)?;
        Ok(TlsConfig { files, grpc: RwLock::new(Arc::new(grpc)), http: RwLock::new(Arc::new(http)) })
    }

    /// Reads the files again; on failure the configuration in force stays.
    pub fn reload(&self) {
        match (server_config(&self.files, Protocol::Grpc), server_config(&self.files, Protocol::Http)) {
            (Ok(grpc), Ok(http)) => {
                *self.grpc.write().expect("tls config") = Arc::new(grpc);
                *self.http.write().expect("tls config") = Arc::new(http);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate read again");
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(error = %err, "TLS files not reloaded; the certificate in force stays");
            }
        }
    }

    fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        let config = match protocol {
            Protocol::Grpc => &self.grpc,
            Protocol::Http => &self.http,
        };
        TlsAcceptor::from(config.read().expect("tls config").clone())
    }

    /// Reloads on SIGHUP until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(err) => {
                tracing::warn!(error = %err, "no SIGHUP handler: TLS files are read at start only");
                return;
            }
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = hangup.recv() => self.reload(),
            }
        }
    }
}

/// What the server knows of a connection's peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate chain, leaf first, when it presented one (mTLS).
    pub certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
}

/// An accepted connection, plain or over TLS.
pub enum Connection {
    Plain(LimitedStream),
    Tls(Box<TlsStream<LimitedStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        match self {
            Connection::Plain(stream) => {
                PeerInfo { remote_addr: stream.connect_info().remote_addr(), certificates: None }
            }
            Connection::Tls(stream) => {
                let (tcp, session) = stream.get_ref();
                PeerInfo {
                    remote_addr: tcp.connect_info().remote_addr(),
                    certificates: session.peer_certificates().map(|certs| Arc::new(certs.to_vec())),
                }
            }
        }
    }
}

/// Connections a listener accepted (and, with TLS, whose handshake ended
/// well), in the order they became ready.
pub struct Incoming {
    connections: mpsc::Receiver<(Connection, SocketAddr)>,
    local_addr: SocketAddr,
}

impl Incoming {
    /// Accepts from `listener` until it is dropped, with TLS when `tls` is set.
    pub fn new(listener: LimitedListener, tls: Option<Arc<TlsConfig>>, protocol: Protocol) -> io::Result<Incoming> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept_limited() => accepted,
                };
                let Some(tls) = &tls else {
                    if tx.send((Connection::Plain(stream), addr)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let (acceptor, tx) = (tls.acceptor(protocol), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((Connection::Tls(Box::new(stream)), addr)).await;
                        }
                        Ok(Err(err)) => tracing::debug!(%addr, error = %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake too slow"),
                    }
                });
            }
        });
        Ok(Incoming { connections: rx, local_addr })
    }

    /// The connections as the stream tonic serves from.
    pub fn into_stream(self) -> impl tokio_stream::Stream<Item = io::Result<Connection>> + Send + 'static {
        use tokio_stream::StreamExt;
        tokio_stream::wrappers::ReceiverStream::new(self.connections).map(|(connection, _)| Ok(connection))
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
