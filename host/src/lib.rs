//! tripswitch: a circuit breaker whose state machine is one WebAssembly
//! component, run here through wasmtime.
//!
//! ```
//! use std::time::Duration;
//! use tripswitch::{CallError, CircuitBreaker};
//!
//! let breaker = CircuitBreaker::builder("payments")
//!     .fail_max(3)
//!     .reset_timeout(Duration::from_secs(30))
//!     .build()?;
//! let answer: Result<u32, CallError<std::io::Error>> = breaker.call(|| Ok(42));
//! assert_eq!(answer.unwrap(), 42);
//! # Ok::<(), tripswitch::Error>(())
//! ```
//!
//! The state lives in a [`Storage`]: [`MemoryStorage`] by default, shared by
//! every breaker given a clone of it. Every default and every decision is the
//! component's, so every host that loads it behaves the same.

#![warn(missing_docs)]

mod backend;
mod bindings;
mod breaker;
mod builder;
pub mod clock;
mod detach;
mod error;
mod flusher;
mod listener;
mod memo;
mod permit;
#[cfg(feature = "redis")]
mod redis_sentinel;
#[cfg(feature = "redis")]
mod redis_storage;
#[cfg(feature = "redis")]
mod redis_target;
mod runtime;
pub mod storage;
#[cfg(any(feature = "metrics", feature = "tracing"))]
pub mod telemetry;
mod tell;
#[cfg(feature = "tower")]
pub mod tower;
mod types;
mod writes;

pub use breaker::CircuitBreaker;
pub use builder::{Builder, Config};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CallError, Error, Rejected};
pub use listener::Listener;
pub use permit::Permit;
#[cfg(feature = "redis")]
pub use redis_storage::{
    COMPARE_AND_SWAP_SCRIPT, RedisStorage, RedisStorageBuilder, key_in as redis_key,
};
#[cfg(feature = "redis")]
pub use redis_target::redact as redact_redis_url;
pub use runtime::{COMPONENT, Runtime};
pub use storage::{
    AsyncStorage, Entry, MemoryStorage, Storage, StorageError, StorageFuture, SwapResult,
};
pub use types::{
    Action, Notice, NoticeKind, Outcome, Reason, Snapshot, State, StateChange, WindowTotals,
};

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
