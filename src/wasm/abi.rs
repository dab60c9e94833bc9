//! ABI version 1 between the host and guest modules (the contract is `wasm-workers/ABI.md`;
//! this file holds its numbers and turns `gw.api` requests into [`ApiCall`]s).

use bytes::Bytes;

use crate::api::{ApiCall, ApiError, Name};
use crate::protocol::php::{PhpKey, PhpValue};

/// The only ABI version this host runs (`gw_abi_version` must return it).
pub const ABI_VERSION: i32 = 1;
/// The import module name of every host function.
pub const IMPORT_MODULE: &str = "gw";

/// Send flag: write the body as-is (PHP's `$raw`, wire flag NOT_CALL_ENCODE).
pub const SEND_FLAG_RAW: i32 = 0x02;
/// Send / event flag: a binary websocket message (wire extension FLAG_BINARY).
pub const FLAG_BINARY: i32 = 0x04;

/// Status: the call needs a current client and there is none.
pub const STATUS_NO_CURRENT_CLIENT: i32 = -1;
/// Status: the call is not offered here (GatewayClient-only calls in a worker).
pub const STATUS_NOT_AVAILABLE: i32 = -2;
/// Status: a client id is malformed where the original throws.
pub const STATUS_MALFORMED_CLIENT_ID: i32 = -3;
/// Status: an argument has the wrong shape.
pub const STATUS_BAD_ARGUMENT: i32 = -4;
/// Status: some gateways did not answer a query in time.
pub const STATUS_TIMEOUT: i32 = -5;
/// Status: no gateway is known, so a cluster-wide query cannot be made.
pub const STATUS_NO_GATEWAY: i32 = -7;
/// Status: the request itself is malformed (unknown op, undecodable arguments).
pub const STATUS_BAD_REQUEST: i32 = -6;

/// The status code of an API error.
pub fn status_of(error: &ApiError) -> i32 {
    match error {
        ApiError::NoCurrentClient => STATUS_NO_CURRENT_CLIENT,
        ApiError::NotAvailable => STATUS_NOT_AVAILABLE,
        ApiError::MalformedClientId => STATUS_MALFORMED_CLIENT_ID,
        ApiError::BadArgument(_) | ApiError::TooLarge { .. } => STATUS_BAD_ARGUMENT,
        ApiError::Timeout { .. } | ApiError::Busy { .. } => STATUS_TIMEOUT,
        ApiError::NoGateway => STATUS_NO_GATEWAY,
    }
}

/// A decoded `gw.api` request: the call, plus our binary-send extension flag that
/// [`ApiCall`] has no field for.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedCall {
    /// The Gateway API call.
    pub call: ApiCall,
    /// Deliver the message as a binary websocket frame (send calls only).
    pub binary: bool,
}

/// Why a `gw.api` request could not become an [`ApiCall`].
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Unknown op number or arguments that are not a list (status -6).
    BadRequest(String),
    /// A known call refused as the original refuses it.
    Api(ApiError),
}

/// Positional arguments of one request (a PHP list decoded from GWV).
struct Args(Vec<PhpValue>);

impl Args {
    fn at(&self, i: usize) -> Option<&PhpValue> {
        self.0.get(i).filter(|v| !matches!(v, PhpValue::Null))
    }

    fn required(&self, i: usize, what: &str) -> Result<&PhpValue, RequestError> {
        self.0
            .get(i)
            .ok_or_else(|| bad_argument(format!("missing argument {i} ({what})")))
    }

    fn name(&self, i: usize, what: &str) -> Result<Name, RequestError> {
        name_of(self.required(i, what)?, what)
    }

    fn names(&self, i: usize, what: &str) -> Result<Vec<Name>, RequestError> {
        names_of(self.required(i, what)?, what)
    }

    fn optional_names(&self, i: usize, what: &str) -> Result<Option<Vec<Name>>, RequestError> {
        self.at(i).map(|v| names_of(v, what)).transpose()
    }

    fn name_or_empty(&self, i: usize, what: &str) -> Result<Name, RequestError> {
        self.at(i)
            .map(|v| name_of(v, what))
            .unwrap_or(Ok(Bytes::new()))
    }

    fn message(&self, i: usize) -> Result<PhpValue, RequestError> {
        self.required(i, "message").cloned()
    }

    fn optional_message(&self, i: usize) -> Option<PhpValue> {
        self.at(i).cloned()
    }

    fn flag(&self, i: usize) -> bool {
        self.at(i).is_some_and(|v| !v.is_empty())
    }

    fn array(&self, i: usize, what: &str) -> Result<PhpValue, RequestError> {
        match self.required(i, what)? {
            v @ PhpValue::Array(_) => Ok(v.clone()),
            _ => Err(bad_argument(format!("{what} must be an array"))),
        }
    }
}

fn bad_argument(text: String) -> RequestError {
    RequestError::Api(ApiError::BadArgument(text))
}

/// A uid, group or client id argument as PHP would stringify it; floats and arrays refused.
fn name_of(v: &PhpValue, what: &str) -> Result<Name, RequestError> {
    match v {
        PhpValue::Str(s) => Ok(s.clone()),
        PhpValue::Int(n) => Ok(Bytes::from(n.to_string())),
        PhpValue::Bool(true) => Ok(Bytes::from_static(b"1")),
        PhpValue::Bool(false) | PhpValue::Null => Ok(Bytes::new()),
        _ => Err(bad_argument(format!("{what} must be a string or an int"))),
    }
}

/// One name or a list of names (the values of an array, keys ignored, as PHP's foreach).
fn names_of(v: &PhpValue, what: &str) -> Result<Vec<Name>, RequestError> {
    match v {
        PhpValue::Array(a) => a.iter().map(|(_, v)| name_of(v, what)).collect(),
        single => Ok(vec![name_of(single, what)?]),
    }
}

/// The op number of `call` (the inverse of [`decode_call`]). The match is exhaustive, so a
/// new [`ApiCall`] variant does not compile until it has an op number.
pub fn op_of(call: &ApiCall) -> i32 {
    match call {
        ApiCall::SendToClient { .. } => 1,
        ApiCall::SendToCurrentClient { .. } => 2,
        ApiCall::SendToAll { .. } => 3,
        ApiCall::SendToUid { .. } => 4,
        ApiCall::SendToGroup { .. } => 5,
        ApiCall::BindUid { .. } => 6,
        ApiCall::UnbindUid { .. } => 7,
        ApiCall::JoinGroup { .. } => 8,
        ApiCall::LeaveGroup { .. } => 9,
        ApiCall::Ungroup { .. } => 10,
        ApiCall::SetSession { .. } => 11,
        ApiCall::UpdateSession { .. } => 12,
        ApiCall::GetSession { .. } => 13,
        ApiCall::CloseClient { .. } => 14,
        ApiCall::DestroyClient { .. } => 15,
        ApiCall::CloseCurrentClient { .. } => 16,
        ApiCall::DestroyCurrentClient => 17,
        ApiCall::IsOnline { .. } => 18,
        ApiCall::IsUidOnline { .. } => 19,
        ApiCall::GetClientIdByUid { .. } => 20,
        ApiCall::GetUidByClientId { .. } => 21,
        ApiCall::GetClientIdListByGroup { .. } => 22,
        ApiCall::GetClientSessionsByGroup { .. } => 23,
        ApiCall::GetClientCountByGroup { .. } => 24,
        ApiCall::GetAllClientIdList => 25,
        ApiCall::GetAllClientSessions { .. } => 26,
        ApiCall::GetAllClientCount => 27,
        ApiCall::GetAllUidList => 28,
        ApiCall::GetAllUidCount => 29,
        ApiCall::GetUidListByGroup { .. } => 30,
        ApiCall::GetUidCountByGroup { .. } => 31,
        ApiCall::GetAllGroupIdList => 32,
        ApiCall::GetAllGroupUidList => 33,
        ApiCall::GetAllGroupUidCount => 34,
        ApiCall::GetAllGroupClientIdList => 35,
        ApiCall::GetAllGroupClientIdCount => 36,
        ApiCall::BatchGetClientIdByUid { .. } => 37,
        ApiCall::BatchGetClientIdCountByGroup { .. } => 38,
        ApiCall::IsUidsOnline { .. } => 39,
    }
}

/// Turns op `op` with its GWV-decoded `args` into a call. `has_current_client` is false
/// outside client events, where the `*CurrentClient` calls fail as in the original.
pub fn decode_call(
    op: i32,
    args: PhpValue,
    has_current_client: bool,
) -> Result<DecodedCall, RequestError> {
    let PhpValue::Array(array) = args else {
        return Err(RequestError::BadRequest("arguments must be a list".into()));
    };
    let mut list = Vec::with_capacity(array.len());
    for (i, (k, v)) in array.into_entries().into_iter().enumerate() {
        if k != PhpKey::Int(i as i64) {
            return Err(RequestError::BadRequest(
                "arguments must be a list (keys 0..n)".into(),
            ));
        }
        list.push(v);
    }
    let a = Args(list);
    let needs_current = matches!(op, 2 | 16 | 17);
    if needs_current && !has_current_client {
        return Err(RequestError::Api(ApiError::NoCurrentClient));
    }
    let plain = |call| {
        Ok(DecodedCall {
            call,
            binary: false,
        })
    };
    let call = match op {
        1 => {
            return Ok(DecodedCall {
                call: ApiCall::SendToClient {
                    client_id: a.name(0, "client_id")?,
                    message: a.message(1)?,
                    raw: a.flag(2),
                },
                binary: a.flag(3),
            })
        }
        2 => {
            return Ok(DecodedCall {
                call: ApiCall::SendToCurrentClient {
                    message: a.message(0)?,
                    raw: a.flag(1),
                },
                binary: a.flag(2),
            })
        }
        3 => {
            return Ok(DecodedCall {
                call: ApiCall::SendToAll {
                    message: a.message(0)?,
                    client_id_list: a.optional_names(1, "client_id_list")?,
                    exclude: a.optional_names(2, "exclude_client_id")?,
                    raw: a.flag(3),
                },
                binary: a.flag(4),
            })
        }
        4 => {
            return Ok(DecodedCall {
                call: ApiCall::SendToUid {
                    uids: a.names(0, "uid")?,
                    message: a.message(1)?,
                    raw: a.flag(2),
                },
                binary: a.flag(3),
            })
        }
        5 => {
            return Ok(DecodedCall {
                call: ApiCall::SendToGroup {
                    groups: a.names(0, "group")?,
                    message: a.message(1)?,
                    exclude: a.optional_names(2, "exclude_client_id")?,
                    raw: a.flag(3),
                },
                binary: a.flag(4),
            })
        }
        6 => ApiCall::BindUid {
            client_id: a.name(0, "client_id")?,
            uid: a.name(1, "uid")?,
        },
        7 => ApiCall::UnbindUid {
            client_id: a.name(0, "client_id")?,
            uid: a.name(1, "uid")?,
        },
        8 => ApiCall::JoinGroup {
            client_id: a.name(0, "client_id")?,
            group: a.name(1, "group")?,
        },
        9 => ApiCall::LeaveGroup {
            client_id: a.name(0, "client_id")?,
            group: a.name(1, "group")?,
        },
        10 => ApiCall::Ungroup {
            group: a.name(0, "group")?,
        },
        11 => ApiCall::SetSession {
            client_id: a.name(0, "client_id")?,
            session: a.array(1, "session")?,
        },
        12 => ApiCall::UpdateSession {
            client_id: a.name(0, "client_id")?,
            session: a.array(1, "session")?,
        },
        13 => ApiCall::GetSession {
            client_id: a.name(0, "client_id")?,
        },
        14 => ApiCall::CloseClient {
            client_id: a.name(0, "client_id")?,
            message: a.optional_message(1),
        },
        15 => ApiCall::DestroyClient {
            client_id: a.name(0, "client_id")?,
        },
        16 => ApiCall::CloseCurrentClient {
            message: a.optional_message(0),
        },
        17 => ApiCall::DestroyCurrentClient,
        18 => ApiCall::IsOnline {
            client_id: a.name(0, "client_id")?,
        },
        19 => ApiCall::IsUidOnline {
            uid: a.name(0, "uid")?,
        },
        20 => ApiCall::GetClientIdByUid {
            uid: a.name(0, "uid")?,
        },
        21 => ApiCall::GetUidByClientId {
            client_id: a.name(0, "client_id")?,
        },
        22 => ApiCall::GetClientIdListByGroup {
            group: a.name(0, "group")?,
        },
        23 => ApiCall::GetClientSessionsByGroup {
            group: a.name(0, "group")?,
        },
        24 => ApiCall::GetClientCountByGroup {
            group: a.name_or_empty(0, "group")?,
        },
        25 => ApiCall::GetAllClientIdList,
        26 => ApiCall::GetAllClientSessions {
            group: a.name_or_empty(0, "group")?,
        },
        27 => ApiCall::GetAllClientCount,
        28 => ApiCall::GetAllUidList,
        29 => ApiCall::GetAllUidCount,
        30 => ApiCall::GetUidListByGroup {
            group: a.name(0, "group")?,
        },
        31 => ApiCall::GetUidCountByGroup {
            group: a.name(0, "group")?,
        },
        32 => ApiCall::GetAllGroupIdList,
        33 => ApiCall::GetAllGroupUidList,
        34 => ApiCall::GetAllGroupUidCount,
        35 => ApiCall::GetAllGroupClientIdList,
        36 => ApiCall::GetAllGroupClientIdCount,
        37 => ApiCall::BatchGetClientIdByUid {
            uids: a.names(0, "uids")?,
        },
        38 => ApiCall::BatchGetClientIdCountByGroup {
            groups: a.names(0, "groups")?,
        },
        39 => ApiCall::IsUidsOnline {
            uids: a.names(0, "uids")?,
        },
        other => return Err(RequestError::BadRequest(format!("unknown op {other}"))),
    };
    plain(call)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::php::PhpArray;

    fn list(items: Vec<PhpValue>) -> PhpValue {
        let mut a = PhpArray::new();
        for v in items {
            a.push(v);
        }
        PhpValue::Array(a)
    }

    fn s(t: &str) -> PhpValue {
        PhpValue::str(t)
    }

    fn b(t: &str) -> Bytes {
        Bytes::copy_from_slice(t.as_bytes())
    }

    #[test]
    fn every_op_of_the_table_decodes_and_the_next_is_unknown() {
        // Generous arguments: every op takes at most five, of these shapes.
        let args = list(vec![
            s("7f0000010fa000000001"),
            s("a"),
            PhpValue::Null,
            PhpValue::Bool(false),
            PhpValue::Bool(false),
        ]);
        let session_args = list(vec![s("7f0000010fa000000001"), list(vec![s("x")])]);
        for op in 1..=39 {
            let a = if op == 11 || op == 12 {
                session_args.clone()
            } else {
                args.clone()
            };
            let decoded = decode_call(op, a, true).unwrap_or_else(|e| panic!("op {op}: {e:?}"));
            // op_of is exhaustive over ApiCall: together these make the table a bijection.
            assert_eq!(op_of(&decoded.call), op);
        }
        assert!(matches!(
            decode_call(40, args, true),
            Err(RequestError::BadRequest(_))
        ));
    }

    #[test]
    fn names_accept_ints_and_lists_like_php() {
        let d = decode_call(4, list(vec![PhpValue::Int(1002), s("m")]), false).unwrap();
        assert_eq!(
            d.call,
            ApiCall::SendToUid {
                uids: vec![b("1002")],
                message: s("m"),
                raw: false
            }
        );
        let d = decode_call(
            5,
            list(vec![
                list(vec![s("g1"), PhpValue::Int(2)]),
                s("m"),
                s("7f0000010fa000000003"),
                PhpValue::Bool(true),
                PhpValue::Bool(true),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(
            d.call,
            ApiCall::SendToGroup {
                groups: vec![b("g1"), b("2")],
                message: s("m"),
                exclude: Some(vec![b("7f0000010fa000000003")]),
                raw: true
            }
        );
        assert!(d.binary);
        let bad = decode_call(6, list(vec![s("c"), PhpValue::Float(1.5)]), false);
        assert!(matches!(
            bad,
            Err(RequestError::Api(ApiError::BadArgument(_)))
        ));
    }

    #[test]
    fn optional_arguments_default_like_php() {
        let d = decode_call(24, list(vec![]), false).unwrap();
        assert_eq!(d.call, ApiCall::GetClientCountByGroup { group: b("") });
        let d = decode_call(14, list(vec![s("c")]), false).unwrap();
        assert_eq!(
            d.call,
            ApiCall::CloseClient {
                client_id: b("c"),
                message: None
            }
        );
        assert!(matches!(
            decode_call(1, list(vec![s("c")]), false),
            Err(RequestError::Api(ApiError::BadArgument(_)))
        ));
    }

    #[test]
    fn current_client_calls_need_an_event_and_arguments_a_list() {
        for op in [2, 16, 17] {
            assert_eq!(
                decode_call(op, list(vec![s("m")]), false),
                Err(RequestError::Api(ApiError::NoCurrentClient)),
                "op {op}"
            );
        }
        let mut not_list = PhpArray::new();
        not_list.insert(PhpKey::Int(1), s("x"));
        assert!(matches!(
            decode_call(10, PhpValue::Array(not_list), true),
            Err(RequestError::BadRequest(_))
        ));
        assert!(matches!(
            decode_call(10, s("x"), true),
            Err(RequestError::BadRequest(_))
        ));
        let needs_array = decode_call(11, list(vec![s("c"), s("not array")]), true);
        assert!(matches!(
            needs_array,
            Err(RequestError::Api(ApiError::BadArgument(_)))
        ));
    }
}
