//! Stand-ins for codecs that other modules of the crate are still being written for
//! (frame encoder/decoder, reply records), plus thin adapters over `protocol::php`. Private to the gateway; each function names the module
//! that will replace it, so the swap after the merge is mechanical.

use std::net::Ipv4Addr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::frame::{Command, Frame, Header, HEADER_LEN};
use crate::protocol::php::PhpValue;

// ---------------------------------------------------------------------------------------
// Frames (to be replaced by `protocol::frame`).

/// Why a buffered link input cannot be framed; the link is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `pack_len` below the 28-byte header.
    #[error("pack_len {0} is shorter than the header")]
    TooShort(u32),
    /// `pack_len` above the package size bound.
    #[error("pack_len {0} exceeds package_size_max")]
    TooLarge(u32),
    /// `ext_len` larger than the space the frame has after its header.
    #[error("ext_len {ext_len} exceeds the frame ({pack_len} bytes)")]
    ExtTooLong {
        /// Declared ext length.
        ext_len: u32,
        /// Declared frame length.
        pack_len: u32,
    },
}

/// A decoded frame whose command number may be outside [`Command`].
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// Command byte as received.
    pub cmd: u8,
    /// Header connection id.
    pub connection_id: u32,
    /// Header flag.
    pub flag: u8,
    /// ext_data.
    pub ext_data: Bytes,
    /// body.
    pub body: Bytes,
}

/// Takes one complete frame off the front of `buf`, if there is one.
pub fn decode_frame(
    buf: &mut BytesMut,
    package_size_max: u32,
) -> Result<Option<RawFrame>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let pack_len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if pack_len < HEADER_LEN as u32 {
        return Err(FrameError::TooShort(pack_len));
    }
    if pack_len > package_size_max {
        return Err(FrameError::TooLarge(pack_len));
    }
    let ext_len = u32::from_be_bytes([buf[24], buf[25], buf[26], buf[27]]);
    if ext_len > pack_len - HEADER_LEN as u32 {
        return Err(FrameError::ExtTooLong { ext_len, pack_len });
    }
    if buf.len() < pack_len as usize {
        return Ok(None);
    }
    let mut frame = buf.split_to(pack_len as usize).freeze();
    let cmd = frame[4];
    let connection_id = u32::from_be_bytes([frame[17], frame[18], frame[19], frame[20]]);
    let flag = frame[21];
    frame.advance(HEADER_LEN);
    let ext_data = frame.split_to(ext_len as usize);
    Ok(Some(RawFrame {
        cmd,
        connection_id,
        flag,
        ext_data,
        body: frame,
    }))
}

/// Encodes `frame` (header, ext_data, body).
pub fn encode_frame(frame: &Frame) -> Bytes {
    let h = &frame.header;
    let pack_len = HEADER_LEN + frame.ext_data.len() + frame.body.len();
    let mut out = BytesMut::with_capacity(pack_len);
    out.put_u32(pack_len as u32);
    out.put_u8(h.cmd as u8);
    out.put_u32(u32::from(h.local_ip));
    out.put_u16(h.local_port);
    out.put_u32(u32::from(h.client_ip));
    out.put_u16(h.client_port);
    out.put_u32(h.connection_id);
    out.put_u8(h.flag);
    out.put_u16(h.gateway_port);
    out.put_u32(frame.ext_data.len() as u32);
    out.put_slice(&frame.ext_data);
    out.put_slice(&frame.body);
    out.freeze()
}

/// The all-zero header template with `cmd` set (PING).
pub fn empty_header(cmd: Command) -> Header {
    Header {
        cmd,
        local_ip: Ipv4Addr::UNSPECIFIED,
        local_port: 0,
        client_ip: Ipv4Addr::UNSPECIFIED,
        client_port: 0,
        connection_id: 0,
        flag: 0,
        gateway_port: 0,
    }
}

/// A reply record: u32 BE payload length, then the payload.
pub fn encode_reply(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
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
