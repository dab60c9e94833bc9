//! Waiting for SIGINT or SIGTERM, the two ways a person or a supervisor asks a server to
//! stop. Handlers are installed before any listener opens, so a signal that arrives
//! during start-up is kept, not fatal.

use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::error::CliError;

/// Installed handlers and the small runtime that waits on them.
pub struct Termination {
    runtime: Runtime,
    interrupt: Signal,
    terminate: Signal,
}

impl Termination {
    /// Installs the SIGINT and SIGTERM handlers.
    pub fn install() -> Result<Termination, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::io("starting the signal runtime", e))?;
        let (interrupt, terminate) = {
            let _guard = runtime.enter();
            let interrupt = signal(SignalKind::interrupt())
                .map_err(|e| CliError::io("installing the SIGINT handler", e))?;
            let terminate = signal(SignalKind::terminate())
                .map_err(|e| CliError::io("installing the SIGTERM handler", e))?;
            (interrupt, terminate)
        };
        Ok(Termination {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Blocks until SIGINT or SIGTERM arrives; returns the signal's name.
    pub fn wait(mut self) -> &'static str {
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        })
    }
}
