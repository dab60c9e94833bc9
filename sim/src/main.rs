//! `sim`: runs the cluster simulation for one seed or a sweep of seeds.
//!
//! ```text
//! cargo run -p sim --release -- --seed 7 --faults all
//! cargo run -p sim --release -- --seeds 200 --faults hold,crash_gateway --duration 600
//! ```
//! `--seed S` runs one seed (and prints its trace tail on failure); `--seeds N` runs seeds
//! `S..S+N` (S defaults to 0); `--duration SECS` keeps sweeping new seeds until that much
//! real time has passed; `--faults none|all|name,name` picks the faults; `--clients N`,
//! `--ops N`, `--gateways N`, `--shards N`, `--workers N`, `--instances N` size the world. Prints seeds per minute at the end; exits 1 on a failure.
#![allow(
    clippy::disallowed_methods,
    reason = "the command line reports how long the run took in wall-clock time"
)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sim::{Faults, SimConfig};

struct Args {
    seed: u64,
    seeds: Option<u64>,
    duration: Option<Duration>,
    faults: Faults,
    clients: Option<usize>,
    ops: Option<usize>,
    gateways: Option<usize>,
    shards: Option<usize>,
    workers: Option<usize>,
    instances: Option<u32>,
    tick_ms: Option<u64>,
    quiet_ms: Option<u64>,
    verbose: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seed: 0,
        seeds: None,
        duration: None,
        faults: Faults::none(),
        clients: None,
        ops: None,
        gateways: None,
        shards: None,
        workers: None,
        instances: None,
        tick_ms: None,
        quiet_ms: None,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--seed" => args.seed = number(value()?)?,
            "--seeds" => args.seeds = Some(number(value()?)?),
            "--duration" => args.duration = Some(Duration::from_secs(number(value()?)?)),
            "--faults" => args.faults = Faults::parse(&value()?)?,
            "--clients" => args.clients = Some(number(value()?)? as usize),
            "--ops" => args.ops = Some(number(value()?)? as usize),
            "--gateways" => args.gateways = Some(number(value()?)?.max(1) as usize),
            "--shards" => args.shards = Some(number(value()?)?.max(1) as usize),
            "--workers" => args.workers = Some(number(value()?)?.max(1) as usize),
            "--instances" => args.instances = Some(number(value()?)?.max(1) as u32),
            "--tick-ms" => args.tick_ms = Some(number(value()?)?.max(1)),
            "--quiet-ms" => args.quiet_ms = Some(number(value()?)?),
            "--verbose" => args.verbose = true,
            "--help" | "-h" => {
                return Err("usage: sim [--seed S] [--seeds N] [--duration SECS] [--faults none|all|list] [--clients N] [--ops N] [--gateways N] [--shards N] [--workers N] [--instances N] [--tick-ms N] [--quiet-ms N] [--verbose]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Prints log lines with the simulated time of the running world (0 outside one).
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let at = if turmoil::in_simulation() {
            turmoil::elapsed()
        } else {
            Duration::ZERO
        };
        write!(w, "{:>10.3}s", at.as_secs_f64())
    }
}

fn main() -> ExitCode {
    // The hosts' own logs (gateway, worker, register, GatewayClient), for reading a
    // failing seed: `SIM_LOG=debug` or any env filter (`SIM_LOG=gatewayworker::client=debug`).
    if let Ok(filter) = std::env::var("SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimTime)
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .init();
    }
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let single = args.seeds.is_none() && args.duration.is_none();
    let count = args.seeds.unwrap_or(if single { 1 } else { u64::MAX });
    let mut ran = 0u64;
    let mut failed = 0u64;
    let mut repros = Vec::new();
    for seed in args.seed..args.seed.saturating_add(count) {
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let mut config = SimConfig::new(seed, args.faults);
        if let Some(c) = args.clients {
            config.workload.clients = c;
        }
        if let Some(o) = args.ops {
            config.workload.ops_per_client = o;
        }
        if let Some(g) = args.gateways {
            config.gateways = g;
        }
        if let Some(s) = args.shards {
            config.shards = s;
        }
        if let Some(w) = args.workers {
            config.workers = w;
        }
        if let Some(i) = args.instances {
            config.instances = i;
        }
        if let Some(t) = args.tick_ms {
            config.tick = Duration::from_millis(t);
        }
        if let Some(q) = args.quiet_ms {
            config.quiet = Duration::from_millis(q);
        }
        let outcome = sim::run(&config);
        ran += 1;
        println!("{}", outcome.summary());
        if args.verbose {
            println!("{}", outcome.trace.tail(usize::MAX));
        }
        if !outcome.passed() {
            failed += 1;
            println!("{}", outcome.report(&config));
            repros.push(config.repro());
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    println!(
        "{ran} seed(s), {failed} failed, faults {}, {:.1}s: {:.1} seeds/minute",
        args.faults.describe(),
        started.elapsed().as_secs_f64(),
        ran as f64 / minutes.max(1e-9)
    );
    if !repros.is_empty() {
        println!("failing seeds:");
        for r in &repros {
            println!("  {r}");
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
