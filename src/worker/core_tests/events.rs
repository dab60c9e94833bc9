//! Client events: decoding, session write-back and reloads, per-client order, held events.

use super::*;

#[test]
fn event_frames_become_client_events_and_ping_is_ignored() {
    let mut h = Harness::with_gateways(2);
    let link = h.link(gw(1));
    let session = serialize(&map(vec![(PhpKey::from_bytes(b"a"), PhpValue::Int(1))]));
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(1), Command::OnConnect, 7, b"", b"", 1));
    bytes.put_slice(&event_frame(gw(1), Command::Ping, 0, b"", b"", 1));
    bytes.put_slice(&event_frame(
        gw(1),
        Command::OnMessage,
        8,
        &session,
        b"\x00\xff",
        1 | FLAG_BINARY,
    ));
    h.core.handle_bytes(h.now, link, &bytes);
    let evs = events(&h.drain());
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].kind, ClientEventKind::Connect);
    assert_eq!(
        evs[0].client.client_id,
        Bytes::from_static(b"0a0000050b5500000007")
    );
    assert_eq!(evs[0].client.session, PhpValue::Null);
    assert!(!evs[0].binary);
    let m = &evs[1];
    assert_eq!(m.kind, ClientEventKind::Message);
    assert_eq!(m.client.gateway, gw(1));
    assert_eq!(m.client.connection_id, 8);
    assert_eq!(m.header.client_port, 50000);
    assert_eq!(m.body, PhpValue::Str(Bytes::from_static(b"\x00\xff")));
    assert!(m.binary);
    assert_eq!(m.client.session, unserialize_lenient(&session));
    assert_eq!(m.session_text, Bytes::from(session));
}

#[test]
fn changed_session_is_written_back_after_the_event() {
    let mut h = Harness::with_gateways(2);
    let link = h.link(gw(1));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(1), Command::OnMessage, 7, b"", b"m", 1),
    );
    let ev = events(&h.drain()).remove(0);
    let new = map(vec![(PhpKey::from_bytes(b"k"), PhpValue::str("v"))]);
    h.core
        .end_event(h.now, &ev.client, ev.kind, &ev.client.session, &new)
        .expect("array session");
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, link);
    let f = &sent[0].1;
    assert_eq!(cmd_of(f), 204);
    assert_eq!(&f[17..21], &7u32.to_be_bytes());
    assert_eq!(&f[28..], serialize(&new).as_slice());

    // Unchanged: nothing. Cleared to null: empty ext_data. Close: nothing.
    h.core
        .end_event(h.now, &ev.client, ev.kind, &new, &new)
        .unwrap();
    assert!(h.drain().is_empty());
    h.core
        .end_event(h.now, &ev.client, ev.kind, &new, &PhpValue::Null)
        .unwrap();
    let f = &transmits(&h.drain())[0].1;
    assert_eq!(f.len(), 28, "no ext_data, empty body");
    h.core
        .end_event(
            h.now,
            &ev.client,
            ClientEventKind::Close,
            &PhpValue::Null,
            &new,
        )
        .unwrap();
    assert!(h.drain().is_empty());
    assert!(matches!(
        h.core
            .end_event(h.now, &ev.client, ev.kind, &new, &PhpValue::Int(3)),
        Err(ApiError::BadArgument(_))
    ));
}

#[test]
fn stale_session_is_reloaded_before_the_event_and_later_events_wait() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"1", 1),
    );
    let ev = events(&h.drain()).remove(0);
    let b = map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(2))]);
    h.core
        .end_event(h.now, &ev.client, ev.kind, &ev.client.session, &b)
        .unwrap();
    h.drain();
    // The gateway sent the next events before applying our write: they carry `a`.
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 3, &a, b"2", 1));
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 9, b"", b"other", 1));
    h.core.handle_bytes(h.now, link, &bytes);
    let actions = h.drain();
    assert!(
        events(&actions).is_empty(),
        "held until the session is reloaded"
    );
    let sent = transmits(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(cmd_of(&sent[0].1), 203);
    assert_eq!(&sent[0].1[17..21], &3u32.to_be_bytes());
    // An event frame before the reply is still an event; then the reply.
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnClose, 9, b"", b"", 1),
    );
    h.core.handle_bytes(h.now, link, &reply(&b));
    let evs = events(&h.drain_ended());
    let bodies: Vec<&PhpValue> = evs.iter().map(|e| &e.body).collect();
    assert_eq!(
        bodies,
        vec![
            &PhpValue::str("2"),
            &PhpValue::str("other"),
            &PhpValue::str("")
        ]
    );
    assert_eq!(evs[0].client.session, b, "the reloaded session");
    assert_eq!(h.core.stats().session_reloads, 1);
}

#[test]
fn crc32_matches_php() {
    // php -r 'echo crc32("The quick brown fox jumped over the lazy dog.");'
    assert_eq!(
        crc32(b"The quick brown fox jumped over the lazy dog."),
        2191738434
    );
    assert_eq!(crc32(b""), 0);
}

#[test]
fn held_events_are_bounded_and_a_late_reload_reply_is_ignored() {
    let mut config = Harness::config();
    config.parked_events_max = 3;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnConnect, 3, b"", b"", 1),
    );
    h.drain_ended();
    // Session changed elsewhere: reload, then two more events are held.
    for body in [&b"1"[..], b"2", b"3"] {
        h.core.handle_bytes(
            h.now,
            link,
            &event_frame(gw(0), Command::OnMessage, 3, &a, body, 1),
        );
    }
    assert!(events(&h.drain()).is_empty(), "held within the bound");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"4", 1),
    );
    let bodies: Vec<PhpValue> = events(&h.drain_ended())
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert_eq!(
        bodies,
        ["1", "2", "3", "4"].map(PhpValue::str).to_vec(),
        "over the bound: delivered in order with the sessions they carried"
    );
    // The reload reply comes later and must not be taken for anything else.
    let count = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core.handle_bytes(h.now, link, &reply(&PhpValue::Null));
    h.core.handle_bytes(h.now, link, &reply(&PhpValue::Int(9)));
    let d = done(&h.drain());
    assert_eq!(d[0].id, count);
    assert_eq!(d[0].result, Ok(PhpValue::Int(9)));
}

#[test]
fn a_clients_next_event_waits_for_the_end_of_the_previous_one() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"1", 1),
    );
    let first = events(&h.drain()).remove(0);
    // The client saw the reply of its first event and spoke again before the first event
    // ended: the gateway still has the old (empty) session. Another client's event follows.
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 3, b"", b"2", 1));
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 9, b"", b"x", 1));
    h.core.handle_bytes(h.now, link, &bytes);
    assert!(
        events(&h.drain()).is_empty(),
        "held behind the running event, in link order"
    );
    // The first event ends with a changed session: written back, then the held event's
    // session is found stale and reloaded before it runs.
    let new = map(vec![(PhpKey::from_bytes(b"k"), PhpValue::Int(1))]);
    h.core
        .end_event(h.now, &first.client, first.kind, &PhpValue::Null, &new)
        .unwrap();
    let sent = transmits(&h.drain());
    let cmds: Vec<u8> = sent.iter().map(|(_, f)| cmd_of(f)).collect();
    assert_eq!(cmds, vec![204, 203], "write-back, then the reload");
    h.core.handle_bytes(h.now, link, &reply(&new));
    let evs = events(&h.drain());
    let bodies: Vec<&PhpValue> = evs.iter().map(|e| &e.body).collect();
    assert_eq!(bodies, vec![&PhpValue::str("2"), &PhpValue::str("x")]);
    assert_eq!(
        evs[0].client.session, new,
        "the session the first event wrote"
    );
}

#[test]
fn events_held_behind_a_running_one_are_bounded() {
    let mut config = Harness::config();
    config.parked_events_max = 2;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    for body in [&b"1"[..], b"2", b"3"] {
        h.core.handle_bytes(
            h.now,
            link,
            &event_frame(gw(0), Command::OnMessage, 3, b"", body, 1),
        );
    }
    assert_eq!(events(&h.drain()).len(), 1, "one running, two held");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"4", 1),
    );
    let bodies: Vec<PhpValue> = events(&h.drain()).into_iter().map(|e| e.body).collect();
    assert_eq!(
        bodies,
        vec![PhpValue::str("2")],
        "over the bound the head goes out as it is"
    );
}

/// Events beyond the driver's room are held in order while replies keep being handled;
/// room given back releases them; held bytes at the bound pause input.
#[test]
fn events_beyond_the_room_are_held_and_replies_still_flow() {
    let mut config = Harness::config();
    config.held_events_bytes_max = 2000;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    h.core.set_event_room(2);
    let call = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    let mut bytes = BytesMut::new();
    for cid in 1..=5 {
        bytes.extend_from_slice(&event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1));
    }
    bytes.extend_from_slice(&reply(&PhpValue::Int(9)));
    h.core.handle_bytes(h.now, link, &bytes);
    let a = h.drain();
    let e = events(&a);
    assert_eq!(
        e.iter().map(|e| e.client.connection_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let d = done(&a);
    assert_eq!((d[0].id, d[0].result.clone()), (call, Ok(PhpValue::Int(9))));
    assert_eq!(h.core.held_events().0, 3);
    assert!(!h.core.input_paused());
    // More events while no room: held until the bound pauses input.
    let mut cid = 6;
    while !h.core.input_paused() {
        let f = event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1);
        h.core.handle_bytes(h.now, link, &f);
        assert!(events(&h.drain()).is_empty());
        cid += 1;
        assert!(cid < 100, "the bound holds");
    }
    let (held, bytes_held) = h.core.held_events();
    assert!(
        bytes_held >= 2000 && held == cid as usize - 3,
        "{held} {bytes_held}"
    );
    // Room given back: the held events go out oldest first and input resumes.
    h.core.set_event_room(1000);
    let e = events(&h.drain());
    let ids: Vec<u32> = e.iter().map(|e| e.client.connection_id).collect();
    assert_eq!(ids, (3..cid).collect::<Vec<_>>());
    assert!(!h.core.input_paused());
    assert_eq!(h.core.held_events(), (0, 0));
}

/// A gateway that restarted reuses connection ids, and the old client's close may never
/// have reached us: a connect starts a new client, whose session is the one it carries
/// (none), never a reload against what was known of the old one (seed 7000847 of a soak
/// saw `$_SESSION` become `[]` for such a client).
#[test]
fn a_connect_forgets_what_was_known_of_an_earlier_client_with_its_id() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"1", 1),
    );
    h.drain_ended();
    // The gateway restarted: connection 3 is a new client, with no session.
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnConnect, 3, b"", b"", 1),
    );
    let actions = h.drain();
    assert!(
        transmits(&actions).is_empty(),
        "no session reload for a new client"
    );
    let evs = events(&actions);
    assert_eq!(evs.len(), 1, "the connect goes out at once");
    assert_eq!(evs[0].client.session, PhpValue::Null);
    assert_eq!(h.core.stats().session_reloads, 0);
}

#[test]
fn an_event_whose_link_closed_while_it_ran_writes_no_session_back() {
    // Sim seed 50118: the old client's event ended after its gateway restarted and a new
    // client got the same id; its write-back must not become the new client's session.
    let mut h = Harness::with_gateways(1);
    let old_link = h.link(gw(0));
    h.core.handle_bytes(
        h.now,
        old_link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"1", 1),
    );
    let evs = events(&h.drain());
    assert_eq!(evs.len(), 1);
    let running = evs[0].clone();

    // The gateway restarts while the event runs: the link closes, a new one opens.
    let new_link = h.relink(gw(0));
    // A new client with the same connection id: it waits for the running event's end.
    h.core.handle_bytes(
        h.now,
        new_link,
        &event_frame(gw(0), Command::OnConnect, 3, b"", b"", 1),
    );
    assert!(events(&h.drain()).is_empty(), "waits for the earlier event");

    let written = map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]);
    h.core
        .end_event(
            h.now,
            &running.client,
            running.kind,
            &PhpValue::Null,
            &written,
        )
        .unwrap();
    let actions = h.drain();
    assert!(
        transmits(&actions).is_empty(),
        "no SET_SESSION reaches the new client: {:?}",
        transmits(&actions)
    );
    assert_eq!(h.core.stats().session_writes_link_gone, 1);
    let evs = events(&actions);
    assert_eq!(evs.len(), 1, "the new client's connect goes out");
    assert_eq!(evs[0].kind, ClientEventKind::Connect);
    assert_eq!(evs[0].client.session, PhpValue::Null);
}

#[test]
fn an_event_on_a_live_link_still_writes_its_session_back() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"1", 1),
    );
    let evs = events(&h.drain());
    let written = map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]);
    h.core
        .end_event(
            h.now,
            &evs[0].client,
            evs[0].kind,
            &PhpValue::Null,
            &written,
        )
        .unwrap();
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 1);
    assert_eq!(cmd_of(&sent[0].1), Command::SetSession as u8);
    assert_eq!(h.core.stats().session_writes_link_gone, 0);
}

#[test]
fn a_closed_link_forgets_the_session_versions_of_its_gateways_clients() {
    // Sim seed 50118: this instance knew client 3 of gw0 by its session; gw0 restarted, and
    // the new client 3's connect went to another instance. Its first event here carries no
    // session: a reload would ask the gateway, whose `a:0:{}` would turn null into `[]`.
    let mut h = Harness::with_gateways(2);
    let old_link = h.link(gw(0));
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        old_link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"1", 1),
    );
    // A client of the other gateway keeps its version.
    h.core.handle_bytes(
        h.now,
        h.link(gw(1)),
        &event_frame(gw(1), Command::OnMessage, 3, &a, b"1", 1),
    );
    h.drain_ended();

    let new_link = h.relink(gw(0));
    h.core.handle_bytes(
        h.now,
        new_link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"2", 1),
    );
    let actions = h.drain();
    assert!(transmits(&actions).is_empty(), "no session reload");
    let evs = events(&actions);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].client.session, PhpValue::Null);
    h.end_unchanged(&evs[0]);

    // gw1's client: a stale event is still reloaded.
    h.core.handle_bytes(
        h.now,
        h.link(gw(1)),
        &event_frame(gw(1), Command::OnMessage, 3, b"", b"2", 1),
    );
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 1, "gw1's client is still known by its version");
    assert_eq!(cmd_of(&sent[0].1), Command::GetSessionByClientId as u8);
    assert_eq!(h.core.stats().session_reloads, 1);
}

/// Events waiting behind their client's running event are bounded in bytes as well as in
/// count: without it one client could park `parked_events_max` messages of
/// `package_size_max` each behind its own slow event (gigabytes). Past the bound the head
/// goes out as it is, as past the count bound.
#[test]
fn events_held_behind_a_running_one_are_bounded_in_bytes() {
    let mut config = Harness::config();
    config.parked_events_bytes_max = 3_000;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let body = [b'x'; 1_000];
    let message = event_frame(gw(0), Command::OnMessage, 3, b"", &body, 1);
    h.core.handle_bytes(h.now, link, &message);
    assert_eq!(events(&h.drain()).len(), 1, "the first one runs");
    // Each waiting event costs its 1,000 body bytes and some 300 of header and id.
    for _ in 0..2 {
        h.core.handle_bytes(h.now, link, &message);
    }
    assert!(events(&h.drain()).is_empty(), "two wait within 3,000 bytes");
    h.core.handle_bytes(h.now, link, &message);
    assert_eq!(
        events(&h.drain()).len(),
        1,
        "a third is over the bytes bound: the head goes out as it is"
    );
    h.core.check_invariants();
}
