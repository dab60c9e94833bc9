//! Pacing on real sockets (issue 18 item 2): a worker link that bursts more than a
//! client's send buffer is read at the pace of that client, so a client that stops reading
//! for a while and then catches up within `link_pause_max` loses nothing; one slower than
//! the bound falls back to drop-and-count and does not stall the other clients for good.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use gatewayworker::gateway::PublicProtocol;
use gatewayworker::protocol::frame::{Command, FLAG_BODY_IS_SCALAR};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Each message: 4 KiB of payload, a newline on the text protocol.
const MESSAGE: usize = 4096;
/// 16 MiB in all: far more than a client's 1 MB send buffer plus the kernel's socket
/// buffers of a client that does not read.
const BURST: usize = 4096;
/// How long the slow client does not read.
const STALL: Duration = Duration::from_millis(500);
/// Longest any phase of these tests may take (a loaded host included).
const DEADLINE: Duration = Duration::from_secs(60);

/// A text-protocol client and its connection id (from the worker's ON_CONNECT).
async fn text_client(addr: SocketAddr, worker: &mut TestLink) -> (TcpStream, u32) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    (stream, cid)
}

/// Reads until `expected` bytes arrived or nothing came for `quiet`; returns the count.
async fn read_until(stream: &mut TcpStream, expected: usize, quiet: Duration) -> usize {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    let started = Instant::now();
    while total < expected && started.elapsed() < DEADLINE {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => total += n,
        }
    }
    total
}

/// The worker sends `count` messages to `cid` (or to everybody with `None`) from a task
/// of its own: its writes block while the gateway does not read the link.
fn burst(
    mut worker: TestLink,
    cid: Option<u32>,
    count: usize,
) -> tokio::task::JoinHandle<TestLink> {
    tokio::spawn(async move {
        let body = vec![b'x'; MESSAGE];
        for _ in 0..count {
            match cid {
                Some(cid) => {
                    worker
                        .send(Command::SendToOne, cid, FLAG_BODY_IS_SCALAR, b"", &body)
                        .await
                }
                None => {
                    worker
                        .send(Command::SendToAll, 0, FLAG_BODY_IS_SCALAR, b"", &body)
                        .await
                }
            }
        }
        worker
    })
}

/// What a client that stalls for [`STALL`] (and, with `until_sent`, until the worker has
/// written the whole burst) and then reads everything receives of a [`BURST`] sent to it
/// alone, with `link_pause_max` as given.
async fn stalled_client_receives(link_pause_max: Duration, until_sent: bool) -> usize {
    let gateway = start_gateway(1, |s| {
        s.core.protocol = PublicProtocol::Text;
        s.core.link_pause_max = link_pause_max;
    });
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut client, cid) = text_client(gateway.public_addr, &mut worker).await;
    let mut sender = burst(worker, Some(cid), BURST);
    tokio::time::sleep(STALL).await;
    if until_sent {
        tokio::time::timeout(DEADLINE, &mut sender)
            .await
            .expect("the gateway takes the burst without the client reading")
            .unwrap();
    }
    let expected = BURST * (MESSAGE + 1);
    let received = read_until(&mut client, expected, Duration::from_secs(5)).await;
    if !sender.is_finished() {
        tokio::time::timeout(DEADLINE, sender)
            .await
            .expect("the burst is taken in time")
            .unwrap();
    }
    gateway.shutdown().unwrap();
    received / (MESSAGE + 1)
}

/// With pacing (a bound far above the stall), the gateway stops reading the worker link
/// while the client is over its high-water mark and resumes as it drains: every message
/// arrives.
#[tokio::test]
async fn a_client_that_catches_up_within_the_bound_loses_nothing() {
    let received = stalled_client_receives(Duration::from_secs(30), false).await;
    assert_eq!(received, BURST, "no message dropped");
}

/// The control: with pacing off (the original's policy) the gateway reads the whole burst
/// while the client stalls, overfills its send buffer, and most of it is dropped at the
/// bound.
#[tokio::test]
async fn without_pacing_the_same_burst_loses_messages() {
    let received = stalled_client_receives(Duration::ZERO, true).await;
    assert!(received < BURST / 2, "received {received} of {BURST}");
}

/// A client that never reads holds the link for at most the bound, then its messages
/// are dropped and counted while a client reading next to it gets the whole broadcast,
/// and the worker's burst completes.
#[tokio::test]
async fn a_client_slower_than_the_bound_does_not_stall_the_others() {
    let gateway = start_gateway(1, |s| {
        s.core.protocol = PublicProtocol::Text;
        // The default bound (1 s): the reader drains within it, the sleeper never does.
    });
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_sleeper, sleeper_id) = text_client(gateway.public_addr, &mut worker).await;
    let (mut reader, _) = text_client(gateway.public_addr, &mut worker).await;
    let started = Instant::now();
    let sender = burst(worker, None, BURST);
    let expected = BURST * (MESSAGE + 1);
    let received = read_until(&mut reader, expected, Duration::from_secs(10)).await;
    assert_eq!(received, expected, "the reading client gets every message");
    let worker = tokio::time::timeout(DEADLINE, sender)
        .await
        .expect("the burst completes")
        .unwrap();
    drop(worker);
    assert!(started.elapsed() < DEADLINE);
    let mut api = TestLink::connect(gateway.lan_addrs[0]).await;
    api.send(Command::IsOnline, sleeper_id, 0, b"", b"").await;
    assert_eq!(
        &api.next_reply().await[..],
        b"i:1;",
        "the sleeper stays connected"
    );
    gateway.shutdown().unwrap();
}
