//! Chat rooms over the Gateway API. Rooms are groups, the nickname lives in the session and
//! doubles as the uid (so private messages route by uid). JSON text messages:
//!
//! | client → server | effect |
//! |---|---|
//! | `{"type":"login","room":R,"name":N}` | leave the previous room (if any), join R as N; you get `welcome`, the room gets `join` |
//! | `{"type":"say","text":T}` | the room (you included) gets `{"type":"say","from":N,"text":T,"time":ms}` |
//! | `{"type":"whisper","to":N2,"text":T}` | N2 gets `{"type":"whisper","from":N,"text":T}`; you get `{"type":"whispered","to":N2}`, or `error` when N2 is offline |
//! | `{"type":"list"}` | you get `{"type":"members","room":R,"members":[names, sorted]}` |
//!
//! Server → client also: `{"type":"welcome","room":R,"name":N,"members":[...]}`,
//! `{"type":"join","room":R,"name":N,"client_id":C}` (to the others), `{"type":"leave","room":R,"name":N}`
//! when a member disconnects or moves, `{"type":"error","reason":TEXT}` for anything invalid
//! (bad JSON, unknown type, `say` before `login`, bad name).

use gw_sdk::gateway::{self, map};
use gw_sdk::{json, session, Events, Message, Value};

/// Longest accepted nickname or room name, in bytes.
const NAME_LEN_MAX: usize = 32;

#[derive(Default)]
struct Chat;

fn send_self(v: &Value) {
    let _ = gateway::send_to_current_client(json::encode(v).as_bytes(), false);
}

fn error(reason: &str) {
    send_self(&map(vec![
        ("type", Value::str("error")),
        ("reason", Value::str(reason)),
    ]));
}

/// A usable name: 1..=NAME_LEN_MAX bytes, not PHP-empty ("0" would be refused by the gateway).
fn valid_name(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?.trim();
    if s.is_empty() || s == "0" || s.len() > NAME_LEN_MAX {
        return None;
    }
    Some(s.to_string())
}

fn field(session: &Value, key: &str) -> Option<String> {
    session.get(key).and_then(Value::as_str).map(String::from)
}

fn members(room: &str) -> Value {
    let sessions = gateway::get_client_sessions_by_group(room).unwrap_or(Value::Null);
    let mut names: Vec<String> = sessions
        .values()
        .into_iter()
        .filter_map(|s| field(s, "name"))
        .collect();
    names.sort();
    Value::list(names.into_iter().map(Value::from).collect())
}

fn leave_notice(room: &str, name: &str, exclude: Option<&[&str]>) {
    let msg = map(vec![
        ("type", Value::str("leave")),
        ("room", Value::str(room)),
        ("name", Value::str(name)),
    ]);
    let _ = gateway::send_to_group(room, json::encode(&msg), exclude);
}

impl Chat {
    fn login(&mut self, client_id: &str, req: &Value) {
        let (room, name) = match (valid_name(req.get("room")), valid_name(req.get("name"))) {
            (Some(r), Some(n)) => (r, n),
            _ => return error("login needs a room and a name (1-32 bytes, not \"0\")"),
        };
        let mut s = session::get().unwrap_or(Value::Null);
        if let (Some(old_room), Some(old_name)) = (field(&s, "room"), field(&s, "name")) {
            let _ = gateway::leave_group(client_id, &old_room);
            leave_notice(&old_room, &old_name, None);
        }
        s.set("room", Value::str(&room));
        s.set("name", Value::str(&name));
        let _ = session::set(&s);
        let _ = gateway::bind_uid(client_id, &name);
        let join = map(vec![
            ("type", Value::str("join")),
            ("room", Value::str(&room)),
            ("name", Value::str(&name)),
            ("client_id", Value::str(client_id)),
        ]);
        let _ = gateway::send_to_group(&room, json::encode(&join), None);
        let _ = gateway::join_group(client_id, &room);
        send_self(&map(vec![
            ("type", Value::str("welcome")),
            ("room", Value::str(&room)),
            ("name", Value::str(&name)),
            ("members", members(&room)),
        ]));
    }

    fn say(&mut self, me: &Value, req: &Value) {
        let (room, name) = match (field(me, "room"), field(me, "name")) {
            (Some(r), Some(n)) => (r, n),
            _ => return error("login first"),
        };
        let text = req.get("text").cloned().unwrap_or(Value::str(""));
        let msg = map(vec![
            ("type", Value::str("say")),
            ("from", Value::str(&name)),
            ("text", text),
            ("time", Value::Int(gw_sdk::now_ms())),
        ]);
        let _ = gateway::send_to_group(&room, json::encode(&msg), None);
    }

    fn whisper(&mut self, me: &Value, req: &Value) {
        let name = match field(me, "name") {
            Some(n) => n,
            None => return error("login first"),
        };
        let to = match valid_name(req.get("to")) {
            Some(t) => t,
            None => return error("whisper needs a valid \"to\""),
        };
        if !gateway::is_uid_online(&to).unwrap_or(false) {
            return error(&format!("{} is not online", to));
        }
        let text = req.get("text").cloned().unwrap_or(Value::str(""));
        let msg = map(vec![
            ("type", Value::str("whisper")),
            ("from", Value::str(&name)),
            ("text", text),
        ]);
        let _ = gateway::send_to_uid(&to, json::encode(&msg));
        send_self(&map(vec![
            ("type", Value::str("whispered")),
            ("to", Value::str(&to)),
        ]));
    }
}

impl Events for Chat {
    fn on_message(&mut self, client_id: &str, message: Message<'_>) {
        let req = match json::parse(message.data) {
            Some(v @ Value::Array(_)) => v,
            _ => return error("messages are JSON objects"),
        };
        let me = session::get().unwrap_or(Value::Null);
        match req.get("type").and_then(Value::as_str) {
            Some("login") => self.login(client_id, &req),
            Some("say") => self.say(&me, &req),
            Some("whisper") => self.whisper(&me, &req),
            Some("list") => match field(&me, "room") {
                Some(room) => send_self(&map(vec![
                    ("type", Value::str("members")),
                    ("room", Value::str(&room)),
                    ("members", members(&room)),
                ])),
                None => error("login first"),
            },
            _ => error("unknown type"),
        }
    }

    fn on_close(&mut self, _client_id: &str) {
        // The closing client's session arrives with the close event.
        let me = session::get().unwrap_or(Value::Null);
        if let (Some(room), Some(name)) = (field(&me, "room"), field(&me, "name")) {
            leave_notice(&room, &name, None);
        }
    }
}

gw_sdk::export_worker!(Chat);
