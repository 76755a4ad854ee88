//! Breakers over an async storage, awaited on tokio tasks with no thread of
//! their own: 512 calls in flight on two breakers sharing one record count
//! exactly, with the storage's steps interleaved (no instance or lock held
//! across an await) and the process's thread count flat; a call dropped in
//! the middle of a step loses no count and leaves no trial slot taken.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tripswitch::{
    AsyncStorage, CircuitBreaker, Entry, MemoryStorage, State, Storage, StorageError,
    StorageFuture, SwapResult,
};
use tripswitch_tests::{advance, builder, clock};

/// How long each storage step takes.
const DELAY: Duration = Duration::from_millis(20);

/// A memory storage reached through tokio tasks that answer after [`DELAY`];
/// writes wait at a gate while it is shut.
#[derive(Clone)]
struct Delayed(Arc<Shared>);

struct Shared {
    memory: MemoryStorage,
    runtime: Handle,
    /// Steps started and not answered, and the most there ever were.
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Writes wait here while `shut`; `waiting` counts them.
    gate: Semaphore,
    shut: AtomicBool,
    waiting: AtomicUsize,
}

impl Delayed {
    fn new(runtime: &Runtime) -> Delayed {
        Delayed(Arc::new(Shared {
            memory: MemoryStorage::new(),
            runtime: runtime.handle().clone(),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            shut: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// Runs `step` on the runtime after the delay; the future that awaits
    /// it can be polled anywhere.
    fn later<T: Send + 'static>(
        &self,
        write: bool,
        step: impl FnOnce(&MemoryStorage) -> Result<T, StorageError> + Send + 'static,
    ) -> StorageFuture<'static, T> {
        let shared = self.0.clone();
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let task = self.0.runtime.spawn(async move {
            tokio::time::sleep(DELAY).await;
            if write && shared.shut.load(Ordering::SeqCst) {
                shared.waiting.fetch_add(1, Ordering::SeqCst);
                shared
                    .gate
                    .acquire()
                    .await
                    .expect("the gate stays")
                    .forget();
            }
            let result = step(&shared.memory);
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        });
        // Dropping the future cancels the step (as a client cancels a
        // command not yet sent): only a step still awaited is done.
        let mut task = AbortOnDrop(task);
        Box::pin(async move {
            (&mut task.0)
                .await
                .map_err(|e| StorageError(format!("the storage task failed: {e}")))?
        })
    }

    fn shut(&self) {
        self.0.shut.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.0.shut.store(false, Ordering::SeqCst);
        self.0.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }

    fn most_in_flight(&self) -> usize {
        self.0.most_in_flight.load(Ordering::SeqCst)
    }
}

impl AsyncStorage for Delayed {
    fn load<'a>(&'a self, key: &'a str) -> StorageFuture<'a, Option<Entry>> {
        let key = key.to_string();
        self.later(false, move |memory| memory.load(&key))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        data: &'a [u8],
    ) -> StorageFuture<'a, SwapResult> {
        let (key, data) = (key.to_string(), data.to_vec());
        self.later(true, move |memory| {
            memory.compare_and_swap(&key, expected, &data)
        })
    }
}

/// A spawned step, aborted when its awaiting future is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// The process's OS threads now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits (in real time, bounded) until `done` holds; false if it never did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn many_tasks_share_an_async_storage_exactly_on_flat_threads() {
    let runtime = runtime();
    let storage = Delayed::new(&runtime);
    let clock = clock();
    let make = || {
        builder("fleet", &clock)
            .failure_rate_threshold(100)
            .async_storage(storage.clone())
            .build()
            .unwrap()
    };
    let (first, second) = (make(), make());
    // Warm up: the engine's and the flush thread exist before the count.
    runtime.block_on(async {
        first.call_async(async { Ok::<_, ()>(()) }).await.unwrap();
    });
    first.flush().unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let baseline = threads() + 1;
    let sampler = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut most = 0;
            while running.load(Ordering::SeqCst) {
                most = most.max(threads());
                std::thread::sleep(Duration::from_millis(1));
            }
            most
        })
    };
    let failed = runtime.block_on(async {
        let tasks: Vec<_> = (0..512)
            .map(|i| {
                let breaker = if i % 2 == 0 { &first } else { &second }.clone();
                tokio::spawn(async move {
                    let fail = i % 4 == 0;
                    let result = breaker
                        .call_async(async move { if fail { Err("down") } else { Ok(()) } })
                        .await;
                    result.is_err()
                })
            })
            .collect();
        let mut failed = 0;
        for task in tasks {
            failed += usize::from(task.await.unwrap());
        }
        failed
    });
    running.store(false, Ordering::SeqCst);
    let most_threads = sampler.join().unwrap();

    assert_eq!(
        failed, 128,
        "every fourth call failed, and none was refused"
    );
    assert!(
        storage.most_in_flight() >= 64,
        "steps of many operations interleave (at most {} were in flight)",
        storage.most_in_flight()
    );
    assert!(
        most_threads <= baseline + 16,
        "512 calls in flight took threads: {baseline} before, {most_threads} at most"
    );
    first.flush().unwrap();
    second.flush().unwrap();
    let window = first.snapshot().unwrap().window;
    assert_eq!((window.calls, window.failures), (513, 128));
    assert_eq!(second.snapshot().unwrap().window, window);
}

#[test]
fn a_call_dropped_in_the_middle_of_a_step_loses_no_count() {
    let runtime = runtime();
    let storage = Delayed::new(&runtime);
    let clock = clock();
    let breaker = builder("dropped", &clock)
        .fail_max(2)
        .async_storage(storage.clone())
        .build()
        .unwrap();
    storage.shut();
    let call = runtime.spawn({
        let breaker = breaker.clone();
        async move { breaker.call_async(async { Err::<(), _>("down") }).await }
    });
    assert!(eventually(|| storage.0.waiting.load(Ordering::SeqCst) == 1));
    // The failure's write is at the gate: the call is dropped there.
    call.abort();
    assert!(runtime.block_on(call).unwrap_err().is_cancelled());
    storage.open();
    assert!(
        eventually(|| breaker.snapshot().unwrap().failures == 1),
        "the dropped call's failure was recorded"
    );
    let second = runtime.block_on(breaker.call_async(async { Err::<(), _>("down") }));
    assert!(second.is_err());
    assert_eq!(breaker.state().unwrap(), State::Open);
}

#[test]
fn a_trial_dropped_while_taking_its_slot_leaves_it_free() {
    let runtime = runtime();
    let storage = Delayed::new(&runtime);
    let clock = clock();
    let breaker: CircuitBreaker = builder("trial", &clock)
        .fail_max(1)
        .async_storage(storage.clone())
        .build()
        .unwrap();
    let failed = runtime.block_on(breaker.call_async(async { Err::<(), _>("down") }));
    assert!(failed.is_err());
    advance(&clock, 60_000);
    assert_eq!(breaker.state().unwrap(), State::HalfOpen);
    storage.shut();
    let trial = runtime.spawn({
        let breaker = breaker.clone();
        async move { breaker.call_async(async { Ok::<_, ()>(()) }).await }
    });
    assert!(eventually(|| storage.0.waiting.load(Ordering::SeqCst) == 1));
    // The trial slot's write is at the gate: the call is dropped there.
    trial.abort();
    assert!(runtime.block_on(trial).unwrap_err().is_cancelled());
    storage.open();
    assert!(
        eventually(|| breaker.snapshot().unwrap().trials_in_flight == 0),
        "the dropped trial's slot was freed, without the trial timeout"
    );
    let closed = runtime.block_on(breaker.call_async(async { Ok::<_, ()>(()) }));
    assert!(closed.is_ok());
    assert_eq!(breaker.state().unwrap(), State::Closed);
}
