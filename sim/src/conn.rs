//! A simulated end-user connection: WebSocket (tokio-tungstenite) or the newline text
//! protocol, over turmoil TCP, writing through [`ChoppyStream`] so gateways read split
//! and merged segments.

use std::io;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::ChoppyStream;

type Tcp = ChoppyStream<turmoil::net::TcpStream>;

/// Most bytes per simulated segment a client writes.
const CHUNK_MAX: usize = 1460;
/// Bytes a client's writer holds before sending without a flush.
const HOLD_MAX: usize = 4096;
/// Longest line a text client accepts from a gateway.
pub const LINE_MAX: usize = 1 << 20;

/// A client's connection to a gateway.
pub enum Conn {
    /// A websocket client.
    Ws(Box<WebSocketStream<Tcp>>),
    /// A text protocol client: lines in, lines out.
    Text {
        /// The stream.
        stream: Tcp,
        /// Bytes read and not yet a whole line.
        input: Vec<u8>,
    },
}

impl Conn {
    /// Connects to `host:port`; `websocket` picks the protocol; `seed` cuts the writes.
    pub async fn connect(host: &str, port: u16, websocket: bool, seed: u64) -> io::Result<Conn> {
        let tcp = turmoil::net::TcpStream::connect((host, port)).await?;
        let stream = ChoppyStream::new(tcp, seed, CHUNK_MAX, HOLD_MAX);
        if !websocket {
            return Ok(Conn::Text {
                stream,
                input: Vec::new(),
            });
        }
        let mut request = format!("ws://{host}:{port}/sim?from=sim")
            .into_client_request()
            .map_err(io::Error::other)?;
        // tungstenite draws the key from a thread-local RNG; a fixed key keeps the bytes
        // the gateway (and the worker) sees a function of the seed.
        request.headers_mut().insert(
            "sec-websocket-key",
            "dGhlIHNhbXBsZSBub25jZQ==".parse().expect("a valid header"),
        );
        let (ws, _response) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(io::Error::other)?;
        Ok(Conn::Ws(Box::new(ws)))
    }

    /// Sends one message.
    pub async fn send(&mut self, text: &str) -> io::Result<()> {
        match self {
            Conn::Ws(ws) => ws
                .send(Message::text(text.to_string()))
                .await
                .map_err(io::Error::other),
            Conn::Text { stream, .. } => {
                stream.write_all(text.as_bytes()).await?;
                stream.write_all(b"\n").await?;
                stream.flush().await
            }
        }
    }

    /// Sends raw bytes: a websocket binary frame (`binary_frame`, else a text frame of
    /// UTF-8 `bytes`), or a text-protocol line (`bytes` holds no line end).
    pub async fn send_bytes(&mut self, bytes: &[u8], binary_frame: bool) -> io::Result<()> {
        match self {
            Conn::Ws(ws) => {
                let message = if binary_frame {
                    Message::binary(bytes.to_vec())
                } else {
                    Message::text(String::from_utf8_lossy(bytes).into_owned())
                };
                ws.send(message).await.map_err(io::Error::other)
            }
            Conn::Text { stream, .. } => {
                stream.write_all(bytes).await?;
                stream.write_all(b"\n").await?;
                stream.flush().await
            }
        }
    }

    /// The next message; `None` once the connection ended (close, reset, error).
    /// Cancel-safe: a cancelled call loses nothing.
    pub async fn recv(&mut self) -> Option<String> {
        match self {
            Conn::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(t)) => return Some(t.to_string()),
                    Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).into()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            },
            Conn::Text { stream, input } => loop {
                if let Some(at) = input.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = input.drain(..=at).collect();
                    let text = String::from_utf8_lossy(&line);
                    return Some(text.trim_end_matches(['\r', '\n']).to_string());
                }
                if input.len() > LINE_MAX {
                    return None;
                }
                let mut buf = [0u8; 4096];
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => input.extend_from_slice(&buf[..n]),
                }
            },
        }
    }
}
