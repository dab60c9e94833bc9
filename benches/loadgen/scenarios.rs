//! The load scenarios. Each runs on the load generator's single-threaded runtime (inside a
//! `LocalSet`), bounded in time and count, and measures the servers' CPU over exactly its
//! measurement window.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::sys;
use crate::ws::{self, WsReader, OPCODE_TEXT};

/// Connection attempts in flight at once while opening many connections.
const CONNECTS_IN_FLIGHT_MAX: usize = 128;
/// Longest wait for an answer once the sending stops.
const DRAIN_TIME_MAX: Duration = Duration::from_secs(10);

/// One client connection.
pub type Conn = (WsReader, OwnedWriteHalf);

/// Latency percentiles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lat {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

impl Lat {
    fn of(mut nanos: Vec<u64>) -> Lat {
        if nanos.is_empty() {
            return Lat::default();
        }
        nanos.sort_unstable();
        let at = |q: f64| {
            let i = ((nanos.len() as f64 * q).ceil() as usize).clamp(1, nanos.len()) - 1;
            Duration::from_nanos(nanos[i])
        };
        Lat {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

/// CPU used over a window by the servers and by the load generator.
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    /// Server processes, all threads.
    pub server: Duration,
    /// Each server process, in the order of the pids given.
    pub split: Vec<Duration>,
    /// This process.
    pub loadgen: Duration,
    /// Write system calls of the server processes: how well writes are coalesced.
    pub writes: u64,
}

impl Cpu {
    /// Server CPU per item (message or delivery), µs.
    pub fn server_us_per(&self, items: u64) -> f64 {
        self.server.as_secs_f64() * 1e6 / items.max(1) as f64
    }
    /// Server write system calls per item.
    pub fn writes_per(&self, items: u64) -> f64 {
        self.writes as f64 / items.max(1) as f64
    }
}

struct CpuMark {
    split: Vec<Duration>,
    loadgen: Duration,
    writes: u64,
    at: Instant,
}

impl CpuMark {
    fn now(pids: &[u32]) -> CpuMark {
        CpuMark {
            split: pids.iter().map(|p| sys::cpu_time(*p)).collect(),
            loadgen: sys::self_cpu(),
            writes: pids.iter().map(|p| sys::write_calls(*p)).sum(),
            at: Instant::now(),
        }
    }

    fn since(&self, pids: &[u32]) -> (Cpu, Duration) {
        let now = CpuMark::now(pids);
        let split: Vec<Duration> = now
            .split
            .iter()
            .zip(&self.split)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        (
            Cpu {
                server: split.iter().sum(),
                split,
                loadgen: now.loadgen.saturating_sub(self.loadgen),
                writes: now.writes.saturating_sub(self.writes),
            },
            now.at - self.at,
        )
    }
}

/// Opens `n` connections, spreading their source addresses over `sources`.
pub async fn connect_many(addr: SocketAddr, n: usize, sources: &[IpAddr]) -> io::Result<Vec<Conn>> {
    open_many(n, sources, move |src| ws::connect(addr, src)).await
}

async fn open_many<F, Fut>(n: usize, sources: &[IpAddr], open: F) -> io::Result<Vec<Conn>>
where
    F: Fn(Option<IpAddr>) -> Fut,
    Fut: std::future::Future<Output = io::Result<Conn>> + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut next = 0;
    while out.len() < n {
        while next < n && set.len() < CONNECTS_IN_FLIGHT_MAX {
            let src = (!sources.is_empty()).then(|| sources[next % sources.len()]);
            set.spawn_local(open(src));
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(conn))) => out.push(conn),
            Some(Ok(Err(e))) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("after {} connections: {e}", out.len()),
                ))
            }
            Some(Err(e)) => return Err(io::Error::other(e)),
            None => break,
        }
    }
    Ok(out)
}

/// What an echo run measured.
#[derive(Debug, Clone)]
pub struct EchoResult {
    /// Round trips completed in the window.
    pub msgs: u64,
    /// Length of the window.
    pub secs: f64,
    /// Round-trip latency.
    pub lat: Lat,
    /// CPU over the window.
    pub cpu: Cpu,
    /// Wrong or missing replies.
    pub errors: u64,
}

impl EchoResult {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.msgs as f64 / self.secs
    }
    /// Server CPU per message, µs.
    pub fn server_us(&self) -> f64 {
        self.cpu.server_us_per(self.msgs)
    }
    /// Server write system calls per message.
    pub fn writes_per(&self) -> f64 {
        self.cpu.writes_per(self.msgs)
    }
}

/// `clients` clients, each with one `size`-byte text message in flight (closed loop).
pub async fn echo(
    addr: SocketAddr,
    clients: usize,
    size: usize,
    warmup: Duration,
    window: Duration,
    pids: &[u32],
) -> io::Result<EchoResult> {
    let payload = vec![b'x'; size];
    let mut frame = Vec::new();
    ws::encode_frame(OPCODE_TEXT, &payload, true, &mut frame);
    let frame: Rc<[u8]> = frame.into();
    let conns = connect_many(addr, clients, &[]).await?;
    // 0 = warm-up, 1 = measuring, 2 = stop.
    let phase = Rc::new(Cell::new(0u8));
    let count = Rc::new(Cell::new(0u64));
    let errors = Rc::new(Cell::new(0u64));
    let lat = Rc::new(RefCell::new(Vec::with_capacity(1 << 20)));
    let mut tasks = JoinSet::new();
    for (mut rd, mut wr) in conns {
        let (frame, phase, count, errors, lat) = (
            frame.clone(),
            phase.clone(),
            count.clone(),
            errors.clone(),
            lat.clone(),
        );
        tasks.spawn_local(async move {
            loop {
                let sent = Instant::now();
                if wr.write_all(&frame).await.is_err() {
                    errors.set(errors.get() + 1);
                    return;
                }
                match rd.next().await {
                    Ok((_, p)) if p.len() == size => {}
                    Ok(_) => errors.set(errors.get() + 1),
                    Err(_) => {
                        errors.set(errors.get() + 1);
                        return;
                    }
                }
                match phase.get() {
                    0 => {}
                    1 => {
                        lat.borrow_mut().push(sent.elapsed().as_nanos() as u64);
                        count.set(count.get() + 1);
                    }
                    _ => return,
                }
            }
        });
    }
    tokio::time::sleep(warmup).await;
    let mark = CpuMark::now(pids);
    phase.set(1);
    tokio::time::sleep(window).await;
    phase.set(2);
    let msgs = count.get();
    let (cpu, elapsed) = mark.since(pids);
    let _ = tokio::time::timeout(DRAIN_TIME_MAX, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let lat = Lat::of(std::mem::take(&mut *lat.borrow_mut()));
    Ok(EchoResult {
        msgs,
        secs: elapsed.as_secs_f64(),
        lat,
        cpu,
        errors: errors.get(),
    })
}

/// What a broadcast run measured.
#[derive(Debug, Clone)]
pub struct BroadcastResult {
    /// Broadcasts sent in the window.
    #[allow(dead_code)]
    pub broadcasts: u64,
    /// Deliveries received in the window.
    pub deliveries: u64,
    /// From the first send to the last delivery.
    pub secs: f64,
    /// Send-to-receipt latency of each delivery.
    pub lat: Lat,
    /// CPU over the window.
    pub cpu: Cpu,
    /// Deliveries still missing when the drain time ran out.
    pub missing: u64,
}

impl BroadcastResult {
    /// Deliveries per second.
    pub fn rate(&self) -> f64 {
        self.deliveries as f64 / self.secs
    }
    /// Server CPU per delivery, µs.
    pub fn server_us(&self) -> f64 {
        self.cpu.server_us_per(self.deliveries)
    }
    /// Server write system calls per delivery.
    pub fn writes_per(&self) -> f64 {
        self.cpu.writes_per(self.deliveries)
    }
}

/// Shared state of a broadcast run.
#[derive(Default)]
struct Fanout {
    sent_at: Vec<Instant>,
    remaining: Vec<u32>,
    completed: u64,
    deliveries: u64,
    lat: Vec<u64>,
    last_delivery: Option<Instant>,
}

fn client_id_of(payload: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find("\"client_id\":\"")? + 13;
    let end = text[at..].find('"')? + at;
    Some(text[at..end].to_owned())
}

async fn send_text(wr: &mut OwnedWriteHalf, text: &str) -> io::Result<()> {
    let mut frame = Vec::with_capacity(text.len() + 14);
    ws::encode_frame(OPCODE_TEXT, text.as_bytes(), true, &mut frame);
    wr.write_all(&frame).await
}

/// Waits for the `connect` event and returns the client id it names.
async fn connected_id(rd: &mut WsReader) -> io::Result<String> {
    let (_, p) = rd.next().await?;
    client_id_of(p).ok_or_else(|| {
        io::Error::other(format!(
            "expected a connect event, got {}",
            String::from_utf8_lossy(p)
        ))
    })
}

/// Connects and joins group `bench` through the probe op language.
async fn member(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<Conn> {
    let (mut rd, mut wr) = ws::connect(addr, src).await?;
    let id = connected_id(&mut rd).await?;
    send_text(
        &mut wr,
        &format!("{{\"op\":\"joinGroup\",\"args\":{{\"client_id\":\"{id}\",\"group\":\"bench\"}},\"id\":0}}"),
    )
    .await?;
    loop {
        let (_, p) = rd.next().await?;
        if p.windows(10).any(|w| w == b"\"ok\":true,") {
            return Ok((rd, wr));
        }
        if p.windows(6).any(|w| w == b"\"ok\":f") {
            return Err(io::Error::other(String::from_utf8_lossy(p).into_owned()));
        }
    }
}

/// `k` receivers in one group; one sender keeps `window` broadcasts of `size` bytes in
/// flight (a broadcast is in flight until every receiver has it) for `duration`.
pub async fn broadcast(
    addr: SocketAddr,
    k: usize,
    window: u64,
    size: usize,
    duration: Duration,
    pids: &[u32],
) -> io::Result<BroadcastResult> {
    let receivers = open_many(k, &[], move |src| member(addr, src)).await?;
    let state = Rc::new(RefCell::new(Fanout::default()));
    let progress = Rc::new(Notify::new());
    let mut writers = Vec::with_capacity(k);
    let mut tasks = JoinSet::new();
    for (mut rd, wr) in receivers {
        writers.push(wr);
        let (state, progress) = (state.clone(), progress.clone());
        tasks.spawn_local(async move {
            while let Ok((_, p)) = rd.next().await {
                let digits = p.iter().take_while(|b| b.is_ascii_digit()).count();
                let Some(seq) = std::str::from_utf8(&p[..digits])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                else {
                    continue;
                };
                let now = Instant::now();
                let mut s = state.borrow_mut();
                let Some(sent) = s.sent_at.get(seq).copied() else {
                    continue;
                };
                s.lat.push((now - sent).as_nanos() as u64);
                s.deliveries += 1;
                s.last_delivery = Some(now);
                s.remaining[seq] -= 1;
                if s.remaining[seq] == 0 {
                    s.completed += 1;
                    progress.notify_one();
                }
            }
        });
    }
    let (mut rd, mut wr) = ws::connect(addr, None).await?;
    connected_id(&mut rd).await?;
    // The acks (one per request) are read and dropped.
    tasks.spawn_local(async move { while rd.next().await.is_ok() {} });
    let mut seq = 0usize;
    let plan = Plan { k, window, size };
    // Warm-up: a few broadcasts through the whole path.
    send_phase(
        &plan,
        &state,
        &progress,
        &mut wr,
        &mut seq,
        Duration::from_secs(2),
        8,
    )
    .await?;
    let (done_before, deliveries_before) = {
        let mut s = state.borrow_mut();
        s.lat.clear();
        (s.sent_at.len() as u64, s.deliveries)
    };
    let mark = CpuMark::now(pids);
    send_phase(
        &plan,
        &state,
        &progress,
        &mut wr,
        &mut seq,
        duration,
        usize::MAX,
    )
    .await?;
    let s = state.borrow();
    let (cpu, mut elapsed) = mark.since(pids);
    if let Some(last) = s.last_delivery {
        // The window ends at the last delivery, not when the drain wait noticed it.
        let tail = Instant::now().saturating_duration_since(last);
        elapsed = elapsed.saturating_sub(tail).max(Duration::from_millis(1));
    }
    let broadcasts = s.sent_at.len() as u64 - done_before;
    let deliveries = s.deliveries - deliveries_before;
    let missing = broadcasts * k as u64 - deliveries;
    let lat = Lat::of(s.lat.clone());
    drop(s);
    drop(writers);
    tasks.abort_all();
    Ok(BroadcastResult {
        broadcasts,
        deliveries,
        secs: elapsed.as_secs_f64(),
        lat,
        cpu,
        missing,
    })
}

/// What a broadcast run sends.
struct Plan {
    k: usize,
    window: u64,
    size: usize,
}

/// Sends broadcasts for `budget` (at most `max`), keeping `plan.window` in flight, then
/// waits for every delivery.
async fn send_phase(
    plan: &Plan,
    state: &RefCell<Fanout>,
    progress: &Notify,
    wr: &mut OwnedWriteHalf,
    seq: &mut usize,
    budget: Duration,
    max: usize,
) -> io::Result<()> {
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < budget && sent < max {
        loop {
            let in_flight = {
                let s = state.borrow();
                s.sent_at.len() as u64 - s.completed
            };
            if in_flight < plan.window {
                break;
            }
            if tokio::time::timeout(DRAIN_TIME_MAX, progress.notified())
                .await
                .is_err()
            {
                return Err(io::Error::other("broadcast stalled: deliveries missing"));
            }
        }
        let mut message = format!("{} ", *seq);
        while message.len() < plan.size {
            message.push('x');
        }
        let request = format!(
            "{{\"op\":\"sendToGroup\",\"args\":{{\"group\":\"bench\",\"message\":\"{message}\"}},\"id\":{}}}",
            *seq
        );
        {
            let mut s = state.borrow_mut();
            s.sent_at.push(Instant::now());
            s.remaining.push(plan.k as u32);
        }
        send_text(wr, &request).await?;
        *seq += 1;
        sent += 1;
    }
    // Let everything sent arrive.
    let deadline = tokio::time::Instant::now() + DRAIN_TIME_MAX;
    loop {
        let done = {
            let s = state.borrow();
            s.completed >= s.sent_at.len() as u64
        };
        if done {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, progress.notified())
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

/// One step of the idle scenario.
#[derive(Debug, Clone)]
pub struct IdleStep {
    /// Connections held.
    pub conns: usize,
    /// Server processes holding them.
    pub processes: usize,
    /// Server RSS growth since no connection, bytes per connection.
    pub rss_per_conn: f64,
    /// Connections that answered the probe.
    pub answered: usize,
    /// Why the step stopped short, if it did.
    pub stopped: Option<String>,
}

/// Opens connections up to each of `steps`, measures the server's RSS, then probes every
/// connection with a message it must echo.
pub async fn idle(
    addr: SocketAddr,
    steps: &[usize],
    sources: &[IpAddr],
    server_pid: u32,
) -> io::Result<Vec<IdleStep>> {
    let rss0 = sys::rss_kib(server_pid);
    let mut conns: Vec<Conn> = Vec::new();
    let mut out = Vec::new();
    let mut frame = Vec::new();
    ws::encode_frame(OPCODE_TEXT, b"probe", true, &mut frame);
    for &step in steps {
        let mut stopped = None;
        while conns.len() < step {
            let batch = (step - conns.len()).min(1000);
            match connect_many(addr, batch, sources).await {
                Ok(more) => conns.extend(more),
                Err(e) => {
                    stopped = Some(format!("{e} (after {} connections)", conns.len()));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = sys::rss_kib(server_pid);
        let rss_per_conn = rss.saturating_sub(rss0) as f64 * 1024.0 / conns.len().max(1) as f64;
        let answered = probe_all(&mut conns, &frame).await;
        let full = stopped.is_some();
        out.push(IdleStep {
            conns: conns.len(),
            processes: 1,
            rss_per_conn,
            answered,
            stopped,
        });
        if full {
            break;
        }
    }
    reset_on_close(&conns);
    Ok(out)
}

/// Sends `frame` (a text "probe") on every connection and counts the echoes that come
/// back within [`DRAIN_TIME_MAX`].
async fn probe_all(conns: &mut [Conn], frame: &[u8]) -> usize {
    for (_, wr) in conns.iter_mut() {
        let _ = wr.write_all(frame).await;
    }
    let deadline = Instant::now() + DRAIN_TIME_MAX;
    let mut answered = 0;
    for (rd, _) in conns.iter_mut() {
        if let Ok(Ok((_, p))) = tokio::time::timeout_at(deadline.into(), rd.next()).await {
            if p == b"probe" {
                answered += 1;
            }
        }
    }
    answered
}

/// Makes closing `conns` send a reset instead of a FIN, so their source ports do not sit
/// in TIME_WAIT for a minute: idle runs bind ~250k source ports on 127.0.0.1–8 (28k
/// ephemeral ports each), and later scenarios need ports too.
fn reset_on_close(conns: &[Conn]) {
    for (_, wr) in conns {
        let _ = socket2::SockRef::from(wr.as_ref()).set_linger(Some(Duration::ZERO));
    }
}

/// Child process of [`idle_spread`]: opens `count` websocket connections to `addr` from
/// 127.0.0.1–8, prints `ready N` (or `stopped N why`), then answers stdin: `probe`
/// sends a probe on every connection and prints `answered N`; `quit` or the end of
/// stdin ends it.
pub fn idle_hold(addr: SocketAddr, count: usize) -> io::Result<()> {
    use std::io::{BufRead, Write as _};
    sys::raise_fd_limit(count as u64 + 100);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let sources: Vec<IpAddr> = (1..=8)
        .map(|i| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i)))
        .collect();
    let mut conns: Vec<Conn> = Vec::with_capacity(count);
    let mut stopped = None;
    local.block_on(&runtime, async {
        while conns.len() < count {
            let batch = (count - conns.len()).min(1000);
            match connect_many(addr, batch, &sources).await {
                Ok(more) => conns.extend(more),
                Err(e) => {
                    stopped = Some(e.to_string());
                    break;
                }
            }
        }
    });
    let mut stdout = io::stdout();
    match &stopped {
        Some(why) => writeln!(stdout, "stopped {} {why}", conns.len())?,
        None => writeln!(stdout, "ready {}", conns.len())?,
    }
    stdout.flush()?;
    let mut frame = Vec::new();
    ws::encode_frame(OPCODE_TEXT, b"probe", true, &mut frame);
    for line in io::stdin().lock().lines() {
        if line?.trim() != "probe" {
            break;
        }
        let answered = local.block_on(&runtime, probe_all(&mut conns, &frame));
        writeln!(stdout, "answered {answered}")?;
        stdout.flush()?;
    }
    reset_on_close(&conns);
    Ok(())
}

/// Holds `total` idle connections spread evenly over `targets` (server address and
/// pid), one holder process ([`idle_hold`]) per target, each within its own fd limit;
/// then the servers' RSS growth per connection, and a probe of every connection.
///
/// Blocking on purpose (std processes and pipes): nothing else runs in the load
/// generator meanwhile, and the holders are other processes.
pub fn idle_spread(targets: &[(SocketAddr, u32)], total: usize) -> io::Result<IdleStep> {
    use std::io::{BufRead, BufReader, Write as _};
    use std::process::{Command, Stdio};
    let me = std::env::current_exe()?;
    let rss = || {
        targets
            .iter()
            .map(|(_, pid)| sys::rss_kib(*pid))
            .sum::<u64>()
    };
    let rss0 = rss();
    let share = total / targets.len();
    let mut holders = Vec::with_capacity(targets.len());
    for (i, (addr, _)) in targets.iter().enumerate() {
        let count = if i == 0 {
            total - share * (targets.len() - 1)
        } else {
            share
        };
        let child = Command::new(&me)
            .args(["idle-hold", &addr.to_string(), &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        holders.push(child);
    }
    let mut lines = Vec::with_capacity(holders.len());
    let mut conns = 0;
    let mut stopped = None;
    for child in &mut holders {
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let mut words = line.split_whitespace();
        let status = words.next().unwrap_or("");
        conns += words
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
        if status != "ready" {
            stopped = Some(format!("holder: {}", line.trim()));
        }
        lines.push(out);
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_per_conn = rss().saturating_sub(rss0) as f64 * 1024.0 / conns.max(1) as f64;
    let mut answered = 0;
    for (child, out) in holders.iter_mut().zip(&mut lines) {
        let stdin = child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "probe")?;
        stdin.flush()?;
        let mut line = String::new();
        out.read_line(&mut line)?;
        answered += line
            .strip_prefix("answered ")
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(0);
    }
    for child in &mut holders {
        drop(child.stdin.take());
        let _ = child.wait();
    }
    Ok(IdleStep {
        conns,
        processes: targets.len(),
        rss_per_conn,
        answered,
        stopped,
    })
}
