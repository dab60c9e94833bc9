//! The mapping of driver events to guest events.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::api::CurrentClient;
use crate::protocol::frame::{Command, Header};
use crate::protocol::php::{PhpArray, PhpKey};

fn event(kind: ClientEventKind, body: PhpValue, binary: bool) -> ClientEvent {
    let mut header = Header::new(Command::OnMessage);
    header.local_ip = Ipv4Addr::new(10, 0, 0, 7);
    header.local_port = 2900;
    header.client_ip = Ipv4Addr::new(192, 168, 1, 20);
    header.client_port = 53124;
    header.connection_id = 3;
    header.gateway_port = 8282;
    let mut session = PhpArray::new();
    session.insert(PhpKey::Str(Bytes::from_static(b"k")), PhpValue::Int(1));
    ClientEvent {
        kind,
        client: CurrentClient {
            client_id: Bytes::from_static(b"0a0000070b5400000003"),
            gateway: SocketAddrV4::new(header.local_ip, header.local_port),
            connection_id: 3,
            session: PhpValue::Array(session),
        },
        header,
        session_text: Bytes::from_static(b"a:1:{s:1:\"k\";i:1;}"),
        body,
        binary,
    }
}

#[test]
fn a_message_event_carries_bytes_flag_addresses_and_session() {
    let mut e = event(ClientEventKind::Message, PhpValue::str("hi"), true);
    let session = e.client.session.clone();
    let w = guest_event(&mut e, 1_700_000_000_000);
    assert_eq!(
        w.kind,
        GuestEventKind::Message {
            body: Bytes::from_static(b"hi"),
            binary: true
        }
    );
    assert_eq!(w.client.client_id, e.client.client_id);
    assert_eq!(w.client.remote_addr, "192.168.1.20");
    assert_eq!(w.client.remote_port, 53124);
    assert_eq!(w.client.gateway_addr, "10.0.0.7");
    assert_eq!(w.client.gateway_port, 8282);
    // The session moves into the guest's event; the driver event keeps the client.
    assert_eq!(w.session, session);
    assert_eq!(e.client.session, PhpValue::Null);
    assert!(w.now_ms > 1_600_000_000_000);
}

#[test]
fn other_events_map_one_to_one() {
    let e = event(ClientEventKind::Connect, PhpValue::str(""), false);
    assert_eq!(guest_event(&mut e.clone(), 0).kind, GuestEventKind::Connect);
    let e = event(ClientEventKind::Close, PhpValue::str(""), false);
    assert_eq!(guest_event(&mut e.clone(), 0).kind, GuestEventKind::Close);
    let data = PhpValue::Array(PhpArray::new());
    let e = event(ClientEventKind::WebSocketConnect, data.clone(), false);
    assert_eq!(
        guest_event(&mut e.clone(), 0).kind,
        GuestEventKind::WebSocketConnect { data }
    );
    // A message body that is not a string cannot come from a client: empty bytes.
    let e = event(ClientEventKind::Message, PhpValue::Int(5), false);
    assert_eq!(
        guest_event(&mut e.clone(), 0).kind,
        GuestEventKind::Message {
            body: Bytes::new(),
            binary: false
        }
    );
}
