//! `gatewayworker client`: one Gateway API call from the shell through the GatewayClient
//! library. Query results are printed as JSON on stdout (PHP arrays as JSON lists or
//! objects, see the README's PHP/JSON table); sends print nothing. Any failure is one line
//! on stderr and exit code 1.

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::api::gather::TimeoutPolicy;
use gatewayworker::api::ApiCall;
use gatewayworker::client::{GatewayClient, GatewayClientBuilder};
use gatewayworker::protocol::php::json::{json_decode, json_encode, JsonEncodeOptions};
use gatewayworker::protocol::php::PhpValue;

use super::args::{ClientCall, ClientOptions};
use super::error::CliError;

/// Default `--register`, the original's `registerAddress`.
pub const REGISTER_DEFAULT: &str = "127.0.0.1:1236";

/// The client the options describe.
pub fn client(options: &ClientOptions) -> Result<GatewayClient, CliError> {
    let mut builder = GatewayClientBuilder::default();
    match (&options.gateway, &options.register) {
        (Some(gateways), _) if !gateways.is_empty() => {
            for g in gateways {
                builder = builder.gateway(g.clone());
            }
        }
        (_, Some(registers)) if !registers.is_empty() => {
            for r in registers {
                builder = builder.register(r.clone());
            }
        }
        _ => builder = builder.register(REGISTER_DEFAULT),
    }
    if let Some(secret) = &options.secret {
        builder = builder.secret(secret.clone());
    }
    if let Some(seconds) = options.connect_timeout {
        builder = builder.connect_timeout(Duration::from_secs(seconds));
    }
    if let Some(seconds) = options.timeout {
        builder = builder.reply_timeout(Duration::from_secs(seconds));
    }
    if options.partial == Some(true) {
        builder = builder.timeout_policy(TimeoutPolicy::Partial);
    }
    builder.build().map_err(|e| CliError::BadSetting {
        setting: "--gateway",
        message: e.to_string(),
    })
}

/// Makes the call and prints its result.
pub fn run(options: ClientOptions, call: ClientCall) -> Result<(), CliError> {
    let (api_call, is_query) = api_call(call)?;
    let client = client(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the runtime", e))?;
    let value = runtime.block_on(client.call(&api_call))?;
    if is_query {
        let options = JsonEncodeOptions {
            unescaped_unicode: true,
            unescaped_slashes: true,
            ..JsonEncodeOptions::default()
        };
        let json = json_encode(&value, options).map_err(|e| CliError::BadSetting {
            setting: "output",
            message: format!("the result cannot be printed as JSON: {e}"),
        })?;
        let mut out = std::io::stdout().lock();
        out.write_all(&json)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| CliError::io("writing the result", e))?;
    }
    Ok(())
}

fn text(s: String) -> Bytes {
    Bytes::from(s)
}

fn texts(list: Vec<String>) -> Vec<Bytes> {
    list.into_iter().map(Bytes::from).collect()
}

fn message(s: String) -> PhpValue {
    PhpValue::Str(Bytes::from(s))
}

/// A session argument: JSON decoded the way PHP's `json_decode($x, true)` does; must be
/// an object or a list (a PHP array).
fn session(json: &str) -> Result<PhpValue, CliError> {
    match json_decode(json.as_bytes()) {
        Ok(value @ PhpValue::Array(_)) => Ok(value),
        Ok(_) => Err(CliError::Usage(
            "the session must be a JSON object, e.g. '{\"name\":\"ann\"}'".to_owned(),
        )),
        Err(e) => Err(CliError::Usage(format!(
            "the session is not valid JSON: {e}"
        ))),
    }
}

/// The call as an [`ApiCall`], and whether it is a query (its result is printed).
pub fn api_call(call: ClientCall) -> Result<(ApiCall, bool), CliError> {
    use ClientCall as C;
    let send = |call| Ok((call, false));
    let query = |call| Ok((call, true));
    match call {
        C::SendToAll {
            message: m,
            client_ids,
            exclude,
            raw,
        } => send(ApiCall::SendToAll {
            message: message(m),
            client_id_list: (!client_ids.is_empty()).then(|| texts(client_ids)),
            exclude: (!exclude.is_empty()).then(|| texts(exclude)),
            raw,
        }),
        C::SendToClient {
            client_id,
            message: m,
        } => send(ApiCall::SendToClient {
            client_id: text(client_id),
            message: message(m),
            raw: false,
        }),
        C::SendToUid { uid, message: m } => send(ApiCall::SendToUid {
            uids: vec![text(uid)],
            message: message(m),
            raw: false,
        }),
        C::SendToGroup {
            group,
            message: m,
            exclude,
            raw,
        } => send(ApiCall::SendToGroup {
            groups: vec![text(group)],
            message: message(m),
            exclude: (!exclude.is_empty()).then(|| texts(exclude)),
            raw,
        }),
        C::BindUid { client_id, uid } => send(ApiCall::BindUid {
            client_id: text(client_id),
            uid: text(uid),
        }),
        C::UnbindUid { client_id, uid } => send(ApiCall::UnbindUid {
            client_id: text(client_id),
            uid: text(uid),
        }),
        C::JoinGroup { client_id, group } => send(ApiCall::JoinGroup {
            client_id: text(client_id),
            group: text(group),
        }),
        C::LeaveGroup { client_id, group } => send(ApiCall::LeaveGroup {
            client_id: text(client_id),
            group: text(group),
        }),
        C::Ungroup { group } => send(ApiCall::Ungroup { group: text(group) }),
        C::SetSession { client_id, json } => send(ApiCall::SetSession {
            client_id: text(client_id),
            session: session(&json)?,
        }),
        C::UpdateSession { client_id, json } => send(ApiCall::UpdateSession {
            client_id: text(client_id),
            session: session(&json)?,
        }),
        C::GetSession { client_id } => query(ApiCall::GetSession {
            client_id: text(client_id),
        }),
        C::CloseClient {
            client_id,
            message: m,
        } => send(ApiCall::CloseClient {
            client_id: text(client_id),
            message: m.map(message),
        }),
        C::DestroyClient { client_id } => send(ApiCall::DestroyClient {
            client_id: text(client_id),
        }),
        C::IsOnline { client_id } => query(ApiCall::IsOnline {
            client_id: text(client_id),
        }),
        C::IsUidOnline { uid } => query(ApiCall::IsUidOnline { uid: text(uid) }),
        C::GetClientIdByUid { uid } => query(ApiCall::GetClientIdByUid { uid: text(uid) }),
        C::GetUidByClientId { client_id } => query(ApiCall::GetUidByClientId {
            client_id: text(client_id),
        }),
        C::GetClientIdListByGroup { group } => {
            query(ApiCall::GetClientIdListByGroup { group: text(group) })
        }
        C::GetClientSessionsByGroup { group } => {
            query(ApiCall::GetClientSessionsByGroup { group: text(group) })
        }
        C::GetClientCountByGroup { group } => {
            query(ApiCall::GetClientCountByGroup { group: text(group) })
        }
        C::GetAllClientIdList => query(ApiCall::GetAllClientIdList),
        C::GetAllClientSessions { group } => query(ApiCall::GetAllClientSessions {
            group: text(group.unwrap_or_default()),
        }),
        C::GetAllClientCount => query(ApiCall::GetAllClientCount),
        C::GetAllUidList => query(ApiCall::GetAllUidList),
        C::GetAllUidCount => query(ApiCall::GetAllUidCount),
        C::GetUidListByGroup { group } => query(ApiCall::GetUidListByGroup { group: text(group) }),
        C::GetUidCountByGroup { group } => {
            query(ApiCall::GetUidCountByGroup { group: text(group) })
        }
        C::GetAllGroupIdList => query(ApiCall::GetAllGroupIdList),
        C::GetAllGroupUidList => query(ApiCall::GetAllGroupUidList),
        C::GetAllGroupUidCount => query(ApiCall::GetAllGroupUidCount),
        C::GetAllGroupClientIdList => query(ApiCall::GetAllGroupClientIdList),
        C::GetAllGroupClientIdCount => query(ApiCall::GetAllGroupClientIdCount),
        C::BatchGetClientIdByUid { uids } => {
            query(ApiCall::BatchGetClientIdByUid { uids: texts(uids) })
        }
        C::BatchGetClientIdCountByGroup { groups } => {
            query(ApiCall::BatchGetClientIdCountByGroup {
                groups: texts(groups),
            })
        }
        C::IsUidsOnline { uids } => query(ApiCall::IsUidsOnline { uids: texts(uids) }),
    }
}
