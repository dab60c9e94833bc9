//! What a [`GatewayClient`](super::GatewayClient) call can fail with.

use std::time::Duration;

use crate::api::ApiError;
use crate::protocol::client_id::GatewayAddr;

/// Why a call failed. Every variant says where (register or gateway address) and why, in
/// one line a person can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The call itself was refused, as the original library throws or refuses (malformed
    /// client id, a session that is not an array, no gateway to ask...).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No register could be asked for the gateway list.
    #[error("register {register}: {reason}")]
    Register {
        /// The register address as configured.
        register: String,
        /// What went wrong (connect refused, closed without answering, timeout...).
        reason: String,
    },
    /// The register answered with an empty gateway list.
    #[error("register {register} knows no gateway")]
    NoGateway {
        /// The register address as configured.
        register: String,
    },
    /// A gateway could not be reached or did not answer; the call is incomplete.
    #[error("gateway {gateway}: {reason}")]
    Gateway {
        /// The gateway's lan address.
        gateway: GatewayAddr,
        /// What went wrong.
        reason: LinkFailure,
    },
    /// No gateway address was configured (neither a register nor a gateway list).
    #[error("no register and no gateway address configured")]
    NotConfigured,
}

/// How one short exchange with a gateway or a register failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkFailure {
    /// The TCP connect failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The TCP connect did not complete in time.
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    /// Writing the request failed.
    #[error("cannot send: {0}")]
    Write(String),
    /// Reading the reply failed.
    #[error("cannot read: {0}")]
    Read(String),
    /// The peer closed the connection before its answer: a secret key mismatch closes it
    /// without a word (spec 4 and 8).
    #[error("closed the connection before answering (wrong secret key?)")]
    Closed,
    /// No answer in time.
    #[error("no answer within {0:?}")]
    ReplyTimeout(Duration),
    /// The gateway is suspect: it has owed an answer (or a connect) for this long without
    /// a byte back, so the call did not wait for it (a query part: not sent, or its late
    /// answer discarded; a send: not sent, too many exchanges in flight to it already).
    /// Reported like a timeout ([`GatewayClient`](super::GatewayClient)'s suspect
    /// gateways).
    #[error("suspect: no answer for {0:?} or more, not waited for")]
    Suspect(Duration),
    /// The answer is longer than the configured bound.
    #[error("answer longer than {0} bytes")]
    TooLarge(u64),
}
