// Chat rooms over the Gateway API: the AssemblyScript twin of examples/chat (same
// protocol, same replies byte for byte; the protocol is described in
// examples/chat/src/lib.rs). Rooms are groups, the nickname lives in the session and
// doubles as the uid.
import {
  Buf, Events, Message, Value, bytesCompare, gateway, isUtf8, json, nowMs, registerEvents,
  session, utf8, utf8At, utf8Cp,
} from "../sdk/index";
export * from "../sdk/exports";

/** Longest accepted nickname or room name, in bytes. */
const NAME_LEN_MAX = 32;

function sendSelf(v: Value): void {
  gateway.sendToCurrentClient(json.encode(v), false);
}

function error(reason: Value): void {
  sendSelf(Value.map(["type", "reason"], [Value.str("error"), reason]));
}

/** Unicode White_Space (what Rust's str::trim removes). */
function isSpace(c: u32): bool {
  return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
    c == 0x205f || c == 0x3000;
}

/** The code point of the (valid UTF-8) character at s[at]; its length in `charLen`. */
let charLen = 1;
function charAt(s: Uint8Array, at: i32): u32 {
  if (s[at] < 0x80) {
    charLen = 1;
    return <u32>s[at];
  }
  const n = utf8At(s, at);
  charLen = n > 0 ? n : 1;
  return n > 0 ? utf8Cp : 0xfffd;
}

/** A usable name: a UTF-8 string, trimmed, 1..=NAME_LEN_MAX bytes, not "0"; else null. */
function validName(v: Value | null): Value | null {
  if (v == null || !v.isStr() || !isUtf8(v.s!)) return null;
  const s = v.s!;
  let start = 0;
  let end = s.length;
  while (start < end) {
    const c = charAt(s, start);
    if (!isSpace(c)) break;
    start += charLen;
  }
  while (end > start) {
    let at = end - 1;
    while (at > start && (s[at] & 0xc0) == 0x80) at--;
    const c = charAt(s, at);
    if (!isSpace(c)) break;
    end = at;
  }
  const n = end - start;
  if (n == 0 || n > NAME_LEN_MAX || (n == 1 && s[start] == 0x30)) return null;
  return Value.bytes(s.slice(start, end));
}

/** session[key] when it is a UTF-8 string, else null. */
function field(session: Value | null, key: string): Value | null {
  if (session == null) return null;
  const v = session.get(key);
  if (v == null || v.asUtf8() == null) return null;
  return v;
}

/** The sorted names of the room's members (from their sessions). */
function members(room: Value): Value {
  const sessions = gateway.getClientSessionsByGroup(room);
  const names: Value[] = [];
  if (sessions != null) {
    const all = sessions.values();
    for (let i = 0; i < all.length; i++) {
      const name = field(all[i], "name");
      if (name != null) names.push(name);
    }
  }
  names.sort((a: Value, b: Value): i32 => bytesCompare(a.s!, b.s!));
  return Value.list(names);
}

function leaveNotice(room: Value, name: Value): void {
  const msg = Value.map(["type", "room", "name"], [Value.str("leave"), room, name]);
  gateway.sendToGroup(room, Value.bytes(json.encode(msg)));
}

function login(clientId: string, req: Value): void {
  const room = validName(req.get("room"));
  const name = validName(req.get("name"));
  if (room == null || name == null) {
    error(Value.str("login needs a room and a name (1-32 bytes, not \"0\")"));
    return;
  }
  let s = session.get();
  if (s == null) s = Value.null();
  const oldRoom = field(s, "room");
  const oldName = field(s, "name");
  if (oldRoom != null && oldName != null) {
    gateway.leaveGroup(clientId, oldRoom);
    leaveNotice(oldRoom, oldName);
  }
  s.set("room", room);
  s.set("name", name);
  session.set(s);
  gateway.bindUid(clientId, name);
  const join = Value.map(
    ["type", "room", "name", "client_id"],
    [Value.str("join"), room, name, Value.str(clientId)],
  );
  gateway.sendToGroup(room, Value.bytes(json.encode(join)));
  gateway.joinGroup(clientId, room);
  sendSelf(Value.map(
    ["type", "room", "name", "members"],
    [Value.str("welcome"), room, name, members(room)],
  ));
}

function say(me: Value, req: Value): void {
  const room = field(me, "room");
  const name = field(me, "name");
  if (room == null || name == null) {
    error(Value.str("login first"));
    return;
  }
  let text = req.get("text");
  if (text == null) text = Value.str("");
  const msg = Value.map(
    ["type", "from", "text", "time"],
    [Value.str("say"), name, text, Value.int(nowMs())],
  );
  gateway.sendToGroup(room, Value.bytes(json.encode(msg)));
}

function whisper(me: Value, req: Value): void {
  const name = field(me, "name");
  if (name == null) {
    error(Value.str("login first"));
    return;
  }
  const to = validName(req.get("to"));
  if (to == null) {
    error(Value.str("whisper needs a valid \"to\""));
    return;
  }
  if (!gateway.isUidOnline(to)) {
    const r = new Buf();
    r.bytes(to.s!);
    r.ascii(" is not online");
    error(Value.bytes(r.finish()));
    return;
  }
  let text = req.get("text");
  if (text == null) text = Value.str("");
  const msg = Value.map(["type", "from", "text"], [Value.str("whisper"), name, text]);
  gateway.sendToUid(to, Value.bytes(json.encode(msg)));
  sendSelf(Value.map(["type", "to"], [Value.str("whispered"), to]));
}

class Chat extends Events {
  onMessage(clientId: string, message: Message): void {
    const req = json.parse(message.data);
    if (req == null || !req.isArray()) {
      error(Value.str("messages are JSON objects"));
      return;
    }
    let me = session.get();
    if (me == null) me = Value.null();
    const type = req.get("type");
    if (type != null && type.is("login")) login(clientId, req);
    else if (type != null && type.is("say")) say(me, req);
    else if (type != null && type.is("whisper")) whisper(me, req);
    else if (type != null && type.is("list")) {
      const room = field(me, "room");
      if (room == null) {
        error(Value.str("login first"));
        return;
      }
      sendSelf(Value.map(["type", "room", "members"], [Value.str("members"), room, members(room)]));
    } else error(Value.str("unknown type"));
  }

  onClose(clientId: string): void {
    // The closing client's session arrives with the close event.
    const me = session.get();
    const room = field(me, "room");
    const name = field(me, "name");
    if (room != null && name != null) leaveNotice(room, name);
  }
}

registerEvents(new Chat());
