//! A simulated end-user connection: WebSocket (tokio-tungstenite) or the newline text
//! protocol, over turmoil TCP, writing through [`ChoppyStream`] so gateways read split
//! and merged segments.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::ChoppyStream;

type Tcp = ChoppyStream<turmoil::net::TcpStream>;
type Ws = WebSocketStream<Tcp>;

/// Most bytes per simulated segment a client writes.
const CHUNK_MAX: usize = 1460;
/// Bytes a client's writer holds before sending without a flush.
const HOLD_MAX: usize = 4096;
/// Longest line a text client accepts from a gateway.
pub const LINE_MAX: usize = 1 << 20;
/// Messages a client keeps that arrived while it was writing. At the bound it stops
/// reading until the write is done (TCP backpressure on the gateway, as a full receive
/// buffer would give). Far above what a 15 s send can gather in any workload seed.
pub const INBOX_MAX: usize = 4096;

/// A client's connection to a gateway. Full duplex, as a browser's: while a write is
/// under way (a large message takes a while under turmoil's flow control) it keeps
/// reading, and what arrives meanwhile waits in an inbox with its arrival time. A
/// client that only read between its writes would miss pushes that were due, and a
/// connection ended during a long write would seem to have lost them (sim seeds 9500155
/// and 8501291).
pub struct Conn {
    reader: Reader,
    writer: Writer,
    /// Messages read during a write, with the simulated time they arrived.
    inbox: VecDeque<(String, Duration)>,
    /// The reading side saw the end of the connection during a write.
    ended: bool,
}

enum Reader {
    Ws(SplitStream<Ws>),
    Text {
        half: ReadHalf<Tcp>,
        /// Bytes read and not yet a whole line.
        input: Vec<u8>,
    },
}

enum Writer {
    Ws(SplitSink<Ws, Message>),
    Text(WriteHalf<Tcp>),
}

/// What one send writes.
enum Outgoing<'a> {
    /// A text message (a websocket text frame, or a line).
    Text(&'a str),
    /// Raw bytes: a websocket binary frame (`binary_frame`), else a text frame of their
    /// UTF-8 reading, or a text-protocol line.
    Bytes { bytes: &'a [u8], binary_frame: bool },
}

impl Conn {
    /// Connects to `host:port`; `websocket` picks the protocol; `seed` cuts the writes.
    pub async fn connect(host: &str, port: u16, websocket: bool, seed: u64) -> io::Result<Conn> {
        let tcp = turmoil::net::TcpStream::connect((host, port)).await?;
        let stream = ChoppyStream::new(tcp, seed, CHUNK_MAX, HOLD_MAX);
        let (reader, writer) = if websocket {
            let mut request = format!("ws://{host}:{port}/sim?from=sim")
                .into_client_request()
                .map_err(io::Error::other)?;
            // tungstenite draws the key from a thread-local RNG; a fixed key keeps the
            // bytes the gateway (and the worker) sees a function of the seed.
            request.headers_mut().insert(
                "sec-websocket-key",
                "dGhlIHNhbXBsZSBub25jZQ==".parse().expect("a valid header"),
            );
            let (ws, _response) = tokio_tungstenite::client_async(request, stream)
                .await
                .map_err(io::Error::other)?;
            let (sink, stream) = ws.split();
            (Reader::Ws(stream), Writer::Ws(sink))
        } else {
            let (half, write) = tokio::io::split(stream);
            let reader = Reader::Text {
                half,
                input: Vec::new(),
            };
            (reader, Writer::Text(write))
        };
        Ok(Conn {
            reader,
            writer,
            inbox: VecDeque::new(),
            ended: false,
        })
    }

    /// Sends one message, reading meanwhile.
    pub async fn send(&mut self, text: &str) -> io::Result<()> {
        self.send_reading(Outgoing::Text(text)).await
    }

    /// Sends raw bytes: a websocket binary frame (`binary_frame`, else a text frame of
    /// UTF-8 `bytes`), or a text-protocol line (`bytes` holds no line end); reads
    /// meanwhile.
    pub async fn send_bytes(&mut self, bytes: &[u8], binary_frame: bool) -> io::Result<()> {
        self.send_reading(Outgoing::Bytes {
            bytes,
            binary_frame,
        })
        .await
    }

    async fn send_reading(&mut self, outgoing: Outgoing<'_>) -> io::Result<()> {
        let Conn {
            reader,
            writer,
            inbox,
            ended,
        } = self;
        let write = writer.write(outgoing);
        tokio::pin!(write);
        loop {
            tokio::select! {
                biased;
                done = &mut write => return done,
                message = reader.recv(), if !*ended && inbox.len() < INBOX_MAX => match message {
                    Some(text) => inbox.push_back((text, turmoil::elapsed())),
                    // The gateway closed the connection: a real socket's write now fails
                    // (the peer resets it), while turmoil leaves a writer that waits for
                    // flow-control credit asleep for good (seed 8501291: 15 s).
                    None => {
                        *ended = true;
                        return Err(io::ErrorKind::ConnectionReset.into());
                    }
                },
            }
        }
    }

    /// Takes the messages that arrived during the last send, oldest first.
    pub fn take_received(&mut self) -> VecDeque<(String, Duration)> {
        std::mem::take(&mut self.inbox)
    }

    /// Puts messages back in front of the inbox (in their order): `recv` returns them
    /// first.
    pub fn put_back(&mut self, messages: Vec<(String, Duration)>) {
        for message in messages.into_iter().rev() {
            self.inbox.push_front(message);
        }
    }

    /// The next message and the simulated time it arrived; `None` once the connection
    /// ended (close, reset, error). Messages that came during a send come first.
    /// Cancel-safe: a cancelled call loses nothing.
    pub async fn recv(&mut self) -> Option<(String, Duration)> {
        if let Some(message) = self.inbox.pop_front() {
            return Some(message);
        }
        if self.ended {
            return None;
        }
        let text = self.reader.recv().await;
        if text.is_none() {
            self.ended = true;
        }
        Some((text?, turmoil::elapsed()))
    }
}

impl Writer {
    async fn write(&mut self, outgoing: Outgoing<'_>) -> io::Result<()> {
        match self {
            Writer::Ws(sink) => {
                let message = match outgoing {
                    Outgoing::Text(text) => Message::text(text.to_string()),
                    Outgoing::Bytes {
                        bytes,
                        binary_frame: true,
                    } => Message::binary(bytes.to_vec()),
                    Outgoing::Bytes { bytes, .. } => {
                        Message::text(String::from_utf8_lossy(bytes).into_owned())
                    }
                };
                sink.send(message).await.map_err(io::Error::other)
            }
            Writer::Text(stream) => {
                let bytes = match outgoing {
                    Outgoing::Text(text) => text.as_bytes(),
                    Outgoing::Bytes { bytes, .. } => bytes,
                };
                stream.write_all(bytes).await?;
                stream.write_all(b"\n").await?;
                stream.flush().await
            }
        }
    }
}

impl Reader {
    /// The next message; `None` once the connection ended. Cancel-safe.
    async fn recv(&mut self) -> Option<String> {
        match self {
            Reader::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(t)) => return Some(t.to_string()),
                    Ok(Message::Binary(b)) => return Some(String::from_utf8_lossy(&b).into()),
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => continue,
                }
            },
            Reader::Text { half, input } => loop {
                if let Some(at) = input.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = input.drain(..=at).collect();
                    let text = String::from_utf8_lossy(&line);
                    return Some(text.trim_end_matches(['\r', '\n']).to_string());
                }
                if input.len() > LINE_MAX {
                    return None;
                }
                let mut buf = [0u8; 4096];
                match half.read(&mut buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => input.extend_from_slice(&buf[..n]),
                }
            },
        }
    }
}
