//! A client event frame over `package_size_max`: that event is skipped (counted, logged,
//! its bytes discarded as they arrive, never buffered whole) and the link stays up; any
//! other frame over the limit still closes the link.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::BytesMut;

use super::*;

const REGISTER: &str = "10.0.0.1:1236";
const GATEWAY: &str = "10.0.0.5:2900";
const MAX: usize = 1000;

/// A core linked to one gateway, `package_size_max` = [`MAX`].
fn linked() -> (WorkerCore, GatewayLinkId) {
    let mut config = WorkerConfig::new("oversize", 0, vec![REGISTER.to_string()]);
    config.package_size_max = MAX;
    let mut core = WorkerCore::new(config, Duration::ZERO);
    drain(&mut core);
    let register = GatewayLinkId(1);
    core.handle_connected(Duration::ZERO, register);
    core.handle_bytes(
        Duration::ZERO,
        register,
        format!("{{\"event\":\"broadcast_addresses\",\"addresses\":[\"{GATEWAY}\"]}}\n").as_bytes(),
    );
    let link = GatewayLinkId(2);
    core.handle_connected(Duration::ZERO, link);
    drain(&mut core);
    assert!(core.links.contains_key(&link), "linked to the gateway");
    (core, link)
}

fn drain(core: &mut WorkerCore) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(a) = core.poll_action() {
        if let Action::Transmit { link, bytes } = &a {
            core.handle_written(Duration::ZERO, *link, bytes.len());
        }
        out.push(a);
    }
    out
}

fn frame(cmd: Command, connection_id: u32, body: &[u8]) -> Vec<u8> {
    let gateway: SocketAddrV4 = GATEWAY.parse().unwrap();
    let header = Header {
        cmd,
        local_ip: *gateway.ip(),
        local_port: gateway.port(),
        client_ip: Ipv4Addr::new(192, 168, 1, 9),
        client_port: 50000,
        connection_id,
        flag: crate::protocol::frame::FLAG_BODY_IS_SCALAR,
        gateway_port: 8282,
    };
    let mut out = BytesMut::new();
    crate::protocol::frame::encode_frame(&mut out, &header, b"", body);
    out.to_vec()
}

/// The message bodies of the events among `actions`; panics on a close.
fn messages(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => match &e.body {
                PhpValue::Str(s) => Some(s.to_vec()),
                other => panic!("string body expected, got {other:?}"),
            },
            Action::Close { reason, .. } => panic!("link closed: {reason:?}"),
            _ => None,
        })
        .collect()
}

#[test]
fn an_event_frame_over_the_limit_costs_that_event_only() {
    let (mut core, link) = linked();
    let big = frame(Command::OnMessage, 8, &vec![b'x'; 50 * MAX]);
    let mut stream = frame(Command::OnMessage, 7, b"before");
    stream.extend_from_slice(&big);
    stream.extend_from_slice(&frame(Command::OnMessage, 9, b"after"));
    let mut seen = Vec::new();
    // In reads of 100 bytes: the skipped frame is never held whole.
    for chunk in stream.chunks(100) {
        core.handle_bytes(Duration::ZERO, link, chunk);
        let held = core.links.get(&link).expect("link up").inbound.len();
        assert!(held < 200, "{held} bytes buffered");
        seen.extend(messages(&drain(&mut core)));
    }
    assert_eq!(seen, vec![b"before".to_vec(), b"after".to_vec()]);
    assert_eq!(core.stats().events_too_large, 1);
    assert_eq!(core.stats().protocol_errors, 0);
    assert!(core.links.contains_key(&link));

    // In one read too, with the frame's end and the next frame in the same buffer.
    let mut stream = big.clone();
    stream.extend_from_slice(&frame(Command::OnMessage, 10, b"next"));
    core.handle_bytes(Duration::ZERO, link, &stream);
    assert_eq!(messages(&drain(&mut core)), vec![b"next".to_vec()]);
    assert_eq!(core.stats().events_too_large, 2);

    // A frame of exactly the limit is an event.
    let exact = frame(Command::OnMessage, 11, &vec![b'y'; MAX - HEADER_LEN]);
    assert_eq!(exact.len(), MAX);
    core.handle_bytes(Duration::ZERO, link, &exact);
    assert_eq!(messages(&drain(&mut core)).len(), 1);
    assert_eq!(core.stats().events_too_large, 2);
}

#[test]
fn another_frame_over_the_limit_still_closes_the_link() {
    let (mut core, link) = linked();
    // A gateway never sends a worker SEND_TO_ONE: not an event, the stream is not trusted.
    core.handle_bytes(
        Duration::ZERO,
        link,
        &frame(Command::SendToOne, 7, &vec![b'x'; 2 * MAX]),
    );
    let closed = drain(&mut core).into_iter().any(|a| {
        matches!(a, Action::Close { link: l, reason: CloseReason::Protocol("frame too large") } if l == link)
    });
    assert!(closed);
    assert_eq!(core.stats().events_too_large, 0);
    assert_eq!(core.stats().protocol_errors, 1);

    // An event header whose ext_len does not fit its own length is malformed.
    let (mut core, link) = linked();
    let mut bad = frame(Command::OnMessage, 7, &vec![b'x'; 2 * MAX]);
    bad[24..28].copy_from_slice(&(3 * MAX as u32).to_be_bytes());
    core.handle_bytes(Duration::ZERO, link, &bad);
    assert!(drain(&mut core)
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
    assert_eq!(core.stats().events_too_large, 0);
}
