//! The plugin's wasmtime side: an engine with the component model's async
//! support, the imports a wasi:http middleware plugin needs (WASI p2 and p3,
//! wasi:http p3, the "next" handler, the breaker's storage and events, what
//! the middleware counted), and the instance lifecycle that
//! wasmtime-wasi-http's `ProxyHandler` drives.
//!
//! Instances are reused the way `wasmtime serve` reuses WASIp3 instances: one
//! instance serves up to [`MAX_REUSE`] requests, up to [`MAX_CONCURRENT`] of
//! them at once, and is dropped after [`IDLE_TIMEOUT`] without work. The
//! breaker's state never lives in an instance: it lives in the storage.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tripswitch::{Rejected, Storage, StorageError};
use wasmtime::component::{
    Accessor, Component, GuestTaskId, HasSelf, Linker, Resource, ResourceTable,
};
use wasmtime::{
    Config, Engine, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::client::HostWithStore;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p3::{Request, Response};
use wasmtime_wasi_http::{WasiHttp, WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::metrics::Metrics;
use super::upstream::Upstream;

/// Requests one instance serves before it is replaced.
const MAX_REUSE: usize = 128;
/// Requests one instance serves at once.
const MAX_CONCURRENT: usize = 16;
/// How long an instance without work is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most linear memory one instance may grow to; a plugin that wants
/// more traps, and the requests it serves fail with 500.
const MEMORY_LIMIT: usize = 256 << 20;
/// How often the plugin engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);
/// Ticks of guest execution without a call to the proxy (storage, events,
/// the next handler) after which the plugin counts as a runaway: its
/// instance traps and the requests it serves fail with 500.
const RUNAWAY_TICKS: u32 = 100;

/// The interfaces of tripswitch's own that a plugin imports.
mod imports {
    wasmtime::component::bindgen!({
        path: ["../wit", "../plugins/wit"],
        inline: "
            package tripswitch:proxy-host;

            world plugin-host {
                import tripswitch:breaker/storage@0.3.0;
                import tripswitch:breaker/events@0.3.0;
                import tripswitch:plugins/counted@0.1.0;
            }
        ",
        world: "tripswitch:proxy-host/plugin-host",
        imports: { "tripswitch:breaker/storage": async },
    });
}

use imports::tripswitch::breaker::{events, storage, types};
use imports::tripswitch::plugins::counted;

/// Per-store data of a plugin instance.
pub struct PluginState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    upstream: Upstream,
    storage: Arc<dyn Storage>,
    announcer: Arc<Announcer>,
    metrics: Option<Arc<Metrics>>,
    limits: StoreLimits,
    /// Whether the guest called the proxy since the last epoch tick.
    called_out: bool,
    /// Epoch ticks of guest execution since it last called the proxy.
    guest_ticks: u32,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.upstream,
        }
    }
}

/// Runs one storage operation; a storage that may block (Redis) runs on
/// tokio's blocking pool so that no runtime thread waits on it.
async fn on_storage<R: Send + 'static>(
    storage: Arc<dyn Storage>,
    work: impl FnOnce(&dyn Storage) -> Result<R, StorageError> + Send + 'static,
) -> Result<R, String> {
    let result = if storage.may_block() {
        tokio::task::spawn_blocking(move || work(&*storage))
            .await
            .map_err(|e| format!("the storage call did not finish: {e}"))?
    } else {
        work(&*storage)
    };
    result.map_err(|error| error.0)
}

impl storage::Host for PluginState {
    async fn load(&mut self, key: String) -> Result<Option<storage::Entry>, String> {
        self.called_out = true;
        let entry = on_storage(self.storage.clone(), move |s| s.load(&key)).await?;
        Ok(entry.map(|entry| storage::Entry {
            version: entry.version,
            data: entry.data,
        }))
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        data: Vec<u8>,
    ) -> Result<storage::SwapResult, String> {
        self.called_out = true;
        let swapped = on_storage(self.storage.clone(), move |s| {
            s.compare_and_swap(&key, expected, &data)
        })
        .await?;
        Ok(match swapped {
            tripswitch::SwapResult::Written(version) => storage::SwapResult::Written(version),
            tripswitch::SwapResult::Conflict(entry) => {
                storage::SwapResult::Conflict(entry.map(|entry| storage::Entry {
                    version: entry.version,
                    data: entry.data,
                }))
            }
        })
    }
}

impl events::Host for PluginState {
    fn state_changed(&mut self, change: types::StateChange) {
        self.called_out = true;
        self.announcer.tell(&change);
    }

    fn noticed(&mut self, breaker: String, notice: types::Notice) {
        self.called_out = true;
        self.announcer.notice(&breaker, notice);
    }
}

impl types::Host for PluginState {}

impl counted::Host for PluginState {
    fn admitted(&mut self, breaker: String) {
        self.called_out = true;
        if let Some(metrics) = &self.metrics {
            metrics.admitted(&breaker);
        }
    }

    fn rejected(&mut self, breaker: String, refusal: types::Refusal) {
        self.called_out = true;
        if let Some(metrics) = &self.metrics {
            metrics.rejected(&breaker, &rejected(refusal));
        }
    }

    fn reported(&mut self, breaker: String, outcome: types::Outcome) {
        self.called_out = true;
        if let Some(metrics) = &self.metrics {
            metrics.outcome(
                &breaker,
                match outcome {
                    types::Outcome::Success => tripswitch::Outcome::Success,
                    types::Outcome::Failure => tripswitch::Outcome::Failure,
                    types::Outcome::Ignored => tripswitch::Outcome::Ignored,
                },
            );
        }
    }
}

/// Tells state changes on stderr, each generation of a breaker once per
/// process however many instances see it, and counts them in the metrics:
/// a change this process made (`remote` false: one instance in a fleet
/// makes each) always, one made elsewhere once.
pub struct Announcer {
    /// The generation last told, by breaker.
    told: Mutex<HashMap<String, u64>>,
    metrics: Option<Arc<Metrics>>,
}

impl Announcer {
    fn tell(&self, change: &types::StateChange) {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let last = told.get(&change.breaker).copied();
        let first = last.is_none_or(|last| change.generation > last);
        if first {
            told.insert(change.breaker.clone(), change.generation);
        }
        drop(told);
        let (from, to) = (state(change.previous), state(change.current));
        if let Some(metrics) = self.metrics.as_ref().filter(|_| first || !change.remote) {
            metrics.transition(&change.breaker, from, to, change.remote);
        }
        if first {
            eprintln!(
                "{}",
                tripswitch_plugin_settings::state_change_line(
                    &change.breaker,
                    from.as_str(),
                    to.as_str(),
                    change.remote
                )
            );
        }
    }
}

impl Announcer {
    /// Logs a notice on stderr and counts it.
    fn notice(&self, breaker: &str, notice: types::Notice) {
        let notice = tripswitch::Notice {
            kind: match notice.kind {
                types::NoticeKind::WindowRestarted => tripswitch::NoticeKind::WindowRestarted,
            },
            message: notice.message,
        };
        eprintln!("tripswitch: {}", notice.message);
        if let Some(metrics) = &self.metrics {
            metrics.notice(breaker, &notice);
        }
    }
}

/// A state as the host library names it.
fn state(state: types::State) -> tripswitch::State {
    match state {
        types::State::Closed => tripswitch::State::Closed,
        types::State::Open => tripswitch::State::Open,
        types::State::HalfOpen => tripswitch::State::HalfOpen,
        types::State::ForcedOpen => tripswitch::State::ForcedOpen,
        types::State::Disabled => tripswitch::State::Disabled,
    }
}

/// A refusal as the host library names it.
fn rejected(refusal: types::Refusal) -> Rejected {
    let ms = std::time::Duration::from_millis;
    match refusal.rejection {
        types::Rejection::Open(wait) => Rejected::Open {
            retry_after: ms(wait),
        },
        types::Rejection::HalfOpenFull(wait) => Rejected::HalfOpenFull {
            retry_after: ms(wait),
        },
        types::Rejection::ForcedOpen => Rejected::ForcedOpen,
        types::Rejection::StorageUnavailable(message) => Rejected::StorageUnavailable {
            message,
            state: state(refusal.state),
        },
    }
}

/// A loaded, linked plugin and what its instances are given: the state of
/// the proxy's `ProxyHandler`.
pub struct Plugin {
    engine: Engine,
    pre: ServicePre<PluginState>,
    upstream: Upstream,
    storage: Arc<dyn Storage>,
    /// The plugin's WASI environment.
    env: Vec<(String, String)>,
    announcer: Arc<Announcer>,
    metrics: Option<Arc<Metrics>>,
}

impl Plugin {
    /// Compiles and links a plugin; `what` names it in messages. What it
    /// counts goes to `metrics`, if given.
    pub fn load(
        bytes: &[u8],
        what: &str,
        upstream: Upstream,
        storage: Arc<dyn Storage>,
        env: Vec<(String, String)>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Plugin, String> {
        let mut config = Config::new();
        config.wasm_component_model_async(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| format!("the wasm engine: {e:#}"))?;
        tick(&engine)?;
        let component = Component::new(&engine, bytes)
            .map_err(|e| format!("{what} is not a loadable component: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        link(&mut linker).map_err(|e| format!("linking the proxy's imports: {e:#}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| format!("{what} needs an import the proxy does not provide: {e:#}"))?;
        let pre = ServicePre::new(pre)
            .map_err(|e| format!("{what} does not export wasi:http/handler@0.3.0: {e:#}"))?;
        Ok(Plugin {
            engine,
            pre,
            upstream,
            storage,
            env,
            announcer: Arc::new(Announcer {
                told: Mutex::default(),
                metrics: metrics.clone(),
            }),
            metrics,
        })
    }

    /// The upstream requests go to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn store(&self) -> Store<PluginState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdout().inherit_stderr();
        for (name, value) in &self.env {
            wasi.env(name, value);
        }
        let state = PluginState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            upstream: self.upstream.clone(),
            storage: Arc::clone(&self.storage),
            announcer: Arc::clone(&self.announcer),
            metrics: self.metrics.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(MEMORY_LIMIT)
                .trap_on_grow_failure(true)
                .build(),
            called_out: false,
            guest_ticks: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if std::mem::take(&mut state.called_out) {
                state.guest_ticks = 0;
            } else {
                state.guest_ticks += 1;
                if state.guest_ticks >= RUNAWAY_TICKS {
                    return Err(wasmtime::Error::msg(format!(
                        "the plugin ran for over {} ms without calling the proxy",
                        TICK.as_millis() * u128::from(RUNAWAY_TICKS)
                    )));
                }
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        store
    }

    /// Makes one instance and drops it: a plugin that cannot start fails
    /// before the proxy listens. Needs a tokio runtime.
    pub async fn try_instantiate(&self) -> Result<(), String> {
        let mut store = self.store();
        self.pre
            .instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| format!("instantiating the plugin: {e:#}"))
    }
}

/// Advances `engine`'s epoch every [`TICK`] from a thread of its own, for as
/// long as the engine lives.
fn tick(engine: &Engine) -> Result<(), String> {
    let ticking = engine.weak();
    std::thread::Builder::new()
        .name("tripswitch-proxy-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticking.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .map(drop)
        .map_err(|e| format!("starting the plugin engine's clock: {e}"))
}

/// Adds everything a plugin may import.
fn link(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi::p3::add_to_linker(linker)?;
    wasmtime_wasi_http::p3::add_to_linker(linker)?;
    imports::PluginHost::add_to_linker::<PluginState, HasSelf<PluginState>>(linker, |state| state)?;
    linker
        .instance("wasi:http/handler@0.3.0")?
        .func_wrap_concurrent(
            "handle",
            |accessor: &Accessor<PluginState>, (request,): (Resource<Request>,)| {
                Box::pin(next(accessor, request))
            },
        )?;
    Ok(())
}

/// The plugin's "next" handler: the request goes to the upstream (see
/// [`Upstream`]'s `send_request`); an upstream that does not answer comes back
/// as a wasi:http error code.
async fn next(
    accessor: &Accessor<PluginState>,
    request: Resource<Request>,
) -> wasmtime::Result<(Result<Resource<Response>, ErrorCode>,)> {
    accessor.with(|mut store| store.get().called_out = true);
    let http = accessor.with_getter::<WasiHttp>(<PluginState as WasiHttpView>::http);
    match <WasiHttp as HostWithStore<PluginState>>::send(&http, request).await {
        Ok(response) => Ok((Ok(response),)),
        Err(error) => Ok((Err(error.downcast()?),)),
    }
}

impl HandlerState for Plugin {
    type StoreData = PluginState;
    type WorkerExpiration = Idle;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<PluginState, Idle, Worker>> {
        let mut store = self.store();
        let service = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: <PluginState as WasiHttpView>::http,
            expiration: Idle {
                sleep: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            },
            state: Worker,
        })
    }
}

/// Ends an instance after [`IDLE_TIMEOUT`] without work.
pub struct Idle {
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Idle {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        if status != WorkerStatus::Idle {
            return Poll::Pending;
        }
        let deadline = tokio::time::Instant::from_std(start + IDLE_TIMEOUT);
        let sleep = &mut self.get_mut().sleep;
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

/// How many requests an instance takes.
pub struct Worker;

impl WorkerState for Worker {
    type StoreData = PluginState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= MAX_REUSE {
            ShouldAccept::Never
        } else if concurrent >= MAX_CONCURRENT {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, PluginState>,
        _data: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        // No deadline of the proxy's own: the upstream's answer decides.
        Box::pin(std::future::pending())
    }

    fn drop(&self, store: Store<PluginState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            eprintln!("tripswitch proxy: a plugin instance failed: {error:#}");
        }
        drop(store);
    }
}
