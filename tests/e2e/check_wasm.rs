//! `gatewayworker check-wasm FILE` through the real binary: every bundled guest (in every
//! language) passes with a one-line summary (exit 0); broken modules get every problem with
//! its fix (exit 1); the worker's host refuses at load and reload what the check refuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gatewayworker::wasm::{HostConfig, LoadError, PluginSlot, WasmHost};

use crate::guest_fuel::Quiet;

fn check_wasm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gatewayworker"))
        .arg("check-wasm")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gw-check-wasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const BROKEN: &str = r#"(module
    (import "env" "abort" (func (param i32 i32 i32 i32)))
    (import "gw" "log" (func (param i32 i32)))
    (memory (export "memory") 1)
    (func (export "gw_abi_version") (result i32) (i32.const 2))
    (func (export "gw_free") (param i32 i32))
    (func (export "on_message") (param i32 i32 i32 i32 i32)))"#;

#[test]
fn every_bundled_guest_passes_with_a_one_line_summary() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-workers/dist");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dist).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let out = check_wasm(&[path.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {stdout}{}",
            path.display(),
            text(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stdout.starts_with(&format!("{}: ok: gw ABI 1; events ", path.display())),
            "{stdout}"
        );
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if name.starts_with("chat") {
            assert!(
                stdout.contains("on_message") && stdout.contains("on_close"),
                "{stdout}"
            );
        }
        if name == "echo_c" {
            assert!(
                stdout.contains("events on_message; imports send_to_current_client;"),
                "{stdout}"
            );
        }
        seen.push(name);
    }
    seen.sort();
    for want in [
        "chat", "chat_as", "chat_c", "echo", "echo_as", "echo_c", "probe",
    ] {
        assert!(
            seen.iter().any(|s| s == want),
            "{want} checked, saw {seen:?}"
        );
    }
}

#[test]
fn a_broken_module_gets_every_problem_with_its_fix_and_exit_1() {
    let path = scratch("broken.wat");
    std::fs::write(&path, BROKEN).unwrap();
    let out = check_wasm(&[path.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let problems: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("problem: "))
        .collect();
    assert_eq!(
        problems,
        [
            "import env.abort is not from module `gw`",
            "import gw.log has type (i32, i32) -> (); the host's is (i32, i32, i32) -> ()",
            "missing export `gw_alloc` (i32) -> (i32)",
            "gw_abi_version returns 2; this host speaks version 1",
        ],
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("  fix: ")).count(),
        4,
        "{stdout}"
    );
    assert!(
        stderr.contains("does not fit the gw ABI: 4 problem(s)"),
        "{stderr}"
    );
}

#[test]
fn the_memory_limit_flag_sets_what_the_module_must_start_within() {
    let path = scratch("big.wat");
    std::fs::write(
        &path,
        BROKEN
            .replace(r#"(import "env" "abort" (func (param i32 i32 i32 i32)))"#, "")
            .replace(r#"(import "gw" "log" (func (param i32 i32)))"#, "")
            .replace("(i32.const 2)", "(i32.const 1)")
            .replace(
                r#"(func (export "gw_free")"#,
                r#"(func (export "gw_alloc") (param i32) (result i32) (i32.const 8)) (func (export "gw_free")"#,
            )
            .replace(r#"(memory (export "memory") 1)"#, r#"(memory (export "memory") 32)"#),
    )
    .unwrap();
    let out = check_wasm(&[path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("memory 2 MiB initial, no maximum"));
    let out = check_wasm(&[path.to_str().unwrap(), "--memory-mib", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "problem: the memory starts at 2 MiB, above the worker's memory limit of 1 MiB"
        ),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_missing_file_or_argument_is_an_error() {
    let out = check_wasm(&["/nonexistent/x.wasm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("reading /nonexistent/x.wasm"),
        "{}",
        text(&out.stderr)
    );
    let out = check_wasm(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// The host runs the same check: a module that links but fails it is refused at load, and
/// a reload to it keeps the running module.
#[tokio::test]
async fn the_worker_refuses_at_load_and_reload_what_check_wasm_refuses() {
    let host = WasmHost::<Quiet>::new(HostConfig::deterministic()).expect("host");
    let v2 = r#"(module
        (memory (export "memory") 1)
        (func (export "gw_abi_version") (result i32) (i32.const 2))
        (func (export "gw_alloc") (param i32) (result i32) (i32.const 8))
        (func (export "gw_free") (param i32 i32))
        (func (export "on_message") (param i32 i32 i32 i32 i32)))"#;
    match host.compile(v2.as_bytes(), "v2") {
        Err(LoadError::Abi(text)) => {
            assert!(
                text.contains("gw_abi_version returns 2; this host speaks version 1 (fix: "),
                "{text}"
            )
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a constant ABI version 2 loads"),
    }
    let too_big = v2.replace("(i32.const 2)", "(i32.const 1)").replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 2100)"#,
    );
    assert!(
        matches!(host.compile(too_big.as_bytes(), "big"), Err(LoadError::Abi(t)) if t.contains("above the worker's memory limit"))
    );

    let live = scratch("live.wasm");
    std::fs::copy(crate::guests::example("echo", "_c"), &live).unwrap();
    let slot = PluginSlot::from_file(&host, &live).expect("echo_c loads");
    std::fs::write(&live, v2).unwrap();
    assert!(matches!(slot.reload().wait(), Err(LoadError::Abi(_))));
    assert_eq!(slot.generation(), 1, "the running module stays");
}

/// The check's list of host imports is what the host links: a module importing every one
/// of them, with the check's signatures, loads.
#[test]
fn the_checks_host_imports_are_what_the_host_links() {
    use gatewayworker::wasm::check::{Ty, HOST_IMPORTS};
    let list = |t: &[Ty]| {
        t.iter()
            .map(|t| if *t == Ty::I32 { "i32" } else { "i64" })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let imports: String = HOST_IMPORTS
        .iter()
        .map(|(name, (p, r))| {
            format!(
                r#"(import "gw" "{name}" (func (param {}) (result {})))"#,
                list(p),
                list(r)
            )
        })
        .collect();
    let module = format!(
        r#"(module {imports}
        (memory (export "memory") 1)
        (func (export "gw_abi_version") (result i32) (i32.const 1))
        (func (export "gw_alloc") (param i32) (result i32) (i32.const 8))
        (func (export "gw_free") (param i32 i32))
        (func (export "on_message") (param i32 i32 i32 i32 i32)))"#
    );
    let host = WasmHost::<Quiet>::new(HostConfig::deterministic()).expect("host");
    if let Err(e) = host.compile(module.as_bytes(), "all imports") {
        panic!("{e}");
    }
}
