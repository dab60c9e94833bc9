//! Temporary stand-ins for codecs being written on other branches (frame encoding, client
//! ids), and thin adapters over the PHP value codecs. Replaced by the real modules after
//! the merge; kept private and minimal.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::frame::{Frame, HEADER_LEN};
pub use crate::protocol::php::body::{decode_body, encode_body, scalar_to_string};
use crate::protocol::php::json::{self, JsonEncodeOptions};
pub use crate::protocol::php::serialize::serialize;
pub use crate::protocol::php::unserialize::unserialize_lenient;
use crate::protocol::php::PhpValue;

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

/// PHP `json_encode` with default flags; `None` where PHP returns false.
pub fn json_encode(value: &PhpValue) -> Option<Bytes> {
    json::json_encode(value, JsonEncodeOptions::default())
        .ok()
        .map(Bytes::from)
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
