//! One short TCP exchange, the way the original GatewayClient talks: connect, write the
//! whole request in one write, and for a query read exactly one answer, then close.
//!
//! A gateway link carries one request, so there is no reply matching to do and a lost
//! connection costs one call, not a cluster of pending ones.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::LinkFailure;
use crate::protocol::frame::ReplyDecoder;
use crate::protocol::register::{LineDecodeError, LineDecoder};

/// A connection the client talks over.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {
    /// An idle connection still looks usable: nothing to read and not closed (a gateway
    /// never writes on an API link unasked).
    fn idle_usable(&self) -> bool;
}

impl ClientStream for TcpStream {
    fn idle_usable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// A connection as the client holds it.
pub type Stream = Box<dyn ClientStream>;

/// A boxed future of a [`Connector`].
pub type ConnectorFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How the client reaches an address: [`TokioConnector`] (the network), or a simulated
/// network (the `sim` crate's world). Set through the hidden
/// `ClientSettings::connector`.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Opens a connection to `addr`.
    fn connect(&self, addr: SocketAddr) -> ConnectorFuture<'_, io::Result<Stream>>;
    /// `host:port` → the first socket address it resolves to.
    fn resolve<'a>(&'a self, address: &'a str) -> ConnectorFuture<'a, Result<SocketAddr, String>>;
}

/// tokio's TCP and DNS: what the client uses unless told otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioConnector;

impl Connector for TokioConnector {
    fn connect(&self, addr: SocketAddr) -> ConnectorFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            // One write per request: do not let Nagle hold the tail of it.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as Stream)
        })
    }

    fn resolve<'a>(&'a self, address: &'a str) -> ConnectorFuture<'a, Result<SocketAddr, String>> {
        Box::pin(super::directory::resolve(address))
    }
}

/// Connects to `addr` within `connect_timeout`.
pub async fn connect(
    connector: &dyn Connector,
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<Stream, LinkFailure> {
    tokio::time::timeout(connect_timeout, connector.connect(addr))
        .await
        .map_err(|_| LinkFailure::ConnectTimeout(connect_timeout))?
        .map_err(|e| LinkFailure::Connect(e.to_string()))
}

/// Writes `request` and closes: a command without a reply.
pub async fn send(
    connector: &dyn Connector,
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
) -> Result<(), LinkFailure> {
    let mut stream = connect(connector, addr, connect_timeout).await?;
    write(&mut stream, request, connect_timeout).await?;
    // FIN after the request: the gateway reads everything before it sees the end.
    let _ = stream.shutdown().await;
    Ok(())
}

/// Writes `request` on an open stream, within `timeout`.
pub async fn write(
    stream: &mut Stream,
    request: &[u8],
    timeout: Duration,
) -> Result<(), LinkFailure> {
    tokio::time::timeout(timeout, stream.write_all(request))
        .await
        .map_err(|_| LinkFailure::Write(format!("not written within {timeout:?}")))?
        .map_err(|e| LinkFailure::Write(e.to_string()))
}

/// Writes `request` and reads one reply record (spec 1.4); returns its payload.
/// `on_read` is called after every read that did not fail (bytes, or the end of the
/// stream): the gateway is alive.
pub async fn query(
    connector: &dyn Connector,
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
    reply_timeout: Duration,
    reply_size_max: u32,
    on_read: &(dyn Fn() + Sync),
) -> Result<Bytes, LinkFailure> {
    let mut stream = connect(connector, addr, connect_timeout).await?;
    query_on(&mut stream, request, reply_timeout, reply_size_max, on_read).await
}

/// [`query`] on an open stream; the stream is fit for another request only on success.
pub async fn query_on(
    stream: &mut Stream,
    request: &[u8],
    reply_timeout: Duration,
    reply_size_max: u32,
    on_read: &(dyn Fn() + Sync),
) -> Result<Bytes, LinkFailure> {
    let exchange = async {
        stream
            .write_all(request)
            .await
            .map_err(|e| LinkFailure::Write(e.to_string()))?;
        let mut input = BytesMut::with_capacity(256);
        let mut decoder = ReplyDecoder::new(reply_size_max);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(payload)) => return Ok(payload),
                Ok(None) => {}
                Err(_) => return Err(LinkFailure::TooLarge(u64::from(reply_size_max))),
            }
            let read = read_more(stream, &mut input).await;
            if matches!(read, Ok(()) | Err(LinkFailure::Closed)) {
                on_read();
            }
            read?;
        }
    };
    tokio::time::timeout(reply_timeout, exchange)
        .await
        .map_err(|_| LinkFailure::ReplyTimeout(reply_timeout))?
}

/// Writes `request` (one line) and reads one `\n`-terminated line back (register).
pub async fn line(
    connector: &dyn Connector,
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
    reply_timeout: Duration,
    line_length_max: usize,
) -> Result<Bytes, LinkFailure> {
    let mut stream = connect(connector, addr, connect_timeout).await?;
    let exchange = async {
        stream
            .write_all(request)
            .await
            .map_err(|e| LinkFailure::Write(e.to_string()))?;
        let mut input = BytesMut::with_capacity(256);
        let mut decoder = LineDecoder::new(line_length_max);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(line)) => return Ok(line),
                Ok(None) => {}
                Err(LineDecodeError::TooLong { line_length_max }) => {
                    return Err(LinkFailure::TooLarge(line_length_max as u64))
                }
            }
            read_more(&mut stream, &mut input).await?;
        }
    };
    tokio::time::timeout(reply_timeout, exchange)
        .await
        .map_err(|_| LinkFailure::ReplyTimeout(reply_timeout))?
}

async fn read_more(stream: &mut Stream, input: &mut BytesMut) -> Result<(), LinkFailure> {
    if input.capacity() == input.len() {
        input.reserve(4096);
    }
    match stream.read_buf(input).await {
        Ok(0) => Err(LinkFailure::Closed),
        Ok(_) => Ok(()),
        Err(e) => Err(LinkFailure::Read(e.to_string())),
    }
}
