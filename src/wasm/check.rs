//! `check-wasm`: a module checked against the gw ABI (`wasm-workers/ABI.md`) before it runs,
//! from its bytes alone (no compilation): the ABI version it returns, the exports the host
//! calls and their signatures, its imports (only the `gw` functions the host provides, with
//! their signatures), its memory (exported as `memory`, 32-bit, its initial size within the
//! worker's memory limit). Every problem comes with its fix.
//!
//! The `gatewayworker check-wasm FILE` subcommand prints the [`Report`]; the host runs the
//! same check when it loads or reloads a module ([`refuse_problems`]) and refuses a module
//! with problems (the worker keeps the module it runs).

use std::fmt;

use wasmparser::{ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType, Validator};

/// The ABI version this host speaks (`gw_abi_version` must return it).
pub const ABI_VERSION: i32 = 1;

/// The value types of the ABI's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `i32`
    I32,
    /// `i64`
    I64,
}

use Ty::{I32, I64};

/// A function signature: parameters, results.
pub type Sig = (&'static [Ty], &'static [Ty]);

/// Every import the host provides (module `gw`, ABI.md 4), with its signature.
pub const HOST_IMPORTS: &[(&str, Sig)] = &[
    ("api", (&[I32, I32, I32], &[I32])),
    ("send_to_current_client", (&[I32, I32, I32], &[I32])),
    ("result_len", (&[], &[I32])),
    ("result_read", (&[I32, I32], &[I32])),
    ("client_info", (&[], &[I32])),
    ("session_get", (&[], &[I32])),
    ("session_set", (&[I32, I32], &[I32])),
    ("log", (&[I32, I32, I32], &[])),
    ("sleep_ms", (&[I32], &[I32])),
    ("now_ms", (&[], &[I64])),
];

/// The function exports the host calls (ABI.md 5): name, signature, required.
pub const ABI_EXPORTS: &[(&str, Sig, bool)] = &[
    ("gw_abi_version", (&[], &[I32]), true),
    ("gw_alloc", (&[I32], &[I32]), true),
    ("gw_free", (&[I32, I32], &[]), true),
    ("on_worker_start", (&[], &[]), false),
    ("on_connect", (&[I32, I32], &[]), false),
    ("on_message", (&[I32, I32, I32, I32, I32], &[]), false),
    ("on_close", (&[I32, I32], &[]), false),
    ("on_websocket_connect", (&[I32, I32, I32, I32], &[]), false),
    ("on_worker_stop", (&[], &[]), false),
];

/// One thing wrong with a module, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems: the host refuses the module.
    pub problems: Vec<Finding>,
    /// Worth knowing, but the module runs.
    pub warnings: Vec<Finding>,
    /// The value `gw_abi_version` returns, when its body is a constant.
    pub abi_version: Option<i32>,
    /// The optional event exports the module implements, in ABI order.
    pub events: Vec<&'static str>,
    /// The `gw` imports the module uses, in its order.
    pub imports: Vec<String>,
    /// Initial and maximum size of the exported memory, in bytes.
    pub memory: Option<(u64, Option<u64>)>,
}

impl Report {
    /// No problems: the host would load the module.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line: what the module implements.
    pub fn summary(&self) -> String {
        let version = match self.abi_version {
            Some(v) => format!("gw ABI {v}"),
            None => format!("gw ABI (version checked at start, host speaks {ABI_VERSION})"),
        };
        let events = if self.events.is_empty() {
            "no events".to_string()
        } else {
            format!("events {}", self.events.join(", "))
        };
        let imports = if self.imports.is_empty() {
            "no imports".to_string()
        } else {
            format!("imports {}", self.imports.join(", "))
        };
        let memory = match self.memory {
            Some((initial, Some(max))) => {
                format!("memory {} initial, {} max", size(initial), size(max))
            }
            Some((initial, None)) => format!("memory {} initial, no maximum", size(initial)),
            None => "no memory".to_string(),
        };
        format!("{version}; {events}; {imports}; {memory}")
    }
}

impl fmt::Display for Report {
    /// Every problem and warning with its fix, one block each.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (label, list) in [("problem", &self.problems), ("warning", &self.warnings)] {
            for x in list {
                writeln!(f, "{label}: {}", x.problem)?;
                writeln!(f, "  fix: {}", x.fix)?;
            }
        }
        Ok(())
    }
}

fn size(n: u64) -> String {
    if n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{} KiB", n.div_ceil(1024))
    }
}

fn sig_text(params: &[Ty], results: &[Ty]) -> String {
    let list = |t: &[Ty]| {
        t.iter()
            .map(|t| match t {
                I32 => "i32",
                I64 => "i64",
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn func_type_text(f: &FuncType) -> String {
    let list = |t: &[ValType]| {
        t.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(f.params()), list(f.results()))
}

fn same_sig(f: &FuncType, (params, results): Sig) -> bool {
    let eq = |a: &[ValType], b: &[Ty]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| matches!((x, y), (ValType::I32, Ty::I32) | (ValType::I64, Ty::I64)))
    };
    eq(f.params(), params) && eq(f.results(), results)
}

/// How to build each export, per language.
const EXPORT_HINT: &str = "Rust: gw_sdk::export_worker!(YourType); C: #include \"gw.h\"; AssemblyScript: export * from \"<sdk>/exports\"";

/// The fix for an import from a module other than `gw`.
fn foreign_import_fix(module: &str, name: &str) -> String {
    if module.starts_with("wasi") {
        "the module was built for WASI, which the host does not provide: build for wasm32-unknown-unknown (Rust), with clang --target=wasm32 -nostdlib and no wasi-libc (C), without the WASI shim (AssemblyScript)".into()
    } else if module == "env" && name == "abort" {
        "AssemblyScript's runtime imports env.abort: build with --use abort=<a function of yours> (the SDK's wasm-workers/as/build.sh points it at sdk/exports/gwAbort); in C, do not call abort() (use __builtin_trap())".into()
    } else if module == "env" {
        format!("`{name}` is a symbol the linker left undefined: define it in the module (C without libc: gw.h defines memcpy, memset, memmove, memcmp), or drop the call; the host links only the gw imports")
    } else {
        "the host links only the `gw` imports of ABI.md 4: drop this import".into()
    }
}

/// Checks `module` (wasm bytes, or WAT text) against the ABI for a worker whose instances
/// may hold `memory_limit` bytes of linear memory.
pub fn check(module: &[u8], memory_limit: u64) -> Report {
    let mut report = Report::default();
    let bytes = match wat::parse_bytes(module) {
        Ok(b) => b,
        Err(e) => {
            report.problems.push(Finding {
                problem: format!("not a wasm module: {e}"),
                fix: "give a .wasm file (or WAT text) built for wasm32".into(),
            });
            return report;
        }
    };
    if let Err(e) = Validator::new().validate_all(&bytes) {
        report.problems.push(Finding {
            problem: format!("the module does not validate: {e}"),
            fix: "rebuild it with a wasm32 toolchain; the file may be truncated or not a core module (components are not supported)".into(),
        });
        return report;
    }
    if let Err(e) = inspect(&bytes, memory_limit, &mut report) {
        report.problems.push(Finding {
            problem: format!("the module cannot be read: {e}"),
            fix: "rebuild it with a wasm32 toolchain".into(),
        });
    }
    report
}

/// What the host does at load and reload: `Err` with every problem and its fix (one line
/// each, `; `-separated) when the module has any.
pub fn refuse_problems(module: &[u8], memory_limit: u64) -> Result<(), String> {
    let report = check(module, memory_limit);
    if report.is_ok() {
        return Ok(());
    }
    Err(report
        .problems
        .iter()
        .map(|p| format!("{} (fix: {})", p.problem, p.fix))
        .collect::<Vec<_>>()
        .join("; "))
}

fn inspect(bytes: &[u8], memory_limit: u64, report: &mut Report) -> wasmparser::Result<()> {
    let mut types: Vec<Option<FuncType>> = Vec::new();
    // Type index of every function, imported ones first.
    let mut funcs: Vec<u32> = Vec::new();
    let mut imported_funcs = 0u32;
    // (initial bytes, maximum bytes, memory64, shared) of every memory, imported ones first.
    let mut memories: Vec<(u64, Option<u64>, bool, bool)> = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut bodies: Vec<Option<i32>> = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group?.into_types() {
                        types.push(match sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    let what = format!("{}.{}", import.module, import.name);
                    match import.ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                            funcs.push(t);
                            imported_funcs += 1;
                            let ty = types.get(t as usize).cloned().flatten();
                            check_import(import.module, import.name, ty.as_ref(), report);
                        }
                        TypeRef::Memory(m) => {
                            memories.push((m.initial, m.maximum, m.memory64, m.shared));
                            report.problems.push(Finding {
                                problem: format!("the module imports its memory ({what})"),
                                fix: "define and export the memory in the module (`memory`); the host provides none (C: do not link with --import-memory)".into(),
                            });
                        }
                        _ => report.problems.push(Finding {
                            problem: format!("import {what} is not a function"),
                            fix: "the host provides only the gw functions of ABI.md 4: drop this import".into(),
                        }),
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    funcs.push(t?);
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    let m = m?;
                    let page = 1u64 << m.page_size_log2.unwrap_or(16);
                    memories.push((
                        m.initial.saturating_mul(page),
                        m.maximum.map(|x| x.saturating_mul(page)),
                        m.memory64,
                        m.shared,
                    ));
                }
            }
            Payload::ExportSection(reader) => {
                for e in reader {
                    let e = e?;
                    exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::CodeSectionEntry(body) => {
                bodies.push(constant_i32(&body));
            }
            _ => {}
        }
    }
    let func_type = |index: u32| -> Option<FuncType> {
        let t = *funcs.get(index as usize)?;
        types.get(t as usize).cloned().flatten()
    };
    let export = |name: &str| exports.iter().find(|(n, _, _)| n == name);

    // Memory.
    match export("memory") {
        None => report.problems.push(Finding {
            problem: "no memory export `memory`".into(),
            fix: "export the linear memory as `memory` (Rust cdylib, clang/wasm-ld and AssemblyScript do by default; do not strip or rename it)".into(),
        }),
        Some((_, kind, index)) if *kind != ExternalKind::Memory => {
            let _ = index;
            report.problems.push(Finding {
                problem: "the export `memory` is not a memory".into(),
                fix: "export the linear memory under the name `memory` and nothing else under it".into(),
            })
        }
        Some((_, _, index)) => {
            if let Some(&(initial, maximum, memory64, shared)) = memories.get(*index as usize) {
                report.memory = Some((initial, maximum));
                if memory64 {
                    report.problems.push(Finding {
                        problem: "the memory is 64-bit (memory64)".into(),
                        fix: "the gw ABI passes 32-bit pointers: build for wasm32, not wasm64".into(),
                    });
                }
                if shared {
                    report.problems.push(Finding {
                        problem: "the memory is shared (threads)".into(),
                        fix: "an instance runs one event at a time on one thread: build without threads or atomics (-pthread, +atomics)".into(),
                    });
                }
                if initial > memory_limit {
                    report.problems.push(Finding {
                        problem: format!(
                            "the memory starts at {}, above the worker's memory limit of {}: no instance can be created",
                            size(initial),
                            size(memory_limit)
                        ),
                        fix: "lower the initial memory (C: -Wl,--initial-memory=BYTES; AssemblyScript: --initialMemory PAGES; Rust: a smaller static data/stack) or raise the worker's memory limit".into(),
                    });
                } else if let Some(max) = maximum.filter(|&m| m > memory_limit) {
                    report.warnings.push(Finding {
                        problem: format!(
                            "the memory may grow to {}, above the worker's memory limit of {}",
                            size(max),
                            size(memory_limit)
                        ),
                        fix: "nothing to do if the module copes with memory.grow failing (it returns -1 beyond the limit; Rust and AssemblyScript then trap and the event fails); else declare a lower maximum or raise the worker's limit".into(),
                    });
                }
            }
        }
    }

    // Function exports.
    for &(name, sig, required) in ABI_EXPORTS {
        match export(name) {
            None if required => report.problems.push(Finding {
                problem: format!("missing export `{name}` {}", sig_text(sig.0, sig.1)),
                fix: format!("export it ({EXPORT_HINT})"),
            }),
            None => {}
            Some((_, kind, _)) if !matches!(kind, ExternalKind::Func | ExternalKind::FuncExact) => {
                report.problems.push(Finding {
                    problem: format!("the export `{name}` is not a function"),
                    fix: format!("export a function `{name}` {}", sig_text(sig.0, sig.1)),
                })
            }
            Some((_, _, index)) => match func_type(*index) {
                Some(f) if same_sig(&f, sig) => {
                    if !required {
                        report.events.push(name);
                    }
                    if name == "gw_abi_version" {
                        let body = index.checked_sub(imported_funcs);
                        report.abi_version =
                            body.and_then(|i| bodies.get(i as usize).copied().flatten());
                    }
                }
                f => report.problems.push(Finding {
                    problem: format!(
                        "the export `{name}` has type {}; the ABI's is {}",
                        f.as_ref()
                            .map_or("(not a function type)".into(), func_type_text),
                        sig_text(sig.0, sig.1)
                    ),
                    fix: format!(
                        "declare `{name}` with the ABI's parameters and results (ABI.md 5)"
                    ),
                }),
            },
        }
    }
    if let Some(v) = report.abi_version.filter(|&v| v != ABI_VERSION) {
        report.problems.push(Finding {
            problem: format!("gw_abi_version returns {v}; this host speaks version {ABI_VERSION}"),
            fix: format!("build against ABI version {ABI_VERSION} (the SDKs of wasm-workers/), or run a host that speaks version {v}"),
        });
    }
    if report.is_ok() && report.events.is_empty() {
        report.warnings.push(Finding {
            problem: "the module exports no event (on_connect, on_message, on_close, on_websocket_connect, on_worker_start, on_worker_stop): it does nothing".into(),
            fix: "export the events it should handle".into(),
        });
    }
    Ok(())
}

fn check_import(module: &str, name: &str, ty: Option<&FuncType>, report: &mut Report) {
    let what = format!("{module}.{name}");
    if module != "gw" {
        report.problems.push(Finding {
            problem: format!("import {what} is not from module `gw`"),
            fix: foreign_import_fix(module, name),
        });
        return;
    }
    let Some(&(_, sig)) = HOST_IMPORTS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = HOST_IMPORTS.iter().map(|(n, _)| *n).collect();
        report.problems.push(Finding {
            problem: format!("import {what} is not provided by the host"),
            fix: format!(
                "the host (ABI version {ABI_VERSION}) provides gw.{}: drop it or correct the name",
                known.join(", gw.")
            ),
        });
        return;
    };
    match ty {
        Some(f) if same_sig(f, sig) => report.imports.push(name.to_string()),
        f => report.problems.push(Finding {
            problem: format!(
                "import {what} has type {}; the host's is {}",
                f.map_or("(not a function type)".into(), func_type_text),
                sig_text(sig.0, sig.1)
            ),
            fix: format!("declare {what} with the host's parameters and results (ABI.md 4)"),
        }),
    }
}

/// The value of a function body that is exactly `i32.const N; end` (what every compiler
/// makes of `gw_abi_version`), else `None`.
fn constant_i32(body: &wasmparser::FunctionBody<'_>) -> Option<i32> {
    let mut ops = body.get_operators_reader().ok()?;
    let value = match ops.read().ok()? {
        Operator::I32Const { value } => value,
        _ => return None,
    };
    match ops.read().ok()? {
        Operator::End if ops.eof() => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 64 << 20;

    /// A module with `body` added to the required exports.
    fn module(imports: &str, body: &str) -> String {
        format!(
            r#"(module {imports}
            (memory (export "memory") 1)
            (func (export "gw_abi_version") (result i32) (i32.const 1))
            (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "gw_free") (param i32 i32))
            {body})"#
        )
    }

    const ON_MESSAGE: &str = r#"(func (export "on_message") (param i32 i32 i32 i32 i32))"#;

    fn problems(text: &str) -> Vec<String> {
        check(text.as_bytes(), LIMIT)
            .problems
            .into_iter()
            .map(|p| p.problem)
            .collect()
    }

    #[test]
    fn a_complete_module_passes_with_a_one_line_summary() {
        let r = check(
            module(
                r#"(import "gw" "send_to_current_client" (func (param i32 i32 i32) (result i32)))
                   (import "gw" "now_ms" (func (result i64)))"#,
                ON_MESSAGE,
            )
            .as_bytes(),
            LIMIT,
        );
        assert!(r.is_ok(), "{r}");
        assert!(r.warnings.is_empty(), "{r}");
        assert_eq!(
            r.summary(),
            "gw ABI 1; events on_message; imports send_to_current_client, now_ms; memory 64 KiB initial, no maximum"
        );
    }

    #[test]
    fn every_host_import_with_its_signature_passes() {
        let imports: String = HOST_IMPORTS
            .iter()
            .map(|(name, (p, r))| {
                let list = |t: &[Ty]| {
                    t.iter()
                        .map(|t| if *t == I32 { "i32" } else { "i64" })
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                format!(
                    r#"(import "gw" "{name}" (func (param {}) (result {})))"#,
                    list(p),
                    list(r)
                )
            })
            .collect();
        let r = check(module(&imports, ON_MESSAGE).as_bytes(), LIMIT);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.imports.len(), HOST_IMPORTS.len());
    }

    #[test]
    fn wrong_abi_version_is_a_problem() {
        let text = module("", ON_MESSAGE).replace("(i32.const 1))", "(i32.const 2))");
        assert_eq!(
            problems(&text),
            ["gw_abi_version returns 2; this host speaks version 1"]
        );
    }

    #[test]
    fn a_computed_abi_version_is_left_to_the_start() {
        let text = module("", ON_MESSAGE)
            .replace("(i32.const 1))", "(i32.add (i32.const 0) (i32.const 1)))");
        let r = check(text.as_bytes(), LIMIT);
        assert!(r.is_ok(), "{r}");
        assert_eq!(r.abi_version, None);
    }

    #[test]
    fn missing_required_exports_are_problems_with_fixes() {
        let text = r#"(module (memory (export "memory") 1)
            (func (export "on_message") (param i32 i32 i32 i32 i32)))"#;
        let r = check(text.as_bytes(), LIMIT);
        let got: Vec<&str> = r.problems.iter().map(|p| p.problem.as_str()).collect();
        assert_eq!(
            got,
            [
                "missing export `gw_abi_version` () -> (i32)",
                "missing export `gw_alloc` (i32) -> (i32)",
                "missing export `gw_free` (i32, i32) -> ()",
            ]
        );
        assert!(r.problems.iter().all(|p| p.fix.contains("export_worker!")));
    }

    #[test]
    fn an_export_with_the_wrong_signature_is_a_problem() {
        assert_eq!(
            problems(&module(
                "",
                r#"(func (export "on_message") (param i32 i32 i32 i32))"#
            )),
            ["the export `on_message` has type (i32, i32, i32, i32) -> (); the ABI's is (i32, i32, i32, i32, i32) -> ()"]
        );
        let text = module("", ON_MESSAGE).replace(
            r#"(func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))"#,
            r#"(func (export "gw_alloc") (param i64) (result i32) (i32.const 1024))"#,
        );
        assert_eq!(
            problems(&text),
            ["the export `gw_alloc` has type (i64) -> (i32); the ABI's is (i32) -> (i32)"]
        );
    }

    #[test]
    fn an_event_export_that_is_not_a_function_is_a_problem() {
        assert_eq!(
            problems(&module(
                "",
                r#"(global (export "on_close") i32 (i32.const 0))"#
            )),
            ["the export `on_close` is not a function"]
        );
    }

    #[test]
    fn imports_outside_gw_unknown_or_mistyped_are_problems() {
        let r = check(
            module(
                r#"(import "env" "abort" (func (param i32 i32 i32 i32)))
                   (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
                   (import "env" "memcpy" (func (param i32 i32 i32) (result i32)))
                   (import "gw" "send" (func (param i32 i32)))
                   (import "gw" "log" (func (param i32 i32)))
                   (import "gw" "now_ms" (global i64))"#,
                ON_MESSAGE,
            )
            .as_bytes(),
            LIMIT,
        );
        let got: Vec<&str> = r.problems.iter().map(|p| p.problem.as_str()).collect();
        assert_eq!(
            got,
            [
                "import env.abort is not from module `gw`",
                "import wasi_snapshot_preview1.fd_write is not from module `gw`",
                "import env.memcpy is not from module `gw`",
                "import gw.send is not provided by the host",
                "import gw.log has type (i32, i32) -> (); the host's is (i32, i32, i32) -> ()",
                "import gw.now_ms is not a function",
            ]
        );
        assert!(r.problems[0].fix.contains("--use abort="), "{r}");
        assert!(r.problems[1].fix.contains("WASI"), "{r}");
        assert!(r.problems[2].fix.contains("gw.h defines memcpy"), "{r}");
        assert!(
            r.problems[3].fix.contains("gw.send_to_current_client"),
            "{r}"
        );
    }

    #[test]
    fn memory_problems_no_export_imported_too_large_and_64_bit() {
        let no_memory =
            module("", ON_MESSAGE).replace(r#"(memory (export "memory") 1)"#, "(memory 1)");
        assert_eq!(problems(&no_memory), ["no memory export `memory`"]);
        let imported = module("", ON_MESSAGE).replace(
            r#"(memory (export "memory") 1)"#,
            r#"(import "env" "memory" (memory 1)) (export "memory" (memory 0))"#,
        );
        assert_eq!(
            problems(&imported),
            ["the module imports its memory (env.memory)"]
        );
        let too_large = module("", ON_MESSAGE).replace(
            r#"(memory (export "memory") 1)"#,
            r#"(memory (export "memory") 1025)"#,
        );
        assert_eq!(
            problems(&too_large),
            ["the memory starts at 65600 KiB, above the worker's memory limit of 64 MiB: no instance can be created"]
        );
        // A declared maximum above the limit: a warning (growth stops at the limit).
        let max = module("", ON_MESSAGE).replace(
            r#"(memory (export "memory") 1)"#,
            r#"(memory (export "memory") 1 2048)"#,
        );
        let r = check(max.as_bytes(), LIMIT);
        assert!(r.is_ok(), "{r}");
        assert_eq!(
            r.warnings[0].problem,
            "the memory may grow to 128 MiB, above the worker's memory limit of 64 MiB"
        );
        let wide = module("", ON_MESSAGE).replace(
            r#"(memory (export "memory") 1)"#,
            r#"(memory (export "memory") i64 1)"#,
        );
        assert_eq!(problems(&wide), ["the memory is 64-bit (memory64)"]);
        let global = module("", ON_MESSAGE).replace(
            r#"(memory (export "memory") 1)"#,
            r#"(memory 1) (global (export "memory") i32 (i32.const 0))"#,
        );
        assert_eq!(problems(&global), ["the export `memory` is not a memory"]);
    }

    #[test]
    fn not_wasm_and_invalid_modules_are_problems() {
        assert!(problems("hello")[0].starts_with("not a wasm module"));
        assert!(check(b"\0asm\x01\0\0\0\x01", LIMIT).problems[0]
            .problem
            .starts_with("the module does not validate"));
    }

    #[test]
    fn a_module_without_events_gets_a_warning() {
        let r = check(module("", "").as_bytes(), LIMIT);
        assert!(r.is_ok(), "{r}");
        assert!(r.warnings[0].problem.contains("exports no event"), "{r}");
        assert_eq!(
            r.summary(),
            "gw ABI 1; no events; no imports; memory 64 KiB initial, no maximum"
        );
    }

    #[test]
    fn every_problem_is_listed_not_only_the_first() {
        let r = check(br#"(module (import "env" "f" (func)) (memory 1))"#, LIMIT);
        assert_eq!(r.problems.len(), 5, "{r}");
        assert!(refuse_problems(br#"(module (memory 1))"#, LIMIT)
            .unwrap_err()
            .contains("no memory export `memory` (fix: "));
    }
}
