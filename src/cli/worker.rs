//! `gatewayworker worker`: runs `count` business worker instances of a .wasm module until
//! SIGINT/SIGTERM.

use std::time::Duration;

use gatewayworker::business::{self, BusinessSettings, RunningWorker};

use super::args::WorkerArgs;
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
    Ok(settings)
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
    let running = start(settings)?;
    let metrics = args
        .metrics
        .map(|addr| MetricsServer::start(addr, Source::Worker(running.observer())))
        .transpose()?;
    tracing::info!(
        %wasm,
        count,
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
