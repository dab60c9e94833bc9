//! Load generator for the gatewayworker benchmarks (issue #8), and the two reference
//! servers its figures are compared with.
//!
//! ```sh
//! scripts/bench                                   # builds release, runs everything
//! loadgen suite --server-bin target/release/gatewayworker --wasm-dir wasm-workers/dist \
//!     [--out artifacts/bench/results.md] [--only echo,idle,broadcast] [--quick]
//!     [--gateway-count N] [--worker-count N] [--ref-threads N] [--repeat N]
//!     [--compression MODE] [--idle-steps 10000] [--broadcast-ks 1000]
//! loadgen ref-echo PORT THREADS | loadgen ref-fanout PORT     # the references, alone
//! ```
//!
//! Everything runs on loopback. The servers under test are child processes (register,
//! gateway, business worker; or a reference server), so their CPU time comes from
//! /proc/<pid>/stat over exactly each measurement window: **server CPU per message** does
//! not depend on how the 2 cores are shared with the load generator, whose own CPU
//! (getrusage) is reported next to it. Each run is bounded in time (a warm-up and a
//! measured window of a few seconds) and in connections.
#![allow(
    clippy::disallowed_methods,
    reason = "benchmarks measure wall-clock time"
)]

mod refs;
mod scenarios;
mod sys;
mod ws;

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use scenarios::{BroadcastResult, EchoResult, IdleStep};

/// Longest wait for freshly started servers to answer.
const READY_TIME_MAX: Duration = Duration::from_secs(30);
/// Connections the idle scenario aims for at most (100k needs a hard fd limit above it).
const IDLE_CONNS_WANTED: usize = 100_000;
/// File descriptors kept free in a process for listeners, links and the like.
const FD_RESERVE: u64 = 200;
/// Connections left below the per-process maximum when spreading over processes.
const SPREAD_MARGIN: usize = 1_000;

struct Options {
    server_bin: PathBuf,
    wasm_dir: PathBuf,
    out: Option<PathBuf>,
    only: Vec<String>,
    quick: bool,
    gateway_count: usize,
    worker_count: usize,
    ref_threads: usize,
    window: Duration,
    /// Runs per figure; the run with the median rate is reported.
    repeat: usize,
    /// `--compression MODE` for our gateway, and clients that offer permessage-deflate.
    compression: Option<String>,
    /// Only these idle steps (no spread over processes).
    idle_steps: Option<Vec<usize>>,
    /// Only these broadcast group sizes.
    broadcast_ks: Option<Vec<usize>>,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some(kind @ ("ref-echo" | "ref-fanout")) => {
            let port = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(9001);
            let threads = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(1);
            refs::run(kind, port, threads)
        }
        Some("suite") => parse(&args[1..]).and_then(suite),
        Some("idle-hold") => {
            let addr = args.get(1).and_then(|a| a.parse().ok());
            let count = args.get(2).and_then(|c| c.parse().ok());
            match (addr, count) {
                (Some(addr), Some(count)) => scenarios::idle_hold(addr, count),
                _ => Err(io::Error::other("usage: loadgen idle-hold ADDR COUNT")),
            }
        }
        // `cargo test --all-targets` runs bench targets without arguments: nothing to do.
        None => Ok(()),
        Some(_) => Err(io::Error::other(
            "usage: loadgen suite --server-bin PATH --wasm-dir DIR [--out FILE] [--only LIST] [--quick] \
             [--gateway-count N] [--worker-count N] [--ref-threads N] [--window-secs S] [--repeat N] | loadgen ref-echo PORT THREADS | loadgen ref-fanout PORT",
        )),
    };
    if let Err(e) = result {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> io::Result<Options> {
    let mut o = Options {
        server_bin: PathBuf::from("target/release/gatewayworker"),
        wasm_dir: PathBuf::from("wasm-workers/dist"),
        out: None,
        only: Vec::new(),
        quick: false,
        gateway_count: 1,
        worker_count: 1,
        ref_threads: 1,
        window: Duration::from_secs(2),
        repeat: 3,
        compression: None,
        idle_steps: None,
        broadcast_ks: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| io::Error::other(format!("{flag} needs a value")))
        };
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| io::Error::other(format!("{flag}: not a number: {v}")))
        };
        let list = |v: String| -> io::Result<Vec<usize>> {
            v.split(',')
                .map(|n| {
                    n.parse::<usize>()
                        .map_err(|_| io::Error::other(format!("{flag}: not a number: {n}")))
                })
                .collect()
        };
        match flag.as_str() {
            "--compression" => {
                o.compression = Some(value()?);
                ws::OFFER_DEFLATE.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            "--idle-steps" => o.idle_steps = Some(list(value()?)?),
            "--broadcast-ks" => o.broadcast_ks = Some(list(value()?)?),
            "--server-bin" => o.server_bin = value()?.into(),
            "--wasm-dir" => o.wasm_dir = value()?.into(),
            "--out" => o.out = Some(value()?.into()),
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "--quick" => {
                o.quick = true;
                o.repeat = 1;
            }
            "--repeat" => o.repeat = number(value()?)?.max(1),
            "--gateway-count" => o.gateway_count = number(value()?)?.max(1),
            "--worker-count" => o.worker_count = number(value()?)?.max(1),
            "--ref-threads" => o.ref_threads = number(value()?)?.max(1),
            "--window-secs" => o.window = Duration::from_secs_f64(number(value()?)? as f64),
            other => return Err(io::Error::other(format!("unknown flag {other}"))),
        }
    }
    Ok(o)
}

impl Options {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// Our system: register, gateway and business worker as three processes.
fn start_ours(o: &Options, wasm: &str) -> io::Result<(sys::Servers, SocketAddr)> {
    let (servers, addrs) = start_ours_spread(o, wasm, 1)?;
    Ok((servers, addrs[0]))
}

/// Register, `gateways` gateway processes (each with its own public and lan ports, all
/// announced to the register) and one business worker linked to all of them: how a
/// deployment holds more connections than one process's fd limit allows. Gateway `i` is
/// named `gateway{i}` (the first one `gateway`).
fn start_ours_spread(
    o: &Options,
    wasm: &str,
    gateways: usize,
) -> io::Result<(sys::Servers, Vec<SocketAddr>)> {
    let mut servers = sys::Servers::new();
    let register = sys::free_port()?;
    let bin = &o.server_bin;
    let s = |v: &str| v.to_owned();
    servers.spawn(
        "register",
        bin,
        &[
            s("register"),
            s("--listen"),
            format!("text://127.0.0.1:{register}"),
        ],
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let mut publics = Vec::with_capacity(gateways);
    for i in 0..gateways {
        let public = sys::free_port()?;
        let lan = sys::free_port()?;
        let name = if i == 0 {
            "gateway".to_owned()
        } else {
            format!("gateway{i}")
        };
        servers.spawn(
            &name,
            bin,
            &[
                s("gateway"),
                s("--listen"),
                format!("websocket://127.0.0.1:{public}"),
                s("--lan-ip"),
                s("127.0.0.1"),
                s("--start-port"),
                lan.to_string(),
                s("--count"),
                o.gateway_count.to_string(),
                s("--register"),
                format!("127.0.0.1:{register}"),
            ]
            .into_iter()
            .chain(
                o.compression
                    .iter()
                    .flat_map(|mode| [s("--compression"), mode.clone()]),
            )
            .collect::<Vec<_>>(),
        )?;
        publics.push(SocketAddr::from(([127, 0, 0, 1], public)));
    }
    servers.spawn(
        "worker",
        bin,
        &[
            s("worker"),
            s("--wasm"),
            o.wasm_dir.join(wasm).display().to_string(),
            s("--count"),
            o.worker_count.to_string(),
            s("--register"),
            format!("127.0.0.1:{register}"),
        ],
    )?;
    Ok((servers, publics))
}

/// `count` raw echo reference processes, one port each.
fn start_ref_spread(count: usize) -> io::Result<(sys::Servers, Vec<SocketAddr>)> {
    let mut servers = sys::Servers::new();
    let me = std::env::current_exe()?;
    let mut addrs = Vec::with_capacity(count);
    for i in 0..count {
        let port = sys::free_port()?;
        servers.spawn(
            &format!("ref-echo{i}"),
            &me,
            &[s_owned("ref-echo"), port.to_string(), s_owned("1")],
        )?;
        addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    Ok((servers, addrs))
}

fn s_owned(v: &str) -> String {
    v.to_owned()
}

fn start_ref(kind: &str, threads: usize) -> io::Result<(sys::Servers, SocketAddr)> {
    let mut servers = sys::Servers::new();
    let port = sys::free_port()?;
    let me = std::env::current_exe()?;
    servers.spawn(
        kind,
        &me,
        &[kind.to_owned(), port.to_string(), threads.to_string()],
    )?;
    Ok((servers, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Waits until a client gets an answer: an echo (`echo`) or a connect event (probe,
/// reference fan-out). A gateway destroys clients until a worker is linked, so retry.
async fn wait_ready(servers: &mut sys::Servers, addr: SocketAddr, echo: bool) -> io::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < READY_TIME_MAX {
        servers.check_alive()?;
        let attempt = async {
            let (mut rd, mut wr) = ws::connect(addr, None).await?;
            if echo {
                let mut frame = Vec::new();
                ws::encode_frame(ws::OPCODE_TEXT, b"ready?", true, &mut frame);
                tokio::io::AsyncWriteExt::write_all(&mut wr, &frame).await?;
            }
            let (_, p) = rd.next().await?;
            if echo && p != b"ready?" {
                return Err(io::Error::other("wrong echo"));
            }
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(io::Error::other(format!(
        "servers at {addr} not ready: {last}"
    )))
}

#[derive(Default)]
struct Report {
    summary: String,
    details: String,
    notes: Vec<String>,
}

fn suite(o: Options) -> io::Result<()> {
    let (soft, hard, refused) = sys::raise_fd_limit(IDLE_CONNS_WANTED as u64 + 1000);
    let mut report = Report::default();
    report.notes.push(format!(
        "fd limit (RLIMIT_NOFILE) here: soft {soft}, hard {hard}; each server process and the load generator is bound by it"
    ));
    if let Some(r) = refused {
        report.notes.push(r);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run_all(&o, &mut report, hard))?;
    let text = render(&o, &report);
    if let Some(path) = &o.out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &text)?;
    }
    println!("{text}");
    Ok(())
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn fmt_us(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e6)
}

fn ratio(ours: f64, reference: f64) -> String {
    if reference > 0.0 {
        format!("{:.0}%", ours / reference * 100.0)
    } else {
        "–".to_owned()
    }
}

async fn run_all(o: &Options, report: &mut Report, fd_hard: u64) -> io::Result<()> {
    let sizes: &[usize] = &[64, 4096];
    let clients: &[usize] = if o.quick { &[1, 50] } else { &[1, 10, 50, 200] };
    let warmup = Duration::from_millis(500);
    if o.runs("echo") || o.runs("idle") {
        let (mut ours, ours_addr) = start_ours(o, "echo.wasm")?;
        wait_ready(&mut ours, ours_addr, true).await?;
        let (mut reference, ref_addr) = start_ref("ref-echo", o.ref_threads)?;
        wait_ready(&mut reference, ref_addr, true).await?;
        if o.runs("echo") {
            let _ = writeln!(
                report.details,
                "\n### Echo (closed loop, one message in flight per client)\n\n\
                 | clients | size | ours msgs/s | ref msgs/s | ratio | ours p50/p99/p999 µs | ref p50/p99/p999 µs | ours server µs/msg (gateway + worker) | ref server µs/msg | server write calls/msg ours/ref | loadgen CPU ours/ref | errors |\n\
                 |---|---|---|---|---|---|---|---|---|---|---|---|"
            );
            for &size in sizes {
                for &c in clients {
                    // Ours and the reference alternate, so a slow moment of the machine
                    // hits both; each keeps its median run.
                    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
                    for _ in 0..o.repeat {
                        runs_a.push(
                            scenarios::echo(ours_addr, c, size, warmup, o.window, &ours.pids())
                                .await?,
                        );
                        runs_b.push(
                            scenarios::echo(ref_addr, c, size, warmup, o.window, &reference.pids())
                                .await?,
                        );
                    }
                    let a = median_run(runs_a, EchoResult::rate);
                    let b = median_run(runs_b, EchoResult::rate);
                    eprintln!(
                        "echo C={c} {size}B: ours {:.0}/s {:.2}µs/msg, ref {:.0}/s {:.2}µs/msg",
                        a.rate(),
                        a.server_us(),
                        b.rate(),
                        b.server_us()
                    );
                    echo_row(report, c, size, &a, &b);
                }
            }
        }
        if o.runs("idle") {
            let sources: Vec<IpAddr> = (1..=8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect();
            let most = (fd_hard.saturating_sub(FD_RESERVE) as usize).min(IDLE_CONNS_WANTED);
            let mut steps: Vec<usize> =
                [1_000, 10_000].into_iter().filter(|s| *s <= most).collect();
            if let Some(only) = &o.idle_steps {
                steps = only.iter().copied().filter(|s| *s <= most).collect();
            } else if o.quick {
                steps.truncate(1);
            } else {
                steps.push(most);
            }
            if most < IDLE_CONNS_WANTED {
                report.notes.push(format!(
                    "idle: 100k connections need 100k fds in the gateway process (and in the load generator); \
                     the hard RLIMIT_NOFILE here is {fd_hard}, so one gateway process holds at most ≈{most}: the single-process steps stop there"
                ));
            }
            let gateway = ours.pid("gateway").unwrap_or(0);
            let mut a = scenarios::idle(ours_addr, &steps, &sources, gateway).await?;
            let reference_pid = reference.pids()[0];
            let mut b = scenarios::idle(ref_addr, &steps, &sources, reference_pid).await?;
            if most < IDLE_CONNS_WANTED && !o.quick && o.idle_steps.is_none() {
                // One process cannot hold 100k here; a deployment of several gateway
                // processes can (the original runs several gateway processes too).
                let processes = IDLE_CONNS_WANTED.div_ceil(most - SPREAD_MARGIN);
                report.notes.push(format!(
                    "idle {IDLE_CONNS_WANTED}: spread over {processes} gateway processes (one register, one worker linked to all) \
                     and {processes} holder processes of the load generator, as no process may hold more than {most} connections here; \
                     the reference likewise runs as {processes} raw echo processes"
                ));
                let (mut spread, addrs) = start_ours_spread(o, "echo.wasm", processes)?;
                for addr in &addrs {
                    wait_ready(&mut spread, *addr, true).await?;
                }
                let pids: Vec<u32> = (0..processes)
                    .filter_map(|i| {
                        spread.pid(&if i == 0 {
                            "gateway".to_owned()
                        } else {
                            format!("gateway{i}")
                        })
                    })
                    .collect();
                let targets: Vec<(SocketAddr, u32)> = addrs.into_iter().zip(pids).collect();
                a.push(scenarios::idle_spread(&targets, IDLE_CONNS_WANTED)?);
                spread.check_alive()?;
                drop(spread);
                let (mut refs, addrs) = start_ref_spread(processes)?;
                for addr in &addrs {
                    wait_ready(&mut refs, *addr, true).await?;
                }
                let targets: Vec<(SocketAddr, u32)> = addrs.into_iter().zip(refs.pids()).collect();
                b.push(scenarios::idle_spread(&targets, IDLE_CONNS_WANTED)?);
            }
            idle_rows(report, &a, &b);
        }
        ours.check_alive()?;
    }
    if o.runs("broadcast") {
        let (mut ours, ours_addr) = start_ours(o, "probe.wasm")?;
        wait_ready(&mut ours, ours_addr, false).await?;
        let (mut reference, ref_addr) = start_ref("ref-fanout", 1)?;
        wait_ready(&mut reference, ref_addr, false).await?;
        let ks: &[usize] = if let Some(ks) = &o.broadcast_ks {
            ks
        } else if o.quick {
            &[100, 1000]
        } else {
            &[100, 500, 1000, 10_000]
        };
        let window = 4;
        let _ = writeln!(
            report.details,
            "\n### Broadcast (sendToGroup from the probe worker; {window} broadcasts in flight; 64-byte messages)\n\n\
             | receivers | ours deliveries/s | ref deliveries/s | ratio | ours p50/p99 µs | ref p50/p99 µs | ours server µs/delivery (gateway + worker) | ref server µs/delivery | server write calls/delivery ours/ref | loadgen CPU ours/ref | missing |\n\
             |---|---|---|---|---|---|---|---|---|---|---|"
        );
        for &k in ks {
            let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
            for _ in 0..o.repeat {
                runs_a.push(
                    scenarios::broadcast(ours_addr, k, window, 64, o.window, &ours.pids()).await?,
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                runs_b.push(
                    scenarios::broadcast(ref_addr, k, window, 64, o.window, &reference.pids())
                        .await?,
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let a = median_run(runs_a, BroadcastResult::rate);
            let b = median_run(runs_b, BroadcastResult::rate);
            eprintln!(
                "broadcast K={k}: ours {:.0}/s {:.3}µs/delivery, ref {:.0}/s {:.3}µs/delivery",
                a.rate(),
                a.server_us(),
                b.rate(),
                b.server_us()
            );
            broadcast_row(report, k, &a, &b);
        }
        ours.check_alive()?;
    }
    Ok(())
}

/// The run with the median rate (the lower middle one of an even count).
fn median_run<T>(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> T {
    assert!(!runs.is_empty(), "at least one run per figure");
    runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    runs.swap_remove((runs.len() - 1) / 2)
}

/// Gateway and worker CPU per message, µs: the servers were started register, gateway,
/// worker.
fn split_us(split: &[Duration], n: u64) -> String {
    let us = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e6 / n.max(1) as f64);
    format!("{:.2} + {:.2}", us(split.get(1)), us(split.get(2)))
}

fn echo_row(report: &mut Report, c: usize, size: usize, a: &EchoResult, b: &EchoResult) {
    let lat = |r: &EchoResult| {
        format!(
            "{}/{}/{}",
            fmt_us(r.lat.p50),
            fmt_us(r.lat.p99),
            fmt_us(r.lat.p999)
        )
    };
    let _ = writeln!(
        report.details,
        "| {c} | {size} B | {} | {} | {} | {} | {} | {:.1} ({}) | {:.1} | {:.2}/{:.2} | {:.2}/{:.2} s | {}/{} |",
        fmt_rate(a.rate()),
        fmt_rate(b.rate()),
        ratio(a.rate(), b.rate()),
        lat(a),
        lat(b),
        a.server_us(),
        split_us(&a.cpu.split, a.msgs),
        b.server_us(),
        a.writes_per(),
        b.writes_per(),
        a.cpu.loadgen.as_secs_f64(),
        b.cpu.loadgen.as_secs_f64(),
        a.errors,
        b.errors,
    );
    let _ = writeln!(
        report.summary,
        "| echo through the wasm worker, C={c}, {size} B | {} msgs/s (p99 {} µs) | {} msgs/s (raw echo) | {} | {:.1} µs (ref {:.1}) |",
        fmt_rate(a.rate()).trim_end_matches("/s"),
        fmt_us(a.lat.p99),
        fmt_rate(b.rate()).trim_end_matches("/s"),
        ratio(a.rate(), b.rate()),
        a.server_us(),
        b.server_us(),
    );
}

fn broadcast_row(report: &mut Report, k: usize, a: &BroadcastResult, b: &BroadcastResult) {
    let _ = writeln!(
        report.details,
        "| {k} | {} | {} | {} | {}/{} | {}/{} | {:.3} ({}) | {:.3} | {:.3}/{:.3} | {:.2}/{:.2} s | {}/{} |",
        fmt_rate(a.rate()),
        fmt_rate(b.rate()),
        ratio(a.rate(), b.rate()),
        fmt_us(a.lat.p50),
        fmt_us(a.lat.p99),
        fmt_us(b.lat.p50),
        fmt_us(b.lat.p99),
        a.server_us(),
        split_us(&a.cpu.split, a.deliveries),
        b.server_us(),
        a.writes_per(),
        b.writes_per(),
        a.cpu.loadgen.as_secs_f64(),
        b.cpu.loadgen.as_secs_f64(),
        a.missing,
        b.missing,
    );
    let _ = writeln!(
        report.summary,
        "| broadcast, K={k} receivers | {} deliveries/s (p99 {} µs) | {} deliveries/s (coalescing fan-out) | {} | {:.3} µs (ref {:.3}) |",
        fmt_rate(a.rate()).trim_end_matches("/s"),
        fmt_us(a.lat.p99),
        fmt_rate(b.rate()).trim_end_matches("/s"),
        ratio(a.rate(), b.rate()),
        a.server_us(),
        b.server_us(),
    );
}

fn idle_rows(report: &mut Report, a: &[IdleStep], b: &[IdleStep]) {
    let _ = writeln!(
        report.details,
        "\n### Idle WebSocket connections (server RSS growth / connections; then every connection echoes a probe)\n\n\
         | connections | ours RSS/conn | ref RSS/conn | ours answered | ref answered | stopped |\n|---|---|---|---|---|---|"
    );
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i);
        let _ = writeln!(
            report.details,
            "| {} | {:.0} B | {} | {}/{} | {} | {} |",
            x.conns,
            x.rss_per_conn,
            y.map_or("–".to_owned(), |y| format!("{:.0} B", y.rss_per_conn)),
            x.answered,
            x.conns,
            y.map_or("–".to_owned(), |y| format!("{}/{}", y.answered, y.conns)),
            x.stopped
                .clone()
                .or_else(|| y.and_then(|y| y.stopped.clone()))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            report.summary,
            "| idle WebSocket connections, {} held{} | {:.0} B gateway RSS/conn, {}/{} probes answered | {} (raw echo server{}) | {} | – |",
            x.conns,
            if x.processes > 1 {
                format!(" across {} gateway processes", x.processes)
            } else {
                String::new()
            },
            x.rss_per_conn,
            x.answered,
            x.conns,
            y.map_or("–".to_owned(), |y| format!("{:.0} B RSS/conn", y.rss_per_conn)),
            y.filter(|y| y.processes > 1)
                .map_or(String::new(), |y| format!(" ×{}", y.processes)),
            y.map_or("–".to_owned(), |y| ratio(x.rss_per_conn, y.rss_per_conn)),
        );
    }
}

fn render(o: &Options, report: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "## Benchmark results\n\n\
         Loopback, {} core(s); gateway shards {}, worker instances {}, reference threads {}; \
         measured window {:.0} s after a warm-up; each echo and broadcast figure is the median of {} \
         runs (ours and the reference alternating). Server CPU = user+system time of the \
         server processes (gateway + worker + register, or the reference) over the window, from /proc; \
         server write calls = their `syscw` from /proc over the same window.\n\n\
         | figure | ours | reference | ratio | server CPU per message |\n|---|---|---|---|---|",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        o.gateway_count,
        o.worker_count,
        o.ref_threads,
        o.window.as_secs_f64(),
        o.repeat,
    );
    text.push_str(&report.summary);
    text.push_str(&report.details);
    if !report.notes.is_empty() {
        text.push_str("\nNotes:\n\n");
        for n in &report.notes {
            let _ = writeln!(text, "- {n}");
        }
    }
    text
}
