//! Hot reload: a [`PluginSlot`] holds the module every instance of a worker should run,
//! with a generation number. A reload compiles the new module on its own thread (never on
//! the event path) and swaps it into the slot; each instance notices the new generation
//! before its next event and replaces itself between events, so no event is lost or run twice.
//!
//! Rollback: a swapped-in module that fails to start (its `on_worker_start` traps, or it
//! asks for another ABI version) before any instance ever started it is rolled back: the
//! slot goes back to the module it replaced (under a new generation number), and the
//! instance starts that one again for the event it was about to handle. Once a module has
//! started somewhere, later start failures are ordinary failures (retried at the next event).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::handler::ApiHandler;
use super::host::{LoadError, Plugin, WasmHost};

/// What identifies a version of the module file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

struct SlotInner<H: ApiHandler> {
    host: WasmHost<H>,
    path: Option<PathBuf>,
    current: Mutex<SlotState<H>>,
    stamp: Mutex<Option<FileStamp>>,
}

/// The slot's module and what a rollback needs.
struct SlotState<H: ApiHandler> {
    generation: u64,
    plugin: Plugin<H>,
    /// Some instance started the current module.
    proven: bool,
    /// The last module that started somewhere, kept for a rollback while the current one
    /// is not proven.
    previous: Option<Plugin<H>>,
}

/// The current module of a worker, shared by its instances (cheap to clone).
pub struct PluginSlot<H: ApiHandler> {
    inner: Arc<SlotInner<H>>,
}

impl<H: ApiHandler> Clone for PluginSlot<H> {
    fn clone(&self) -> Self {
        PluginSlot {
            inner: self.inner.clone(),
        }
    }
}

/// A reload in progress; [`ReloadHandle::wait`] gives the new generation or the error
/// (on error the slot keeps the previous module).
pub struct ReloadHandle(JoinHandle<Result<u64, LoadError>>);

impl ReloadHandle {
    /// Blocks until the compile finished and the slot was updated.
    pub fn wait(self) -> Result<u64, LoadError> {
        self.0.join().expect("reload thread panicked")
    }

    /// True once the reload has finished (successfully or not).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<H: ApiHandler> PluginSlot<H> {
    /// A slot holding `plugin` (generation 1), not tied to a file.
    pub fn new(host: &WasmHost<H>, plugin: Plugin<H>) -> PluginSlot<H> {
        Self::build(host, None, plugin, None)
    }

    /// Compiles the module at `path` now and watches that path for [`Self::reload`].
    pub fn from_file(host: &WasmHost<H>, path: &Path) -> Result<PluginSlot<H>, LoadError> {
        let stamp = stamp_of(path);
        let plugin = host.load_file(path)?;
        Ok(Self::build(host, Some(path.to_path_buf()), plugin, stamp))
    }

    fn build(
        host: &WasmHost<H>,
        path: Option<PathBuf>,
        plugin: Plugin<H>,
        stamp: Option<FileStamp>,
    ) -> PluginSlot<H> {
        PluginSlot {
            inner: Arc::new(SlotInner {
                host: host.clone(),
                path,
                current: Mutex::new(SlotState {
                    generation: 1,
                    plugin,
                    proven: false,
                    previous: None,
                }),
                stamp: Mutex::new(stamp),
            }),
        }
    }

    /// The generation of the current module (starts at 1, +1 per swap).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The current module and its generation.
    pub fn current(&self) -> (u64, Plugin<H>) {
        let guard = self.lock();
        (guard.generation, guard.plugin.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<H>> {
        // Every update is finished before the guard drops, and none of them can panic
        // halfway, so a poisoned lock still holds a consistent state.
        self.inner.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Swaps in an already compiled module; returns its generation.
    pub fn replace(&self, plugin: Plugin<H>) -> u64 {
        let mut guard = self.lock();
        let old = std::mem::replace(&mut guard.plugin, plugin);
        // Keep the last module known to start: a module replaced before it ever started
        // is no better a fallback than the new one.
        if guard.proven {
            guard.previous = Some(old);
        }
        guard.generation += 1;
        guard.proven = false;
        tracing::info!(source = %guard.plugin.source, generation = guard.generation, "wasm module swapped in");
        guard.generation
    }

    /// An instance started `generation`: from now on it is the module to roll back to.
    pub fn started(&self, generation: u64) {
        let mut guard = self.lock();
        if guard.generation == generation && !guard.proven {
            guard.proven = true;
            guard.previous = None;
        }
    }

    /// An instance failed to start `generation`. If that is the current module, no instance
    /// ever started it and a module to roll back to exists, the slot goes back to that
    /// module (under a new generation) and this returns true: start again.
    pub fn start_failed(&self, generation: u64) -> bool {
        let mut guard = self.lock();
        if guard.generation != generation || guard.proven {
            return false;
        }
        let Some(previous) = guard.previous.take() else {
            return false;
        };
        let failed = std::mem::replace(&mut guard.plugin, previous);
        guard.generation += 1;
        guard.proven = true;
        tracing::error!(
            failed = %failed.source,
            restored = %guard.plugin.source,
            generation = guard.generation,
            "reloaded wasm module failed to start; rolled back to the previous module"
        );
        true
    }

    /// Recompiles the slot's file on a background thread and swaps it in when it compiles.
    /// A slot without a file reloads nothing (the handle reports the current generation).
    pub fn reload(&self) -> ReloadHandle {
        let slot = self.clone();
        let handle = std::thread::Builder::new()
            .name("wasm-reload".into())
            .spawn(move || slot.reload_now())
            .expect("spawning the wasm reload thread");
        ReloadHandle(handle)
    }

    fn reload_now(&self) -> Result<u64, LoadError> {
        let Some(path) = self.inner.path.as_deref() else {
            return Ok(self.generation());
        };
        let stamp = stamp_of(path);
        match self.inner.host.load_file(path) {
            Ok(plugin) => {
                *self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner()) = stamp;
                Ok(self.replace(plugin))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "wasm reload failed; keeping the running module");
                Err(e)
            }
        }
    }

    /// Starts a [`Self::reload`] when the file's size or modification time changed since
    /// the last load. Replace files atomically (write elsewhere, then rename): a half-written
    /// file fails to compile and is retried at the next change.
    pub fn reload_if_changed(&self) -> Option<ReloadHandle> {
        let path = self.inner.path.as_deref()?;
        let now = stamp_of(path)?;
        let mut known = self.inner.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *known == Some(now) {
            return None;
        }
        // Remember the stamp now, so a file that fails to compile is not retried every poll.
        *known = Some(now);
        drop(known);
        Some(self.reload())
    }

    /// Polls the file every `interval` on a thread of its own and reloads on change.
    pub fn watch(&self, interval: Duration) -> FileWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (slot, flag) = (self.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("wasm-watch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    if let Some(reload) = slot.reload_if_changed() {
                        let _ = reload.wait();
                    }
                }
            })
            .expect("spawning the wasm watcher thread");
        FileWatcher {
            stop,
            thread: Some(thread),
        }
    }
}

/// A running file watcher; dropping it stops the thread.
pub struct FileWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for FileWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
