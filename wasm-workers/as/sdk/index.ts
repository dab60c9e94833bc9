// gw-as: the gatewayworker guest SDK for AssemblyScript (ABI version 1, ../../ABI.md).
//
// A worker extends `Events`, overrides the callbacks it needs and registers itself; its
// entry file re-exports the ABI functions of "./exports":
//
//   import { Events, Message, gateway, registerEvents } from "../sdk";
//   export * from "../sdk/exports";
//   class Echo extends Events {
//     onMessage(clientId: string, message: Message): void {
//       gateway.sendToCurrentClient(message.data, message.binary);
//     }
//   }
//   registerEvents(new Echo());
//
// Values are PHP values (GWV, ABI.md 3) kept as bytes: strings are UTF-8 byte strings
// (`Value.str("…")` and `value.asString()` convert), so nothing is lost between PHP, the
// host and the guest. `json` parses and writes JSON like PHP's json_decode($t, true) and
// json_encode($v, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), as the Rust SDK does.

// ---- imports (module `gw`, ABI.md 4) ----
@external("gw", "api") declare function sys_api(op: i32, ptr: usize, len: i32): i32;
@external("gw", "send_to_current_client") declare function sys_send_to_current_client(ptr: usize, len: i32, flags: i32): i32;
@external("gw", "result_len") declare function sys_result_len(): i32;
@external("gw", "result_read") declare function sys_result_read(dst: usize, len: i32): i32;
@external("gw", "client_info") declare function sys_client_info(): i32;
@external("gw", "session_get") declare function sys_session_get(): i32;
@external("gw", "session_set") declare function sys_session_set(ptr: usize, len: i32): i32;
@external("gw", "log") declare function sys_log(level: i32, ptr: usize, len: i32): void;
@external("gw", "sleep_ms") declare function sys_sleep_ms(ms: i32): i32;
@external("gw", "now_ms") declare function sys_now_ms(): i64;

export const ABI_VERSION: i32 = 1;
export const FLAG_RAW: i32 = 0x02;
export const FLAG_BINARY: i32 = 0x04;
/** Arrays nest at most this deep in GWV and JSON. */
export const DEPTH_MAX: i32 = 64;

// ---- bytes ----

/** A growable byte buffer. */
export class Buf {
  data: Uint8Array = new Uint8Array(64);
  len: i32 = 0;

  reserve(n: i32): void {
    if (n > 0x7fffffff - this.len) unreachable();
    if (this.len + n <= this.data.length) return;
    let cap = this.data.length * 2;
    if (cap < this.len + n) cap = this.len + n;
    const d = new Uint8Array(cap);
    memory.copy(d.dataStart, this.data.dataStart, this.len);
    this.data = d;
  }
  byte(c: i32): void {
    this.reserve(1);
    this.data[this.len++] = <u8>c;
  }
  raw(ptr: usize, n: i32): void {
    this.reserve(n);
    memory.copy(this.data.dataStart + <usize>this.len, ptr, n);
    this.len += n;
  }
  bytes(b: Uint8Array): void {
    this.raw(b.dataStart, b.length);
  }
  /** ASCII text (every char < 0x80). */
  ascii(s: string): void {
    this.reserve(s.length);
    for (let i = 0; i < s.length; i++) this.data[this.len++] = <u8>s.charCodeAt(i);
  }
  utf8(s: string): void {
    this.bytes(Uint8Array.wrap(String.UTF8.encode(s)));
  }
  int(n: i64): void {
    this.ascii(n.toString());
  }
  /** The bytes written (a copy). */
  finish(): Uint8Array {
    return this.data.slice(0, this.len);
  }
}

export function utf8(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): bool {
  return a.length == b.length && memory.compare(a.dataStart, b.dataStart, a.length) == 0;
}

/** Byte order (what Rust's `str` ordering and PHP's `strcmp` use). */
export function bytesCompare(a: Uint8Array, b: Uint8Array): i32 {
  const n = a.length < b.length ? a.length : b.length;
  const c = memory.compare(a.dataStart, b.dataStart, n);
  if (c != 0) return c;
  return a.length - b.length;
}

/** One UTF-8 character at s[at] (a byte >= 0x80): its length, or 0 when invalid (strict
 *  UTF-8: no overlongs, no surrogates, at most U+10FFFF); the code point in `utf8Cp`. */
export let utf8Cp: u32 = 0;
export function utf8At(s: Uint8Array, at: i32): i32 {
  const p = s.dataStart + <usize>at;
  const left = s.length - at;
  const c = <u32>load<u8>(p);
  let need = 0;
  let v: u32 = 0;
  if (c >= 0xc2 && c <= 0xdf) { need = 2; v = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { need = 3; v = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 4; v = c & 0x07; }
  else return 0;
  if (need > left) return 0;
  for (let i = 1; i < need; i++) {
    const b = <u32>load<u8>(p + <usize>i);
    if ((b & 0xc0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3f);
  }
  const min: u32 = need == 2 ? 0x80 : need == 3 ? 0x800 : 0x10000;
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  utf8Cp = v;
  return need;
}

export function isUtf8(s: Uint8Array): bool {
  const base = s.dataStart;
  const len = s.length;
  for (let i = 0; i < len; ) {
    if (load<u8>(base + <usize>i) < 0x80) { i++; continue; }
    const n = utf8At(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// ---- values (GWV) ----

export enum Type { Null, Bool, Int, Float, Str, Array }

/** An array key: an int, or a byte string. */
export class Key {
  constructor(public isInt: bool, public int: i64, public bytes: Uint8Array | null) {}

  static int(n: i64): Key {
    return new Key(true, n, null);
  }
  /** PHP's key normalisation: a canonical decimal integer string is an int key. */
  static fromBytes(s: Uint8Array): Key {
    const n = canonicalInt(s);
    if (canonicalOk) return Key.int(n);
    return new Key(false, 0, s);
  }
  static str(s: string): Key {
    return Key.fromBytes(utf8(s));
  }
  equals(o: Key): bool {
    if (this.isInt != o.isInt) return false;
    if (this.isInt) return this.int == o.int;
    return bytesEqual(this.bytes!, o.bytes!);
  }
  /** (string)$key */
  toBytes(): Uint8Array {
    if (!this.isInt) return this.bytes!;
    return utf8(this.int.toString());
  }
}

let canonicalOk = false;
function canonicalInt(s: Uint8Array): i64 {
  canonicalOk = false;
  const len = s.length;
  const at = len > 0 && s[0] == 0x2d ? 1 : 0;
  if (at == len || len > 20) return 0;
  for (let i = at; i < len; i++) if (s[i] < 0x30 || s[i] > 0x39) return 0;
  if (s[at] == 0x30 && (len - at > 1 || at == 1)) return 0;
  let u: u64 = 0;
  for (let i = at; i < len; i++) {
    const d = <u64>(s[i] - 0x30);
    if (u > (0xffffffffffffffff - d) / 10) return 0;
    u = u * 10 + d;
  }
  if (at == 0 && u > 0x7fffffffffffffff) return 0;
  if (at == 1 && u > 0x8000000000000000) return 0;
  canonicalOk = true;
  return at ? <i64>(0 - u) : <i64>u;
}

/** A PHP value. */
export class Value {
  type: Type = Type.Null;
  b: bool = false;
  i: i64 = 0;
  f: f64 = 0;
  /** Floats read from JSON: the shortest digits and the decimal point position
   *  (value = 0.DIGITS × 10^decpt) when exact, else null. */
  digits: Uint8Array | null = null;
  decpt: i32 = 0;
  s: Uint8Array | null = null;
  keys: Key[] = [];
  vals: Value[] = [];

  static null(): Value {
    return new Value();
  }
  static bool(b: bool): Value {
    const v = new Value();
    v.type = Type.Bool;
    v.b = b;
    return v;
  }
  static int(n: i64): Value {
    const v = new Value();
    v.type = Type.Int;
    v.i = n;
    return v;
  }
  static float(f: f64): Value {
    const v = new Value();
    v.type = Type.Float;
    v.f = f;
    return v;
  }
  static bytes(s: Uint8Array): Value {
    const v = new Value();
    v.type = Type.Str;
    v.s = s;
    return v;
  }
  static str(s: string): Value {
    return Value.bytes(utf8(s));
  }
  static array(): Value {
    const v = new Value();
    v.type = Type.Array;
    return v;
  }
  static list(items: Value[]): Value {
    const v = Value.array();
    for (let i = 0; i < items.length; i++) v.push(items[i]);
    return v;
  }
  /** A map from (key, value) pairs, in order. */
  static map(keys: string[], vals: Value[]): Value {
    const v = Value.array();
    for (let i = 0; i < keys.length; i++) v.set(keys[i], vals[i]);
    return v;
  }

  isNull(): bool { return this.type == Type.Null; }
  isStr(): bool { return this.type == Type.Str; }
  isArray(): bool { return this.type == Type.Array; }

  /** The text of a UTF-8 string value, else null. */
  asString(): string | null {
    if (this.type != Type.Str || !isUtf8(this.s!)) return null;
    return String.UTF8.decode(this.s!.buffer.slice(this.s!.byteOffset, this.s!.byteOffset + this.s!.length));
  }
  /** The bytes of a UTF-8 string value (what Rust's `as_str` accepts), else null. */
  asUtf8(): Uint8Array | null {
    if (this.type != Type.Str || !isUtf8(this.s!)) return null;
    return this.s;
  }
  asInt(): i64 {
    return this.type == Type.Int ? this.i : this.type == Type.Bool ? (this.b ? 1 : 0) : 0;
  }
  /** True when this is the string `s`. */
  is(s: string): bool {
    return this.type == Type.Str && bytesEqual(this.s!, utf8(s));
  }

  getKey(k: Key): Value | null {
    if (this.type != Type.Array) return null;
    for (let i = 0; i < this.keys.length; i++) if (this.keys[i].equals(k)) return this.vals[i];
    return null;
  }
  /** $array[key], or null when absent or not an array. */
  get(key: string): Value | null {
    return this.getKey(Key.str(key));
  }
  /** $array[key] = value (in place when the key exists); a non-array becomes an empty array first. */
  setKey(k: Key, v: Value): void {
    if (this.type != Type.Array) {
      this.type = Type.Array;
      this.keys = [];
      this.vals = [];
    }
    for (let i = 0; i < this.keys.length; i++) {
      if (this.keys[i].equals(k)) {
        this.vals[i] = v;
        return;
      }
    }
    this.keys.push(k);
    this.vals.push(v);
  }
  set(key: string, v: Value): void {
    this.setKey(Key.str(key), v);
  }
  /** Appends to a list (key = entry count). */
  push(v: Value): void {
    this.setKey(Key.int(this.type == Type.Array ? this.keys.length : 0), v);
  }
  /** The values of an array; a non-array is its own single value. */
  values(): Value[] {
    if (this.type == Type.Array) return this.vals;
    return [this];
  }

  /** The GWV encoding. */
  encode(): Uint8Array {
    const b = new Buf();
    encodeInto(this, b);
    return b.finish();
  }
  /** One GWV value filling `bytes`, or null. */
  static decode(bytes: Uint8Array): Value | null {
    const r = new Reader(bytes);
    const v = r.value(0);
    return v != null && r.at == bytes.length ? v : null;
  }
}

function u32le(b: Buf, n: u32): void {
  b.reserve(4);
  store<u32>(b.data.dataStart + <usize>b.len, n);
  b.len += 4;
}
function u64le(b: Buf, n: u64): void {
  b.reserve(8);
  store<u64>(b.data.dataStart + <usize>b.len, n);
  b.len += 8;
}

function encodeInto(v: Value, b: Buf): void {
  switch (v.type) {
    case Type.Null: b.byte(0); break;
    case Type.Bool: b.byte(v.b ? 2 : 1); break;
    case Type.Int: b.byte(3); u64le(b, <u64>v.i); break;
    case Type.Float: b.byte(4); u64le(b, reinterpret<u64>(v.f)); break;
    case Type.Str: b.byte(5); u32le(b, v.s!.length); b.bytes(v.s!); break;
    default: {
      b.byte(6);
      u32le(b, v.keys.length);
      for (let i = 0; i < v.keys.length; i++) {
        const k = v.keys[i];
        if (k.isInt) { b.byte(3); u64le(b, <u64>k.int); }
        else { b.byte(5); u32le(b, k.bytes!.length); b.bytes(k.bytes!); }
        encodeInto(v.vals[i], b);
      }
    }
  }
}

class Reader {
  at: i32 = 0;
  constructor(public s: Uint8Array) {}
  left(): i32 { return this.s.length - this.at; }
  u32(): i64 {
    if (this.left() < 4) return -1;
    const n = load<u32>(this.s.dataStart + <usize>this.at);
    this.at += 4;
    return <i64>n;
  }
  u64(): u64 {
    const n = load<u64>(this.s.dataStart + <usize>this.at);
    this.at += 8;
    return n;
  }
  take(n: i64): Uint8Array | null {
    if (n < 0 || n > <i64>this.left()) return null;
    const out = this.s.slice(this.at, this.at + <i32>n);
    this.at += <i32>n;
    return out;
  }
  value(depth: i32): Value | null {
    if (this.left() < 1) return null;
    const tag = this.s[this.at++];
    switch (tag) {
      case 0: return Value.null();
      case 1: return Value.bool(false);
      case 2: return Value.bool(true);
      case 3: if (this.left() < 8) return null; return Value.int(<i64>this.u64());
      case 4: if (this.left() < 8) return null; return Value.float(reinterpret<f64>(this.u64()));
      case 5: {
        const s = this.take(this.u32());
        return s == null ? null : Value.bytes(s);
      }
      case 6: {
        if (depth >= DEPTH_MAX) return null;
        const n = this.u32();
        // Each entry takes at least 2 bytes: a count beyond that is a lie.
        if (n < 0 || n > <i64>(this.left() / 2)) return null;
        const a = Value.array();
        for (let i: i64 = 0; i < n; i++) {
          if (this.left() < 1) return null;
          const kt = this.s[this.at++];
          let k: Key;
          if (kt == 3) {
            if (this.left() < 8) return null;
            k = Key.int(<i64>this.u64());
          } else if (kt == 5) {
            const ks = this.take(this.u32());
            if (ks == null) return null;
            k = new Key(false, 0, ks);
          } else return null;
          const v = this.value(depth + 1);
          if (v == null) return null;
          a.setKey(k, v);
        }
        return a;
      }
      default: return null;
    }
  }
}

// ---- host calls ----

/** The status of the last call that failed (negative, ABI.md 4.1) and its explanation. */
export let lastStatus: i32 = 0;
export let lastError: string = "";

function takeResult(len: i32): Uint8Array {
  const out = new Uint8Array(len > 0 ? len : 0);
  if (len > 0) {
    const n = sys_result_read(out.dataStart, len);
    return n == len ? out : out.slice(0, n);
  }
  return out;
}
/** Result bytes for a status >= 0; else records the error and returns null. */
function status(s: i32): Uint8Array | null {
  if (s >= 0) return takeResult(s);
  lastStatus = s;
  const t = takeResult(sys_result_len());
  lastError = String.UTF8.decode(t.buffer.slice(t.byteOffset, t.byteOffset + t.length));
  return null;
}

export function nowMs(): i64 {
  return sys_now_ms();
}
/** Waits `ms` milliseconds (0..=2000); 0, or -2 when the host offers no sleep. */
export function sleepMs(ms: i32): i32 {
  return sys_sleep_ms(ms);
}

export namespace log {
  function write(level: i32, text: string): void {
    const b = utf8(text);
    sys_log(level, b.dataStart, b.length);
  }
  export function error(text: string): void { write(0, text); }
  export function warn(text: string): void { write(1, text); }
  export function info(text: string): void { write(2, text); }
  export function debug(text: string): void { write(3, text); }
}

export namespace session {
  /** $_SESSION (null when the client has none), or null outside client events. */
  export function get(): Value | null {
    const r = status(sys_session_get());
    if (r == null) return null;
    const v = Value.decode(r);
    return v != null ? v : Value.null();
  }
  /** $_SESSION = value (null or array): 0 or a negative status. */
  export function set(v: Value): i32 {
    const b = v.encode();
    const s = sys_session_set(b.dataStart, b.length);
    status(s);
    return s < 0 ? s : 0;
  }
}

/** The event's client_id, remote_addr, remote_port, gateway_addr, gateway_port. */
export function clientInfo(): Value | null {
  const r = status(sys_client_info());
  return r == null ? null : Value.decode(r);
}

export namespace op {
  export const SEND_TO_CLIENT = 1; export const SEND_TO_CURRENT_CLIENT = 2; export const SEND_TO_ALL = 3;
  export const SEND_TO_UID = 4; export const SEND_TO_GROUP = 5; export const BIND_UID = 6;
  export const UNBIND_UID = 7; export const JOIN_GROUP = 8; export const LEAVE_GROUP = 9;
  export const UNGROUP = 10; export const SET_SESSION = 11; export const UPDATE_SESSION = 12;
  export const GET_SESSION = 13; export const CLOSE_CLIENT = 14; export const DESTROY_CLIENT = 15;
  export const CLOSE_CURRENT_CLIENT = 16; export const DESTROY_CURRENT_CLIENT = 17; export const IS_ONLINE = 18;
  export const IS_UID_ONLINE = 19; export const GET_CLIENT_ID_BY_UID = 20; export const GET_UID_BY_CLIENT_ID = 21;
  export const GET_CLIENT_ID_LIST_BY_GROUP = 22; export const GET_CLIENT_SESSIONS_BY_GROUP = 23;
  export const GET_CLIENT_COUNT_BY_GROUP = 24; export const GET_ALL_CLIENT_ID_LIST = 25;
  export const GET_ALL_CLIENT_SESSIONS = 26; export const GET_ALL_CLIENT_COUNT = 27; export const GET_ALL_UID_LIST = 28;
  export const GET_ALL_UID_COUNT = 29; export const GET_UID_LIST_BY_GROUP = 30; export const GET_UID_COUNT_BY_GROUP = 31;
  export const GET_ALL_GROUP_ID_LIST = 32; export const GET_ALL_GROUP_UID_LIST = 33; export const GET_ALL_GROUP_UID_COUNT = 34;
  export const GET_ALL_GROUP_CLIENT_ID_LIST = 35; export const GET_ALL_GROUP_CLIENT_ID_COUNT = 36;
  export const BATCH_GET_CLIENT_ID_BY_UID = 37; export const BATCH_GET_CLIENT_ID_COUNT_BY_GROUP = 38;
  export const IS_UIDS_ONLINE = 39;
}

/** The Gateway API (`GatewayWorker\Lib\Gateway`). Every call returns the PHP return value,
 *  or null on a failure (`lastStatus` / `lastError` say why). */
export namespace gateway {
  /** Runs `op` (see `op`) with positional `args`. */
  export function call(opcode: i32, args: Value[]): Value | null {
    const a = Value.list(args).encode();
    const r = status(sys_api(opcode, a.dataStart, a.length));
    if (r == null) return null;
    const v = Value.decode(r);
    if (v == null) lastStatus = -6;
    return v;
  }
  function flag(v: Value | null): bool {
    return v != null && v.asInt() != 0;
  }

  /** Hot path: sendToCurrentClient of bytes; 0 or a negative status. */
  export function sendToCurrentClient(data: Uint8Array, binary: bool = false): i32 {
    const s = sys_send_to_current_client(data.dataStart, data.length, binary ? FLAG_BINARY : 0);
    if (s < 0) status(s);
    return s;
  }
  export function sendText(text: string): i32 {
    return sendToCurrentClient(utf8(text), false);
  }
  export function sendToClient(clientId: string, message: Value): Value | null {
    return call(op.SEND_TO_CLIENT, [Value.str(clientId), message]);
  }
  export function sendToAll(message: Value, clientIds: Value = Value.null(), exclude: Value = Value.null()): Value | null {
    return call(op.SEND_TO_ALL, [message, clientIds, exclude]);
  }
  /** uid: a string or a list of them. */
  export function sendToUid(uid: Value, message: Value): Value | null {
    return call(op.SEND_TO_UID, [uid, message]);
  }
  /** group: a string or a list; exclude: null, a client id or a list of them. */
  export function sendToGroup(group: Value, message: Value, exclude: Value = Value.null()): Value | null {
    return call(op.SEND_TO_GROUP, [group, message, exclude]);
  }
  export function bindUid(clientId: string, uid: Value): Value | null {
    return call(op.BIND_UID, [Value.str(clientId), uid]);
  }
  export function unbindUid(clientId: string, uid: Value): Value | null {
    return call(op.UNBIND_UID, [Value.str(clientId), uid]);
  }
  export function joinGroup(clientId: string, group: Value): Value | null {
    return call(op.JOIN_GROUP, [Value.str(clientId), group]);
  }
  export function leaveGroup(clientId: string, group: Value): Value | null {
    return call(op.LEAVE_GROUP, [Value.str(clientId), group]);
  }
  export function ungroup(group: Value): Value | null {
    return call(op.UNGROUP, [group]);
  }
  export function setSession(clientId: string, session: Value): Value | null {
    return call(op.SET_SESSION, [Value.str(clientId), session]);
  }
  export function updateSession(clientId: string, session: Value): Value | null {
    return call(op.UPDATE_SESSION, [Value.str(clientId), session]);
  }
  export function getSession(clientId: string): Value | null {
    return call(op.GET_SESSION, [Value.str(clientId)]);
  }
  export function closeClient(clientId: string, message: Value = Value.null()): Value | null {
    return call(op.CLOSE_CLIENT, [Value.str(clientId), message]);
  }
  export function closeCurrentClient(message: Value = Value.null()): Value | null {
    return call(op.CLOSE_CURRENT_CLIENT, [message]);
  }
  export function isOnline(clientId: string): bool {
    return flag(call(op.IS_ONLINE, [Value.str(clientId)]));
  }
  export function isUidOnline(uid: Value): bool {
    return flag(call(op.IS_UID_ONLINE, [uid]));
  }
  export function getClientIdByUid(uid: Value): Value | null {
    return call(op.GET_CLIENT_ID_BY_UID, [uid]);
  }
  export function getClientIdListByGroup(group: Value): Value | null {
    return call(op.GET_CLIENT_ID_LIST_BY_GROUP, [group]);
  }
  export function getClientSessionsByGroup(group: Value): Value | null {
    return call(op.GET_CLIENT_SESSIONS_BY_GROUP, [group]);
  }
  export function getClientCountByGroup(group: Value): i64 {
    const v = call(op.GET_CLIENT_COUNT_BY_GROUP, [group]);
    return v == null ? 0 : v.asInt();
  }
  export function getAllClientCount(): i64 {
    const v = call(op.GET_ALL_CLIENT_COUNT, []);
    return v == null ? 0 : v.asInt();
  }
}

// ---- JSON ----

export namespace json {
  const HEX = "0123456789abcdef";

  /** PHP's escaping with JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE (invalid UTF-8
   *  becomes U+FFFD per byte; JSON-parsed text is always valid). */
  export function writeStr(s: Uint8Array, out: Buf): void {
    out.byte(0x22);
    const base = s.dataStart;
    const len = s.length;
    let at = 0;
    while (at < len) {
      // A run of bytes written as they are: printable ASCII but " and \, and valid
      // multi-byte characters but U+2028 and U+2029.
      let run = at;
      while (run < len) {
        const c = <i32>load<u8>(base + <usize>run);
        if (c < 0x80) {
          if (c < 0x20 || c == 0x22 || c == 0x5c) break;
          run++;
          continue;
        }
        const n = utf8At(s, run);
        if (n == 0 || utf8Cp == 0x2028 || utf8Cp == 0x2029) break;
        run += n;
      }
      if (run > at) {
        out.raw(base + <usize>at, run - at);
        at = run;
        if (at >= len) break;
      }
      const c = <i32>load<u8>(base + <usize>at);
      if (c < 0x80) {
        if (c == 0x22) out.ascii("\\\"");
        else if (c == 0x5c) out.ascii("\\\\");
        else if (c == 0x08) out.ascii("\\b");
        else if (c == 0x0c) out.ascii("\\f");
        else if (c == 0x0a) out.ascii("\\n");
        else if (c == 0x0d) out.ascii("\\r");
        else if (c == 0x09) out.ascii("\\t");
        else {
          out.ascii("\\u00");
          out.byte(HEX.charCodeAt(c >> 4));
          out.byte(HEX.charCodeAt(c & 15));
        }
        at++;
        continue;
      }
      const n = utf8At(s, at);
      if (n == 0) {
        out.byte(0xef); out.byte(0xbf); out.byte(0xbd);
        at++;
      } else {
        out.ascii(utf8Cp == 0x2028 ? "\\u2028" : "\\u2029");
        at += n;
      }
    }
    out.byte(0x22);
  }

  /** zend_gcvt's layout of digits/decpt, as json_encode writes a float. */
  function layout(neg: bool, d: Uint8Array, decpt: i32, out: Buf): void {
    const nd = d.length;
    if (neg) out.byte(0x2d);
    if (decpt > 17 || decpt < -3) {
      out.byte(d[0]);
      out.byte(0x2e);
      if (nd == 1) out.byte(0x30);
      else out.raw(d.dataStart + 1, nd - 1);
      out.byte(0x65);
      out.byte(decpt - 1 < 0 ? 0x2d : 0x2b);
      out.int(decpt - 1 < 0 ? 1 - decpt : decpt - 1);
    } else if (decpt <= 0) {
      out.ascii("0.");
      for (let i = 0; i < -decpt; i++) out.byte(0x30);
      out.bytes(d);
    } else {
      for (let i = 0; i < decpt; i++) out.byte(i < nd ? d[i] : 0x30);
      if (nd > decpt) {
        out.byte(0x2e);
        out.raw(d.dataStart + <usize>decpt, nd - decpt);
      }
    }
  }

  function negative(f: f64): bool {
    return (reinterpret<u64>(f) >> 63) != 0;
  }

  /** A float without exact digits: the digits of AssemblyScript's own shortest form. */
  function writeFloat(f: f64, out: Buf): void {
    if (!isFinite(f)) { out.ascii("null"); return; }
    if (f == 0) { out.ascii(negative(f) ? "-0" : "0"); return; }
    const t = utf8(Math.abs(f).toString());
    const d = new Buf();
    let decpt = 0;
    let seen = false;
    let dot = false;
    let i = 0;
    for (; i < t.length; i++) {
      const c = <i32>t[i];
      if (c == 0x2e) { dot = true; continue; }
      if (c == 0x65 || c == 0x45) break;
      if (!seen && c == 0x30) { if (dot) decpt--; continue; }
      seen = true;
      d.byte(c);
      if (!dot) decpt++;
    }
    if (i < t.length) {
      i++;
      let eneg = false;
      if (t[i] == 0x2d || t[i] == 0x2b) { eneg = t[i] == 0x2d; i++; }
      let e = 0;
      for (; i < t.length; i++) e = e * 10 + (<i32>t[i] - 0x30);
      decpt += eneg ? -e : e;
    }
    while (d.len > 1 && d.data[d.len - 1] == 0x30) d.len--;
    layout(negative(f), d.finish(), decpt, out);
  }

  function writeValue(v: Value, out: Buf): void {
    switch (v.type) {
      case Type.Null: out.ascii("null"); break;
      case Type.Bool: out.ascii(v.b ? "true" : "false"); break;
      case Type.Int: out.int(v.i); break;
      case Type.Float:
        if (v.digits != null) layout(negative(v.f), v.digits!, v.decpt, out);
        else writeFloat(v.f, out);
        break;
      case Type.Str: writeStr(v.s!, out); break;
      default: {
        let list = true;
        for (let i = 0; i < v.keys.length && list; i++) list = v.keys[i].isInt && v.keys[i].int == <i64>i;
        out.byte(list ? 0x5b : 0x7b);
        for (let i = 0; i < v.keys.length; i++) {
          if (i > 0) out.byte(0x2c);
          if (!list) {
            writeStr(v.keys[i].toBytes(), out);
            out.byte(0x3a);
          }
          writeValue(v.vals[i], out);
        }
        out.byte(list ? 0x5d : 0x7d);
      }
    }
  }

  /** The JSON text of `v` (NaN and infinities become null). */
  export function encode(v: Value): Uint8Array {
    const b = new Buf();
    writeValue(v, b);
    return b.finish();
  }

  /** One JSON document, or null when the text is not JSON (nesting at most 64 deep). */
  export function parse(text: Uint8Array): Value | null {
    const p = new Parser(text);
    p.ws();
    const v = p.value(0);
    if (v == null) return null;
    p.ws();
    return p.at == text.length ? v : null;
  }

  class Parser {
    at: i32 = 0;
    constructor(public s: Uint8Array) {}
    more(): bool { return this.at < this.s.length; }
    peek(): i32 { return <i32>this.s[this.at]; }
    ws(): void {
      while (this.more()) {
        const c = this.peek();
        if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
        this.at++;
      }
    }
    eat(lit: string): bool {
      if (lit.length > this.s.length - this.at) return false;
      for (let i = 0; i < lit.length; i++) if (<i32>this.s[this.at + i] != lit.charCodeAt(i)) return false;
      this.at += lit.length;
      return true;
    }
    value(depth: i32): Value | null {
      if (!this.more()) return null;
      const c = this.peek();
      if ((c == 0x5b || c == 0x7b) && depth >= DEPTH_MAX) return null;
      if (c == 0x6e) return this.eat("null") ? Value.null() : null;
      if (c == 0x74) return this.eat("true") ? Value.bool(true) : null;
      if (c == 0x66) return this.eat("false") ? Value.bool(false) : null;
      if (c == 0x22) {
        const s = this.string();
        return s == null ? null : Value.bytes(s);
      }
      if (c == 0x5b || c == 0x7b) return this.array(depth, c == 0x7b);
      return this.number();
    }
    array(depth: i32, object: bool): Value | null {
      const a = Value.array();
      const close = object ? 0x7d : 0x5d;
      this.at++;
      this.ws();
      if (!this.more()) return null;
      if (this.peek() == close) { this.at++; return a; }
      while (true) {
        this.ws();
        if (object) {
          if (!this.more() || this.peek() != 0x22) return null;
          const key = this.string();
          if (key == null) return null;
          this.ws();
          if (!this.eat(":")) return null;
          this.ws();
          const v = this.value(depth + 1);
          if (v == null) return null;
          a.setKey(Key.fromBytes(key), v);
        } else {
          const v = this.value(depth + 1);
          if (v == null) return null;
          a.push(v);
        }
        this.ws();
        if (!this.more()) return null;
        const c = this.peek();
        this.at++;
        if (c == 0x2c) continue;
        if (c == close) return a;
        return null;
      }
      return null;
    }
    hex4(): i32 {
      if (this.s.length - this.at < 4) return -1;
      let v = 0;
      for (let i = 0; i < 4; i++) {
        const c = <i32>this.s[this.at + i];
        let d: i32;
        if (c >= 0x30 && c <= 0x39) d = c - 0x30;
        else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
        else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
        else return -1;
        v = (v << 4) | d;
      }
      this.at += 4;
      return v;
    }
    string(): Uint8Array | null {
      const out = new Buf();
      const base = this.s.dataStart;
      const len = this.s.length;
      this.at++;
      while (true) {
        // A run of bytes taken as they are.
        let run = this.at;
        while (run < len) {
          const c = load<u8>(base + <usize>run);
          if (c == 0x22 || c == 0x5c || c < 0x20) break;
          run++;
        }
        if (run > this.at) {
          out.raw(base + <usize>this.at, run - this.at);
          this.at = run;
        }
        if (this.at >= len) return null;
        const c = <i32>load<u8>(base + <usize>this.at);
        this.at++;
        if (c == 0x22) break;
        if (c < 0x20) return null;
        if (!this.more()) return null;
        const e = this.peek();
        this.at++;
        if (e == 0x22) out.byte(0x22);
        else if (e == 0x5c) out.byte(0x5c);
        else if (e == 0x2f) out.byte(0x2f);
        else if (e == 0x62) out.byte(8);
        else if (e == 0x66) out.byte(12);
        else if (e == 0x6e) out.byte(10);
        else if (e == 0x72) out.byte(13);
        else if (e == 0x74) out.byte(9);
        else if (e == 0x75) {
          let cp = this.hex4();
          if (cp < 0) return null;
          if (cp >= 0xd800 && cp < 0xdc00) {
            if (!this.eat("\\u")) return null;
            const lo = this.hex4();
            if (lo < 0xdc00 || lo >= 0xe000) return null;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          } else if (cp >= 0xdc00 && cp < 0xe000) return null;
          putUtf8(out, cp);
        } else return null;
      }
      const s = out.finish();
      return isUtf8(s) ? s : null;
    }
    digits(): i32 {
      const start = this.at;
      while (this.more() && this.peek() >= 0x30 && this.peek() <= 0x39) this.at++;
      return this.at - start;
    }
    /** RFC 8259 numbers: ints that fit i64 are ints, everything else a float. */
    number(): Value | null {
      const start = this.at;
      let neg = false;
      if (this.more() && this.peek() == 0x2d) { neg = true; this.at++; }
      const intStart = this.at;
      const nInt = this.digits();
      if (nInt == 0 || (this.s[intStart] == 0x30 && nInt > 1)) return null;
      let fracStart = 0;
      let fracEnd = 0;
      let isFloat = false;
      if (this.more() && this.peek() == 0x2e) {
        this.at++;
        fracStart = this.at;
        if (this.digits() == 0) return null;
        fracEnd = this.at;
        isFloat = true;
      }
      let e10: i64 = 0;
      if (this.more() && (this.peek() == 0x65 || this.peek() == 0x45)) {
        this.at++;
        let eneg = false;
        if (this.more() && (this.peek() == 0x2b || this.peek() == 0x2d)) { eneg = this.peek() == 0x2d; this.at++; }
        const es = this.at;
        while (this.more() && this.peek() >= 0x30 && this.peek() <= 0x39) {
          if (e10 < 1000000) e10 = e10 * 10 + <i64>(this.peek() - 0x30);
          this.at++;
        }
        if (this.at == es) return null;
        if (eneg) e10 = -e10;
        isFloat = true;
      }
      const text = this.s.slice(start, this.at);
      if (!isFloat) {
        const n = canonicalInt(text);
        if (canonicalOk) return Value.int(n);
        if (nInt == 1 && this.s[intStart] == 0x30) return Value.int(0); // "-0"
      }
      const d = new Buf();
      let decpt = 0;
      let seen = false;
      for (let i = intStart; i < intStart + nInt; i++) {
        if (!seen && this.s[i] == 0x30) continue;
        seen = true;
        d.byte(this.s[i]);
        decpt++;
      }
      for (let i = fracStart; i < fracEnd; i++) {
        if (!seen && this.s[i] == 0x30) { decpt--; continue; }
        seen = true;
        d.byte(this.s[i]);
      }
      while (d.len > 0 && d.data[d.len - 1] == 0x30) d.len--;
      const str = String.UTF8.decode(text.buffer.slice(text.byteOffset, text.byteOffset + text.length));
      const v = Value.float(parseFloat(str));
      if (d.len == 0) {
        v.f = neg ? -0.0 : 0.0;
        v.digits = utf8("0");
        v.decpt = 1;
        return v;
      }
      const dp = <i64>decpt + e10;
      // Exact shortest digits: <= 15 significant digits of a normal, finite double.
      const digits = d.finish();
      if (digits.length <= 15 && dp >= -306 && (dp <= 308 || (dp == 309 && bytesCompare(digits, utf8("17976931348623157").slice(0, digits.length)) <= 0))) {
        v.digits = digits;
        v.decpt = <i32>dp;
      }
      return v;
    }
  }

  function putUtf8(b: Buf, cp: i32): void {
    if (cp < 0x80) b.byte(cp);
    else if (cp < 0x800) { b.byte(0xc0 | (cp >> 6)); b.byte(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) { b.byte(0xe0 | (cp >> 12)); b.byte(0x80 | ((cp >> 6) & 0x3f)); b.byte(0x80 | (cp & 0x3f)); }
    else { b.byte(0xf0 | (cp >> 18)); b.byte(0x80 | ((cp >> 12) & 0x3f)); b.byte(0x80 | ((cp >> 6) & 0x3f)); b.byte(0x80 | (cp & 0x3f)); }
  }
}

// ---- events ----

/** A client message: its bytes, and whether it came as a binary websocket message. */
export class Message {
  constructor(public data: Uint8Array, public binary: bool) {}
  /** The message as text (UTF-8), or null when it is not UTF-8. */
  text(): string | null {
    return Value.bytes(this.data).asString();
  }
}

/** The callbacks a worker overrides (each default does nothing). */
export class Events {
  onWorkerStart(): void {}
  onConnect(clientId: string): void {}
  onMessage(clientId: string, message: Message): void {}
  onClose(clientId: string): void {}
  /** data: array `get`, `server`, `cookie` (PHP's $_GET/$_SERVER/$_COOKIE of the upgrade). */
  onWebsocketConnect(clientId: string, data: Value): void {}
  onWorkerStop(): void {}
}

let worker: Events = new Events();

/** Makes `events` the worker (call it once, at the top level of the entry file). */
export function registerEvents(events: Events): void {
  worker = events;
}

/** The registered worker (used by ./exports). */
export function events(): Events {
  return worker;
}
