//! What a backlog of incoming events grew in the core (held events, parked events, the
//! action queue, a link's input buffer) is given back once it has drained.

use super::*;

/// Events parked behind their clients' running events and held for want of room count as
/// waiting; once every one of them ran, the core says so and its queues shrink to what is
/// asked, an empty input buffer over the size kept included.
#[test]
fn a_drained_incoming_backlog_gives_the_core_queues_back() {
    let (mut h, link) = Harness::linked_to_one_gateway(Harness::config());
    assert!(h.core.incoming_drained());
    h.core.set_event_room(2);
    // Clients 1 and 2 get the room, client 3's event is held, and everything after waits
    // parked behind client 1's running event.
    let mut burst = BytesMut::new();
    for cid in 1..=3 {
        burst.extend_from_slice(&event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1));
    }
    for i in 0..500 {
        burst.extend_from_slice(&event_frame(
            gw0(),
            Command::OnMessage,
            1 + i % 4,
            b"",
            b"m",
            1,
        ));
    }
    h.core.handle_bytes(h.now, link, &burst);
    // The last event is long and comes in two reads: its link's input buffer grows past
    // it, and the room left over stays with the buffer once the frame is split off.
    let long = event_frame(gw0(), Command::OnMessage, 4, b"", &vec![b'l'; 200 << 10], 1);
    let (first, rest) = long.split_at(120 << 10);
    h.core.handle_bytes(h.now, link, first);
    h.core.handle_bytes(h.now, link, rest);
    let mut ran = events(&h.drain());
    assert_eq!(ran.len(), 2);
    assert_eq!(h.core.held_events().0, 1);
    assert!(!h.core.incoming_drained());
    let (held, parked, _) = h.core.incoming_slots();
    assert!(held >= 1 && parked >= 501, "held {held}, parked {parked}");
    let inbound = &h.core.links[&link].inbound;
    assert!(inbound.is_empty() && inbound.capacity() > 16 << 10);

    // Not drained yet: shrinking loses nothing.
    h.core.shrink_incoming(8, 16 << 10);
    assert_eq!(h.core.held_events().0, 1);
    assert!(h.core.incoming_slots().1 >= 501);

    // The business code catches up.
    h.core.set_event_room(1000);
    for event in &ran {
        h.end_unchanged(event);
    }
    ran.extend(events(&h.drain_ended()));
    assert_eq!(ran.len(), 504);
    assert!(h.core.incoming_drained());
    h.core.shrink_incoming(8, 16 << 10);
    let (held, parked, actions) = h.core.incoming_slots();
    assert!(
        held <= 8 && parked <= 8 && actions <= 8,
        "slots kept: held {held}, parked {parked}, actions {actions}"
    );
    assert_eq!(h.core.links[&link].inbound.capacity(), 0);
    h.core.check_invariants();

    // The link reads on as before.
    let f = event_frame(gw0(), Command::OnMessage, 9, b"", b"again", 1);
    h.core.handle_bytes(h.now, link, &f);
    let e = events(&h.drain());
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].body, PhpValue::str("again"));
}
