//! A lean WebSocket client (and the server-side framing the reference servers need):
//! one read buffer per connection, pre-encoded request frames, no per-message allocation
//! on the client side, so the load generator spends its CPU on the sockets.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

/// The client's masking key: fixed, since the server cannot tell and it keeps frames
/// pre-encodable (the server unmasks every byte either way).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Text frame opcode.
pub const OPCODE_TEXT: u8 = 0x1;
/// Close frame opcode.
pub const OPCODE_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OPCODE_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OPCODE_PONG: u8 = 0xA;
/// Largest request head a reference server accepts.
pub const HEAD_MAX: usize = 16 * 1024;
/// Largest frame the client accepts.
pub const FRAME_MAX: usize = 16 * 1024 * 1024;
/// Initial read buffer of a client connection.
const READ_BUFFER_LEN: usize = 8 * 1024;

const REQUEST: &[u8] = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The same request offering permessage-deflate as browsers do (`--compression`).
const REQUEST_DEFLATE: &[u8] = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// Clients offer permessage-deflate (set once, before the first connection). Frames are
/// counted, not inflated: a compressed frame (RSV1) is one delivery like a plain one.
pub static OFFER_DEFLATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Appends one frame (FIN set) to `out`, masked with [`MASK`] when `masked`.
pub fn encode_frame(opcode: u8, payload: &[u8], masked: bool, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
}

/// Where a complete frame sits in a buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameAt {
    /// Opcode (FIN is not checked: neither side fragments).
    pub opcode: u8,
    /// The masking key, if masked.
    pub mask: Option<[u8; 4]>,
    /// Offset of the payload from the frame start.
    pub payload_start: usize,
    /// Payload length.
    pub payload_len: usize,
}

impl FrameAt {
    /// Length of the whole frame.
    pub fn total(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// Parses the frame at the start of `buf`; `Ok(None)` when it is not complete yet.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<FrameAt>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut n = [0; 8];
            n.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(n) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > FRAME_MAX {
        return Err(io::Error::other(format!("frame of {len} bytes")));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some(FrameAt {
        opcode,
        mask,
        payload_start: at,
        payload_len: len,
    }))
}

/// The read side of a client connection: a buffer and the frames in it.
pub struct WsReader {
    rd: OwnedReadHalf,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// permessage-deflate: made at the first compressed (RSV1) message; it keeps its
    /// window, which decodes both a server that takes over context and one that does not.
    inflater: Option<Box<flate2::Decompress>>,
    /// The last compressed message, inflated.
    inflated: Vec<u8>,
}

impl WsReader {
    fn new(rd: OwnedReadHalf, leftover: &[u8]) -> WsReader {
        let mut buf = vec![0; READ_BUFFER_LEN.max(leftover.len())];
        buf[..leftover.len()].copy_from_slice(leftover);
        WsReader {
            rd,
            buf,
            start: 0,
            end: leftover.len(),
            inflater: None,
            inflated: Vec::new(),
        }
    }

    /// The next data frame: `(opcode, payload)`; control frames are skipped (the servers
    /// under test send none unprompted). An error at the end of the stream.
    pub async fn next(&mut self) -> io::Result<(u8, &[u8])> {
        loop {
            if let Some(f) = parse_frame(&self.buf[self.start..self.end])? {
                let at = self.start;
                self.start += f.total();
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                if f.opcode >= 0x8 {
                    if f.opcode == OPCODE_CLOSE {
                        return Err(io::ErrorKind::ConnectionAborted.into());
                    }
                    continue;
                }
                let p = at + f.payload_start;
                let payload = &self.buf[p..p + f.payload_len];
                if self.buf[at] & 0x40 != 0 {
                    // A compressed message (RSV1): inflated as a browser would, the
                    // deflate tail the server stripped put back (RFC 7692, 7.2.2).
                    let d = self
                        .inflater
                        .get_or_insert_with(|| Box::new(flate2::Decompress::new(false)));
                    self.inflated.clear();
                    inflate_into(d, payload, &mut self.inflated)?;
                    inflate_into(d, &[0, 0, 0xff, 0xff], &mut self.inflated)?;
                    return Ok((f.opcode, &self.inflated));
                }
                return Ok((f.opcode, payload));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len() * 2;
            self.buf.resize(len, 0);
        }
        let n = self.rd.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

/// Inflates `input` into `out` (raw deflate, sync flush); at most [`FRAME_MAX`] bytes.
fn inflate_into(d: &mut flate2::Decompress, mut input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.len().max(4096));
        }
        let (before, out_before) = (d.total_in(), out.len());
        let status = d
            .decompress_vec(input, out, flate2::FlushDecompress::Sync)
            .map_err(io::Error::other)?;
        let used = usize::try_from(d.total_in() - before).map_err(io::Error::other)?;
        input = &input[used..];
        if used == 0 && out.len() == out_before && !input.is_empty() {
            return Err(io::Error::other("deflate data makes no progress"));
        }
        if status == flate2::Status::StreamEnd {
            d.reset(false);
        }
        if out.len() > FRAME_MAX {
            return Err(io::Error::other("inflated message too large"));
        }
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(());
        }
    }
}

/// Connects from `source` (port chosen by the kernel) to `addr` and completes the
/// WebSocket handshake.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> io::Result<(WsReader, OwnedWriteHalf)> {
    let stream = match source {
        Some(ip) => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
        None => TcpStream::connect(addr).await?,
    };
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let request = if OFFER_DEFLATE.load(std::sync::atomic::Ordering::Relaxed) {
        REQUEST_DEFLATE
    } else {
        REQUEST
    };
    wr.write_all(request).await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::other("closed during the handshake"));
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(format!(
                    "handshake refused: {}",
                    String::from_utf8_lossy(&head[..end])
                )));
            }
            return Ok((WsReader::new(rd, &head[end + 4..]), wr));
        }
        if head.len() > HEAD_MAX {
            return Err(io::Error::other("handshake response too long"));
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a request key.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Server side: reads the request head from `stream` and answers 101. Returns bytes
/// read past the head.
pub async fn server_handshake(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]);
            let key = text
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| value.trim().to_owned())
                })
                .ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))?;
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                accept_key(&key)
            );
            stream.write_all(response.as_bytes()).await?;
            return Ok(head[end + 4..].to_vec());
        }
        if head.len() > HEAD_MAX {
            return Err(io::Error::other("request head too long"));
        }
    }
}
