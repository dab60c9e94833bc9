//! One short TCP exchange, the way the original GatewayClient talks: connect, write the
//! whole request in one write, and for a query read exactly one answer, then close.
//!
//! A gateway link carries one request, so there is no reply matching to do and a lost
//! connection costs one call, not a cluster of pending ones.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::LinkFailure;
use crate::protocol::frame::ReplyDecoder;
use crate::protocol::register::{LineDecodeError, LineDecoder};

/// Connects to `addr` within `connect_timeout`.
pub async fn connect(
    addr: SocketAddr,
    connect_timeout: Duration,
) -> Result<TcpStream, LinkFailure> {
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| LinkFailure::ConnectTimeout(connect_timeout))?
        .map_err(|e| LinkFailure::Connect(e.to_string()))?;
    // One write per request: do not let Nagle hold the tail of it.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Writes `request` and closes: a command without a reply.
pub async fn send(
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
) -> Result<(), LinkFailure> {
    let mut stream = connect(addr, connect_timeout).await?;
    write(&mut stream, request, connect_timeout).await?;
    // FIN after the request: the gateway reads everything before it sees the end.
    let _ = stream.shutdown().await;
    Ok(())
}

/// Writes `request` on an open stream, within `timeout`.
pub async fn write(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> Result<(), LinkFailure> {
    tokio::time::timeout(timeout, stream.write_all(request))
        .await
        .map_err(|_| LinkFailure::Write(format!("not written within {timeout:?}")))?
        .map_err(|e| LinkFailure::Write(e.to_string()))
}

/// Writes `request` and reads one reply record (spec 1.4); returns its payload.
pub async fn query(
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
    reply_timeout: Duration,
    reply_size_max: u32,
) -> Result<Bytes, LinkFailure> {
    let mut stream = connect(addr, connect_timeout).await?;
    query_on(&mut stream, request, reply_timeout, reply_size_max).await
}

/// [`query`] on an open stream; the stream is fit for another request only on success.
pub async fn query_on(
    stream: &mut TcpStream,
    request: &[u8],
    reply_timeout: Duration,
    reply_size_max: u32,
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
            read_more(stream, &mut input).await?;
        }
    };
    tokio::time::timeout(reply_timeout, exchange)
        .await
        .map_err(|_| LinkFailure::ReplyTimeout(reply_timeout))?
}

/// Writes `request` (one line) and reads one `\n`-terminated line back (register).
pub async fn line(
    addr: SocketAddr,
    request: &[u8],
    connect_timeout: Duration,
    reply_timeout: Duration,
    line_length_max: usize,
) -> Result<Bytes, LinkFailure> {
    let mut stream = connect(addr, connect_timeout).await?;
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

async fn read_more(stream: &mut TcpStream, input: &mut BytesMut) -> Result<(), LinkFailure> {
    if input.capacity() == input.len() {
        input.reserve(4096);
    }
    match stream.read_buf(input).await {
        Ok(0) => Err(LinkFailure::Closed),
        Ok(_) => Ok(()),
        Err(e) => Err(LinkFailure::Read(e.to_string())),
    }
}
