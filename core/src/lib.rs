//! The tripswitch circuit breaker, with no bindings: a pure state machine
//! (`machine`), its defaults (`config`), its stored bytes (`record`), the
//! failure-rate window (`window`) and whose shape a shared record follows
//! (`shaping`), how far a record's times may be ahead of the reader's
//! clock (`skew`), the
//! sans-I/O engine that a host drives step by step (`engine`), with the
//! answers it gives (`answer`), a driver of it over a blocking
//! [`breaker::Port`] (`breaker`), and the metric
//! names every host meters under (`metrics`). The component
//! (`guest/`) and the Envoy filter (`plugins/envoy/`) are bindings over it.

#![warn(missing_docs)]

pub mod answer;
pub mod breaker;
pub mod config;
pub mod engine;
pub mod machine;
#[path = "../../host/src/metric_names.rs"]
pub mod metrics;
pub mod record;
pub mod shaping;
pub mod skew;
pub mod window;
