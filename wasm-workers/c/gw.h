/* gw.h: the gatewayworker guest ABI, version 1 (../ABI.md), for C without a libc.
 *
 * One header, no dependencies. Build a worker with Debian's clang and lld:
 *
 *   clang --target=wasm32 -mbulk-memory -O2 -nostdlib -ffreestanding -Wl,--no-entry \
 *         -Wl,--strip-all -o worker.wasm worker.c
 *
 * (-mbulk-memory: copies become one memory.copy instruction; without it they are loops.)
 *
 * What it gives you:
 *   - the imports of module `gw` (gw_sys_*), and typed wrappers (gw_send_to_current_client,
 *     gw_session_get, gw_log_info, gw_now_ms, ...);
 *   - the exports the host needs (memory, gw_abi_version, gw_alloc, gw_free) over a
 *     per-event arena: gw_malloc'd memory lives until the end of the event (the host's
 *     gw_free resets the arena), so keep state across events in static variables;
 *   - GWV values (gw_value: null, bool, int, float, string, PHP array) with encode/decode,
 *     and a JSON codec shaped like PHP's json_decode($t, true) / json_encode($v,
 *     JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE), the same as the Rust SDK's;
 *   - the Gateway API: gw_call(op, args) for every op of ABI.md 4.2 (GW_OP_*), typed
 *     wrappers for the common ones;
 *   - the callbacks, declared with macros so that only the events you write are exported:
 *
 *       GW_ON_MESSAGE(id, id_len, data, len, flags) { gw_send_to_current_client(data, len, flags & GW_FLAG_BINARY); }
 *
 *     GW_ON_WORKER_START() GW_ON_WORKER_STOP() GW_ON_CONNECT(id, id_len) GW_ON_CLOSE(id, id_len)
 *     GW_ON_WEBSOCKET_CONNECT(id, id_len, data, len) (data: GWV, decode with gw_decode).
 *
 * Out of memory (the host's memory limit) traps: the event fails, as a Rust guest's
 * allocation failure does.
 *
 * Floats: JSON numbers with at most 15 significant digits (and a magnitude between 1e-307
 * and 1.79e308) keep their exact shortest form, as PHP and the Rust SDK write it; longer
 * ones are written from a 17-digit approximation (this header has no exact float printer).
 */
#ifndef GW_H
#define GW_H

typedef unsigned char gw_u8;
typedef unsigned int gw_u32;
typedef int gw_i32;
typedef long long gw_i64;
typedef unsigned long long gw_u64;
typedef unsigned long gw_size;

#define GW_ABI_VERSION 1
#define GW_FLAG_RAW 0x02
#define GW_FLAG_BINARY 0x04
#define GW_DEPTH_MAX 64

#define GW_IMPORT(name) __attribute__((import_module("gw"), import_name(name)))
#define GW_EXPORT(name) __attribute__((export_name(name)))

/* ---- imports (ABI.md 4) ---- */
GW_IMPORT("api") gw_i32 gw_sys_api(gw_i32 op, const void *args, gw_i32 len);
GW_IMPORT("send_to_current_client") gw_i32 gw_sys_send_to_current_client(const void *p, gw_i32 len, gw_i32 flags);
GW_IMPORT("result_len") gw_i32 gw_sys_result_len(void);
GW_IMPORT("result_read") gw_i32 gw_sys_result_read(void *dst, gw_i32 len);
GW_IMPORT("client_info") gw_i32 gw_sys_client_info(void);
GW_IMPORT("session_get") gw_i32 gw_sys_session_get(void);
GW_IMPORT("session_set") gw_i32 gw_sys_session_set(const void *p, gw_i32 len);
GW_IMPORT("log") void gw_sys_log(gw_i32 level, const void *p, gw_i32 len);
GW_IMPORT("sleep_ms") gw_i32 gw_sys_sleep_ms(gw_i32 ms);
GW_IMPORT("now_ms") gw_i64 gw_sys_now_ms(void);

/* ---- callbacks (ABI.md 5) ---- */
#define GW_ON_WORKER_START() GW_EXPORT("on_worker_start") void gw_on_worker_start_(void)
#define GW_ON_WORKER_STOP() GW_EXPORT("on_worker_stop") void gw_on_worker_stop_(void)
#define GW_ON_CONNECT(id, id_len) GW_EXPORT("on_connect") void gw_on_connect_(const char *id, gw_i32 id_len)
#define GW_ON_MESSAGE(id, id_len, data, len, flags) \
    GW_EXPORT("on_message") void gw_on_message_(const char *id, gw_i32 id_len, const gw_u8 *data, gw_i32 len, gw_i32 flags)
#define GW_ON_CLOSE(id, id_len) GW_EXPORT("on_close") void gw_on_close_(const char *id, gw_i32 id_len)
#define GW_ON_WEBSOCKET_CONNECT(id, id_len, data, len) \
    GW_EXPORT("on_websocket_connect") void gw_on_websocket_connect_(const char *id, gw_i32 id_len, const gw_u8 *data, gw_i32 len)

/* ---- the few libc functions clang may call by itself ---- */
#ifdef __wasm_bulk_memory__
/* One memory.copy / memory.fill instruction each (built with -mbulk-memory). */
void *memcpy(void *dst, const void *src, gw_size n) { return __builtin_memcpy(dst, src, n); }
void *memmove(void *dst, const void *src, gw_size n) { return __builtin_memmove(dst, src, n); }
void *memset(void *dst, int c, gw_size n) { return __builtin_memset(dst, c, n); }
#else
void *memcpy(void *dst, const void *src, gw_size n) {
    gw_u8 *d = (gw_u8 *)dst;
    const gw_u8 *s = (const gw_u8 *)src;
    while (n--) *d++ = *s++;
    return dst;
}
void *memmove(void *dst, const void *src, gw_size n) {
    gw_u8 *d = (gw_u8 *)dst;
    const gw_u8 *s = (const gw_u8 *)src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}
void *memset(void *dst, int c, gw_size n) {
    gw_u8 *d = (gw_u8 *)dst;
    while (n--) *d++ = (gw_u8)c;
    return dst;
}
#endif
int memcmp(const void *a, const void *b, gw_size n) {
    const gw_u8 *x = (const gw_u8 *)a, *y = (const gw_u8 *)b;
    for (gw_size i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

static gw_size gw_strlen(const char *s) {
    gw_size n = 0;
    while (s[n]) n++;
    return n;
}

/* ---- memory: a per-event arena above the linker's heap base ---- */
extern gw_u8 __heap_base;
static gw_size gw_top_;

/* `n` bytes, 8-aligned, valid until the end of the event; traps when memory is exhausted. */
static void *gw_malloc(gw_size n) {
    if (gw_top_ == 0) gw_top_ = ((gw_size)&__heap_base + 7) & ~(gw_size)7;
    gw_size start = gw_top_;
    if (n > 0x7fffffffu - start) __builtin_trap();
    gw_size end = (start + n + 7) & ~(gw_size)7;
    gw_size have = __builtin_wasm_memory_size(0) * 65536ul;
    if (end > have) {
        gw_size pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (gw_size)-1) __builtin_trap();
    }
    gw_top_ = end;
    return (void *)start;
}

/* A bigger copy of `p` (`old` bytes); the old block stays until the end of the event. */
static void *gw_realloc(void *p, gw_size old, gw_size n) {
    void *q = gw_malloc(n);
    if (p) memcpy(q, p, old < n ? old : n);
    return q;
}

GW_EXPORT("gw_abi_version") gw_i32 gw_abi_version(void) { return GW_ABI_VERSION; }
GW_EXPORT("gw_alloc") gw_i32 gw_alloc(gw_i32 len) {
    if (len <= 0) return 1;
    return (gw_i32)(gw_size)gw_malloc((gw_size)len);
}
/* The event is over: everything gw_malloc gave since the last reset goes. */
GW_EXPORT("gw_free") void gw_free(gw_i32 ptr, gw_i32 len) {
    (void)ptr;
    (void)len;
    gw_top_ = 0;
}

/* ---- byte buffers ---- */
typedef struct {
    gw_u8 *p;
    gw_u32 len, cap;
} gw_buf;

static void gw_buf_reserve(gw_buf *b, gw_u32 more) {
    if (more > 0x7fffffffu - b->len) __builtin_trap();
    if (b->len + more <= b->cap) return;
    gw_u32 cap = b->cap ? b->cap : 64;
    while (cap < b->len + more) cap = cap > 0x3fffffffu ? 0x7fffffffu : cap * 2;
    b->p = (gw_u8 *)gw_realloc(b->p, b->len, cap);
    b->cap = cap;
}
static void gw_buf_put(gw_buf *b, const void *p, gw_u32 n) {
    gw_buf_reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void gw_buf_byte(gw_buf *b, gw_u8 c) { gw_buf_put(b, &c, 1); }
static void gw_buf_str(gw_buf *b, const char *s) { gw_buf_put(b, s, (gw_u32)gw_strlen(s)); }
static void gw_buf_i64(gw_buf *b, gw_i64 n) {
    char tmp[24];
    int i = 24;
    gw_u64 u = n < 0 ? (gw_u64)0 - (gw_u64)n : (gw_u64)n;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (n < 0) tmp[--i] = '-';
    gw_buf_put(b, tmp + i, (gw_u32)(24 - i));
}

/* ---- values (GWV, ABI.md 3) ---- */
enum { GW_NULL, GW_BOOL, GW_INT, GW_FLOAT, GW_STR, GW_ARRAY };

typedef struct gw_value gw_value;
typedef struct {
    int is_int;
    gw_i64 i;
    const gw_u8 *s;
    gw_u32 len;
} gw_key;
typedef struct {
    gw_key key;
    gw_value *value;
} gw_entry;
struct gw_value {
    int type;
    int b;
    gw_i64 i;
    double f;
    /* Floats read from JSON text: the shortest digits (no leading/trailing zeros) and the
     * decimal point position (value = 0.DIGITS x 10^decpt), when exact; else ndigits 0. */
    const gw_u8 *digits;
    int ndigits, decpt;
    const gw_u8 *s;
    gw_u32 len;
    gw_entry *e;
    gw_u32 n, cap;
};

static gw_value *gw_new_(int type) {
    gw_value *v = (gw_value *)gw_malloc(sizeof(gw_value));
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}
static gw_value *gw_null(void) { return gw_new_(GW_NULL); }
static gw_value *gw_bool(int b) {
    gw_value *v = gw_new_(GW_BOOL);
    v->b = b != 0;
    return v;
}
static gw_value *gw_int(gw_i64 i) {
    gw_value *v = gw_new_(GW_INT);
    v->i = i;
    return v;
}
static gw_value *gw_float(double f) {
    gw_value *v = gw_new_(GW_FLOAT);
    v->f = f;
    return v;
}
/* A string value of `len` bytes at `p` (copied). */
static gw_value *gw_strn(const void *p, gw_u32 len) {
    gw_value *v = gw_new_(GW_STR);
    gw_u8 *copy = (gw_u8 *)gw_malloc(len);
    memcpy(copy, p, len);
    v->s = copy;
    v->len = len;
    return v;
}
static gw_value *gw_str(const char *s) { return gw_strn(s, (gw_u32)gw_strlen(s)); }
static gw_value *gw_array(void) { return gw_new_(GW_ARRAY); }

static int gw_key_eq(const gw_key *a, const gw_key *b) {
    if (a->is_int != b->is_int) return 0;
    if (a->is_int) return a->i == b->i;
    return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
}

/* PHP's key normalisation: a canonical decimal integer string is an int key. */
static gw_key gw_key_from(const gw_u8 *s, gw_u32 len) {
    gw_key k = {0, 0, s, len};
    gw_u32 at = (len > 0 && s[0] == '-') ? 1 : 0;
    if (at == len || len > 20) return k;
    for (gw_u32 i = at; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return k;
    if (s[at] == '0' && (len - at > 1 || at == 1)) return k;
    gw_u64 u = 0;
    for (gw_u32 i = at; i < len; i++) {
        gw_u64 d = (gw_u64)(s[i] - '0');
        if (u > (0xffffffffffffffffull - d) / 10) return k;
        u = u * 10 + d;
    }
    if (at == 0 && u > 0x7fffffffffffffffull) return k;
    if (at == 1 && u > 0x8000000000000000ull) return k;
    k.is_int = 1;
    k.i = at ? (gw_i64)(0 - u) : (gw_i64)u;
    return k;
}

/* $array[key] = value (in place when the key exists); a non-array becomes an empty array first. */
static void gw_set_key(gw_value *a, gw_key key, gw_value *value) {
    if (a->type != GW_ARRAY) {
        memset(a, 0, sizeof *a);
        a->type = GW_ARRAY;
    }
    for (gw_u32 i = 0; i < a->n; i++)
        if (gw_key_eq(&a->e[i].key, &key)) {
            a->e[i].value = value;
            return;
        }
    if (a->n == a->cap) {
        gw_u32 cap = a->cap ? a->cap * 2 : 4;
        a->e = (gw_entry *)gw_realloc(a->e, a->n * sizeof(gw_entry), cap * sizeof(gw_entry));
        a->cap = cap;
    }
    a->e[a->n].key = key;
    a->e[a->n].value = value;
    a->n++;
}
static void gw_set(gw_value *a, const char *key, gw_value *value) {
    gw_value *k = gw_str(key);
    gw_set_key(a, gw_key_from(k->s, k->len), value);
}
/* Appends to a list: key = the number of entries (as PHP's $a[] for a list). */
static void gw_push(gw_value *a, gw_value *value) {
    gw_key k = {1, a->type == GW_ARRAY ? (gw_i64)a->n : 0, 0, 0};
    gw_set_key(a, k, value);
}
/* $array[key], or 0 when absent or not an array. */
static gw_value *gw_get(const gw_value *a, const char *key) {
    if (!a || a->type != GW_ARRAY) return 0;
    gw_key k = gw_key_from((const gw_u8 *)key, (gw_u32)gw_strlen(key));
    for (gw_u32 i = 0; i < a->n; i++)
        if (gw_key_eq(&a->e[i].key, &k)) return a->e[i].value;
    return 0;
}
static int gw_is_str(const gw_value *v) { return v && v->type == GW_STR; }
/* 1 when `v` is a string equal to the C string `s`. */
static int gw_str_is(const gw_value *v, const char *s) {
    gw_u32 n = (gw_u32)gw_strlen(s);
    return gw_is_str(v) && v->len == n && memcmp(v->s, s, n) == 0;
}

static void gw_u32le_(gw_buf *b, gw_u32 n) {
    gw_u8 t[4] = {(gw_u8)n, (gw_u8)(n >> 8), (gw_u8)(n >> 16), (gw_u8)(n >> 24)};
    gw_buf_put(b, t, 4);
}
static void gw_u64le_(gw_buf *b, gw_u64 n) {
    gw_u8 t[8];
    for (int i = 0; i < 8; i++) t[i] = (gw_u8)(n >> (8 * i));
    gw_buf_put(b, t, 8);
}
static double gw_parse_float_(const gw_u8 *s, gw_u32 len);

/* Appends the GWV encoding of `v`. */
static void gw_encode_into(const gw_value *v, gw_buf *out) {
    switch (v ? v->type : GW_NULL) {
    case GW_NULL: gw_buf_byte(out, 0x00); break;
    case GW_BOOL: gw_buf_byte(out, v->b ? 0x02 : 0x01); break;
    case GW_INT:
        gw_buf_byte(out, 0x03);
        gw_u64le_(out, (gw_u64)v->i);
        break;
    case GW_FLOAT: {
        double f = v->f;
        gw_u64 bits;
        memcpy(&bits, &f, 8);
        gw_buf_byte(out, 0x04);
        gw_u64le_(out, bits);
        break;
    }
    case GW_STR:
        gw_buf_byte(out, 0x05);
        gw_u32le_(out, v->len);
        gw_buf_put(out, v->s, v->len);
        break;
    default:
        gw_buf_byte(out, 0x06);
        gw_u32le_(out, v->n);
        for (gw_u32 i = 0; i < v->n; i++) {
            const gw_key *k = &v->e[i].key;
            if (k->is_int) {
                gw_buf_byte(out, 0x03);
                gw_u64le_(out, (gw_u64)k->i);
            } else {
                gw_buf_byte(out, 0x05);
                gw_u32le_(out, k->len);
                gw_buf_put(out, k->s, k->len);
            }
            gw_encode_into(v->e[i].value, out);
        }
    }
}
static gw_buf gw_encode(const gw_value *v) {
    gw_buf b = {0, 0, 0};
    gw_encode_into(v, &b);
    return b;
}

typedef struct {
    const gw_u8 *p;
    gw_u32 len, at;
} gw_reader_;

static int gw_take_(gw_reader_ *r, gw_u32 n, const gw_u8 **out) {
    if (n > r->len - r->at) return 0;
    *out = r->p + r->at;
    r->at += n;
    return 1;
}
static int gw_rd_u32_(gw_reader_ *r, gw_u32 *n) {
    const gw_u8 *b;
    if (!gw_take_(r, 4, &b)) return 0;
    *n = (gw_u32)b[0] | (gw_u32)b[1] << 8 | (gw_u32)b[2] << 16 | (gw_u32)b[3] << 24;
    return 1;
}
static int gw_rd_u64_(gw_reader_ *r, gw_u64 *n) {
    const gw_u8 *b;
    if (!gw_take_(r, 8, &b)) return 0;
    *n = 0;
    for (int i = 7; i >= 0; i--) *n = *n << 8 | b[i];
    return 1;
}
static gw_value *gw_decode_value_(gw_reader_ *r, int depth) {
    const gw_u8 *t;
    gw_u64 u;
    gw_u32 n;
    if (!gw_take_(r, 1, &t)) return 0;
    switch (*t) {
    case 0x00: return gw_null();
    case 0x01: return gw_bool(0);
    case 0x02: return gw_bool(1);
    case 0x03:
        if (!gw_rd_u64_(r, &u)) return 0;
        return gw_int((gw_i64)u);
    case 0x04: {
        double f;
        if (!gw_rd_u64_(r, &u)) return 0;
        memcpy(&f, &u, 8);
        return gw_float(f);
    }
    case 0x05: {
        const gw_u8 *s;
        if (!gw_rd_u32_(r, &n) || !gw_take_(r, n, &s)) return 0;
        gw_value *v = gw_new_(GW_STR);
        v->s = s;
        v->len = n;
        return v;
    }
    case 0x06: {
        if (depth >= GW_DEPTH_MAX || !gw_rd_u32_(r, &n)) return 0;
        /* Each entry takes at least 2 bytes: a count beyond that is a lie. */
        if (n > (r->len - r->at) / 2) return 0;
        gw_value *a = gw_array();
        for (gw_u32 i = 0; i < n; i++) {
            gw_key k = {0, 0, 0, 0};
            if (!gw_take_(r, 1, &t)) return 0;
            if (*t == 0x03) {
                if (!gw_rd_u64_(r, &u)) return 0;
                k.is_int = 1;
                k.i = (gw_i64)u;
            } else if (*t == 0x05) {
                if (!gw_rd_u32_(r, &k.len) || !gw_take_(r, k.len, &k.s)) return 0;
            } else {
                return 0;
            }
            gw_value *v = gw_decode_value_(r, depth + 1);
            if (!v) return 0;
            gw_set_key(a, k, v);
        }
        return a;
    }
    default: return 0;
    }
}
/* One GWV value filling `len` bytes at `p` (strings point into it), or 0. */
static gw_value *gw_decode(const gw_u8 *p, gw_u32 len) {
    gw_reader_ r = {p, len, 0};
    gw_value *v = gw_decode_value_(&r, 0);
    return (v && r.at == len) ? v : 0;
}

/* ---- the result slot and the Gateway API (ABI.md 4) ---- */
enum {
    GW_OP_SEND_TO_CLIENT = 1, GW_OP_SEND_TO_CURRENT_CLIENT, GW_OP_SEND_TO_ALL, GW_OP_SEND_TO_UID,
    GW_OP_SEND_TO_GROUP, GW_OP_BIND_UID, GW_OP_UNBIND_UID, GW_OP_JOIN_GROUP, GW_OP_LEAVE_GROUP,
    GW_OP_UNGROUP, GW_OP_SET_SESSION, GW_OP_UPDATE_SESSION, GW_OP_GET_SESSION, GW_OP_CLOSE_CLIENT,
    GW_OP_DESTROY_CLIENT, GW_OP_CLOSE_CURRENT_CLIENT, GW_OP_DESTROY_CURRENT_CLIENT, GW_OP_IS_ONLINE,
    GW_OP_IS_UID_ONLINE, GW_OP_GET_CLIENT_ID_BY_UID, GW_OP_GET_UID_BY_CLIENT_ID,
    GW_OP_GET_CLIENT_ID_LIST_BY_GROUP, GW_OP_GET_CLIENT_SESSIONS_BY_GROUP,
    GW_OP_GET_CLIENT_COUNT_BY_GROUP, GW_OP_GET_ALL_CLIENT_ID_LIST, GW_OP_GET_ALL_CLIENT_SESSIONS,
    GW_OP_GET_ALL_CLIENT_COUNT, GW_OP_GET_ALL_UID_LIST, GW_OP_GET_ALL_UID_COUNT,
    GW_OP_GET_UID_LIST_BY_GROUP, GW_OP_GET_UID_COUNT_BY_GROUP, GW_OP_GET_ALL_GROUP_ID_LIST,
    GW_OP_GET_ALL_GROUP_UID_LIST, GW_OP_GET_ALL_GROUP_UID_COUNT, GW_OP_GET_ALL_GROUP_CLIENT_ID_LIST,
    GW_OP_GET_ALL_GROUP_CLIENT_ID_COUNT, GW_OP_BATCH_GET_CLIENT_ID_BY_UID,
    GW_OP_BATCH_GET_CLIENT_ID_COUNT_BY_GROUP, GW_OP_IS_UIDS_ONLINE
};

/* The status of the last call that failed (negative, ABI.md 4.1) and its explanation. */
static gw_i32 gw_last_status;
static gw_buf gw_last_error;

static gw_buf gw_take_result_(gw_i32 len) {
    gw_buf b = {0, 0, 0};
    if (len <= 0) return b;
    gw_buf_reserve(&b, (gw_u32)len);
    b.len = (gw_u32)gw_sys_result_read(b.p, len);
    return b;
}
/* Status >= 0: the result bytes; else records the error and returns 0 with `*ok` 0. */
static gw_buf gw_status_(gw_i32 status, int *ok) {
    gw_buf none = {0, 0, 0};
    if (status >= 0) {
        *ok = 1;
        return gw_take_result_(status);
    }
    *ok = 0;
    gw_last_status = status;
    gw_last_error = gw_take_result_(gw_sys_result_len());
    return none;
}

/* Runs `op` with the positional arguments of list `args`; the PHP return value, or 0 on a
 * failure (gw_last_status says which). */
static gw_value *gw_call(gw_i32 op, const gw_value *args) {
    gw_buf a = gw_encode(args);
    int ok;
    gw_buf r = gw_status_(gw_sys_api(op, a.p, (gw_i32)a.len), &ok);
    if (!ok) return 0;
    gw_value *v = gw_decode(r.p, r.len);
    if (!v) gw_last_status = -6;
    return v;
}
static gw_value *gw_args_(int n, gw_value *a, gw_value *b, gw_value *c) {
    gw_value *l = gw_array();
    gw_value *all[3] = {a, b, c};
    for (int i = 0; i < n; i++) gw_push(l, all[i] ? all[i] : gw_null());
    return l;
}
/* A PHP truthy int/bool result (isOnline, isUidOnline): 1, 0, or -1 on failure. */
static int gw_flag_(gw_value *v) {
    if (!v) return -1;
    if (v->type == GW_INT) return v->i != 0;
    if (v->type == GW_BOOL) return v->b;
    return 0;
}

/* Hot path: sendToCurrentClient of bytes; flags GW_FLAG_RAW | GW_FLAG_BINARY. 0 or a status. */
static gw_i32 gw_send_to_current_client(const void *p, gw_u32 len, gw_i32 flags) {
    return gw_sys_send_to_current_client(p, (gw_i32)len, flags);
}
static gw_value *gw_send_to_client(const char *client_id, gw_value *message) {
    return gw_call(GW_OP_SEND_TO_CLIENT, gw_args_(2, gw_str(client_id), message, 0));
}
static gw_value *gw_send_to_uid(gw_value *uid, gw_value *message) {
    return gw_call(GW_OP_SEND_TO_UID, gw_args_(2, uid, message, 0));
}
/* exclude: 0 (none), a client id string or a list of them. */
static gw_value *gw_send_to_group(gw_value *group, gw_value *message, gw_value *exclude) {
    return gw_call(GW_OP_SEND_TO_GROUP, gw_args_(3, group, message, exclude));
}
static gw_value *gw_send_to_all(gw_value *message) {
    return gw_call(GW_OP_SEND_TO_ALL, gw_args_(1, message, 0, 0));
}
static gw_value *gw_bind_uid(const char *client_id, gw_value *uid) {
    return gw_call(GW_OP_BIND_UID, gw_args_(2, gw_str(client_id), uid, 0));
}
static gw_value *gw_join_group(const char *client_id, gw_value *group) {
    return gw_call(GW_OP_JOIN_GROUP, gw_args_(2, gw_str(client_id), group, 0));
}
static gw_value *gw_leave_group(const char *client_id, gw_value *group) {
    return gw_call(GW_OP_LEAVE_GROUP, gw_args_(2, gw_str(client_id), group, 0));
}
static int gw_is_uid_online(gw_value *uid) {
    return gw_flag_(gw_call(GW_OP_IS_UID_ONLINE, gw_args_(1, uid, 0, 0)));
}
static int gw_is_online(const char *client_id) {
    return gw_flag_(gw_call(GW_OP_IS_ONLINE, gw_args_(1, gw_str(client_id), 0, 0)));
}
static gw_value *gw_get_client_sessions_by_group(gw_value *group) {
    return gw_call(GW_OP_GET_CLIENT_SESSIONS_BY_GROUP, gw_args_(1, group, 0, 0));
}
static gw_value *gw_close_current_client(void) {
    return gw_call(GW_OP_CLOSE_CURRENT_CLIENT, gw_args_(0, 0, 0, 0));
}

/* $_SESSION of the current client (null when none), or 0 outside client events. */
static gw_value *gw_session_get(void) {
    int ok;
    gw_buf r = gw_status_(gw_sys_session_get(), &ok);
    if (!ok) return 0;
    gw_value *v = gw_decode(r.p, r.len);
    return v ? v : gw_null();
}
/* $_SESSION = session (null or array); 0 or a negative status. */
static gw_i32 gw_session_set(const gw_value *session) {
    gw_buf b = gw_encode(session);
    int ok;
    gw_i32 status = gw_sys_session_set(b.p, (gw_i32)b.len);
    gw_status_(status, &ok);
    return ok ? 0 : status;
}
/* The event's client_id, remote_addr, remote_port, gateway_addr, gateway_port; 0 outside client events. */
static gw_value *gw_client_info(void) {
    int ok;
    gw_buf r = gw_status_(gw_sys_client_info(), &ok);
    return ok ? gw_decode(r.p, r.len) : 0;
}
static gw_i64 gw_now_ms(void) { return gw_sys_now_ms(); }
static gw_i32 gw_sleep_ms(gw_i32 ms) { return gw_sys_sleep_ms(ms); }
static void gw_log_(gw_i32 level, const char *s) { gw_sys_log(level, s, (gw_i32)gw_strlen(s)); }
static void gw_log_error(const char *s) { gw_log_(0, s); }
static void gw_log_warn(const char *s) { gw_log_(1, s); }
static void gw_log_info(const char *s) { gw_log_(2, s); }
static void gw_log_debug(const char *s) { gw_log_(3, s); }

/* ---- JSON (PHP's json_decode($t, true) / json_encode, like the Rust SDK's json module) ---- */

/* One UTF-8 character at s[at] (a lead byte >= 0x80): its length, or 0 when invalid; the
 * code point in *cp. Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static int gw_utf8_(const gw_u8 *s, gw_u32 len, gw_u32 at, gw_u32 *cp) {
    gw_u8 c = s[at];
    int need;
    gw_u32 v;
    if (c >= 0xc2 && c <= 0xdf) need = 2, v = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) need = 3, v = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) need = 4, v = c & 0x07;
    else return 0;
    if ((gw_u32)need > len - at) return 0;
    for (int i = 1; i < need; i++) {
        if ((s[at + i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[at + i] & 0x3f);
    }
    static const gw_u32 min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[need] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return need;
}

/* PHP's json string escaping with JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE (the
 * invalid UTF-8 substitution of the Rust SDK is left out: JSON-parsed text is valid). */
static void gw_json_str_(const gw_u8 *s, gw_u32 len, gw_buf *out) {
    static const char hex[] = "0123456789abcdef";
    gw_buf_byte(out, '"');
    gw_u32 at = 0;
    while (at < len) {
        /* A run of bytes written as they are: printable ASCII but " and \, and valid
         * multi-byte characters but U+2028 and U+2029. */
        gw_u32 run = at, cp = 0;
        while (run < len) {
            gw_u8 c = s[run];
            if (c < 0x80) {
                if (c < 0x20 || c == '"' || c == '\\') break;
                run++;
                continue;
            }
            int n = gw_utf8_(s, len, run, &cp);
            if (n == 0 || cp == 0x2028 || cp == 0x2029) break;
            run += (gw_u32)n;
        }
        if (run > at) {
            gw_buf_put(out, s + at, run - at);
            at = run;
            if (at >= len) break;
        }
        gw_u8 c = s[at];
        if (c < 0x80) {
            switch (c) {
            case '"': gw_buf_str(out, "\\\""); break;
            case '\\': gw_buf_str(out, "\\\\"); break;
            case 0x08: gw_buf_str(out, "\\b"); break;
            case 0x0c: gw_buf_str(out, "\\f"); break;
            case '\n': gw_buf_str(out, "\\n"); break;
            case '\r': gw_buf_str(out, "\\r"); break;
            case '\t': gw_buf_str(out, "\\t"); break;
            default: {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                gw_buf_put(out, e, 6);
            }
            }
            at++;
            continue;
        }
        int n = gw_utf8_(s, len, at, &cp);
        if (n == 0) {
            gw_buf_str(out, "\xef\xbf\xbd");
            at++;
        } else {
            gw_buf_str(out, cp == 0x2028 ? "\\u2028" : "\\u2029");
            at += (gw_u32)n;
        }
    }
    gw_buf_byte(out, '"');
}

/* zend_gcvt's layout of digits/decpt as json_encode writes a float (precision 17). */
static void gw_json_layout_(int neg, const gw_u8 *d, int nd, int decpt, gw_buf *out) {
    if (neg) gw_buf_byte(out, '-');
    if (decpt > 17 || decpt < -3) {
        gw_buf_byte(out, d[0]);
        gw_buf_byte(out, '.');
        if (nd == 1) gw_buf_byte(out, '0');
        else gw_buf_put(out, d + 1, (gw_u32)(nd - 1));
        gw_buf_byte(out, 'e');
        gw_buf_byte(out, decpt - 1 < 0 ? '-' : '+');
        gw_buf_i64(out, decpt - 1 < 0 ? 1 - decpt : decpt - 1);
    } else if (decpt <= 0) {
        gw_buf_str(out, "0.");
        for (int i = 0; i < -decpt; i++) gw_buf_byte(out, '0');
        gw_buf_put(out, d, (gw_u32)nd);
    } else {
        for (int i = 0; i < decpt; i++) gw_buf_byte(out, i < nd ? d[i] : '0');
        if (nd > decpt) {
            gw_buf_byte(out, '.');
            gw_buf_put(out, d + decpt, (gw_u32)(nd - decpt));
        }
    }
}

/* A float without exact digits: 17 significant digits from double arithmetic (approximate). */
static void gw_json_float_approx_(double f, gw_buf *out) {
    if (f != f || f - f != 0) {
        gw_buf_str(out, "null");
        return;
    }
    int neg = f < 0 || (f == 0 && 1 / f < 0);
    if (f < 0) f = -f;
    if (f == 0) {
        gw_buf_str(out, neg ? "-0" : "0");
        return;
    }
    int e = 0;
    while (f >= 1e17) f /= 10, e++;
    while (f < 1e16) f *= 10, e--;
    gw_u64 m = (gw_u64)(f + 0.5);
    if (m >= 100000000000000000ull) m /= 10, e++;
    gw_u8 d[17];
    for (int i = 16; i >= 0; i--) d[i] = (gw_u8)('0' + m % 10), m /= 10;
    int nd = 17;
    while (nd > 1 && d[nd - 1] == '0') nd--;
    gw_json_layout_(neg, d, nd, e + 17, out);
}

static void gw_json_into_(const gw_value *v, gw_buf *out) {
    switch (v ? v->type : GW_NULL) {
    case GW_NULL: gw_buf_str(out, "null"); break;
    case GW_BOOL: gw_buf_str(out, v->b ? "true" : "false"); break;
    case GW_INT: gw_buf_i64(out, v->i); break;
    case GW_FLOAT:
        if (v->ndigits > 0) gw_json_layout_(v->f < 0 || (v->f == 0 && 1 / v->f < 0), v->digits, v->ndigits, v->decpt, out);
        else gw_json_float_approx_(v->f, out);
        break;
    case GW_STR: gw_json_str_(v->s, v->len, out); break;
    default: {
        int list = 1;
        for (gw_u32 i = 0; i < v->n && list; i++)
            list = v->e[i].key.is_int && v->e[i].key.i == (gw_i64)i;
        gw_buf_byte(out, list ? '[' : '{');
        for (gw_u32 i = 0; i < v->n; i++) {
            if (i) gw_buf_byte(out, ',');
            if (!list) {
                const gw_key *k = &v->e[i].key;
                if (k->is_int) {
                    gw_buf kb = {0, 0, 0};
                    gw_buf_i64(&kb, k->i);
                    gw_json_str_(kb.p, kb.len, out);
                } else {
                    gw_json_str_(k->s, k->len, out);
                }
                gw_buf_byte(out, ':');
            }
            gw_json_into_(v->e[i].value, out);
        }
        gw_buf_byte(out, list ? ']' : '}');
    }
    }
}
/* The JSON text of `v` (NaN and infinities become null). */
static gw_buf gw_json_encode(const gw_value *v) {
    gw_buf b = {0, 0, 0};
    gw_json_into_(v, &b);
    return b;
}

typedef struct {
    const gw_u8 *s;
    gw_u32 len, at;
} gw_jp_;

static void gw_jws_(gw_jp_ *p) {
    while (p->at < p->len && (p->s[p->at] == ' ' || p->s[p->at] == '\t' || p->s[p->at] == '\n' || p->s[p->at] == '\r')) p->at++;
}
static int gw_jeat_(gw_jp_ *p, const char *lit) {
    gw_u32 n = (gw_u32)gw_strlen(lit);
    if (n > p->len - p->at || memcmp(p->s + p->at, lit, n) != 0) return 0;
    p->at += n;
    return 1;
}
static int gw_hex4_(gw_jp_ *p, gw_u32 *out) {
    if (p->len - p->at < 4) return 0;
    gw_u32 v = 0;
    for (int i = 0; i < 4; i++) {
        gw_u8 c = p->s[p->at + (gw_u32)i];
        gw_u32 d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        v = v << 4 | d;
    }
    p->at += 4;
    *out = v;
    return 1;
}
static void gw_utf8_put_(gw_buf *b, gw_u32 cp) {
    if (cp < 0x80) {
        gw_buf_byte(b, (gw_u8)cp);
    } else if (cp < 0x800) {
        gw_buf_byte(b, (gw_u8)(0xc0 | cp >> 6));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        gw_buf_byte(b, (gw_u8)(0xe0 | cp >> 12));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp >> 6 & 0x3f)));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp & 0x3f)));
    } else {
        gw_buf_byte(b, (gw_u8)(0xf0 | cp >> 18));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp >> 12 & 0x3f)));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp >> 6 & 0x3f)));
        gw_buf_byte(b, (gw_u8)(0x80 | (cp & 0x3f)));
    }
}
/* A JSON string at p->at (the opening quote); the bytes (valid UTF-8) or 0. */
static int gw_jstring_(gw_jp_ *p, gw_buf *out) {
    p->at++;
    for (;;) {
        /* A run of bytes taken as they are. */
        gw_u32 run = p->at;
        while (run < p->len && p->s[run] != '"' && p->s[run] != '\\' && p->s[run] >= 0x20) run++;
        if (run > p->at) {
            gw_buf_put(out, p->s + p->at, run - p->at);
            p->at = run;
        }
        if (p->at >= p->len) return 0;
        gw_u8 c = p->s[p->at++];
        if (c == '"') break;
        if (c == '\\') {
            if (p->at >= p->len) return 0;
            gw_u8 e = p->s[p->at++];
            switch (e) {
            case '"': gw_buf_byte(out, '"'); break;
            case '\\': gw_buf_byte(out, '\\'); break;
            case '/': gw_buf_byte(out, '/'); break;
            case 'b': gw_buf_byte(out, 8); break;
            case 'f': gw_buf_byte(out, 12); break;
            case 'n': gw_buf_byte(out, '\n'); break;
            case 'r': gw_buf_byte(out, '\r'); break;
            case 't': gw_buf_byte(out, '\t'); break;
            case 'u': {
                gw_u32 cp, lo;
                if (!gw_hex4_(p, &cp)) return 0;
                if (cp >= 0xd800 && cp < 0xdc00) {
                    if (!gw_jeat_(p, "\\u") || !gw_hex4_(p, &lo) || lo < 0xdc00 || lo >= 0xe000) return 0;
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    return 0;
                }
                gw_utf8_put_(out, cp);
                break;
            }
            default: return 0;
            }
        } else if (c < 0x20) {
            return 0;
        } else {
            gw_buf_byte(out, c);
        }
    }
    /* The whole string must be UTF-8. */
    for (gw_u32 i = 0; i < out->len;) {
        gw_u32 cp;
        if (out->p[i] < 0x80) {
            i++;
            continue;
        }
        int n = gw_utf8_(out->p, out->len, i, &cp);
        if (!n) return 0;
        i += (gw_u32)n;
    }
    return 1;
}

/* Decimal text to double: exact for up to 15 digits and exponents within +-22, close otherwise. */
static double gw_parse_float_(const gw_u8 *s, gw_u32 len) {
    static const double p10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    gw_u32 i = 0;
    int neg = 0, exp = 0, nd = 0;
    gw_u64 m = 0;
    if (i < len && s[i] == '-') neg = 1, i++;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (nd < 19) m = m * 10 + (gw_u64)(s[i] - '0'), nd += m != 0;
        else exp++;
    }
    if (i < len && s[i] == '.')
        for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if (nd < 19) m = m * 10 + (gw_u64)(s[i] - '0'), nd += m != 0, exp--;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0, e = 0;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i] == '-', i++;
        for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
            if (e < 100000) e = e * 10 + (s[i] - '0');
        exp += eneg ? -e : e;
    }
    double f = (double)m;
    while (exp > 0 && f != 0 && f - f == 0) {
        int k = exp > 22 ? 22 : exp;
        f *= p10[k];
        exp -= k;
    }
    while (exp < 0 && f != 0) {
        int k = -exp > 22 ? 22 : -exp;
        f /= p10[k];
        exp += k;
    }
    return neg ? -f : f;
}

/* A JSON number (RFC 8259 grammar): an int when it fits i64, else a float. */
static gw_value *gw_jnumber_(gw_jp_ *p) {
    gw_u32 start = p->at;
    int neg = 0;
    if (p->at < p->len && p->s[p->at] == '-') neg = 1, p->at++;
    gw_u32 int_start = p->at;
    while (p->at < p->len && p->s[p->at] >= '0' && p->s[p->at] <= '9') p->at++;
    gw_u32 int_end = p->at;
    if (int_end == int_start || (p->s[int_start] == '0' && int_end - int_start > 1)) return 0;
    gw_u32 frac_start = 0, frac_end = 0;
    int is_float = 0;
    if (p->at < p->len && p->s[p->at] == '.') {
        p->at++;
        frac_start = p->at;
        while (p->at < p->len && p->s[p->at] >= '0' && p->s[p->at] <= '9') p->at++;
        frac_end = p->at;
        if (frac_end == frac_start) return 0;
        is_float = 1;
    }
    gw_i64 e10 = 0;
    if (p->at < p->len && (p->s[p->at] == 'e' || p->s[p->at] == 'E')) {
        int eneg = 0;
        p->at++;
        if (p->at < p->len && (p->s[p->at] == '+' || p->s[p->at] == '-')) eneg = p->s[p->at] == '-', p->at++;
        gw_u32 es = p->at;
        while (p->at < p->len && p->s[p->at] >= '0' && p->s[p->at] <= '9') {
            if (e10 < 1000000) e10 = e10 * 10 + (p->s[p->at] - '0');
            p->at++;
        }
        if (p->at == es) return 0;
        if (eneg) e10 = -e10;
        is_float = 1;
    }
    if (!is_float) {
        gw_key k = gw_key_from(p->s + start, p->at - start);
        if (k.is_int) return gw_int(k.i);
        /* "-0" and leading-zero-free ints that fit i64 but are not canonical keys. */
        if (int_end - int_start == 1 && p->s[int_start] == '0') return gw_int(0);
    }
    /* Significant digits of integer part + fraction, and the decimal point position. */
    gw_buf d = {0, 0, 0};
    int decpt = 0, seen = 0;
    for (gw_u32 i = int_start; i < int_end; i++) {
        if (!seen && p->s[i] == '0') continue;
        seen = 1;
        gw_buf_byte(&d, p->s[i]);
        decpt++;
    }
    for (gw_u32 i = frac_start; i < frac_end; i++) {
        if (!seen && p->s[i] == '0') {
            decpt--;
            continue;
        }
        seen = 1;
        gw_buf_byte(&d, p->s[i]);
    }
    while (d.len > 0 && d.p[d.len - 1] == '0') d.len--;
    gw_value *v = gw_float(gw_parse_float_(p->s + start, p->at - start));
    if (d.len == 0) {
        v->f = neg ? -0.0 : 0.0;
        static const gw_u8 zero = '0';
        v->digits = &zero;
        v->ndigits = 1;
        v->decpt = 1;
        return v;
    }
    gw_i64 dp = (gw_i64)decpt + e10;
    /* Exact shortest digits: <= 15 significant digits of a normal, finite double. */
    if (d.len <= 15 && dp >= -306 && (dp <= 308 || (dp == 309 && memcmp(d.p, "17976931348623157", d.len) <= 0))) {
        v->digits = d.p;
        v->ndigits = (int)d.len;
        v->decpt = (int)dp;
    }
    if (dp > 310) v->f = neg ? -1.0 / 0.0 : 1.0 / 0.0;
    return v;
}

static gw_value *gw_jvalue_(gw_jp_ *p, int depth);

static gw_value *gw_jarray_(gw_jp_ *p, int depth, int object) {
    gw_value *a = gw_array();
    p->at++;
    gw_jws_(p);
    if (p->at >= p->len) return 0;
    if (p->s[p->at] == (object ? '}' : ']')) {
        p->at++;
        return a;
    }
    for (;;) {
        gw_jws_(p);
        if (object) {
            gw_buf key = {0, 0, 0};
            if (p->at >= p->len || p->s[p->at] != '"' || !gw_jstring_(p, &key)) return 0;
            gw_jws_(p);
            if (!gw_jeat_(p, ":")) return 0;
            gw_jws_(p);
            gw_value *v = gw_jvalue_(p, depth + 1);
            if (!v) return 0;
            gw_set_key(a, gw_key_from(key.p, key.len), v);
        } else {
            gw_value *v = gw_jvalue_(p, depth + 1);
            if (!v) return 0;
            gw_push(a, v);
        }
        gw_jws_(p);
        if (p->at >= p->len) return 0;
        gw_u8 c = p->s[p->at++];
        if (c == ',') continue;
        if (c == (object ? '}' : ']')) return a;
        return 0;
    }
}

static gw_value *gw_jvalue_(gw_jp_ *p, int depth) {
    if (p->at >= p->len) return 0;
    gw_u8 c = p->s[p->at];
    if ((c == '[' || c == '{') && depth >= GW_DEPTH_MAX) return 0;
    switch (c) {
    case 'n': return gw_jeat_(p, "null") ? gw_null() : 0;
    case 't': return gw_jeat_(p, "true") ? gw_bool(1) : 0;
    case 'f': return gw_jeat_(p, "false") ? gw_bool(0) : 0;
    case '"': {
        gw_buf s = {0, 0, 0};
        if (!gw_jstring_(p, &s)) return 0;
        gw_value *v = gw_new_(GW_STR);
        v->s = s.p;
        v->len = s.len;
        return v;
    }
    case '[': return gw_jarray_(p, depth, 0);
    case '{': return gw_jarray_(p, depth, 1);
    default: return gw_jnumber_(p);
    }
}

/* One JSON document, or 0 when the text is not JSON (arrays nest at most 64 deep). */
static gw_value *gw_json_parse(const gw_u8 *s, gw_u32 len) {
    gw_jp_ p = {s, len, 0};
    gw_jws_(&p);
    gw_value *v = gw_jvalue_(&p, 0);
    if (!v) return 0;
    gw_jws_(&p);
    return p.at == len ? v : 0;
}

#endif
