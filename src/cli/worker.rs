//! `gatewayworker worker`: runs `count` business worker instances of a .wasm module until
//! SIGINT/SIGTERM.

use std::time::Duration;

use gatewayworker::business::{self, BusinessSettings, RunningWorker};

use gatewayworker::protocol::frame::HEADER_LEN;

use super::args::{OnOff, WorkerArgs};
use super::error::CliError;
use super::metrics::{MetricsServer, Source};
use super::signals::Termination;

/// Default `--register`, the original's usual register address.
pub const REGISTER_DEFAULT: &str = "127.0.0.1:1236";

/// Turns the flags into the worker's settings.
pub fn settings(args: &WorkerArgs) -> Result<BusinessSettings, CliError> {
    let count = args.count.unwrap_or(1);
    if count == 0 {
        return Err(CliError::BadSetting {
            setting: "--count",
            message: "must be at least 1".to_owned(),
        });
    }
    let Some(wasm) = &args.wasm else {
        return Err(CliError::BadSetting {
            setting: "--wasm",
            message: "required: give the .wasm module (flag or `wasm` in [worker])".to_owned(),
        });
    };
    let registers = match &args.register {
        Some(list) if list.is_empty() => {
            return Err(CliError::BadSetting {
                setting: "--register",
                message: "needs at least one address".to_owned(),
            })
        }
        Some(list) => list.clone(),
        None => vec![REGISTER_DEFAULT.to_owned()],
    };
    let name = args.name.as_deref().unwrap_or("BusinessWorker");
    let mut settings = BusinessSettings::new(name, count, registers, wasm);
    if let Some(secret) = &args.secret {
        settings.core.secret_key = secret.clone();
    }
    settings.reload_poll = args.reload_poll.map(Duration::from_secs);
    if let Some(ms) = args.suspect_after_ms {
        settings.core.suspect_after = (ms > 0).then(|| Duration::from_millis(ms));
    }
    apply_limits(&mut settings, args)?;
    Ok(settings)
}

/// The guest limits and the frame size: `--fuel-per-event`, `--fuel-per-input-byte`,
/// `--memory-max-bytes`, `--event-time-max-ms`, `--pooling`, `--package-size-max`.
fn apply_limits(settings: &mut BusinessSettings, args: &WorkerArgs) -> Result<(), CliError> {
    let host = &mut settings.host;
    if let Some(fuel) = args.fuel_per_event {
        host.fuel_per_event = at_least("--fuel-per-event", fuel, 1)?;
    }
    if let Some(fuel) = args.fuel_per_input_byte {
        host.fuel_per_input_byte = fuel;
    }
    if let Some(bytes) = args.memory_max_bytes {
        // One wasm page; a module cannot start with less.
        host.memory_size_max = at_least("--memory-max-bytes", bytes as u64, 65_536)? as usize;
    }
    if let Some(ms) = args.event_time_max_ms {
        host.epoch_deadline = (ms > 0).then(|| Duration::from_millis(ms));
    }
    if args.pooling == Some(OnOff::On) {
        host.pooling_instances_max = Some(settings.count);
    }
    if let Some(bytes) = args.package_size_max {
        let max = at_least("--package-size-max", bytes as u64, HEADER_LEN as u64)?;
        if max > u64::from(u32::MAX) {
            return Err(CliError::BadSetting {
                setting: "--package-size-max",
                message: format!("must be at most {}", u32::MAX),
            });
        }
        settings.core.package_size_max = max as usize;
        // A guest cannot hand the host a buffer that no frame could carry.
        host.request_size_max = max as usize;
    }
    // A link's output queue must hold one largest frame, or every reply of that size would
    // be dropped (the queue's default, 10 240 000, is below the default frame size).
    settings.core.link_queue_bytes_max = settings
        .core
        .link_queue_bytes_max
        .max(settings.core.package_size_max);
    Ok(())
}

fn at_least(setting: &'static str, value: u64, min: u64) -> Result<u64, CliError> {
    if value < min {
        return Err(CliError::BadSetting {
            setting,
            message: format!("must be at least {min}"),
        });
    }
    Ok(value)
}

/// The limits in effect, for the startup log line.
pub fn limits_summary(settings: &BusinessSettings) -> String {
    let host = &settings.host;
    format!(
        "fuel-per-event={} fuel-per-input-byte={} memory-max-bytes={} event-time-max-ms={} pooling={} package-size-max={}",
        host.fuel_per_event,
        host.fuel_per_input_byte,
        host.memory_size_max,
        host.epoch_deadline.map_or(0, |d| d.as_millis()),
        if host.pooling_instances_max.is_some() { "on" } else { "off" },
        settings.core.package_size_max,
    )
}

/// Starts the instances; a module that cannot be loaded is one line naming the file.
pub fn start(settings: BusinessSettings) -> Result<RunningWorker, CliError> {
    let path = settings.wasm_path.display().to_string();
    business::start(settings).map_err(|e| CliError::BadSetting {
        setting: "--wasm",
        message: format!("{path}: {e}"),
    })
}

/// Runs the workers until a termination signal, then stops them.
pub fn run(args: WorkerArgs) -> Result<(), CliError> {
    let settings = settings(&args)?;
    let termination = Termination::install()?;
    let count = settings.count;
    let wasm = settings.wasm_path.display().to_string();
    let limits = limits_summary(&settings);
    let running = start(settings)?;
    let metrics = args
        .metrics
        .map(|addr| MetricsServer::start(addr, Source::Worker(running.observer())))
        .transpose()?;
    tracing::info!(
        %wasm,
        count,
        %limits,
        metrics = ?metrics.as_ref().map(|m| m.addr),
        "business worker ready"
    );
    let signal = termination.wait(|| false);
    tracing::info!(signal = signal.unwrap_or("?"), "business worker stopping");
    let result = running
        .shutdown()
        .map_err(|e| CliError::io("business worker", e));
    if let Some(metrics) = metrics {
        metrics.shutdown();
    }
    result
}
