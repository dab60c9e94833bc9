//! Graceful shutdown of the gateway.

use bytes::Bytes;

use super::*;

#[test]
fn shutdown_says_going_away_to_websocket_clients_and_closes_everyone_after_flushing() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    // A client still in its handshake gets no websocket frame (it never spoke websocket).
    let pending = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.9:5000".parse().unwrap())
        .unwrap();
    gw.drain();
    gw.core.handle_shutdown(gw.now);
    let actions = gw.drain();
    let going_away = Bytes::from_static(&[0x88, 0x02, 0x03, 0xe9]);
    assert_eq!(client_bytes(&actions, a), vec![going_away.clone()]);
    assert_eq!(client_bytes(&actions, b), vec![going_away]);
    assert!(client_bytes(&actions, pending).is_empty());
    assert_eq!(
        closes(&actions),
        vec![
            (a, true, CloseReason::Shutdown),
            (b, true, CloseReason::Shutdown),
            (pending, true, CloseReason::Shutdown)
        ],
        "every client, in accept order, after its output"
    );
    let on_close: Vec<u8> = link_frames(&actions, w).iter().map(|f| f.cmd).collect();
    assert_eq!(on_close, vec![4, 4, 4], "the worker hears of every client");
    assert_eq!(link_closes(&actions), vec![w]);
    assert_eq!(gw.core.poll_timeout(), None, "no timers after shutdown");
    gw.core.handle_shutdown(gw.now);
    assert!(gw.drain().is_empty(), "a second shutdown does nothing");
    gw.core.check_invariants();
}

#[test]
fn shutdown_closes_text_clients_without_a_frame() {
    let mut c = config();
    c.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.core.handle_shutdown(gw.now);
    let actions = gw.drain();
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(closes(&actions), vec![(a, true, CloseReason::Shutdown)]);
}
