//! Stand-ins for codecs that other modules of the crate are still being written for
//! (frame encoder/decoder, reply records, PHP serialize/unserialize, PHP-flavoured JSON,
//! `array_replace_recursive`). Private to the gateway; each function names the module
//! that will replace it, so the swap after the merge is mechanical.

use std::net::Ipv4Addr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::frame::{Command, Frame, Header, HEADER_LEN};
use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

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
// PHP serialize / unserialize (to be replaced by `protocol::php`).

/// PHP `serialize`.
pub fn serialize(value: &PhpValue) -> Vec<u8> {
    let mut out = Vec::new();
    serialize_into(value, &mut out);
    out
}

fn serialize_into(value: &PhpValue, out: &mut Vec<u8>) {
    match value {
        PhpValue::Null => out.extend_from_slice(b"N;"),
        PhpValue::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
        PhpValue::Int(n) => out.extend_from_slice(format!("i:{n};").as_bytes()),
        PhpValue::Float(f) => out.extend_from_slice(format!("d:{};", float_repr(*f)).as_bytes()),
        PhpValue::Str(s) => {
            out.extend_from_slice(format!("s:{}:\"", s.len()).as_bytes());
            out.extend_from_slice(s);
            out.extend_from_slice(b"\";");
        }
        PhpValue::Array(a) => {
            out.extend_from_slice(format!("a:{}:{{", a.len()).as_bytes());
            for (k, v) in a.iter() {
                match k {
                    PhpKey::Int(n) => out.extend_from_slice(format!("i:{n};").as_bytes()),
                    PhpKey::Str(s) => serialize_into(&PhpValue::Str(s.clone()), out),
                }
                serialize_into(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Shortest round-trip float text (approximation of PHP's; the real one lands with
/// `protocol::php`).
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NAN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "INF".into() } else { "-INF".into() };
    }
    if f == f.trunc() && f.abs() < 1e15 {
        return format!("{}", f as i64);
    }
    format!("{f}")
}

/// PHP `unserialize` of the subset GatewayWorker uses; `None` for invalid input (PHP's
/// `false`). Trailing bytes are accepted.
pub fn unserialize(input: &[u8]) -> Option<PhpValue> {
    let mut pos = 0;
    parse_value(input, &mut pos, 0)
}

const DEPTH_MAX: usize = 64;

fn parse_value(s: &[u8], pos: &mut usize, depth: usize) -> Option<PhpValue> {
    if depth > DEPTH_MAX {
        return None;
    }
    let tag = *s.get(*pos)?;
    if tag == b'N' {
        expect(s, pos, b"N;")?;
        return Some(PhpValue::Null);
    }
    if s.get(*pos + 1) != Some(&b':') {
        return None;
    }
    *pos += 2;
    match tag {
        b'b' => {
            let v = read_until(s, pos, b';')?;
            match v {
                b"0" => Some(PhpValue::Bool(false)),
                b"1" => Some(PhpValue::Bool(true)),
                _ => None,
            }
        }
        b'i' => {
            let v = read_until(s, pos, b';')?;
            std::str::from_utf8(v).ok()?.parse().ok().map(PhpValue::Int)
        }
        b'd' => {
            let v = std::str::from_utf8(read_until(s, pos, b';')?).ok()?;
            let f = match v {
                "NAN" => f64::NAN,
                "INF" => f64::INFINITY,
                "-INF" => f64::NEG_INFINITY,
                _ => v.parse().ok()?,
            };
            Some(PhpValue::Float(f))
        }
        b's' => {
            let len: usize = std::str::from_utf8(read_until(s, pos, b':')?)
                .ok()?
                .parse()
                .ok()?;
            expect(s, pos, b"\"")?;
            let end = pos.checked_add(len)?;
            let bytes = s.get(*pos..end)?;
            *pos = end;
            expect(s, pos, b"\";")?;
            Some(PhpValue::Str(Bytes::copy_from_slice(bytes)))
        }
        b'a' => {
            let count: usize = std::str::from_utf8(read_until(s, pos, b':')?)
                .ok()?
                .parse()
                .ok()?;
            expect(s, pos, b"{")?;
            let mut array = PhpArray::new();
            for _ in 0..count {
                let key = match parse_value(s, pos, depth + 1)? {
                    PhpValue::Int(n) => PhpKey::Int(n),
                    PhpValue::Str(b) => PhpKey::from_shared(b),
                    _ => return None,
                };
                let value = parse_value(s, pos, depth + 1)?;
                array.insert(key, value);
            }
            expect(s, pos, b"}")?;
            Some(PhpValue::Array(array))
        }
        _ => None,
    }
}

fn expect(s: &[u8], pos: &mut usize, lit: &[u8]) -> Option<()> {
    if s.get(*pos..*pos + lit.len())? == lit {
        *pos += lit.len();
        Some(())
    } else {
        None
    }
}

fn read_until<'a>(s: &'a [u8], pos: &mut usize, end: u8) -> Option<&'a [u8]> {
    let rest = s.get(*pos..)?;
    let n = rest.iter().position(|&b| b == end)?;
    *pos += n + 1;
    Some(&rest[..n])
}

/// `array_replace_recursive(base, patch)` (spec 7.4).
pub fn array_replace_recursive(base: &mut PhpArray, patch: &PhpArray) {
    for (k, v) in patch.iter() {
        match (base.get_mut(k), v) {
            (Some(PhpValue::Array(inner)), PhpValue::Array(p)) => array_replace_recursive(inner, p),
            _ => base.insert(k.clone(), v.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON (to be replaced by `protocol::php::json`).

/// PHP `json_decode($text, true)`; `None` when the text is not valid JSON.
pub fn json_decode(text: &[u8]) -> Option<PhpValue> {
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    Some(from_json(&value))
}

fn from_json(value: &serde_json::Value) -> PhpValue {
    use serde_json::Value;
    match value {
        Value::Null => PhpValue::Null,
        Value::Bool(b) => PhpValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => PhpValue::Int(i),
            None => PhpValue::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => PhpValue::str(s),
        Value::Array(items) => {
            let mut array = PhpArray::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                array.push_unique(PhpKey::Int(i as i64), from_json(item));
            }
            PhpValue::Array(array)
        }
        Value::Object(map) => PhpValue::Array(
            map.iter()
                .map(|(k, v)| (PhpKey::from_bytes(k.as_bytes()), from_json(v)))
                .collect(),
        ),
    }
}

/// PHP `json_encode($value, JSON_UNESCAPED_UNICODE)`; `None` where PHP fails (invalid
/// UTF-8, INF/NAN).
pub fn json_encode(value: &PhpValue) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    json_into(value, &mut out)?;
    Some(out)
}

fn json_into(value: &PhpValue, out: &mut Vec<u8>) -> Option<()> {
    match value {
        PhpValue::Null => out.extend_from_slice(b"null"),
        PhpValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        PhpValue::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        PhpValue::Float(f) => {
            if !f.is_finite() {
                return None;
            }
            let mut text = float_repr(*f);
            if !text.contains(['.', 'e', 'E']) {
                text.push_str(".0");
            }
            out.extend_from_slice(text.as_bytes());
        }
        PhpValue::Str(s) => json_string(s, out)?,
        PhpValue::Array(a) => {
            let is_list = a
                .iter()
                .enumerate()
                .all(|(i, (k, _))| *k == PhpKey::Int(i as i64));
            out.push(if is_list { b'[' } else { b'{' });
            for (i, (k, v)) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !is_list {
                    json_string(&k.to_bytes(), out)?;
                    out.push(b':');
                }
                json_into(v, out)?;
            }
            out.push(if is_list { b']' } else { b'}' });
        }
    }
    Some(())
}

fn json_string(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let text = std::str::from_utf8(s).ok()?;
    out.push(b'"');
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '/' => out.extend_from_slice(b"\\/"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
    Some(())
}

/// PHP's string conversion of a scalar for a message body (spec 1.2): int → decimal,
/// true → "1", false/null → "", float → 14 significant digits.
pub fn scalar_to_bytes(value: &PhpValue) -> Bytes {
    match value {
        PhpValue::Null | PhpValue::Bool(false) => Bytes::new(),
        PhpValue::Bool(true) => Bytes::from_static(b"1"),
        PhpValue::Int(n) => Bytes::from(n.to_string()),
        PhpValue::Float(f) => Bytes::from(float_14(*f)),
        PhpValue::Str(s) => s.clone(),
        PhpValue::Array(_) => Bytes::from_static(b"Array"),
    }
}

fn float_14(f: f64) -> String {
    if !f.is_finite() {
        return float_repr(f);
    }
    let text = format!("{:.13e}", f);
    let parsed: f64 = text.parse().unwrap_or(f);
    float_repr(parsed)
}
