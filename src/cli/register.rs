//! `gatewayworker register`: runs a register until SIGINT/SIGTERM.

use std::time::Duration;

use gatewayworker::register::driver::{self, RegisterSettings};

use super::address::register_listen;
use super::args::RegisterArgs;
use super::error::CliError;
use super::metrics::{MetricsServer, Source};
use super::signals::Termination;

/// Default `--listen`, the original's usual register address.
pub const LISTEN_DEFAULT: &str = "text://0.0.0.0:1236";

/// Turns merged flags into the register's settings (defaults for what is unset).
pub fn settings(args: &RegisterArgs) -> Result<RegisterSettings, CliError> {
    let listen = args.listen.as_deref().unwrap_or(LISTEN_DEFAULT);
    let addr = register_listen(listen).map_err(|message| CliError::BadSetting {
        setting: "--listen",
        message,
    })?;
    let mut settings = RegisterSettings::new(addr, args.secret.clone().unwrap_or_default());
    let core = &mut settings.core;
    if let Some(seconds) = args.first_line_timeout {
        let seconds = positive("--first-line-timeout", seconds as usize)?;
        core.first_line_timeout = Duration::from_secs(seconds as u64);
    }
    if let Some(n) = args.line_length_max {
        core.line_bytes_max = positive("--line-length-max", n)?;
    }
    if let Some(n) = args.pending_max {
        core.pending_bytes_max = positive("--pending-max", n)?;
    }
    if let Some(n) = args.connections_max {
        core.connections_max = positive("--connections-max", n)?;
    }
    Ok(settings)
}

/// A bound of 0 would refuse everything; say so instead of running uselessly.
pub fn positive(setting: &'static str, n: usize) -> Result<usize, CliError> {
    if n == 0 {
        return Err(CliError::BadSetting {
            setting,
            message: "must be at least 1".to_owned(),
        });
    }
    Ok(n)
}

/// Runs the register until a termination signal, then stops it cleanly.
pub fn run(args: RegisterArgs) -> Result<(), CliError> {
    let settings = settings(&args)?;
    let termination = Termination::install()?;
    let source = Source::register();
    let metrics = args
        .metrics
        .map(|addr| MetricsServer::start(addr, source.clone()))
        .transpose()?;
    let listen = settings.listen;
    let running = driver::start_observed(settings, source.register_observer())
        .map_err(|e| CliError::bind(listen, e))?;
    tracing::info!(
        listen = %running.addr,
        metrics = ?metrics.as_ref().map(|m| m.addr),
        "register ready"
    );
    let signal = termination.wait(|| running.is_finished());
    if let Some(signal) = signal {
        tracing::info!(signal, "register stopping");
    }
    let result = match (running.shutdown(), signal) {
        (Err(e), _) => Err(CliError::io("register", e)),
        (Ok(()), None) => Err(CliError::io(
            "register",
            std::io::Error::other("stopped unexpectedly"),
        )),
        (Ok(()), Some(_)) => Ok(()),
    };
    if let Some(metrics) = metrics {
        metrics.shutdown();
    }
    result?;
    tracing::info!("register stopped");
    Ok(())
}
