//! Guards: host and service signals watched against thresholds, with time-boxed actions.
//!
//! What a guard is configured with lives in the unit model ([`crate::unit::guard`]); this
//! module owns what happens to it at run time.
//!
//! - `signal`: the samplers, one per signal (swap writes, memory pressure, disk headroom, a
//!   command's number, queue depth, time to first token). Each takes one reading when asked
//!   and says, as a typed value with its unit, what it saw, or why it could not tell.
//! - [`bind`]: which sampler each configured guard runs.
//! - [`runbook`]: the guards and switches in words, with the exact commands they run, for
//!   `launchgraph guards` and snapshots.
//! - [`machine`]: the pure decision core: samples, forced trips and clears, and action
//!   outcomes in, typed transitions and effects out, with time passed in and never read.
pub mod bind;
pub mod machine;
pub mod runbook;
pub mod signal;
