//! Guards: watched signals with thresholds, windows, hysteresis and time-boxed actions.
//!
//! What a guard is configured with lives in the unit model ([`crate::unit::guard`]); this
//! module owns what happens to it at run time. [`machine`] is the pure decision core: samples,
//! forced trips and clears, and action outcomes in, typed transitions and effects out, with
//! time passed in and never read.

pub mod machine;
