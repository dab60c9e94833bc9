//! The migration guide (`docs/migrating-from-php.md`) against the original's API list
//! (`docs/original-api.txt`, taken from the original's sources): every Events callback and
//! every `Lib\Gateway` / `GatewayClient\Gateway` method has its row in the guide, each of
//! the three guest SDKs (Rust `wasm-workers/sdk`, AssemblyScript `wasm-workers/as/sdk`, C
//! `wasm-workers/c/gw.h`) names it, the guide's row names what the SDK has, and the
//! `gatewayworker client` call the row gives exists. Pure file reading.

use std::path::Path;

/// Whether `text` holds `needle` as a whole name: an identifier character at either end
/// of the needle must not continue outside it (`GW_OP_X` is not found in `GW_OP_XY`).
fn has(text: &str, needle: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        let joined_before = needle.starts_with(ident) && before.is_some_and(ident);
        let joined_after = needle.ends_with(ident) && after.is_some_and(ident);
        !joined_before && !joined_after
    })
}

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The original's API: callbacks, and methods with the classes that have them.
struct Original {
    callbacks: Vec<String>,
    methods: Vec<(String, bool, bool)>,
}

fn original() -> Original {
    let text = read("docs/original-api.txt");
    let (mut callbacks, mut methods) = (Vec::new(), Vec::new());
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = if line == "[callbacks]" {
                "callbacks"
            } else if line == "[methods]" {
                "methods"
            } else {
                panic!("docs/original-api.txt: unknown section {line}")
            };
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        match section {
            "callbacks" => {
                assert_eq!(cols.len(), 1, "callback line {line:?}");
                callbacks.push(cols[0].to_owned());
            }
            "methods" => {
                assert_eq!(cols.len(), 3, "method line {line:?}: NAME Lib|- Client|-");
                assert!(cols[1] == "Lib" || cols[1] == "-", "{line:?}");
                assert!(cols[2] == "Client" || cols[2] == "-", "{line:?}");
                methods.push((cols[0].to_owned(), cols[1] == "Lib", cols[2] == "Client"));
            }
            _ => panic!("docs/original-api.txt: {line:?} before a section"),
        }
    }
    Original { callbacks, methods }
}

/// `getAllUidList` → `get_all_uid_list`.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The original spells "destroy" as "destory" in two method names; the SDKs and the CLI
/// spell it right.
fn spelled(method: &str) -> String {
    method.replace("destory", "destroy")
}

/// Methods whose body in the original is a call of another method (deprecated names and
/// pairs of spellings): the SDKs may name only the other one.
const SAME_AS: &[(&str, &str)] = &[
    ("getAllClientInfo", "getAllClientSessions"),
    ("getClientInfoByGroup", "getClientSessionsByGroup"),
    ("getAllClientIdCount", "getAllClientCount"),
    ("getClientIdCountByGroup", "getClientCountByGroup"),
];

/// Methods nothing of ours corresponds to; the guide's row must say "no equivalent".
const NO_EQUIVALENT: &[&str] = &["setSocketSession", "setBusinessWorker"];

/// The names to look for, the method's own first.
fn candidates(method: &str) -> Vec<String> {
    let mut names = vec![spelled(method)];
    if let Some((_, other)) = SAME_AS.iter().find(|(m, _)| *m == method) {
        names.push((*other).to_owned());
    }
    names
}

/// What one SDK calls the method: a typed function, else the op constant of `gw.api`.
struct Sdk {
    name: &'static str,
    source: String,
    /// The function's name in the source, as the guide writes it, and the texts that
    /// declare it (any of them).
    function: fn(&str) -> (String, Vec<String>),
    /// The op constant, as the guide writes it, and the texts that declare it.
    op: fn(&str) -> (String, Vec<String>),
}

impl Sdk {
    /// The guide's spelling of the SDK's call for `method`, or None.
    fn names(&self, method: &str) -> Option<String> {
        let names = candidates(method);
        for name in &names {
            let (shown, declared) = (self.function)(name);
            if declared.iter().any(|d| has(&self.source, d)) {
                return Some(shown);
            }
        }
        for name in &names {
            let (shown, declared) = (self.op)(name);
            if declared.iter().any(|d| has(&self.source, d)) {
                return Some(shown);
            }
        }
        None
    }
}

fn sdks() -> Vec<Sdk> {
    vec![
        Sdk {
            name: "Rust (wasm-workers/sdk/src/gateway.rs)",
            source: read("wasm-workers/sdk/src/gateway.rs"),
            function: |m| {
                let s = snake(m);
                (format!("gateway::{s}"), vec![format!("pub fn {s}(")])
            },
            op: |m| {
                let s = snake(m).to_ascii_uppercase();
                (format!("op::{s}"), vec![format!("pub const {s}: i32")])
            },
        },
        Sdk {
            name: "AssemblyScript (wasm-workers/as/sdk/index.ts)",
            source: read("wasm-workers/as/sdk/index.ts"),
            function: |m| {
                (
                    format!("gateway.{m}"),
                    vec![format!("export function {m}(")],
                )
            },
            op: |m| {
                let s = snake(m).to_ascii_uppercase();
                (format!("op.{s}"), vec![format!("export const {s} =")])
            },
        },
        Sdk {
            name: "C (wasm-workers/c/gw.h)",
            source: read("wasm-workers/c/gw.h"),
            function: |m| {
                let s = snake(m);
                // `static int gw_x(` or `static gw_value *gw_x(`.
                (
                    format!("gw_{s}"),
                    vec![format!(" gw_{s}("), format!("*gw_{s}(")],
                )
            },
            op: |m| {
                let s = snake(m).to_ascii_uppercase();
                (format!("GW_OP_{s}"), vec![format!("GW_OP_{s}")])
            },
        },
    ]
}

/// The guide's table row for `name`: the line starting with "| `name`" or "| `name(".
fn row<'a>(guide: &'a str, name: &str) -> Option<&'a str> {
    let start = format!("| `{name}");
    guide
        .lines()
        .find(|l| l.starts_with(&start) && l[start.len()..].starts_with(['`', '(']))
}

/// The `gatewayworker client` call for `method` (kebab-case of the method or of the one it
/// is the same as), if `src/cli/args.rs` has it as a `ClientCall` variant or alias.
fn cli_call(args_rs: &str, method: &str) -> Option<String> {
    let enum_start = args_rs
        .find("pub enum ClientCall")
        .expect("src/cli/args.rs: pub enum ClientCall");
    let calls = &args_rs[enum_start..];
    for name in candidates(method) {
        let kebab = snake(&name).replace('_', "-");
        let mut pascal = name.clone();
        pascal[..1].make_ascii_uppercase();
        let variant = [format!("    {pascal} {{"), format!("    {pascal},")];
        if variant.iter().any(|v| has(calls, v)) || has(calls, &format!("\"{kebab}\"")) {
            return Some(kebab);
        }
    }
    None
}

#[test]
fn the_original_api_list_is_the_whole_list() {
    let o = original();
    assert_eq!(o.callbacks.len(), 6, "{:?}", o.callbacks);
    assert_eq!(o.methods.len(), 45, "public static methods of both classes");
    assert_eq!(o.methods.iter().filter(|m| m.1).count(), 42, "Lib\\Gateway");
    assert_eq!(
        o.methods.iter().filter(|m| m.2).count(),
        43,
        "GatewayClient"
    );
    let named = SAME_AS.iter().flat_map(|(m, other)| [*m, *other]);
    for m in named.chain(NO_EQUIVALENT.iter().copied()) {
        assert!(
            o.methods.iter().any(|x| x.0 == *m),
            "{m} is not in the list"
        );
    }
}

#[test]
fn every_callback_has_its_row_and_each_sdk_has_it() {
    let guide = read("docs/migrating-from-php.md");
    let rust = read("wasm-workers/sdk/src/lib.rs");
    let assemblyscript = read("wasm-workers/as/sdk/index.ts");
    let c = read("wasm-workers/c/gw.h");
    let mut missing = Vec::new();
    for callback in original().callbacks {
        let s = snake(&callback);
        // The ABI export and the SDK spellings: onWebSocketConnect is on_websocket_connect.
        let s = s.replace("web_socket", "websocket");
        let rust_fn = format!("fn {s}(");
        let as_fn = format!("{}(", callback.replace("WebSocket", "Websocket"));
        let c_macro = format!("GW_{}(", s.to_ascii_uppercase());
        let Some(line) = row(&guide, &callback) else {
            missing.push(format!(
                "{callback}: no row `| `{callback}` ...` in the guide"
            ));
            continue;
        };
        for (sdk, source, declared, shown) in [
            (
                "Rust",
                &rust,
                rust_fn.clone(),
                rust_fn.trim_end_matches('(').to_owned(),
            ),
            (
                "AssemblyScript",
                &assemblyscript,
                format!("  {as_fn}"),
                as_fn.trim_end_matches('(').to_owned(),
            ),
            (
                "C",
                &c,
                format!("#define {c_macro}"),
                c_macro.trim_end_matches('(').to_owned(),
            ),
        ] {
            if !has(source, &declared) {
                missing.push(format!("{callback}: the {sdk} SDK has no `{declared}`"));
            }
            let shown = shown.trim_start_matches("fn ");
            if !has(line, shown) {
                missing.push(format!(
                    "{callback}: the guide's row does not name {sdk}'s `{shown}`"
                ));
            }
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

#[test]
fn every_method_has_its_row_each_sdk_names_it_and_the_client_call_exists() {
    let guide = read("docs/migrating-from-php.md");
    let args_rs = read("src/cli/args.rs");
    let sdks = sdks();
    let mut missing = Vec::new();
    for (method, _, _) in original().methods {
        let Some(line) = row(&guide, &method) else {
            missing.push(format!("{method}: no row `| `{method}` ...` in the guide"));
            continue;
        };
        if NO_EQUIVALENT.contains(&method.as_str()) {
            if !line.contains("no equivalent") {
                missing.push(format!(
                    "{method}: the row must say \"no equivalent\" (and why)"
                ));
            }
            continue;
        }
        for sdk in &sdks {
            match sdk.names(&method) {
                None => missing.push(format!("{method}: {} names it nowhere", sdk.name)),
                Some(shown) if !has(line, &format!("`{shown}")) => missing.push(format!(
                    "{method}: the guide's row does not name `{shown}` of {}",
                    sdk.name
                )),
                Some(_) => {}
            }
        }
        // A GatewayClient has no current client: those three have no `client` call.
        if method.contains("CurrentClient") {
            continue;
        }
        match cli_call(&args_rs, &method) {
            None => missing.push(format!("{method}: no `gatewayworker client` call")),
            Some(call) if !has(line, &format!("`{call}")) => missing.push(format!(
                "{method}: the guide's row does not name `client {call}`"
            )),
            Some(_) => {}
        }
    }
    assert!(missing.is_empty(), "\n{}", missing.join("\n"));
}

/// The checks above fail when a name is missing: a method added to the list, a guide
/// without the row, an SDK without the name.
#[test]
fn the_checks_catch_what_is_missing() {
    let sdks = sdks();
    assert!(sdks[0].names("noSuchMethod").is_none());
    assert_eq!(
        sdks[0].names("getAllClientInfo").as_deref(),
        Some("gateway::get_all_client_sessions")
    );
    assert_eq!(
        sdks[1].names("isUidsOnline").as_deref(),
        Some("op.IS_UIDS_ONLINE")
    );
    assert_eq!(
        sdks[2].names("destoryClient").as_deref(),
        Some("GW_OP_DESTROY_CLIENT")
    );
    let guide = "| `sendToAllX` | y |\n| `sendToAll` | x |\n| `onClose($client_id)` | z |\n";
    assert_eq!(row(guide, "sendToAll"), Some("| `sendToAll` | x |"));
    assert_eq!(row(guide, "onClose"), Some("| `onClose($client_id)` | z |"));
    assert_eq!(row(guide, "sendTo"), None);
    assert!(has("x GW_OP_A(", "GW_OP_A") && !has("x GW_OP_AB", "GW_OP_A"));
    assert!(!has("x_GW_OP_A", "GW_OP_A") && has("`op::X`", "`op::X"));
    let args_rs = read("src/cli/args.rs");
    assert_eq!(
        cli_call(&args_rs, "getAllClientIdCount").as_deref(),
        Some("get-all-client-id-count")
    );
    assert_eq!(
        cli_call(&args_rs, "getAllClientInfo").as_deref(),
        Some("get-all-client-sessions")
    );
    assert_eq!(
        cli_call(&args_rs, "destoryClient").as_deref(),
        Some("destroy-client")
    );
    assert_eq!(cli_call(&args_rs, "sendToCurrentClient"), None);
}
