//! `gatewayworker start`: a register, a gateway and business workers in one process, for a
//! single machine. With no flags it runs the bundled chat example on the original's
//! default ports (register 1236, websocket 8282, lan ports from 2000), plus the demo chat
//! page on http://0.0.0.0:55151/ (`demo`).

use std::net::SocketAddr;
use std::path::PathBuf;

use gatewayworker::gateway::shards;
use gatewayworker::protocol::public::PublicProtocol;
use gatewayworker::register::driver as register_driver;

use super::args::{GatewayArgs, RegisterArgs, StartArgs, WorkerArgs};
use super::error::CliError;
use super::metrics::{MetricsServer, Source};
use super::signals::Termination;
use super::{demo, gateway, register, worker};

/// The bundled demo worker, relative to the repository root.
pub const WASM_DEFAULT: &str = "wasm-workers/dist/chat.wasm";

/// Runs the three roles until a termination signal, then stops them workers first.
pub fn run(args: StartArgs) -> Result<(), CliError> {
    let register_addr = args
        .register
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1236)));
    let register_settings = register::settings(&RegisterArgs {
        listen: Some(format!("text://{register_addr}")),
        secret: args.secret.clone(),
        ..RegisterArgs::default()
    })?;
    let wasm = args
        .wasm
        .clone()
        .unwrap_or_else(|| PathBuf::from(WASM_DEFAULT));
    let termination = Termination::install()?;

    // The register first: with port 0 the others need the port it got.
    let register_source = Source::register();
    let register =
        register_driver::start_observed(register_settings, register_source.register_observer())
            .map_err(|e| CliError::bind(register_addr, e))?;
    let register_addr = register.addr.to_string();
    let gateway_settings = gateway::settings(&GatewayArgs {
        listen: args.listen.clone(),
        start_port: args.start_port,
        count: args.gateway_count,
        register: Some(vec![register_addr.clone()]),
        secret: args.secret.clone(),
        compression: args.compression,
        package_size_max: args.package_size_max,
        ..GatewayArgs::default()
    })?;
    let worker_settings = worker::settings(&WorkerArgs {
        wasm: Some(wasm.clone()),
        count: Some(args.worker_count.unwrap_or(2)),
        register: Some(vec![register_addr]),
        secret: args.secret.clone(),
        fuel_per_event: args.fuel_per_event,
        fuel_per_input_byte: args.fuel_per_input_byte,
        memory_max_bytes: args.memory_max_bytes,
        event_time_max_ms: args.event_time_max_ms,
        pooling: args.pooling,
        package_size_max: args.package_size_max,
        ..WorkerArgs::default()
    })?;
    let limits = worker::limits_summary(&worker_settings);

    gateway::probe_addresses(&gateway_settings)?;
    let demo_listener = demo_listener(&args, gateway_settings.core.protocol)?;
    let scheme = if gateway_settings.tls.is_some() {
        "wss"
    } else {
        "ws"
    };
    let listen = gateway_settings.listen;
    let gateway_source = Source::gateway(gateway_settings.count);
    let gateway = shards::start_observed(gateway_settings, |i| gateway_source.gateway_observer(i))
        .map_err(|e| CliError::bind(listen, e))?;
    let workers = worker::start(worker_settings)?;
    let demo = demo_listener
        .map(|listener| {
            listener.serve(demo::Gateway {
                scheme,
                public_addr: gateway.public_addr,
            })
        })
        .transpose()?;
    let metrics = args
        .metrics
        .map(|addr| {
            let all = Source::All(vec![
                register_source,
                gateway_source,
                Source::Worker(workers.observer()),
            ]);
            MetricsServer::start(addr, all)
        })
        .transpose()?;
    tracing::info!(
        register = %register.addr,
        public = %gateway.public_addr,
        lan = ?gateway.lan_addrs,
        wasm = %wasm.display(),
        demo = %demo.as_ref().map_or("off".to_owned(), |d| d.url()),
        %limits,
        "gatewayworker started"
    );
    println!(
        "gatewayworker: running {} — clients connect to {}:{} (register {}, lan {:?}); Ctrl-C stops",
        wasm.display(),
        if gateway.public_addr.ip().is_unspecified() { "ws://127.0.0.1".to_owned() } else { format!("ws://{}", gateway.public_addr.ip()) },
        gateway.public_addr.port(),
        register.addr,
        gateway.lan_addrs,
    );
    if let Some(demo) = &demo {
        println!(
            "gatewayworker: demo chat page at {} — open it in a browser",
            demo.url()
        );
    }

    let signal = termination.wait(|| gateway.is_finished() || register.is_finished());
    tracing::info!(signal = signal.unwrap_or("none"), "stopping");
    if let Some(demo) = demo {
        demo.shutdown();
    }
    let workers = workers
        .shutdown()
        .map_err(|e| CliError::io("business worker", e));
    let gateway = gateway.shutdown().map_err(|e| CliError::io("gateway", e));
    let register = register.shutdown().map_err(|e| CliError::io("register", e));
    if let Some(metrics) = metrics {
        metrics.shutdown();
    }
    workers?;
    gateway?;
    register?;
    if signal.is_none() {
        return Err(CliError::io(
            "gatewayworker",
            std::io::Error::other("a role stopped unexpectedly"),
        ));
    }
    Ok(())
}

/// Binds the demo page's port unless `--no-demo`. The page talks websocket, so a gateway
/// on `text://` or `frame://` gets no page: an error when `--demo-listen` asked for one,
/// silently off otherwise.
fn demo_listener(
    args: &StartArgs,
    protocol: PublicProtocol,
) -> Result<Option<demo::DemoListener>, CliError> {
    if args.no_demo {
        return Ok(None);
    }
    if protocol != PublicProtocol::Websocket {
        return match args.demo_listen {
            Some(_) => Err(CliError::BadSetting {
                setting: "--demo-listen",
                message: "the demo page needs a websocket:// gateway (see --listen)".to_owned(),
            }),
            None => Ok(None),
        };
    }
    let addr = args.demo_listen.unwrap_or(demo::LISTEN_DEFAULT);
    match demo::DemoListener::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        // The page is an extra that a bare `start` asks for: say how to do without it.
        Err(CliError::AddrInUse(addr)) => Err(CliError::BadSetting {
            setting: "--demo-listen",
            message: format!(
                "address {addr} is in use (another --demo-listen ADDRESS, or --no-demo)"
            ),
        }),
        Err(e) => Err(e),
    }
}
