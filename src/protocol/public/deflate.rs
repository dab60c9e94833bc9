//! permessage-deflate (RFC 7692): negotiation, and the compressor and decompressor.
//!
//! # Memory
//!
//! The default enabled mode ([`CompressionMode::NoContextTakeover`]) keeps nothing per
//! connection: the answer always carries `server_no_context_takeover` and
//! `client_no_context_takeover`, so every message is a fresh deflate stream in both
//! directions and one [`SharedCodec`] per gateway shard (one compressor, one decompressor,
//! used by one message at a time) serves every connection. A compressed client message is
//! buffered until its last fragment (bounded by `package_size_max` like any message) and
//! inflated whole.
//!
//! [`CompressionMode::ContextTakeover`] keeps the LZ77 window across messages, as browsers
//! ask by default: each connection that negotiated it gets its own compressor and/or
//! decompressor ([`ConnContext`]), allocated at its first compressed message in that
//! direction and freed with the connection. That is the memory deflate is known for (see
//! README, Compression, for the measured figure).
//!
//! # Window bits
//!
//! Our compressor always runs with a 32 KiB window. When a client asks for
//! `server_max_window_bits=B` below 15, the answer repeats `B` and adds
//! `server_no_context_takeover`: a fresh stream over a message of at most `2^B` bytes
//! cannot refer further back than `2^B`, and longer messages go out uncompressed (RFC 7692
//! lets the sender choose per message). `client_max_window_bits` is never sent back: our
//! decompressor accepts any window up to 15 bits.
//!
//! # Bounds
//!
//! Inflating stops as soon as the output would exceed `package_size_max`: the message fails
//! with [`InflateError::TooBig`] (close 1009) having allocated at most that bound plus one
//! chunk, whatever the ratio of the input (a zip bomb of 1 KiB that inflates to 1 GiB costs
//! `package_size_max`, not 1 GiB).

//! # Crate
//!
//! flate2 with its zlib-rs backend (pure Rust, a port of zlib): raw deflate streams, sync
//! flush per call, resettable state. Measured in `benches/codec` against flate2's
//! miniz_oxide backend (dev profile, same machine): a fresh-stream compress of a 186-byte
//! chat message 111 k/s against 12.8 k/s, a fresh inflate 436 k/s against 30 k/s
//! (miniz_oxide clears its whole state on every reset), context-takeover compress 363 k/s
//! against 124 k/s. zlib-rs keeps more per stream: 418 KiB per context-takeover client
//! against 355 KiB (`tests/gateway_memory.rs`).

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The four bytes a sync flush ends with, removed from each compressed message and
/// appended again before inflating (RFC 7692 7.2.1, 7.2.2).
pub const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The compression level: 6 is zlib's default, a good ratio on JSON; the cost per message
/// is measured in `benches/codec` (deflate_*).
pub const LEVEL: u32 = 6;

/// Messages shorter than this go out uncompressed unless configured otherwise: a deflate
/// block header and the Huffman tables cost more than they save on a few bytes.
pub const MIN_SIZE_DEFAULT: usize = 64;

/// Output grows by at most this much at a time while inflating.
const INFLATE_CHUNK: usize = 16 * 1024;

/// Whether and how the gateway negotiates permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompressionMode {
    /// Every offer is ignored: no extension (the original's behaviour).
    #[default]
    Off,
    /// Accept with `server_no_context_takeover; client_no_context_takeover`: one shared
    /// compressor and decompressor per shard, nothing per connection.
    NoContextTakeover,
    /// Accept keeping the LZ77 window across messages where the client allows it (better
    /// ratio on small similar messages); costs a compressor and a decompressor per
    /// connection.
    ContextTakeover,
}

impl CompressionMode {
    /// The setting's spelling (`off`, `no-context-takeover`, `context-takeover`).
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionMode::Off => "off",
            CompressionMode::NoContextTakeover => "no-context-takeover",
            CompressionMode::ContextTakeover => "context-takeover",
        }
    }
}

impl std::str::FromStr for CompressionMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(CompressionMode::Off),
            "no-context-takeover" => Ok(CompressionMode::NoContextTakeover),
            "context-takeover" => Ok(CompressionMode::ContextTakeover),
            other => Err(format!(
                "unknown compression mode {other:?} (off, no-context-takeover, context-takeover)"
            )),
        }
    }
}

/// The parameters agreed with one client, packed in one byte so the per-connection decoder
/// stays small.
///
/// Bit 0: negotiated. Bit 1: the server resets its compressor per message
/// (`server_no_context_takeover`). Bit 2: the client resets its compressor per message
/// (`client_no_context_takeover`). Bits 4-7: `server_max_window_bits` (8-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Negotiated(u8);

impl Negotiated {
    /// Nothing negotiated.
    pub const NONE: Negotiated = Negotiated(0);

    fn new(server_no_context: bool, client_no_context: bool, server_window_bits: u8) -> Self {
        debug_assert!((8..=15).contains(&server_window_bits));
        Negotiated(
            1 | (u8::from(server_no_context) << 1)
                | (u8::from(client_no_context) << 2)
                | (server_window_bits << 4),
        )
    }

    /// True when permessage-deflate is in use on the connection.
    pub fn is_on(self) -> bool {
        self.0 & 1 != 0
    }

    /// The server compresses each message as a fresh stream.
    pub fn server_no_context_takeover(self) -> bool {
        self.0 & 2 != 0
    }

    /// The client compresses each message as a fresh stream.
    pub fn client_no_context_takeover(self) -> bool {
        self.0 & 4 != 0
    }

    /// The largest LZ77 window the client accepts from us, in bits.
    pub fn server_window_bits(self) -> u8 {
        self.0 >> 4
    }

    /// Whether a message of `len` bytes may go out compressed as a fresh stream under the
    /// client's window limit (always with the full 15-bit window).
    pub fn fresh_stream_fits(self, len: usize) -> bool {
        self.server_window_bits() >= 15 || len <= 1usize << self.server_window_bits()
    }
}

/// The result of reading a request's offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// What the connection uses.
    pub negotiated: Negotiated,
    /// The header line to add to the 101 response, `\r\n` included.
    pub header: String,
}

/// Reads every `Sec-WebSocket-Extensions` header of the request head `head` and accepts the
/// first valid permessage-deflate offer (RFC 7692 5, 7.1); `None` when `mode` is off or no
/// offer is acceptable. An offer with an unknown, repeated or malformed parameter is
/// declined and the next one considered.
pub fn negotiate(head: &[u8], mode: CompressionMode) -> Option<Agreement> {
    if mode == CompressionMode::Off {
        return None;
    }
    for value in extension_headers(head) {
        for offer in split_outside_quotes(value, b',') {
            if let Some(params) = parse_offer(offer) {
                return Some(agree(params, mode));
            }
        }
    }
    None
}

/// The parameters of one valid offer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Offer {
    server_no_context: bool,
    client_no_context: bool,
    server_window_bits: Option<u8>,
    client_window_bits: Option<Option<u8>>,
}

fn agree(offer: Offer, mode: CompressionMode) -> Agreement {
    let bits = offer.server_window_bits.unwrap_or(15);
    let server_no_context =
        mode == CompressionMode::NoContextTakeover || offer.server_no_context || bits < 15;
    let client_no_context = mode == CompressionMode::NoContextTakeover || offer.client_no_context;
    let mut header = String::from("Sec-WebSocket-Extensions: permessage-deflate");
    if server_no_context {
        header.push_str("; server_no_context_takeover");
    }
    if client_no_context {
        header.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = offer.server_window_bits {
        header.push_str(&format!("; server_max_window_bits={bits}"));
    }
    header.push_str("\r\n");
    Agreement {
        negotiated: Negotiated::new(server_no_context, client_no_context, bits),
        header,
    }
}

/// The values of every `Sec-WebSocket-Extensions` header line of a request head (name
/// case-insensitive, value trimmed of spaces and tabs).
fn extension_headers(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = trim(&line[..colon]);
        name.eq_ignore_ascii_case(b"sec-websocket-extensions")
            .then(|| trim(&line[colon + 1..]))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Splits on `sep` outside double quotes (a quoted-string may hold `,` or `;`).
fn split_outside_quotes(bytes: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in current.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&current[i + 1..]);
                return Some(trim(&current[..i]));
            }
        }
        rest = None;
        Some(trim(current))
    })
}

/// RFC 7230 tchar.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A parameter value: a token, or a quoted-string whose unescaped content is a token
/// (RFC 6455 9.1).
fn param_value(raw: &[u8]) -> Option<Vec<u8>> {
    let value = match raw {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if escaped {
                    out.push(b);
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    return None;
                } else {
                    out.push(b);
                }
            }
            if escaped {
                return None;
            }
            out
        }
        _ => raw.to_vec(),
    };
    is_token(&value).then_some(value)
}

/// A window size: `8` to `15`, digits only, no leading zero (RFC 7692 7.1.2.1).
fn window_bits(value: &[u8]) -> Option<u8> {
    match value {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// A permessage-deflate offer's parameters; `None` for another extension or an invalid
/// offer.
fn parse_offer(offer: &[u8]) -> Option<Offer> {
    let mut parts = split_outside_quotes(offer, b';');
    let name = parts.next()?;
    if !name.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut params = Offer::default();
    let mut seen = 0u8;
    for part in parts {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&part[..eq]), Some(param_value(trim(&part[eq + 1..]))?)),
            None => (part, None),
        };
        let bit = match name {
            b"server_no_context_takeover" if value.is_none() => {
                params.server_no_context = true;
                1
            }
            b"client_no_context_takeover" if value.is_none() => {
                params.client_no_context = true;
                2
            }
            b"server_max_window_bits" => {
                params.server_window_bits = Some(window_bits(value.as_deref()?)?);
                4
            }
            b"client_max_window_bits" => {
                params.client_window_bits = Some(match value.as_deref() {
                    None => None,
                    Some(v) => Some(window_bits(v)?),
                });
                8
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
    }
    Some(params)
}

/// A compressed message that could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The inflated message would exceed `package_size_max`.
    #[error("inflated message exceeds {max} bytes")]
    TooBig {
        /// The bound.
        max: u32,
    },
    /// The compressed data is not valid deflate.
    #[error("invalid deflate data")]
    Corrupt,
}

/// A raw-deflate decompressor (no zlib header).
pub struct Inflater(Decompress);

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(false))
    }
}

impl Inflater {
    /// Inflates one message's compressed payload (without the sync tail, which is appended
    /// here) into `out`, failing once more than `max` bytes would come out. With `reset`
    /// the stream starts fresh (no context takeover), else it continues the previous
    /// message's window.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max: u32,
        reset: bool,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if reset {
            self.0.reset(false);
        }
        let result = self.inflate_part(compressed, max, out);
        let result = result.and_then(|()| self.inflate_part(&SYNC_TAIL, max, out));
        if result.is_err() {
            // A failed stream is unusable for the next message (context takeover): the
            // connection is closed anyway; the shared one starts fresh.
            self.0.reset(false);
        }
        result
    }

    fn inflate_part(
        &mut self,
        mut input: &[u8],
        max: u32,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        // One byte over the bound tells "exactly max" from "more".
        let limit = max as usize + 1;
        let mut buf = Vec::new();
        loop {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                return Err(InflateError::TooBig { max });
            }
            buf.clear();
            buf.reserve_exact(room.min(INFLATE_CHUNK));
            let before_in = self.0.total_in();
            let status = self
                .0
                .decompress_vec(input, &mut buf, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let consumed = (self.0.total_in() - before_in) as usize;
            input = &input[consumed..];
            out.extend_from_slice(&buf);
            if out.len() > max as usize {
                return Err(InflateError::TooBig { max });
            }
            let full = buf.len() == buf.capacity();
            match status {
                // A final block ends the stream; more input after it is invalid.
                Status::StreamEnd if !input.is_empty() => return Err(InflateError::Corrupt),
                Status::StreamEnd => return Ok(()),
                _ if input.is_empty() && !full => return Ok(()),
                _ if consumed == 0 && buf.is_empty() => return Err(InflateError::Corrupt),
                _ => {}
            }
        }
    }
}

/// A raw-deflate compressor.
pub struct Deflater(Compress);

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deflater")
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater(Compress::new(Compression::new(LEVEL), false))
    }
}

impl Deflater {
    /// Appends `payload` compressed and sync-flushed, without the sync tail, to `out`.
    /// With `reset` the stream starts fresh (no context takeover).
    pub fn deflate(&mut self, payload: &[u8], reset: bool, out: &mut Vec<u8>) {
        if reset {
            self.0.reset();
        }
        let start = out.len();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before_in = self.0.total_in();
            // Cannot fail: the compressor is in a valid state and Sync is always allowed.
            let _ = self.0.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.0.total_in() - before_in) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
    }
}

/// The compressor and decompressor one shard shares between all its connections that
/// negotiated no context takeover; each allocated at its first use.
#[derive(Debug, Default)]
pub struct SharedCodec {
    inflater: Option<Box<Inflater>>,
    deflater: Option<Box<Deflater>>,
}

impl SharedCodec {
    /// The shared decompressor.
    pub fn inflater(&mut self) -> &mut Inflater {
        self.inflater.get_or_insert_with(Box::default)
    }

    /// Compresses `payload` as a fresh stream into `out` (the same bytes for every
    /// connection with `server_no_context_takeover`).
    pub fn deflate_fresh(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.deflater
            .get_or_insert_with(Box::default)
            .deflate(payload, true, out);
    }
}

/// The state one connection keeps across messages with context takeover; absent (not
/// allocated) otherwise.
#[derive(Debug, Default)]
pub struct ConnContext {
    /// The client-to-server window (client context takeover).
    pub inflater: Option<Inflater>,
    /// The server-to-client window (server context takeover).
    pub deflater: Option<Deflater>,
}

/// What the websocket decoder inflates with: the shard's shared codec and the connection's
/// own context (allocated on demand when the client keeps its context).
#[derive(Debug)]
pub struct InflateCx<'a> {
    /// The shard's codec.
    pub shared: &'a mut SharedCodec,
    /// The connection's context-takeover state.
    pub conn: &'a mut Option<Box<ConnContext>>,
}

impl InflateCx<'_> {
    /// Inflates one message for a connection with `negotiated` parameters.
    pub fn inflate(
        &mut self,
        negotiated: Negotiated,
        compressed: &[u8],
        max: u32,
        out: &mut BytesMut,
    ) -> Result<(), InflateError> {
        if negotiated.client_no_context_takeover() {
            self.shared.inflater().inflate(compressed, max, true, out)
        } else {
            self.conn
                .get_or_insert_with(Box::default)
                .inflater
                .get_or_insert_with(Inflater::default)
                .inflate(compressed, max, false, out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        for l in lines {
            h.extend_from_slice(l.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    fn answer(lines: &[&str], mode: CompressionMode) -> Option<String> {
        negotiate(&head(lines), mode).map(|a| a.header)
    }

    const NCT: CompressionMode = CompressionMode::NoContextTakeover;
    const CT: CompressionMode = CompressionMode::ContextTakeover;

    #[test]
    fn off_ignores_every_offer() {
        assert_eq!(
            answer(
                &["Sec-WebSocket-Extensions: permessage-deflate"],
                CompressionMode::Off
            ),
            None
        );
    }

    #[test]
    fn browser_offer_is_answered_byte_exactly() {
        let offer = ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"];
        assert_eq!(
            answer(&offer, NCT).as_deref(),
            Some("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n")
        );
        assert_eq!(
            answer(&offer, CT).as_deref(),
            Some("Sec-WebSocket-Extensions: permessage-deflate\r\n")
        );
        let n = negotiate(&head(&offer), CT).unwrap().negotiated;
        assert!(n.is_on() && !n.server_no_context_takeover() && !n.client_no_context_takeover());
        assert_eq!(n.server_window_bits(), 15);
    }

    #[test]
    fn all_four_parameters() {
        let offer = ["sec-websocket-extensions:  permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=9 "];
        assert_eq!(
            answer(&offer, CT).as_deref(),
            Some("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10\r\n")
        );
        let n = negotiate(&head(&offer), CT).unwrap().negotiated;
        assert_eq!(n.server_window_bits(), 10);
        assert!(n.fresh_stream_fits(1024) && !n.fresh_stream_fits(1025));
        // A smaller server window without no_context_takeover: we add it.
        assert_eq!(
            answer(&["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"8\""], CT).as_deref(),
            Some("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=8\r\n")
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; client_max_window_bits=\"1\\\"\"",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; unknown",
            "x-webkit-deflate-frame",
        ] {
            let line = format!("Sec-WebSocket-Extensions: {bad}");
            assert_eq!(answer(&[&line], CT), None, "{bad}");
            let two = format!(
                "Sec-WebSocket-Extensions: {bad}, permessage-deflate; server_max_window_bits=12"
            );
            assert_eq!(
                answer(&[&two], CT).as_deref(),
                Some("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; server_max_window_bits=12\r\n"),
                "{bad}"
            );
        }
        // Offers spread over several header lines, in order.
        assert_eq!(
            answer(
                &[
                    "Sec-WebSocket-Extensions: foo, permessage-deflate; bogus",
                    "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover",
                ],
                CT
            )
            .as_deref(),
            Some("Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n")
        );
    }

    #[test]
    fn deflate_inflate_round_trip_fresh_and_with_context() {
        let msg = br#"{"type":"say","from":"alice","content":"hello hello hello hello"}"#;
        let mut d = Deflater::default();
        let mut i = Inflater::default();
        for reset in [true, false] {
            let mut sizes = Vec::new();
            for _ in 0..3 {
                let mut c = Vec::new();
                d.deflate(msg, reset, &mut c);
                assert!(!c.ends_with(&SYNC_TAIL));
                let mut out = BytesMut::new();
                i.inflate(&c, 1000, reset, &mut out).unwrap();
                assert_eq!(&out[..], &msg[..]);
                sizes.push(c.len());
            }
            if !reset {
                assert!(sizes[1] < sizes[0] / 2, "{sizes:?}: context takeover helps");
            } else {
                assert_eq!(sizes[0], sizes[1]);
            }
            d = Deflater::default();
            i = Inflater::default();
        }
    }

    #[test]
    fn zip_bomb_stops_at_the_bound() {
        let big = vec![b'a'; 8 << 20];
        let mut c = Vec::new();
        Deflater::default().deflate(&big, true, &mut c);
        assert!(c.len() < 16 * 1024, "{}", c.len());
        let mut out = BytesMut::new();
        let max = 1 << 20;
        assert_eq!(
            Inflater::default().inflate(&c, max, true, &mut out),
            Err(InflateError::TooBig { max })
        );
        assert!(out.len() <= max as usize + INFLATE_CHUNK, "{}", out.len());
        // Exactly at the bound is fine.
        let mut out = BytesMut::new();
        let mut c = Vec::new();
        Deflater::default().deflate(&big[..1 << 20], true, &mut c);
        Inflater::default()
            .inflate(&c, max, true, &mut out)
            .unwrap();
        assert_eq!(out.len(), 1 << 20);
    }

    // ---------------------------------------------------------------- through the decoder

    use crate::protocol::public::websocket::{encode_frame, WebsocketDecoder, WebsocketError};
    use crate::protocol::public::{CloseReason, PublicEvent};
    use bytes::Bytes;

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    fn handshake(ext: &str) -> Vec<u8> {
        format!("GET / HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n{ext}\r\n").into_bytes()
    }

    /// A masked client frame with the raw first byte `b0`.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(b0, payload, &mut out);
        let header_len = out.len() - payload.len();
        let mut frame = out[..header_len].to_vec();
        frame[1] |= 0x80;
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        frame
    }

    fn compress(payload: &[u8]) -> Vec<u8> {
        let mut c = Vec::new();
        Deflater::default().deflate(payload, true, &mut c);
        c
    }

    struct Conn {
        decoder: WebsocketDecoder,
        own: Option<Box<ConnContext>>,
    }

    fn open(mode: CompressionMode, ext: &str, max: u32) -> (Conn, Bytes) {
        let mut conn = Conn {
            decoder: WebsocketDecoder::with_compression(max, mode),
            own: None,
        };
        let mut shared = SharedCodec::default();
        let events = feed(&mut conn, &mut shared, &handshake(ext));
        let [PublicEvent::Handshake { response, .. }] = &events[..] else {
            panic!("{events:?}")
        };
        (conn, response.clone())
    }

    fn feed(conn: &mut Conn, shared: &mut SharedCodec, bytes: &[u8]) -> Vec<PublicEvent> {
        let mut input = BytesMut::from(bytes);
        let mut events = Vec::new();
        let mut cx = InflateCx {
            shared,
            conn: &mut conn.own,
        };
        conn.decoder
            .decode_with(&mut input, &mut cx, &mut |e| events.push(e));
        events
    }

    fn msg(data: &[u8], binary: bool) -> PublicEvent {
        PublicEvent::Message {
            data: Bytes::copy_from_slice(data),
            binary,
        }
    }

    fn failed(error: WebsocketError) -> Vec<PublicEvent> {
        let code = error.close_code().to_be_bytes();
        vec![
            PublicEvent::Write(Bytes::copy_from_slice(&[0x88, 0x02, code[0], code[1]])),
            PublicEvent::Close(CloseReason::Websocket(error)),
        ]
    }

    const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

    #[test]
    fn the_101_carries_the_answer_only_when_enabled() {
        let (_, response) = open(CompressionMode::Off, OFFER, 100);
        assert!(!String::from_utf8_lossy(&response).contains("Extensions"));
        let (conn, response) = open(NCT, OFFER, 100);
        assert!(response.ends_with(b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n\r\n"));
        assert!(conn.decoder.negotiated().is_on());
    }

    #[test]
    fn compressed_messages_whole_and_fragmented_are_inflated() {
        let text = "κόσμε ".repeat(50);
        let c = compress(text.as_bytes());
        let mut shared = SharedCodec::default();
        let (mut conn, _) = open(NCT, OFFER, 10_000);
        assert_eq!(
            feed(&mut conn, &mut shared, &client_frame(0xC1, &c)),
            [msg(text.as_bytes(), false)]
        );
        // Fragmented: RSV1 on the first frame only, a ping in between.
        let mut bytes = client_frame(0x42, &c[..3]);
        bytes.extend(client_frame(0x89, b"p"));
        bytes.extend(client_frame(0x00, &c[3..10]));
        bytes.extend(client_frame(0x80, &c[10..]));
        let events = feed(&mut conn, &mut shared, &bytes);
        assert_eq!(
            events,
            [
                PublicEvent::Write(Bytes::from_static(b"\x8a\x01p")),
                msg(text.as_bytes(), true)
            ]
        );
        // Uncompressed messages still pass on the same connection.
        assert_eq!(
            feed(&mut conn, &mut shared, &client_frame(0x81, b"plain")),
            [msg(b"plain", false)]
        );
        // Nothing stays allocated on the connection between messages.
        assert!(conn.own.is_none());
    }

    #[test]
    fn one_shared_decompressor_serves_interleaved_connections() {
        let mut shared = SharedCodec::default();
        let (mut a, _) = open(NCT, OFFER, 10_000);
        let (mut b, _) = open(NCT, OFFER, 10_000);
        let (ca, cb) = (
            compress(b"from a, from a, from a"),
            compress(b"b b b b b b b b b"),
        );
        // a's first fragment, b's whole message, a's last fragment.
        assert!(feed(&mut a, &mut shared, &client_frame(0x41, &ca[..4])).is_empty());
        assert_eq!(
            feed(&mut b, &mut shared, &client_frame(0xC1, &cb)),
            [msg(b"b b b b b b b b b", false)]
        );
        assert_eq!(
            feed(&mut a, &mut shared, &client_frame(0x80, &ca[4..])),
            [msg(b"from a, from a, from a", false)]
        );
        assert!(a.own.is_none() && b.own.is_none());
    }

    #[test]
    fn context_takeover_keeps_the_clients_window_per_connection() {
        let mut shared = SharedCodec::default();
        let (mut conn, response) = open(CT, OFFER, 10_000);
        assert!(response.ends_with(b"permessage-deflate\r\n\r\n"));
        let mut client = Deflater::default();
        for _ in 0..3 {
            let mut c = Vec::new();
            client.deflate(b"hello context takeover", false, &mut c);
            assert_eq!(
                feed(&mut conn, &mut shared, &client_frame(0xC1, &c)),
                [msg(b"hello context takeover", false)]
            );
        }
        assert!(conn.own.as_ref().is_some_and(|o| o.inflater.is_some()));
    }

    #[test]
    fn rsv_rules() {
        let mut shared = SharedCodec::default();
        let c = compress(b"abc");
        // RSV1 without the extension.
        let (mut conn, _) = open(CompressionMode::Off, OFFER, 100);
        assert_eq!(
            feed(&mut conn, &mut shared, &client_frame(0xC1, &c)),
            failed(WebsocketError::ReservedBits(0x40))
        );
        // RSV1 on a control frame, on a continuation; RSV2 and RSV3 always.
        for (first, frame) in [
            (None, client_frame(0xC9, b"")),
            (Some(client_frame(0x41, &c)), client_frame(0xC0, b"")),
            (None, client_frame(0xE1, &c)),
            (None, client_frame(0xD1, &c)),
        ] {
            let (mut conn, _) = open(NCT, OFFER, 100);
            if let Some(first) = first {
                assert!(feed(&mut conn, &mut shared, &first).is_empty());
            }
            let events = feed(&mut conn, &mut shared, &frame);
            assert!(
                matches!(
                    &events[..],
                    [
                        _,
                        PublicEvent::Close(CloseReason::Websocket(WebsocketError::ReservedBits(_)))
                    ]
                ),
                "{events:?}"
            );
        }
    }

    #[test]
    fn invalid_data_and_utf8_after_inflating_fail() {
        let mut shared = SharedCodec::default();
        let (mut conn, _) = open(NCT, OFFER, 100);
        assert_eq!(
            feed(&mut conn, &mut shared, &client_frame(0xC1, &[0xFF, 0xFF])),
            failed(WebsocketError::BadDeflate)
        );
        let (mut conn, _) = open(NCT, OFFER, 100);
        assert_eq!(
            feed(
                &mut conn,
                &mut shared,
                &client_frame(0xC1, &compress(b"\xff\xfe"))
            ),
            failed(WebsocketError::InvalidUtf8)
        );
    }

    #[test]
    fn zip_bomb_closes_with_1009() {
        // 10 MiB of zeros is about 10 KiB compressed; the bound is 1 MiB.
        let bomb = compress(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 16 * 1024);
        let mut shared = SharedCodec::default();
        let (mut conn, _) = open(NCT, OFFER, 1 << 20);
        let events = feed(&mut conn, &mut shared, &client_frame(0xC2, &bomb));
        assert_eq!(
            events,
            failed(WebsocketError::TooBig {
                len: (1 << 20) + 1,
                max: 1 << 20
            })
        );
        assert!(conn.decoder.is_closed());
    }

    #[test]
    fn corrupt_input_fails() {
        let mut out = BytesMut::new();
        assert_eq!(
            Inflater::default().inflate(&[0xFF, 0xFF, 0xFF], 100, true, &mut out),
            Err(InflateError::Corrupt)
        );
    }
}
