//! The register bounds the input held by connections that have not registered as a
//! gateway or worker, all together (`unregistered_input_bytes_max`), not only per line: in the
//! core, and through real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gatewayworker::register::driver::{self as register_driver, RegisterSettings};
use gatewayworker::register::{Action, CloseReason, PeerId, RegisterConfig, RegisterCore};

const WAIT: Duration = Duration::from_secs(10);

fn peer(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 9], port))
}

fn closes(core: &mut RegisterCore) -> Vec<(PeerId, CloseReason)> {
    let mut closed = Vec::new();
    while let Some(action) = core.poll_action() {
        if let Action::Close { id, reason, .. } = action {
            closed.push((id, reason));
        }
    }
    closed
}

#[test]
fn unregistered_input_is_bounded_as_a_whole_and_the_largest_holder_goes() {
    let mut config = RegisterConfig::new("");
    config.line_bytes_max = 1_000_000;
    config.unregistered_input_bytes_max = 100_000;
    let mut core = RegisterCore::new(config);
    let now = Duration::ZERO;

    // A registered worker's partial line does not count.
    let worker = core.handle_connected(now, peer(1)).unwrap();
    core.handle_bytes(
        now,
        worker,
        b"{\"event\":\"worker_connect\",\"secret_key\":\"\"}\n",
    );
    core.handle_bytes(now, worker, &[b'x'; 60_000]);
    assert_eq!(core.unregistered_input(), 0);

    // Ten silent connections each hold 9 000 bytes of a partial line (JSON whitespace, so
    // the line may still become a valid request): under the budget, and each far under
    // its own line bound.
    let chunk = [b' '; 9_000];
    let holders: Vec<PeerId> = (0..10)
        .map(|i| {
            let id = core.handle_connected(now, peer(100 + i)).unwrap();
            core.handle_bytes(now, id, &chunk);
            id
        })
        .collect();
    assert!(closes(&mut core).is_empty());
    assert!(core.unregistered_input() >= 90_000);
    assert!(core.unregistered_input() <= 100_000);

    // One more holder grows past the others and the total past the budget: the largest
    // holder is closed, and the total is back under the budget.
    let big = core.handle_connected(now, peer(200)).unwrap();
    core.handle_bytes(now, big, &[b' '; 20_000]);
    let closed = closes(&mut core);
    assert_eq!(closed, vec![(big, CloseReason::UnregisteredInputBudget)]);
    assert!(core.unregistered_input() <= 100_000);
    assert_eq!(core.stats().unregistered_input_closes, 1);

    // Registering moves a holder's buffer out of the budget; a close releases it.
    let before = core.unregistered_input();
    core.handle_bytes(
        now,
        holders[0],
        b"{\"event\":\"worker_connect\",\"secret_key\":\"\"}\n",
    );
    assert!(core.unregistered_input() < before);
    let before = core.unregistered_input();
    core.handle_closed(now, holders[1]);
    assert!(core.unregistered_input() < before);
    for id in &holders[2..] {
        core.handle_closed(now, *id);
    }
    core.handle_closed(now, holders[0]);
    core.handle_closed(now, big);
    assert_eq!(core.unregistered_input(), 0);
}

#[test]
fn unregistered_flood_through_sockets_is_cut_at_the_budget_and_workers_still_register() {
    let mut settings = RegisterSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)), "");
    settings.core.unregistered_input_bytes_max = 256 * 1024;
    let register = register_driver::start(settings).expect("register starts");

    // Eight connections each send 64 KiB of a line that never ends (512 KiB in all, twice
    // the budget), well under the 10 MiB line bound each.
    let mut flood: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(register.addr).unwrap())
        .collect();
    for stream in &mut flood {
        let _ = stream.write_all(&[b' '; 64 * 1024]);
    }
    // Some of them are closed by the register (silently); at most the budget's worth
    // (4 × 64 KiB) may stay open.
    let mut closed = 0;
    for stream in &mut flood {
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 16];
        match stream.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Ok(n) => panic!("the register wrote {n} bytes to an unregistered peer"),
            Err(_) => {}
        }
    }
    assert!(
        closed >= 4,
        "only {closed} of 8 flooding connections were closed"
    );

    // A worker still registers and is answered.
    let mut worker = TcpStream::connect(register.addr).unwrap();
    worker.set_read_timeout(Some(WAIT)).unwrap();
    worker
        .write_all(b"{\"event\":\"worker_connect\",\"secret_key\":\"\"}\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = worker.read(&mut buf).expect("the register answers");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("broadcast_addresses"));
    drop(flood);
    register.shutdown().unwrap();
}

#[test]
fn unregistered_input_exactly_at_the_budget_is_kept() {
    let now = Duration::ZERO;
    let holding = |budget: usize| {
        let mut config = RegisterConfig::new("");
        config.line_bytes_max = 1_000_000;
        config.unregistered_input_bytes_max = budget;
        let mut core = RegisterCore::new(config);
        let id = core.handle_connected(now, peer(1)).unwrap();
        core.handle_bytes(now, id, &[b' '; 5_000]);
        (core.unregistered_input(), closes(&mut core))
    };
    // What one silent connection holds after 5 000 bytes (its buffer's allocation).
    let (held, closed) = holding(1_000_000);
    assert!(held >= 5_000 && closed.is_empty());
    // A budget of exactly that keeps it; one byte less closes it.
    assert_eq!(holding(held), (held, vec![]));
    let (after, closed) = holding(held - 1);
    assert_eq!(
        closed,
        vec![(PeerId(1), CloseReason::UnregisteredInputBudget)]
    );
    assert_eq!(after, 0);
}
