//! Memory comes back after a burst: the real `gateway` and `worker` processes take a
//! backlog of megabytes (clients that stop reading; a gateway that stops reading its worker
//! link; events coming in faster than the worker's business code runs them), and once it
//! has drained their resident size (`VmRSS` in `/proc/<pid>/status`) returns to within 10%
//! of what it was before, within 10 s (issue 18, item 4).
//!
//! Bounded in bytes (tens of MB over loopback) and time (every wait has a deadline); the
//! RSS is polled, so a loaded machine only makes the test take longer, never fail, as long
//! as the memory does come back. Linux only (`/proc`); the allocator trim it checks is
//! glibc's. The tests are `#[ignore]`d in the parallel run and run alone by `scripts/test`
//! (`cargo test --test e2e cli::memory -- --ignored --test-threads 1`): tens of MB queued on
//! loopback sockets put the kernel's TCP memory under pressure, and it then resets other
//! tests' closing connections (seen as ECONNRESET in the demo page test).
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::thread::JoinHandle;

use gatewayworker::protocol::frame::{Command, FrameDecoder, Header, FLAG_BODY_IS_SCALAR};

use super::*;

/// The bound of the issue: back within 10% of the pre-burst figure...
const RETURN_RATIO: f64 = 1.10;
/// ... plus this slack for small absolute figures (a few pages of code and allocator
/// metadata first touched by the burst's paths: drop logging, the trimmer thread's stack),
/// in KiB.
const SLACK_KIB: u64 = 1024;
/// ... within this time of the backlog draining.
const RETURN_TIME: Duration = Duration::from_secs(10);
/// Message size of the bursts: the issue's 4 KiB.
const MESSAGE: usize = 4096;

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The RSS once it has settled: the least of a few samples over half a second (a sample
/// can catch a transient allocation).
fn settled_rss_kib(pid: u32) -> u64 {
    let mut least = u64::MAX;
    for _ in 0..5 {
        least = least.min(rss_kib(pid).0);
        std::thread::sleep(Duration::from_millis(100));
    }
    least
}

/// Polls the RSS of `pid` until it is back within the bound of `before`; the last figure
/// and how long after `drained` it was seen, or `None` with the last figure when
/// [`RETURN_TIME`] passed since `drained` (the last byte of the backlog read).
fn wait_for_return(pid: u32, before: u64, drained: Instant) -> (u64, Option<Duration>) {
    let bound = (before as f64 * RETURN_RATIO) as u64 + SLACK_KIB;
    loop {
        let (now, _) = rss_kib(pid);
        if now <= bound {
            return (now, Some(drained.elapsed()));
        }
        if drained.elapsed() > RETURN_TIME {
            return (now, None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `stream` until nothing came for `quiet` (or it closed); the bytes read and when
/// the last of them came.
fn read_until_quiet(stream: &mut TcpStream, quiet: Duration) -> (usize, Instant) {
    stream.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut total, mut last) = (0, Instant::now());
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (total, last),
            Ok(n) => (total, last) = (total + n, Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (total, last)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads whole frames from `stream` into `buf` until one of command `cmd` is complete;
/// its header.
fn read_frame_of(stream: &mut TcpStream, buf: &mut BytesMut, cmd: Command) -> Header {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut decoder = FrameDecoder::default();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(frame) = decoder.decode(buf).expect("a valid frame") {
            if frame.header.cmd == cmd {
                return frame.header;
            }
        }
        let n = stream.read(&mut chunk).expect("frame within WAIT");
        assert!(n > 0, "peer closed while a {cmd:?} frame was awaited");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn encode(header: &Header, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    frame::encode_frame(&mut out, header, b"", body);
    out
}

/// A worker link's burst: `per_client` bytes of SEND_TO_ONE frames of [`MESSAGE`] bytes to
/// each of `clients`, written by a thread of its own (the gateway may pace its reading).
fn send_burst(mut link: TcpStream, clients: Vec<u32>, per_client: usize) -> JoinHandle<TcpStream> {
    std::thread::spawn(move || {
        let payload = vec![b'x'; MESSAGE - 1];
        let mut header = Header::new(Command::SendToOne);
        header.flag = FLAG_BODY_IS_SCALAR;
        for _ in 0..per_client / MESSAGE {
            let mut round = BytesMut::new();
            for &cid in &clients {
                header.connection_id = cid;
                round.extend_from_slice(&encode(&header, &payload));
            }
            link.write_all(&round).unwrap();
        }
        link
    })
}

/// A gateway whose clients stop reading while their worker sends each of them more than
/// its send buffer bound (16 clients × 4 MB offered, each buffer bounded at 1 MB), then read
/// it all: the gateway's RSS returns to within 10% of its pre-burst figure within 10 s.
#[test]
#[ignore = "run alone by scripts/test (its bursts fill loopback socket buffers, which can reset other tests' connections)"]
fn gateway_memory_returns_after_a_burst_to_slow_clients_drained() {
    const CLIENTS: usize = 16;
    let (public, lan, register) = (free_port(), free_port(), free_port());
    let mut gateway = start_gateway(public, lan, register, &["--count", "1"]);
    let pid = gateway.child.id();
    let mut link = worker_link(lan, "");
    // Let the link's WORKER_CONNECT land before the clients come.
    std::thread::sleep(Duration::from_millis(100));
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| TcpStream::connect(("127.0.0.1", public)).unwrap())
        .collect();
    let mut input = BytesMut::new();
    let ids: Vec<u32> = (0..CLIENTS)
        .map(|_| read_frame_of(&mut link, &mut input, Command::OnConnect).connection_id)
        .collect();

    // Warm-up: every path of the burst runs once (queues past their bound, drops, their
    // log line), on a small scale: what it leaves is part of the baseline.
    let small = send_burst(link.try_clone().unwrap(), ids[..1].to_vec(), 2 << 20);
    drop(small.join().unwrap());
    read_until_quiet(&mut clients[0], Duration::from_millis(500));
    std::thread::sleep(Duration::from_secs(2));
    let before = settled_rss_kib(pid);

    // The burst: nobody reads until the link has written it all (or 10 s passed, if the
    // gateway paces its reading to the clients). The gateway holds up to 1 MB per client;
    // its sockets take part of that over the next second (kernel memory: not in its RSS).
    let burst = send_burst(link.try_clone().unwrap(), ids.clone(), 4 << 20);
    let deadline = Instant::now() + WAIT;
    while !burst.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reading_from = Instant::now();
    let readers: Vec<JoinHandle<(usize, Instant)>> = clients
        .into_iter()
        .map(|mut client| {
            std::thread::spawn(move || read_until_quiet(&mut client, Duration::from_secs(2)))
        })
        .collect();
    let (mut received, mut drained) = (0, reading_from);
    for reader in readers {
        let (bytes, last) = reader.join().unwrap();
        received += bytes;
        drained = drained.max(last);
    }
    burst.join().unwrap();
    let (_, peak) = rss_kib(pid);
    assert!(
        received >= CLIENTS * 1_000_000,
        "the clients got {received} bytes: the burst did not fill their buffers"
    );
    assert!(
        peak > before + (CLIENTS as u64 * 512),
        "the burst did not take memory (RSS {before} KiB, peak {peak} KiB): the test proves nothing"
    );

    let (after, took) = wait_for_return(pid, before, drained);
    eprintln!(
        "gateway RSS: before {before} KiB, peak {peak} KiB, after {after} KiB \
         ({took:?} after the clients drained)"
    );
    assert!(
        took.is_some(),
        "gateway RSS did not come back: before {before} KiB, peak {peak} KiB, {after} KiB \
         {RETURN_TIME:?} after the backlog drained"
    );
    assert_eq!(gateway.terminate().code(), Some(0));
}

/// A real `worker` process (one instance of `guest` from wasm-workers/dist, metrics on)
/// whose register and gateway the test plays: it is linked to the test's gateway socket.
struct PlayedWorker {
    worker: Server,
    pid: u32,
    /// The gateway's end of the worker's link.
    link: TcpStream,
    gateway_port: u16,
    metrics: SocketAddr,
    /// The register's end of its link, kept open.
    _register: TcpStream,
}

fn start_played_worker(guest: &str) -> PlayedWorker {
    let register = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut worker = Server::start(
        bin()
            .args(["worker", "--wasm"])
            .arg(format!(
                "{}/wasm-workers/dist/{guest}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .args(["--register", &register.local_addr().unwrap().to_string()])
            .args(["--metrics", &metrics.to_string()]),
    );
    worker.wait_for("business worker ready");
    let pid = worker.child.id();
    let (mut reg, _) = register.accept().unwrap();
    let mut line = [0u8; 256];
    let _ = reg.read(&mut line).unwrap();
    let broadcast = format!(
        "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
    );
    reg.write_all(broadcast.as_bytes()).unwrap();
    let (mut link, _) = gateway.accept().unwrap();
    let mut input = BytesMut::new();
    read_frame_of(&mut link, &mut input, Command::WorkerConnect);
    PlayedWorker {
        worker,
        pid,
        link,
        gateway_port,
        metrics,
        _register: reg,
    }
}

/// `count` ON_MESSAGE frames from the played gateway, client connection ids cycling
/// through `1..=clients`, each with `body` and the serialized session `session` (none when
/// empty).
fn message_events(
    gateway_port: u16,
    count: usize,
    clients: u32,
    session: &[u8],
    body: &[u8],
) -> BytesMut {
    let mut header = Header::new(Command::OnMessage);
    header.local_ip = std::net::Ipv4Addr::LOCALHOST;
    header.local_port = gateway_port;
    header.flag = FLAG_BODY_IS_SCALAR;
    let mut all = BytesMut::new();
    for i in 0..count {
        header.connection_id = 1 + (i as u32) % clients.max(1);
        frame::encode_frame(&mut all, &header, session, body);
    }
    all
}

/// Events the worker's instance 0 has run so far, and its whole metrics page.
fn events_ok(metrics: SocketAddr) -> (usize, String) {
    let response = http_get(metrics, "/metrics");
    let ok = response
        .lines()
        .find_map(|l| {
            l.strip_prefix("gatewayworker_worker_events_total{instance=\"0\",result=\"ok\"} ")
        })
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (ok, response)
}

/// How long a test waits for the worker to run a burst's events (a loaded host runs the
/// guest slowly).
const EVENTS_WAIT: Duration = Duration::from_secs(60);

/// Waits ([`EVENTS_WAIT`] at most) until the worker has run `n` events; its metrics then.
fn events_done(metrics: SocketAddr, n: usize) -> String {
    let deadline = Instant::now() + EVENTS_WAIT;
    loop {
        let (ok, response) = events_ok(metrics);
        if ok >= n {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "{ok} of {n} events run in {EVENTS_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A worker (the real binary, echo guest) whose gateway stops reading its link: the echoes
/// fill the link's queue to its 10 MB bound (the rest is dropped and counted); then the
/// gateway reads it all. The worker's RSS returns to within 10% of its pre-burst figure
/// within 10 s.
#[test]
#[ignore = "run alone by scripts/test (its bursts fill loopback socket buffers, which can reset other tests' connections)"]
fn worker_memory_returns_after_a_stalled_gateway_drained() {
    let PlayedWorker {
        mut worker,
        pid,
        mut link,
        gateway_port,
        metrics,
        ..
    } = start_played_worker("echo.wasm");
    let events = |count: usize| message_events(gateway_port, count, 1, b"", &[b'x'; MESSAGE]);

    // Warm-up: the echo path at full speed, drained at once (1 MB).
    link.write_all(&events(256)).unwrap();
    events_done(metrics, 256);
    let (echoed, _) = read_until_quiet(&mut link, Duration::from_millis(500));
    assert!(echoed >= 256 * MESSAGE, "warm-up echoes: {echoed} bytes");
    std::thread::sleep(Duration::from_secs(2));
    let before = settled_rss_kib(pid);

    // The stall: 24 MB of events and no reading; the echoes queue up to the link's bound.
    const BURST: usize = 6144;
    link.set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    link.write_all(&events(BURST)).unwrap();
    let response = events_done(metrics, 256 + BURST);
    let dropped = response
        .lines()
        .find_map(|l| l.strip_prefix("gatewayworker_worker_frames_dropped_total"))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "the link queue never reached its bound:\n{response}"
    );
    let (during, _) = rss_kib(pid);

    // The gateway resumes and reads it all.
    let (drained_bytes, drained) = read_until_quiet(&mut link, Duration::from_secs(2));
    assert!(
        drained_bytes >= 8 << 20,
        "drained only {drained_bytes} bytes"
    );
    let (_, peak) = rss_kib(pid);
    let peak = peak.max(during);
    assert!(
        during > before + (6 << 10),
        "the stall did not take memory (RSS {before} → {during} KiB): the test proves nothing"
    );

    let (after, took) = wait_for_return(pid, before, drained);
    eprintln!(
        "worker RSS: before {before} KiB, during {during} KiB, peak {peak} KiB, \
         after {after} KiB ({took:?} after the gateway drained)"
    );
    assert!(
        took.is_some(),
        "worker RSS did not come back: before {before} KiB, peak {peak} KiB, {after} KiB \
         {RETURN_TIME:?} after the backlog drained"
    );
    drop(link);
    assert_eq!(worker.terminate().code(), Some(0));
}

/// A worker (the real binary, probe guest) whose business code falls behind: 24 MB of
/// events carrying 4 KiB sessions come in at once, each of which sleeps 1 ms in the guest
/// (so the worker takes at most about 1,000 a second, whatever the host's speed), and they
/// wait in the worker (parked on the link behind their clients' running events, held by
/// the core, in the driver's queue) while the replies (small) are read as they come. Once
/// the last event has run, the worker's RSS returns to within 10% of its pre-burst figure
/// within 10 s (before the driver asked for a trim once its incoming queues drained:
/// 30.1 → 82.2 MB, still 82.2 MB 10 s later).
#[test]
#[ignore = "run alone by scripts/test (its bursts fill loopback socket buffers, which can reset other tests' connections)"]
fn worker_memory_returns_after_an_event_backlog_ran() {
    let PlayedWorker {
        mut worker,
        pid,
        link,
        gateway_port,
        metrics,
        ..
    } = start_played_worker("probe.wasm");
    // A session of 4 KiB (`$_SESSION['data']`), a small message; 16 clients.
    let mut session = format!("a:1:{{s:4:\"data\";s:{MESSAGE}:\"").into_bytes();
    session.extend_from_slice(&[b's'; MESSAGE]);
    session.extend_from_slice(b"\";}");
    let events = |count: usize| {
        message_events(
            gateway_port,
            count,
            16,
            &session,
            br#"{"op":"sleep","args":{"ms":1},"id":1}"#,
        )
    };

    // The echoes are read all along: the replies never back up.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (mut link, stop) = (link.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            link.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match link.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => total += n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(e) => panic!("read: {e}"),
                }
            }
            total
        })
    };
    let mut writer = link;
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    // Warm-up: the same path on a small scale (1 MB of events at once).
    const WARM_UP: usize = 256;
    writer.write_all(&events(WARM_UP)).unwrap();
    events_done(metrics, WARM_UP);
    std::thread::sleep(Duration::from_secs(2));
    let before = settled_rss_kib(pid);

    // The burst, written by a thread of its own (the worker stops reading while it holds
    // its bound); meanwhile the RSS is sampled.
    const BURST: usize = 6144;
    let burst = events(BURST);
    let burst_bytes = burst.len();
    let writing = std::thread::spawn(move || {
        writer.write_all(&burst).unwrap();
        writer
    });
    let deadline = Instant::now() + EVENTS_WAIT;
    let mut during = 0;
    let (response, drained) = loop {
        during = during.max(rss_kib(pid).0);
        let (ok, response) = events_ok(metrics);
        if ok >= WARM_UP + BURST {
            break (response, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "{ok} of {} events run in {EVENTS_WAIT:?}",
            WARM_UP + BURST
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let writer = writing.join().unwrap();
    let failed = response
        .lines()
        .find_map(|l| {
            l.strip_prefix("gatewayworker_worker_events_total{instance=\"0\",result=\"failed\"} ")
        })
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(failed, Some(0), "events failed:\n{response}");
    // `VmHWM` lags `VmRSS` (the kernel syncs its counters lazily): the larger of the two.
    let peak = rss_kib(pid).1.max(during);
    assert!(
        during > before + (6 << 10),
        "the burst did not take memory (RSS {before} → {during} KiB while {burst_bytes} \
         bytes of events ran): the test proves nothing"
    );

    let (after, took) = wait_for_return(pid, before, drained);
    eprintln!(
        "worker RSS: before {before} KiB, during {during} KiB, peak {peak} KiB, \
         after {after} KiB ({took:?} after the last event ran; {burst_bytes} bytes of events)"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let echoed = reader.join().unwrap();
    assert!(echoed > 0, "no echo came back");
    assert!(
        took.is_some(),
        "worker RSS did not come back: before {before} KiB, peak {peak} KiB, {after} KiB \
         {RETURN_TIME:?} after the backlog drained"
    );
    drop(writer);
    assert_eq!(worker.terminate().code(), Some(0));
}
