//! Each rule of the register (spec 8, 5.5 and quirks 16-17) through [`RegisterCore`] with
//! a fake clock: keys, addresses, broadcasts, the first-line timeout and every bound.
//! Every input goes through [`Checked`], which runs the core's `check_invariants` after it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::protocol::register::{decode_from_register, FromRegister, ToRegister};
use gatewayworker::register::{Action, CloseReason, PeerId, Refused, RegisterConfig, RegisterCore};
use quickcheck::{QuickCheck, TestResult};

const T0: Duration = Duration::ZERO;

/// The core behind a harness that checks its invariants after every input. Reads go
/// through `Deref`; there is no unchecked `&mut` access.
struct Checked(RegisterCore);

impl std::ops::Deref for Checked {
    type Target = RegisterCore;
    fn deref(&self) -> &RegisterCore {
        &self.0
    }
}

impl Checked {
    fn new(config: RegisterConfig) -> Checked {
        let core = Checked(RegisterCore::new(config));
        core.check_invariants();
        core
    }

    fn checked<T>(&mut self, input: impl FnOnce(&mut RegisterCore) -> T) -> T {
        let out = input(&mut self.0);
        self.0.check_invariants();
        out
    }

    fn handle_connected(&mut self, now: Duration, peer: SocketAddr) -> Result<PeerId, Refused> {
        self.checked(|core| core.handle_connected(now, peer))
    }

    fn handle_bytes(&mut self, now: Duration, id: PeerId, bytes: &[u8]) {
        self.checked(|core| core.handle_bytes(now, id, bytes));
    }

    fn handle_written(&mut self, now: Duration, id: PeerId, bytes: usize) {
        self.checked(|core| core.handle_written(now, id, bytes));
    }

    fn handle_closed(&mut self, now: Duration, id: PeerId) {
        self.checked(|core| core.handle_closed(now, id));
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.checked(|core| core.handle_timeout(now));
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.checked(RegisterCore::poll_action)
    }
}

fn peer() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 9], 51_000))
}

fn core_with(secret: &str) -> Checked {
    Checked::new(RegisterConfig::new(secret))
}

fn drain(core: &mut Checked) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn connect(core: &mut Checked) -> PeerId {
    let id = core.handle_connected(T0, peer()).expect("accepted");
    assert!(drain(core).is_empty());
    id
}

/// Feeds one line plus `\n` and returns what the core asked for.
fn send(core: &mut Checked, id: PeerId, line: &str) -> Vec<Action> {
    core.handle_bytes(T0, id, format!("{line}\n").as_bytes());
    drain(core)
}

fn gateway_line(address: &str, key: &str) -> String {
    let mut wire = bytes::BytesMut::new();
    ToRegister::GatewayConnect {
        address: address.to_owned(),
        secret_key: key.to_owned(),
    }
    .encode(&mut wire);
    String::from_utf8(wire[..wire.len() - 1].to_vec()).unwrap()
}

fn worker_line(key: &str) -> String {
    format!("{{\"event\":\"worker_connect\",\"secret_key\":\"{key}\"}}")
}

fn tx(to: PeerId, text: &str) -> Action {
    Action::Transmit {
        to,
        bytes: Bytes::from(format!("{text}\n")),
    }
}

fn close(id: PeerId, reason: CloseReason) -> Action {
    Action::Close {
        id,
        after_flush: true,
        reason,
    }
}

fn list(addresses: &str) -> String {
    format!("{{\"event\":\"broadcast_addresses\",\"addresses\":{addresses}}}")
}

#[test]
fn secret_key_is_compared_strictly() {
    let mut core = core_with("s3cret");
    let worker = connect(&mut core);
    assert_eq!(
        send(&mut core, worker, &worker_line("s3cret")),
        vec![tx(worker, &list("[]"))]
    );
    for line in [
        worker_line("S3cret"),
        worker_line(""),
        "{\"event\":\"worker_connect\"}".to_owned(),
        "{\"event\":\"worker_connect\",\"secret_key\":null}".to_owned(),
        gateway_line("10.0.0.5:2900", "wrong"),
        "{\"event\":\"gateway_connect\",\"address\":\"10.0.0.5:2900\"}".to_owned(),
    ] {
        let id = connect(&mut core);
        assert_eq!(
            send(&mut core, id, &line),
            vec![close(id, CloseReason::BadSecret)],
            "{line}"
        );
    }
    assert_eq!(core.addresses(), Vec::<String>::new());
}

#[test]
fn missing_key_counts_as_empty_and_non_string_key_never_matches() {
    let mut core = core_with("");
    for line in [
        "{\"event\":\"worker_connect\"}",
        "{\"event\":\"worker_connect\",\"secret_key\":null}",
    ] {
        let id = connect(&mut core);
        assert_eq!(
            send(&mut core, id, line),
            vec![tx(id, &list("[]"))],
            "{line}"
        );
    }
    for line in [
        "{\"event\":\"worker_connect\",\"secret_key\":0}",
        "{\"event\":\"worker_connect\",\"secret_key\":false}",
        "{\"event\":\"worker_connect\",\"secret_key\":[]}",
    ] {
        let id = connect(&mut core);
        assert_eq!(
            send(&mut core, id, line),
            vec![close(id, CloseReason::BadSecret)],
            "{line}"
        );
    }
}

#[test]
fn gateway_without_address_is_closed_before_the_key_is_checked() {
    let mut core = core_with("k");
    let worker = connect(&mut core);
    send(&mut core, worker, &worker_line("k"));
    for address in ["", "0", "null-missing"] {
        let line = if address == "null-missing" {
            "{\"event\":\"gateway_connect\",\"secret_key\":\"wrong\"}".to_owned()
        } else {
            gateway_line(address, "wrong")
        };
        let id = connect(&mut core);
        assert_eq!(
            send(&mut core, id, &line),
            vec![close(id, CloseReason::NoAddress)],
            "{line}"
        );
    }
    // A non-string address is refused too (the original would store it; see report).
    let id = connect(&mut core);
    assert_eq!(
        send(
            &mut core,
            id,
            "{\"event\":\"gateway_connect\",\"address\":5,\"secret_key\":\"k\"}"
        ),
        vec![close(id, CloseReason::NoAddress)]
    );
}

#[test]
fn gateway_connect_and_close_are_broadcast_to_every_worker_in_order() {
    let mut core = core_with("");
    let w1 = connect(&mut core);
    let w2 = connect(&mut core);
    let g1 = connect(&mut core);
    let g2 = connect(&mut core);
    send(&mut core, w2, &worker_line(""));
    send(&mut core, w1, &worker_line(""));
    let one = list("[\"10.0.0.1:2900\"]");
    assert_eq!(
        send(&mut core, g1, &gateway_line("10.0.0.1:2900", "")),
        vec![tx(w2, &one), tx(w1, &one)],
        "workers in registration order, not id order"
    );
    let two = list("[\"10.0.0.1:2900\",\"10.0.0.2:2900\"]");
    assert_eq!(
        send(&mut core, g2, &gateway_line("10.0.0.2:2900", "")),
        vec![tx(w2, &two), tx(w1, &two)]
    );
    // A worker leaving is not broadcast; a gateway leaving is.
    core.handle_closed(T0, w2);
    assert!(drain(&mut core).is_empty());
    core.handle_closed(T0, g1);
    assert_eq!(drain(&mut core), vec![tx(w1, &list("[\"10.0.0.2:2900\"]"))]);
    // A closed id is forgotten: a second report or late bytes change nothing.
    core.handle_closed(T0, g1);
    core.handle_bytes(T0, g1, b"{\"event\":\"ping\"}\n");
    assert!(drain(&mut core).is_empty());
}

#[test]
fn duplicates_keep_the_first_place_and_gaps_make_an_object() {
    let mut core = core_with("");
    let w = connect(&mut core);
    send(&mut core, w, &worker_line(""));
    let ga = connect(&mut core);
    let gb = connect(&mut core);
    let gc = connect(&mut core);
    send(&mut core, ga, &gateway_line("a:1", ""));
    assert_eq!(
        send(&mut core, gb, &gateway_line("a:1", "")),
        vec![tx(w, &list("[\"a:1\"]"))]
    );
    assert_eq!(
        send(&mut core, gc, &gateway_line("c:1", "")),
        vec![tx(w, &list("{\"0\":\"a:1\",\"2\":\"c:1\"}"))]
    );
    // The first of the duplicates leaves: the second takes over at index 0.
    core.handle_closed(T0, ga);
    assert_eq!(drain(&mut core), vec![tx(w, &list("[\"a:1\",\"c:1\"]"))]);
    // Re-registering on the same connection keeps its place and replaces the address.
    assert_eq!(
        send(&mut core, gb, &gateway_line("b:1", "")),
        vec![tx(w, &list("[\"b:1\",\"c:1\"]"))]
    );
    assert_eq!(core.addresses(), vec!["b:1", "c:1"]);
}

#[test]
fn worker_connect_answers_only_that_connection_and_registers_once() {
    let mut core = core_with("");
    let g = connect(&mut core);
    send(&mut core, g, &gateway_line("10.0.0.5:2900", ""));
    let w = connect(&mut core);
    let answer = list("[\"10.0.0.5:2900\"]");
    assert_eq!(send(&mut core, w, &worker_line("")), vec![tx(w, &answer)]);
    assert_eq!(send(&mut core, w, &worker_line("")), vec![tx(w, &answer)]);
    assert_eq!(core.workers(), vec![w], "one registration per connection");
}

#[test]
fn a_connection_both_gateway_and_worker_does_not_hear_its_own_leaving() {
    let mut core = core_with("");
    let other = connect(&mut core);
    send(&mut core, other, &worker_line(""));
    let both = connect(&mut core);
    send(&mut core, both, &worker_line(""));
    let with = list("[\"x:1\"]");
    assert_eq!(
        send(&mut core, both, &gateway_line("x:1", "")),
        vec![tx(other, &with), tx(both, &with)]
    );
    // Closed by the register (unknown event): the others hear the new list at once.
    assert_eq!(
        send(&mut core, both, "{\"event\":\"bye\"}"),
        vec![
            close(both, CloseReason::UnknownEvent),
            tx(other, &list("[]"))
        ]
    );
    core.handle_closed(T0, both);
    assert!(
        drain(&mut core).is_empty(),
        "forgotten once, broadcast once"
    );
}

#[test]
fn ping_does_nothing_and_unknown_events_close_silently() {
    let mut core = core_with("");
    let id = connect(&mut core);
    assert!(send(&mut core, id, "{\"event\":\"ping\"}").is_empty());
    assert!(send(&mut core, id, "{\"event\":\"ping\",\"x\":[1,2]}").is_empty());
    assert_eq!(
        send(&mut core, id, "{\"event\":\"whatever\"}"),
        vec![close(id, CloseReason::UnknownEvent)]
    );
    let id = connect(&mut core);
    assert_eq!(
        send(&mut core, id, "{\"event\":7}"),
        vec![close(id, CloseReason::UnknownEvent)]
    );
}

#[test]
fn event_true_reads_as_gateway_connect_like_php_loose_switch() {
    let mut core = core_with("");
    let w = connect(&mut core);
    send(&mut core, w, &worker_line(""));
    let id = connect(&mut core);
    assert_eq!(
        send(&mut core, id, "{\"event\":true,\"address\":\"t:1\"}"),
        vec![tx(w, &list("[\"t:1\"]"))]
    );
}

#[test]
fn bad_request_gets_the_error_line_then_a_close_and_later_lines_are_ignored() {
    let mut core = core_with("");
    let w = connect(&mut core);
    send(&mut core, w, &worker_line(""));
    for line in [
        "hello",
        "",
        "{}",
        "{\"event\":\"0\"}",
        "[\"ping\"]",
        "{\"event\":null}",
    ] {
        let id = connect(&mut core);
        core.handle_bytes(
            T0,
            id,
            format!("{line}\r\n{}\n", gateway_line("late:1", "")).as_bytes(),
        );
        let answer = format!(
            "Bad request for Register service. Request info(IP:10.0.0.9, Request Buffer:{line}). See http://doc2.workerman.net/register-auth-timeout.html"
        );
        assert_eq!(
            drain(&mut core),
            vec![tx(id, &answer), close(id, CloseReason::BadRequest)],
            "{line:?}"
        );
    }
    assert!(
        core.addresses().is_empty(),
        "the line after the bad one was ignored"
    );
}

#[test]
fn first_line_must_come_within_ten_seconds() {
    let mut core = core_with("");
    let silent = connect(&mut core);
    assert_eq!(core.poll_timeout(), Some(Duration::from_secs(10)));
    let later = core
        .handle_connected(Duration::from_secs(3), peer())
        .unwrap();
    // A partial line is not a line.
    core.handle_bytes(Duration::from_secs(4), later, b"{\"event\":");
    core.handle_timeout(Duration::from_millis(9_999));
    assert!(drain(&mut core).is_empty());
    core.handle_timeout(Duration::from_secs(10));
    assert_eq!(
        drain(&mut core),
        vec![close(silent, CloseReason::FirstLineTimeout)]
    );
    assert_eq!(core.poll_timeout(), Some(Duration::from_secs(13)));
    // Any first line cancels the timer, even one that is only a ping.
    core.handle_bytes(Duration::from_secs(12), later, b"\"ping\"}\n");
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.poll_timeout(), None);
    // Nothing times out an identified connection (spec 5.5).
    core.handle_timeout(Duration::from_secs(3_600));
    assert!(drain(&mut core).is_empty());
    // Late bytes on the timed-out connection are ignored.
    core.handle_bytes(Duration::from_secs(13), silent, worker_line("").as_bytes());
    core.handle_bytes(Duration::from_secs(13), silent, b"\n");
    assert!(drain(&mut core).is_empty());
}

#[test]
fn a_bad_first_line_also_cancels_the_timer() {
    let mut core = core_with("");
    let id = connect(&mut core);
    send(&mut core, id, "nonsense");
    assert_eq!(core.poll_timeout(), None);
    let id = connect(&mut core);
    core.handle_closed(T0, id);
    assert_eq!(
        core.poll_timeout(),
        None,
        "a closed connection's timer goes with it"
    );
}

#[test]
fn line_length_bound_counts_the_newline() {
    let mut config = RegisterConfig::new("");
    config.line_bytes_max = 64;
    let mut core = Checked::new(config);
    let id = connect(&mut core);
    // {"event":"ping","pad":"..."} padded to exactly 63 bytes, + \n = 64.
    let pad = 63 - "{\"event\":\"ping\",\"pad\":\"\"}".len();
    let line = format!("{{\"event\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(pad));
    assert_eq!(line.len(), 63);
    assert!(
        send(&mut core, id, &line).is_empty(),
        "at the bound: accepted"
    );
    core.handle_bytes(T0, id, &[b'x'; 63]);
    assert!(
        drain(&mut core).is_empty(),
        "63 bytes without \\n may still end"
    );
    core.handle_bytes(T0, id, b"x");
    assert_eq!(drain(&mut core), vec![close(id, CloseReason::LineTooLong)]);
}

#[test]
fn connections_are_bounded() {
    let mut config = RegisterConfig::new("");
    config.connections_max = 2;
    let mut core = Checked::new(config);
    let a = connect(&mut core);
    let _b = connect(&mut core);
    assert_eq!(
        core.handle_connected(T0, peer()),
        Err(Refused::ConnectionsMax)
    );
    assert_eq!(core.stats().connections_refused, 1);
    // A connection the register closed still counts until the driver reports it gone.
    send(&mut core, a, "bad");
    assert_eq!(
        core.handle_connected(T0, peer()),
        Err(Refused::ConnectionsMax)
    );
    core.handle_closed(T0, a);
    let c = core.handle_connected(T0, peer()).expect("room again");
    assert_eq!(c, PeerId(3), "refused connects use no id");
}

#[test]
fn output_is_bounded_per_connection() {
    let empty = list("[]");
    let line_len = empty.len() + 1;
    let mut config = RegisterConfig::new("");
    config.pending_bytes_max = line_len;
    let mut core = Checked::new(config);
    let w = connect(&mut core);
    assert_eq!(send(&mut core, w, &worker_line("")), vec![tx(w, &empty)]);
    // Unflushed output has reached the bound: the next line is dropped, the
    // connection stays.
    assert!(send(&mut core, w, &worker_line("")).is_empty());
    assert_eq!(core.stats().lines_dropped, 1);
    // One byte under the bound: a whole line is queued again (workerman checks the
    // buffer before appending, so the bound may be passed by one line).
    core.handle_written(T0, w, 1);
    assert_eq!(send(&mut core, w, &worker_line("")), vec![tx(w, &empty)]);
    assert!(send(&mut core, w, &worker_line("")).is_empty());
    assert_eq!(core.stats().lines_dropped, 2);
    core.handle_written(T0, w, 2 * line_len - 1);
    assert_eq!(send(&mut core, w, &worker_line("")), vec![tx(w, &empty)]);
}

/// Property: whatever the registrations, departures and read splits, every worker's
/// last list, read back by the worker-side decoder, is the model's: addresses of live
/// gateways in first-registration order, first occurrence of each kept.
#[test]
fn broadcast_always_matches_the_model() {
    fn prop(ops: Vec<(u8, u8, u8)>, split: u8) -> TestResult {
        let mut core = core_with("");
        let w = connect(&mut core);
        send(&mut core, w, &worker_line(""));
        let mut gateways: Vec<(PeerId, String)> = Vec::new(); // model, registration order
        let mut last: Option<Vec<String>> = Some(Vec::new());
        let chunk = usize::from(split % 7) + 1;
        for (kind, slot, address) in ops {
            if kind % 3 == 0 && !gateways.is_empty() {
                let (id, _) = gateways.remove(usize::from(slot) % gateways.len());
                core.handle_closed(T0, id);
            } else {
                let address = format!("10.0.0.{}:2900", address % 4);
                let id = connect(&mut core);
                let line = format!("{}\n", gateway_line(&address, ""));
                for piece in line.as_bytes().chunks(chunk) {
                    core.handle_bytes(T0, id, piece);
                }
                gateways.push((id, address));
            }
            for action in drain(&mut core) {
                let Action::Transmit { to, bytes } = action else {
                    return TestResult::error("unexpected close");
                };
                if to != w || bytes.last() != Some(&b'\n') {
                    return TestResult::error("broadcast to the wrong place");
                }
                match decode_from_register(&bytes[..bytes.len() - 1]) {
                    Ok(FromRegister::BroadcastAddresses(list)) => last = Some(list),
                    _ => return TestResult::error("undecodable broadcast"),
                }
            }
            let mut model: Vec<String> = Vec::new();
            for (_, address) in &gateways {
                if !model.contains(address) {
                    model.push(address.clone());
                }
            }
            if last.as_ref() != Some(&model) || core.addresses() != model {
                return TestResult::failed();
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(u8, u8, u8)>, u8) -> TestResult);
}

/// Property: any mix of connects, registrations, garbage, partial and over-long lines,
/// flushes, timeouts and closes, read in any split, under small bounds, keeps the core's
/// invariants (checked by [`Checked`] after every input) and ends with empty registries
/// once every connection is gone.
#[test]
fn random_inputs_keep_the_invariants() {
    fn prop(ops: Vec<(u8, u8, u8)>) -> bool {
        let mut config = RegisterConfig::new("k");
        config.line_bytes_max = 96;
        config.connections_max = 6;
        config.unregistered_input_bytes_max = 200;
        config.pending_bytes_max = 150;
        let mut core = Checked::new(config);
        let mut now = T0;
        let mut open: Vec<PeerId> = Vec::new();
        for (kind, slot, arg) in ops {
            let target = (!open.is_empty()).then(|| open[usize::from(slot) % open.len()]);
            let line = match arg % 6 {
                0 => gateway_line(&format!("10.0.0.{}:2900", arg % 3), "k"),
                1 => worker_line("k"),
                2 => worker_line("wrong"),
                3 => "{\"event\":\"ping\"}".to_owned(),
                4 => "not json".to_owned(),
                _ => "x".repeat(usize::from(arg)),
            };
            match (kind % 7, target) {
                (0, _) | (_, None) => {
                    if let Ok(id) = core.handle_connected(now, peer()) {
                        open.push(id);
                    }
                }
                (1 | 2, Some(id)) => {
                    let wire = format!("{line}\n");
                    for piece in wire.as_bytes().chunks(usize::from(slot % 9) + 1) {
                        core.handle_bytes(now, id, piece);
                    }
                }
                (3, Some(id)) => core.handle_bytes(now, id, &line.as_bytes()[..line.len() / 2]),
                (4, Some(id)) => core.handle_written(now, id, usize::from(arg)),
                (5, Some(id)) => {
                    open.retain(|o| *o != id);
                    core.handle_closed(now, id);
                }
                (_, Some(_)) => {
                    now += Duration::from_millis(u64::from(arg) * 100);
                    core.handle_timeout(now);
                }
            }
            drain(&mut core);
        }
        for id in open {
            core.handle_closed(now, id);
        }
        core.connection_count() == 0 && core.addresses().is_empty() && core.workers().is_empty()
    }
    QuickCheck::new()
        .tests(500)
        .quickcheck(prop as fn(Vec<(u8, u8, u8)>) -> bool);
}

#[test]
fn the_register_counts_the_connections_it_closes_and_keeps_its_config() {
    let mut config = RegisterConfig::new("k");
    config.connections_max = 7;
    let mut core = Checked::new(config);
    assert_eq!(core.config().secret_key, "k");
    assert_eq!(core.config().connections_max, 7);
    // A bad request and a first-line timeout: closed by the register, counted.
    let bad = connect(&mut core);
    send(&mut core, bad, "nonsense");
    let silent = core.handle_connected(T0, peer()).expect("accepted");
    core.handle_timeout(Duration::from_secs(10));
    assert_eq!(
        drain(&mut core),
        vec![close(silent, CloseReason::FirstLineTimeout)]
    );
    assert_eq!(core.stats().connections_closed_by_register, 2);
    // A peer that goes away by itself is not the register's close.
    let leaving = connect(&mut core);
    core.handle_closed(T0, leaving);
    core.handle_closed(T0, bad);
    core.handle_closed(T0, silent);
    assert_eq!(core.stats().connections_closed_by_register, 2);
    assert_eq!(core.connection_count(), 0);
}
