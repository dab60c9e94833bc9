/* Chat rooms over the Gateway API: the C twin of examples/chat (same protocol, same
 * replies byte for byte; see examples/chat/src/lib.rs for the protocol). Rooms are groups,
 * the nickname lives in the session and doubles as the uid. */
#include "gw.h"

/* Longest accepted nickname or room name, in bytes. */
#define NAME_LEN_MAX 32

static void send_self(const gw_value *v) {
    gw_buf b = gw_json_encode(v);
    gw_send_to_current_client(b.p, b.len, 0);
}

static void error(gw_value *reason) {
    gw_value *m = gw_array();
    gw_set(m, "type", gw_str("error"));
    gw_set(m, "reason", reason);
    send_self(m);
}

/* Unicode White_Space (what Rust's str::trim removes). */
static int is_space(gw_u32 c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/* The character starting at s[at] (valid UTF-8): its code point and length. */
static int char_at(const gw_u8 *s, gw_u32 len, gw_u32 at, gw_u32 *cp) {
    if (s[at] < 0x80) {
        *cp = s[at];
        return 1;
    }
    int n = gw_utf8_(s, len, at, cp);
    return n ? n : 1;
}

/* A usable name: a string, trimmed, 1..=NAME_LEN_MAX bytes, not "0"; else 0. */
static gw_value *valid_name(const gw_value *v) {
    if (!gw_is_str(v)) return 0;
    const gw_u8 *s = v->s;
    gw_u32 start = 0, end = v->len, cp;
    /* as_str: the bytes must be UTF-8. */
    for (gw_u32 i = 0; i < end;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int n = gw_utf8_(s, end, i, &cp);
        if (!n) return 0;
        i += (gw_u32)n;
    }
    while (start < end) {
        int n = char_at(s, end, start, &cp);
        if (!is_space(cp)) break;
        start += (gw_u32)n;
    }
    while (end > start) {
        gw_u32 at = end - 1;
        while (at > start && (s[at] & 0xc0) == 0x80) at--;
        char_at(s, end, at, &cp);
        if (!is_space(cp)) break;
        end = at;
    }
    gw_u32 n = end - start;
    if (n == 0 || n > NAME_LEN_MAX || (n == 1 && s[start] == '0')) return 0;
    return gw_strn(s + start, n);
}

/* session[key] when it is a UTF-8 string, else 0. */
static gw_value *field(const gw_value *session, const char *key) {
    gw_value *v = gw_get(session, key);
    if (!gw_is_str(v)) return 0;
    gw_u32 cp;
    for (gw_u32 i = 0; i < v->len;) {
        if (v->s[i] < 0x80) {
            i++;
            continue;
        }
        int n = gw_utf8_(v->s, v->len, i, &cp);
        if (!n) return 0;
        i += (gw_u32)n;
    }
    return v;
}

static int name_less(const gw_value *a, const gw_value *b) {
    gw_u32 n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    return c < 0 || (c == 0 && a->len < b->len);
}

/* Stable merge sort of names by bytes. */
static void sort_names(gw_value **v, gw_u32 n, gw_value **tmp) {
    if (n < 2) return;
    gw_u32 h = n / 2;
    sort_names(v, h, tmp);
    sort_names(v + h, n - h, tmp);
    gw_u32 i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = name_less(v[j], v[i]) ? v[j++] : v[i++];
    while (i < h) tmp[k++] = v[i++];
    while (j < n) tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
}

/* The sorted names of the room's members (from their sessions). */
static gw_value *members(gw_value *room) {
    gw_value *sessions = gw_get_client_sessions_by_group(room);
    gw_value *list = gw_array();
    if (!sessions || sessions->type != GW_ARRAY) return list;
    gw_value **names = (gw_value **)gw_malloc(sessions->n * sizeof(gw_value *) + 1);
    gw_value **tmp = (gw_value **)gw_malloc(sessions->n * sizeof(gw_value *) + 1);
    gw_u32 n = 0;
    for (gw_u32 i = 0; i < sessions->n; i++) {
        gw_value *name = field(sessions->e[i].value, "name");
        if (name) names[n++] = name;
    }
    sort_names(names, n, tmp);
    for (gw_u32 i = 0; i < n; i++) gw_push(list, names[i]);
    return list;
}

static void leave_notice(gw_value *room, gw_value *name) {
    gw_value *m = gw_array();
    gw_set(m, "type", gw_str("leave"));
    gw_set(m, "room", room);
    gw_set(m, "name", name);
    gw_buf b = gw_json_encode(m);
    gw_send_to_group(room, gw_strn(b.p, b.len), 0);
}

static void login(const char *client_id, const gw_value *req) {
    gw_value *room = valid_name(gw_get(req, "room"));
    gw_value *name = valid_name(gw_get(req, "name"));
    if (!room || !name) {
        error(gw_str("login needs a room and a name (1-32 bytes, not \"0\")"));
        return;
    }
    gw_value *s = gw_session_get();
    if (!s) s = gw_null();
    gw_value *old_room = field(s, "room"), *old_name = field(s, "name");
    if (old_room && old_name) {
        gw_leave_group(client_id, old_room);
        leave_notice(old_room, old_name);
    }
    gw_set(s, "room", room);
    gw_set(s, "name", name);
    gw_session_set(s);
    gw_bind_uid(client_id, name);
    gw_value *join = gw_array();
    gw_set(join, "type", gw_str("join"));
    gw_set(join, "room", room);
    gw_set(join, "name", name);
    gw_set(join, "client_id", gw_str(client_id));
    gw_buf b = gw_json_encode(join);
    gw_send_to_group(room, gw_strn(b.p, b.len), 0);
    gw_join_group(client_id, room);
    gw_value *welcome = gw_array();
    gw_set(welcome, "type", gw_str("welcome"));
    gw_set(welcome, "room", room);
    gw_set(welcome, "name", name);
    gw_set(welcome, "members", members(room));
    send_self(welcome);
}

static void say(const gw_value *me, const gw_value *req) {
    gw_value *room = field(me, "room"), *name = field(me, "name");
    if (!room || !name) {
        error(gw_str("login first"));
        return;
    }
    gw_value *text = gw_get(req, "text");
    gw_value *m = gw_array();
    gw_set(m, "type", gw_str("say"));
    gw_set(m, "from", name);
    gw_set(m, "text", text ? text : gw_str(""));
    gw_set(m, "time", gw_int(gw_now_ms()));
    gw_buf b = gw_json_encode(m);
    gw_send_to_group(room, gw_strn(b.p, b.len), 0);
}

static void whisper(const gw_value *me, const gw_value *req) {
    gw_value *name = field(me, "name");
    if (!name) {
        error(gw_str("login first"));
        return;
    }
    gw_value *to = valid_name(gw_get(req, "to"));
    if (!to) {
        error(gw_str("whisper needs a valid \"to\""));
        return;
    }
    if (gw_is_uid_online(to) != 1) {
        gw_buf r = {0, 0, 0};
        gw_buf_put(&r, to->s, to->len);
        gw_buf_str(&r, " is not online");
        error(gw_strn(r.p, r.len));
        return;
    }
    gw_value *text = gw_get(req, "text");
    gw_value *m = gw_array();
    gw_set(m, "type", gw_str("whisper"));
    gw_set(m, "from", name);
    gw_set(m, "text", text ? text : gw_str(""));
    gw_buf b = gw_json_encode(m);
    gw_send_to_uid(to, gw_strn(b.p, b.len));
    gw_value *ok = gw_array();
    gw_set(ok, "type", gw_str("whispered"));
    gw_set(ok, "to", to);
    send_self(ok);
}

GW_ON_MESSAGE(id, id_len, data, len, flags) {
    (void)flags;
    char *client_id = (char *)gw_malloc((gw_size)id_len + 1);
    memcpy(client_id, id, (gw_size)id_len);
    client_id[id_len] = 0;
    gw_value *req = gw_json_parse(data, (gw_u32)len);
    if (!req || req->type != GW_ARRAY) {
        error(gw_str("messages are JSON objects"));
        return;
    }
    gw_value *me = gw_session_get();
    if (!me) me = gw_null();
    gw_value *type = gw_get(req, "type");
    if (gw_str_is(type, "login")) {
        login(client_id, req);
    } else if (gw_str_is(type, "say")) {
        say(me, req);
    } else if (gw_str_is(type, "whisper")) {
        whisper(me, req);
    } else if (gw_str_is(type, "list")) {
        gw_value *room = field(me, "room");
        if (!room) {
            error(gw_str("login first"));
            return;
        }
        gw_value *m = gw_array();
        gw_set(m, "type", gw_str("members"));
        gw_set(m, "room", room);
        gw_set(m, "members", members(room));
        send_self(m);
    } else {
        error(gw_str("unknown type"));
    }
}

GW_ON_CLOSE(id, id_len) {
    (void)id;
    (void)id_len;
    /* The closing client's session arrives with the close event. */
    gw_value *me = gw_session_get();
    gw_value *room = field(me, "room"), *name = field(me, "name");
    if (room && name) leave_notice(room, name);
}
