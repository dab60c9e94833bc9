//! Attacks from the hardening issue, replayed on real sockets against the real
//! `gatewayworker start` process (register, websocket gateway and the bundled echo.wasm
//! worker in one process): the process survives, the attacking connection is answered as
//! the spec says or closed, `gatewayworker_clients` returns to 0 and other clients keep
//! being served. Every wait is bounded by `WAIT`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// Longest a test waits for any one thing.
const WAIT: Duration = Duration::from_secs(10);

/// The gateway's bound on a handshake head (spec 6.3; `HANDSHAKE_SIZE_MAX`).
const HEAD_MAX: usize = 16 * 1024;

/// Retries `check` until it returns `Some` or `WAIT` passes.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `gatewayworker start` with a websocket gateway, echo.wasm and a metrics endpoint.
struct System {
    child: Child,
    public: u16,
    metrics: SocketAddr,
}

impl System {
    fn start() -> System {
        let (register, public, lan, metrics) = (free_port(), free_port(), free_port(), free_port());
        let wasm = concat!(env!("CARGO_MANIFEST_DIR"), "/wasm-workers/dist/echo.wasm");
        let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gatewayworker"))
            .env("RUST_LOG", "warn")
            .args(["start", "--wasm", wasm])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(["--listen", &format!("websocket://127.0.0.1:{public}")])
            .args(["--start-port", &lan.to_string()])
            .args(["--metrics", &metrics.to_string()])
            .arg("--no-demo")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut system = System {
            child,
            public,
            metrics,
        };
        // Ready once a client gets an echo (the gateway drops clients while no worker is
        // linked).
        eventually("an echo from a fresh system", || {
            system.assert_alive();
            WsClient::connect(public, "/", "").ok()?.echo(b"ready").ok()
        });
        system
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("gatewayworker died: {status}; stderr:\n{stderr}");
        }
    }

    /// The sum of `gatewayworker_clients` over the shards, once the endpoint answers.
    fn clients(&self) -> Option<u64> {
        let mut stream = TcpStream::connect_timeout(&self.metrics, WAIT).ok()?;
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let values: Vec<u64> = response
            .lines()
            .filter(|l| l.starts_with("gatewayworker_clients{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Waits until the gauge (published once a second) reads `n`.
    fn wait_clients(&self, n: u64) {
        eventually(&format!("gatewayworker_clients = {n}"), || {
            (self.clients()? == n).then_some(())
        });
    }

    /// The checks after every attack: alive, an old and a new client are served, and once
    /// they leave the client gauge is back to 0.
    fn assert_serves_after_attack(&mut self, survivor: WsClient) {
        self.assert_alive();
        let mut survivor = survivor;
        survivor
            .echo(b"still here")
            .expect("the earlier client is served");
        let mut fresh = WsClient::connect(self.public, "/", "").expect("a new client connects");
        fresh
            .echo(b"after the attack")
            .expect("a new client is served");
        drop(survivor);
        drop(fresh);
        self.wait_clients(0);
        self.assert_alive();
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw WebSocket client on a blocking socket.
struct WsClient {
    stream: TcpStream,
}

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn masked(payload: &[u8]) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[i & 3])
        .collect()
}

impl WsClient {
    /// Sends an upgrade request for `path` with `extra` header lines and reads the 101.
    fn connect(port: u16, path: &str, extra: &str) -> std::io::Result<WsClient> {
        let (stream, response) = WsClient::raw_handshake(port, path, extra)?;
        if !response.starts_with(b"HTTP/1.1 101 ") {
            return Err(std::io::Error::other(format!(
                "no 101: {:?}",
                String::from_utf8_lossy(&response)
            )));
        }
        Ok(WsClient { stream })
    }

    /// Sends an upgrade request and returns the socket and the response head (possibly
    /// empty if the gateway closed instead).
    fn raw_handshake(port: u16, path: &str, extra: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(WAIT))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        assert!(request.len() <= HEAD_MAX, "head of {} bytes", request.len());
        stream.write_all(request.as_bytes())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte)? {
                0 => break,
                _ => head.push(byte[0]),
            }
        }
        Ok((stream, head))
    }

    /// Sends a masked text frame and expects the same text back.
    fn echo(&mut self, text: &[u8]) -> std::io::Result<()> {
        assert!(text.len() <= 125);
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&MASK);
        frame.extend_from_slice(&masked(text));
        self.stream.write_all(&frame)?;
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head)?;
        let mut payload = vec![0u8; usize::from(head[1] & 0x7F)];
        self.stream.read_exact(&mut payload)?;
        if head[0] != 0x81 || payload != text {
            return Err(std::io::Error::other(format!(
                "unexpected {head:?} {payload:?}"
            )));
        }
        Ok(())
    }
}

/// Reads until the peer closes (true) or `WAIT` passes (false); returns what was read.
fn read_to_close(stream: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (true, all),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (true, all),
            Err(_) => return (false, all),
        }
    }
}

/// `a[][]…[]=1` with as many brackets as fit a head of `HEAD_MAX` with room to spare
/// (about 7,000, as in the issue).
fn deep_name(levels: usize) -> String {
    format!("a{}=1", "[]".repeat(levels))
}

/// Issue item 1: a query string nesting ~7,000 levels overflowed the shard thread's stack
/// (parse_str, then serialize and drop all recursed) and killed the process. PHP's
/// parse_str drops such a variable (max_input_nesting_level 64): the handshake is
/// answered with 101 and the client is an ordinary client.
#[test]
fn a_deeply_nested_query_string_does_not_kill_the_gateway() {
    let mut system = System::start();
    let survivor = WsClient::connect(system.public, "/", "").unwrap();
    let path = format!("/?{}&b=2", deep_name(7000));
    let (mut attacker, response) = WsClient::raw_handshake(system.public, &path, "").unwrap();
    assert!(
        response.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    let mut attacker_client = WsClient {
        stream: attacker.try_clone().unwrap(),
    };
    attacker_client
        .echo(b"attacker served")
        .expect("the attacker's connection works like any other");
    system.wait_clients(2);
    attacker.write_all(&[0x88, 0x80]).unwrap();
    attacker.write_all(&MASK).unwrap();
    let (closed, _) = read_to_close(&mut attacker);
    assert!(closed, "the gateway closes after a close frame");
    system.assert_serves_after_attack(survivor);
}

/// The same nesting in the Cookie header (spec 6.3: the cookie map is split on `;` and
/// never nests) and both at once, several times.
#[test]
fn a_deeply_nested_cookie_does_not_kill_the_gateway() {
    let mut system = System::start();
    let survivor = WsClient::connect(system.public, "/", "").unwrap();
    for path in ["/".to_owned(), format!("/?{}", deep_name(3000))] {
        let cookie = format!("Cookie: {}; x=1\r\n", deep_name(3000));
        let (mut attacker, response) =
            WsClient::raw_handshake(system.public, &path, &cookie).unwrap();
        assert!(response.starts_with(b"HTTP/1.1 101 "));
        system.wait_clients(2);
        drop(attacker.shutdown(std::net::Shutdown::Write));
        let (closed, _) = read_to_close(&mut attacker);
        assert!(closed);
    }
    system.assert_serves_after_attack(survivor);
}

/// Issue item 2: a 1-byte text fragment, then a continuation whose 64-bit length has the
/// top bit set. The length sum overflowed (a panic in the shard); now the connection
/// fails with close code 1002 (RFC 6455 5.2 forbids that bit).
#[test]
fn a_continuation_with_the_top_length_bit_is_closed_with_1002() {
    let mut system = System::start();
    let survivor = WsClient::connect(system.public, "/", "").unwrap();
    let mut attacker = WsClient::connect(system.public, "/", "").unwrap();
    system.wait_clients(2);
    let mut frames = vec![0x01, 0x81];
    frames.extend_from_slice(&MASK);
    frames.extend_from_slice(&masked(b"x"));
    frames.extend_from_slice(&[0x80, 0xFF]);
    frames.extend_from_slice(&[0xFF; 8]);
    frames.extend_from_slice(&MASK);
    attacker.stream.write_all(&frames).unwrap();
    let (closed, bytes) = read_to_close(&mut attacker.stream);
    assert!(closed, "the attacking connection is closed");
    assert_eq!(bytes, [0x88, 0x02, 0x03, 0xEA], "close frame with 1002");
    system.assert_serves_after_attack(survivor);
}
