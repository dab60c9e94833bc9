//! Stand-in for the client-facing codecs (`protocol::public`, being written elsewhere):
//! websocket (handshake, frames, control frames), text and frame protocols, with the
//! narrow interface the gateway core needs. Swapped for the real module after the merge.

use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

/// The client-facing protocol of a gateway's public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicProtocol {
    /// RFC 6455 websocket (workerman's subset).
    Websocket,
    /// Newline-terminated text.
    Text,
    /// u32 BE length (including itself) + payload.
    Frame,
}

/// What the decoder found in the client's bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// Websocket handshake accepted: `request` is the ON_WEBSOCKET_CONNECT body,
    /// `response` the 101 bytes to write.
    Handshake {
        /// `['get' => ..., 'server' => ..., 'cookie' => ...]`.
        request: PhpValue,
        /// The `101 Switching Protocol` response.
        response: Bytes,
    },
    /// One complete client message.
    Message {
        /// The payload.
        payload: Bytes,
        /// Websocket binary message (opcode 2).
        binary: bool,
    },
    /// Bytes to write back (pong, close reply, HTTP error response).
    Write(Bytes),
    /// Close the connection once what was written has been flushed.
    Close,
}

/// Where the connection is, for the handshake's `server` array.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The gateway's public port.
    pub local_port: u16,
}

/// Per-client decoder state.
#[derive(Debug, Default)]
pub struct ClientDecoder {
    buf: BytesMut,
    handshake_done: bool,
    closed: bool,
    /// Opcode of the first frame of a fragmented message and its payload so far.
    fragments: Option<(u8, BytesMut)>,
}

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n<div style=\"text-align:center\"><h1>400 Bad Request</h1><hr>workerman</div>";

impl ClientDecoder {
    /// True once the websocket handshake completed (always false for text/frame).
    pub fn handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Feeds bytes; pushes events; stops after a `Close`.
    pub fn decode(
        &mut self,
        protocol: PublicProtocol,
        input: &[u8],
        info: &ConnectionInfo,
        package_size_max: usize,
        out: &mut Vec<ClientEvent>,
    ) {
        if self.closed {
            return;
        }
        self.buf.extend_from_slice(input);
        match protocol {
            PublicProtocol::Text => self.decode_text(package_size_max, out),
            PublicProtocol::Frame => self.decode_frame_protocol(package_size_max, out),
            PublicProtocol::Websocket => self.decode_websocket(info, package_size_max, out),
        }
        if matches!(out.last(), Some(ClientEvent::Close)) {
            self.closed = true;
            self.buf = BytesMut::new();
            self.fragments = None;
        } else if self.buf.is_empty() {
            // Idle connections keep no buffer.
            self.buf = BytesMut::new();
        }
    }

    fn decode_text(&mut self, max: usize, out: &mut Vec<ClientEvent>) {
        while let Some(n) = self.buf.iter().position(|&b| b == b'\n') {
            let line = self.buf.split_to(n + 1);
            let mut end = line.len();
            while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
                end -= 1;
            }
            out.push(ClientEvent::Message {
                payload: line.freeze().slice(..end),
                binary: false,
            });
        }
        if self.buf.len() >= max {
            out.push(ClientEvent::Close);
        }
    }

    fn decode_frame_protocol(&mut self, max: usize, out: &mut Vec<ClientEvent>) {
        while self.buf.len() >= 4 {
            let total =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if total < 4 || total > max {
                out.push(ClientEvent::Close);
                return;
            }
            if self.buf.len() < total {
                return;
            }
            let mut frame = self.buf.split_to(total);
            frame.advance(4);
            out.push(ClientEvent::Message {
                payload: frame.freeze(),
                binary: false,
            });
        }
    }

    fn decode_websocket(&mut self, info: &ConnectionInfo, max: usize, out: &mut Vec<ClientEvent>) {
        if !self.handshake_done {
            if self.buf.len() < 6 {
                return;
            }
            if !self.buf.starts_with(b"GET") {
                out.push(ClientEvent::Write(Bytes::from_static(BAD_REQUEST)));
                out.push(ClientEvent::Close);
                return;
            }
            let Some(end) = find(&self.buf, b"\r\n\r\n") else {
                if self.buf.len() >= max {
                    out.push(ClientEvent::Close);
                }
                return;
            };
            let header = self.buf.split_to(end + 4).freeze();
            match handshake(&header[..end], info) {
                Ok((request, response)) => {
                    self.handshake_done = true;
                    out.push(ClientEvent::Handshake { request, response });
                }
                Err(response) => {
                    out.push(ClientEvent::Write(response));
                    out.push(ClientEvent::Close);
                    return;
                }
            }
        }
        loop {
            match self.next_ws_frame(max) {
                Ok(Some(event)) => {
                    let close = matches!(event, ClientEvent::Close);
                    if close {
                        out.push(ClientEvent::Write(Bytes::from_static(&[
                            0x88, 0x02, 0x03, 0xe8,
                        ])));
                    }
                    out.push(event);
                    if close {
                        return;
                    }
                }
                Ok(None) => return,
                Err(()) => {
                    out.push(ClientEvent::Close);
                    return;
                }
            }
        }
    }

    /// The next event out of the frame buffer; `Ok(None)` when more bytes are needed;
    /// `Err` closes the connection.
    fn next_ws_frame(&mut self, max: usize) -> Result<Option<ClientEvent>, ()> {
        loop {
            if self.buf.len() < 2 {
                return Ok(None);
            }
            let b0 = self.buf[0];
            let b1 = self.buf[1];
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            if b1 & 0x80 == 0 || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
                return Err(());
            }
            let (len, head) = match b1 & 0x7f {
                126 => {
                    if self.buf.len() < 4 {
                        return Ok(None);
                    }
                    (u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64, 4)
                }
                127 => {
                    if self.buf.len() < 10 {
                        return Ok(None);
                    }
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&self.buf[2..10]);
                    (u64::from_be_bytes(raw), 10)
                }
                n => (n as u64, 2),
            };
            let held = self.fragments.as_ref().map_or(0, |f| f.1.len()) as u64;
            if len.saturating_add(held) > max as u64 {
                return Err(());
            }
            let total = head + 4 + len as usize;
            if self.buf.len() < total {
                return Ok(None);
            }
            let mut frame = self.buf.split_to(total);
            frame.advance(head);
            let mask = [frame[0], frame[1], frame[2], frame[3]];
            frame.advance(4);
            for (i, b) in frame.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                8 => return Ok(Some(ClientEvent::Close)),
                9 => {
                    let mut pong = BytesMut::new();
                    pong.put_slice(&encode_ws(0x8a, &frame));
                    return Ok(Some(ClientEvent::Write(pong.freeze())));
                }
                10 => continue,
                0 => {
                    let Some((first, mut acc)) = self.fragments.take() else {
                        return Err(());
                    };
                    acc.put_slice(&frame);
                    if fin {
                        return Ok(Some(ClientEvent::Message {
                            payload: acc.freeze(),
                            binary: first == 2,
                        }));
                    }
                    self.fragments = Some((first, acc));
                }
                _ => {
                    if fin {
                        return Ok(Some(ClientEvent::Message {
                            payload: frame.freeze(),
                            binary: opcode == 2,
                        }));
                    }
                    self.fragments = Some((opcode, frame));
                }
            }
        }
    }
}

/// Encodes one server message for `protocol`.
pub fn encode_message(protocol: PublicProtocol, payload: &[u8], binary: bool) -> Bytes {
    match protocol {
        PublicProtocol::Websocket => encode_ws(if binary { 0x82 } else { 0x81 }, payload),
        PublicProtocol::Text => {
            let mut out = BytesMut::with_capacity(payload.len() + 1);
            out.put_slice(payload);
            out.put_u8(b'\n');
            out.freeze()
        }
        PublicProtocol::Frame => {
            let mut out = BytesMut::with_capacity(payload.len() + 4);
            out.put_u32((payload.len() + 4) as u32);
            out.put_slice(payload);
            out.freeze()
        }
    }
}

fn encode_ws(first: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.put_u8(first);
    let len = payload.len();
    if len <= 125 {
        out.put_u8(len as u8);
    } else if len <= 65535 {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out.put_slice(payload);
    out.freeze()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn handshake(header: &[u8], info: &ConnectionInfo) -> Result<(PhpValue, Bytes), Bytes> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let uri = parts.next().unwrap_or("").to_string();
    let version = parts
        .next()
        .and_then(|p| p.strip_prefix("HTTP/"))
        .unwrap_or("1.1")
        .to_string();
    // Headers in order of first appearance; duplicates joined with ','.
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim_matches([' ', '\t']).to_string();
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => headers.push((name, value)),
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    match header("sec-websocket-version") {
        None => {
            return Err(Bytes::from_static(
                b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\n\r\n",
            ))
        }
        Some(v) if v != "13" => {
            return Err(Bytes::from_static(b"HTTP/1.1 426 Upgrade Required\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        }
        Some(_) => {}
    }
    let Some(key) = header("sec-websocket-key") else {
        return Err(Bytes::from_static(BAD_REQUEST));
    };
    let mut input = key.into_bytes();
    input.extend_from_slice(WS_GUID);
    let accept = base64(&sha1(&input));
    let response = format!("HTTP/1.1 101 Switching Protocol\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");

    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let opt = |v: Option<String>| v.map_or(PhpValue::Null, |s| PhpValue::str(&s));
    let mut server = PhpArray::new();
    let mut put = |k: &str, v: PhpValue| server.insert(PhpKey::from_bytes(k.as_bytes()), v);
    put("QUERY_STRING", PhpValue::str(query));
    put("REQUEST_METHOD", PhpValue::str(&method));
    put("REQUEST_URI", PhpValue::str(&uri));
    put("SERVER_PROTOCOL", PhpValue::str(&format!("HTTP/{version}")));
    put("SERVER_NAME", opt(header("host")));
    put("CONTENT_TYPE", opt(header("content-type")));
    put("REMOTE_ADDR", PhpValue::str(&info.remote.ip().to_string()));
    put("REMOTE_PORT", PhpValue::Int(info.remote.port() as i64));
    put("SERVER_PORT", PhpValue::Int(info.local_port as i64));
    for (name, value) in &headers {
        let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
        put(&key, PhpValue::str(value));
    }
    let mut cookie = PhpArray::new();
    if let Some(c) = header("cookie") {
        for part in c.split(';') {
            if let Some((n, v)) = part.split_once('=') {
                cookie.insert(PhpKey::from_bytes(n.trim().as_bytes()), PhpValue::str(v));
            }
        }
    }
    let mut request = PhpArray::new();
    request.push_unique(
        PhpKey::from_bytes(b"get"),
        PhpValue::Array(parse_str(query)),
    );
    request.push_unique(PhpKey::from_bytes(b"server"), PhpValue::Array(server));
    request.push_unique(PhpKey::from_bytes(b"cookie"), PhpValue::Array(cookie));
    Ok((PhpValue::Array(request), Bytes::from(response)))
}

/// PHP `parse_str` for the common shapes (`a=1`, `x[]=1`, `x[k]=1`).
fn parse_str(query: &str) -> PhpArray {
    let mut out = PhpArray::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = url_decode(name);
        let value = PhpValue::Str(Bytes::from(url_decode(value)));
        let (base, sub) = match name.iter().position(|&b| b == b'[') {
            Some(i) if name.ends_with(b"]") => (&name[..i], Some(&name[i + 1..name.len() - 1])),
            _ => (&name[..], None),
        };
        let base: Vec<u8> = base
            .iter()
            .map(|&b| if b == b'.' || b == b' ' { b'_' } else { b })
            .collect();
        if base.is_empty() {
            continue;
        }
        let key = PhpKey::from_bytes(&base);
        match sub {
            None => out.insert(key, value),
            Some(sub) => {
                if !matches!(out.get(&key), Some(PhpValue::Array(_))) {
                    out.insert(key.clone(), PhpValue::Array(PhpArray::new()));
                }
                if let Some(PhpValue::Array(inner)) = out.get_mut(&key) {
                    if sub.is_empty() {
                        inner.push(value);
                    } else {
                        inner.insert(PhpKey::from_bytes(sub), value);
                    }
                }
            }
        }
    }
    out
}

fn url_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let n = chunk.len();
        let v = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= n {
                out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}
