//! The Gateway API (`GatewayWorker\Lib\Gateway`), one function per method, with the
//! original's argument shapes. Every function goes through the host import `gw.api` with
//! an op number from ABI.md 4.2, except [`send_to_current_client`], which has its own import.
//!
//! Sends and membership changes do not wait for gateways; queries do (the host suspends
//! this instance only, other instances keep running).

use crate::sys;
use crate::value::{Key, Value};

/// Op numbers of `gw.api` (ABI.md 4.2).
#[allow(missing_docs)]
pub mod op {
    pub const SEND_TO_CLIENT: i32 = 1;
    pub const SEND_TO_CURRENT_CLIENT: i32 = 2;
    pub const SEND_TO_ALL: i32 = 3;
    pub const SEND_TO_UID: i32 = 4;
    pub const SEND_TO_GROUP: i32 = 5;
    pub const BIND_UID: i32 = 6;
    pub const UNBIND_UID: i32 = 7;
    pub const JOIN_GROUP: i32 = 8;
    pub const LEAVE_GROUP: i32 = 9;
    pub const UNGROUP: i32 = 10;
    pub const SET_SESSION: i32 = 11;
    pub const UPDATE_SESSION: i32 = 12;
    pub const GET_SESSION: i32 = 13;
    pub const CLOSE_CLIENT: i32 = 14;
    pub const DESTROY_CLIENT: i32 = 15;
    pub const CLOSE_CURRENT_CLIENT: i32 = 16;
    pub const DESTROY_CURRENT_CLIENT: i32 = 17;
    pub const IS_ONLINE: i32 = 18;
    pub const IS_UID_ONLINE: i32 = 19;
    pub const GET_CLIENT_ID_BY_UID: i32 = 20;
    pub const GET_UID_BY_CLIENT_ID: i32 = 21;
    pub const GET_CLIENT_ID_LIST_BY_GROUP: i32 = 22;
    pub const GET_CLIENT_SESSIONS_BY_GROUP: i32 = 23;
    pub const GET_CLIENT_COUNT_BY_GROUP: i32 = 24;
    pub const GET_ALL_CLIENT_ID_LIST: i32 = 25;
    pub const GET_ALL_CLIENT_SESSIONS: i32 = 26;
    pub const GET_ALL_CLIENT_COUNT: i32 = 27;
    pub const GET_ALL_UID_LIST: i32 = 28;
    pub const GET_ALL_UID_COUNT: i32 = 29;
    pub const GET_UID_LIST_BY_GROUP: i32 = 30;
    pub const GET_UID_COUNT_BY_GROUP: i32 = 31;
    pub const GET_ALL_GROUP_ID_LIST: i32 = 32;
    pub const GET_ALL_GROUP_UID_LIST: i32 = 33;
    pub const GET_ALL_GROUP_UID_COUNT: i32 = 34;
    pub const GET_ALL_GROUP_CLIENT_ID_LIST: i32 = 35;
    pub const GET_ALL_GROUP_CLIENT_ID_COUNT: i32 = 36;
    pub const BATCH_GET_CLIENT_ID_BY_UID: i32 = 37;
    pub const BATCH_GET_CLIENT_ID_COUNT_BY_GROUP: i32 = 38;
    pub const IS_UIDS_ONLINE: i32 = 39;
}

/// Send flag: write the message to the client as-is, without the client protocol's encoder.
pub const FLAG_RAW: i32 = 0x02;
/// Send flag: deliver as a binary websocket message (our extension, FLAG_BINARY on the wire).
pub const FLAG_BINARY: i32 = 0x04;

/// A failed call: the negative status of ABI.md 4.1 and the host's explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    /// -1 no current client, -2 not available, -3 malformed client id, -4 bad argument,
    /// -5 timeout, -6 bad request, -7 no gateway known.
    pub code: i32,
    /// The host's text.
    pub message: String,
}

/// The result of an API call.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads the result slot whole.
pub(crate) fn take_result(len: usize) -> Vec<u8> {
    if len == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; len];
    // SAFETY: `buf` is `len` writable bytes; the host writes at most `len`.
    let n = unsafe { sys::result_read(buf.as_mut_ptr(), len) };
    buf.truncate(n.max(0) as usize);
    buf
}

pub(crate) fn status_to_result(status: i32) -> Result<Vec<u8>> {
    if status >= 0 {
        return Ok(take_result(status as usize));
    }
    // SAFETY: no pointers involved.
    let len = unsafe { sys::result_len() }.max(0) as usize;
    let text = take_result(len);
    Err(Error {
        code: status,
        message: String::from_utf8_lossy(&text).into_owned(),
    })
}

/// Runs op `op` with positional `args`; the generic form behind every function here.
pub fn call(op: i32, args: Vec<Value>) -> Result<Value> {
    let encoded = Value::list(args).encode();
    // SAFETY: the host reads `encoded.len()` bytes at `encoded.as_ptr()`, which stay valid
    // for the duration of the call.
    let status = unsafe { sys::api(op, encoded.as_ptr(), encoded.len()) };
    let bytes = status_to_result(status)?;
    Value::decode(&bytes).ok_or(Error {
        code: -6,
        message: String::from("undecodable result from host"),
    })
}

fn flags_args(raw: bool, binary: bool) -> [Value; 2] {
    [Value::Bool(raw), Value::Bool(binary)]
}

fn ids(list: &[&str]) -> Value {
    Value::list(list.iter().map(|s| Value::str(s)).collect())
}

fn opt_ids(list: Option<&[&str]>) -> Value {
    list.map(ids).unwrap_or(Value::Null)
}

fn strings(v: Value) -> Vec<String> {
    v.values()
        .into_iter()
        .filter_map(|v| match v {
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

fn int(v: Value) -> i64 {
    match v {
        Value::Int(n) => n,
        Value::Bool(b) => b as i64,
        _ => 0,
    }
}

fn void(r: Result<Value>) -> Result<()> {
    r.map(|_| ())
}

/// `sendToCurrentClient($bytes)` through the hot-path import; `binary` marks a binary
/// websocket message.
pub fn send_to_current_client(message: &[u8], binary: bool) -> Result<()> {
    let flags = if binary { FLAG_BINARY } else { 0 };
    // SAFETY: the host reads `message.len()` bytes at `message.as_ptr()` during the call.
    let status = unsafe { sys::send_to_current_client(message.as_ptr(), message.len(), flags) };
    status_to_result(status).map(|_| ())
}

/// `sendToCurrentClient($message, $raw)` of any value (arrays are JSON-encoded by the gateway).
pub fn send_value_to_current_client(message: Value, raw: bool) -> Result<()> {
    let [r, b] = flags_args(raw, false);
    void(call(op::SEND_TO_CURRENT_CLIENT, vec![message, r, b]))
}

/// `sendToClient($client_id, $message)`.
pub fn send_to_client(client_id: &str, message: impl Into<Value>) -> Result<()> {
    send_to_client_with(client_id, message.into(), false, false)
}

/// `sendToClient($client_id, $message, $raw)`, `binary` as in [`send_to_current_client`].
pub fn send_to_client_with(client_id: &str, message: Value, raw: bool, binary: bool) -> Result<()> {
    let [r, b] = flags_args(raw, binary);
    void(call(
        op::SEND_TO_CLIENT,
        vec![Value::str(client_id), message, r, b],
    ))
}

/// `sendToAll($message, $client_id_list, $exclude_client_id)`.
pub fn send_to_all(
    message: impl Into<Value>,
    client_id_list: Option<&[&str]>,
    exclude: Option<&[&str]>,
) -> Result<()> {
    let [r, b] = flags_args(false, false);
    void(call(
        op::SEND_TO_ALL,
        vec![
            message.into(),
            opt_ids(client_id_list),
            opt_ids(exclude),
            r,
            b,
        ],
    ))
}

/// `sendToUid($uid, $message)`.
pub fn send_to_uid(uid: &str, message: impl Into<Value>) -> Result<()> {
    void(call(op::SEND_TO_UID, vec![Value::str(uid), message.into()]))
}

/// `sendToUid([$uid, ...], $message)`.
pub fn send_to_uids(uids: &[&str], message: impl Into<Value>) -> Result<()> {
    void(call(op::SEND_TO_UID, vec![ids(uids), message.into()]))
}

/// `sendToGroup($group, $message, $exclude_client_id)`.
pub fn send_to_group(
    group: &str,
    message: impl Into<Value>,
    exclude: Option<&[&str]>,
) -> Result<()> {
    void(call(
        op::SEND_TO_GROUP,
        vec![Value::str(group), message.into(), opt_ids(exclude)],
    ))
}

/// `sendToGroup([$group, ...], $message, $exclude_client_id)`.
pub fn send_to_groups(
    groups: &[&str],
    message: impl Into<Value>,
    exclude: Option<&[&str]>,
) -> Result<()> {
    void(call(
        op::SEND_TO_GROUP,
        vec![ids(groups), message.into(), opt_ids(exclude)],
    ))
}

/// `bindUid($client_id, $uid)`.
pub fn bind_uid(client_id: &str, uid: &str) -> Result<()> {
    void(call(
        op::BIND_UID,
        vec![Value::str(client_id), Value::str(uid)],
    ))
}

/// `unbindUid($client_id, $uid)`.
pub fn unbind_uid(client_id: &str, uid: &str) -> Result<()> {
    void(call(
        op::UNBIND_UID,
        vec![Value::str(client_id), Value::str(uid)],
    ))
}

/// `joinGroup($client_id, $group)`.
pub fn join_group(client_id: &str, group: &str) -> Result<()> {
    void(call(
        op::JOIN_GROUP,
        vec![Value::str(client_id), Value::str(group)],
    ))
}

/// `leaveGroup($client_id, $group)`.
pub fn leave_group(client_id: &str, group: &str) -> Result<()> {
    void(call(
        op::LEAVE_GROUP,
        vec![Value::str(client_id), Value::str(group)],
    ))
}

/// `ungroup($group)`.
pub fn ungroup(group: &str) -> Result<()> {
    void(call(op::UNGROUP, vec![Value::str(group)]))
}

/// `setSession($client_id, $session)`; on the current client it also replaces `$_SESSION`.
pub fn set_session(client_id: &str, session: Value) -> Result<()> {
    void(call(op::SET_SESSION, vec![Value::str(client_id), session]))
}

/// `updateSession($client_id, $partial)`; merged with `array_replace_recursive`.
pub fn update_session(client_id: &str, partial: Value) -> Result<()> {
    void(call(
        op::UPDATE_SESSION,
        vec![Value::str(client_id), partial],
    ))
}

/// `getSession($client_id)`: an array, null for an unknown client.
pub fn get_session(client_id: &str) -> Result<Value> {
    call(op::GET_SESSION, vec![Value::str(client_id)])
}

/// `closeClient($client_id, $message)`.
pub fn close_client(client_id: &str, message: Option<Value>) -> Result<()> {
    let m = message.unwrap_or(Value::Null);
    void(call(op::CLOSE_CLIENT, vec![Value::str(client_id), m]))
}

/// `destroyClient($client_id)`.
pub fn destroy_client(client_id: &str) -> Result<()> {
    void(call(op::DESTROY_CLIENT, vec![Value::str(client_id)]))
}

/// `closeCurrentClient($message)`.
pub fn close_current_client(message: Option<Value>) -> Result<()> {
    void(call(
        op::CLOSE_CURRENT_CLIENT,
        vec![message.unwrap_or(Value::Null)],
    ))
}

/// `destroyCurrentClient()`.
pub fn destroy_current_client() -> Result<()> {
    void(call(op::DESTROY_CURRENT_CLIENT, vec![]))
}

/// `isOnline($client_id)`.
pub fn is_online(client_id: &str) -> Result<bool> {
    call(op::IS_ONLINE, vec![Value::str(client_id)]).map(|v| int(v) != 0)
}

/// `isUidOnline($uid)`.
pub fn is_uid_online(uid: &str) -> Result<bool> {
    call(op::IS_UID_ONLINE, vec![Value::str(uid)]).map(|v| int(v) != 0)
}

/// `getClientIdByUid($uid)`.
pub fn get_client_id_by_uid(uid: &str) -> Result<Vec<String>> {
    call(op::GET_CLIENT_ID_BY_UID, vec![Value::str(uid)]).map(strings)
}

/// `getUidByClientId($client_id)`: the uid, or null.
pub fn get_uid_by_client_id(client_id: &str) -> Result<Value> {
    call(op::GET_UID_BY_CLIENT_ID, vec![Value::str(client_id)])
}

/// `getClientIdListByGroup($group)`.
pub fn get_client_id_list_by_group(group: &str) -> Result<Vec<String>> {
    call(op::GET_CLIENT_ID_LIST_BY_GROUP, vec![Value::str(group)]).map(strings)
}

/// `getClientSessionsByGroup($group)`: client id ⇒ session.
pub fn get_client_sessions_by_group(group: &str) -> Result<Value> {
    call(op::GET_CLIENT_SESSIONS_BY_GROUP, vec![Value::str(group)])
}

/// `getClientIdCountByGroup($group)`; `""` counts every client.
pub fn get_client_id_count_by_group(group: &str) -> Result<i64> {
    call(op::GET_CLIENT_COUNT_BY_GROUP, vec![Value::str(group)]).map(int)
}

/// `getClientCountByGroup($group)` (same as [`get_client_id_count_by_group`]).
pub fn get_client_count_by_group(group: &str) -> Result<i64> {
    get_client_id_count_by_group(group)
}

/// `getAllClientIdList()`.
pub fn get_all_client_id_list() -> Result<Vec<String>> {
    call(op::GET_ALL_CLIENT_ID_LIST, vec![]).map(strings)
}

/// `getAllClientSessions($group)`; `""` means every client.
pub fn get_all_client_sessions(group: &str) -> Result<Value> {
    call(op::GET_ALL_CLIENT_SESSIONS, vec![Value::str(group)])
}

/// `getAllClientIdCount()` / `getAllClientCount()`.
pub fn get_all_client_count() -> Result<i64> {
    call(op::GET_ALL_CLIENT_COUNT, vec![]).map(int)
}

/// `getAllUidList()`.
pub fn get_all_uid_list() -> Result<Value> {
    call(op::GET_ALL_UID_LIST, vec![])
}

/// `getAllUidCount()`.
pub fn get_all_uid_count() -> Result<i64> {
    call(op::GET_ALL_UID_COUNT, vec![]).map(int)
}

/// `getUidListByGroup($group)`.
pub fn get_uid_list_by_group(group: &str) -> Result<Value> {
    call(op::GET_UID_LIST_BY_GROUP, vec![Value::str(group)])
}

/// `getUidCountByGroup($group)`.
pub fn get_uid_count_by_group(group: &str) -> Result<i64> {
    call(op::GET_UID_COUNT_BY_GROUP, vec![Value::str(group)]).map(int)
}

/// `getAllGroupIdList()`.
pub fn get_all_group_id_list() -> Result<Value> {
    call(op::GET_ALL_GROUP_ID_LIST, vec![])
}

/// `getAllGroupUidList()`: group ⇒ uids.
pub fn get_all_group_uid_list() -> Result<Value> {
    call(op::GET_ALL_GROUP_UID_LIST, vec![])
}

/// `getAllGroupUidCount()`: group ⇒ count.
pub fn get_all_group_uid_count() -> Result<Value> {
    call(op::GET_ALL_GROUP_UID_COUNT, vec![])
}

/// `getAllGroupClientIdList()`: group ⇒ client ids.
pub fn get_all_group_client_id_list() -> Result<Value> {
    call(op::GET_ALL_GROUP_CLIENT_ID_LIST, vec![])
}

/// `getAllGroupClientIdCount()`: group ⇒ count.
pub fn get_all_group_client_id_count() -> Result<Value> {
    call(op::GET_ALL_GROUP_CLIENT_ID_COUNT, vec![])
}

/// The current client's address: `client_id`, `remote_addr`, `remote_port`,
/// `gateway_addr`, `gateway_port` (PHP's `$_SERVER` of the event).
pub fn client_info() -> Result<Value> {
    // SAFETY: no pointers involved.
    let status = unsafe { sys::client_info() };
    let bytes = status_to_result(status)?;
    Ok(Value::decode(&bytes).unwrap_or(Value::Null))
}

/// Builds an array from string keys (a convenience for messages and sessions).
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Array(
        entries
            .into_iter()
            .map(|(k, v)| (Key::from_str_like(k.as_bytes()), v))
            .collect(),
    )
}
