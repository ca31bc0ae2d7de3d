//! The [`Sandbox`]: one wasmtime engine and two linkers for the life of the process, a compiled
//! plugin cache (in memory and on disk), and [`Sandbox::run`], which runs one try in a fresh store.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sandflow_sdk::TaskResult;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};
use wasmtime::component::{self, ResourceTable};
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Module, OptLevel, PoolingAllocationConfig,
    Precompiled, Store, Trap, WasmBacktrace,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::egress::Egress;
use crate::grants::{self, VirtualClock};

use crate::limits::Limiter;
use crate::operator::{self, OperatorHost, OperatorPre, SharedProgress};
use crate::pipes::{CappedPipe, OutputLimitExceeded, WhenFull};
use crate::plugin::{encoding, Encoding};
use crate::{
    Caps, Limits, Outcome, PluginError, PluginId, PluginInfo, PluginKind, SandboxError, TryGrants, TryReport,
    MAX_PLUGIN_BYTES,
};

/// How the sandbox is set up; one per process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled plugins are cached (a subdirectory per engine fingerprint). `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// Count fuel. Off only for benchmarks: without it a runaway loop stops only at its deadline.
    pub fuel_metering: bool,
    /// Use wasmtime's pooling allocator (about twice as fast to instantiate); falls back to on-demand
    /// allocation when the address space cannot be reserved.
    pub pooling: bool,
    /// Tries running at once; more wait for a slot. Also sizes the pool.
    pub max_concurrent_tries: u32,
    /// Server-wide caps; the pool's memory slots are sized to the memory cap.
    pub caps: Caps,
    /// How often running tries yield to the async runtime and check kill and deadline.
    pub epoch_tick: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: None,
            fuel_metering: true,
            pooling: true,
            max_concurrent_tries: 128,
            caps: Caps::default(),
            // 5 ms: kills and deadlines land within a few milliseconds, at a negligible cost per tick.
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// Where a plugin's compiled code came from when it was loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    /// Compiled from the wasm bytes just now (and written to the disk cache).
    Compiled,
    /// Loaded from this machine's disk cache, without compiling.
    DiskCache,
}

/// A plugin ready to run: compiled, linked and pre-instantiated.
pub struct Plugin {
    /// What it is.
    pub info: PluginInfo,
    /// Where its code came from.
    pub source: CodeSource,
    pre: Pre,
}

enum Pre {
    Core(InstancePre<P1Host>),
    Component(CommandPre<P2Host>),
    Operator(OperatorPre<P2Host>),
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).field("source", &self.source).finish_non_exhaustive()
    }
}

/// Stops a running try from outside. Cheap to clone; all clones stop the same try.
#[derive(Debug, Clone, Default)]
pub struct KillSwitch(CancellationToken);

impl KillSwitch {
    /// A switch that is not yet thrown.
    pub fn new() -> Self {
        KillSwitch::default()
    }
    /// Stops the try: it ends promptly with [`Outcome::Killed`].
    pub fn kill(&self) {
        self.0.cancel();
    }
    /// Whether [`KillSwitch::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.0.is_cancelled()
    }
    /// Returns once [`KillSwitch::kill`] is called (at once if it was).
    pub async fn killed(&self) {
        self.0.cancelled().await;
    }
}

/// The log of a running try, and the progress a v2 plugin reports, readable while it runs (for a
/// live view). Cheap to clone; all clones see the same try. Empty until the try starts.
#[derive(Debug, Clone, Default)]
pub struct LiveLog {
    pipe: Arc<std::sync::Mutex<Option<CappedPipe>>>,
    progress: SharedProgress,
}

impl LiveLog {
    /// A log to attach to one try.
    pub fn new() -> Self {
        LiveLog::default()
    }

    /// What the try has written to its log so far (timestamped lines, capped as the final log
    /// is, without its truncation marker); `None` before it starts.
    pub fn so_far(&self) -> Option<String> {
        let pipe = self.pipe.lock().unwrap_or_else(|p| p.into_inner());
        pipe.as_ref().map(|p| String::from_utf8_lossy(&p.contents()).into_owned())
    }

    /// The latest progress the try reported (`host.progress`, ABI v2); `None` if it reported none.
    pub fn progress(&self) -> Option<operator::Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn attach(&self, pipe: CappedPipe) {
        *self.pipe.lock().unwrap_or_else(|p| p.into_inner()) = Some(pipe);
    }
}

struct P1Host {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    /// The try's clocks, moved on by the plugin's sleeps.
    clock: VirtualClock,
}

struct P2Host {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// What the `sandflow:operator/host` imports reach (ABI v2; unused by commands).
    operator: OperatorHost,
    http: WasiHttpCtx,
    egress: Egress,
    /// The try's clocks, moved on by the plugin's sleeps.
    clock: VirtualClock,
}

impl WasiView for P2Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

impl crate::clocks::P1Clock for P1Host {
    fn clock(&self) -> &VirtualClock {
        &self.clock
    }
}

impl crate::clocks::P2Clock for P2Host {
    fn clock_and_table(&mut self) -> (&VirtualClock, &mut ResourceTable) {
        (&self.clock, &mut self.table)
    }
}

impl WasiHttpView for P2Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.egress }
    }
}

/// Runs task tries as WASI plugins. Cheap to clone; clones share the engine and caches.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    fingerprint: String,
    fuel_metering: bool,
    p1_linker: wasmtime::Linker<P1Host>,
    /// WASI 0.2 and `sandflow:operator/host`: for commands (ABI v1) and operators (ABI v2).
    p2_linker: component::Linker<P2Host>,
    code_dir: Option<PathBuf>,
    loaded: Mutex<HashMap<PluginId, Arc<Plugin>>>,
    slots: Semaphore,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("fingerprint", &self.inner.fingerprint).finish_non_exhaustive()
    }
}

fn engine_config(config: &SandboxConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.consume_fuel(config.fuel_metering);
    c.epoch_interruption(true);
    c.cranelift_opt_level(OptLevel::Speed);
    if pooling {
        let n = config.max_concurrent_tries.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust preview2 component is about four core instances, two memories and four tables.
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 4)
            .total_tables(n * 8)
            .total_stacks(n)
            .table_elements(50_000)
            .max_memory_size(usize::try_from(config.caps.0.memory_bytes).unwrap_or(usize::MAX));
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

fn fingerprint(engine: &Engine) -> String {
    // SipHash with fixed keys: the same engine build and config give the same name in every process.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Replaces wasmtime-wasi's `proc_exit`, which refuses a status of 126 or more as an error of its own
/// (so AssemblyScript's `abort`, exit 255, read as a host error). Any status a plugin asks for is its
/// exit code; the u32 status is read as an `i32`, as wasmtime-wasi does below 126.
fn define_proc_exit(linker: &mut wasmtime::Linker<P1Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "proc_exit", |status: i32| -> wasmtime::Result<()> {
        Err(I32Exit(status).into())
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Bytes in a wasm page. Custom page sizes are rare: the initial memory a plugin reports counts
/// pages of 64 KiB.
const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// The initial size in bytes of the largest linear memory that `resources` asks for.
fn largest_initial_memory(resources: Option<wasmtime::ResourcesRequired>) -> u64 {
    let pages = resources.and_then(|r| r.max_initial_memory_size).unwrap_or(0);
    pages.saturating_mul(WASM_PAGE_BYTES)
}

fn engine_error(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Engine(e.to_string())
}

impl Sandbox {
    /// Builds the engine and linkers and starts the epoch ticker.
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let engine = match Engine::new(&engine_config(&config, config.pooling)) {
            Ok(engine) => engine,
            Err(e) if config.pooling => {
                warn!("pooling allocator unavailable ({e:#}); falling back to on-demand allocation");
                Engine::new(&engine_config(&config, false)).map_err(engine_error)?
            }
            Err(e) => return Err(engine_error(e)),
        };
        let fingerprint = fingerprint(&engine);

        let mut p1_linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1_linker, |host: &mut P1Host| &mut host.wasi)
            .map_err(engine_error)?;
        define_proc_exit(&mut p1_linker).map_err(engine_error)?;
        crate::clocks::define_poll_oneoff(&mut p1_linker).map_err(engine_error)?;
        let mut p2_linker = component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2_linker).map_err(engine_error)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut p2_linker).map_err(engine_error)?;
        crate::clocks::define_subscribe(&mut p2_linker).map_err(engine_error)?;
        operator::Operator::add_to_linker::<P2Host, component::HasSelf<OperatorHost>>(&mut p2_linker, |host| {
            &mut host.operator
        })
        .map_err(engine_error)?;

        let code_dir = match &config.cache_dir {
            Some(dir) => {
                let dir = dir.join(&fingerprint);
                std::fs::create_dir_all(&dir).map_err(|source| SandboxError::Io { path: dir.clone(), source })?;
                Some(dir)
            }
            None => None,
        };

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), config.epoch_tick, ticker_stop.clone());

        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                fingerprint,
                fuel_metering: config.fuel_metering,
                p1_linker,
                p2_linker,
                code_dir,
                loaded: Mutex::new(HashMap::new()),
                slots: Semaphore::new(config.max_concurrent_tries.max(1) as usize),
                ticker_stop,
            }),
        })
    }

    /// The engine's fingerprint: compiled code is cached under it, so a changed engine recompiles.
    pub fn fingerprint(&self) -> &str {
        &self.inner.fingerprint
    }

    /// Checks that `bytes` are a plugin this host can run, and says what it is.
    pub fn check(&self, bytes: &[u8]) -> Result<PluginInfo, PluginError> {
        Ok(self.load(bytes)?.info.clone())
    }

    /// Compiles (or fetches from the caches) and links a plugin. CPU-heavy on a cache miss: from async
    /// code, call it in `spawn_blocking`.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<Plugin>, PluginError> {
        let size = bytes.len() as u64;
        if size > MAX_PLUGIN_BYTES {
            return Err(PluginError::TooLarge { size, limit: MAX_PLUGIN_BYTES });
        }
        let id = PluginId::of(bytes);
        if let Some(plugin) = self.lock_loaded().get(&id) {
            return Ok(plugin.clone());
        }
        let plugin = Arc::new(self.load_uncached(id.clone(), bytes)?);
        self.lock_loaded().insert(id, plugin.clone());
        Ok(plugin)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<PluginId, Arc<Plugin>>> {
        self.inner.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load_uncached(&self, id: PluginId, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let engine = &self.inner.engine;
        let encoding = encoding(bytes)?;
        let cached = self.inner.code_dir.as_ref().map(|dir| dir.join(format!("{}.cwasm", id.hex())));
        let from_disk = cached.as_ref().filter(|path| {
            matches!(
                (Engine::detect_precompiled_file(path), encoding),
                (Ok(Some(Precompiled::Module)), Encoding::Module)
                    | (Ok(Some(Precompiled::Component)), Encoding::Component)
            )
        });
        let size = bytes.len() as u64;
        let mut source = CodeSource::Compiled;
        let (pre, imports, exports, kind, initial_memory_bytes) = match encoding {
            Encoding::Module => {
                let module = match from_disk {
                    // SAFETY: files in the code directory are written only by `cache_code` below, from
                    // code this engine compiled, under this engine's fingerprint.
                    Some(path) => match unsafe { Module::deserialize_file(engine, path) } {
                        Ok(module) => {
                            source = CodeSource::DiskCache;
                            module
                        }
                        Err(e) => {
                            warn!("ignoring unreadable compiled code {}: {e:#}", path.display());
                            Module::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?
                        }
                    },
                    None => Module::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?,
                };
                let start = module.get_export("_start");
                match start {
                    Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
                    Some(_) => {
                        return Err(PluginError::UnsupportedKind(
                            "`_start` is not a function of no arguments and no results".into(),
                        ))
                    }
                    None => {
                        return Err(PluginError::UnsupportedKind(
                            "a core module without a `_start` export is not a WASI command (a reactor or library?)"
                                .into(),
                        ))
                    }
                }
                let imports = module
                    .imports()
                    .map(|i| format!("{}::{} ({})", i.module(), i.name(), extern_kind(&i.ty())))
                    .collect();
                let exports = module.exports().map(|e| format!("{} ({})", e.name(), extern_kind(&e.ty()))).collect();
                let pre = self
                    .inner
                    .p1_linker
                    .instantiate_pre(&module)
                    .map_err(|e| PluginError::UnknownImport(format!("{e:#}")))?;
                if source == CodeSource::Compiled {
                    self.cache_code(cached.as_ref(), module.serialize());
                }
                let initial = largest_initial_memory(Some(module.resources_required()));
                (Pre::Core(pre), imports, exports, PluginKind::P1Command, initial)
            }
            Encoding::Component => {
                let component = match from_disk {
                    // SAFETY: as for modules above.
                    Some(path) => match unsafe { component::Component::deserialize_file(engine, path) } {
                        Ok(component) => {
                            source = CodeSource::DiskCache;
                            component
                        }
                        Err(e) => {
                            warn!("ignoring unreadable compiled code {}: {e:#}", path.display());
                            component::Component::new(engine, bytes)
                                .map_err(|e| PluginError::Invalid(format!("{e:#}")))?
                        }
                    },
                    None => {
                        component::Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?
                    }
                };
                let ty = component.component_type();
                let imports = ty.imports(engine).map(|(name, _)| name.to_string()).collect();
                let exports = ty.exports(engine).map(|(name, _)| name.to_string()).collect::<Vec<_>>();
                let pre = self
                    .inner
                    .p2_linker
                    .instantiate_pre(&component)
                    .map_err(|e| PluginError::UnknownImport(format!("{e:#}")))?;
                // An operator (ABI v2) exports `run` at the top; a command (ABI v1) the wasi:cli/run
                // interface.
                let (pre, kind) = if exports.iter().any(|name| name == "run") {
                    let pre = OperatorPre::new(pre).map_err(|e| {
                        PluginError::UnsupportedKind(format!(
                            "a component exporting `run` is not a {} operator ({e:#})",
                            operator::OPERATOR_WORLD
                        ))
                    })?;
                    (Pre::Operator(pre), PluginKind::V2Operator)
                } else {
                    let pre = CommandPre::new(pre).map_err(|e| {
                        PluginError::UnsupportedKind(format!(
                            "a component that exports neither `run` ({} operator, ABI v2) nor \
                             wasi:cli/run (a wasi:cli/command, ABI v1) ({e:#})",
                            operator::OPERATOR_WORLD
                        ))
                    })?;
                    (Pre::Component(pre), PluginKind::P2Command)
                };
                if source == CodeSource::Compiled {
                    self.cache_code(cached.as_ref(), component.serialize());
                }
                let initial = largest_initial_memory(component.resources_required());
                (pre, imports, exports, kind, initial)
            }
        };
        debug!(plugin = %id, ?source, "plugin loaded");
        Ok(Plugin { info: PluginInfo { id, kind, size, imports, exports, initial_memory_bytes }, source, pre })
    }

    fn cache_code(&self, path: Option<&PathBuf>, code: wasmtime::Result<Vec<u8>>) {
        let Some(path) = path else { return };
        // A cache that cannot be written costs a compile next time, nothing more.
        match code {
            Ok(code) => {
                if let Err(e) = write_atomically(path, &code) {
                    warn!("could not cache compiled code at {}: {e}", path.display());
                }
            }
            Err(e) => warn!("could not serialise compiled code: {e:#}"),
        }
    }

    /// Runs one try of `plugin` with `input` on stdin, under `limits`, until it ends or `kill` is
    /// thrown. Never fails: every way a try can end is an [`Outcome`].
    pub async fn run(&self, plugin: &Plugin, input: &[u8], limits: &Limits, kill: &KillSwitch) -> TryReport {
        self.run_live(plugin, input, limits, kill, &LiveLog::new()).await
    }

    /// [`Sandbox::run`], with the try's log readable through `live` while it runs: [`Sandbox::run_granted`]
    /// with no grants (and a fresh [`crate::Determinism`]).
    pub async fn run_live(
        &self,
        plugin: &Plugin,
        input: &[u8],
        limits: &Limits,
        kill: &KillSwitch,
        live: &LiveLog,
    ) -> TryReport {
        self.run_granted(plugin, input, limits, &TryGrants::default(), kill, live).await
    }

    /// Runs one try with what `grants` allows beyond its stdio (`/out`, read-only directories, the
    /// environment, HTTP egress) and with their [`crate::Determinism`], its log readable through
    /// `live` while it runs. Never fails: a grant that cannot be given (a directory that does not
    /// exist) ends the try as [`Outcome::HostError`] naming it.
    #[instrument(skip_all, fields(plugin = %plugin.info.id.short()))]
    pub async fn run_granted(
        &self,
        plugin: &Plugin,
        input: &[u8],
        limits: &Limits,
        grants: &TryGrants,
        kill: &KillSwitch,
        live: &LiveLog,
    ) -> TryReport {
        let report = |outcome, log: String| TryReport {
            plugin: plugin.info.id.clone(),
            outcome,
            log,
            fuel_used: 0,
            peak_memory_bytes: 0,
            wall_time: Duration::ZERO,
            progress: None,
            determinism: grants.determinism,
            http: None,
            out_bytes: 0,
        };
        let _slot = tokio::select! {
            biased;
            () = kill.0.cancelled() => return report(Outcome::Killed, String::new()),
            slot = self.inner.slots.acquire() => match slot {
                Ok(slot) => slot,
                Err(e) => return report(Outcome::HostError { message: e.to_string() }, String::new()),
            },
        };

        let started = Instant::now();
        let stdout = CappedPipe::new(usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX), WhenFull::Fail);
        let stderr = CappedPipe::new(usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX), WhenFull::Truncate)
            .timestamped();
        live.attach(stderr.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(Bytes::copy_from_slice(input)))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Err(message) = grants::apply_dirs(grants, &mut wasi) {
            return report(Outcome::HostError { message }, String::new());
        }
        let clock = grants.determinism.apply(&mut wasi);
        let egress = Egress::new(grants.http.clone(), stderr.clone());
        let out = grants.out.as_ref().map(|out| (out.host.clone(), out.quota_bytes));
        let limiter = Limiter::new(limits.memory_bytes);
        let engine = &self.inner.engine;

        let operator_host = |log: &CappedPipe| OperatorHost {
            log: log.clone(),
            progress: live.progress.clone(),
            metrics: Default::default(),
        };
        let (ended, fuel_left, limiter, sent_metrics) = match &plugin.pre {
            Pre::Core(pre) => {
                let host = P1Host { wasi: wasi.build_p1(), limiter, clock: clock.clone() };
                let mut store = Store::new(engine, host);
                store.limiter(|host| &mut host.limiter);
                self.prepare(&mut store, limits);
                let call = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    store.data_mut().limiter.started();
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    start.call_async(&mut store, ()).await?;
                    Ok(Finish::Exited)
                };
                let ended = guard(call, kill, limits.timeout, out.clone()).await;
                let fuel_left = store.get_fuel().ok();
                (ended, fuel_left, store.into_data().limiter, Default::default())
            }
            Pre::Component(pre) => {
                let mut store = self.component_store(
                    &mut wasi,
                    limiter,
                    operator_host(&stderr),
                    egress.clone(),
                    clock.clone(),
                    limits,
                );
                let call = async {
                    let command = pre.instantiate_async(&mut store).await?;
                    store.data_mut().limiter.started();
                    match command.wasi_cli_run().call_run(&mut store).await? {
                        Ok(()) => Ok(Finish::Exited),
                        // wasi:cli/run 0.2 reports failure without a code: it reads as exit code 1.
                        Err(()) => Err(I32Exit(1).into()),
                    }
                };
                let ended = guard(call, kill, limits.timeout, out.clone()).await;
                let fuel_left = store.get_fuel().ok();
                (ended, fuel_left, store.into_data().limiter, Default::default())
            }
            Pre::Operator(pre) => {
                let context = match operator::context_from_json(input) {
                    Ok(context) => context,
                    Err(message) => return report(Outcome::HostError { message }, String::new()),
                };
                // An operator's result is what `run` returns: what it prints on stdout is log.
                wasi.stdout(stderr.clone());
                let mut store = self.component_store(
                    &mut wasi,
                    limiter,
                    operator_host(&stderr),
                    egress.clone(),
                    clock.clone(),
                    limits,
                );
                let call = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    store.data_mut().limiter.started();
                    match instance.call_run(&mut store, &context).await {
                        Ok(returned) => Ok(Finish::Returned(returned)),
                        // An operator must return: exiting, even with 0, leaves no result.
                        Err(e) if matches!(e.downcast_ref::<I32Exit>(), Some(I32Exit(0))) => Ok(Finish::ExitedEarly),
                        Err(e) => Err(e),
                    }
                };
                let ended = guard(call, kill, limits.timeout, out.clone()).await;
                let fuel_left = store.get_fuel().ok();
                let host = store.into_data();
                (ended, fuel_left, host.limiter, host.operator.metrics)
            }
        };

        let mut log = String::from_utf8_lossy(&stderr.contents()).into_owned();
        let dropped = stderr.dropped();
        if dropped > 0 {
            host_line(
                &mut log,
                &format!(
                    "[sandflow] log truncated: {dropped} more bytes dropped past the limit of {}",
                    crate::human_bytes(limits.max_log_bytes)
                ),
            );
        }
        let out_usage = out.as_ref().map(|(dir, _)| grants::usage(dir)).unwrap_or_default();
        let ended = match (&out, ended) {
            // Once more at the end: a try that wrote past its quota between two checks fails too.
            (Some((_, quota)), Ended::Finished(_)) if out_usage.charged() > *quota => Ended::OutQuota,
            (_, ended) => ended,
        };
        if let (Ended::OutQuota, Some((_, quota))) = (&ended, &out) {
            host_line(
                &mut log,
                &format!(
                    "[sandflow] stopped: /out holds {} in {} entries, over its quota of {}",
                    crate::human_bytes(out_usage.bytes),
                    out_usage.entries,
                    crate::human_bytes(*quota)
                ),
            );
        }
        let outcome = classify(ended, &stdout, sent_metrics, &limiter, limits, out.as_ref().map(|o| o.1), &mut log);
        let fuel_used = match fuel_left {
            Some(left) if self.inner.fuel_metering => limits.fuel.saturating_sub(left),
            _ => 0,
        };
        debug!(outcome = outcome.name(), fuel_used, "try ended");
        TryReport {
            plugin: plugin.info.id.clone(),
            outcome,
            log,
            fuel_used,
            peak_memory_bytes: limiter.peak as u64,
            wall_time: started.elapsed(),
            progress: live.progress(),
            determinism: grants.determinism,
            http: egress.report(),
            out_bytes: out_usage.bytes,
        }
    }

    /// A store for one try of a component (command or operator), its limits set.
    fn component_store(
        &self,
        wasi: &mut WasiCtxBuilder,
        limiter: Limiter,
        operator: OperatorHost,
        egress: Egress,
        clock: VirtualClock,
        limits: &Limits,
    ) -> Store<P2Host> {
        let host = P2Host {
            ctx: wasi.build(),
            table: ResourceTable::new(),
            limiter,
            operator,
            http: WasiHttpCtx::new(),
            egress,
            clock,
        };
        let mut store = Store::new(&self.inner.engine, host);
        store.limiter(|host| &mut host.limiter);
        self.prepare(&mut store, limits);
        store
    }

    fn prepare<T>(&self, store: &mut Store<T>, limits: &Limits) {
        if self.inner.fuel_metering {
            store.set_fuel(limits.fuel).expect("fuel metering is on");
        }
        // Yield to the runtime at every tick: other tasks run, and the guard can stop the try.
        store.set_epoch_deadline(1);
        store.epoch_deadline_async_yield_and_update(1);
    }
}

fn spawn_ticker(engine: Engine, tick: Duration, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("sandflow-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// How the call ended, before it is read as an [`Outcome`].
enum Ended {
    Finished(wasmtime::Result<Finish>),
    TimedOut,
    Killed,
    /// `/out` went over its quota.
    OutQuota,
}

/// How a call that ran to its end ended.
enum Finish {
    /// A command returned or exited with code 0: its result is on stdout (ABI v1).
    Exited,
    /// An operator's `run` returned (ABI v2).
    Returned(Result<operator::wit::TaskResult, operator::wit::TaskError>),
    /// An operator exited with code 0 instead of returning from `run`.
    ExitedEarly,
}

/// Runs `call` until it ends, the deadline passes, the kill switch is thrown or `/out` (its
/// directory and quota) goes over its quota. Dropping the call's future cancels the wasm at its
/// next yield (each epoch tick) or host call.
async fn guard(
    call: impl std::future::Future<Output = wasmtime::Result<Finish>>,
    kill: &KillSwitch,
    timeout: Duration,
    out: Option<(PathBuf, u64)>,
) -> Ended {
    let quota = async {
        match out {
            Some((dir, quota)) => grants::quota_exceeded(dir, quota).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        () = kill.0.cancelled() => Ended::Killed,
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
        () = quota => Ended::OutQuota,
        result = call => Ended::Finished(result),
    }
}

fn classify(
    ended: Ended,
    stdout: &CappedPipe,
    sent_metrics: std::collections::BTreeMap<String, f64>,
    limiter: &Limiter,
    limits: &Limits,
    out_quota: Option<u64>,
    log: &mut String,
) -> Outcome {
    let error = match ended {
        Ended::Killed => return Outcome::Killed,
        Ended::TimedOut => return Outcome::Timeout { limit: limits.timeout },
        Ended::OutQuota => return Outcome::OutQuotaExceeded { limit_bytes: out_quota.unwrap_or(0) },
        Ended::Finished(Ok(finish)) => Ok(finish),
        Ended::Finished(Err(e)) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => Ok(Finish::Exited),
            _ => Err(e),
        },
    };
    if stdout.dropped() > 0 {
        return Outcome::OutputTooLarge { limit_bytes: limits.max_output_bytes };
    }
    let error = match error {
        Ok(Finish::Exited) => {
            return match TaskResult::parse(&stdout.contents()) {
                Ok(result) => Outcome::Success { result },
                Err(e) => Outcome::InvalidResult { reason: e.to_string() },
            }
        }
        Ok(Finish::Returned(Ok(result))) => {
            // The same cap as a command's stdout, on the output's JSON text.
            if result.output.as_ref().is_some_and(|o| o.len() as u64 > limits.max_output_bytes) {
                return Outcome::OutputTooLarge { limit_bytes: limits.max_output_bytes };
            }
            return match operator::result_from_wit(result, sent_metrics) {
                Ok(result) => Outcome::Success { result },
                Err(reason) => Outcome::InvalidResult { reason },
            };
        }
        Ok(Finish::ExitedEarly) => {
            host_line(log, "[sandflow] the operator exited with code 0 instead of returning from `run`");
            return Outcome::ExitCode { code: 0 };
        }
        Ok(Finish::Returned(Err(error))) => {
            host_line(log, &format!("[sandflow] the task failed: {}", error.message));
            return Outcome::TaskError { message: error.message };
        }
        Err(error) => error,
    };
    if error.downcast_ref::<OutputLimitExceeded>().is_some() {
        return Outcome::OutputTooLarge { limit_bytes: limits.max_output_bytes };
    }
    if let Some(Trap::OutOfFuel) = error.downcast_ref::<Trap>() {
        return Outcome::FuelExhausted { limit: limits.fuel };
    }
    if limiter.refused {
        // A refused growth makes most guests abort (Rust: "memory allocation failed", then a trap).
        // Refused before the instance existed, the plugin's initial memory alone is over the limit.
        let needed_at_start = limiter.refused_at_start.map(|bytes| bytes as u64);
        return Outcome::MemoryLimit { limit_bytes: limits.memory_bytes, needed_at_start };
    }
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        return Outcome::ExitCode { code: *code };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let message = match trap {
            Trap::StackOverflow => "stack overflow: the wasm call stack is exhausted".to_string(),
            other => other.to_string(),
        };
        let backtrace = error.downcast_ref::<WasmBacktrace>().map(|bt| bt.to_string());
        host_line(log, &format!("[sandflow] trap: {message}"));
        if let Some(bt) = &backtrace {
            host_line(log, &format!("[sandflow] wasm backtrace:\n{bt}"));
        }
        return Outcome::Trap { message, backtrace };
    }
    Outcome::HostError { message: format!("{error:#}") }
}

/// Appends a line of the host's own to a try's log, on a line of its own, timestamped like the
/// plugin's lines.
fn host_line(log: &mut String, line: &str) {
    if !log.is_empty() && !log.ends_with('\n') {
        log.push('\n');
    }
    log.push_str(&crate::pipes::stamp());
    log.push_str(line);
    log.push('\n');
}

fn extern_kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "func",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// Writes to a temporary file beside `path`, syncs, then renames: readers see all or nothing, and a
/// crash leaves at worst a stray temporary file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // Unique per process and per write: two loads of one plugin at once must not share a file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}
