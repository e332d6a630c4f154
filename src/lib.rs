//! cutover: a terminal operations console with a production deployment engine underneath.
//!
//! See `ARCHITECTURE.md` for how the modules fit together.

pub mod cli;
pub mod console;
pub mod control;
pub mod demo_service;
pub mod duration;
pub mod engine;
#[cfg(feature = "crash-hooks")]
pub mod faults;
pub mod flagd;
pub mod journal;
pub mod judge;
pub mod loadgen;
pub mod metrics;
pub mod migrate;
pub mod parity;
pub mod plan;
pub mod platform;
pub mod policy;
pub mod release;
pub mod report;
pub mod secrets;
pub mod session;
pub mod tls;
pub mod trace;
