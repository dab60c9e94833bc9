//! The engine side: one [`WasmHost`] per process (Engine, Linker with the `gw` imports,
//! epoch ticker) and [`Plugin`]s, modules compiled once and pre-linked for fast
//! instantiation.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ValType,
};

use super::config::HostConfig;
use super::handler::ApiHandler;
use super::imports;
use super::store::StoreData;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// wasmtime refused the module (invalid wasm, unsupported feature).
    #[error("compiling module: {0:#}")]
    Compile(wasmtime::Error),
    /// The module imports something the host does not offer.
    #[error("linking module: {0:#}")]
    Link(wasmtime::Error),
    /// A required export is missing or has the wrong type.
    #[error("module does not implement the gw ABI: {0}")]
    Abi(String),
}

/// Why the host could not be built.
#[derive(Debug, thiserror::Error)]
#[error("wasm host setup: {0:#}")]
pub struct HostError(wasmtime::Error);

struct HostInner<H: ApiHandler> {
    engine: Engine,
    linker: Linker<StoreData<H>>,
    config: HostConfig,
    ticker_stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl<H: ApiHandler> Drop for HostInner<H> {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The shared, immutable half of the wasm runtime: build once, clone freely (an `Arc`).
pub struct WasmHost<H: ApiHandler> {
    inner: Arc<HostInner<H>>,
}

impl<H: ApiHandler> Clone for WasmHost<H> {
    fn clone(&self) -> Self {
        WasmHost {
            inner: self.inner.clone(),
        }
    }
}

/// A compiled, pre-linked module, ready to instantiate (cheap to clone).
pub struct Plugin<H: ApiHandler> {
    pub(crate) pre: InstancePre<StoreData<H>>,
    /// Where the module came from (file path or a caller's label), for logs.
    pub source: Arc<str>,
}

impl<H: ApiHandler> Clone for Plugin<H> {
    fn clone(&self) -> Self {
        Plugin {
            pre: self.pre.clone(),
            source: self.source.clone(),
        }
    }
}

impl<H: ApiHandler> WasmHost<H> {
    /// Builds the engine (fuel on; epochs only with a deadline; pooling if asked) and the
    /// linker with every `gw` import.
    pub fn new(config: HostConfig) -> Result<WasmHost<H>, HostError> {
        let mut wasm = Config::new();
        wasm.consume_fuel(true);
        wasm.epoch_interruption(config.epoch_deadline.is_some());
        if let Some(n) = config.pooling_instances_max {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(n)
                .total_memories(n)
                .total_tables(n)
                .total_stacks(n)
                .max_memory_size(config.memory_size_max)
                .table_elements(config.table_elements_max);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(HostError)?;
        let mut linker = Linker::new(&engine);
        imports::define(&mut linker).map_err(HostError)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker = config
            .epoch_deadline
            .map(|_| spawn_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone()));
        Ok(WasmHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                config,
                ticker_stop,
                ticker,
            }),
        })
    }

    /// The configuration the host was built with.
    pub fn config(&self) -> &HostConfig {
        &self.inner.config
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles `bytes` (wasm, or WAT text), checks the ABI exports, pre-links the imports.
    /// Slow (milliseconds to seconds): call it off the event path.
    pub fn compile(&self, bytes: &[u8], source: &str) -> Result<Plugin<H>, LoadError> {
        let module = Module::new(&self.inner.engine, bytes).map_err(LoadError::Compile)?;
        check_exports(&module)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(LoadError::Link)?;
        // The ABI check of `gatewayworker check-wasm` (memory, version, signatures).
        super::check::refuse_problems(bytes, self.inner.config.memory_size_max as u64)
            .map_err(LoadError::Abi)?;
        Ok(Plugin {
            pre,
            source: source.into(),
        })
    }

    /// Reads and compiles the module at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Plugin<H>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.compile(&bytes, &path.display().to_string())
    }
}

fn spawn_ticker(
    engine: Engine,
    tick: std::time::Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch ticker thread")
}

/// The exports every module must have, with their types (ABI.md 5).
fn check_exports(module: &Module) -> Result<(), LoadError> {
    use ValType::I32;
    let func = |name: &str, params: &[ValType], results: &[ValType], required: bool| match module
        .get_export(name)
    {
        None if required => Err(LoadError::Abi(format!("missing export `{name}`"))),
        None => Ok(()),
        Some(ExternType::Func(f)) => {
            let p: Vec<_> = f.params().collect();
            let r: Vec<_> = f.results().collect();
            let same = |a: &[ValType], b: &[ValType]| {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| ValType::eq(x, y))
            };
            if same(&p, params) && same(&r, results) {
                Ok(())
            } else {
                Err(LoadError::Abi(format!(
                    "export `{name}` has the wrong type"
                )))
            }
        }
        Some(_) => Err(LoadError::Abi(format!("export `{name}` is not a function"))),
    };
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err(LoadError::Abi("missing memory export `memory`".into())),
    }
    func("gw_abi_version", &[], &[I32], true)?;
    func("gw_alloc", &[I32], &[I32], true)?;
    func("gw_free", &[I32, I32], &[], true)?;
    func("on_worker_start", &[], &[], false)?;
    func("on_worker_stop", &[], &[], false)?;
    func("on_connect", &[I32, I32], &[], false)?;
    func("on_close", &[I32, I32], &[], false)?;
    func("on_message", &[I32, I32, I32, I32, I32], &[], false)?;
    func("on_websocket_connect", &[I32, I32, I32, I32], &[], false)?;
    Ok(())
}
