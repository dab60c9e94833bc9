//! The event transaction costs the worker core's echo path no allocation: a round (an
//! event frame in, the event out, a send, the event's end, the transmit confirmed)
//! allocates as often with the event begun (its send staged, committed at its end) as
//! without (the send queued at once). Counted by this binary's global allocator, on the
//! test's own thread only, while a test asks for it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatewayworker::api::ApiCall;
use gatewayworker::protocol::frame::{Command, Frame, Header};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::worker::core::{Action, GatewayLinkId, WorkerConfig};
use gatewayworker::worker::WorkerCore;

#[path = "../common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const GATEWAY: &str = "10.0.0.5:2900";

/// A core linked to one gateway, and that link.
fn linked_core() -> (WorkerCore, GatewayLinkId) {
    let now = Duration::ZERO;
    let mut core = WorkerCore::new(
        WorkerConfig::new("alloc", 0, vec!["10.0.0.1:1236".into()]),
        now,
    );
    let mut connects = Vec::new();
    let drain = |core: &mut WorkerCore, connects: &mut Vec<GatewayLinkId>| {
        while let Some(a) = core.poll_action() {
            match a {
                Action::Connect { link, .. } => connects.push(link),
                Action::Transmit { link, bytes } => core.handle_written(now, link, bytes.len()),
                _ => {}
            }
        }
    };
    drain(&mut core, &mut connects);
    let register = connects[0];
    core.handle_connected(now, register);
    let line = format!("{{\"event\":\"broadcast_addresses\",\"addresses\":[\"{GATEWAY}\"]}}\n");
    core.handle_bytes(now, register, line.as_bytes());
    drain(&mut core, &mut connects);
    let gateway = connects[1];
    core.handle_connected(now, gateway);
    drain(&mut core, &mut connects);
    (core, gateway)
}

/// `rounds` echo rounds through `core`; with `begun`, each event is begun first.
fn echo(core: &mut WorkerCore, link: GatewayLinkId, event: &Bytes, rounds: usize, begun: bool) {
    let now = Duration::ZERO;
    for _ in 0..rounds {
        core.handle_bytes(now, link, event);
        let Some(Action::Event(ev)) = core.poll_action() else {
            panic!("an event");
        };
        if begun {
            core.begin_event();
        }
        core.call(
            now,
            &ApiCall::SendToCurrentClient {
                message: PhpValue::Str(Bytes::from_static(b"hello")),
                raw: false,
            },
            Some(&ev.client),
        );
        let mut transmitted = 0;
        let mut drain = |core: &mut WorkerCore| {
            while let Some(a) = core.poll_action() {
                if let Action::Transmit { link, bytes } = a {
                    transmitted += 1;
                    core.handle_written(now, link, bytes.len());
                }
            }
        };
        drain(core);
        core.end_event(now, &ev.client, ev.kind, &PhpValue::Null, &PhpValue::Null)
            .expect("nothing to write back");
        drain(core);
        assert_eq!(transmitted, 1, "the send left");
    }
}

#[test]
fn the_event_transaction_adds_no_allocation_to_the_echo_path() {
    let mut header = Header::new(Command::OnMessage);
    header.local_ip = "10.0.0.5".parse().unwrap();
    header.local_port = 2900;
    header.connection_id = 1;
    header.flag = 1;
    let mut event = BytesMut::new();
    Frame::new(header, Bytes::new(), Bytes::from_static(b"hello")).encode(&mut event);
    let event = event.freeze();
    let mut counts = Vec::new();
    for begun in [false, true] {
        let (mut core, link) = linked_core();
        echo(&mut core, link, &event, 1_000, begun);
        let n = allocations(|| echo(&mut core, link, &event, 10_000, begun));
        eprintln!("worker core echo, event begun: {begun}: {n} allocations in 10000 rounds");
        counts.push(n);
    }
    assert_eq!(
        counts[0], counts[1],
        "allocations without / with the event transaction"
    );
}
