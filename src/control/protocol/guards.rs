//! The guard part of the control protocol: every guard's state as `launchgraph guards` reads
//! it, a forced trip or clear, and the facts a guard event carries in `events --json`.
//!
//! Kept apart from the unit protocol so that what renders guards and what runs them share
//! one set of types and nothing else. Values are numbers in the unit of the guard's threshold
//! (`value_unit`: `seconds`, `bytes/s`, `percent`, `count`, or `pressure` for a macOS level),
//! durations milliseconds or seconds as each field's name says.

use serde::{Deserialize, Serialize};

/// One guard, as `guards` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardStatus {
    pub unit: String,
    pub guard: String,
    /// `ttft`, `queue-depth`, `swap-out-rate`, `memory-pressure`, `disk-free`, `exec`.
    pub signal: String,
    /// `act` or `advise`.
    pub mode: String,
    /// `ok`, `pending`, `tripped`, `clearing`, or `unknown` while no sample can be taken.
    pub state: String,
    /// The last real state (what `unknown` hides): `ok`, `pending`, `tripped`, `clearing`.
    pub phase: String,
    /// Tripped by hand, until cleared by hand.
    pub forced: bool,
    /// Why no sample can be taken, while `unknown`.
    pub unknown_cause: Option<String>,
    /// `above` or `below`.
    pub direction: String,
    /// The trip and clear thresholds, as written (`2.5s`, `12%`, `3`).
    pub trip: String,
    pub clear: String,
    /// The windows, as written (`3 samples`, `5m`).
    pub trip_window: String,
    pub clear_window: String,
    /// Seconds between samples.
    pub every_secs: f64,
    /// The last value compared (the sample, or the statistic over its window).
    pub value: Option<f64>,
    pub value_unit: String,
    /// Samples taken since the guard was loaded (known or not).
    pub samples: u64,
    /// Seconds since the last sample was taken.
    pub last_sample_age_secs: Option<f64>,
    /// How long the condition toward the next edge (trip, or clear when tripped) has held.
    pub window: Option<WindowProgress>,
    pub last_transition: Option<GuardTransitionStatus>,
    /// The current (or last) edge's action.
    pub action: Option<ActionStatusRecord>,
    /// Units this guard keeps from starting while it is tripped.
    pub holds: Vec<String>,
    /// Whether it holds them now.
    pub holding: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowProgress {
    pub held_samples: u32,
    pub held_ms: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardTransitionStatus {
    pub from: String,
    pub to: String,
    /// A `GUARD_*` reason code.
    pub reason: String,
    pub age_secs: f64,
}

/// An edge's action, as status shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionStatusRecord {
    /// `trip` or `clear`.
    pub edge: String,
    pub seq: u64,
    /// `running`, `verifying`, `done`, `failed`, `timed-out`.
    pub progress: String,
    /// `GUARD_ACTION_FAILED` or `GUARD_ACTION_TIMEOUT` while it is so.
    pub reason: Option<String>,
    /// Why it failed.
    pub detail: Option<String>,
    pub started_secs_ago: f64,
    /// Seconds left in its time box; negative once past.
    pub deadline_in_secs: f64,
}

/// A guard event's own facts, beside the unit, states and reason of its [`EventRecord`]
/// (super::EventRecord): docs/events-schema.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardEventFacts {
    pub guard: String,
    /// `transition`, `action-ran`, `action-failed`, `action-timeout`, `action-confirmed`,
    /// `still-unknown`, `advise`.
    pub kind: String,
    /// The value compared, in `value_unit`.
    pub value: Option<f64>,
    pub value_unit: Option<String>,
    /// The threshold compared with, as written.
    pub threshold: Option<String>,
    /// The window the condition must hold for, as written.
    pub window: Option<String>,
    pub held_samples: Option<u32>,
    pub held_ms: Option<f64>,
    /// The action the event is about: its edge (`trip`, `clear`) and sequence number.
    pub edge: Option<String>,
    pub action_seq: Option<u64>,
    /// What an action's commands printed, or why they failed; what advice would have done.
    pub output: Option<String>,
    /// Tripped or cleared by hand.
    pub forced: bool,
    /// Run in `advise` mode: nothing was done.
    pub advise: bool,
}
