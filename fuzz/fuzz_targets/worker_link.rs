//! The worker's gateway link (spec 1, 7.2): what a gateway sends a business worker, event
//! frames and reply records on one stream, told apart by the worker core by what it awaits
//! (`src/worker/core.rs`, "Events and replies share a link"). The input goes to a real
//! `WorkerCore` linked to one gateway, with queries outstanding so that reply records are
//! expected too, cut into pieces (whole, byte by byte, hashed sizes), and every event the
//! core hands over is run and ended as the business code does, with small bounds so that
//! parking, holding and the too-large paths are reached. Oracles: no panic and the core's
//! own invariants (`check_invariants`: queues, byte counts, every bound) after every piece.
//! (Not "the same events for any split": where a piece ends decides how many events wait
//! at once, hence whether a session reload is started or skipped, hence whether the next
//! bytes are awaited as a reply; that is the protocol's own ambiguity, spec 1.4.)
#![no_main]

use std::time::Duration;

use gatewayworker::api::ApiCall;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::worker::core::{Action, GatewayLinkId, WorkerConfig, WorkerCore};
use gatewayworker_fuzz::chunkings;
use libfuzzer_sys::fuzz_target;

/// The one gateway the register announces.
const GATEWAY_LINE: &[u8] =
    b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n";

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    for pieces in chunkings(input) {
        run(knobs, pieces);
    }
});

/// Feeds `pieces` to a core linked to one gateway; how many events it handed over, and
/// whether it closed the link.
fn run(knobs: u8, pieces: Vec<&[u8]>) -> (usize, bool) {
    let mut config = WorkerConfig::new("fuzz", 0, vec!["register:1236".into()]);
    config.package_size_max = 4096;
    config.reply_size_max = 4096;
    config.pending_replies_max = 4;
    config.parked_events_max = 8;
    config.parked_events_bytes_max = 8 * 1024;
    config.held_events_bytes_max = 8 * 1024;
    let mut now = Duration::ZERO;
    let mut core = WorkerCore::new(config, now);
    let mut gateway = None;
    let mut events = 0;
    let mut closed = false;
    // Up: the register link, its list, the gateway link.
    for _ in 0..2 {
        for action in drain(&mut core) {
            if let Action::Connect { link, .. } = action {
                core.handle_connected(now, link);
                if gateway.is_none() && link != GatewayLinkId(1) {
                    gateway = Some(link);
                }
            }
        }
        if gateway.is_none() {
            core.handle_bytes(now, GatewayLinkId(1), GATEWAY_LINE);
        }
    }
    let Some(gateway) = gateway else {
        panic!("the core did not link the announced gateway");
    };
    core.check_invariants();
    // Queries in flight (0 to 3), so that reply records are awaited; room for events
    // limited by the knobs so that some are held.
    for _ in 0..(knobs & 3) {
        core.call(now, &ApiCall::GetAllClientCount, None);
    }
    core.set_event_room(usize::from(knobs >> 2 & 7) + 1);
    for piece in pieces {
        if closed {
            break;
        }
        now += Duration::from_millis(1);
        core.handle_bytes(now, gateway, piece);
        core.handle_timeout(now);
        core.check_invariants();
        for action in drain(&mut core) {
            match action {
                Action::Event(event) => {
                    events += 1;
                    core.begin_event();
                    let _ = core.end_event(
                        now,
                        &event.client,
                        event.kind,
                        &PhpValue::Null,
                        &PhpValue::Null,
                    );
                }
                Action::Transmit { link, bytes } => core.handle_written(now, link, bytes.len()),
                Action::Close { link, .. } if link == gateway => closed = true,
                _ => {}
            }
        }
        core.set_event_room(usize::from(knobs >> 5) + 1);
        core.check_invariants();
    }
    (events, closed)
}

/// Every action the core has now.
fn drain(core: &mut WorkerCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}
