//! The wasmtime side: one engine per process, a compiled and pre-linked
//! component per [`Runtime`], and a pool of instances so that threads do not
//! queue behind each other (each thread keeps the instance it used last).
//! Operations that await an async storage run on a few shared instances
//! instead, locked for each call into the guest and never across an await.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, UpdateDeadline};

use crate::Error;
use crate::bindings::{HostState, Tripswitch, TripswitchPre};

/// The component built from this crate's guest, embedded at build time.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tripswitch.wasm"));

/// How often the engine's epoch advances.
const TICK: Duration = Duration::from_millis(10);
/// Ticks of guest execution after which a call counts as a runaway (the
/// component imports nothing: a call into it never waits on its host).
const RUNAWAY_TICKS: u32 = 10;
/// The most linear memory one instance may grow to; the guest needs a few pages.
const MEMORY_LIMIT: usize = 16 << 20;
/// The most shared instances per runtime: operations in flight interleave
/// on each, so a few serve any number of tasks.
const MAX_SHARED: usize = 4;

/// An instance shared by operations that await their storage.
pub(crate) type Shared = Arc<Mutex<Box<Instance>>>;

thread_local! {
    /// The instance this thread used last, kept back from the pool so that a
    /// thread's next call needs no lock.
    static LOCAL: Cell<Held> = const { Cell::new(Held(None)) };
}

/// A thread's kept instance and the runtime it belongs to; when the thread
/// ends, the instance goes back to that runtime's pool.
#[derive(Default)]
struct Held(Option<(Weak<RuntimeInner>, Box<Instance>)>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((runtime, instance)) = self.0.take()
            && let Some(runtime) = runtime.upgrade()
        {
            runtime
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(instance);
        }
    }
}

/// The process's one engine, with a thread that advances its epoch.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // The breaker's calls are synchronous: no per-store state for the
        // component model's async support (which `tripswitch proxy` compiles
        // into wasmtime), which would slow every call into the component.
        config.concurrency_support(false);
        let engine = Engine::new(&config).expect("the default wasmtime configuration is valid");
        let ticking = engine.weak();
        std::thread::Builder::new()
            .name("tripswitch-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticking.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawning the epoch thread");
        engine
    })
}

/// A loaded breaker component, ready to instantiate; clones share it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    pre: TripswitchPre<HostState>,
    /// Boxed, so that checking out and in moves a pointer, not a store.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Instance>>>,
    /// Breaker ids whose guest resources instances should drop.
    retired: Mutex<Retired>,
    /// Retirements ever: an instance that has swept as many is current.
    retired_count: AtomicUsize,
    /// The shared instances, and a turn counter to spread operations over them.
    shared: Mutex<Vec<Shared>>,
    turn: AtomicUsize,
    /// How many instances (idle, checked out or shared) hold each breaker's
    /// window outcomes.
    holders: Mutex<FxHashMap<u64, usize>>,
}

/// The breakers retired lately, and those alive: the list is cleared when it
/// grows long, and an instance that had not swept it all drops every guest
/// resource of a breaker no longer alive instead.
#[derive(Default)]
struct Retired {
    /// How many retirements came before `ids[0]`.
    base: usize,
    ids: Vec<u64>,
    /// The breakers on this runtime not retired yet.
    live: FxHashSet<u64>,
}

/// Retirements the list keeps before it is cleared.
const RETIRED_KEPT: usize = 1024;

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// The runtime of the embedded component, shared by the whole process.
    pub fn embedded() -> &'static Runtime {
        static EMBEDDED: OnceLock<Runtime> = OnceLock::new();
        EMBEDDED.get_or_init(|| {
            Runtime::from_bytes(COMPONENT).expect("the embedded component is valid")
        })
    }

    /// A runtime for another build of the component, read from a file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Runtime, Error> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Component(format!("reading {}: {e}", path.display())))?;
        Runtime::from_bytes(&bytes)
            .map_err(|e| Error::Component(format!("{}: {e}", path.display())))
    }

    /// A runtime for a component given as bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Runtime, Error> {
        let component = Component::new(engine(), bytes)
            .map_err(|e| Error::Component(format!("not a loadable component: {e:#}")))?;
        let linker = Linker::<HostState>::new(engine());
        let pre = linker
            .instantiate_pre(&component)
            .and_then(TripswitchPre::new)
            .map_err(|e| {
                Error::Component(format!(
                    "the component does not fit tripswitch:breaker: {e:#}"
                ))
            })?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                pre,
                idle: Mutex::new(Vec::new()),
                retired: Mutex::new(Retired::default()),
                retired_count: AtomicUsize::new(0),
                shared: Mutex::new(Vec::new()),
                turn: AtomicUsize::new(0),
                holders: Mutex::new(FxHashMap::default()),
            }),
        })
    }

    /// Takes an idle instance, or makes one.
    pub(crate) fn checkout(&self) -> Result<Box<Instance>, Error> {
        let mine = Arc::as_ptr(&self.inner);
        // `try_with`: during thread exit the slot may be gone; the pool serves.
        let local = LOCAL
            .try_with(|slot| {
                let mut held = slot.take();
                match held.0.take() {
                    Some((runtime, instance)) if Weak::as_ptr(&runtime) == mine => Some(instance),
                    other => {
                        slot.set(Held(other));
                        None
                    }
                }
            })
            .ok()
            .flatten();
        let idle = local.or_else(|| {
            self.inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
        });
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.instantiate()?,
        };
        let retired = self.inner.retired_count.load(Ordering::Acquire);
        if instance.swept != retired {
            self.sweep(&mut instance);
        }
        Ok(instance)
    }

    /// Puts an instance back for the next caller. One that holds window
    /// outcomes goes to the shared pool, where a flush can reach it.
    pub(crate) fn checkin(&self, instance: Box<Instance>) {
        if !instance.holding.is_empty() {
            self.inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(instance);
            return;
        }
        let mut spare = Some(instance);
        let _ = LOCAL.try_with(|slot| {
            let held = slot.take();
            if held.0.is_none() {
                let runtime = Arc::downgrade(&self.inner);
                slot.set(Held(spare.take().map(|instance| (runtime, instance))));
            } else {
                slot.set(held);
            }
        });
        if let Some(instance) = spare {
            self.inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(instance);
        }
    }

    /// A shared instance for an operation that awaits its storage: an
    /// unlocked one if there is, else a new one while there are fewer than
    /// [`MAX_SHARED`], else the next in turn.
    pub(crate) fn shared(&self) -> Result<Shared, Error> {
        let picked = {
            let mut shared = self.inner.shared.lock().unwrap_or_else(|e| e.into_inner());
            let free = shared
                .iter()
                .find(|instance| instance.try_lock().is_ok())
                .cloned();
            match free {
                Some(instance) => instance,
                None if shared.len() < MAX_SHARED => {
                    let instance = Arc::new(Mutex::new(self.instantiate()?));
                    shared.push(instance.clone());
                    instance
                }
                None => {
                    let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
                    shared[turn % shared.len()].clone()
                }
            }
        };
        let retired = self.inner.retired_count.load(Ordering::Acquire);
        let mut instance = picked.lock().unwrap_or_else(|e| e.into_inner());
        if instance.swept != retired {
            self.sweep(&mut instance);
        }
        drop(instance);
        Ok(picked)
    }

    /// Stops handing out a shared instance that failed; operations still on
    /// it fail at their next step.
    pub(crate) fn discard_shared(&self, broken: &Shared) {
        self.inner
            .shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|instance| !Arc::ptr_eq(instance, broken));
    }

    /// The shared instances that hold window outcomes of `breaker`.
    pub(crate) fn shared_holding(&self, breaker: u64) -> Vec<Shared> {
        let shared = self.inner.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared
            .iter()
            .filter(|instance| {
                let instance = instance.lock().unwrap_or_else(|e| e.into_inner());
                instance.holding.contains(&breaker)
            })
            .cloned()
            .collect()
    }

    /// Notes whether `instance` holds `breaker`'s window outcomes, as the
    /// component said after an operation.
    pub(crate) fn note_holding(&self, instance: &mut Instance, breaker: u64, holds: bool) {
        let changed = if holds {
            instance.holding.insert(breaker)
        } else {
            instance.holding.remove(&breaker)
        };
        if changed {
            let mut holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
            let count = holders.entry(breaker).or_default();
            if holds {
                *count += 1;
            } else {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Marks an instance that failed as broken and forgets what it held.
    pub(crate) fn discard(&self, instance: &mut Instance) {
        instance.broken = true;
        let mut holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        for breaker in instance.holding.drain() {
            if let Some(count) = holders.get_mut(&breaker) {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Whether any instance holds `breaker`'s window outcomes.
    pub(crate) fn held(&self, breaker: u64) -> bool {
        let holders = self.inner.holders.lock().unwrap_or_else(|e| e.into_inner());
        holders.get(&breaker).is_some_and(|count| *count > 0)
    }

    /// Takes the idle instances that hold window outcomes of `breaker`.
    #[allow(clippy::vec_box)] // moved between pools as boxes
    pub(crate) fn take_holding(&self, breaker: u64) -> Vec<Box<Instance>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (holding, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle)
            .into_iter()
            .partition(|instance| instance.holding.contains(&breaker));
        *idle = rest;
        holding
    }

    /// Asks every instance to drop a breaker's guest resource.
    pub(crate) fn retire(&self, breaker: u64) {
        self.inner
            .holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&breaker);
        let mut retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.live.remove(&breaker);
        retired.ids.push(breaker);
        if retired.ids.len() >= RETIRED_KEPT {
            retired.base += retired.ids.len();
            retired.ids.clear();
        }
        self.inner.retired_count.fetch_add(1, Ordering::Release);
    }

    /// Notes a breaker made on this runtime, alive until it is retired.
    pub(crate) fn register(&self, breaker: u64) {
        self.inner
            .retired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .insert(breaker);
    }

    fn sweep(&self, instance: &mut Instance) {
        let retired = self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
        let dead: Vec<u64> = match instance.swept.checked_sub(retired.base) {
            Some(seen) => retired.ids.iter().skip(seen).copied().collect(),
            // The list was cleared since this instance last swept.
            None => instance
                .breakers
                .keys()
                .chain(instance.holding.iter())
                .filter(|id| !retired.live.contains(id))
                .copied()
                .collect(),
        };
        for id in dead {
            instance.holding.remove(&id);
            if let Some(resource) = instance.breakers.remove(&id) {
                instance.enter();
                // A failed drop only leaks guest memory in this instance.
                let _ = resource.resource_drop(&mut instance.store);
            }
        }
        instance.swept = retired.base + retired.ids.len();
    }

    fn instantiate(&self) -> Result<Box<Instance>, Error> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(MEMORY_LIMIT)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(engine(), HostState::new(limits));
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.guest_ticks += 1;
            if state.guest_ticks >= RUNAWAY_TICKS {
                return Err(wasmtime::Error::msg(format!(
                    "the breaker component ran for over {} ms without returning",
                    TICK.as_millis() * u128::from(RUNAWAY_TICKS)
                )));
            }
            Ok(UpdateDeadline::Continue(1))
        });
        store.set_epoch_deadline(1);
        let bindings = self
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| Error::Component(format!("instantiating the component: {e:#}")))?;
        Ok(Box::new(Instance {
            store,
            bindings,
            breakers: FxHashMap::default(),
            holding: FxHashSet::default(),
            broken: false,
            // Breakers retired before this instance existed have nothing here.
            swept: self.inner.retired_count.load(Ordering::Acquire),
        }))
    }
}

/// One component instance and the guest resources of the breakers it has served.
pub(crate) struct Instance {
    pub store: Store<HostState>,
    pub bindings: Tripswitch,
    /// Guest resources by breaker id.
    pub breakers: FxHashMap<u64, ResourceAny>,
    /// The breakers whose window outcomes this instance holds, unmerged.
    pub holding: FxHashSet<u64>,
    /// A call into it failed: it takes no more (a shared instance can still
    /// be reached by operations that were on it).
    pub broken: bool,
    swept: usize,
}

impl Instance {
    /// Readies the instance for one call into the guest: a fresh deadline
    /// and a fresh runaway counter. Every guest entry goes through here.
    pub fn enter(&mut self) {
        self.store.data_mut().guest_ticks = 0;
        self.store.set_epoch_deadline(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CircuitBreaker;

    #[test]
    fn the_retired_list_stays_short_and_a_late_instance_forgets_the_dead() {
        let runtime = Runtime::from_bytes(COMPONENT).unwrap();
        let build = |name: String| {
            CircuitBreaker::builder(name)
                .runtime(&runtime)
                .build()
                .unwrap()
        };
        let kept = build("kept".into());
        let doomed: Vec<CircuitBreaker> = (0..RETIRED_KEPT + 10)
            .map(|n| build(format!("doomed-{n}")))
            .collect();
        // The instance that made their guest resources sits out their end.
        let aside = runtime.checkout().unwrap();
        let resources = aside.breakers.len();
        assert!(resources > RETIRED_KEPT, "{resources} resources");
        drop(doomed);
        let retired = runtime.inner.retired.lock().unwrap().ids.len();
        assert!(retired < RETIRED_KEPT, "{retired} retired ids kept");
        runtime.checkin(aside);
        let back = runtime.checkout().unwrap();
        assert_eq!(
            back.breakers.len(),
            1,
            "only the live breaker's resource stays"
        );
        runtime.checkin(back);
        assert_eq!(kept.state().unwrap(), crate::State::Closed);
    }
}
