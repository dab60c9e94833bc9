//! The practical limits: two minimal tokio servers the gateway's figures are divided by.
//!
//! * `ref-echo`: a WebSocket echo server with no worker hop. Reads go into one
//!   thread-local scratch buffer; a connection keeps bytes only for a partial frame, so an
//!   idle connection holds no buffer (the same rule as the gateway).
//! * `ref-fanout`: speaks the subset of the probe worker's op language the broadcast
//!   scenario uses (`connect` event, `joinGroup`, `sendToGroup`), encodes each broadcast
//!   once and hands every member the same buffer; a member's writer task writes all that
//!   was queued for it since its last write in one vectored call.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Buf, Bytes};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::ws::{self, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG};

/// Size of the per-thread read buffer.
const SCRATCH_LEN: usize = 64 * 1024;
/// Buffers handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Runs a reference server on `port` until killed.
pub fn run(kind: &str, port: u16, threads: usize) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()?
    };
    let listener = {
        let _guard = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)?
    };
    match kind {
        "ref-echo" => runtime.block_on(echo_server(listener)),
        "ref-fanout" => {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, fanout_server(listener))
        }
        other => Err(io::Error::other(format!(
            "unknown reference server {other}"
        ))),
    }
}

async fn echo_server(listener: TcpListener) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = echo_conn(stream).await;
        });
    }
}

async fn echo_conn(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut pending = ws_leftover(ws::server_handshake(&mut stream).await?);
    let mut out: Vec<u8> = Vec::new();
    loop {
        stream.readable().await?;
        let closed = SCRATCH.with(|scratch| -> io::Result<bool> {
            let mut scratch = scratch.borrow_mut();
            // Reads as the gateway's streams do (a short read clears the readiness).
            let n = match gatewayworker::net::try_read_drained(&stream, &mut scratch) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            if pending.is_empty() {
                let used = echo_frames(&scratch[..n], &mut out)?;
                if used < n {
                    pending = scratch[used..n].to_vec();
                }
            } else {
                pending.extend_from_slice(&scratch[..n]);
                let used = echo_frames(&pending, &mut out)?;
                pending.drain(..used);
                if pending.is_empty() {
                    pending = Vec::new();
                }
            }
            Ok(false)
        })?;
        if !out.is_empty() {
            // Vectored (one slice), as every write of the gateway: `writev` is what the
            // load generator counts as a write call (a plain `send` is not in `syscw`).
            let mut written = 0;
            while written < out.len() {
                let n = stream
                    .write_vectored(&[IoSlice::new(&out[written..])])
                    .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                written += n;
            }
            out.clear();
        }
        if closed {
            return Ok(());
        }
    }
}

fn ws_leftover(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.is_empty() {
        Vec::new()
    } else {
        bytes
    }
}

/// Answers every complete frame in `buf` into `out`; returns the bytes consumed.
fn echo_frames(buf: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
    let mut at = 0;
    while let Some(f) = ws::parse_frame(&buf[at..])? {
        let mask = f
            .mask
            .ok_or_else(|| io::Error::other("unmasked client frame"))?;
        let opcode = match f.opcode {
            OPCODE_PING => OPCODE_PONG,
            OPCODE_PONG => {
                at += f.total();
                continue;
            }
            other => other,
        };
        let p = at + f.payload_start;
        push_header(out, opcode, f.payload_len);
        let start = out.len();
        out.extend_from_slice(&buf[p..p + f.payload_len]);
        unmask(&mut out[start..], mask);
        at += f.total();
        if f.opcode == OPCODE_CLOSE {
            break;
        }
    }
    Ok(at)
}

fn push_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | opcode);
    match len {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
}

/// XORs the payload with its key, eight bytes at a time.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// One member's output: what was queued since its writer last ran.
#[derive(Default)]
struct Member {
    outbox: RefCell<Vec<Bytes>>,
    wake: Notify,
}

impl Member {
    fn push(&self, bytes: Bytes) {
        let mut outbox = self.outbox.borrow_mut();
        outbox.push(bytes);
        if outbox.len() == 1 {
            self.wake.notify_one();
        }
    }
}

#[derive(Default)]
struct Hub {
    group: Vec<Rc<Member>>,
    next_id: u64,
}

async fn fanout_server(listener: TcpListener) -> io::Result<()> {
    let hub = Rc::new(RefCell::new(Hub::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let hub = hub.clone();
        tokio::task::spawn_local(async move {
            let _ = fanout_conn(hub, stream).await;
        });
    }
}

async fn fanout_conn(hub: Rc<RefCell<Hub>>, mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut pending = ws_leftover(ws::server_handshake(&mut stream).await?);
    let (rd, wr) = stream.into_split();
    let me = Rc::new(Member::default());
    let writer = tokio::task::spawn_local(member_writer(me.clone(), wr));
    let id = {
        let mut h = hub.borrow_mut();
        h.next_id += 1;
        h.next_id
    };
    me.push(text_frame(
        format!("{{\"event\":\"connect\",\"client_id\":\"{id:020}\"}}").as_bytes(),
    ));
    let result = async {
        loop {
            rd.readable().await?;
            SCRATCH.with(|scratch| -> io::Result<()> {
                let mut scratch = scratch.borrow_mut();
                let n = match rd.try_read(&mut scratch) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                };
                if pending.is_empty() {
                    let used = fanout_frames(&hub, &me, &scratch[..n])?;
                    if used < n {
                        pending = scratch[used..n].to_vec();
                    }
                } else {
                    pending.extend_from_slice(&scratch[..n]);
                    let used = fanout_frames(&hub, &me, &pending)?;
                    pending.drain(..used);
                }
                Ok(())
            })?;
        }
    }
    .await;
    hub.borrow_mut().group.retain(|m| !Rc::ptr_eq(m, &me));
    writer.abort();
    result
}

fn text_frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    push_header(&mut out, ws::OPCODE_TEXT, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn fanout_frames(hub: &Rc<RefCell<Hub>>, me: &Rc<Member>, buf: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    let mut payload = Vec::new();
    while let Some(f) = ws::parse_frame(&buf[at..])? {
        let mask = f
            .mask
            .ok_or_else(|| io::Error::other("unmasked client frame"))?;
        let p = at + f.payload_start;
        payload.clear();
        payload.extend_from_slice(&buf[p..p + f.payload_len]);
        unmask(&mut payload, mask);
        at += f.total();
        if f.opcode >= 0x8 {
            continue;
        }
        let request: serde_json::Value =
            serde_json::from_slice(&payload).unwrap_or(serde_json::Value::Null);
        let id = request
            .get("id")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        match request.get("op").and_then(|o| o.as_str()) {
            Some("joinGroup") => hub.borrow_mut().group.push(me.clone()),
            Some("sendToGroup") => {
                let message = request
                    .get("args")
                    .and_then(|a| a.get("message"))
                    .and_then(|m| m.as_str())
                    .unwrap_or("");
                // Encoded once; every member gets the same buffer.
                let frame = text_frame(message.as_bytes());
                for member in &hub.borrow().group {
                    member.push(frame.clone());
                }
            }
            _ => {
                me.push(text_frame(&payload));
                continue;
            }
        }
        me.push(text_frame(
            format!("{{\"id\":{id},\"ok\":true,\"result\":null}}").as_bytes(),
        ));
    }
    Ok(at)
}

async fn member_writer(me: Rc<Member>, mut wr: OwnedWriteHalf) -> io::Result<()> {
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        me.wake.notified().await;
        std::mem::swap(&mut batch, &mut *me.outbox.borrow_mut());
        let mut first = 0;
        while first < batch.len() {
            let n = {
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
                let mut count = 0;
                for (slot, b) in slices.iter_mut().zip(&batch[first..]) {
                    *slot = IoSlice::new(b);
                    count += 1;
                }
                wr.write_vectored(&slices[..count]).await?
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let mut left = n;
            while left > 0 {
                let front = &mut batch[first];
                if front.len() <= left {
                    left -= front.len();
                    first += 1;
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        batch.clear();
    }
}
