//! `wss://`: a TLS listener for the public port, built on rustls (ring provider).
//!
//! [`TlsListener`] accepts TCP connections and runs their TLS handshakes concurrently,
//! each bounded in time, at most `handshakes_max` at once, so that one slow or silent
//! client neither delays the others nor holds memory forever. A finished handshake comes
//! out of [`NetListener::accept`] as a [`TlsStream`]: the TLS stream seen through the
//! [`AsyncStream`] adapter, ready for the very same driver that serves plain TCP.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::{AsyncStream, AsyncStreamLimits, NetListener, TokioListener};

/// A client's TLS stream, as the driver sees it.
pub type TlsStream = AsyncStream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Where the certificate and key are, and the bounds of the handshake phase.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM file with the certificate chain, leaf first.
    pub cert_path: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// Longest time a client may take to complete its handshake, default 10 s; then its
    /// connection is dropped.
    pub handshake_time_max: Duration,
    /// Handshakes in progress at once, default 1 024; at the bound, the listener stops
    /// accepting until one finishes (new clients wait in the kernel's backlog).
    pub handshakes_max: usize,
    /// The adapter's buffers for each client.
    pub stream_limits: AsyncStreamLimits,
}

impl TlsSettings {
    /// Settings for the certificate chain and key in these PEM files, default bounds.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            handshake_time_max: Duration::from_secs(10),
            handshakes_max: 1024,
            stream_limits: AsyncStreamLimits::default(),
        }
    }

    /// Reads the PEM files and builds the acceptor. Errors name the file at fault.
    pub fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let certs = CertificateDer::pem_file_iter(&self.cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(&self.cert_path, e))?;
        if certs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no certificate in the file", self.cert_path.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_path)
            .map_err(|e| pem_error(&self.key_path, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(invalid_config)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(invalid_config)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

fn invalid_config(e: rustls::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("TLS configuration: {e}"),
    )
}

/// A TCP listener whose connections come out after a completed TLS handshake.
pub struct TlsListener {
    tcp: TokioListener,
    acceptor: TlsAcceptor,
    settings: TlsSettings,
    handshakes: JoinSet<io::Result<(TlsStream, SocketAddr)>>,
}

impl TlsListener {
    /// Serves TLS on `tcp` with `acceptor` (see [`TlsSettings::acceptor`]).
    pub fn new(tcp: TokioListener, acceptor: TlsAcceptor, settings: TlsSettings) -> TlsListener {
        assert!(
            settings.handshakes_max > 0,
            "handshakes_max must be positive"
        );
        TlsListener {
            tcp,
            acceptor,
            settings,
            handshakes: JoinSet::new(),
        }
    }

    /// Handshakes in progress.
    pub fn handshakes(&self) -> usize {
        self.handshakes.len()
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        let time_max = self.settings.handshake_time_max;
        let limits = self.settings.stream_limits;
        self.handshakes.spawn(async move {
            let local = tcp.local_addr()?;
            let tls = tokio::time::timeout(time_max, acceptor.accept(tcp))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")
                })??;
            Ok((AsyncStream::new(tls, local, peer, limits), peer))
        });
    }
}

impl NetListener for TlsListener {
    type Stream = TlsStream;

    /// Cancel-safe: handshakes live in the listener, not in this future.
    async fn accept(&mut self) -> io::Result<(TlsStream, SocketAddr)> {
        loop {
            let room = self.handshakes.len() < self.settings.handshakes_max;
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next() => match done {
                    Ok(Ok(accepted)) => return Ok(accepted),
                    // A failed handshake is that client's problem, not the listener's.
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(e) => tracing::warn!(error = %e, "TLS handshake task ended abnormally"),
                },
                accepted = self.tcp.0.accept(), if room => {
                    let (tcp, peer) = accepted?;
                    self.start_handshake(tcp, peer);
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
