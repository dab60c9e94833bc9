//! The register over real sockets on 127.0.0.1: plain TCP peers writing the lines a PHP
//! gateway and worker write, and, end to end, our gateway announcing itself to it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{start_gateway, WAIT};
use gatewayworker::register::driver::{start, RegisterSettings, RunningRegister};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start_register(tweak: impl FnOnce(&mut RegisterSettings)) -> RunningRegister {
    let mut settings = RegisterSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)), "");
    tweak(&mut settings);
    start(settings).expect("register starts")
}

/// A plain TCP peer of the register reading `\n`-terminated lines.
struct Peer {
    stream: TcpStream,
    input: Vec<u8>,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).await.expect("connect to register");
        Peer {
            stream,
            input: Vec::new(),
        }
    }

    async fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }

    /// The next line, with its `\n`.
    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.input.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=end).collect();
                return String::from_utf8(line).expect("utf-8 line");
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
                .await
                .expect("a line in time")
                .expect("read");
            assert!(
                n > 0,
                "closed while waiting for a line; got {:?}",
                self.input
            );
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    /// Everything until the register closes the connection.
    async fn rest(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.input);
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        rest
    }
}

fn list(addresses: &str) -> String {
    format!("{{\"event\":\"broadcast_addresses\",\"addresses\":{addresses}}}\n")
}

const WORKER_CONNECT: &str = "{\"event\":\"worker_connect\",\"secret_key\":\"\"}";

#[tokio::test]
async fn gateway_and_worker_lines_get_the_exact_broadcast() {
    let register = start_register(|_| {});
    let mut worker = Peer::connect(register.addr).await;
    worker.send(WORKER_CONNECT).await;
    assert_eq!(worker.line().await, list("[]"));

    let mut gateway = Peer::connect(register.addr).await;
    gateway
        .send("{\"event\":\"gateway_connect\", \"address\":\"10.0.0.5:2900\", \"secret_key\":\"\"}")
        .await;
    assert_eq!(worker.line().await, list("[\"10.0.0.5:2900\"]"));

    // A duplicate from another gateway, then a third address: PHP's object form.
    let mut dup = Peer::connect(register.addr).await;
    dup.send("{\"event\":\"gateway_connect\", \"address\":\"10.0.0.5:2900\", \"secret_key\":\"\"}")
        .await;
    assert_eq!(worker.line().await, list("[\"10.0.0.5:2900\"]"));
    let mut other = Peer::connect(register.addr).await;
    other
        .send("{\"event\":\"gateway_connect\", \"address\":\"10.0.0.5:2901\", \"secret_key\":\"\"}")
        .await;
    assert_eq!(
        worker.line().await,
        list("{\"0\":\"10.0.0.5:2900\",\"2\":\"10.0.0.5:2901\"}")
    );

    // The first gateway goes away: the workers hear it.
    drop(gateway);
    assert_eq!(
        worker.line().await,
        list("[\"10.0.0.5:2900\",\"10.0.0.5:2901\"]")
    );
    worker.send("{\"event\":\"ping\"}").await;
    register.shutdown().unwrap();
}

#[tokio::test]
async fn wrong_secret_is_closed_without_a_message() {
    let register = start_register(|s| s.core.secret_key = "k".to_owned());
    let mut worker = Peer::connect(register.addr).await;
    worker
        .send("{\"event\":\"worker_connect\",\"secret_key\":\"x\"}")
        .await;
    assert_eq!(worker.rest().await, b"");
    let mut good = Peer::connect(register.addr).await;
    good.send("{\"event\":\"worker_connect\",\"secret_key\":\"k\"}")
        .await;
    assert_eq!(good.line().await, list("[]"));
    register.shutdown().unwrap();
}

#[tokio::test]
async fn bad_request_gets_the_error_line_then_a_close() {
    let register = start_register(|_| {});
    let mut peer = Peer::connect(register.addr).await;
    peer.send("hello").await;
    assert_eq!(
        String::from_utf8(peer.rest().await).unwrap(),
        "Bad request for Register service. Request info(IP:127.0.0.1, Request Buffer:hello). \
         See http://doc2.workerman.net/register-auth-timeout.html\n"
    );
    register.shutdown().unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_first_line_timeout() {
    let register = start_register(|s| s.core.first_line_timeout = Duration::from_millis(200));
    let mut silent = Peer::connect(register.addr).await;
    let mut talking = Peer::connect(register.addr).await;
    talking.send("{\"event\":\"ping\"}").await;
    let started = std::time::Instant::now();
    assert_eq!(silent.rest().await, b"");
    assert!(started.elapsed() >= Duration::from_millis(100));
    // The one that spoke is still served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    talking.send(WORKER_CONNECT).await;
    assert_eq!(talking.line().await, list("[]"));
    register.shutdown().unwrap();
}

/// Our gateway announces its lan address to our register, and a worker asking the
/// register learns it; when the gateway stops, the worker hears the empty list.
#[tokio::test]
async fn our_gateway_registers_with_our_register() {
    let register = start_register(|_| {});
    let mut worker = Peer::connect(register.addr).await;
    worker.send(WORKER_CONNECT).await;
    assert_eq!(worker.line().await, list("[]"));

    let register_addr = register.addr.to_string();
    let gateway = start_gateway(1, move |s| s.core.register_addresses = vec![register_addr]);
    let lan = gateway.lan_addrs[0];
    assert_eq!(
        worker.line().await,
        list(&format!("[\"{lan}\"]")),
        "the gateway's lan address, as lanIp:lanPort"
    );
    gateway.shutdown().unwrap();
    assert_eq!(worker.line().await, list("[]"));
    register.shutdown().unwrap();
}

/// The gateway reads the register's lines through its core's line decoder: a line over
/// `FROM_REGISTER_LINE_MAX` (sent by a fake register, in pieces) makes the gateway close
/// that connection, and it connects and announces itself again a second later.
#[tokio::test]
async fn our_gateway_closes_a_register_that_sends_an_over_long_line_and_reconnects() {
    use gatewayworker::protocol::register::FROM_REGISTER_LINE_MAX;
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let register_addr = fake.local_addr().unwrap().to_string();
    let gateway = start_gateway(1, move |s| s.core.register_addresses = vec![register_addr]);
    let accept = || async {
        let (stream, _) = tokio::time::timeout(WAIT, fake.accept())
            .await
            .expect("the gateway connects in time")
            .unwrap();
        let mut peer = Peer {
            stream,
            input: Vec::new(),
        };
        let line = peer.line().await;
        assert!(line.contains("\"gateway_connect\""), "{line}");
        peer
    };
    let mut register = accept().await;
    // A line of exactly the bound is read (and ignored): the connection stays.
    let mut line = vec![b'x'; FROM_REGISTER_LINE_MAX - 1];
    line.push(b'\n');
    register.stream.write_all(&line).await.unwrap();
    // Over the bound, without a `\n`: the gateway closes the connection.
    for piece in vec![b'y'; FROM_REGISTER_LINE_MAX + 1].chunks(64 * 1024) {
        if register.stream.write_all(piece).await.is_err() {
            break;
        }
    }
    // Closed without a flush: an end of stream, or a reset when our bytes were unread.
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(WAIT, register.stream.read(&mut buf))
        .await
        .expect("the gateway closes in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the gateway sent bytes instead of closing: {read:?}"
    );
    let _again = accept().await;
    gateway.shutdown().unwrap();
}
