// The exports of ABI version 1 (ABI.md 5): an entry file re-exports them all with
//   export * from "../sdk/exports";
// and registers its `Events` with `registerEvents`. Buffers the host asks for come from the
// runtime's heap (heap.alloc / heap.free), outside the garbage collector's objects.
import { ABI_VERSION, FLAG_BINARY, Message, Value, events, log } from "./index";

export function gw_abi_version(): i32 {
  return ABI_VERSION;
}

export function gw_alloc(len: i32): usize {
  if (len <= 0) return 1;
  return heap.alloc(<usize>len);
}

export function gw_free(ptr: usize, len: i32): void {
  if (len > 0 && ptr != 0) heap.free(ptr);
}

function id(ptr: usize, len: i32): string {
  return String.UTF8.decodeUnsafe(ptr, <usize>len);
}

function bytes(ptr: usize, len: i32): Uint8Array {
  const out = new Uint8Array(len > 0 ? len : 0);
  if (len > 0) memory.copy(out.dataStart, ptr, <usize>len);
  return out;
}

export function on_worker_start(): void {
  events().onWorkerStart();
}

export function on_worker_stop(): void {
  events().onWorkerStop();
}

export function on_connect(idPtr: usize, idLen: i32): void {
  events().onConnect(id(idPtr, idLen));
}

export function on_message(idPtr: usize, idLen: i32, ptr: usize, len: i32, flags: i32): void {
  events().onMessage(id(idPtr, idLen), new Message(bytes(ptr, len), (flags & FLAG_BINARY) != 0));
}

export function on_close(idPtr: usize, idLen: i32): void {
  events().onClose(id(idPtr, idLen));
}

export function on_websocket_connect(idPtr: usize, idLen: i32, ptr: usize, len: i32): void {
  const v = Value.decode(bytes(ptr, len));
  events().onWebsocketConnect(id(idPtr, idLen), v != null ? v : Value.null());
}

/** AssemblyScript's `abort` (failed assertions, out of memory): logged, then the event traps.
 *  The build points the runtime at it with `--use abort=sdk/exports/gwAbort`. */
export function gwAbort(message: string | null, file: string | null, line: u32, column: u32): void {
  log.error("guest abort: " + (message !== null ? message : "") + " at " + (file !== null ? file : "?") + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
