//! The supervisor: the pure decision [`core`] and the runtime that carries out its effects.

pub mod core;
