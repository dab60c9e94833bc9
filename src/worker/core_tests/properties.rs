//! Properties over generated inputs: split reads, every call finishing once, garbage.

use super::*;

/// Feeding a link's byte stream in arbitrary pieces gives the same actions as feeding it
/// whole: events and replies interleaved, split anywhere.
#[test]
fn split_reads_do_not_change_the_outcome() {
    fn run(cuts: Vec<u16>) -> TestResult {
        let stream = {
            let mut s = BytesMut::new();
            s.put_slice(&event_frame(gw(0), Command::OnConnect, 1, b"", b"", 1));
            s.put_slice(&reply(&PhpValue::Int(4)));
            s.put_slice(&event_frame(gw(0), Command::OnMessage, 1, b"", b"hello", 1));
            s.put_slice(&reply(&map(vec![(PhpKey::Int(0), PhpValue::Int(1))])));
            s.put_slice(&reply(&PhpValue::Null));
            s.put_slice(&event_frame(gw(0), Command::OnClose, 1, b"", b"", 1));
            s.freeze()
        };
        let outcome = |pieces: Vec<Bytes>| {
            let mut h = Harness::with_gateways(1);
            let link = h.link(gw(0));
            h.core.call(h.now, &ApiCall::GetAllClientCount, None);
            h.core.call(
                h.now,
                &ApiCall::GetClientIdByUid {
                    uid: Bytes::from_static(b"u"),
                },
                None,
            );
            h.core.call(
                h.now,
                &ApiCall::GetSession {
                    client_id: Bytes::from_static(b"0a0000050b5400000001"),
                },
                None,
            );
            h.drain();
            let mut out = Vec::new();
            for p in pieces {
                h.core.handle_bytes(h.now, link, &p);
                out.extend(h.drain());
            }
            // The business code ends its events only now, whatever the reads were.
            for e in events(&out) {
                h.end_unchanged(&e);
            }
            out.extend(h.drain_ended());
            out
        };
        let whole = outcome(vec![stream.clone()]);
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|c| usize::from(*c) % (stream.len() + 1))
            .collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(stream.slice(last..p));
            last = p;
        }
        pieces.push(stream.slice(last..));
        let split = outcome(pieces);
        if whole.len() != 6 {
            return TestResult::error(format!("whole stream gave {whole:?}"));
        }
        TestResult::from_bool(whole == split)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(run as fn(Vec<u16>) -> TestResult);
}

/// Whatever happens to the links (replies, silence, closes, reconnects) and the clock,
/// every call finishes exactly once, and never later than its deadline.
#[test]
fn every_call_finishes_exactly_once() {
    #[derive(Debug, Clone)]
    enum Step {
        Query,
        Send,
        Reply(u8),
        Close(u8),
        Advance(u16),
    }
    impl quickcheck::Arbitrary for Step {
        fn arbitrary(g: &mut quickcheck::Gen) -> Step {
            match u8::arbitrary(g) % 10 {
                0..=2 => Step::Query,
                3 => Step::Send,
                4..=6 => Step::Reply(u8::arbitrary(g) % 3),
                7 => Step::Close(u8::arbitrary(g) % 3),
                _ => Step::Advance(u16::arbitrary(g) % 3000),
            }
        }
    }
    fn prop(steps: Vec<Step>) -> TestResult {
        let mut h = Harness::with_gateways(3);
        let mut issued: Vec<(CallId, Duration)> = Vec::new();
        let mut finished: Vec<CallId> = Vec::new();
        let observe = |h: &mut Harness, finished: &mut Vec<CallId>| -> Vec<Action> {
            let actions = h.drain();
            finished.extend(done(&actions).into_iter().map(|d| d.id));
            actions
        };
        for step in steps {
            match step {
                Step::Query => {
                    issued.push((h.core.call(h.now, &ApiCall::GetAllClientCount, None), h.now))
                }
                Step::Send => issued.push((
                    h.core.call(
                        h.now,
                        &ApiCall::SendToAll {
                            message: PhpValue::str("m"),
                            client_id_list: None,
                            exclude: None,
                            raw: false,
                        },
                        None,
                    ),
                    h.now,
                )),
                Step::Reply(i) => {
                    if let Some(&(_, link)) =
                        h.gateway_links.iter().rev().find(|(a, _)| *a == gw(i))
                    {
                        h.core.handle_bytes(h.now, link, &reply(&PhpValue::Int(1)));
                    }
                }
                Step::Close(i) => {
                    if let Some(&(_, link)) =
                        h.gateway_links.iter().rev().find(|(a, _)| *a == gw(i))
                    {
                        h.core.handle_closed(h.now, link);
                    }
                }
                Step::Advance(ms) => {
                    let to = h.now + Duration::from_millis(u64::from(ms));
                    h.advance(to);
                }
            }
            for a in observe(&mut h, &mut finished) {
                // Reconnect at once: the new link is the one replies go to.
                if let Action::Connect {
                    link,
                    peer: Peer::Gateway(addr),
                } = a
                {
                    h.gateway_links.push((addr, link));
                    h.core.handle_connected(h.now, link);
                }
            }
            observe(&mut h, &mut finished);
            // No call outlives its deadline.
            for (id, at) in &issued {
                if h.now >= *at + secs(5.0) && !finished.contains(id) {
                    return TestResult::error(format!(
                        "{id:?} from {at:?} still open at {:?}",
                        h.now
                    ));
                }
            }
        }
        let end = h.now + secs(5.0);
        h.advance(end);
        observe(&mut h, &mut finished);
        let mut ids: Vec<CallId> = issued.iter().map(|(id, _)| *id).collect();
        ids.sort();
        finished.sort();
        TestResult::from_bool(ids == finished)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Step>) -> TestResult);
}

/// Arbitrary bytes from a gateway or the register never panic the core: they become
/// events, replies, ignored lines or a closed link.
#[test]
fn garbage_input_never_panics() {
    fn prop(chunks: Vec<Vec<u8>>, register_lines: Vec<String>, queries: u8) -> bool {
        let mut h = Harness::with_gateways(2);
        for _ in 0..queries % 4 {
            h.core.call(h.now, &ApiCall::GetAllClientIdList, None);
        }
        h.drain();
        let link = h.link(gw(0));
        for chunk in &chunks {
            h.core.handle_bytes(h.now, link, chunk);
            h.drain();
        }
        let register = h.register.unwrap();
        for line in &register_lines {
            h.core.handle_bytes(h.now, register, line.as_bytes());
            h.core.handle_bytes(h.now, register, b"\n");
            h.drain();
        }
        h.advance(secs(60.0));
        h.drain();
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Vec<u8>>, Vec<String>, u8) -> bool);
}
