//! What can go wrong on the command line, each as one line a person can act on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A failure of the command line; printed as `gatewayworker: <message>`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments do not parse (unknown flag, bad value...).
    #[error("{0}")]
    Usage(String),
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file given with `--config`.
        path: PathBuf,
        /// Why it cannot be read.
        source: io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a bad value.
    #[error("config file {path}{line}: {message}")]
    ConfigInvalid {
        /// The file given with `--config`.
        path: PathBuf,
        /// `, line N` when the parser knows where, else empty.
        line: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A setting has a value the program cannot use.
    #[error("{setting}: {message}")]
    BadSetting {
        /// The flag (or config key) at fault, e.g. `--listen`.
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Another process listens on an address we must bind.
    #[error("address {0} is in use")]
    AddrInUse(SocketAddr),
    /// An address cannot be bound for another reason.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The register did not answer the way a register does.
    #[error("register {addr}: {message}")]
    Register {
        /// The register address as given.
        addr: String,
        /// What went wrong (connect refused, timeout, bad answer...).
        message: String,
    },
    /// A Gateway API call made by `client` failed (register or gateway unreachable,
    /// wrong secret key, refused argument...).
    #[error("{0}")]
    Client(#[from] gatewayworker::client::ClientError),
    /// Some other I/O failure, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A `client` call returned `false`, as the original's method does (already printed
    /// on stdout); the text says why.
    #[error("the call returned false: {0}")]
    ReturnedFalse(&'static str),
    /// `status` reached the register but some gateways did not answer (already printed).
    #[error("{0} gateway(s) did not answer")]
    GatewaysMissing(usize),
}

impl CliError {
    /// The process exit code: 2 for usage errors (like clap), 3 for a `client` call that
    /// returned `false`, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::ReturnedFalse(_) => 3,
            _ => 1,
        }
    }

    /// Turns a bind failure into the error a person can act on.
    pub fn bind(addr: SocketAddr, source: io::Error) -> CliError {
        if source.kind() == io::ErrorKind::AddrInUse {
            CliError::AddrInUse(addr)
        } else {
            CliError::Bind { addr, source }
        }
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>, source: io::Error) -> CliError {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}
