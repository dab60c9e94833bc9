//! A business worker answers a batch of events with few writes: the replies to every event
//! of one read leave its link in one vectored write, not one syscall each (issue #8: the
//! echo path's cost was the worker's per-event writes and wake-ups).
//!
//! A fake register and a fake gateway on 127.0.0.1 drive a real instance running
//! `echo.wasm`; the worker's network is TokioNet wrapped to count the writes on each
//! stream.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatewayworker::net::{Net, NetListener, NetStream, TokioNet, TokioStream};
use gatewayworker::protocol::frame::{Command, Frame, FrameDecoder, Header};
use gatewayworker::wasm::{HostConfig, PluginSlot, WasmHost};
use gatewayworker::worker::business::{self, BusinessSettings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

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

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    let mut decoder = FrameDecoder::default();
    loop {
        if let Some(frame) = decoder.decode(buf).expect("valid frame") {
            return frame;
        }
        let n = stream.read_buf(buf).await.expect("read");
        assert!(n > 0, "worker closed the link");
    }
}

#[test]
fn replies_to_one_read_of_events_leave_in_one_write() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let register_addr = register.local_addr().unwrap().to_string();
        let gateway_port = gateway.local_addr().unwrap().port();

        let host = WasmHost::new(HostConfig::default()).unwrap();
        let slot = PluginSlot::from_file(&host, &echo_wasm()).unwrap();
        let settings = BusinessSettings::new("batch", 1, vec![register_addr], echo_wasm());
        let (stop, stopped) = watch::channel(false);
        let net = CountingNet::default();
        let writes = net.writes.clone();
        let worker = business::run_instance(net, host, slot, settings, 0, stopped, || 0);

        let script = async move {
            let (reg, _) = register.accept().await.unwrap();
            let mut reg = BufReader::new(reg);
            let mut line = String::new();
            reg.read_line(&mut line).await.unwrap();
            let list = format!(
                "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
            );
            reg.get_mut().write_all(list.as_bytes()).await.unwrap();
            let (mut link, _) = gateway.accept().await.unwrap();
            let mut buf = BytesMut::new();
            let hello = read_frame(&mut link, &mut buf).await;
            assert_eq!(hello.header.cmd, Command::WorkerConnect);
            // Let the worker settle (its start-up writes are done), then count.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = writes.load(Ordering::SeqCst);

            let mut batch = BytesMut::new();
            for i in 0..BATCH as u32 {
                message_event(gateway_port, i + 1, format!("m{i}").as_bytes()).encode(&mut batch);
            }
            link.write_all(&batch).await.unwrap();
            for i in 0..BATCH as u32 {
                let reply = read_frame(&mut link, &mut buf).await;
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
            let _ = stop.send(true);
            link
        };
        let (_, _link) = timeout(Duration::from_secs(10), async {
            tokio::join!(worker, script)
        })
        .await
        .expect("the exchange finished");
    });
}

/// The flip side of holding replies for a batch: an event that runs long (here `spin`,
/// stopped by its fuel limit after ten fuel slices) must not hold the replies to the
/// events before it for its whole run. They leave at its first fuel yield.
#[test]
fn a_long_event_holds_earlier_replies_for_one_fuel_slice_at_most() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let register_addr = register.local_addr().unwrap().to_string();
        let gateway_port = gateway.local_addr().unwrap().port();

        let spin = guest("spin");
        // The production settings: long events yield every 10M fuel.
        let settings = BusinessSettings::new("slices", 1, vec![register_addr], &spin);
        assert!(settings.host.fuel_yield_interval.is_some());
        let host = WasmHost::new(settings.host.clone()).unwrap();
        let slot = PluginSlot::from_file(&host, &spin).unwrap();
        let (stop, stopped) = watch::channel(false);
        let worker =
            business::run_instance(TokioNet, host, slot, settings, 0, stopped, || 0);

        let script = async move {
            let (reg, _) = register.accept().await.unwrap();
            let mut reg = BufReader::new(reg);
            let mut line = String::new();
            reg.read_line(&mut line).await.unwrap();
            let list = format!(
                "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
            );
            reg.get_mut().write_all(list.as_bytes()).await.unwrap();
            let (mut link, _) = gateway.accept().await.unwrap();
            let mut buf = BytesMut::new();
            read_frame(&mut link, &mut buf).await;
            tokio::time::sleep(Duration::from_millis(100)).await;

            // One read: a short event, the long one, another short one.
            let mut batch = BytesMut::new();
            message_event(gateway_port, 1, b"a").encode(&mut batch);
            message_event(gateway_port, 2, b"spin").encode(&mut batch);
            message_event(gateway_port, 3, b"b").encode(&mut batch);
            let sent = std::time::Instant::now();
            link.write_all(&batch).await.unwrap();
            let first = read_frame(&mut link, &mut buf).await;
            let first_at = sent.elapsed();
            assert_eq!(first.header.connection_id, 1);
            assert_eq!(&first.body[..], b"a#1");
            let last = read_frame(&mut link, &mut buf).await;
            let last_at = sent.elapsed();
            assert_eq!(last.header.connection_id, 3, "the spin event has no reply");
            // `b` comes after the whole spin (ten slices); `a` after at most its first.
            assert!(
                first_at * 3 < last_at,
                "the reply before the long event took {first_at:?}, the one after it {last_at:?}"
            );
            let _ = stop.send(true);
            link
        };
        let (_, _link) = timeout(Duration::from_secs(20), async {
            tokio::join!(worker, script)
        })
        .await
        .expect("the exchange finished");
    });
}
