//! turmoil's simulated TCP behind gatewayworker's [`Net`] trait.
//!
//! turmoil's `TcpStream` is poll-based only (no `readable`/`try_read`, turmoil issue
//! #184), so its streams go through the [`AsyncStream`] adapter. turmoil has no
//! `SO_REUSEPORT`: `reuse_port` is ignored, and a simulation gives each gateway shard an
//! address of its own.

use std::io;
use std::net::SocketAddr;

use gatewayworker::net::{AsyncStream, AsyncStreamLimits, Net, NetListener};

/// The simulated network; every stream gets adapter buffers bounded by `limits`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilNet {
    /// The adapter's buffer bounds for every stream.
    pub limits: AsyncStreamLimits,
}

/// A simulated stream, as the drivers see it.
pub type TurmoilStream = AsyncStream<turmoil::net::TcpStream>;

/// A simulated listener.
pub struct TurmoilListener {
    listener: turmoil::net::TcpListener,
    limits: AsyncStreamLimits,
}

fn adapt(stream: turmoil::net::TcpStream, limits: AsyncStreamLimits) -> io::Result<TurmoilStream> {
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    Ok(AsyncStream::new(stream, local, peer, limits))
}

impl Net for TurmoilNet {
    type Stream = TurmoilStream;
    type Listener = TurmoilListener;

    async fn bind(&self, addr: SocketAddr, _reuse_port: bool) -> io::Result<TurmoilListener> {
        Ok(TurmoilListener {
            listener: turmoil::net::TcpListener::bind(addr).await?,
            limits: self.limits,
        })
    }

    async fn connect(&self, addr: &str) -> io::Result<TurmoilStream> {
        adapt(turmoil::net::TcpStream::connect(addr).await?, self.limits)
    }
}

impl NetListener for TurmoilListener {
    type Stream = TurmoilStream;

    async fn accept(&mut self) -> io::Result<(TurmoilStream, SocketAddr)> {
        let (stream, peer) = self.listener.accept().await?;
        Ok((adapt(stream, self.limits)?, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
