//! The `client_id`: the name of one client across the whole cluster (spec section 3).
//!
//! It is the lowercase hex of 10 bytes, `local_ip (u32 BE) ‖ local_port (u16 BE) ‖
//! connection_id (u32 BE)`: the gateway that owns the client and the client's number on
//! that gateway. Senders parse it to know which gateway to send a command to.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// Length of a client id in hex characters.
pub const CLIENT_ID_LEN: usize = 20;

/// A parsed client id: which gateway (`local_ip:local_port`) and which connection on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    /// The gateway's lan IPv4 (its registered address).
    pub local_ip: Ipv4Addr,
    /// The gateway's lan port.
    pub local_port: u16,
    /// The connection's number on that gateway.
    pub connection_id: u32,
}

/// Why bytes are not a client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdParseError {
    /// Not exactly 20 characters (the only check the original makes).
    #[error("client_id must be {CLIENT_ID_LEN} hex characters, got {len}")]
    WrongLength {
        /// The length received.
        len: usize,
    },
    /// A character that is not a hex digit. The original's `hex2bin`/`unpack` would warn
    /// and produce garbage; we refuse.
    #[error("client_id has a non-hex byte {byte:#04x} at position {position}")]
    NotHex {
        /// Index of the offending byte.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl ClientId {
    /// The client id of `connection_id` on the gateway at `gateway`.
    pub fn new(gateway: SocketAddrV4, connection_id: u32) -> ClientId {
        ClientId {
            local_ip: *gateway.ip(),
            local_port: gateway.port(),
            connection_id,
        }
    }

    /// The 10 bytes the hex form encodes.
    pub fn to_bytes(&self) -> [u8; 10] {
        let mut out = [0u8; 10];
        out[..4].copy_from_slice(&self.local_ip.octets());
        out[4..6].copy_from_slice(&self.local_port.to_be_bytes());
        out[6..].copy_from_slice(&self.connection_id.to_be_bytes());
        out
    }

    /// The 20 lowercase hex characters, without heap allocation.
    pub fn to_hex(&self) -> [u8; CLIENT_ID_LEN] {
        let mut out = [0u8; CLIENT_ID_LEN];
        for (i, byte) in self.to_bytes().iter().enumerate() {
            out[2 * i] = HEX_DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }

    /// Parses 20 hex characters, upper or lower case.
    pub fn parse(text: &[u8]) -> Result<ClientId, ClientIdParseError> {
        let digits: &[u8; CLIENT_ID_LEN] = text
            .try_into()
            .map_err(|_| ClientIdParseError::WrongLength { len: text.len() })?;
        let mut bytes = [0u8; 10];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0], 2 * i)?;
            let low = hex_value(pair[1], 2 * i + 1)?;
            bytes[i] = (high << 4) | low;
        }
        Ok(ClientId {
            local_ip: Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]),
            local_port: u16::from_be_bytes([bytes[4], bytes[5]]),
            connection_id: u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]),
        })
    }

    /// The address the owning gateway registered (`lanIp:lanPort`): where to send commands.
    pub fn gateway_address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.local_ip, self.local_port)
    }
}

fn hex_value(byte: u8, position: usize) -> Result<u8, ClientIdParseError> {
    match byte {
        b'0'..=b'9' => Ok(byte - b'0'),
        b'a'..=b'f' => Ok(byte - b'a' + 10),
        b'A'..=b'F' => Ok(byte - b'A' + 10),
        _ => Err(ClientIdParseError::NotHex { position, byte }),
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // Only ASCII hex digits were written.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for ClientId {
    type Err = ClientIdParseError;

    fn from_str(text: &str) -> Result<ClientId, ClientIdParseError> {
        ClientId::parse(text.as_bytes())
    }
}

/// A gateway's internal address (its `lan_ip:lan_port`): where workers connect, and what
/// the first 12 hex characters of a client id name.
pub type GatewayAddr = SocketAddrV4;

/// The gateway address and connection id a client id names; `None` when malformed.
///
/// *Difference*: the original only checks the length and reads a non-hex character as 0
/// (with a warning), addressing some other gateway or connection; we treat such an id as
/// malformed, like one of the wrong length.
pub fn client_address(client_id: &[u8]) -> Option<(GatewayAddr, u32)> {
    ClientId::parse(client_id)
        .ok()
        .map(|id| (id.gateway_address(), id.connection_id))
}

/// The client id text (20 lowercase hex characters) of connection `cid` on `gateway`.
pub fn client_id_text(gateway: GatewayAddr, cid: u32) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&ClientId::new(gateway, cid).to_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let id = ClientId::new("10.0.0.5:2901".parse().unwrap(), 42);
        assert_eq!(id.to_string(), "0a0000050b550000002a");
        assert_eq!(&id.to_hex(), b"0a0000050b550000002a");
    }

    #[test]
    fn non_hex_is_refused_with_its_position() {
        assert_eq!(
            ClientId::parse(b"0a0000050b55000000g0"),
            Err(ClientIdParseError::NotHex {
                position: 18,
                byte: b'g'
            })
        );
        // Multi-byte UTF-8 of the right byte length is still not hex.
        assert!(matches!(
            format!("é{}", "0".repeat(19)).parse::<ClientId>(),
            Err(ClientIdParseError::WrongLength { len: 21 })
        ));
        let two_byte_char_then_hex = format!("é{}", "0".repeat(18));
        assert!(matches!(
            two_byte_char_then_hex.parse::<ClientId>(),
            Err(ClientIdParseError::NotHex { position: 0, .. })
        ));
    }
}
