//! [`ChoppyStream`]: a stream wrapper that re-cuts the bytes written through it at seeded
//! random points.
//!
//! turmoil delivers each write as one segment, whole (turmoil issue #240): without help,
//! a receiver's framing code would only ever see the exact message boundaries its peer
//! wrote. This wrapper holds written bytes until a flush (or until `hold_max` bytes are
//! held) and then sends them in chunks of random sizes: a chunk may end inside a message
//! (a split read for the receiver) or span several (a merged read). The cuts come from a
//! seeded generator, so a simulation seed decides them.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use gatewayworker::gateway::SplitMix64;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Largest "tiny" chunk: half the chunks are at most this long, so that even a 28-byte
/// frame header is regularly cut apart while bulk data still moves in large chunks.
pub const TINY_CHUNK_MAX: usize = 8;

/// Wraps a stream and re-cuts its writes; reads pass through untouched.
#[derive(Debug)]
pub struct ChoppyStream<S> {
    inner: S,
    rng: SplitMix64,
    /// Written bytes not yet sent; `held[held_start..]` is pending.
    held: Vec<u8>,
    held_start: usize,
    /// The size of the next chunk, drawn once so a `Pending` does not redraw it.
    next_chunk: Option<usize>,
    chunk_max: usize,
    hold_max: usize,
}

impl<S> ChoppyStream<S> {
    /// Wraps `inner`: chunks of 1..=`chunk_max` bytes (half of them at most
    /// [`TINY_CHUNK_MAX`]), at most `hold_max` bytes held before they are sent without
    /// waiting for a flush.
    pub fn new(inner: S, seed: u64, chunk_max: usize, hold_max: usize) -> ChoppyStream<S> {
        assert!(chunk_max > 0 && hold_max > 0, "bounds must be positive");
        ChoppyStream {
            inner,
            rng: SplitMix64(seed),
            held: Vec::new(),
            held_start: 0,
            next_chunk: None,
            chunk_max,
            hold_max,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn held(&self) -> usize {
        self.held.len() - self.held_start
    }
}

impl<S: AsyncWrite + Unpin> ChoppyStream<S> {
    /// Sends every held byte, chunk by chunk.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held() > 0 {
            let held = self.held();
            let chunk_max = self.chunk_max;
            let rng = &mut self.rng;
            let chunk = *self.next_chunk.get_or_insert_with(|| {
                let class_max = if rng.below(2) == 0 {
                    TINY_CHUNK_MAX.min(chunk_max)
                } else {
                    chunk_max
                };
                1 + rng.below(held.min(class_max) as u64) as usize
            });
            let chunk = chunk.min(self.held());
            let start = self.held_start;
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[start..start + chunk]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held_start += n;
            self.next_chunk = None;
        }
        self.held.clear();
        self.held_start = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ChoppyStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ChoppyStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.held() >= this.hold_max {
            ready!(this.poll_send_held(cx))?;
        }
        let n = buf.len().min(this.hold_max - this.held());
        this.held.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncWrite, AsyncWriteExt};

    use super::ChoppyStream;

    /// Records the size of every write that reaches it, the way turmoil makes each write
    /// one segment.
    #[derive(Default)]
    struct Segments(Vec<Vec<u8>>);

    impl AsyncWrite for Segments {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn messages() -> Vec<Vec<u8>> {
        (0..40u8).map(|i| vec![i; 1 + usize::from(i % 7)]).collect()
    }

    async fn cut(seed: u64) -> Vec<Vec<u8>> {
        let mut choppy = ChoppyStream::new(Segments::default(), seed, 9, 64);
        for m in messages() {
            choppy.write_all(&m).await.unwrap();
        }
        choppy.flush().await.unwrap();
        assert_eq!(choppy.held(), 0, "a flush sends everything held");
        choppy.inner.0
    }

    /// Every byte arrives in order; segments are cut inside messages and merge others.
    #[tokio::test]
    async fn writes_are_split_and_merged() {
        let segments = cut(7).await;
        assert_eq!(segments.concat(), messages().concat());
        assert!(segments.iter().all(|s| (1..=9).contains(&s.len())));
        // Message boundaries as byte offsets, and segment boundaries likewise.
        let mut ends = std::collections::BTreeSet::new();
        let mut at = 0;
        for m in messages() {
            at += m.len();
            ends.insert(at);
        }
        let mut cuts = Vec::new();
        let mut at = 0;
        for s in &segments {
            let start = at;
            at += s.len();
            cuts.push((start, at));
        }
        assert!(
            cuts.iter().any(|(_, end)| !ends.contains(end)),
            "some segment ends inside a message (a split read)"
        );
        assert!(
            cuts.iter()
                .any(|(start, end)| ends.range(start + 1..*end).next().is_some()),
            "some segment spans a message boundary (a merged read)"
        );
    }

    /// The seed decides the cuts: the same seed cuts alike, another seed differently.
    #[tokio::test]
    async fn the_seed_decides_the_cuts() {
        assert_eq!(cut(11).await, cut(11).await);
        assert_ne!(cut(11).await, cut(12).await);
    }

    /// At `hold_max`, held bytes go out without waiting for a flush.
    #[tokio::test]
    async fn hold_max_bounds_what_is_held() {
        let mut choppy = ChoppyStream::new(Segments::default(), 3, 4, 10);
        choppy.write_all(&[1; 10]).await.unwrap();
        assert_eq!(choppy.held(), 10);
        assert!(choppy.inner.0.is_empty(), "held, not sent");
        choppy.write_all(&[2; 1]).await.unwrap();
        assert_eq!(choppy.held(), 1, "the full hold was sent first");
        assert_eq!(choppy.inner.0.concat(), vec![1; 10]);
    }
}
