//! `gatewayworker client`: one Gateway API call from the shell through the GatewayClient
//! library, fit for scripts. Every call prints one line of JSON on stdout whose type is
//! fixed per call ([`Shape`]: a map is always an object, a list always an array); a send
//! prints what the original's method returns (`true`, `false`, `null`). Exit codes: 0 done,
//! 1 the call failed (one line on stderr), 2 bad arguments, 3 the call returned `false`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::api::gather::TimeoutPolicy;
use gatewayworker::api::ApiCall;
use gatewayworker::client::{GatewayClient, GatewayClientBuilder};
use gatewayworker::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT;
use gatewayworker::protocol::php::json::{json_decode, json_encode, JsonEncodeOptions};
use gatewayworker::protocol::php::{is_empty_bytes, PhpValue};

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
    if let Some(ms) = options.suspect_after_ms {
        builder = builder.suspect_after(Duration::from_millis(ms));
    }
    if options.partial == Some(true) {
        builder = builder.timeout_policy(TimeoutPolicy::Partial);
    }
    builder.build().map_err(|e| CliError::BadSetting {
        setting: "--gateway",
        message: e.to_string(),
    })
}

/// Largest message read from `--message-file`: the gateway's default package size, above
/// which the library refuses the frame anyway. One byte more is read to tell.
pub const MESSAGE_MAX: usize = PACKAGE_SIZE_MAX_DEFAULT as usize;

/// How a result is printed, per call, so that its JSON type does not depend on the data
/// (PHP's `json_encode` writes an empty map as `[]` and a map with keys 0..n as a list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// As `json_encode` writes it: numbers, strings, `true`/`false`/`null`.
    Plain,
    /// Always a JSON array of the values.
    List,
    /// Always a JSON object (a non-array, such as `null`, as is); values of the shape given.
    Object(&'static Shape),
}

const MAP: Shape = Shape::Object(&Shape::Plain);
const MAP_OF_MAPS: Shape = Shape::Object(&MAP);
const MAP_OF_LISTS: Shape = Shape::Object(&Shape::List);

/// Makes the call and prints its result: one line of JSON of the call's [`Shape`]. A
/// `false` result (which only the sends of the original return) is the error
/// [`CliError::ReturnedFalse`], exit code 3, after it is printed.
pub fn run(options: ClientOptions, call: ClientCall) -> Result<(), CliError> {
    let (api_call, shape) = api_call(call)?;
    let value = match &api_call {
        // The original's scalar `sendToGroup('', ...)`: `false` before anything is sent
        // (the API's list form would send to the group named "").
        ApiCall::SendToGroup { groups, .. } if groups.len() == 1 && is_empty_bytes(&groups[0]) => {
            PhpValue::Bool(false)
        }
        _ => {
            let client = client(&options)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::io("starting the runtime", e))?;
            runtime.block_on(client.call(&api_call))?
        }
    };
    let mut json = Vec::new();
    write_shaped(&mut json, &value, shape)?;
    json.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&json)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing the result", e))?;
    if value == PhpValue::Bool(false) {
        return Err(CliError::ReturnedFalse(
            "a PHP-empty group name (\"\" or \"0\"); nothing was sent",
        ));
    }
    Ok(())
}

/// `value` as JSON of the given shape, strings as PHP writes them with
/// `JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES`.
pub fn write_shaped(out: &mut Vec<u8>, value: &PhpValue, shape: Shape) -> Result<(), CliError> {
    match (shape, value) {
        (Shape::List, PhpValue::Array(array)) => {
            out.push(b'[');
            for (i, (_, v)) in array.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_shaped(out, v, Shape::Plain)?;
            }
            out.push(b']');
        }
        (Shape::Object(inner), PhpValue::Array(array)) => {
            out.push(b'{');
            for (i, (k, v)) in array.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_shaped(out, &PhpValue::Str(k.to_bytes()), Shape::Plain)?;
                out.push(b':');
                write_shaped(out, v, *inner)?;
            }
            out.push(b'}');
        }
        _ => {
            let options = JsonEncodeOptions {
                unescaped_unicode: true,
                unescaped_slashes: true,
                ..JsonEncodeOptions::default()
            };
            let json = json_encode(value, options).map_err(|e| CliError::BadSetting {
                setting: "output",
                message: format!("the result cannot be printed as JSON: {e}"),
            })?;
            out.extend_from_slice(&json);
        }
    }
    Ok(())
}

fn text(s: String) -> Bytes {
    Bytes::from(s)
}

fn texts(list: Vec<String>) -> Vec<Bytes> {
    list.into_iter().map(Bytes::from).collect()
}

/// The message: the argument, or the bytes of `--message-file` (`-` is stdin), at most
/// [`MESSAGE_MAX`] bytes, binary and NUL bytes included.
fn message(arg: Option<String>, file: Option<PathBuf>) -> Result<PhpValue, CliError> {
    let bytes = match (arg, file) {
        (_, Some(path)) => read_message(&path)?,
        (Some(text), None) => Bytes::from(text),
        (None, None) => {
            return Err(CliError::Usage(
                "missing <MESSAGE> (or give --message-file PATH, - for stdin)".to_owned(),
            ))
        }
    };
    Ok(PhpValue::Str(bytes))
}

fn read_message(path: &Path) -> Result<Bytes, CliError> {
    let limit = MESSAGE_MAX as u64 + 1;
    let mut buf = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut buf))
    };
    read.map_err(|e| CliError::BadSetting {
        setting: "--message-file",
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    if buf.len() > MESSAGE_MAX {
        return Err(CliError::BadSetting {
            setting: "--message-file",
            message: format!(
                "{}: the message is longer than {MESSAGE_MAX} bytes, the gateway's package size",
                path.display()
            ),
        });
    }
    Ok(Bytes::from(buf))
}

/// `NAME... MESSAGE` or, with `--message-file`, `NAME...`: the names and the message.
fn names_then_message(
    mut args: Vec<String>,
    file: Option<PathBuf>,
    name: &str,
) -> Result<(Vec<String>, PhpValue), CliError> {
    if file.is_some() {
        return Ok((args, message(None, file)?));
    }
    if args.len() < 2 {
        return Err(CliError::Usage(format!(
            "missing <MESSAGE> after the {name}(s) (or give --message-file PATH, - for stdin)"
        )));
    }
    let last = args.pop();
    Ok((args, message(last, None)?))
}

/// `--client-ids LIST`: ids separated by commas or white space; empty means none.
fn id_list(list: &str) -> Vec<Bytes> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|id| !id.is_empty())
        .map(|id| Bytes::copy_from_slice(id.as_bytes()))
        .collect()
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

/// The call as an [`ApiCall`], and the shape its result is printed in.
pub fn api_call(call: ClientCall) -> Result<(ApiCall, Shape), CliError> {
    use ClientCall as C;
    use Shape::{List, Plain};
    let plain = |call: ApiCall| (call, Plain);
    Ok(match call {
        C::SendToAll {
            message: m,
            message_file,
            client_ids,
            client_id_list,
            exclude,
            raw,
        } => {
            let list = match client_id_list {
                // Explicit, even when empty: an empty list sends to nobody.
                Some(list) => Some(id_list(&list)),
                None => (!client_ids.is_empty()).then(|| texts(client_ids)),
            };
            (
                ApiCall::SendToAll {
                    message: message(m, message_file)?,
                    client_id_list: list,
                    exclude: (!exclude.is_empty()).then(|| texts(exclude)),
                    raw,
                },
                Plain,
            )
        }
        C::SendToClient {
            client_id,
            message: m,
            message_file,
        } => (
            ApiCall::SendToClient {
                client_id: text(client_id),
                message: message(m, message_file)?,
                raw: false,
            },
            Plain,
        ),
        C::SendToUid { args, message_file } => {
            let (uids, message) = names_then_message(args, message_file, "UID")?;
            (
                ApiCall::SendToUid {
                    uids: texts(uids),
                    message,
                    raw: false,
                },
                Plain,
            )
        }
        C::SendToGroup {
            args,
            message_file,
            exclude,
            raw,
        } => {
            let (groups, message) = names_then_message(args, message_file, "GROUP")?;
            (
                ApiCall::SendToGroup {
                    groups: texts(groups),
                    message,
                    exclude: (!exclude.is_empty()).then(|| texts(exclude)),
                    raw,
                },
                Plain,
            )
        }
        C::BindUid { client_id, uid } => plain(ApiCall::BindUid {
            client_id: text(client_id),
            uid: text(uid),
        }),
        C::UnbindUid { client_id, uid } => plain(ApiCall::UnbindUid {
            client_id: text(client_id),
            uid: text(uid),
        }),
        C::JoinGroup { client_id, group } => plain(ApiCall::JoinGroup {
            client_id: text(client_id),
            group: text(group),
        }),
        C::LeaveGroup { client_id, group } => plain(ApiCall::LeaveGroup {
            client_id: text(client_id),
            group: text(group),
        }),
        C::Ungroup { group } => plain(ApiCall::Ungroup { group: text(group) }),
        C::SetSession { client_id, json } => plain(ApiCall::SetSession {
            client_id: text(client_id),
            session: session(&json)?,
        }),
        C::UpdateSession { client_id, json } => plain(ApiCall::UpdateSession {
            client_id: text(client_id),
            session: session(&json)?,
        }),
        C::GetSession { client_id } => (
            ApiCall::GetSession {
                client_id: text(client_id),
            },
            MAP,
        ),
        C::CloseClient {
            client_id,
            message: m,
            message_file,
        } => {
            let message = match (m, message_file) {
                (None, None) => None,
                (m, file) => Some(message(m, file)?),
            };
            plain(ApiCall::CloseClient {
                client_id: text(client_id),
                message,
            })
        }
        C::DestroyClient { client_id } => plain(ApiCall::DestroyClient {
            client_id: text(client_id),
        }),
        C::IsOnline { client_id } => plain(ApiCall::IsOnline {
            client_id: text(client_id),
        }),
        C::IsUidOnline { uid } => plain(ApiCall::IsUidOnline { uid: text(uid) }),
        C::GetClientIdByUid { uid } => (ApiCall::GetClientIdByUid { uid: text(uid) }, List),
        C::GetUidByClientId { client_id } => plain(ApiCall::GetUidByClientId {
            client_id: text(client_id),
        }),
        C::GetClientIdListByGroup { group } => {
            (ApiCall::GetClientIdListByGroup { group: text(group) }, MAP)
        }
        C::GetClientSessionsByGroup { group } => (
            ApiCall::GetClientSessionsByGroup { group: text(group) },
            MAP_OF_MAPS,
        ),
        C::GetClientCountByGroup { group } => {
            plain(ApiCall::GetClientCountByGroup { group: text(group) })
        }
        C::GetAllClientIdList => (ApiCall::GetAllClientIdList, MAP),
        C::GetAllClientSessions { group } => (
            ApiCall::GetAllClientSessions {
                group: text(group.unwrap_or_default()),
            },
            MAP_OF_MAPS,
        ),
        C::GetAllClientCount => plain(ApiCall::GetAllClientCount),
        C::GetAllUidList => (ApiCall::GetAllUidList, MAP),
        C::GetAllUidCount => plain(ApiCall::GetAllUidCount),
        C::GetUidListByGroup { group } => (ApiCall::GetUidListByGroup { group: text(group) }, MAP),
        C::GetUidCountByGroup { group } => {
            plain(ApiCall::GetUidCountByGroup { group: text(group) })
        }
        C::GetAllGroupIdList => (ApiCall::GetAllGroupIdList, MAP),
        C::GetAllGroupUidList => (ApiCall::GetAllGroupUidList, MAP_OF_MAPS),
        C::GetAllGroupUidCount => (ApiCall::GetAllGroupUidCount, MAP),
        C::GetAllGroupClientIdList => (ApiCall::GetAllGroupClientIdList, MAP_OF_MAPS),
        C::GetAllGroupClientIdCount => (ApiCall::GetAllGroupClientIdCount, MAP),
        C::BatchGetClientIdByUid { uids } => (
            ApiCall::BatchGetClientIdByUid { uids: texts(uids) },
            MAP_OF_LISTS,
        ),
        C::BatchGetClientIdCountByGroup { groups } => (
            ApiCall::BatchGetClientIdCountByGroup {
                groups: texts(groups),
            },
            MAP,
        ),
        C::IsUidsOnline { uids } => (ApiCall::IsUidsOnline { uids: texts(uids) }, MAP),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspect_after_ms_sets_the_library_and_zero_turns_it_off() {
        let with = |ms: Option<u64>| {
            let options = ClientOptions {
                suspect_after_ms: ms,
                ..ClientOptions::default()
            };
            client(&options).unwrap().settings().suspect_after
        };
        assert_eq!(
            with(None),
            Some(gatewayworker::client::SUSPECT_AFTER_DEFAULT)
        );
        assert_eq!(with(Some(750)), Some(Duration::from_millis(750)));
        assert_eq!(with(Some(0)), None);
    }
}
