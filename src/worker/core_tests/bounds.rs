//! Bounds: link queues and windows, frame and reply sizes, awaited replies; bad frames.

use super::*;

#[test]
fn full_queue_drops_counted_and_send_returns_false() {
    let mut config = Harness::config();
    config.link_queue_bytes_max = 210;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.drain();
    // The link is still connecting: frames queue behind WORKER_CONNECT up to the bound.
    let send = |h: &mut Harness| {
        h.core.call(
            h.now,
            &ApiCall::SendToClient {
                client_id: Bytes::from_static(b"0a0000050b5400000001"),
                message: PhpValue::Str(Bytes::from(vec![b'x'; 40])),
                raw: false,
            },
            None,
        );
        done(&h.drain())[0].result.clone()
    };
    // 74 bytes of hello + 68 per send: two fit in 210 exactly, the third does not.
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(true)));
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(true)));
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(false)));
    assert_eq!(h.core.stats().frames_dropped, 1);
    assert_eq!(h.core.stats().bytes_dropped, 68);
    // A query that cannot be queued fails that gateway at once.
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let d = done(&h.drain());
    assert_eq!(d[0].result, Err(ApiError::Timeout { missing: 1 }));
}

#[test]
fn window_bounds_what_the_driver_holds() {
    let mut config = Harness::config();
    config.link_window_bytes_max = 100;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.drain();
    let link = GatewayLinkId(2);
    for _ in 0..3 {
        h.core.call(
            h.now,
            &ApiCall::SendToAll {
                message: PhpValue::Str(Bytes::from(vec![b'x'; 40])),
                client_id_list: None,
                exclude: None,
                raw: false,
            },
            None,
        );
    }
    h.core.handle_connected(h.now, link);
    let mut handed = Vec::new();
    while let Some(a) = h.core.poll_action() {
        if let Action::Transmit { bytes, .. } = a {
            handed.push(bytes.len());
        }
    }
    assert_eq!(handed, vec![74, 68], "stops once the window is used");
    h.core.handle_written(h.now, link, 142);
    let more = transmits(&h.drain());
    assert_eq!(more.len(), 2);
}

#[test]
fn malformed_frames_close_the_link() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    h.core.handle_bytes(h.now, link, &[0, 0, 0, 5, 3, 0, 0, 0]);
    let actions = h.drain();
    assert_eq!(
        actions,
        vec![Action::Close {
            link,
            reason: CloseReason::Protocol("frame shorter than its header")
        }]
    );
    assert_eq!(h.core.stats().protocol_errors, 1);
    assert_eq!(
        h.core.poll_timeout(),
        Some(secs(1.0)),
        "reconnect scheduled"
    );
}

/// A call over the gateway's package size is refused before anything is sent: a
/// bool-send returns false, a session call fails with `TooLarge`, a session write-back
/// too; the gateway would otherwise close the whole link on the frame.
#[test]
fn frames_over_the_package_size_are_refused_unsent() {
    let mut config = Harness::config();
    config.package_size_max = 1000;
    let (mut h, _link) = Harness::linked_to_one_gateway(config);
    let client = Bytes::from_static(b"0a0000050b5400000001");
    h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: client.clone(),
            message: PhpValue::Str(Bytes::from(vec![b'x'; 2000])),
            raw: false,
        },
        None,
    );
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "nothing sent: {a:?}");
    assert_eq!(done(&a)[0].result, Ok(PhpValue::Bool(false)));
    let big = map(vec![(
        PhpKey::from_bytes(b"k"),
        PhpValue::Str(Bytes::from(vec![b'y'; 2000])),
    )]);
    h.core.call(
        h.now,
        &ApiCall::SetSession {
            client_id: client.clone(),
            session: big.clone(),
        },
        None,
    );
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "nothing sent: {a:?}");
    assert!(
        matches!(
            done(&a)[0].result,
            Err(ApiError::TooLarge { max: 1000, .. })
        ),
        "{a:?}"
    );
    let current = CurrentClient {
        client_id: client,
        gateway: gw0(),
        connection_id: 1,
        session: PhpValue::Null,
    };
    let outcome = h.core.end_event(
        h.now,
        &current,
        ClientEventKind::Message,
        &PhpValue::Null,
        &big,
    );
    assert!(matches!(outcome, Err(ApiError::TooLarge { .. })));
    assert!(transmits(&h.drain()).is_empty());
    assert_eq!(h.core.stats().frames_too_large, 3);
    // A frame at the limit still goes.
    h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: Bytes::from_static(b"0a0000050b5400000001"),
            message: PhpValue::Str(Bytes::from(vec![b'x'; 100])),
            raw: false,
        },
        None,
    );
    let a = h.drain();
    assert_eq!(transmits(&a).len(), 1);
    assert_eq!(done(&a)[0].result, Ok(PhpValue::Bool(true)));
}

/// A reply larger than the frame limit but within `reply_size_max` (64 MiB, the bound
/// the gateway and the GatewayClient use too) is accepted; a larger one closes the link.
#[test]
fn replies_are_bounded_by_reply_size_max_not_the_frame_limit() {
    let (mut h, link) = Harness::linked_to_one_gateway(Harness::config());
    h.core.call(
        h.now,
        &ApiCall::GetAllClientSessions {
            group: Bytes::new(),
        },
        None,
    );
    h.drain();
    // An 11 MiB string reply: over the 10 MiB package size.
    let text = vec![b'z'; 11 << 20];
    let payload = serialize(&PhpValue::Str(Bytes::from(text)));
    let mut record = BytesMut::new();
    record.put_u32(payload.len() as u32);
    record.put_slice(&payload);
    h.core.handle_bytes(h.now, link, &record);
    let a = h.drain();
    assert!(
        !a.iter().any(|a| matches!(a, Action::Close { .. })),
        "link kept"
    );
    assert_eq!(done(&a).len(), 1);
    assert_eq!(h.core.stats().protocol_errors, 0);

    let mut config = Harness::config();
    config.reply_size_max = 100;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    let mut record = BytesMut::new();
    record.put_u32(101);
    record.put_u8(b's');
    h.core.handle_bytes(h.now, link, &record);
    let a = h.drain();
    assert!(a.iter().any(|a| matches!(a, Action::Close { .. })), "{a:?}");
    assert_eq!(
        done(&a)[0].result,
        Err(ApiError::Timeout { missing: 1 }),
        "the pending call fails with the link"
    );
}

/// At most `pending_replies_max` replies are awaited per link: a query beyond fails at
/// once with `Busy` (counted), nothing is sent for it, and the link's replies stay
/// aligned with the calls that were sent.
#[test]
fn awaited_replies_per_link_are_bounded() {
    let mut config = Harness::config();
    config.pending_replies_max = 2;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let first = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let second = h.core.call(h.now, &ApiCall::GetAllUidCount, None);
    let a = h.drain();
    assert_eq!(transmits(&a).len(), 2);
    assert!(done(&a).is_empty());
    let third = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "the refused query is not sent");
    let d = done(&a);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, third);
    assert_eq!(d[0].result, Err(ApiError::Busy { max: 2 }));
    assert_eq!(h.core.stats().calls_refused_busy, 1);
    // The two replies go to the two calls that were sent, in order.
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&reply(&PhpValue::Int(5)));
    bytes.extend_from_slice(&reply(&PhpValue::Array(PhpArray::new())));
    h.core.handle_bytes(h.now, link, &bytes);
    let d = done(&h.drain());
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].id, d[0].result.clone()),
        (first, Ok(PhpValue::Int(5)))
    );
    assert_eq!(d[1].id, second);
    // Room again: a query goes out.
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    assert_eq!(transmits(&h.drain()).len(), 1);
}
