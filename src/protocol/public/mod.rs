//! The client-facing protocols of the gateway public port (spec section 6), as sans-IO codecs.
//!
//! A gateway speaks one of three protocols to its clients:
//!
//! * [`websocket`]: RFC 6455 after an HTTP upgrade ([`handshake`]);
//! * [`text`]: newline-terminated lines;
//! * [`length_prefixed`]: workerman's `frame` protocol, a `u32` big-endian length prefix.
//!
//! The gateway core owns one [`PublicDecoder`] per client and feeds it the client's
//! unconsumed bytes with [`PublicDecoder::decode`]; the decoder consumes what it can and
//! reports [`PublicEvent`]s in wire order. It accepts any split of the input (one byte at a
//! time included) and keeps nothing while idle except a fragmented websocket message in
//! progress, so the caller can drop its (empty) input buffer between reads.
//!
//! Server-to-client messages are encoded with [`PublicProtocol::encode`].

pub mod deflate;
pub mod handshake;
pub mod length_prefixed;
pub mod text;
pub mod websocket;

use bytes::{Bytes, BytesMut};

pub use deflate::{CompressionMode, ConnContext, InflateCx, Negotiated, SharedCodec};
pub use handshake::{HandshakeError, HandshakeRequest};
pub use length_prefixed::LengthPrefixedError;
pub use text::TextError;
pub use websocket::WebsocketError;

/// The original's per-connection maximum message size (workerman `maxPackageSize`), 10 MiB.
pub const PACKAGE_SIZE_MAX_DEFAULT: u32 = crate::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT;

/// Which protocol a gateway speaks on its public port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicProtocol {
    /// RFC 6455 websocket after an HTTP upgrade handshake.
    Websocket,
    /// Newline-terminated text lines.
    Text,
    /// `u32` big-endian total length (including itself), then the payload.
    Frame,
}

/// Something the decoder tells the gateway core, in wire order.
#[derive(Debug, Clone, PartialEq)]
pub enum PublicEvent {
    /// The websocket handshake succeeded: emit ON_WEBSOCKET_CONNECT from `request`, then
    /// write `response` (the 101 reply), then flush messages queued before the handshake.
    Handshake {
        /// The request head, for [`HandshakeRequest::connect_data`].
        request: HandshakeRequest,
        /// The exact 101 response bytes to write.
        response: Bytes,
    },
    /// One decoded client message (one ON_MESSAGE).
    Message {
        /// The message payload.
        data: Bytes,
        /// True for a websocket binary message; false for text messages and the other protocols.
        binary: bool,
    },
    /// Bytes to write to the client now, in order with everything else written to it
    /// (pong, close reply, HTTP error response). Not client activity: a ping answered
    /// here does not reset the heartbeat counter (spec 5.4, 9 item 15).
    Write(Bytes),
    /// Close the connection once the bytes already handed out are written. Always the last
    /// event: the decoder ignores all further input.
    Close(CloseReason),
}

/// Why the decoder asked to close a client connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The client sent a valid websocket close frame (with this status code, if any); the
    /// close reply was written.
    #[error("client closed the websocket (code {0:?})")]
    ClientClosed(Option<u16>),
    /// The websocket handshake was refused; the HTTP error response (if any) was written.
    #[error("websocket handshake refused: {0}")]
    Handshake(#[from] HandshakeError),
    /// The client broke RFC 6455; a close frame with the matching status code was written.
    #[error("websocket protocol error: {0}")]
    Websocket(#[from] WebsocketError),
    /// The client broke the text protocol.
    #[error("text protocol error: {0}")]
    Text(#[from] TextError),
    /// The client broke the frame protocol.
    #[error("frame protocol error: {0}")]
    Frame(#[from] LengthPrefixedError),
}

impl CloseReason {
    /// True when the close is the client's orderly wish rather than its fault.
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::ClientClosed(_))
    }
}

/// A server-to-client message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame protocol's `u32` length cannot hold the payload plus its 4 length bytes.
    #[error("payload of {len} bytes is too long for a u32 length prefix")]
    TooLong {
        /// The payload length.
        len: usize,
    },
}

impl PublicProtocol {
    /// A fresh decoder for one client connection, with `package_size_max` as the largest
    /// message accepted (see each protocol for exactly what is counted).
    pub fn decoder(self, package_size_max: u32) -> PublicDecoder {
        self.decoder_with(package_size_max, CompressionMode::Off)
    }

    /// [`Self::decoder`] negotiating permessage-deflate per `compression` (websocket only).
    pub fn decoder_with(
        self,
        package_size_max: u32,
        compression: CompressionMode,
    ) -> PublicDecoder {
        match self {
            PublicProtocol::Websocket => PublicDecoder::Websocket(
                websocket::WebsocketDecoder::with_compression(package_size_max, compression),
            ),
            PublicProtocol::Text => PublicDecoder::Text(text::TextDecoder::new(package_size_max)),
            PublicProtocol::Frame => PublicDecoder::Frame(
                length_prefixed::LengthPrefixedDecoder::new(package_size_max),
            ),
        }
    }

    /// Appends `payload` to `out` encoded as one server message. `binary` picks the
    /// websocket frame type (0x82 instead of 0x81); the other protocols ignore it. The
    /// bytes depend on nothing else, so a broadcast may be encoded once per
    /// `(protocol, binary)` and shared (spec 9 item 14), even for clients still in their
    /// handshake: queueing those is the caller's job (see [`PublicDecoder::is_ready`]).
    pub fn encode(
        self,
        payload: &[u8],
        binary: bool,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        match self {
            PublicProtocol::Websocket => {
                websocket::encode_message(payload, binary, out);
                Ok(())
            }
            PublicProtocol::Text => {
                text::encode(payload, out);
                Ok(())
            }
            PublicProtocol::Frame => length_prefixed::encode(payload, out),
        }
    }
}

/// The decoding state of one client connection.
#[derive(Debug)]
pub enum PublicDecoder {
    /// A websocket client.
    Websocket(websocket::WebsocketDecoder),
    /// A text-protocol client.
    Text(text::TextDecoder),
    /// A frame-protocol client.
    Frame(length_prefixed::LengthPrefixedDecoder),
}

impl PublicDecoder {
    /// The protocol this decoder speaks.
    pub fn protocol(&self) -> PublicProtocol {
        match self {
            PublicDecoder::Websocket(_) => PublicProtocol::Websocket,
            PublicDecoder::Text(_) => PublicProtocol::Text,
            PublicDecoder::Frame(_) => PublicProtocol::Frame,
        }
    }

    /// Consumes as much of `input` as forms whole units (handshake, frames, lines) and
    /// reports each result to `out`, in order. What is left in `input` is an incomplete
    /// unit; call again when more bytes arrive. After a [`PublicEvent::Close`] all input
    /// is discarded.
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut impl FnMut(PublicEvent)) {
        match self {
            PublicDecoder::Websocket(d) => d.decode(input, out),
            PublicDecoder::Text(d) => d.decode(input, out),
            PublicDecoder::Frame(d) => d.decode(input, out),
        }
    }

    /// [`Self::decode`], inflating compressed websocket messages with `cx` (the shard's
    /// shared codec and the connection's context-takeover state).
    pub fn decode_with(
        &mut self,
        input: &mut BytesMut,
        cx: &mut InflateCx<'_>,
        out: &mut impl FnMut(PublicEvent),
    ) {
        match self {
            PublicDecoder::Websocket(d) => d.decode_with(input, cx, out),
            PublicDecoder::Text(d) => d.decode(input, out),
            PublicDecoder::Frame(d) => d.decode(input, out),
        }
    }

    /// What permessage-deflate agreed ([`Negotiated::NONE`] for the other protocols and
    /// before the handshake).
    pub fn negotiated(&self) -> Negotiated {
        match self {
            PublicDecoder::Websocket(d) => d.negotiated(),
            PublicDecoder::Text(_) | PublicDecoder::Frame(_) => Negotiated::NONE,
        }
    }

    /// False while a websocket client has not completed its handshake: messages for it must
    /// be queued by the caller and written after the 101 response (spec 6.3 step 7).
    pub fn is_ready(&self) -> bool {
        match self {
            PublicDecoder::Websocket(d) => d.is_open(),
            PublicDecoder::Text(_) | PublicDecoder::Frame(_) => true,
        }
    }

    /// True once the decoder has emitted [`PublicEvent::Close`].
    pub fn is_closed(&self) -> bool {
        match self {
            PublicDecoder::Websocket(d) => d.is_closed(),
            PublicDecoder::Text(d) => d.is_closed(),
            PublicDecoder::Frame(d) => d.is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_state_stays_small() {
        // 100k idle clients cost under 5 MB of decoder state.
        assert!(
            std::mem::size_of::<PublicDecoder>() <= 48,
            "{}",
            std::mem::size_of::<PublicDecoder>()
        );
    }

    #[test]
    fn protocol_dispatch_encodes_each_form() {
        let mut out = BytesMut::new();
        PublicProtocol::Websocket
            .encode(b"hi", true, &mut out)
            .unwrap();
        PublicProtocol::Text.encode(b"hi", true, &mut out).unwrap();
        PublicProtocol::Frame.encode(b"hi", true, &mut out).unwrap();
        assert_eq!(&out[..], b"\x82\x02hihi\n\0\0\0\x06hi");
        for protocol in [
            PublicProtocol::Websocket,
            PublicProtocol::Text,
            PublicProtocol::Frame,
        ] {
            let decoder = protocol.decoder(10);
            assert_eq!(decoder.protocol(), protocol);
            assert_eq!(decoder.is_ready(), protocol != PublicProtocol::Websocket);
            assert!(!decoder.is_closed());
        }
    }
}
