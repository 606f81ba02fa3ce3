//! The supervisor engine, in layers, each importing only those below it:
//!
//! - [`core`]: the pure decisions, (state, event, now) to effects; no I/O, no clock, no tokio.
//! - [`events`]: the events and commands the core takes, and the epoch-stamped channel they
//!   travel on.
//! - [`reload`]: the pure plan of a reload (what to stop, start and keep).
//! - [`journal`]: the event ring `launchgraph events` replays, and the rate-limited log.
//! - [`backend`]: how one run is carried out ([`backend::exec`], [`backend::launchd`]), and
//!   [`probing`], the probe loops of a run, with [`fine_timer`] for their sub-millisecond waits
//!   and [`grid_clock`], the one timer of every liveness loop.
//! - [`gate`] (preflight before a start, fingerprints after), [`watch`] (unit files),
//!   [`runs`] (run records and what a previous daemon left running).
//! - [`runtime`]: the one task that owns the state and carries out the core's effects.
//!
//! What `launchgraph up` wraps around it (signals, the control socket, metrics over HTTP) is
//! [`crate::daemon`]. The metrics themselves stay in [`crate::metrics`]: a pure module that
//! reads the core's typed transitions and knows nothing else of the engine, so it sits beside
//! it rather than in it.

pub(crate) mod backend;
pub mod core;
pub(crate) mod events;
pub(crate) mod fine_timer;
pub(crate) mod gate;
pub(crate) mod grid_clock;
pub(crate) mod journal;
pub(crate) mod probing;
pub(crate) mod reload;
pub(crate) mod runs;
pub(crate) mod runtime;
pub(crate) mod status;
pub(crate) mod watch;
