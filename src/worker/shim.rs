//! Temporary stand-ins for codecs being written on other branches (frame encoding, client
//! ids, PHP serialize/unserialize, PHP-style JSON). Replaced by the real modules after the
//! merge; kept private and minimal.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::frame::{Frame, HEADER_LEN};
use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

/// Encodes one frame (spec 1.1).
#[allow(dead_code)] // Used by the core, next.
pub fn encode_frame(frame: &Frame) -> Bytes {
    let h = &frame.header;
    let len = HEADER_LEN + frame.ext_data.len() + frame.body.len();
    let mut out = BytesMut::with_capacity(len);
    out.put_u32(len as u32);
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

/// PHP `Context::clientIdToAddress`: length 20 only; an illegal hex digit counts as 0.
pub fn parse_client_id(text: &[u8]) -> Option<(Ipv4Addr, u16, u32)> {
    if text.len() != 20 {
        return None;
    }
    let mut raw = [0u8; 10];
    for (i, pair) in text.chunks(2).enumerate() {
        raw[i] = (nibble(pair[0]) << 4) | nibble(pair[1]);
    }
    let ip = Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]);
    let port = u16::from_be_bytes([raw[4], raw[5]]);
    let cid = u32::from_be_bytes([raw[6], raw[7], raw[8], raw[9]]);
    Some((ip, port, cid))
}

fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    }
}

/// `bin2hex(pack('NnN', ...))`.
pub fn format_client_id(ip: Ipv4Addr, port: u16, cid: u32) -> Bytes {
    let mut raw = Vec::with_capacity(10);
    raw.extend_from_slice(&ip.octets());
    raw.extend_from_slice(&port.to_be_bytes());
    raw.extend_from_slice(&cid.to_be_bytes());
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Bytes::from(hex)
}

/// `(string)$value` for scalars; `None` for null and arrays.
pub fn scalar_to_string(value: &PhpValue) -> Option<Bytes> {
    match value {
        PhpValue::Str(s) => Some(s.clone()),
        PhpValue::Int(n) => Some(Bytes::from(n.to_string())),
        PhpValue::Float(x) => Some(Bytes::from(format!("{x}"))),
        PhpValue::Bool(true) => Some(Bytes::from_static(b"1")),
        PhpValue::Bool(false) => Some(Bytes::new()),
        PhpValue::Null | PhpValue::Array(_) => None,
    }
}

/// Frame body and flag bits of a value (spec 1.2).
pub fn encode_body(value: &PhpValue) -> (Bytes, u8) {
    match scalar_to_string(value) {
        Some(s) => (s, 1),
        None => (Bytes::from(serialize(value)), 0),
    }
}

/// PHP `serialize` (floats approximate: stand-in only).
pub fn serialize(value: &PhpValue) -> Vec<u8> {
    let mut out = Vec::new();
    ser(value, &mut out);
    out
}

fn ser(value: &PhpValue, out: &mut Vec<u8>) {
    match value {
        PhpValue::Null => out.extend_from_slice(b"N;"),
        PhpValue::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
        PhpValue::Int(n) => out.extend_from_slice(format!("i:{n};").as_bytes()),
        PhpValue::Float(x) => out.extend_from_slice(format!("d:{x};").as_bytes()),
        PhpValue::Str(s) => {
            out.extend_from_slice(format!("s:{}:\"", s.len()).as_bytes());
            out.extend_from_slice(s);
            out.extend_from_slice(b"\";");
        }
        PhpValue::Array(a) => {
            out.extend_from_slice(format!("a:{}:{{", a.len()).as_bytes());
            for (k, v) in a.iter() {
                match k {
                    PhpKey::Int(n) => ser(&PhpValue::Int(*n), out),
                    PhpKey::Str(s) => ser(&PhpValue::Str(s.clone()), out),
                }
                ser(v, out);
            }
            out.push(b'}');
        }
    }
}

/// PHP `unserialize`, `false` on any error (stand-in: no floats beyond Rust parsing).
pub fn unserialize_lenient(input: &[u8]) -> PhpValue {
    let mut pos = 0;
    unser(input, &mut pos, 0).unwrap_or(PhpValue::Bool(false))
}

fn take_until(input: &[u8], pos: &mut usize, end: u8) -> Option<Vec<u8>> {
    let start = *pos;
    let rel = input.get(start..)?.iter().position(|&b| b == end)?;
    *pos = start + rel + 1;
    Some(input[start..start + rel].to_vec())
}

fn unser(input: &[u8], pos: &mut usize, depth: usize) -> Option<PhpValue> {
    if depth > 64 {
        return None;
    }
    let tag = *input.get(*pos)?;
    if tag == b'N' {
        (input.get(*pos + 1) == Some(&b';')).then_some(())?;
        *pos += 2;
        return Some(PhpValue::Null);
    }
    (input.get(*pos + 1) == Some(&b':')).then_some(())?;
    *pos += 2;
    match tag {
        b'b' => {
            let t = take_until(input, pos, b';')?;
            Some(PhpValue::Bool(t == b"1"))
        }
        b'i' => {
            let t = take_until(input, pos, b';')?;
            Some(PhpValue::Int(std::str::from_utf8(&t).ok()?.parse().ok()?))
        }
        b'd' => {
            let t = take_until(input, pos, b';')?;
            Some(PhpValue::Float(std::str::from_utf8(&t).ok()?.parse().ok()?))
        }
        b's' => {
            let t = take_until(input, pos, b':')?;
            let len: usize = std::str::from_utf8(&t).ok()?.parse().ok()?;
            (input.get(*pos) == Some(&b'"')).then_some(())?;
            let s = input.get(*pos + 1..*pos + 1 + len)?.to_vec();
            *pos += 1 + len;
            (input.get(*pos..*pos + 2) == Some(b"\";")).then_some(())?;
            *pos += 2;
            Some(PhpValue::Str(Bytes::from(s)))
        }
        b'a' => {
            let t = take_until(input, pos, b':')?;
            let n: usize = std::str::from_utf8(&t).ok()?.parse().ok()?;
            (input.get(*pos) == Some(&b'{')).then_some(())?;
            *pos += 1;
            let mut array = PhpArray::new();
            for _ in 0..n {
                let key = match unser(input, pos, depth + 1)? {
                    PhpValue::Int(k) => PhpKey::Int(k),
                    PhpValue::Str(s) => PhpKey::from_shared(s),
                    _ => return None,
                };
                let value = unser(input, pos, depth + 1)?;
                array.insert(key, value);
            }
            (input.get(*pos) == Some(&b'}')).then_some(())?;
            *pos += 1;
            Some(PhpValue::Array(array))
        }
        _ => None,
    }
}

/// PHP `json_encode` with default flags; `None` where PHP returns false (invalid UTF-8,
/// non-finite floats).
pub fn json_encode(value: &PhpValue) -> Option<Bytes> {
    let mut out = Vec::new();
    json(value, &mut out)?;
    Some(Bytes::from(out))
}

fn json(value: &PhpValue, out: &mut Vec<u8>) -> Option<()> {
    match value {
        PhpValue::Null => out.extend_from_slice(b"null"),
        PhpValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        PhpValue::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
        PhpValue::Float(x) => {
            if !x.is_finite() {
                return None;
            }
            out.extend_from_slice(format!("{x:?}").as_bytes())
        }
        PhpValue::Str(s) => json_str(s, out)?,
        PhpValue::Array(a) => {
            let list = a
                .iter()
                .enumerate()
                .all(|(i, (k, _))| *k == PhpKey::Int(i as i64));
            out.push(if list { b'[' } else { b'{' });
            for (i, (k, v)) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !list {
                    json_str(&k.to_bytes(), out)?;
                    out.push(b':');
                }
                json(v, out)?;
            }
            out.push(if list { b']' } else { b'}' });
        }
    }
    Some(())
}

fn json_str(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
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
            c if (c as u32) < 0x20 || (c as u32) >= 0x80 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
                }
            }
            c => out.push(c as u8),
        }
    }
    out.push(b'"');
    Some(())
}

/// The command of a received header byte.
pub fn command_from(byte: u8) -> Option<crate::protocol::frame::Command> {
    use crate::protocol::frame::Command::*;
    Some(match byte {
        1 => OnConnect,
        3 => OnMessage,
        4 => OnClose,
        5 => SendToOne,
        6 => SendToAll,
        7 => Kick,
        8 => Destroy,
        9 => UpdateSession,
        10 => GetAllClientSessions,
        11 => IsOnline,
        12 => BindUid,
        13 => UnbindUid,
        14 => SendToUid,
        15 => GetClientIdByUid,
        16 => BatchGetClientIdByUid,
        20 => JoinGroup,
        21 => LeaveGroup,
        22 => SendToGroup,
        23 => GetClientSessionsByGroup,
        24 => GetClientCountByGroup,
        25 => Select,
        26 => GetGroupIdList,
        27 => Ungroup,
        28 => BatchGetClientCountByGroup,
        200 => WorkerConnect,
        201 => Ping,
        202 => GatewayClientConnect,
        203 => GetSessionByClientId,
        204 => SetSession,
        205 => OnWebsocketConnect,
        _ => return None,
    })
}

/// Decodes one complete frame (`bytes.len() == pack_len`); `None` when malformed.
pub fn decode_frame(bytes: Bytes) -> Option<Option<Frame>> {
    use crate::protocol::frame::Header;
    if bytes.len() < HEADER_LEN {
        return None;
    }
    let b = &bytes;
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let ext_len = u32_at(24) as usize;
    if ext_len > bytes.len() - HEADER_LEN {
        return None;
    }
    let Some(cmd) = command_from(b[4]) else {
        return Some(None);
    };
    let header = Header {
        cmd,
        local_ip: Ipv4Addr::from(u32_at(5)),
        local_port: u16_at(9),
        client_ip: Ipv4Addr::from(u32_at(11)),
        client_port: u16_at(15),
        connection_id: u32_at(17),
        flag: b[21],
        gateway_port: u16_at(22),
    };
    let ext_data = bytes.slice(HEADER_LEN..HEADER_LEN + ext_len);
    let body = bytes.slice(HEADER_LEN + ext_len..);
    Some(Some(Frame {
        header,
        ext_data,
        body,
    }))
}

/// The PHP value of a received body (spec 1.2).
pub fn decode_body(body: &Bytes, flag: u8) -> PhpValue {
    if flag & 1 != 0 {
        PhpValue::Str(body.clone())
    } else {
        unserialize_lenient(body)
    }
}
