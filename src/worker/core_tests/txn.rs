//! An event's effects are all-or-nothing: frames staged between `begin_event` and the
//! event's end, committed by `end_event` and by a query, discarded by `fail_event`.

use super::*;

/// The client id of connection `cid` on gateway 0.
fn client(cid: u32) -> Bytes {
    client_id_text(gw0(), cid)
}

fn send(h: &mut Harness, to: u32, text: &str) -> CallDone {
    h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: client(to),
            message: PhpValue::str(text),
            raw: false,
        },
        None,
    );
    let d = done(&take(h));
    assert_eq!(d.len(), 1, "a send completes at once");
    d[0].clone()
}

/// The pending actions, transmits *not* confirmed as written (the driver still holds
/// them); the invariants are checked first.
fn take(h: &mut Harness) -> Vec<Action> {
    h.core.check_invariants();
    let mut out = Vec::new();
    while let Some(a) = h.core.poll_action() {
        out.push(a);
    }
    out
}

/// Decodes a transmitted frame: (command, body).
fn decoded(bytes: &Bytes) -> (Command, Bytes) {
    let mut buf = BytesMut::from(&bytes[..]);
    let f = FrameDecoder::new(u32::MAX)
        .decode(&mut buf)
        .expect("a frame")
        .expect("whole");
    (f.header.cmd, f.body)
}

fn bodies(actions: &[Action]) -> Vec<Bytes> {
    transmits(actions)
        .iter()
        .map(|(_, b)| decoded(b).1)
        .collect()
}

/// One gateway linked, events of clients 1, 2 and 3 delivered (not yet run).
fn three_events(config: WorkerConfig) -> (Harness, GatewayLinkId, Vec<ClientEvent>) {
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let mut bytes = BytesMut::new();
    for cid in 1..=3 {
        bytes.put_slice(&event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1));
    }
    h.core.handle_bytes(h.now, link, &bytes);
    let evs = events(&h.drain());
    assert_eq!(evs.len(), 3);
    (h, link, evs)
}

/// A failed event's frames are discarded, exactly those: the frames committed by the
/// event before it (still queued in the core, the window being full) and the event after
/// it leave in order, and the failed event's never, even when the link drains while it
/// runs.
#[test]
fn a_failed_event_sends_nothing_and_the_others_keep_their_order() {
    let mut config = Harness::config();
    // One frame handed to the driver at a time: the rest wait in the core's queue.
    config.link_window_bytes_max = 1;
    let (mut h, link, evs) = three_events(config);
    let (a, b, c) = (&evs[0], &evs[1], &evs[2]);

    h.core.begin_event();
    assert_eq!(send(&mut h, 1, "a1").result, Ok(PhpValue::Bool(true)));
    assert_eq!(send(&mut h, 1, "a2").result, Ok(PhpValue::Bool(true)));
    assert!(
        transmits(&take(&mut h)).is_empty(),
        "staged, not handed out"
    );
    h.end_unchanged(a);
    let first = take(&mut h);
    assert_eq!(
        bodies(&first),
        vec![Bytes::from_static(b"a1")],
        "window of one"
    );

    h.core.begin_event();
    send(&mut h, 2, "b1");
    h.core.call(
        h.now,
        &ApiCall::JoinGroup {
            client_id: client(2),
            group: Bytes::from_static(b"g"),
        },
        None,
    );
    // The link drains while the event runs: the committed a2 goes, b's frames do not.
    let a1 = transmits(&first)[0].1.len();
    h.core.handle_written(h.now, link, a1);
    let mid = take(&mut h);
    assert_eq!(bodies(&mid), vec![Bytes::from_static(b"a2")]);
    let rolled = h.core.fail_event(h.now, &b.client, b.kind);
    assert_eq!(rolled.frames, 2, "b1 and the join");
    // b1 is as long as a1 (same client, same length of text); the join is a header and
    // the group name.
    assert_eq!(rolled.bytes, a1 + HEADER_LEN + 1);
    assert_eq!(h.core.stats().frames_rolled_back, 2);
    assert_eq!(h.core.stats().bytes_rolled_back, rolled.bytes as u64);
    assert!(transmits(&take(&mut h)).is_empty());

    h.core.begin_event();
    send(&mut h, 3, "c1");
    h.end_unchanged(c);
    assert!(transmits(&take(&mut h)).is_empty(), "a2 not confirmed yet");
    let a2 = transmits(&mid)[0].1.len();
    h.core.handle_written(h.now, link, a2);
    let last = take(&mut h);
    assert_eq!(bodies(&last), vec![Bytes::from_static(b"c1")]);
    h.core
        .handle_written(h.now, link, transmits(&last)[0].1.len());
    assert!(take(&mut h).is_empty(), "nothing of b, ever");
    assert_eq!(h.core.stats().frames_dropped, 0);
}

/// The session write-back is part of the event: it follows the event's frames at its end,
/// and a failed event writes nothing back.
#[test]
fn the_write_back_follows_the_events_frames_and_a_failure_writes_nothing() {
    let (mut h, _link, evs) = three_events(Harness::config());
    let new = map(vec![(PhpKey::from_bytes(b"k"), PhpValue::str("v"))]);
    h.core.begin_event();
    send(&mut h, 1, "a1");
    h.core
        .end_event(h.now, &evs[0].client, evs[0].kind, &PhpValue::Null, &new)
        .unwrap();
    let sent: Vec<u8> = transmits(&h.drain())
        .iter()
        .map(|(_, b)| cmd_of(b))
        .collect();
    assert_eq!(
        sent,
        vec![Command::SendToOne as u8, Command::SetSession as u8]
    );

    h.core.begin_event();
    h.core.call(
        h.now,
        &ApiCall::SetSession {
            client_id: client(2),
            session: new.clone(),
        },
        None,
    );
    let rolled = h.core.fail_event(h.now, &evs[1].client, evs[1].kind);
    assert_eq!(rolled.frames, 1);
    assert!(transmits(&h.drain()).is_empty());
}

/// A query sends what the event staged before it first (it must observe it: a join then a
/// count counts the join); what it staged after the query is still discarded if it fails.
#[test]
fn a_query_commits_what_the_event_staged_before_it() {
    let (mut h, link, evs) = three_events(Harness::config());
    h.core.begin_event();
    h.core.call(
        h.now,
        &ApiCall::JoinGroup {
            client_id: client(1),
            group: Bytes::from_static(b"g"),
        },
        None,
    );
    assert!(transmits(&take(&mut h)).is_empty());
    let query = h.core.call(
        h.now,
        &ApiCall::GetClientCountByGroup {
            group: Bytes::from_static(b"g"),
        },
        None,
    );
    let sent: Vec<u8> = transmits(&h.drain())
        .iter()
        .map(|(_, b)| cmd_of(b))
        .collect();
    assert_eq!(
        sent,
        vec![
            Command::JoinGroup as u8,
            Command::GetClientCountByGroup as u8
        ],
        "the join, then the query"
    );
    h.core.handle_bytes(h.now, link, &reply(&PhpValue::Int(1)));
    let d = done(&h.drain());
    assert_eq!(d[0].id, query);
    assert_eq!(d[0].result, Ok(PhpValue::Int(1)));
    send(&mut h, 1, "after");
    let rolled = h.core.fail_event(h.now, &evs[0].client, evs[0].kind);
    assert_eq!(rolled.frames, 1, "only the send after the query");
    assert!(transmits(&h.drain()).is_empty());
    assert_eq!(h.core.stats().frames_rolled_back, 1);
}

/// Staged bytes count in the link's bound: a staged frame that would not fit is refused
/// at once like a frame at a full queue (counted, the send returns false), the event goes
/// on, its commit never overflows the bound, and a failed event gives its room back.
#[test]
fn staged_bytes_count_in_the_link_bound() {
    let mut config = Harness::config();
    // Each send below is a 68-byte frame: two fit, the third does not.
    config.link_queue_bytes_max = 150;
    let (mut h, _link, evs) = three_events(config);
    h.core.begin_event();
    let sent = |h: &mut Harness, text: &str| send(h, 1, text).result;
    let forty = "x".repeat(40);
    assert_eq!(sent(&mut h, &forty), Ok(PhpValue::Bool(true)));
    assert_eq!(sent(&mut h, &forty), Ok(PhpValue::Bool(true)));
    assert_eq!(sent(&mut h, &forty), Ok(PhpValue::Bool(false)));
    assert_eq!(h.core.stats().frames_dropped, 1);
    assert_eq!(h.core.stats().bytes_dropped, 68);
    // A query cannot pass the staged bytes either: committing them first fills the link.
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let after_query = take(&mut h);
    assert_eq!(transmits(&after_query).len(), 2, "the two staged sends");
    assert_eq!(
        done(&after_query)[0].result,
        Err(ApiError::Timeout { missing: 1 }),
        "no room for the query itself"
    );
    assert_eq!(h.core.stats().frames_dropped, 2);
    h.end_unchanged(&evs[0]);
    // Confirm the writes: the room comes back.
    for (link, bytes) in transmits(&after_query) {
        h.core.handle_written(h.now, link, bytes.len());
    }
    h.drain();
    h.core.begin_event();
    assert_eq!(sent(&mut h, &forty), Ok(PhpValue::Bool(true)));
    assert_eq!(sent(&mut h, &forty), Ok(PhpValue::Bool(true)));
    let rolled = h.core.fail_event(h.now, &evs[1].client, evs[1].kind);
    assert_eq!(
        rolled,
        RolledBack {
            frames: 2,
            bytes: 136
        }
    );
    h.core.begin_event();
    assert_eq!(
        sent(&mut h, &forty),
        Ok(PhpValue::Bool(true)),
        "the failed event's room is free again"
    );
    h.end_unchanged(&evs[2]);
    assert_eq!(transmits(&h.drain()).len(), 1);
    assert_eq!(h.core.stats().frames_dropped, 2);
}

/// What the core sends on its own while an event runs (here the session reload of
/// another client's event) does not wait behind the event's staged frames, and the reply
/// to it is matched as usual.
#[test]
fn the_cores_own_frames_do_not_wait_behind_staged_ones() {
    let (mut h, link) = Harness::linked_to_one_gateway(Harness::config());
    let s1 = serialize(&map(vec![(PhpKey::from_bytes(b"v"), PhpValue::Int(1))]));
    let s2 = serialize(&map(vec![(PhpKey::from_bytes(b"v"), PhpValue::Int(2))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw0(), Command::OnMessage, 2, &s1, b"m", 1),
    );
    assert_eq!(events(&h.drain_ended()).len(), 1, "client 2 seen with s1");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw0(), Command::OnMessage, 1, b"", b"m", 1),
    );
    let evs = events(&h.drain());
    assert_eq!(evs.len(), 1);
    // Client 1's event runs; meanwhile client 2's next event brings a session that is
    // not the one this worker saw last: the core reloads it at once.
    h.core.begin_event();
    send(&mut h, 2, "staged");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw0(), Command::OnMessage, 2, &s2, b"m", 1),
    );
    let sent: Vec<u8> = transmits(&h.drain())
        .iter()
        .map(|(_, b)| cmd_of(b))
        .collect();
    assert_eq!(sent, vec![Command::GetSessionByClientId as u8]);
    h.core
        .handle_bytes(h.now, link, &reply(&unserialize_lenient(&s2)));
    let reloaded = events(&h.drain());
    assert_eq!(reloaded.len(), 1);
    assert_eq!(reloaded[0].client.session, unserialize_lenient(&s2));
    h.end_unchanged(&evs[0]);
    let sent: Vec<u8> = transmits(&h.drain())
        .iter()
        .map(|(_, b)| cmd_of(b))
        .collect();
    assert_eq!(sent, vec![Command::SendToOne as u8]);
}

/// Calls outside an event (worker start and stop) go out at once; a link that closes
/// while the event runs takes its staged frames with it; a second `begin_event` commits
/// the open event's frames.
#[test]
fn outside_an_event_nothing_is_staged_and_closes_and_nesting_are_clean() {
    let mut h = Harness::with_gateways(2);
    h.core.call(
        h.now,
        &ApiCall::SendToAll {
            message: PhpValue::str("hi"),
            client_id_list: None,
            exclude: None,
            raw: false,
        },
        None,
    );
    assert_eq!(transmits(&h.drain()).len(), 2, "no event: sent at once");
    h.core.begin_event();
    h.core.call(
        h.now,
        &ApiCall::SendToAll {
            message: PhpValue::str("hi"),
            client_id_list: None,
            exclude: None,
            raw: false,
        },
        None,
    );
    assert!(transmits(&h.drain()).is_empty());
    let closed = h.link(gw(1));
    h.core.handle_closed(h.now, closed);
    h.core.begin_event();
    let sent = transmits(&h.drain());
    assert_eq!(
        sent.len(),
        1,
        "committed by the next begin, on the open link only"
    );
    assert_eq!(sent[0].0, h.link(gw(0)));
    let any = CurrentClient {
        client_id: client_id_text(gw(0), 1),
        gateway: gw(0),
        connection_id: 1,
        session: PhpValue::Null,
    };
    let rolled = h.core.fail_event(h.now, &any, ClientEventKind::Message);
    assert_eq!(rolled, RolledBack::default());
}

/// Whatever the interleaving of events (ended or failed), sends, queries and writes, each
/// link carries exactly: the frames of ended events and of calls outside events, the
/// frames a failed event staged before one of its queries, and the queries, in call
/// order; never a frame a failed event staged after its last query.
#[test]
fn links_carry_exactly_the_committed_frames_in_call_order() {
    #[derive(Debug, Clone)]
    enum Step {
        Begin,
        Send(u8),
        Query,
        End,
        Fail,
        Written,
    }
    impl quickcheck::Arbitrary for Step {
        fn arbitrary(g: &mut quickcheck::Gen) -> Step {
            match u8::arbitrary(g) % 12 {
                0..=1 => Step::Begin,
                2..=6 => Step::Send(u8::arbitrary(g) % 2),
                7 => Step::Query,
                8 => Step::End,
                9 => Step::Fail,
                _ => Step::Written,
            }
        }
    }
    /// The model's commit: what is staged per link joins what must arrive.
    fn commit(expected: &mut [Vec<Bytes>; 2], staged: &mut [Vec<Bytes>; 2]) {
        for (e, s) in expected.iter_mut().zip(staged.iter_mut()) {
            e.append(s);
        }
    }
    fn prop(steps: Vec<Step>) -> TestResult {
        let mut h = Harness::with_gateways(2);
        // Two frames in the driver's hands at most: the rest wait in the core's queues.
        h.core.0.config.link_window_bytes_max = 100;
        let links = [h.link(gw(0)), h.link(gw(1))];
        let any = CurrentClient {
            client_id: client_id_text(gw(0), 1),
            gateway: gw(0),
            connection_id: 1,
            session: PhpValue::Null,
        };
        // Per link: what must arrive, what is staged in the model, what arrived.
        let mut expected: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];
        let mut staged: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];
        let mut arrived: [Vec<Bytes>; 2] = [Vec::new(), Vec::new()];
        let mut in_flight: Vec<(GatewayLinkId, usize)> = Vec::new();
        let mut open = false;
        let query_tag = Bytes::from_static(b"<query>");
        let mut collect = |h: &mut Harness, in_flight: &mut Vec<(GatewayLinkId, usize)>| {
            for (link, bytes) in transmits(&take(h)) {
                let i = links
                    .iter()
                    .position(|l| *l == link)
                    .expect("a gateway link");
                let (cmd, body) = decoded(&bytes);
                arrived[i].push(if cmd == Command::SendToOne {
                    body
                } else {
                    query_tag.clone()
                });
                in_flight.push((link, bytes.len()));
            }
        };
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Begin => {
                    h.core.begin_event();
                    commit(&mut expected, &mut staged);
                    open = true;
                }
                Step::Send(g) => {
                    let i = usize::from(g);
                    let tag = Bytes::from(format!("m{n}"));
                    h.core.call(
                        h.now,
                        &ApiCall::SendToClient {
                            client_id: client_id_text(gw(g), 1),
                            message: PhpValue::Str(tag.clone()),
                            raw: false,
                        },
                        None,
                    );
                    if open {
                        staged[i].push(tag);
                    } else {
                        expected[i].push(tag);
                    }
                }
                Step::Query => {
                    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
                    commit(&mut expected, &mut staged);
                    for e in &mut expected {
                        e.push(query_tag.clone());
                    }
                }
                Step::End => {
                    let _ = h.core.end_event(
                        h.now,
                        &any,
                        ClientEventKind::Message,
                        &PhpValue::Null,
                        &PhpValue::Null,
                    );
                    commit(&mut expected, &mut staged);
                    open = false;
                }
                Step::Fail => {
                    let rolled = h.core.fail_event(h.now, &any, ClientEventKind::Message);
                    let staged_frames = staged[0].len() + staged[1].len();
                    if rolled.frames != staged_frames {
                        return TestResult::error(format!(
                            "rolled back {} frames, {staged_frames} were staged",
                            rolled.frames
                        ));
                    }
                    staged = [Vec::new(), Vec::new()];
                    open = false;
                }
                Step::Written => {
                    for (link, len) in in_flight.drain(..) {
                        h.core.handle_written(h.now, link, len);
                    }
                }
            }
            collect(&mut h, &mut in_flight);
        }
        // The business code ends the last event; the links drain.
        let _ = h.core.end_event(
            h.now,
            &any,
            ClientEventKind::Message,
            &PhpValue::Null,
            &PhpValue::Null,
        );
        commit(&mut expected, &mut staged);
        collect(&mut h, &mut in_flight);
        while !in_flight.is_empty() {
            for (link, len) in std::mem::take(&mut in_flight) {
                h.core.handle_written(h.now, link, len);
            }
            collect(&mut h, &mut in_flight);
        }
        if h.core.stats().frames_dropped != 0 {
            return TestResult::error("nothing may be dropped here");
        }
        TestResult::from_bool(arrived == expected)
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Vec<Step>) -> TestResult);
}
