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
//! (Types only so far: the encoder and the incremental decoder are being written.)

use std::net::Ipv4Addr;

use bytes::Bytes;

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
