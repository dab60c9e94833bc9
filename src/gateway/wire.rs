//! Thin adapters over `protocol::frame` and `protocol::php`, in the shapes the gateway
//! core uses.

use bytes::{Bytes, BytesMut};

use crate::protocol::frame::{self, Command, Frame, FrameDecodeError, FrameDecoder, Header};
use crate::protocol::php::PhpValue;

/// A decoded frame whose command number may be outside [`Command`] (the original logs
/// unknown commands and keeps the link; the authorisation check still applies to them).
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// Command byte as received.
    pub cmd: u8,
    /// Header connection id.
    pub connection_id: u32,
    /// Header flag.
    pub flag: u8,
    /// ext_data (empty for unknown commands).
    pub ext_data: Bytes,
    /// body (empty for unknown commands).
    pub body: Bytes,
}

/// Takes one complete frame off the front of `buf`, if there is one. Errors are fatal
/// for the link (bad lengths, over `package_size_max`).
pub fn decode_frame(
    buf: &mut BytesMut,
    package_size_max: u32,
) -> Result<Option<RawFrame>, FrameDecodeError> {
    match FrameDecoder::new(package_size_max).decode(buf) {
        Ok(Some(f)) => Ok(Some(RawFrame {
            cmd: f.header.cmd.as_u8(),
            connection_id: f.header.connection_id,
            flag: f.header.flag,
            ext_data: f.ext_data,
            body: f.body,
        })),
        Ok(None) => Ok(None),
        Err(FrameDecodeError::UnknownCommand { header }) => Ok(Some(RawFrame {
            cmd: header.cmd,
            connection_id: header.connection_id,
            flag: header.flag,
            ext_data: Bytes::new(),
            body: Bytes::new(),
        })),
        Err(error) => Err(error),
    }
}

/// Encodes `frame` into its own buffer.
pub fn encode_frame(frame: &Frame) -> Bytes {
    let mut out = BytesMut::with_capacity(frame.encoded_len());
    frame.encode(&mut out);
    out.freeze()
}

/// The all-zero header template with `cmd` set (PING).
pub fn empty_header(cmd: Command) -> Header {
    Header::new(cmd)
}

/// A reply record: u32 BE payload length, then the payload.
pub fn encode_reply(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    frame::encode_reply(payload, &mut out);
    out.freeze()
}

// ---------------------------------------------------------------------------------------
// PHP values: thin adapters over `protocol::php`, in the shapes the gateway uses.

/// PHP `serialize`.
pub fn serialize(value: &PhpValue) -> Vec<u8> {
    crate::protocol::php::serialize::serialize(value)
}

/// PHP `unserialize` as the gateway sees it: invalid or empty input is `false`.
pub fn unserialize(input: &[u8]) -> PhpValue {
    crate::protocol::php::unserialize::unserialize_lenient(input)
}

/// PHP `json_decode($text, true)`; `None` when the text is not valid JSON (PHP's null).
pub fn json_decode(text: &[u8]) -> Option<PhpValue> {
    crate::protocol::php::json::json_decode(text).ok()
}

/// PHP `json_encode($value, JSON_UNESCAPED_UNICODE)`; `None` where PHP returns false
/// (invalid UTF-8, INF/NAN, too deep).
pub fn json_encode(value: &PhpValue) -> Option<Vec<u8>> {
    use crate::protocol::php::json::{json_encode, JsonEncodeOptions};
    json_encode(value, JsonEncodeOptions::unescaped_unicode()).ok()
}

/// PHP's string conversion of a value used as text (spec 1.2): int → decimal, true →
/// "1", false and null → "", float → 14 significant digits, arrays → "Array".
pub fn scalar_to_bytes(value: &PhpValue) -> Bytes {
    match value {
        PhpValue::Null => Bytes::new(),
        PhpValue::Array(_) => Bytes::from_static(b"Array"),
        other => crate::protocol::php::body::scalar_to_string(other).unwrap_or_default(),
    }
}
