//! The adapter over an in-memory `tokio::io::duplex` pipe: bytes in order, end of stream
//! and errors through `try_read`, both buffers at their bounds, opportunistic pushes.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::{AsyncStream, AsyncStreamLimits};
use crate::net::NetStream;

const WAIT: Duration = Duration::from_secs(5);

fn pair(
    limits: AsyncStreamLimits,
    pipe_capacity: usize,
) -> (AsyncStream<DuplexStream>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(pipe_capacity);
    let local: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let peer: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    (AsyncStream::new(ours, local, peer, limits), theirs)
}

fn limits(read_buffer_max: usize, write_stash_max: usize) -> AsyncStreamLimits {
    AsyncStreamLimits {
        read_buffer_max,
        write_stash_max,
    }
}

/// Reads everything until the end of the stream, the way the driver does.
async fn read_to_end(
    stream: &mut AsyncStream<DuplexStream>,
    scratch: usize,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0; scratch];
    loop {
        tokio::time::timeout(WAIT, stream.read_ready())
            .await
            .expect("ready in time")?;
        loop {
            match stream.try_read(&mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}

#[tokio::test]
async fn bytes_arrive_in_order_then_the_end() {
    let (mut stream, mut peer) = pair(AsyncStreamLimits::default(), 1024);
    assert_eq!(stream.local_addr().unwrap().port(), 1000);
    assert_eq!(stream.peer_addr().unwrap().port(), 2000);
    let sent: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            peer.write_all(&sent).await.unwrap();
            drop(peer);
        })
    };
    let got = read_to_end(&mut stream, 64 * 1024).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got, sent);
    // The end is sticky.
    assert_eq!(stream.try_read(&mut [0; 8]).unwrap(), 0);
}

#[tokio::test]
async fn one_fill_reads_at_most_read_buffer_max() {
    let (mut stream, mut peer) = pair(limits(16, 64), 1024);
    peer.write_all(&[7; 100]).await.unwrap();
    stream.read_ready().await.unwrap();
    let mut buf = [0; 1000];
    assert_eq!(
        stream.try_read(&mut buf).unwrap(),
        16,
        "one fill is read_buffer_max"
    );
    assert_eq!(
        stream.try_read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "drained: wait for read_ready again"
    );
    // A small caller buffer takes the fill in pieces.
    stream.read_ready().await.unwrap();
    assert_eq!(stream.try_read(&mut buf[..10]).unwrap(), 10);
    assert_eq!(stream.try_read(&mut buf[..10]).unwrap(), 6);
    drop(peer);
    let rest = read_to_end(&mut stream, 1000).await.unwrap();
    assert_eq!(rest.len(), 100 - 32);
}

#[tokio::test]
async fn the_stash_takes_write_stash_max_then_would_block() {
    // The pipe holds 4 bytes, the stash 8: 12 bytes in flight at most.
    let (mut stream, mut peer) = pair(limits(64, 8), 4);
    let first = [1u8; 5];
    let second = [2u8; 7];
    let n = stream
        .try_write_vectored(&[IoSlice::new(&first), IoSlice::new(&second)])
        .unwrap();
    assert_eq!(n, 8, "exactly write_stash_max is taken");
    assert_eq!(stream.stashed(), 8);
    let again = stream.try_write_vectored(&[IoSlice::new(&second[3..])]);
    assert_eq!(again.unwrap_err().kind(), io::ErrorKind::WouldBlock);

    // write_ready pushes 4 bytes into the pipe, then has room again.
    tokio::time::timeout(WAIT, stream.write_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.stashed(), 4);
    assert_eq!(
        stream
            .try_write_vectored(&[IoSlice::new(&second[3..])])
            .unwrap(),
        4
    );
    assert_eq!(stream.stashed(), 8);
    // Full again, and the pipe is full: write_ready waits for the peer.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), stream.write_ready())
            .await
            .is_err(),
        "no room until the peer reads"
    );
    let mut got = vec![0; 12];
    let reader = tokio::spawn(async move {
        peer.read_exact(&mut got).await.unwrap();
        got
    });
    stream.shutdown().await.unwrap();
    assert_eq!(stream.stashed(), 0);
    let got = reader.await.unwrap();
    assert_eq!(got, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2]);
}

#[tokio::test]
async fn waiting_to_read_pushes_the_stash_out() {
    let (mut stream, mut peer) = pair(AsyncStreamLimits::default(), 1024);
    assert_eq!(
        stream
            .try_write_vectored(&[IoSlice::new(b"queued")])
            .unwrap(),
        6
    );
    let mut got = [0; 6];
    // The driver waits on read_ready only once its own queue is empty; that wait alone
    // must deliver the stash.
    tokio::select! {
        biased;
        _ = stream.read_ready() => panic!("nothing to read yet"),
        read = tokio::time::timeout(WAIT, peer.read_exact(&mut got)) => {
            read.expect("pushed in time").unwrap();
        }
    }
    assert_eq!(&got, b"queued");
    assert_eq!(stream.stashed(), 0);
}

#[tokio::test]
async fn shutdown_delivers_the_stash_then_the_end() {
    let (mut stream, mut peer) = pair(limits(64, 1024), 16);
    let body = [9u8; 600];
    assert_eq!(
        stream.try_write_vectored(&[IoSlice::new(&body)]).unwrap(),
        600
    );
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        peer.read_to_end(&mut all).await.unwrap();
        all
    });
    tokio::time::timeout(WAIT, stream.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        reader.await.unwrap(),
        body.to_vec(),
        "all bytes, then end of stream"
    );
}

#[tokio::test]
async fn a_write_error_is_reported_by_writes_and_by_try_read() {
    let (mut stream, peer) = pair(AsyncStreamLimits::default(), 64);
    drop(peer);
    // Accepted into the stash: the failure shows when it is pushed.
    assert_eq!(
        stream.try_write_vectored(&[IoSlice::new(b"lost")]).unwrap(),
        4
    );
    let ready = tokio::time::timeout(WAIT, stream.write_ready())
        .await
        .unwrap();
    assert_eq!(ready.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(
        stream
            .try_write_vectored(&[IoSlice::new(b"x")])
            .unwrap_err()
            .kind(),
        io::ErrorKind::BrokenPipe
    );
    stream.read_ready().await.unwrap();
    assert_eq!(
        stream.try_read(&mut [0; 8]).unwrap_err().kind(),
        io::ErrorKind::BrokenPipe,
        "the driver, waiting on reads, learns of the failed write"
    );
}

#[tokio::test]
async fn bytes_before_the_end_are_read_before_it() {
    let (mut stream, mut peer) = pair(limits(4, 64), 64);
    peer.write_all(b"abcdefghij").await.unwrap();
    drop(peer);
    let got = read_to_end(&mut stream, 3).await.unwrap();
    assert_eq!(got, b"abcdefghij");
}

#[tokio::test]
async fn an_idle_adapter_holds_no_buffer() {
    let (mut stream, mut peer) = pair(AsyncStreamLimits::default(), 1024);
    assert_eq!(stream.buffered_capacity(), 0, "fresh");
    // Waiting with nothing to read allocates nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), stream.read_ready())
            .await
            .is_err()
    );
    assert_eq!(stream.buffered_capacity(), 0, "waiting");

    peer.write_all(b"ping").await.unwrap();
    stream.read_ready().await.unwrap();
    assert!(stream.buffered_capacity() >= 4, "holding what arrived");
    let mut buf = [0; 16];
    assert_eq!(stream.try_read(&mut buf).unwrap(), 4);
    assert_eq!(
        stream.buffered_capacity(),
        0,
        "read buffer released when drained"
    );

    assert_eq!(
        stream.try_write_vectored(&[IoSlice::new(b"pong")]).unwrap(),
        4
    );
    assert!(stream.buffered_capacity() >= 4, "stash holds the reply");
    stream.write_ready().await.unwrap();
    assert_eq!(stream.buffered_capacity(), 0, "stash released when pushed");
    let mut got = [0; 4];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
}

#[test]
#[should_panic(expected = "read_buffer_max")]
fn read_buffer_max_above_the_ceiling_is_refused() {
    let _ = pair(limits(super::READ_BUFFER_CEILING + 1, 64), 64);
}

/// Random bounds, pipe sizes, write cuts and read sizes: whatever crosses the adapter in
/// either direction arrives intact and in order, then the end of the stream.
#[test]
fn any_bytes_cross_intact_under_any_bounds() {
    fn property(
        data_out: Vec<u8>,
        data_in: Vec<u8>,
        cuts: Vec<u8>,
        read_buffer_max: u8,
        write_stash_max: u8,
        pipe: u8,
        scratch: u8,
    ) -> bool {
        let limits = limits(
            usize::from(read_buffer_max % 32) + 1,
            usize::from(write_stash_max % 32) + 1,
        );
        let pipe = usize::from(pipe % 32) + 1;
        let scratch = usize::from(scratch % 32) + 1;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (mut stream, peer) = pair(limits, pipe);
            let (mut peer_read, mut peer_write) = tokio::io::split(peer);
            let outgoing = async {
                // The driver's way: offer two slices at a time, wait when refused.
                let mut at = 0;
                let mut cut = cuts.iter().cycle();
                while at < data_out.len() {
                    let first =
                        (at + usize::from(*cut.next().unwrap_or(&7)) + 1).min(data_out.len());
                    let slices = [
                        IoSlice::new(&data_out[at..first]),
                        IoSlice::new(&data_out[first..]),
                    ];
                    match stream.try_write_vectored(&slices) {
                        Ok(n) => at += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            stream.write_ready().await.unwrap()
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                stream.shutdown().await.unwrap();
                read_to_end(&mut stream, scratch).await.unwrap()
            };
            let peer_side = async {
                let writer = async {
                    peer_write.write_all(&data_in).await.unwrap();
                    peer_write.shutdown().await.unwrap();
                };
                let reader = async {
                    let mut got = Vec::new();
                    peer_read.read_to_end(&mut got).await.unwrap();
                    got
                };
                tokio::join!(writer, reader).1
            };
            let (got_in, got_out) =
                tokio::time::timeout(WAIT, async { tokio::join!(outgoing, peer_side) })
                    .await
                    .expect("no deadlock");
            got_in == data_in && got_out == data_out
        })
    }
    quickcheck::QuickCheck::new()
        .tests(1000)
        .quickcheck(property as fn(Vec<u8>, Vec<u8>, Vec<u8>, u8, u8, u8, u8) -> bool);
}
