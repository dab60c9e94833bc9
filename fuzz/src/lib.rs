//! Shared harness of the fuzz targets: the oracles that hold for every decoder.
//!
//! * [`chunkings`]: the same input cut three ways (whole, byte by byte, pseudo-random
//!   pieces derived from the input itself, so a crash reproduces from the input alone).
//!   An incremental decoder must produce the same results for each.
//! * [`measure`]: the peak heap growth while a closure runs, through a counting global
//!   allocator, checked against a bound the target states from the decoder's configured
//!   limits ([`assert_bounded`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Forwards to the system allocator, counting live bytes and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // Counted as the new block allocated before the old one is freed.
            grew(new_size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most heap bytes that were live at once during
/// it, beyond those live when it started.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.load(Relaxed);
    PEAK.store(start, Relaxed);
    let value = f();
    let peak = PEAK.load(Relaxed);
    (value, peak.saturating_sub(start))
}

/// Fails when `peak` heap bytes exceed `bound`: the decoder allocated past its limits.
#[track_caller]
pub fn assert_bounded(what: &str, peak: usize, bound: usize) {
    assert!(
        peak <= bound,
        "{what}: {peak} heap bytes live at once, over the bound of {bound}"
    );
}

/// The input cut three ways: whole, one byte at a time, and in pieces of 1 to 64 bytes
/// whose sizes come from a hash of the input.
pub fn chunkings(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let whole = vec![data];
    let bytes = data.chunks(1).collect();
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let n = (state % 64) as usize + 1;
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    vec![whole, bytes, pieces]
}

/// Runs `run` on every cutting of `data` (see [`chunkings`]) and checks that all give the
/// result of the first (the whole input); returns that result.
#[track_caller]
pub fn same_for_any_split<T: PartialEq + Debug>(
    data: &[u8],
    mut run: impl FnMut(&[&[u8]]) -> T,
) -> T {
    let mut results = chunkings(data).into_iter().map(|chunks| run(&chunks));
    let first = results.next().expect("three cuttings");
    for (i, other) in results.enumerate() {
        assert_eq!(
            first,
            other,
            "decoding the input whole and {} differ",
            ["byte by byte", "in pseudo-random pieces"][i]
        );
    }
    first
}

/// The outcome of feeding chunks to a pull decoder (`decode(&mut BytesMut)` returning
/// `Ok(Some)`, `Ok(None)` or an error): every item in order, then the first fatal error
/// if any, and the bytes consumed.
#[derive(Debug, PartialEq)]
pub struct Pulled<T, E> {
    /// Items and non-fatal errors, in order.
    pub items: Vec<Result<T, E>>,
    /// The fatal error that stopped decoding.
    pub fatal: Option<E>,
    /// Input bytes consumed (split off the buffer).
    pub consumed: usize,
}

/// Feeds `chunks` one after the other into a buffer and calls `decode` until it needs more
/// bytes; `is_fatal` tells which errors end the stream.
pub fn pull<T, E>(
    chunks: &[&[u8]],
    mut decode: impl FnMut(&mut bytes::BytesMut) -> Result<Option<T>, E>,
    is_fatal: impl Fn(&E) -> bool,
) -> Pulled<T, E> {
    let mut buf = bytes::BytesMut::new();
    let mut out = Pulled {
        items: Vec::new(),
        fatal: None,
        consumed: 0,
    };
    let mut fed = 0;
    'feed: for chunk in chunks {
        buf.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            let before = buf.len();
            match decode(&mut buf) {
                Ok(Some(item)) => out.items.push(Ok(item)),
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed input");
                    break;
                }
                Err(e) if is_fatal(&e) => {
                    assert_eq!(buf.len(), before, "a fatal error consumed input");
                    out.fatal = Some(e);
                    break 'feed;
                }
                Err(e) => out.items.push(Err(e)),
            }
            assert!(buf.len() < before, "an item consumed no input");
        }
    }
    out.consumed = fed - buf.len();
    out
}

/// Feeds `chunks` to a push decoder of the public port and collects its events.
pub fn public_events(
    mut decoder: gatewayworker::protocol::public::PublicDecoder,
    chunks: &[&[u8]],
) -> Vec<gatewayworker::protocol::public::PublicEvent> {
    let mut buf = bytes::BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        decoder.decode(&mut buf, &mut |e| events.push(e));
        if decoder.is_closed() {
            break;
        }
    }
    assert_eq!(
        decoder.is_closed(),
        matches!(
            events.last(),
            Some(gatewayworker::protocol::public::PublicEvent::Close(_))
        ),
        "is_closed() disagrees with the last event"
    );
    events
}

/// Feeds `data` whole to a push decoder, dropping each event as it comes: what
/// [`measure`] should see is the decoder's own memory, not the caller's event list.
pub fn public_drain(
    mut decoder: gatewayworker::protocol::public::PublicDecoder,
    data: &[u8],
) -> usize {
    let mut buf = bytes::BytesMut::from(data);
    let mut count = 0;
    decoder.decode(&mut buf, &mut |e| {
        drop(e);
        count += 1;
    });
    count
}
