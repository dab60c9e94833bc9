//! A business worker answers a batch of events with few writes: the replies to every event
//! of one read leave its link in one vectored write, not one syscall each (issue #8: the
//! echo path's cost was the worker's per-event writes and wake-ups).
//!
//! A fake register and a fake gateway on 127.0.0.1 drive a real instance running
//! `echo.wasm`; the worker's network is TokioNet wrapped to count the writes on each
//! stream.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatewayworker::business::{self, BusinessSettings};
use gatewayworker::net::{Net, NetListener, NetStream, TokioNet, TokioStream};
use gatewayworker::protocol::frame::{Command, Frame, Header};
use gatewayworker::wasm::{PluginSlot, WasmHost};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::common::TestLink;

/// Events sent to the worker in one write.
const BATCH: usize = 40;

/// TokioNet, counting every vectored write of every stream it connects.
#[derive(Clone, Default)]
struct CountingNet {
    writes: Arc<AtomicUsize>,
}

struct CountingStream {
    inner: TokioStream,
    writes: Arc<AtomicUsize>,
}

impl Net for CountingNet {
    type Stream = CountingStream;
    type Listener = NoListener;

    async fn bind(&self, _addr: SocketAddr, _reuse_port: bool) -> io::Result<NoListener> {
        Err(io::Error::other("the worker never listens"))
    }

    async fn connect(&self, addr: &str) -> io::Result<CountingStream> {
        Ok(CountingStream {
            inner: TokioNet.connect(addr).await?,
            writes: self.writes.clone(),
        })
    }
}

/// The worker never listens; `bind` fails before one could exist.
struct NoListener;

impl NetListener for NoListener {
    type Stream = CountingStream;

    async fn accept(&mut self) -> io::Result<(CountingStream, SocketAddr)> {
        std::future::pending().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Err(io::Error::other("no listener"))
    }
}

impl NetStream for CountingStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_read_ready(cx)
    }
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.try_read(buf)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_write_ready(cx)
    }
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.try_write_vectored(bufs)
    }
    async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
}

fn guest(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("wasm-workers/dist/{name}.wasm"))
}

fn echo_wasm() -> PathBuf {
    guest("echo")
}

fn message_event(gateway_port: u16, cid: u32, body: &[u8]) -> Frame {
    let mut header = Header::new(Command::OnMessage);
    header.local_ip = "127.0.0.1".parse().unwrap();
    header.local_port = gateway_port;
    header.connection_id = cid;
    header.flag = 1;
    Frame::new(header, Bytes::new(), Bytes::copy_from_slice(body))
}

/// Plays the register (announcing `gateway` as the only gateway) and the gateway: accepts
/// the worker's link and its WORKER_CONNECT, then waits for the worker to settle.
async fn accept_worker_link(register: TcpListener, gateway: TcpListener) -> TestLink {
    let gateway_port = gateway.local_addr().unwrap().port();
    let (reg, _) = register.accept().await.unwrap();
    let mut reg = BufReader::new(reg);
    let mut line = String::new();
    reg.read_line(&mut line).await.unwrap();
    let list = format!(
        "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
    );
    reg.get_mut().write_all(list.as_bytes()).await.unwrap();
    let (stream, _) = gateway.accept().await.unwrap();
    let mut link = TestLink::over(stream);
    let hello = link.next_frame().await;
    assert_eq!(hello.header.cmd, Command::WorkerConnect);
    tokio::time::sleep(Duration::from_millis(100)).await;
    link
}

/// Runs one business worker instance of `wasm` over `net` (with the production settings:
/// an epoch tick every 10 ms, at which a long event's host flushes ready replies) against
/// a fake register and gateway, and `script` on the gateway's side of the link (its public
/// port given); stops the worker after it. The worker runs on the test's thread, the fake
/// peers on a runtime thread of their own: a guest computing blocks its thread, as it
/// would in production, where the gateway is another process.
fn with_worker<N, F, Fut>(net: N, wasm: PathBuf, script: F)
where
    N: Net,
    F: FnOnce(TestLink, u16) -> Fut + Send + 'static,
    Fut: Future<Output = TestLink> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let register_addr = register.local_addr().unwrap().to_string();
        let gateway_port = gateway.local_addr().unwrap().port();
        let settings = BusinessSettings::new("batch", 1, vec![register_addr], &wasm);
        assert!(
            settings.host.epoch_deadline.is_some(),
            "production settings: an epoch ticker"
        );
        let host = WasmHost::new(settings.host.clone()).unwrap();
        let slot = PluginSlot::from_file(&host, &wasm).unwrap();
        let (stop, stopped) = watch::channel(false);
        let worker = business::run_instance(net, host, slot, settings, 0, stopped, || 0);
        let script = tokio::spawn(async move {
            let link = accept_worker_link(register, gateway).await;
            let link = script(link, gateway_port).await;
            let _ = stop.send(true);
            link
        });
        // The link stays open until the worker has stopped.
        let (_, link) = timeout(Duration::from_secs(20), async {
            tokio::join!(worker, script)
        })
        .await
        .expect("the exchange finished");
        link.expect("the script ran to its end");
    });
}

#[test]
fn replies_to_one_read_of_events_leave_in_one_write() {
    let net = CountingNet::default();
    let writes = net.writes.clone();
    with_worker(net, echo_wasm(), |mut link, gateway_port| async move {
        // The worker's start-up writes are done: count from here.
        let before = writes.load(Ordering::SeqCst);
        let mut batch = BytesMut::new();
        for i in 0..BATCH as u32 {
            message_event(gateway_port, i + 1, format!("m{i}").as_bytes()).encode(&mut batch);
        }
        link.send_raw(&batch).await;
        for i in 0..BATCH as u32 {
            let reply = link.next_frame().await;
            assert_eq!(reply.header.cmd, Command::SendToOne);
            assert_eq!(reply.header.connection_id, i + 1, "replies in event order");
            assert_eq!(&reply.body[..], format!("m{i}").as_bytes());
        }
        let used = writes.load(Ordering::SeqCst) - before;
        // One write carries every reply; allow a second in case the kernel split the
        // batch of events across two reads. One write per event would be 40.
        assert!(
            (1..=2).contains(&used),
            "{BATCH} replies took {used} writes"
        );
        link
    });
}

/// The flip side of holding replies for a batch: an event that runs long (here `spin`,
/// stopped by its fuel limit) must not hold the replies to the events before it for its
/// whole run. They leave at its first epoch tick (the host's epoch callback flushes).
#[test]
fn a_long_event_holds_earlier_replies_for_one_epoch_tick_at_most() {
    with_worker(
        TokioNet,
        guest("spin"),
        |mut link, gateway_port| async move {
            // One read: a short event, the long one, another short one.
            let mut batch = BytesMut::new();
            message_event(gateway_port, 1, b"a").encode(&mut batch);
            message_event(gateway_port, 2, b"spin").encode(&mut batch);
            message_event(gateway_port, 3, b"b").encode(&mut batch);
            let sent = std::time::Instant::now();
            link.send_raw(&batch).await;
            let first = link.next_frame().await;
            let first_at = sent.elapsed();
            assert_eq!(first.header.connection_id, 1);
            assert_eq!(&first.body[..], b"a#1");
            let last = link.next_frame().await;
            let last_at = sent.elapsed();
            assert_eq!(last.header.connection_id, 3, "the spin event has no reply");
            // `b` comes after the whole spin; `a` after at most its first epoch tick.
            assert!(
                first_at * 3 < last_at,
                "the reply before the long event took {first_at:?}, the one after it {last_at:?}"
            );
            link
        },
    );
}

/// The running event's own frames are not part of what the driver writes while the event
/// runs (an event's effects are all-or-nothing): `probe.wasm` answers a short event, then
/// a long one sends to its client, sleeps 300 ms (the driver writes meanwhile) and replies.
/// The short event's reply leaves during the sleep; the long event's send leaves with its
/// reply, at its end.
#[test]
fn a_long_events_own_sends_leave_at_its_end() {
    with_worker(
        TokioNet,
        guest("probe"),
        |mut link, gateway_port| async move {
            let mut batch = BytesMut::new();
            let short = br#"{"op":"echo","args":{"data":"a"},"id":1}"#;
            let long = br#"{"op":"multi","args":{"ops":[{"op":"sendToCurrentClient","args":{"message":"early"}},{"op":"sleep","args":{"ms":300}}]},"id":2}"#;
            message_event(gateway_port, 1, short).encode(&mut batch);
            message_event(gateway_port, 2, long).encode(&mut batch);
            let sent = std::time::Instant::now();
            link.send_raw(&batch).await;
            let first = link.next_frame().await;
            assert_eq!(first.header.connection_id, 1);
            assert_eq!(&first.body[..], br#"{"id":1,"ok":true,"result":"a"}"#);
            let early = link.next_frame().await;
            let early_at = sent.elapsed();
            assert_eq!(early.header.connection_id, 2);
            assert_eq!(&early.body[..], b"early");
            // Staged until the event's end, which is after its 300 ms sleep.
            assert!(
                early_at >= Duration::from_millis(300),
                "the long event's send left after {early_at:?}, before the event ended"
            );
            let reply = link.next_frame().await;
            assert_eq!(reply.header.connection_id, 2);
            assert!(reply.body.starts_with(br#"{"id":2,"ok":true,"#));
            link
        },
    );
}
