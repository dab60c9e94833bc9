//! The host functions of module `gw` (ABI.md 4). Every pointer and length a guest passes
//! is checked against its memory; a bad one traps the event ([`AbiViolation`]), never the host.
#![allow(
    clippy::disallowed_methods,
    reason = "the wasm host measures guest calls against their time budget"
)]

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::abi::{self, RequestError, FLAG_BINARY, SEND_FLAG_RAW};
use super::handler::{ApiHandler, ApiRequest, LogLevel};
use super::store::StoreData;
use super::value;
use crate::api::{ApiCall, ApiResult, CurrentClient};
use crate::protocol::php::{PhpKey, PhpValue};

/// Longest single `gw.sleep_ms`, in milliseconds (the op language clamps to 2 s as well).
pub const SLEEP_MS_MAX: i32 = 2_000;

/// A guest broke the ABI; the event traps with this error.
#[derive(Debug, thiserror::Error)]
#[error("ABI violation: {0}")]
pub struct AbiViolation(pub String);

fn violation(text: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(AbiViolation(text.into()))
}

/// Copies `len` bytes at `ptr` out of the guest's memory.
fn read_guest<H: ApiHandler>(
    caller: &Caller<'_, StoreData<H>>,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let data = caller.data();
    let memory = data.memory.ok_or_else(|| violation("no memory"))?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    if len > data.request_size_max {
        return Err(violation(format!(
            "buffer of {len} bytes exceeds request_size_max {}",
            data.request_size_max
        )));
    }
    memory
        .data(caller)
        .get(start..start + len)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| violation(format!("buffer {start}+{len} outside memory")))
}

/// Stores `result` in the slot and returns the status for the guest.
fn finish<H: ApiHandler>(data: &mut StoreData<H>, result: ApiResult) -> i32 {
    match result {
        Ok(v) => ok_value(data, &v),
        Err(e) => fail(data, abi::status_of(&e), e.to_string()),
    }
}

fn ok_value<H: ApiHandler>(data: &mut StoreData<H>, v: &PhpValue) -> i32 {
    data.result.clear();
    value::encode_into(v, &mut data.result);
    // Results come from gateways, which bound replies to 10 MiB: far below i32::MAX.
    i32::try_from(data.result.len()).expect("result slot below 2 GiB")
}

fn fail<H: ApiHandler>(data: &mut StoreData<H>, status: i32, text: String) -> i32 {
    debug_assert!(status < 0);
    data.result = text.into_bytes();
    status
}

/// `setSession`/`updateSession` on the current client also change `$_SESSION` (as
/// `Lib\Gateway` does), so the worker does not write the session back a second time.
fn mirror_session<H: ApiHandler>(data: &mut StoreData<H>, call: &ApiCall) {
    let Some(event) = data.event.as_mut() else {
        return;
    };
    match call {
        ApiCall::SetSession { client_id, session } if *client_id == event.client.client_id => {
            event.session.api_set(session)
        }
        ApiCall::UpdateSession { client_id, session } if *client_id == event.client.client_id => {
            event.session.api_update(session)
        }
        _ => {}
    }
}

async fn run_call<H: ApiHandler>(
    caller: &mut Caller<'_, StoreData<H>>,
    call: ApiCall,
    binary: bool,
) -> i32 {
    let data = caller.data_mut();
    mirror_session(data, &call);
    let current = data.event.as_ref().and_then(|e| {
        let client = e.current.as_ref()?;
        Some(CurrentClient {
            session: e.session.current.clone(),
            ..client.clone()
        })
    });
    let request = ApiRequest {
        call,
        binary,
        current,
    };
    let started = std::time::Instant::now();
    let result = data.handler.call(request).await;
    // The deadline bounds the event's own time: a query that legitimately waits for slow
    // gateways (bounded by the worker's own query timeout) must not use it up, so the
    // deadline moves back by the time this call waited; the rest of the budget stays spent.
    let data = caller.data_mut();
    if let Some(deadline) = data.event_deadline {
        data.event_deadline = deadline.checked_add(started.elapsed());
    }
    finish(caller.data_mut(), result)
}

/// Adds every `gw` import to `linker`.
pub(crate) fn define<H: ApiHandler>(linker: &mut Linker<StoreData<H>>) -> wasmtime::Result<()> {
    let m = abi::IMPORT_MODULE;
    linker.func_wrap_async(
        m,
        "api",
        |mut caller: Caller<'_, StoreData<H>>, (op, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                let bytes = read_guest(&caller, ptr, len)?;
                let args = match value::decode(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        let text = format!("arguments: {e}");
                        return Ok(fail(caller.data_mut(), abi::STATUS_BAD_REQUEST, text));
                    }
                };
                let has_current = caller.data().event.is_some();
                match abi::decode_call(op, args, has_current) {
                    Ok(d) => Ok(run_call(&mut caller, d.call, d.binary).await),
                    Err(RequestError::BadRequest(text)) => {
                        Ok(fail(caller.data_mut(), abi::STATUS_BAD_REQUEST, text))
                    }
                    Err(RequestError::Api(e)) => Ok(finish(caller.data_mut(), Err(e))),
                }
            })
        },
    )?;
    linker.func_wrap_async(
        m,
        "send_to_current_client",
        |mut caller: Caller<'_, StoreData<H>>, (ptr, len, flags): (i32, i32, i32)| {
            Box::new(async move {
                let bytes = read_guest(&caller, ptr, len)?;
                if caller.data().event.is_none() {
                    let e = crate::api::ApiError::NoCurrentClient;
                    return Ok(finish(caller.data_mut(), Err(e)));
                }
                let call = ApiCall::SendToCurrentClient {
                    message: PhpValue::Str(Bytes::from(bytes)),
                    raw: flags & SEND_FLAG_RAW != 0,
                };
                let status = run_call(&mut caller, call, flags & FLAG_BINARY != 0).await;
                // The hot path answers 0 on success: nothing for the guest to read back.
                Ok(status.min(0))
            })
        },
    )?;
    linker.func_wrap(m, "result_len", |caller: Caller<'_, StoreData<H>>| {
        caller.data().result.len() as i32
    })?;
    linker.func_wrap(
        m,
        "result_read",
        |mut caller: Caller<'_, StoreData<H>>, dst: i32, len: i32| -> wasmtime::Result<i32> {
            let memory = caller.data().memory.ok_or_else(|| violation("no memory"))?;
            let n = (len as u32 as usize).min(caller.data().result.len());
            let start = dst as u32 as usize;
            let (mem, data) = memory.data_and_store_mut(&mut caller);
            let target = mem
                .get_mut(start..start + n)
                .ok_or_else(|| violation(format!("result_read {start}+{n} outside memory")))?;
            target.copy_from_slice(&data.result[..n]);
            Ok(n as i32)
        },
    )?;
    linker.func_wrap(m, "client_info", |mut caller: Caller<'_, StoreData<H>>| {
        let data = caller.data_mut();
        let Some(event) = data.event.as_ref() else {
            let text = "no current client".to_string();
            return fail(data, abi::STATUS_NO_CURRENT_CLIENT, text);
        };
        let c = &event.client;
        let info: PhpValue = PhpValue::Array(
            [
                ("client_id", PhpValue::Str(c.client_id.clone())),
                ("remote_addr", PhpValue::str(&c.remote_addr)),
                ("remote_port", PhpValue::Int(c.remote_port.into())),
                ("gateway_addr", PhpValue::str(&c.gateway_addr)),
                ("gateway_port", PhpValue::Int(c.gateway_port.into())),
            ]
            .into_iter()
            .map(|(k, v)| (PhpKey::from_bytes(k.as_bytes()), v))
            .collect(),
        );
        ok_value(data, &info)
    })?;
    linker.func_wrap(m, "session_get", |mut caller: Caller<'_, StoreData<H>>| {
        let data = caller.data_mut();
        match data.event.as_ref().map(|e| e.session.current.clone()) {
            Some(session) => ok_value(data, &session),
            None => fail(
                data,
                abi::STATUS_NO_CURRENT_CLIENT,
                "no current client".into(),
            ),
        }
    })?;
    linker.func_wrap(
        m,
        "session_set",
        |mut caller: Caller<'_, StoreData<H>>, ptr: i32, len: i32| -> wasmtime::Result<i32> {
            let bytes = read_guest(&caller, ptr, len)?;
            let data = caller.data_mut();
            let session = match value::decode(&bytes) {
                Ok(v @ (PhpValue::Null | PhpValue::Array(_))) => v,
                Ok(_) => {
                    let text = "a session is null or an array".to_string();
                    return Ok(fail(data, abi::STATUS_BAD_ARGUMENT, text));
                }
                Err(e) => return Ok(fail(data, abi::STATUS_BAD_REQUEST, format!("session: {e}"))),
            };
            match data.event.as_mut() {
                Some(event) => {
                    event.session.current = session;
                    Ok(0)
                }
                None => Ok(fail(
                    data,
                    abi::STATUS_NO_CURRENT_CLIENT,
                    "no current client".into(),
                )),
            }
        },
    )?;
    linker.func_wrap(
        m,
        "log",
        |mut caller: Caller<'_, StoreData<H>>,
         level: i32,
         ptr: i32,
         len: i32|
         -> wasmtime::Result<()> {
            let bytes = read_guest(&caller, ptr, len)?;
            let text = String::from_utf8_lossy(&bytes);
            let data = caller.data_mut();
            let client = data.event.as_ref().map(|e| e.client.client_id.clone());
            data.handler
                .log(LogLevel::from_abi(level), client.as_ref(), &text);
            Ok(())
        },
    )?;
    linker.func_wrap_async(
        m,
        "sleep_ms",
        |mut caller: Caller<'_, StoreData<H>>, (ms,): (i32,)| {
            Box::new(async move {
                let mut duration =
                    std::time::Duration::from_millis(ms.clamp(0, SLEEP_MS_MAX) as u64);
                // Sleeping is the event's own time: it is not given back (a guest looping
                // on sleep_ms would otherwise hold its instance forever). A sleep that
                // would outlast the event's budget sleeps what is left, then the event
                // ends as a deadline failure.
                let left = caller
                    .data()
                    .event_deadline
                    .map(|d| d.saturating_duration_since(std::time::Instant::now()));
                let expires = left.is_some_and(|left| left <= duration);
                if let Some(left) = left {
                    duration = duration.min(left);
                }
                let slept = caller.data_mut().handler.sleep(duration).await;
                if expires && slept {
                    return Err(wasmtime::Error::from(wasmtime::Trap::Interrupt));
                }
                Ok::<i32, wasmtime::Error>(if slept {
                    0
                } else {
                    let text = "sleep is not offered by this host".to_string();
                    fail(caller.data_mut(), abi::STATUS_NOT_AVAILABLE, text)
                })
            })
        },
    )?;
    linker.func_wrap(m, "now_ms", |caller: Caller<'_, StoreData<H>>| {
        caller.data().now_ms
    })?;
    Ok(())
}
