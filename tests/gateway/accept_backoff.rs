//! Accept loops under a file-descriptor shortage: the real binary runs under
//! `prlimit --nofile`, the test opens connections past the limit and holds them, so every
//! accept fails with EMFILE while the listener stays readable. The loop must pause instead
//! of spinning, log a bounded number of lines, and serve again once fds are free.
//!
//! Skipped (with a message) where `prlimit` is missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest a test waits for any one thing.
const WAIT: Duration = Duration::from_secs(10);
/// Open files the server may have: its runtime, listeners and stdio, and a few clients.
const NOFILE: u32 = 24;
/// Connections the test opens: well past `NOFILE`.
const FLOOD: usize = 64;
/// How long the shortage lasts.
const SHORTAGE: Duration = Duration::from_secs(3);
/// Most lines about accepting during the shortage and its end (4.5 s): one when it
/// starts, one per 5 s report interval after (a spinning loop logs thousands).
const ACCEPT_LINES_MAX: usize = 2;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have_prlimit() -> bool {
    Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The binary under `prlimit --nofile=NOFILE`, with its stderr lines sent to a channel.
fn spawn_limited(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_gatewayworker"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn under prlimit");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn connect_when_up(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{addr} never came up: {e}"),
        }
    }
}

/// Floods `addr` past the fd limit for [`SHORTAGE`], drops the connections, and returns
/// the stderr lines about accepting logged meanwhile (and a little after).
fn shortage(addr: SocketAddr, log: &mpsc::Receiver<String>) -> Vec<String> {
    while log.try_recv().is_ok() {}
    let flood: Vec<TcpStream> = (0..FLOOD)
        .map(|_| TcpStream::connect(addr).expect("the backlog takes the connection"))
        .collect();
    let start = Instant::now();
    let mut lines = Vec::new();
    while start.elapsed() < SHORTAGE {
        if let Ok(line) = log.recv_timeout(Duration::from_millis(50)) {
            lines.push(line);
        }
    }
    drop(flood);
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(1500) {
        if let Ok(line) = log.recv_timeout(Duration::from_millis(50)) {
            lines.push(line);
        }
    }
    let accept: Vec<String> = lines
        .into_iter()
        .filter(|l| l.to_lowercase().contains("accept"))
        .collect();
    assert!(
        accept.iter().any(|l| l.contains("pausing")),
        "the shortage was reported:\n{}",
        accept.join("\n")
    );
    accept
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn register_accept_loop_backs_off_on_emfile_and_recovers() {
    if !have_prlimit() {
        eprintln!("prlimit not found; skipping");
        return;
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (child, log) = spawn_limited(&["register", "--listen", &listen]);
    let addr: SocketAddr = listen.parse().unwrap();
    drop(connect_when_up(addr));

    let accept = shortage(addr, &log);
    assert!(
        accept.len() <= ACCEPT_LINES_MAX,
        "{} lines about accepting:\n{}",
        accept.len(),
        accept[..accept.len().min(20)].join("\n")
    );

    // Fds are free again: a worker is served.
    let mut worker = connect_when_up(addr);
    worker.set_read_timeout(Some(WAIT)).unwrap();
    worker
        .write_all(b"{\"event\":\"worker_connect\",\"secret_key\":\"\"}\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = worker.read(&mut buf).expect("the register answers");
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("broadcast_addresses"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    stop(child);
}

#[test]
fn gateway_public_accept_loop_backs_off_on_emfile_and_recovers() {
    if !have_prlimit() {
        eprintln!("prlimit not found; skipping");
        return;
    }
    let public = free_port();
    let lan = free_port();
    let register = free_port();
    let listen = format!("text://127.0.0.1:{public}");
    let (child, log) = spawn_limited(&[
        "gateway",
        "--listen",
        &listen,
        "--lan-ip",
        "127.0.0.1",
        "--start-port",
        &lan.to_string(),
        "--register",
        &format!("127.0.0.1:{register}"),
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], public));
    drop(connect_when_up(addr));

    let accept = shortage(addr, &log);
    assert!(
        accept.len() <= ACCEPT_LINES_MAX,
        "{} lines about accepting:\n{}",
        accept.len(),
        accept[..accept.len().min(20)].join("\n")
    );

    // Fds are free again: a client is accepted and served (the gateway answers a
    // client's bytes by closing it when no worker is there; a connection that stays open
    // until then was accepted).
    let mut client = connect_when_up(addr);
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"hello\n").unwrap();
    let mut buf = [0u8; 64];
    let end = client.read(&mut buf);
    assert!(
        matches!(end, Ok(0)) || end.is_err() && !is_timeout(end.as_ref().unwrap_err()),
        "the gateway handled the client: {end:?}"
    );
    stop(child);
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
