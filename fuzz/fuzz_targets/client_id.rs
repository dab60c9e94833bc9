//! Client ids: 20 hex characters naming (gateway lan IP, lan port, connection id).
//! Oracles: an accepted id prints as the input in lowercase; `to_hex`, `Display` and
//! `FromStr` agree; the id rebuilt from its gateway address and connection id is itself;
//! any 10 bytes give an id that parses back.
#![no_main]

use gatewayworker::protocol::client_id::{ClientId, CLIENT_ID_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = ClientId::parse(data) {
        assert_eq!(data.len(), CLIENT_ID_LEN);
        assert_eq!(id.to_hex().to_vec(), data.to_ascii_lowercase());
        assert_eq!(id.to_string().as_bytes(), &id.to_hex()[..]);
        let text = std::str::from_utf8(data).expect("hex is ASCII");
        assert_eq!(text.parse::<ClientId>().ok(), Some(id));
        assert_eq!(ClientId::new(id.gateway_address(), id.connection_id), id);
    } else if let Ok(text) = std::str::from_utf8(data) {
        assert!(text.parse::<ClientId>().is_err());
    }
    if let Some(bytes) = data.first_chunk::<10>() {
        let ip = std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
        let port = u16::from_be_bytes([bytes[4], bytes[5]]);
        let conn = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let id = ClientId::new(std::net::SocketAddrV4::new(ip, port), conn);
        assert_eq!(&id.to_bytes(), bytes);
        assert_eq!(ClientId::parse(&id.to_hex()), Ok(id));
    }
});
