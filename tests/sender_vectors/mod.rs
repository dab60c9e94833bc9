//! The `sender_api` vectors' calls as [`ApiCall`]s, shared by the worker's sender test
//! (tests/vectors_sender_api.rs) and the GatewayClient's (tests/client_vectors.rs).

#![allow(dead_code)] // Each test binary uses a different subset.

use bytes::Bytes;
use gatewayworker::api::ApiCall;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::testing::vectors::php;
use serde_json::Value;

/// The vector's argument `name`, as a PHP value.
pub fn arg(v: &Value, name: &str) -> PhpValue {
    let args = v["input"]["call"]["args"].as_array().expect("args");
    let a = args
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{}: no argument {name}", v["name"]));
    php(&a["value"])
}

/// A string argument, or an int as its decimal text (as PHP writes it into ext_data).
pub fn text(value: &PhpValue) -> Bytes {
    match value {
        PhpValue::Str(s) => s.clone(),
        PhpValue::Int(n) => Bytes::from(n.to_string()),
        other => panic!("not a string argument: {other:?}"),
    }
}

/// A PHP `true`.
pub fn flag(value: &PhpValue) -> bool {
    matches!(value, PhpValue::Bool(true))
}

/// The same call as an `ApiCall`, when its arguments are plain strings.
pub fn api_call(v: &Value) -> Option<ApiCall> {
    let method = v["input"]["call"]["method"].as_str()?;
    let a = |name: &str| arg(v, name);
    let s = |name: &str| match a(name) {
        PhpValue::Str(s) => Some(s),
        _ => None,
    };
    let strings = |name: &str| -> Option<Option<Vec<Bytes>>> {
        match a(name) {
            PhpValue::Null => Some(None),
            PhpValue::Array(list) => list
                .iter()
                .map(|(_, v)| match v {
                    PhpValue::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(Some),
            PhpValue::Str(s) => Some(Some(vec![s])),
            _ => None,
        }
    };
    Some(match method {
        "sendToClient" => ApiCall::SendToClient {
            client_id: s("client_id")?,
            message: a("message"),
            raw: flag(&a("raw")),
        },
        "sendToAll" => ApiCall::SendToAll {
            message: a("message"),
            client_id_list: strings("client_id_array")?,
            exclude: strings("exclude_client_id")?,
            raw: flag(&a("raw")),
        },
        "sendToUid" => ApiCall::SendToUid {
            uids: strings("uid")??,
            message: a("message"),
            raw: flag(&a("raw")),
        },
        "sendToGroup" => ApiCall::SendToGroup {
            groups: strings("group")??,
            message: a("message"),
            exclude: strings("exclude_client_id")?,
            raw: flag(&a("raw")),
        },
        "bindUid" => ApiCall::BindUid {
            client_id: s("client_id")?,
            uid: text(&a("uid")),
        },
        "unbindUid" => ApiCall::UnbindUid {
            client_id: s("client_id")?,
            uid: text(&a("uid")),
        },
        "joinGroup" => ApiCall::JoinGroup {
            client_id: s("client_id")?,
            group: s("group")?,
        },
        "leaveGroup" => ApiCall::LeaveGroup {
            client_id: s("client_id")?,
            group: s("group")?,
        },
        "ungroup" => ApiCall::Ungroup { group: s("group")? },
        "closeClient" => ApiCall::CloseClient {
            client_id: s("client_id")?,
            message: Some(a("message")).filter(|m| *m != PhpValue::Null),
        },
        "destoryClient" => ApiCall::DestroyClient {
            client_id: s("client_id")?,
        },
        "setSession" => ApiCall::SetSession {
            client_id: s("client_id")?,
            session: a("session"),
        },
        "updateSession" => ApiCall::UpdateSession {
            client_id: s("client_id")?,
            session: a("session"),
        },
        "getClientIdCountByGroup" => ApiCall::GetClientCountByGroup { group: s("group")? },
        "getAllClientSessions" => ApiCall::GetAllClientSessions { group: s("group")? },
        "getClientSessionsByGroup" => ApiCall::GetClientSessionsByGroup { group: s("group")? },
        "getClientIdByUid" => ApiCall::GetClientIdByUid { uid: s("uid")? },
        "getAllGroupIdList" => ApiCall::GetAllGroupIdList,
        _ => return None,
    })
}
