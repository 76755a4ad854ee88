//! Property and model tests of the guest: `machine` against a reference
//! model, and `Breaker`s over shared, conflicting, failing, flaky and corrupt
//! storages. One concern a module; `reference`, `strategies`, `storage` and
//! `ports` are what the others share.

mod events;
mod faults;
mod machine;
mod ports;
mod reference;
mod reports;
mod reuse;
mod shared;
mod steps;
mod storage;
mod strategies;
mod windows;

/// The one storage key every breaker in these tests shares.
pub const KEY: &str = "shared";
