//! launchgraph: a supervisor and dependency orchestrator.
//!
//! The pipeline is compile, then run: unit files (TOML) are read and validated into
//! [`unit::Unit`]s, compiled into a [`graph::Graph`], and only a valid graph is ever run by the
//! supervisor. Every stage reports all of its errors at once, each naming a file, line and key.

pub mod adopt;
pub mod booted_out;
pub(crate) mod clock;
pub mod code_pages;
pub mod compile;
pub mod control;
pub mod daemon;
pub mod daemon_log;
pub mod diag;
pub mod engine;
pub mod exit;
pub mod fingerprint;
pub(crate) mod fsutil;
pub mod graph;
pub mod guard;
pub mod launchd;
pub mod listener;
pub mod metrics;
pub mod paths;
pub mod plan;
pub mod preflight;
pub mod probe;
pub mod process;
pub mod reason;
pub mod snapshot;
pub mod unit;
