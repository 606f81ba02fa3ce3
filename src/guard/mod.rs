//! Guards: host and service signals watched against thresholds, with time-boxed actions.
//!
//! - `signal`: the samplers, one per signal (swap writes, memory pressure, disk headroom, a
//!   command's number, queue depth, time to first token). Each takes one reading when asked
//!   and says, as a typed value with its unit, what it saw, or why it could not tell.
pub mod signal;
