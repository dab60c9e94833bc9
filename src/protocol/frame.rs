//! The GatewayProtocol frame: a 28-byte header, `ext_data`, then the body (spec section 1).
//!
//! ```text
//! offset size field
//! 0      4    pack_len       total length including the header
//! 4      1    cmd
//! 5      4    local_ip       gateway lan IPv4
//! 9      2    local_port     gateway lan port
//! 11     4    client_ip
//! 15     2    client_port
//! 17     4    connection_id
//! 21     1    flag
//! 22     2    gateway_port   gateway public port
//! 24     4    ext_len
//! 28     ext_len ext_data, then the body
//! ```
//!
//! Encoding writes straight into the caller's [`BytesMut`] ([`Frame::encode`], or
//! [`encode_frame`] from parts on the hot path). Decoding is incremental: feed any split of
//! the stream to a [`FrameDecoder`]; `ext_data` and `body` of a decoded frame are zero-copy
//! slices of the input buffer. Query answers are not frames but reply records (spec 1.4):
//! [`encode_reply`] and [`ReplyDecoder`].

use std::net::Ipv4Addr;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 28;

/// The original's maximum package size (workerman `maxPackageSize`): 10 MiB.
pub const PACKAGE_SIZE_MAX_DEFAULT: u32 = 10_485_760;

/// Flag bit 0: the body is raw bytes, not PHP-serialized.
pub const FLAG_BODY_IS_SCALAR: u8 = 0x01;
/// Flag bit 1: write the body to the client as-is, without the client protocol's encoder.
pub const FLAG_NOT_CALL_ENCODE: u8 = 0x02;
/// Flag bit 2, our extension: on ON_MESSAGE the client sent a binary (not text) websocket
/// message; on send commands, write a binary websocket frame. PHP peers ignore unknown bits
/// (spec 1.2), so the extension is invisible to them.
pub const FLAG_BINARY: u8 = 0x04;

/// Every command number of the protocol (spec section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Command {
    /// 1, G→W: a client connected.
    OnConnect = 1,
    /// 3, G→W: a client message.
    OnMessage = 3,
    /// 4, G→W: a client closed.
    OnClose = 4,
    /// 5: send to one client.
    SendToOne = 5,
    /// 6: send to all clients, or to a listed set, with exclusions.
    SendToAll = 6,
    /// 7: send a final message (unless null) and close gracefully.
    Kick = 7,
    /// 8: close at once, discarding pending output.
    Destroy = 8,
    /// 9: merge a partial session (`array_replace_recursive`).
    UpdateSession = 9,
    /// 10, query: every client's session string.
    GetAllClientSessions = 10,
    /// 11, query: is a connection id online.
    IsOnline = 11,
    /// 12: bind a uid.
    BindUid = 12,
    /// 13: unbind the current uid.
    UnbindUid = 13,
    /// 14: send to the clients of a list of uids.
    SendToUid = 14,
    /// 15, query: connection ids of a uid.
    GetClientIdByUid = 15,
    /// 16, query: connection ids of several uids.
    BatchGetClientIdByUid = 16,
    /// 20: join a group.
    JoinGroup = 20,
    /// 21: leave a group.
    LeaveGroup = 21,
    /// 22: send to groups, with exclusions.
    SendToGroup = 22,
    /// 23, query: sessions of a group's members.
    GetClientSessionsByGroup = 23,
    /// 24, query: member count of a group (empty group: all clients).
    GetClientCountByGroup = 24,
    /// 25, query: fields of selected clients.
    Select = 25,
    /// 26, query: groups having members.
    GetGroupIdList = 26,
    /// 27: delete a group.
    Ungroup = 27,
    /// 28, query: member counts of several groups.
    BatchGetClientCountByGroup = 28,
    /// 200: business worker handshake.
    WorkerConnect = 200,
    /// 201, G→W: keep-alive.
    Ping = 201,
    /// 202: API caller handshake.
    GatewayClientConnect = 202,
    /// 203, query: one client's session.
    GetSessionByClientId = 203,
    /// 204: replace a session.
    SetSession = 204,
    /// 205, G→W: websocket handshake data.
    OnWebsocketConnect = 205,
}

/// The header fields of a frame (everything but `pack_len` and `ext_len`, which follow
/// from `ext_data` and `body`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Command number.
    pub cmd: Command,
    /// Gateway lan IPv4.
    pub local_ip: Ipv4Addr,
    /// Gateway lan port.
    pub local_port: u16,
    /// Client IPv4 (0.0.0.0 when not IPv4).
    pub client_ip: Ipv4Addr,
    /// Client source port.
    pub client_port: u16,
    /// Per-gateway connection id (or the target of a command).
    pub connection_id: u32,
    /// Flag bits ([`FLAG_BODY_IS_SCALAR`], [`FLAG_NOT_CALL_ENCODE`], others carried as is).
    pub flag: u8,
    /// Gateway public port.
    pub gateway_port: u16,
}

/// One decoded or to-be-encoded frame; `ext_data` and `body` share the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header fields.
    pub header: Header,
    /// Command-specific extra data (session, uid, group, JSON...).
    pub ext_data: Bytes,
    /// The body bytes (raw when [`FLAG_BODY_IS_SCALAR`] is set, else PHP-serialized).
    pub body: Bytes,
}

/// Most a decoder reserves in the input buffer ahead of bytes that have arrived: an
/// announced length alone (28 bytes of a peer's input) must not commit megabytes.
const RESERVE_AHEAD_MAX: usize = 64 * 1024;

/// Length of the `u32` length prefix of a reply record (spec 1.4).
pub const REPLY_PREFIX_LEN: usize = 4;

/// Default bound on a reply record's payload: 64 MiB. The original reads replies without
/// any bound; replies aggregate per-client data (all sessions of a gateway), so they may
/// legitimately outgrow a frame, but memory must still be bounded.
pub const REPLY_SIZE_MAX_DEFAULT: u32 = 64 * 1024 * 1024;

impl Command {
    /// The command with wire number `n`, or `None` for a number the protocol does not define.
    pub fn from_u8(n: u8) -> Option<Command> {
        use Command::*;
        Some(match n {
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

    /// The wire number of the command.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Command {
    type Error = u8;

    /// Like [`Command::from_u8`], giving back the unknown number as the error.
    fn try_from(n: u8) -> Result<Command, u8> {
        Command::from_u8(n).ok_or(n)
    }
}

impl From<Command> for u8 {
    fn from(cmd: Command) -> u8 {
        cmd.as_u8()
    }
}

impl Header {
    /// An all-zero header with `cmd`: the template workers and API callers fill in (spec 1.1).
    pub fn new(cmd: Command) -> Header {
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
}

/// The 28 header bytes exactly as on the wire, every field a plain number: what the decoder
/// reads before it knows whether `cmd` is defined, and what an unknown-command error carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// Total frame length including the header.
    pub pack_len: u32,
    /// Command number, defined or not.
    pub cmd: u8,
    /// Gateway lan IPv4 as a big-endian integer.
    pub local_ip: u32,
    /// Gateway lan port.
    pub local_port: u16,
    /// Client IPv4 as a big-endian integer.
    pub client_ip: u32,
    /// Client source port.
    pub client_port: u16,
    /// Connection id.
    pub connection_id: u32,
    /// Flag bits.
    pub flag: u8,
    /// Gateway public port.
    pub gateway_port: u16,
    /// Length of `ext_data`.
    pub ext_len: u32,
}

/// The header's fields, in wire order, add up to [`HEADER_LEN`]: checked at compile time.
/// The destructuring is exhaustive, so adding a field to [`RawHeader`] without counting it
/// here fails the build.
const _: () = {
    const fn width<T: Copy>(_: &T) -> usize {
        std::mem::size_of::<T>()
    }
    const fn wire_len(header: &RawHeader) -> usize {
        let RawHeader {
            pack_len,
            cmd,
            local_ip,
            local_port,
            client_ip,
            client_port,
            connection_id,
            flag,
            gateway_port,
            ext_len,
        } = header;
        width(pack_len)
            + width(cmd)
            + width(local_ip)
            + width(local_port)
            + width(client_ip)
            + width(client_port)
            + width(connection_id)
            + width(flag)
            + width(gateway_port)
            + width(ext_len)
    }
    const ZERO: RawHeader = RawHeader {
        pack_len: 0,
        cmd: 0,
        local_ip: 0,
        local_port: 0,
        client_ip: 0,
        client_port: 0,
        connection_id: 0,
        flag: 0,
        gateway_port: 0,
        ext_len: 0,
    };
    assert!(
        wire_len(&ZERO) == HEADER_LEN,
        "HEADER_LEN is not the sum of the header fields"
    );
};

impl RawHeader {
    /// Reads the fields of the first [`HEADER_LEN`] bytes of `bytes`, which must hold them.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> RawHeader {
        let mut b = &bytes[..];
        RawHeader {
            pack_len: b.get_u32(),
            cmd: b.get_u8(),
            local_ip: b.get_u32(),
            local_port: b.get_u16(),
            client_ip: b.get_u32(),
            client_port: b.get_u16(),
            connection_id: b.get_u32(),
            flag: b.get_u8(),
            gateway_port: b.get_u16(),
            ext_len: b.get_u32(),
        }
    }

    /// Appends the 28 header bytes to `dst`.
    pub fn write(&self, dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN);
        dst.put_u32(self.pack_len);
        dst.put_u8(self.cmd);
        dst.put_u32(self.local_ip);
        dst.put_u16(self.local_port);
        dst.put_u32(self.client_ip);
        dst.put_u16(self.client_port);
        dst.put_u32(self.connection_id);
        dst.put_u8(self.flag);
        dst.put_u16(self.gateway_port);
        dst.put_u32(self.ext_len);
    }

    /// The raw header of a frame with `header`, `ext_len` and `body_len`.
    ///
    /// The caller keeps frames far below 4 GiB (the receiver's bound is
    /// [`PACKAGE_SIZE_MAX_DEFAULT`]); lengths that do not fit a `u32` are a bug.
    pub fn from_header(header: &Header, ext_len: usize, body_len: usize) -> RawHeader {
        let pack_len = HEADER_LEN + ext_len + body_len;
        debug_assert!(
            u32::try_from(pack_len).is_ok(),
            "frame length {pack_len} does not fit pack_len (u32)"
        );
        RawHeader {
            pack_len: pack_len as u32,
            cmd: header.cmd.as_u8(),
            local_ip: u32::from(header.local_ip),
            local_port: header.local_port,
            client_ip: u32::from(header.client_ip),
            client_port: header.client_port,
            connection_id: header.connection_id,
            flag: header.flag,
            gateway_port: header.gateway_port,
            ext_len: ext_len as u32,
        }
    }

    /// The typed header, or `None` when `cmd` is not a defined command.
    pub fn to_header(&self) -> Option<Header> {
        Some(Header {
            cmd: Command::from_u8(self.cmd)?,
            local_ip: Ipv4Addr::from(self.local_ip),
            local_port: self.local_port,
            client_ip: Ipv4Addr::from(self.client_ip),
            client_port: self.client_port,
            connection_id: self.connection_id,
            flag: self.flag,
            gateway_port: self.gateway_port,
        })
    }
}

/// Appends one frame made of `header`, `ext_data` and `body` to `dst`, without building a
/// [`Frame`] first (the gateway's hot path for client events).
pub fn encode_frame(dst: &mut BytesMut, header: &Header, ext_data: &[u8], body: &[u8]) {
    let raw = RawHeader::from_header(header, ext_data.len(), body.len());
    dst.reserve(raw.pack_len as usize);
    raw.write(dst);
    dst.put_slice(ext_data);
    dst.put_slice(body);
}

impl Frame {
    /// A frame from its parts.
    pub fn new(header: Header, ext_data: impl Into<Bytes>, body: impl Into<Bytes>) -> Frame {
        Frame {
            header,
            ext_data: ext_data.into(),
            body: body.into(),
        }
    }

    /// Number of bytes [`Frame::encode`] appends: the frame's `pack_len`.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.ext_data.len() + self.body.len()
    }

    /// Appends the frame's wire bytes to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        encode_frame(dst, &self.header, &self.ext_data, &self.body);
    }
}

/// Why a byte stream is not a valid frame sequence. Only [`FrameDecodeError::UnknownCommand`]
/// leaves the stream usable (see [`FrameDecodeError::is_fatal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameDecodeError {
    /// `pack_len` is below the 28 header bytes (0 included); the original would misparse or
    /// stall forever.
    #[error("frame length {pack_len} is below the {HEADER_LEN}-byte header")]
    LengthBelowHeader {
        /// The `pack_len` read.
        pack_len: u32,
    },
    /// `pack_len` exceeds the decoder's bound; the original drops the connection too.
    #[error("frame length {pack_len} exceeds the maximum {package_size_max}")]
    TooLarge {
        /// The `pack_len` read.
        pack_len: u32,
        /// The decoder's bound.
        package_size_max: u32,
    },
    /// `ext_len` does not fit in the frame.
    #[error("ext_len {ext_len} exceeds frame length {pack_len} minus the header")]
    ExtTooLong {
        /// The `ext_len` read.
        ext_len: u32,
        /// The `pack_len` read.
        pack_len: u32,
    },
    /// A well-formed frame whose command number is not defined; it has been consumed whole,
    /// and decoding can go on (spec 2.3: logged and ignored).
    #[error("unknown command {} (frame of {} bytes skipped)", header.cmd, header.pack_len)]
    UnknownCommand {
        /// The skipped frame's header, for the log line.
        header: RawHeader,
    },
}

impl FrameDecodeError {
    /// True when the connection must be closed: the stream cannot be resynchronised.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameDecodeError::UnknownCommand { .. })
    }
}

/// The length of the first frame in `buf` once its header is complete, like the original's
/// `GatewayProtocol::input()`: `Ok(None)` while fewer than 28 bytes are buffered (whatever
/// they are), then `pack_len` after validation against `package_size_max`.
///
/// `TooLarge` is reported as soon as the 4 length bytes are there, so a peer cannot make us
/// wait for (and buffer) a frame we will refuse; the other checks need the whole header.
pub fn frame_len(buf: &[u8], package_size_max: u32) -> Result<Option<usize>, FrameDecodeError> {
    Ok(check_header(buf, package_size_max)?.map(|raw| raw.pack_len as usize))
}

/// Validates the buffered header, if complete enough to say anything.
fn check_header(buf: &[u8], package_size_max: u32) -> Result<Option<RawHeader>, FrameDecodeError> {
    let Some(len_bytes) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let pack_len = u32::from_be_bytes(*len_bytes);
    if pack_len > package_size_max {
        return Err(FrameDecodeError::TooLarge {
            pack_len,
            package_size_max,
        });
    }
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    if (pack_len as usize) < HEADER_LEN {
        return Err(FrameDecodeError::LengthBelowHeader { pack_len });
    }
    let raw = RawHeader::parse(header_bytes);
    if raw.ext_len > pack_len - HEADER_LEN as u32 {
        return Err(FrameDecodeError::ExtTooLong {
            ext_len: raw.ext_len,
            pack_len,
        });
    }
    Ok(Some(raw))
}

/// Incremental frame decoder: call [`FrameDecoder::decode`] after every read with the
/// connection's input buffer; complete frames are split off its front.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    package_size_max: u32,
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(PACKAGE_SIZE_MAX_DEFAULT)
    }
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `package_size_max` bytes (header included).
    pub fn new(package_size_max: u32) -> FrameDecoder {
        FrameDecoder { package_size_max }
    }

    /// The bound on `pack_len` this decoder enforces.
    pub fn package_size_max(&self) -> u32 {
        self.package_size_max
    }

    /// Splits the next complete frame off the front of `src`.
    ///
    /// `Ok(None)`: more bytes are needed (nothing consumed; once the length is known, some
    /// capacity for the rest of the frame is reserved, at most 64 KiB ahead). A fatal error
    /// consumes nothing, so a caller that keeps calling gets the same error again; the
    /// connection must be closed.
    /// [`FrameDecodeError::UnknownCommand`] is returned once the whole frame has arrived,
    /// after consuming it.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameDecodeError> {
        let Some(raw) = check_header(src, self.package_size_max)? else {
            return Ok(None);
        };
        let pack_len = raw.pack_len as usize;
        if src.len() < pack_len {
            src.reserve((pack_len - src.len()).min(RESERVE_AHEAD_MAX));
            return Ok(None);
        }
        let mut frame_bytes = src.split_to(pack_len);
        let Some(header) = raw.to_header() else {
            return Err(FrameDecodeError::UnknownCommand { header: raw });
        };
        frame_bytes.advance(HEADER_LEN);
        let ext_data = frame_bytes.split_to(raw.ext_len as usize).freeze();
        let body = frame_bytes.freeze();
        Ok(Some(Frame {
            header,
            ext_data,
            body,
        }))
    }
}

/// Appends a reply record (spec 1.4): the payload's length as a `u32`, then the payload.
pub fn encode_reply(payload: &[u8], dst: &mut BytesMut) {
    debug_assert!(
        u32::try_from(payload.len()).is_ok(),
        "reply payload of {} bytes does not fit the u32 length",
        payload.len()
    );
    dst.reserve(REPLY_PREFIX_LEN + payload.len());
    dst.put_u32(payload.len() as u32);
    dst.put_slice(payload);
}

/// Why a byte stream is not a valid reply record sequence; always fatal for the link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyDecodeError {
    /// The announced payload length exceeds the decoder's bound.
    #[error("reply length {len} exceeds the maximum {reply_size_max}")]
    TooLarge {
        /// The announced payload length.
        len: u32,
        /// The decoder's bound.
        reply_size_max: u32,
    },
}

/// Incremental reply record decoder, the caller's side of a query link.
#[derive(Debug, Clone)]
pub struct ReplyDecoder {
    reply_size_max: u32,
}

impl Default for ReplyDecoder {
    fn default() -> ReplyDecoder {
        ReplyDecoder::new(REPLY_SIZE_MAX_DEFAULT)
    }
}

impl ReplyDecoder {
    /// A decoder refusing payloads longer than `reply_size_max` bytes (prefix excluded).
    pub fn new(reply_size_max: u32) -> ReplyDecoder {
        ReplyDecoder { reply_size_max }
    }

    /// Splits the next complete reply payload off the front of `src` (zero-copy).
    ///
    /// `Ok(None)`: more bytes are needed. An error consumes nothing; close the link.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, ReplyDecodeError> {
        let Some(len_bytes) = src.first_chunk::<REPLY_PREFIX_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*len_bytes);
        if len > self.reply_size_max {
            return Err(ReplyDecodeError::TooLarge {
                len,
                reply_size_max: self.reply_size_max,
            });
        }
        // Checked: on a target where this could overflow the record is too large anyway.
        let record_len = usize::try_from(len)
            .ok()
            .and_then(|len| len.checked_add(REPLY_PREFIX_LEN))
            .ok_or(ReplyDecodeError::TooLarge {
                len,
                reply_size_max: self.reply_size_max,
            })?;
        if src.len() < record_len {
            src.reserve((record_len - src.len()).min(RESERVE_AHEAD_MAX));
            return Ok(None);
        }
        src.advance(REPLY_PREFIX_LEN);
        Ok(Some(src.split_to(record_len - REPLY_PREFIX_LEN).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping_bytes() -> BytesMut {
        let mut buf = BytesMut::new();
        let mut header = Header::new(Command::Ping);
        header.flag = FLAG_BODY_IS_SCALAR;
        encode_frame(&mut buf, &header, b"", b"");
        buf
    }

    #[test]
    fn every_command_round_trips_through_its_number() {
        let defined: Vec<Command> = (0..=255u8).filter_map(Command::from_u8).collect();
        assert_eq!(defined.len(), 30);
        for cmd in defined {
            assert_eq!(Command::from_u8(cmd.as_u8()), Some(cmd));
            assert_eq!(Command::try_from(u8::from(cmd)), Ok(cmd));
        }
        assert_eq!(Command::try_from(2), Err(2));
    }

    #[test]
    fn too_large_is_reported_from_the_four_length_bytes() {
        let mut decoder = FrameDecoder::new(100);
        let mut src = BytesMut::from(&[0u8, 0, 0][..]);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        src.put_u8(101);
        let err = decoder.decode(&mut src).unwrap_err();
        assert_eq!(
            err,
            FrameDecodeError::TooLarge {
                pack_len: 101,
                package_size_max: 100
            }
        );
        assert!(err.is_fatal());
        assert_eq!(src.len(), 4, "a fatal error consumes nothing");
    }

    #[test]
    fn frame_exactly_at_the_bound_is_accepted() {
        let mut decoder = FrameDecoder::new(30);
        let mut src = BytesMut::new();
        encode_frame(&mut src, &Header::new(Command::SendToOne), b"e", b"b");
        let frame = decoder.decode(&mut src).unwrap().unwrap();
        assert_eq!(
            (&frame.ext_data[..], &frame.body[..]),
            (&b"e"[..], &b"b"[..])
        );
        encode_frame(&mut src, &Header::new(Command::SendToOne), b"e", b"bb");
        assert!(matches!(
            decoder.decode(&mut src),
            Err(FrameDecodeError::TooLarge { pack_len: 31, .. })
        ));
    }

    #[test]
    fn length_below_header_is_fatal_once_the_header_is_buffered() {
        for pack_len in [0u32, 1, 4, 27] {
            let mut src = ping_bytes();
            src[..4].copy_from_slice(&pack_len.to_be_bytes());
            let mut short = BytesMut::from(&src[..27]);
            assert_eq!(FrameDecoder::default().decode(&mut short), Ok(None));
            let err = FrameDecoder::default().decode(&mut src).unwrap_err();
            assert_eq!(err, FrameDecodeError::LengthBelowHeader { pack_len });
            assert!(err.is_fatal());
        }
    }

    #[test]
    fn ext_len_beyond_the_frame_is_fatal() {
        let mut src = BytesMut::new();
        encode_frame(&mut src, &Header::new(Command::BindUid), b"uid", b"");
        src[24..28].copy_from_slice(&4u32.to_be_bytes());
        let err = FrameDecoder::default().decode(&mut src).unwrap_err();
        assert_eq!(
            err,
            FrameDecodeError::ExtTooLong {
                ext_len: 4,
                pack_len: 31
            }
        );
        assert!(err.is_fatal());
        // ext_len == pack_len - 28: all ext, empty body, accepted.
        src[24..28].copy_from_slice(&3u32.to_be_bytes());
        let frame = FrameDecoder::default().decode(&mut src).unwrap().unwrap();
        assert_eq!(
            (&frame.ext_data[..], &frame.body[..]),
            (&b"uid"[..], &b""[..])
        );
    }

    #[test]
    fn unknown_command_consumes_its_frame_and_decoding_goes_on() {
        let mut src = ping_bytes();
        src[4] = 2;
        src.extend_from_slice(&ping_bytes());
        let mut decoder = FrameDecoder::default();
        let err = decoder.decode(&mut src).unwrap_err();
        assert!(!err.is_fatal());
        assert!(matches!(err, FrameDecodeError::UnknownCommand { header } if header.cmd == 2));
        let frame = decoder.decode(&mut src).unwrap().unwrap();
        assert_eq!(frame.header.cmd, Command::Ping);
        assert!(src.is_empty());
    }

    #[test]
    fn unknown_command_waits_for_its_whole_frame() {
        let mut full = BytesMut::new();
        let mut raw = RawHeader::from_header(&Header::new(Command::SendToOne), 0, 3);
        raw.cmd = 99;
        raw.write(&mut full);
        full.extend_from_slice(b"abc");
        let mut src = BytesMut::from(&full[..30]);
        let mut decoder = FrameDecoder::default();
        assert_eq!(decoder.decode(&mut src), Ok(None));
        src.extend_from_slice(&full[30..]);
        assert!(matches!(
            decoder.decode(&mut src),
            Err(FrameDecodeError::UnknownCommand { .. })
        ));
        assert!(src.is_empty());
    }

    #[test]
    fn decoded_parts_share_the_input_allocation() {
        let mut src = BytesMut::new();
        encode_frame(&mut src, &Header::new(Command::SendToOne), b"ext", b"body");
        let base = src.as_ptr() as usize;
        let frame = FrameDecoder::default().decode(&mut src).unwrap().unwrap();
        assert_eq!(frame.ext_data.as_ptr() as usize, base + HEADER_LEN);
        assert_eq!(frame.body.as_ptr() as usize, base + HEADER_LEN + 3);
    }

    #[test]
    fn lengths_at_u32_max_wait_with_a_bounded_reservation() {
        // Frame: pack_len = u32::MAX with the bound at u32::MAX is legal; the decoder waits
        // and reserves at most RESERVE_AHEAD_MAX ahead.
        let mut header = BytesMut::new();
        encode_frame(&mut header, &Header::new(Command::SendToOne), b"", b"");
        header[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut src = header.clone();
        let mut decoder = FrameDecoder::new(u32::MAX);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        assert!(src.capacity() <= HEADER_LEN + RESERVE_AHEAD_MAX + 64);
        assert_eq!(frame_len(&header, u32::MAX), Ok(Some(u32::MAX as usize)));
        // Reply: the same for a u32::MAX payload.
        let mut src = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let mut replies = ReplyDecoder::new(u32::MAX);
        assert_eq!(replies.decode(&mut src), Ok(None));
        assert!(src.capacity() <= REPLY_PREFIX_LEN + RESERVE_AHEAD_MAX + 64);
        let mut src = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert_eq!(
            ReplyDecoder::new(u32::MAX - 1).decode(&mut src),
            Err(ReplyDecodeError::TooLarge {
                len: u32::MAX,
                reply_size_max: u32::MAX - 1
            })
        );
    }

    #[test]
    fn reply_records_round_trip_and_respect_the_bound() {
        let mut src = BytesMut::new();
        encode_reply(b"i:1;", &mut src);
        encode_reply(b"", &mut src);
        assert_eq!(&src[..4], &[0, 0, 0, 4]);
        let mut decoder = ReplyDecoder::new(4);
        assert_eq!(decoder.decode(&mut src).unwrap().unwrap(), &b"i:1;"[..]);
        assert_eq!(decoder.decode(&mut src).unwrap().unwrap(), &b""[..]);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        encode_reply(b"12345", &mut src);
        assert_eq!(
            decoder.decode(&mut src),
            Err(ReplyDecodeError::TooLarge {
                len: 5,
                reply_size_max: 4
            })
        );
    }
}
