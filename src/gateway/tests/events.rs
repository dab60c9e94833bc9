//! Client events forwarded to workers: ON_CONNECT, ON_MESSAGE, ON_CLOSE.

use bytes::Bytes;

use super::*;
use crate::protocol::frame::{Command, FLAG_BINARY};

#[test]
fn on_connect_is_sent_at_accept_before_the_websocket_handshake_quirk_26() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    let actions = gw.drain();
    let frames = link_frames(&actions, w);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].cmd, frames[0].cid, frames[0].flag), (1, id.0, S));
    assert_eq!(frames[0].client_ip, [203, 0, 113, 7]);
    // A worker sends before the handshake: queued, then flushed right after the 101.
    let early = gw.cmd(w, Command::SendToOne, id.0, S, b"", b"early");
    assert!(
        client_bytes(&early, id).is_empty(),
        "nothing before the handshake"
    );
    let actions = gw.client_sends(id, HANDSHAKE);
    let frames = link_frames(&actions, w);
    assert_eq!(frames[0].cmd, Command::OnWebsocketConnect as u8);
    let writes = client_bytes(&actions, id);
    assert!(writes[0].starts_with(b"HTTP/1.1 101 Switching Protocol"));
    assert_eq!(writes[1].to_vec(), ws_text(b"early"));
    assert_eq!(writes.len(), 2);
    // ON_WEBSOCKET_CONNECT is queued for the worker before the 101 is written.
    let pos_ws = actions.iter().position(|a| {
        matches!(
            a,
            Action::Transmit {
                to: Target::Link(_),
                ..
            }
        )
    });
    let pos_101 = actions.iter().position(|a| {
        matches!(
            a,
            Action::Transmit {
                to: Target::Client(_),
                ..
            }
        )
    });
    assert!(pos_ws < pos_101);
}

#[test]
fn on_message_carries_session_and_sets_flag_binary_for_binary_messages() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw.client("203.0.113.7:5000");
    gw.cmd(
        w,
        Command::SetSession,
        id.0,
        S,
        b"a:1:{s:1:\"x\";i:1;}",
        b"",
    );
    let text = link_frames(&gw.client_sends(id, &ws_client_frame(1, b"hi")), w);
    assert_eq!(text.len(), 1);
    assert_eq!((text[0].cmd, text[0].flag), (3, S));
    assert_eq!(&text[0].ext[..], b"a:1:{s:1:\"x\";i:1;}");
    assert_eq!(&text[0].body[..], b"hi");
    let binary = link_frames(&gw.client_sends(id, &ws_client_frame(2, &[0, 255])), w);
    assert_eq!(binary[0].flag, S | FLAG_BINARY);
    assert_eq!(&binary[0].body[..], &[0, 255]);
}

#[test]
fn split_reads_give_the_same_events_as_whole_reads() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    gw.drain();
    let mut wire = HANDSHAKE.to_vec();
    wire.extend(ws_client_frame(1, b"one"));
    wire.extend(ws_client_frame(1, b"two"));
    let mut frames = Vec::new();
    for b in &wire {
        frames.extend(link_frames(&gw.client_sends(id, &[*b]), w));
    }
    let bodies: Vec<(u8, &[u8])> = frames.iter().map(|f| (f.cmd, &f.body[..])).collect();
    assert_eq!(bodies[1..], [(3, &b"one"[..]), (3, &b"two"[..])]);
    assert_eq!(bodies[0].0, Command::OnWebsocketConnect as u8);
}

#[test]
fn ipv6_client_gets_client_ip_zero_quirk_19() {
    let (mut gw, w) = Gw::with_worker();
    gw.core
        .handle_client_connected(gw.now, "[2001:db8::1]:5000".parse().unwrap())
        .unwrap();
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(frames[0].client_ip, [0, 0, 0, 0]);
    // Decision: an IPv4-mapped address from a dual-stack listener is an IPv4 client.
    gw.core
        .handle_client_connected(gw.now, "[::ffff:198.51.100.4]:5000".parse().unwrap())
        .unwrap();
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(frames[0].client_ip, [198, 51, 100, 4]);
}

#[test]
fn every_close_sends_on_close_with_the_session() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::SetSession, a.0, S, b"a:0:{}", b"");
    gw.core.handle_client_closed(gw.now, a);
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(
        (frames[0].cmd, frames[0].cid, &frames[0].ext[..]),
        (4, a.0, &b"a:0:{}"[..])
    );
    assert_eq!(gw.core.client_count(), 0);
}

#[test]
fn websocket_close_frame_is_answered_and_closes_after_flush() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.client_sends(a, &ws_client_frame(8, &[0x03, 0xe8]));
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8])]
    );
    assert_eq!(
        closes(&actions),
        vec![(a, true, CloseReason::ProtocolClose)]
    );
    assert_eq!(link_frames(&actions, w)[0].cmd, 4);
    // The driver's report of the finished close is not a second close.
    gw.core.handle_client_closed(gw.now, a);
    assert!(gw.drain().is_empty());
}
