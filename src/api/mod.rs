//! The Gateway API a business worker (or an outside GatewayClient program) can call: one
//! [`ApiCall`] per method of the original `Lib\Gateway`, with the original's argument shapes.
//! Transport-free: nothing here knows about links, sockets or time.
//!
//! * this module: [`ApiCall`], [`ApiResult`], [`ApiError`], and [`CurrentClient`] (the
//!   client of the event a call is made in).
//! * [`plan`]: a call → the exact frames per gateway and how its completion is computed
//!   ([`plan::Planner`], [`plan::Plan`]); the same for a worker and a GatewayClient.
//! * [`merge`]: query replies of several gateways → one result, as the original folds them.
//! * [`gather`]: the reply slots of one query in flight, its deadline and timeout policy.
//!
//! Users: the wasm host turns guest imports into `ApiCall`s; the worker core and the
//! client library plan them and send the frames on their own links.
//!
//! Depends on [`crate::protocol`] only.

use bytes::Bytes;

use crate::protocol::php::PhpValue;

pub mod gather;
pub mod merge;
pub mod plan;

/// A client id as the API receives it: normally 20 hex characters; anything else is
/// malformed and handled the way the original library does (see each call).
pub type ClientIdText = Bytes;

/// A uid or group name (PHP string; ints are passed as their decimal text).
pub type Name = Bytes;

/// The client whose event is being handled (the original's `Context`).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentClient {
    /// Its client id text (20 lowercase hex characters).
    pub client_id: Bytes,
    /// The gateway it is connected to.
    pub gateway: crate::protocol::client_id::GatewayAddr,
    /// Its connection id on that gateway.
    pub connection_id: u32,
    /// The handler's current `$_SESSION` (null when it has none); `getAllClientSessions`
    /// reports it for the current client instead of the gateway's copy.
    pub session: PhpValue,
}

/// One call of the Gateway API.
#[allow(missing_docs)] // Variant fields are the original API's parameters, named as there.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// `sendToClient(client_id, message, raw)`.
    SendToClient {
        client_id: ClientIdText,
        message: PhpValue,
        raw: bool,
    },
    /// `sendToCurrentClient(message, raw)` (needs a current client).
    SendToCurrentClient { message: PhpValue, raw: bool },
    /// `sendToAll(message, client_id_list, exclude_client_id, raw)`.
    SendToAll {
        message: PhpValue,
        client_id_list: Option<Vec<ClientIdText>>,
        exclude: Option<Vec<ClientIdText>>,
        raw: bool,
    },
    /// `sendToUid(uid | [uid...], message, raw)`.
    SendToUid {
        uids: Vec<Name>,
        message: PhpValue,
        raw: bool,
    },
    /// `sendToGroup(group | [group...], message, exclude_client_id, raw)`.
    SendToGroup {
        groups: Vec<Name>,
        message: PhpValue,
        exclude: Option<Vec<ClientIdText>>,
        raw: bool,
    },
    /// `bindUid(client_id, uid)`.
    BindUid { client_id: ClientIdText, uid: Name },
    /// `unbindUid(client_id, uid)`.
    UnbindUid { client_id: ClientIdText, uid: Name },
    /// `joinGroup(client_id, group)`.
    JoinGroup {
        client_id: ClientIdText,
        group: Name,
    },
    /// `leaveGroup(client_id, group)`.
    LeaveGroup {
        client_id: ClientIdText,
        group: Name,
    },
    /// `ungroup(group)`.
    Ungroup { group: Name },
    /// `setSession(client_id, session)` (session: a PHP array).
    SetSession {
        client_id: ClientIdText,
        session: PhpValue,
    },
    /// `updateSession(client_id, session)` (partial array, merged by the gateway).
    UpdateSession {
        client_id: ClientIdText,
        session: PhpValue,
    },
    /// `getSession(client_id)`.
    GetSession { client_id: ClientIdText },
    /// `closeClient(client_id, message)`; `message: None` closes without a final message.
    CloseClient {
        client_id: ClientIdText,
        message: Option<PhpValue>,
    },
    /// `destroyClient(client_id)`.
    DestroyClient { client_id: ClientIdText },
    /// `closeCurrentClient(message)` (needs a current client).
    CloseCurrentClient { message: Option<PhpValue> },
    /// `destroyCurrentClient()` (needs a current client).
    DestroyCurrentClient,
    /// `isOnline(client_id)` → int 0/1.
    IsOnline { client_id: ClientIdText },
    /// `isUidOnline(uid)` → int 0/1.
    IsUidOnline { uid: Name },
    /// `getClientIdByUid(uid)` → list of client ids.
    GetClientIdByUid { uid: Name },
    /// `getUidByClientId(client_id)` → uid or null.
    GetUidByClientId { client_id: ClientIdText },
    /// `getClientIdListByGroup(group)` → list of client ids.
    GetClientIdListByGroup { group: Name },
    /// `getClientSessionsByGroup(group)` → map client_id ⇒ session.
    GetClientSessionsByGroup { group: Name },
    /// `getClientCountByGroup(group)` / `getClientIdCountByGroup(group)`; `""` counts all.
    GetClientCountByGroup { group: Name },
    /// `getAllClientIdList()`.
    GetAllClientIdList,
    /// `getAllClientSessions(group)`; an empty group means all clients.
    GetAllClientSessions { group: Name },
    /// `getAllClientIdCount()` / `getAllClientCount()`.
    GetAllClientCount,
    /// `getAllUidList()`.
    GetAllUidList,
    /// `getAllUidCount()`.
    GetAllUidCount,
    /// `getUidListByGroup(group)`.
    GetUidListByGroup { group: Name },
    /// `getUidCountByGroup(group)`.
    GetUidCountByGroup { group: Name },
    /// `getAllGroupIdList()`.
    GetAllGroupIdList,
    /// `getAllGroupUidList()`.
    GetAllGroupUidList,
    /// `getAllGroupUidCount()`.
    GetAllGroupUidCount,
    /// `getAllGroupClientIdList()`.
    GetAllGroupClientIdList,
    /// `getAllGroupClientIdCount()`.
    GetAllGroupClientIdCount,
    /// GatewayClient only: `batchGetClientIdByUid(uids)`.
    BatchGetClientIdByUid { uids: Vec<Name> },
    /// GatewayClient only: `batchGetClientIdCountByGroup(groups)`.
    BatchGetClientIdCountByGroup { groups: Vec<Name> },
    /// GatewayClient only: `isUidsOnline(uids)`.
    IsUidsOnline { uids: Vec<Name> },
}

/// What a call returns, as the original returns it (PHP values: bool, int, arrays keyed
/// by client id / uid / group, sessions as arrays, null).
pub type ApiResult = Result<PhpValue, ApiError>;

/// Why a call failed where the original throws or returns an error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The call needs a current client (it was made outside a client event).
    #[error("no current client: this call is only valid inside a client event")]
    NoCurrentClient,
    /// The call is not offered in this context (GatewayClient-only call inside a worker).
    #[error("call not available here")]
    NotAvailable,
    /// A client id is malformed where the original throws.
    #[error("malformed client id")]
    MalformedClientId,
    /// An argument has the wrong shape (e.g. a session that is not an array).
    #[error("bad argument: {0}")]
    BadArgument(String),
    /// No gateway is known, so a cluster-wide query cannot be made (the original throws
    /// `getAllGatewayAddresses return empty`).
    #[error("no gateway known")]
    NoGateway,
    /// Some gateways did not answer a query: in time, or at all because their link
    /// closed or its queue was full.
    #[error("query got no answer from {missing} gateway(s) (timed out or link closed)")]
    Timeout {
        /// Number of gateways that did not answer.
        missing: usize,
    },
    /// A frame of the call would exceed the gateway's package size limit; nothing was
    /// sent (the gateway would close the whole link on it).
    #[error("frame of {len} bytes exceeds the gateway package size limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit (`package_size_max`).
        max: usize,
    },
    /// A gateway link already awaits `max` replies; the query was not sent.
    #[error("too many queries awaiting replies on a gateway link (at most {max})")]
    Busy {
        /// The bound (`pending_replies_max`).
        max: usize,
    },
}
